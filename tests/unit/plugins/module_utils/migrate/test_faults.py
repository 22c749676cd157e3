"""Exactly once, under faults: invalid indexes, lost history, a lost lock, leaking session
settings, unknown targets, a killed run, tampered history and bad options, secrets.

Each test reproduces what a user met, against a real throwaway PostgreSQL, and asserts what
the user relies on: the message, and that nothing was applied twice.
"""

import json
import os
import signal

import pytest

from ansible_collections.dbdevops.postgresql.plugins.module_utils.connection import ConnParams, connect
from ansible_collections.dbdevops.postgresql.plugins.module_utils.errors import DbDevopsError
from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate.files import MigrationFilesError
from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate.lock import lock_key
from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate.steps import MigrationError
from tests.harness.migrate_samples import (
    engine, info, migrate, params_of, start_runner, wait_for_query, write)

SEEDED = {
    'V1__users.sql': 'CREATE TABLE users (id int PRIMARY KEY, email text);\n'
                     "INSERT INTO users VALUES (1, 'a@example.com');\n",
    'V2__settings.sql': 'CREATE TABLE settings (k text, v text);\n'
                        "INSERT INTO settings VALUES ('seed', '1');\n",
}


def rows(pg_db, sql, params=None):
    pg, db = pg_db
    return pg.sql(sql, params, dbname=db)


def one_line(exc):
    text = str(exc)
    assert '\n' not in text and 'Traceback' not in text, text
    return text


# 1. CREATE INDEX CONCURRENTLY IF NOT EXISTS that leaves an INVALID index

INDEX_FILES = {
    'V1__t.sql': 'CREATE TABLE t (x int);\nINSERT INTO t VALUES (1), (1);\n',
    'V2__t_x_key.sql': '-- dbdevops:transaction=off\n'
                       'CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS t_x_key ON t (x);\n',
}


def test_invalid_index_left_by_a_concurrent_build_fails_the_migration_until_dropped(pg_db, tmp_path):
    path = write(tmp_path, INDEX_FILES)
    with pytest.raises(MigrationError) as err:
        migrate(engine(pg_db, path))
    assert 'INVALID index left behind: public.t_x_key' in one_line(err.value)
    rows(pg_db, 'DELETE FROM t WHERE ctid <> (SELECT min(ctid) FROM t)')   # the data is fixed

    # the retry: IF NOT EXISTS skips the half-built index; that must not count as applied
    with pytest.raises(MigrationError) as err:
        migrate(engine(pg_db, path))
    msg = one_line(err.value)
    assert 'V2__t_x_key.sql line 2' in msg and 'public.t_x_key is INVALID' in msg
    assert 'drop_invalid_indexes: true' in msg
    assert err.value.details['invalid_indexes'] == ['public.t_x_key']
    assert rows(pg_db, "SELECT version, success FROM dbdevops_schema_history ORDER BY installed_rank") == [
        ('1', True), ('2', False), ('2', False)]
    state = info(pg_db, path)
    assert state['current_version'] == '1'
    assert [i['index'] for i in state['invalid_indexes']] == ['public.t_x_key']
    assert state['invalid_indexes'][0]['table'] == 'public.t'

    result = migrate(engine(pg_db, path, drop_invalid_indexes=True))
    assert [a['version'] for a in result['applied']] == ['2']
    assert rows(pg_db, "SELECT indisvalid FROM pg_index WHERE indexrelid = 'public.t_x_key'::regclass") == [
        (True,)]
    state = info(pg_db, path)
    assert state['invalid_indexes'] == [] and not state['drift']['drifted']


# 2. History lost on a database that is not empty

def test_lost_history_on_a_populated_database_is_refused_naming_both_ways_out(pg_db, tmp_path):
    path = write(tmp_path, SEEDED)
    migrate(engine(pg_db, path))
    rows(pg_db, 'DROP TABLE dbdevops_schema_history')
    for opts in ({}, dict(history_table='schema_migration')):
        with pytest.raises(MigrationError) as err:
            migrate(engine(pg_db, path, **opts))
        msg = one_line(err.value)
        assert 'no history table' in msg and 'public.users' in msg and 'public.settings' in msg
        assert 'baseline_version' in msg and 'history_schema' in msg and 'history_table' in msg
        assert 'nothing was applied' in msg
    assert rows(pg_db, 'SELECT count(*) FROM settings') == [(1,)]        # seed rows not doubled
    assert rows(pg_db, "SELECT to_regclass('public.schema_migration')") == [(None,)]

    result = migrate(engine(pg_db, path, baseline_version='2'))
    assert result['current_version'] == '2' and result['applied'][0]['kind'] == 'baseline'
    assert rows(pg_db, 'SELECT count(*) FROM settings') == [(1,)]


