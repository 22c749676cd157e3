"""The migration engine against a real throwaway PostgreSQL (fixtures pg, pg_db).

Every feature: plan (check mode) -> nothing changed -> migrate -> effect -> rerun unchanged.
"""

import threading
import time

import pytest

from ansible_collections.dbdevops.postgresql.plugins.module_utils.connection import (
    ConnParams, PgConnectionError)
from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate.engine import MigrateEngine
from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate.lock import lock_key
from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate.options import MigrateOptions
from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate.steps import MigrationError
from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate.files import (
    MigrationFilesError)
from ansible_collections.dbdevops.postgresql.plugins.module_utils.errors import DbDevopsError
from tests.harness.pgcluster import free_port
from tests.harness.migrate_samples import engine, info, migrate, plan_of, write

USERS = {
    'V1__create_users.sql': 'CREATE TABLE users (id bigserial PRIMARY KEY, email text NOT NULL);\n',
    'U1__create_users.sql': 'DROP TABLE users;\n',
    'V2__create_projects.sql': (
        'CREATE TABLE projects (\n  id bigserial PRIMARY KEY,\n  owner_id bigint REFERENCES users,\n'
        "  name text NOT NULL DEFAULT 'x;y'\n);\n"
        "COMMENT ON TABLE projects IS $$projects; one per team$$;\n"),
    'U2__create_projects.sql': 'DROP TABLE projects;\n',
}


def rows(pg_db, sql, params=None):
    pg, db = pg_db
    return pg.sql(sql, params, dbname=db)


def tables(pg_db):
    return sorted(r[0] for r in rows(pg_db, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))


def history(pg_db, table='public.dbdevops_schema_history'):
    return rows(pg_db, 'SELECT installed_rank, version, type, script, success, error_message '
                       'FROM %s ORDER BY installed_rank' % table)


def test_plan_then_migrate_then_rerun_unchanged(pg_db, tmp_path):
    path = write(tmp_path, USERS)
    plan = plan_of(engine(pg_db, path))
    assert plan.changed and [s.version for s in plan.steps] == ['1', '2']
    assert plan.current_version is None and plan.target_version == '2'
    assert 'CREATE TABLE users' in plan.sql_text() and "$$projects; one per team$$" in plan.sql_text()
    assert tables(pg_db) == []                          # plan creates nothing, not even history

    result = migrate(engine(pg_db, path))
    assert result['changed'] is True
    assert [(a['version'], a['direction']) for a in result['applied']] == [('1', 'up'), ('2', 'up')]
    assert all(isinstance(a['ms'], int) for a in result['applied'])
    assert result['current_version'] == '2' and result['pending'] == []
    assert tables(pg_db) == ['dbdevops_schema_history', 'projects', 'users']
    assert rows(pg_db, "SELECT obj_description('projects'::regclass)") == [('projects; one per team',)]
    hist = rows(pg_db, 'SELECT installed_rank, version, description, type, script, checksum, '
                       'applied_at IS NOT NULL, applied_by, execution_time_ms >= 0, success, '
                       'error_message FROM dbdevops_schema_history ORDER BY 1')
    assert [h[:5] for h in hist] == [(1, '1', 'create users', 'versioned', 'V1__create_users.sql'),
                                     (2, '2', 'create projects', 'versioned', 'V2__create_projects.sql')]
    assert all(len(h[5]) == 64 and h[6] and h[7].startswith('postgres (') and h[8] and h[9]
               and h[10] is None for h in hist)

    again = migrate(engine(pg_db, path))
    assert again['changed'] is False and again['applied'] == [] and again['current_version'] == '2'
    assert plan_of(engine(pg_db, path)).changed is False
    assert len(history(pg_db)) == 2


def test_history_table_location_configurable(pg_db, tmp_path):
    path = write(tmp_path, {'V1__a.sql': 'CREATE TABLE a (id int);'})
    result = migrate(engine(pg_db, path, history_schema='ops', history_table='applied'))
    assert result['changed']
    assert rows(pg_db, 'SELECT version FROM ops.applied') == [('1',)]
    assert rows(pg_db, "SELECT to_regclass('public.dbdevops_schema_history')") == [(None,)]


def test_failing_migration_names_file_line_statement_and_next_run_continues(pg_db, tmp_path):
    files = dict(USERS)
    files['V3__add_column.sql'] = ('ALTER TABLE users ADD COLUMN name text;\n\n'
                                   'UPDATE users SET nme = email;\n')
    path = write(tmp_path, files)
    with pytest.raises(MigrationError) as err:
        migrate(engine(pg_db, path))
    msg = str(err.value)
    assert 'V3__add_column.sql line 3' in msg
    assert 'UPDATE users SET nme = email' in msg and 'column "nme" of relation "users" does not exist' in msg
    assert 'stays at the last good version' in msg
    assert err.value.details['file'] == 'V3__add_column.sql' and err.value.details['line'] == 3
    assert [a['version'] for a in err.value.details['applied']] == ['1', '2']
    # all of V3 rolled back, V1 and V2 kept
    assert rows(pg_db, "SELECT count(*) FROM pg_attribute WHERE attrelid = 'users'::regclass "
                       "AND attname = 'name'") == [(0,)]
    hist = history(pg_db)
    assert [(h[1], h[4]) for h in hist] == [('1', True), ('2', True), ('3', False)]
    assert 'V3__add_column.sql line 3' in hist[-1][5]
    assert info(pg_db, path)['current_version'] == '2'
    assert [f['script'] for f in info(pg_db, path)['failed_migrations']] == ['V3__add_column.sql']

    write(tmp_path, {'V3__add_column.sql': 'ALTER TABLE users ADD COLUMN name text;\n'
                                           'UPDATE users SET name = email;\n'})
    result = migrate(engine(pg_db, path))
    assert [a['version'] for a in result['applied']] == ['3'] and result['current_version'] == '3'
    assert info(pg_db, path)['failed_migrations'] == []
    assert migrate(engine(pg_db, path))['changed'] is False


def test_checksum_mismatch_fails_before_anything_then_repair_records_who(pg_db, tmp_path):
    path = write(tmp_path, USERS)
    migrate(engine(pg_db, path, target='1'))
    write(tmp_path, {'V1__create_users.sql': 'CREATE TABLE users (id bigserial PRIMARY KEY);\n'})
    with pytest.raises(MigrationError) as err:
        plan_of(engine(pg_db, path))
    applied_sum = rows(pg_db, "SELECT checksum FROM dbdevops_schema_history WHERE version = '1'")[0][0]
    msg = str(err.value)
    assert 'V1__create_users.sql' in msg and applied_sum in msg and 'repair: true' in msg
    with pytest.raises(MigrationError):
        migrate(engine(pg_db, path))
    assert 'projects' not in tables(pg_db)                       # V2 did not run

    # line-ending and trailing-space changes are not a mismatch
    write(tmp_path, {'V1__create_users.sql': USERS['V1__create_users.sql'].replace('\n', '  \r\n')})
    assert plan_of(engine(pg_db, path)).mismatches == []
    write(tmp_path, {'V1__create_users.sql': 'CREATE TABLE users (id bigserial PRIMARY KEY);\n'})

    plan = plan_of(engine(pg_db, path, repair=True, target='1'))
    assert [s.kind for s in plan.steps] == ['repair'] and plan.mismatches
    result = migrate(engine(pg_db, path, repair=True, target='1', applied_by='alice'))
    assert result['changed'] and [a['kind'] for a in result['applied']] == ['repair']
    rep = rows(pg_db, "SELECT applied_by, applied_at IS NOT NULL, error_message FROM dbdevops_schema_history "
                      "WHERE type = 'repair'")
    assert rep == [('alice', True, 'applied checksum was %s' % applied_sum)]
    assert migrate(engine(pg_db, path, target='1'))['changed'] is False
    assert migrate(engine(pg_db, path))['applied'][0]['version'] == '2'