def test_history_table_moved_elsewhere_is_named_in_the_refusal(pg_db, tmp_path):
    path = write(tmp_path, SEEDED)
    migrate(engine(pg_db, path, history_schema='ops'))
    with pytest.raises(MigrationError) as err:
        migrate(engine(pg_db, path))                         # history_schema forgotten
    assert 'a history table exists at ops.dbdevops_schema_history' in one_line(err.value)
    assert rows(pg_db, 'SELECT count(*) FROM users') == [(1,)]


def test_empty_database_and_empty_history_schema_still_migrate(pg_db, tmp_path):
    path = write(tmp_path, SEEDED)
    rows(pg_db, 'CREATE SCHEMA ops')
    assert migrate(engine(pg_db, path, history_schema='ops'))['current_version'] == '2'
    assert rows(pg_db, 'SELECT count(*) FROM ops.dbdevops_schema_history') == [(2,)]


# 3. The lock session ended by the server

TERMINATE_LOCK = ("SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
                  "WHERE application_name = 'dbdevops-migrate-lock' AND datname = current_database();\n")


@pytest.mark.parametrize('transaction', ['on', 'off'])
def test_lock_session_terminated_mid_run_stops_before_anything_else_applies(pg_db, tmp_path, transaction):
    path = write(tmp_path, {
        'V1__a.sql': 'CREATE TABLE a (id int);\n',
        'V2__kill_lock.sql': '-- dbdevops:transaction=%s\n%s' % (transaction, TERMINATE_LOCK),
        'V3__seed.sql': '-- dbdevops:transaction=off\nCREATE TABLE seeded (id int);\n'
                        'INSERT INTO a VALUES (1);\n',
    })
    with pytest.raises(MigrationError) as err:
        migrate(engine(pg_db, path))
    msg = one_line(err.value)
    assert 'migration lock' in msg and 'lost' in msg and 'V2__kill_lock.sql' in msg
    assert 'nothing further was applied' in msg
    assert rows(pg_db, "SELECT to_regclass('public.seeded')") == [(None,)]
    assert rows(pg_db, 'SELECT count(*) FROM a') == [(0,)]
    assert rows(pg_db, 'SELECT version FROM dbdevops_schema_history WHERE success') == [('1',)]


def test_server_idle_session_timeout_does_not_end_the_lock(pg_db, tmp_path):
    pg, db = pg_db
    pg.sql('ALTER DATABASE "%s" SET idle_session_timeout = \'300ms\'' % db)
    path = write(tmp_path, {
        'V1__slow.sql': 'CREATE TABLE a (id int);\nSELECT pg_sleep(1);\n',
        'V2__more.sql': '-- dbdevops:transaction=off\nSELECT pg_sleep(0.5);\nCREATE TABLE b (id int);\n',
    })
    result = migrate(engine(pg_db, path))
    assert [a['version'] for a in result['applied']] == ['1', '2']


def test_lock_session_has_keepalives(pg_db, tmp_path):
    from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate import lock
    conn = lock.connect_lock_session(params_of(pg_db))
    try:
        dsn = conn.get_dsn_parameters()
        assert dsn.get('keepalives') == '1' and dsn.get('keepalives_idle')
    finally:
        conn.close()


# 4. Session settings of one file leak into the next

def test_each_file_starts_from_a_clean_session(pg_db, tmp_path):
    path = write(tmp_path, {
        'V1__other.sql': 'CREATE SCHEMA other;\nCREATE TABLE t (id serial);\nSET search_path = other;\n',
        'V2__t2.sql': 'CREATE TABLE t2 (id int);\n',
        'V3__cfg.sql': "SELECT set_config('search_path', 'other', false);\n"
                       "SET statement_timeout = '1ms';\n",
        'V4__t4.sql': '-- dbdevops:transaction=off\nSELECT pg_sleep(0.05);\nCREATE TABLE t4 (id int);\n',
    })
    migrate(engine(pg_db, path))
    assert rows(pg_db, "SELECT to_regclass('public.t2') IS NOT NULL, to_regclass('public.t4') IS NOT NULL, "
                       "to_regclass('other.t2'), to_regclass('other.t4')") == [(True, True, None, None)]
    assert info(pg_db, path)['drift']['drifted'] is False