def test_downgrade_needs_allow_and_every_undo_file(pg_db, tmp_path):
    files = dict(USERS)
    files['V3__noundo.sql'] = 'CREATE TABLE audit (id int);'
    path = write(tmp_path, files)
    migrate(engine(pg_db, path))
    with pytest.raises(MigrationError, match='set allow_downgrade: true'):
        migrate(engine(pg_db, path, target='1'))
    with pytest.raises(MigrationError) as err:
        migrate(engine(pg_db, path, target='1', allow_downgrade=True))
    assert 'no undo file for 3' in str(err.value) and 'nothing was undone' in str(err.value)
    assert tables(pg_db) == ['audit', 'dbdevops_schema_history', 'projects', 'users']

    write(tmp_path, {'U3__noundo.sql': 'DROP TABLE audit;'})
    plan = plan_of(engine(pg_db, path, target='1', allow_downgrade=True))
    assert [(s.version, s.direction) for s in plan.steps] == [('3', 'down'), ('2', 'down')]
    assert tables(pg_db) == ['audit', 'dbdevops_schema_history', 'projects', 'users']
    result = migrate(engine(pg_db, path, target='1', allow_downgrade=True))
    assert [(a['version'], a['direction']) for a in result['applied']] == [('3', 'down'), ('2', 'down')]
    assert result['current_version'] == '1' and result['pending'] == ['2', '3']
    assert tables(pg_db) == ['dbdevops_schema_history', 'users']
    assert migrate(engine(pg_db, path, target='1', allow_downgrade=True))['changed'] is False
    # and back up again
    assert [a['version'] for a in migrate(engine(pg_db, path))['applied']] == ['2', '3']
    result = migrate(engine(pg_db, path, target='0', allow_downgrade=True))
    assert result['current_version'] is None and tables(pg_db) == ['dbdevops_schema_history']


def test_baseline_existing_database(pg_db, tmp_path):
    rows(pg_db, 'CREATE TABLE users (id bigserial PRIMARY KEY, email text NOT NULL)')
    files = dict(USERS)
    files['V3__c.sql'] = 'CREATE TABLE c (id int);'
    path = write(tmp_path, files)
    plan = plan_of(engine(pg_db, path, baseline_version='1'))
    assert [(s.kind, s.version) for s in plan.steps] == [('baseline', '1'), ('versioned', '2'),
                                                         ('versioned', '3')]
    result = migrate(engine(pg_db, path, baseline_version='1'))
    assert [a['kind'] for a in result['applied']] == ['baseline', 'versioned', 'versioned']
    assert result['current_version'] == '3'
    assert migrate(engine(pg_db, path, baseline_version='1'))['changed'] is False
    with pytest.raises(MigrationError, match='already has history'):
        plan_of(engine(pg_db, path, baseline_version='2'))


def test_out_of_order_is_an_error_unless_allowed(pg_db, tmp_path):
    path = write(tmp_path, {'V1__a.sql': 'CREATE TABLE a ();', 'V3__c.sql': 'CREATE TABLE c ();'})
    migrate(engine(pg_db, path))
    write(tmp_path, {'V2__b.sql': 'CREATE TABLE b ();'})
    with pytest.raises(MigrationError) as err:
        migrate(engine(pg_db, path))
    assert 'V2__b.sql' in str(err.value) and 'out_of_order: true' in str(err.value)
    assert 'b' not in tables(pg_db)
    assert [s.version for s in plan_of(engine(pg_db, path, out_of_order=True)).steps] == ['2']
    result = migrate(engine(pg_db, path, out_of_order=True))
    assert [a['version'] for a in result['applied']] == ['2'] and result['current_version'] == '3'
    assert migrate(engine(pg_db, path, out_of_order=True))['changed'] is False


def test_repeatable_reapplied_when_checksum_changes(pg_db, tmp_path):
    files = dict(USERS)
    files['R__views.sql'] = 'CREATE OR REPLACE VIEW user_emails AS SELECT email FROM ${schema}.users;'
    path = write(tmp_path, files)
    result = migrate(engine(pg_db, path, placeholders={'schema': 'public'}))
    assert [a['kind'] for a in result['applied']][-1] == 'repeatable'     # after the versioned ones
    assert migrate(engine(pg_db, path, placeholders={'schema': 'public'}))['changed'] is False
    write(tmp_path, {'R__views.sql': 'CREATE OR REPLACE VIEW user_emails AS SELECT email, id FROM users;'})
    plan = plan_of(engine(pg_db, path))
    assert [s.script for s in plan.steps] == ['R__views.sql']
    migrate(engine(pg_db, path))
    assert rows(pg_db, "SELECT count(*) FROM information_schema.columns WHERE table_name = 'user_emails'") \
        == [(2,)]
    assert migrate(engine(pg_db, path))['changed'] is False


def test_target_stops_at_version(pg_db, tmp_path):
    path = write(tmp_path, USERS)
    result = migrate(engine(pg_db, path, target='1'))
    assert [a['version'] for a in result['applied']] == ['1'] and result['pending'] == ['2']
    assert migrate(engine(pg_db, path, target='1'))['changed'] is False
    with pytest.raises(MigrationError, match='not a version'):
        plan_of(engine(pg_db, path, target='one'))