def test_session_is_cleaned_after_a_failure_too(pg_db, tmp_path):
    path = write(tmp_path, {
        'V1__t.sql': 'CREATE SCHEMA other;\nCREATE TABLE t (id serial);\n',
        'V2__bad.sql': '-- dbdevops:transaction=off\nSET search_path = other;\nSELECT 1/0;\n',
    })
    with pytest.raises(MigrationError):
        migrate(engine(pg_db, path))
    drift = info(pg_db, path)['drift']
    assert drift['checked'] and drift['drifted'] is False, drift


# 5. Targets no file has; version 0

def test_target_no_file_has_is_an_error_naming_the_nearest_versions(pg_db, tmp_path):
    path = write(tmp_path, {'V1__a.sql': 'CREATE TABLE a (id int);\n',
                            'V2__b.sql': 'CREATE TABLE b (id int);\n',
                            'V3__c.sql': 'CREATE TABLE c (id int);\n'})
    with pytest.raises(MigrationError) as err:
        migrate(engine(pg_db, path, target='7'))
    msg = one_line(err.value)
    assert 'target 7' in msg and 'no migration' in msg and 'nearest: 3' in msg and 'nothing was applied' in msg
    with pytest.raises(MigrationError) as err:
        migrate(engine(pg_db, path, target='2.5'))
    assert 'nearest: 2, 3' in one_line(err.value)
    assert rows(pg_db, "SELECT to_regclass('public.dbdevops_schema_history')") == [(None,)]
    assert migrate(engine(pg_db, path, target='2'))['current_version'] == '2'


def test_target_zero_undoes_everything_including_version_zero(pg_db, tmp_path):
    path = write(tmp_path, {'V0__init.sql': 'CREATE TABLE zero (id int);\n', 'U0__init.sql': 'DROP TABLE zero;\n',
                            'V1__a.sql': 'CREATE TABLE a (id int);\n', 'U1__a.sql': 'DROP TABLE a;\n'})
    migrate(engine(pg_db, path))
    result = migrate(engine(pg_db, path, target='0', allow_downgrade=True))
    assert [(a['version'], a['direction']) for a in result['applied']] == [('1', 'down'), ('0', 'down')]
    assert result['current_version'] is None
    assert rows(pg_db, "SELECT to_regclass('public.zero'), to_regclass('public.a')") == [(None, None)]


def test_target_below_the_first_version_undoes_everything(pg_db, tmp_path):
    path = write(tmp_path, {'V1.1__a.sql': 'CREATE TABLE a (id int);\n', 'U1.1__a.sql': 'DROP TABLE a;\n',
                            'V2__b.sql': 'CREATE TABLE b (id int);\n', 'U2__b.sql': 'DROP TABLE b;\n'})
    migrate(engine(pg_db, path))
    result = migrate(engine(pg_db, path, target='1', allow_downgrade=True))
    assert [a['version'] for a in result['applied']] == ['2', '1.1'] and result['current_version'] is None


# 6. A killed run is not drift

def test_kill_9_mid_run_is_not_reported_as_drift_and_the_next_run_finishes(pg_db, tmp_path):
    pg, db = pg_db
    files = {'V1__a.sql': 'CREATE TABLE a (id int);\n'}
    path = write(tmp_path, files)
    migrate(engine(pg_db, path))
    write(tmp_path, {'V2__b.sql': 'CREATE TABLE b (id int);\n',
                     'V3__c.sql': 'CREATE TABLE c (id int, note text DEFAULT \'x\');\n',
                     'V4__slow.sql': 'CREATE TABLE d (id int);\nSELECT pg_sleep(30);\n',
                     'V5__e.sql': 'CREATE TABLE e (id int);\n'})
    proc = start_runner(pg, db, path)
    try:
        assert wait_for_query(pg, db, 'SELECT pg_sleep(30)'), 'the runner never reached V4'
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    state = info(pg_db, path)
    assert state['current_version'] == '3'
    assert state['drift']['drifted'] is False, state['drift']

    write(tmp_path, {'V4__slow.sql': 'CREATE TABLE d (id int);\nSELECT pg_sleep(0.01);\n'})
    result = migrate(engine(pg_db, path))
    assert [a['version'] for a in result['applied']] == ['4', '5']
    drift = info(pg_db, path)['drift']
    assert drift['checked'] and drift['drifted'] is False and drift['since_version'] == '5'
    rows(pg_db, 'CREATE INDEX by_hand ON a (id)')
    assert info(pg_db, path)['drift']['drifted'] is True


# 7. Messages, not raw exceptions

@pytest.mark.parametrize('tamper, expect', [
    ('ALTER TABLE dbdevops_schema_history DROP COLUMN checksum',
     'history table public.dbdevops_schema_history has no column checksum'),
    ('ALTER TABLE dbdevops_schema_history ALTER success DROP NOT NULL; '
     "UPDATE dbdevops_schema_history SET success = NULL WHERE version = '2'",
     'public.dbdevops_schema_history row installed_rank 2: success is NULL'),
    ("UPDATE dbdevops_schema_history SET version = 'two' WHERE version = '2'",
     'public.dbdevops_schema_history row installed_rank 2: version "two" is not a version'),
    ("ALTER TABLE dbdevops_schema_history ALTER type DROP NOT NULL; "
     "UPDATE dbdevops_schema_history SET type = NULL WHERE version = '1'",
     'public.dbdevops_schema_history row installed_rank 1: type is NULL'),
], ids=['column dropped', 'NULL success', 'non-numeric version', 'NULL type'])
def test_tampered_history_is_a_message_naming_table_row_and_column(pg_db, tmp_path, tamper, expect):
    path = write(tmp_path, SEEDED)
    migrate(engine(pg_db, path))
    rows(pg_db, tamper)
    for run in (lambda: migrate(engine(pg_db, path)), lambda: info(pg_db, path)):
        with pytest.raises(MigrationError) as err:
            run()
        assert expect in one_line(err.value)


def test_role_without_create_gets_a_message_naming_schema_and_role(pg_db, tmp_path):
    pg, db = pg_db
    pg.sql('CREATE ROLE app_nocreate LOGIN')
    try:
        pg.sql('REVOKE CREATE ON SCHEMA public FROM PUBLIC', dbname=db)
        pg.sql('REVOKE CREATE ON DATABASE "%s" FROM PUBLIC' % db)
        path = write(tmp_path, {'V1__a.sql': 'CREATE TABLE a (id int);\n'})
        params = params_of(pg_db).replace(login_user='app_nocreate')
        from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate.engine import MigrateEngine
        from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate.options import MigrateOptions
        for schema, expect in (('public', 'permission denied for schema public'),
                               ('ops', 'permission denied for database')):
            eng = MigrateEngine(params, MigrateOptions(path, history_schema=schema))
            with pytest.raises(MigrationError) as err:
                eng.apply(eng.plan())
            msg = one_line(err.value)
            assert 'cannot create the history table %s.dbdevops_schema_history' % schema in msg
            assert expect in msg and 'app_nocreate' in msg and 'GRANT CREATE' in msg
    finally:
        pg.sql('DROP ROLE app_nocreate')


@pytest.mark.parametrize('opts, expect', [
    (dict(lock_timeout='soon'), 'lock_timeout "soon" is not a valid duration'),
    (dict(statement_timeout='5 parsecs'), 'statement_timeout "5 parsecs" is not a valid duration'),
])
def test_bad_timeouts_are_messages_before_anything_runs(pg_db, tmp_path, opts, expect):
    path = write(tmp_path, {'V1__a.sql': 'CREATE TABLE a (id int);\n'})
    with pytest.raises(MigrationError) as err:
        engine(pg_db, path, **opts).plan()
    assert expect in one_line(err.value)
    assert rows(pg_db, "SELECT to_regclass('public.dbdevops_schema_history')") == [(None,)]