def test_non_transactional_file_runs_concurrent_index_while_lock_held(pg_db, tmp_path):
    files = dict(USERS)
    files['V3__index.sql'] = ('-- dbdevops:transaction=off\n'
                              "SET lock_timeout = '2s';\n"
                              'CREATE INDEX CONCURRENTLY users_email_idx ON users (email);\n')
    path = write(tmp_path, files)
    plan = plan_of(engine(pg_db, path))
    assert plan.steps[-1].transactional is False
    assert 'outside a transaction' in plan.sql_text()
    result = migrate(engine(pg_db, path, statement_timeout='20s'))
    assert [a['version'] for a in result['applied']] == ['1', '2', '3']
    assert rows(pg_db, "SELECT indisvalid FROM pg_index WHERE indexrelid = 'users_email_idx'::regclass") \
        == [(True,)]
    assert migrate(engine(pg_db, path))['changed'] is False


def test_failed_concurrent_build_reports_statements_ran_and_invalid_index(pg_db, tmp_path):
    rows(pg_db, 'CREATE TABLE t (a int); INSERT INTO t VALUES (1), (1)')
    path = write(tmp_path, {'V1__idx.sql': ('-- dbdevops:transaction=off\n'
                                            'CREATE TABLE other (id int);\n'
                                            'CREATE UNIQUE INDEX CONCURRENTLY t_a_key ON t (a);\n')})
    with pytest.raises(MigrationError) as err:
        migrate(engine(pg_db, path, baseline_version='0'))     # t was there before migrations
    msg = str(err.value)
    assert 'V1__idx.sql line 3' in msg and 'CREATE UNIQUE INDEX CONCURRENTLY t_a_key' in msg
    assert '1 of 2 statements ran' in msg and 'INVALID index left behind: public.t_a_key' in msg
    assert err.value.details['statements_ran'] == ['CREATE TABLE other (id int)']
    assert history(pg_db)[-1][4] is False

    # fix the data and the file (idempotent create), retry: the invalid index blocks or is dropped
    rows(pg_db, 'DELETE FROM t')
    write(tmp_path, {'V1__idx.sql': ('-- dbdevops:transaction=off\n'
                                     'CREATE TABLE IF NOT EXISTS other (id int);\n'
                                     'CREATE UNIQUE INDEX CONCURRENTLY t_a_key ON t (a);\n')})
    plan = plan_of(engine(pg_db, path))
    assert any('t_a_key is INVALID' in w and 'drop_invalid_indexes' in w for w in plan.warnings)
    with pytest.raises(MigrationError, match='already exists'):
        migrate(engine(pg_db, path))
    result = migrate(engine(pg_db, path, drop_invalid_indexes=True))
    assert result['current_version'] == '1'
    assert rows(pg_db, "SELECT indisvalid FROM pg_index WHERE indexrelid = 't_a_key'::regclass") == [(True,)]
    assert migrate(engine(pg_db, path))['changed'] is False


def test_psql_meta_command_rejected_at_plan_time(pg_db, tmp_path):
    path = write(tmp_path, {'V1__a.sql': 'CREATE TABLE a ();', 'V2__b.sql': 'SELECT 1;\n\\set x 1\n'})
    with pytest.raises(DbDevopsError) as err:
        migrate(engine(pg_db, path))
    assert 'V2__b.sql line 2' in str(err.value) and '\\set' in str(err.value)
    assert 'a' not in tables(pg_db)


def test_lock_timeout_retries_with_backoff_then_succeeds(pg_db, tmp_path):
    pg, db = pg_db
    rows(pg_db, 'CREATE TABLE busy (id int)')
    path = write(tmp_path, {'V1__alter.sql': 'ALTER TABLE busy ADD COLUMN note text;'})
    blocker = pg.connect(db, autocommit=False)
    blocker.cursor().execute('LOCK TABLE busy IN ACCESS SHARE MODE')
    sleeps = []
    try:
        eng = engine(pg_db, path, lock_timeout='100ms', lock_retries=2, baseline_version='0')
        eng.sleep = sleeps.append
        with pytest.raises(MigrationError) as err:
            migrate(eng)
        assert 'lock timeout' in str(err.value) and '55P03' in str(err.value)
        assert 'after 3 attempts' in str(err.value) and sleeps == [0.5, 1.0]

        timer = threading.Timer(0.6, blocker.rollback)
        timer.start()
        result = migrate(engine(pg_db, path, lock_timeout='100ms', lock_retries=5))
        timer.join()
        assert result['current_version'] == '1'
    finally:
        blocker.close()


def test_lock_wait_is_bounded_and_names_holder(pg_db, tmp_path):
    pg, db = pg_db
    path = write(tmp_path, {'V1__a.sql': 'CREATE TABLE a ();'})
    holder = pg.connect(db)
    holder.cursor().execute('SELECT pg_advisory_lock(%s)', (lock_key('public', 'dbdevops_schema_history'),))
    try:
        started = time.time()
        with pytest.raises(MigrationError) as err:
            migrate(engine(pg_db, path, lock_wait=1))
        assert 1 <= time.time() - started < 5
        assert 'holds the lock' in str(err.value) and 'pid %d' % holder.get_backend_pid() in str(err.value)
        assert 'a' not in tables(pg_db)
    finally:
        holder.close()
    assert migrate(engine(pg_db, path, lock_wait=1))['changed'] is True


def test_statement_timeout_applies(pg_db, tmp_path):
    path = write(tmp_path, {'V1__slow.sql': 'SELECT pg_sleep(2);'})
    with pytest.raises(MigrationError, match='statement timeout'):
        migrate(engine(pg_db, path, statement_timeout='200ms'))
    assert history(pg_db)[-1][4] is False


def test_wrong_password_and_server_down_clear_messages(pg, tmp_path):
    path = write(tmp_path, USERS)
    bad = MigrateEngine(ConnParams.from_params(pg.conn_params(password='wrong')), MigrateOptions(path))
    with pytest.raises(PgConnectionError) as err:
        migrate(bad)
    assert 'password authentication failed' in str(err.value) and '\n' not in str(err.value)
    down = MigrateEngine(ConnParams(login_host='127.0.0.1', login_port=free_port(), db='app'),
                         MigrateOptions(path))
    with pytest.raises(PgConnectionError, match='refused the connection'):
        plan_of(down)


def test_bad_folder_nothing_applied(pg_db, tmp_path):
    with pytest.raises(MigrationFilesError, match='does not exist'):
        migrate(engine(pg_db, str(tmp_path / 'missing')))
    path = write(tmp_path, {'V1__a.sql': 'CREATE TABLE a ();', 'V1__b.sql': 'CREATE TABLE b ();'})
    with pytest.raises(MigrationFilesError, match='V1__a.sql and V1__b.sql'):
        migrate(engine(pg_db, path))
    assert tables(pg_db) == []                  # the folder is read before the database is touched


def test_info_reports_everything_and_changes_nothing(pg_db, tmp_path):
    path = write(tmp_path, USERS)
    state = info(pg_db, path)
    assert state['history_exists'] is False and state['pending'] == ['1', '2']
    assert state['current_version'] is None and tables(pg_db) == []
    migrate(engine(pg_db, path, target='1'))
    state = info(pg_db, path)
    assert state['current_version'] == '1' and state['pending'] == ['2']
    assert [a['version'] for a in state['applied']] == ['1']
    assert state['drift']['checked'] is True and state['drift']['drifted'] is False
    write(tmp_path, {'V1__create_users.sql': 'CREATE TABLE users ();'})
    state = info(pg_db, path)
    assert state['checksum_mismatches'][0]['script'] == 'V1__create_users.sql'


def test_drift_detected_with_readable_difference(pg_db, tmp_path):
    path = write(tmp_path, USERS)
    migrate(engine(pg_db, path))
    assert info(pg_db, path)['drift']['drifted'] is False
    rows(pg_db, 'CREATE INDEX users_email_by_hand ON users (email); '
                'ALTER TABLE projects ALTER COLUMN name DROP DEFAULT')
    drift = info(pg_db, path)['drift']
    assert drift['drifted'] is True and drift['since_version'] == '2'
    assert any(line.startswith('+ index public.users_email_by_hand') for line in drift['summary'])
    assert any(line.startswith('~ column public.projects.name') and "default: 'x;y'::text -> null" in line
               for line in drift['summary'])


# -- where a failure is located when the last statement, the history row and COMMIT share one execute