@pytest.mark.parametrize('connect_params, expect', [
    ({'no_such_option': '1'}, 'invalid connection option "no_such_option"'),
    ({'keepalives_idle': 'often'}, 'often'),
])
def test_bad_connect_params_are_a_message(pg_db, tmp_path, connect_params, expect):
    path = write(tmp_path, {'V1__a.sql': 'CREATE TABLE a (id int);\n'})
    from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate.engine import (
        MigrateEngine, MigrationInfoEngine)
    from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate.options import (
        MigrateOptions, MigrationInfoOptions)
    params = params_of(pg_db).replace(connect_params=connect_params)
    for eng in (MigrateEngine(params, MigrateOptions(path)), MigrationInfoEngine(params, MigrationInfoOptions(path))):
        with pytest.raises(DbDevopsError) as err:
            eng.plan()
        msg = one_line(err.value)
        assert 'connect_params' in msg and expect in msg


def test_nul_byte_in_a_migration_file_names_the_file(pg_db, tmp_path):
    path = write(tmp_path, {'V1__a.sql': 'CREATE TABLE a (id int);\n',
                            'V2__nul.sql': 'CREATE TABLE b (id int);\n-- \x00 oops\n'})
    with pytest.raises(MigrationFilesError) as err:
        migrate(engine(pg_db, path))
    msg = one_line(err.value)
    assert 'V2__nul.sql (contains a NUL byte at line 2)' in msg
    assert rows(pg_db, "SELECT to_regclass('public.a')") == [(None,)]


def test_lock_wait_names_the_holder_fields_in_place(pg_db, tmp_path):
    pg, db = pg_db
    path = write(tmp_path, {'V1__a.sql': 'CREATE TABLE a (id int);\n'})
    holder = connect(params_of(pg_db), autocommit=True, application_name='holder-app')
    try:
        with holder.cursor() as cur:
            cur.execute('SELECT pg_advisory_lock(%s), pg_backend_pid()',
                        (lock_key('public', 'dbdevops_schema_history'),))
            pid = cur.fetchone()[1]
        with pytest.raises(MigrationError) as err:
            migrate(engine(pg_db, path, lock_wait=0))
        msg = one_line(err.value)
        assert 'pid %d (holder-app, user postgres, from local socket, connected 20' % pid in msg, msg
        assert err.value.details['lock_holder'] == pid
    finally:
        holder.close()


# 8. Secret placeholders

SECRET = 'Sup3r-s3cret-Pa55'


def test_secret_placeholders_are_used_but_shown_nowhere(pg_db, tmp_path):
    pg, db = pg_db
    path = write(tmp_path, {
        'V1__role.sql': "CREATE ROLE app_secret_login LOGIN PASSWORD '${app_password}';\n"
                        "CREATE TABLE cfg (k text, v text);\nINSERT INTO cfg VALUES ('token', '${token}');\n",
        'V2__bad.sql': "SELECT '${app_password}'::int;\n",
    })
    secrets = dict(app_password=SECRET, token=SECRET + '-tok')
    try:
        eng = engine(pg_db, path, secret_placeholders=secrets, target='1')
        plan = eng.plan()
        shown = json.dumps(plan.result(), default=str)
        assert '********' in shown and SECRET not in shown
        result = eng.apply(plan)
        shown = json.dumps(result, default=str)
        assert SECRET not in shown and '********' in result['queries'][0]
        assert rows(pg_db, 'SELECT v FROM cfg') == [(SECRET + '-tok',)]
        connect(ConnParams.from_params(pg.conn_params(db, user='app_secret_login', password=SECRET))).close()

        with pytest.raises(MigrationError) as err:
            migrate(engine(pg_db, path, secret_placeholders=secrets))
        failure = json.dumps([str(err.value), err.value.details], default=str)
        assert SECRET not in failure and 'invalid input syntax for type integer' in failure
        history = json.dumps(rows(pg_db, 'SELECT row_to_json(h) FROM dbdevops_schema_history h'), default=str)
        assert SECRET not in history and '********' in history
        state = json.dumps(info(pg_db, path, secret_placeholders=secrets), default=str)
        assert SECRET not in state and info(pg_db, path, secret_placeholders=secrets)['checksum_mismatches'] == []
    finally:
        pg.sql('DROP ROLE IF EXISTS app_secret_login')


def test_changing_a_secret_is_not_a_checksum_mismatch(pg_db, tmp_path):
    path = write(tmp_path, {'V1__cfg.sql': "CREATE TABLE cfg (v text);\nINSERT INTO cfg VALUES ('${tok}');\n"})
    migrate(engine(pg_db, path, secret_placeholders=dict(tok='one')))
    assert migrate(engine(pg_db, path, secret_placeholders=dict(tok='two')))['changed'] is False