@pytest.mark.parametrize('text, line, statement, error', [
    ('SELEC 1;\n', 1, 'SELEC 1', 'syntax error at or near "SELEC"'),                 # position, 1 statement
    ('\n\nSELECT 1 / 0;\n', 3, 'SELECT 1 / 0', 'division by zero'),                  # no position
    ('CREATE TABLE t (id int PRIMARY KEY);\nINSERT INTO t VALUES (1);\n'
     'INSERT INTO t\n  VALUES (1);\n', 3, 'INSERT INTO t VALUES (1)', 'duplicate key value'),  # no position, last
    ('CREATE TABLE t (id int);\nSELECT nope FROM t;\n', 2, 'SELECT nope FROM t',
     'column "nope" does not exist'),                                                 # position, last
    ('CREATE TABLE t (id int);\nSELECT nope FROM t;\nSELECT 1;\n', 2, 'SELECT nope FROM t',
     'column "nope" does not exist'),                                                 # not the last one
    ('CREATE TABLE p (id int PRIMARY KEY);\n'
     'CREATE TABLE c (p int REFERENCES p DEFERRABLE INITIALLY DEFERRED);\n'
     'INSERT INTO c VALUES (7);\n', 3, 'INSERT INTO c VALUES (7)', 'violates foreign key'),  # fails at COMMIT
])
def test_failure_names_file_line_statement_whatever_the_error_kind(
        pg_db, tmp_path, text, line, statement, error):
    path = write(tmp_path, dict(USERS, **{'V3__bad.sql': text}))
    with pytest.raises(MigrationError) as err:
        # lint off: the statement reaches the server (with lint on, pglast refuses a syntax error at plan time)
        migrate(engine(pg_db, path, lint=False))
    msg = str(err.value)
    assert msg.startswith('versioned 3 (V3__bad.sql) failed at V3__bad.sql line %d: ' % line), msg
    assert error in msg and msg.count('; statement: %s' % statement) == 1, msg
    assert err.value.details['line'] == line and err.value.details['file'] == 'V3__bad.sql'
    assert tables(pg_db) == ['dbdevops_schema_history', 'projects', 'users']               # all of V3 rolled back
    assert [(h[1], h[4]) for h in history(pg_db)] == [('1', True), ('2', True), ('3', False)]
    assert info(pg_db, path)['current_version'] == '2'


def test_failed_history_write_is_not_blamed_on_the_statement(pg_db, tmp_path):
    pg, db = pg_db
    role = 'no_history_%s' % db
    rows(pg_db, 'CREATE ROLE %s' % role)
    try:
        path = write(tmp_path, {'V1__a.sql': 'CREATE TABLE a (id int);\nSET LOCAL ROLE %s;\n' % role})
        with pytest.raises(MigrationError) as err:
            migrate(engine(pg_db, path))
        msg = str(err.value)
        assert msg.startswith('versioned 1 (V1__a.sql) failed at V1__a.sql: permission denied for table '
                              'dbdevops_schema_history'), msg
        assert err.value.details['line'] is None and 'statement:' not in msg
        assert tables(pg_db) == ['dbdevops_schema_history']
        assert [(h[1], h[4]) for h in history(pg_db)] == [('1', False)]
    finally:
        rows(pg_db, 'DROP ROLE %s' % role)


def test_history_row_records_server_measured_duration(pg_db, tmp_path):
    path = write(tmp_path, {'V1__slow.sql': 'SELECT pg_sleep(0.3);'})
    migrate(engine(pg_db, path))
    (ms,), = rows(pg_db, 'SELECT execution_time_ms FROM dbdevops_schema_history')
    assert 300 <= ms < 5000


# -- transaction control inside a transactional file

def test_transaction_commands_in_a_transactional_file_refused_before_anything(pg_db, tmp_path):
    path = write(tmp_path, {'V1__a.sql': 'CREATE TABLE a (id int);',
                            'V2__b.sql': 'BEGIN;\nCREATE TABLE b (id int);\nCOMMIT;\n'})
    for run in (lambda: plan_of(engine(pg_db, path)), lambda: migrate(engine(pg_db, path))):
        with pytest.raises(DbDevopsError) as err:
            run()
        assert str(err.value).startswith('V2__b.sql line 1: BEGIN in a file that runs in a transaction')
        assert 'dbdevops:transaction=off' in str(err.value)
    assert 'a' not in tables(pg_db)
    # savepoints are fine; a transaction=off file may manage its own transactions
    write(tmp_path, {'V2__b.sql': 'SAVEPOINT s;\nCREATE TABLE b (id int);\nROLLBACK TO SAVEPOINT s;\n'
                                  'CREATE TABLE b2 (id int);\n',
                     'V3__c.sql': '-- dbdevops:transaction=off\nBEGIN;\nCREATE TABLE c (id int);\nCOMMIT;\n'})
    plan = plan_of(engine(pg_db, path))
    assert [s.version for s in plan.steps] == ['1', '2', '3'] and 'a' not in tables(pg_db)
    assert migrate(engine(pg_db, path))['current_version'] == '3'
    assert tables(pg_db) == ['a', 'b2', 'c', 'dbdevops_schema_history']
    assert migrate(engine(pg_db, path))['changed'] is False


# -- repeatables across a downgrade / upgrade cycle

def test_repeatable_reapplied_on_the_upgrade_after_a_downgrade(pg_db, tmp_path):
    files = dict(USERS)
    files['U1__create_users.sql'] = 'DROP TABLE users CASCADE;\n'     # takes the view with it
    files['R__views.sql'] = 'CREATE OR REPLACE VIEW user_emails AS SELECT email FROM users;'
    path = write(tmp_path, files)
    migrate(engine(pg_db, path))
    assert 'user_emails' in views(pg_db)

    down = engine(pg_db, path, target='0', allow_downgrade=True)
    assert [(s.kind, s.version) for s in plan_of(down).steps] == [('undo', '2'), ('undo', '1')]
    migrate(down)
    assert views(pg_db) == [] and tables(pg_db) == ['dbdevops_schema_history']
    # the downgrade run again: unchanged, and the repeatable is not run against a database without users
    assert migrate(engine(pg_db, path, target='0', allow_downgrade=True))['changed'] is False
    state = info(pg_db, path)
    assert state['pending'] == ['1', '2'] and state['pending_repeatables'] == ['R__views.sql']

    plan = plan_of(engine(pg_db, path))                                     # check mode: the exact plan
    assert [(s.kind, s.script) for s in plan.steps] == [
        ('versioned', 'V1__create_users.sql'), ('versioned', 'V2__create_projects.sql'),
        ('repeatable', 'R__views.sql')]
    assert plan.steps[-1].note == 're-applied after a downgrade (undo since it last ran)'
    assert views(pg_db) == []
    result = migrate(engine(pg_db, path))
    assert [a['script'] for a in result['applied']][-1] == 'R__views.sql'
    assert 'user_emails' in views(pg_db)
    assert migrate(engine(pg_db, path))['changed'] is False
    assert info(pg_db, path)['pending_repeatables'] == []


def views(pg_db):
    return sorted(r[0] for r in rows(pg_db, "SELECT viewname FROM pg_views WHERE schemaname = 'public'"))


# -- drift after a run that failed half way

def test_no_false_drift_after_a_run_that_failed_half_way(pg_db, tmp_path):
    path = write(tmp_path, {'V1__a.sql': 'CREATE TABLE a (id int);'})
    migrate(engine(pg_db, path))
    write(tmp_path, {'V2__b.sql': 'CREATE TABLE b (id int);', 'V3__bad.sql': 'SELECT 1 / 0;'})
    with pytest.raises(MigrationError):
        migrate(engine(pg_db, path))
    drift = info(pg_db, path)['drift']
    assert drift['checked'] and drift['drifted'] is False and drift['since_version'] == '2', drift
    rows(pg_db, 'CREATE TABLE by_hand (id int)')
    assert info(pg_db, path)['drift']['summary'] == ['+ column public.by_hand.id (integer)',
                                                     '+ table public.by_hand']


def test_history_read_does_not_fetch_stored_fingerprints(pg_db, tmp_path):
    path = write(tmp_path, USERS)
    eng = engine(pg_db, path)
    migrate(eng)
    pg, db = pg_db
    conn = pg.connect(db)
    try:
        hist, exists = eng.history.read(conn)
        assert exists and all('fingerprint' not in r for r in hist.rows)
        assert [r['has_fingerprint'] for r in hist.rows] == [False, True]
        assert 'table public.users' in eng.history.fingerprint_of(conn, 2)
    finally:
        conn.close()
