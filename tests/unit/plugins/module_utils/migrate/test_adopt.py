"""Our own history table name, the old one kept, other tools' histories recognised and adopted.

Each other tool's history table is created here with the columns that tool
creates (dbmate, golang-migrate, Flyway, Rails), filled as that tool would,
then adopted: check mode imports nothing, the real run imports and applies
the newer files, a second run changes nothing.
"""

import pytest

from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate.adopt import flyway_checksum
from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate.steps import MigrationError
from tests.harness.migrate_samples import engine, info, migrate, write

NEW = 'dbdevops_schema_history'

DBMATE_TABLE = 'CREATE TABLE public.schema_migrations (version varchar(128) PRIMARY KEY)'
GOLANG_TABLE = 'CREATE TABLE public.schema_migrations (version bigint NOT NULL PRIMARY KEY, dirty boolean NOT NULL)'
FLYWAY_TABLE = '''
CREATE TABLE "public"."flyway_schema_history" (
    "installed_rank" INT NOT NULL,
    "version" VARCHAR(50),
    "description" VARCHAR(200) NOT NULL,
    "type" VARCHAR(20) NOT NULL,
    "script" VARCHAR(1000) NOT NULL,
    "checksum" INTEGER,
    "installed_by" VARCHAR(100) NOT NULL,
    "installed_on" TIMESTAMP NOT NULL DEFAULT now(),
    "execution_time" INTEGER NOT NULL,
    "success" BOOLEAN NOT NULL
);
ALTER TABLE "public"."flyway_schema_history" ADD CONSTRAINT "flyway_schema_history_pk" PRIMARY KEY ("installed_rank");
CREATE INDEX "flyway_schema_history_s_idx" ON "public"."flyway_schema_history" ("success");
'''


def rows(pg_db, sql, params=None):
    pg, db = pg_db
    return pg.sql(sql, params, dbname=db)


def exists(pg_db, table):
    return rows(pg_db, 'SELECT to_regclass(%s) IS NOT NULL', (table,))[0][0]


def ours(pg_db, table=NEW):
    return rows(pg_db, 'SELECT version, type, script, checksum IS NOT NULL, error_message FROM public.%s '
                       'WHERE success ORDER BY installed_rank' % table)


def tables(pg_db):
    return sorted(r[0] for r in rows(pg_db, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))


def flat(msg):
    return ' '.join(str(msg).split())


def check_adopt_run_rerun(pg_db, path, **opts):
    """check mode (nothing written) -> real run -> second run unchanged; (plan, result) values."""
    before = tables(pg_db)
    plan = engine(pg_db, path, **opts).plan()
    assert plan.changed and tables(pg_db) == before             # check mode imports nothing
    result = migrate(engine(pg_db, path, **opts))
    assert result['changed']
    again = migrate(engine(pg_db, path, **opts))
    assert not again['changed'] and again['applied'] == [] and again['adopt'] is None
    # only the planner's own notes (an applied version with no file) remain
    assert all(w.startswith('applied versions with no file') for w in again['warnings'])
    return plan.result(), result


# dbmate's own file format, read as it is
DBMATE_FILES = {
    '20240101000001_users.sql': '-- migrate:up\nCREATE TABLE users (id int PRIMARY KEY);\n\n'
                                '-- migrate:down\nDROP TABLE users;\n',
    '20240101000002_projects.sql': '-- migrate:up\nCREATE TABLE projects (id int PRIMARY KEY);\n\n'
                                   '-- migrate:down\nDROP TABLE projects;\n',
    '20240101000003_tasks.sql': '-- migrate:up\nCREATE TABLE tasks (id int PRIMARY KEY);\n\n'
                                '-- migrate:down\nDROP TABLE tasks;\n',
}


def dbmate_database(pg_db):
    rows(pg_db, DBMATE_TABLE + '; CREATE TABLE users (id int PRIMARY KEY); '
         'CREATE TABLE projects (id int PRIMARY KEY); '
         "INSERT INTO schema_migrations VALUES ('20240101000001'), ('20240101000002')")


def test_dbmate_history_adopted_and_newer_file_applied_in_one_run(pg_db, tmp_path):
    path = write(tmp_path, DBMATE_FILES)
    dbmate_database(pg_db)
    planned, result = check_adopt_run_rerun(pg_db, path, adopt_from='dbmate')
    for values in (planned, result):
        adopt = values['adopt']
        assert adopt['tool'] == 'dbmate' and adopt['table'] == 'public.schema_migrations'
        assert adopt['imported'] == ['20240101000001', '20240101000002']
        assert adopt['newer'] == ['20240101000003'] and adopt['without_file'] == []
        assert values['history_table'] == 'public.%s' % NEW
    assert [s['script'] for s in planned['plan']['steps']] == ['20240101000003_tasks.sql']
    assert [a['version'] for a in result['applied']] == ['20240101000003']
    assert result['current_version'] == '20240101000003' and result['history_created']
    assert ours(pg_db) == [
        ('20240101000001', 'versioned', '20240101000001_users.sql', True,
         'adopted from dbmate history public.schema_migrations'),
        ('20240101000002', 'versioned', '20240101000002_projects.sql', True,
         'adopted from dbmate history public.schema_migrations'),
        ('20240101000003', 'versioned', '20240101000003_tasks.sql', True, None)]
    assert 'tasks' in tables(pg_db)
    # dbmate's table is left as it was
    assert rows(pg_db, 'SELECT count(*) FROM schema_migrations') == [(2,)]
    # the adopted history is a full history: undo works through it
    down = migrate(engine(pg_db, path, target='20240101000001', allow_downgrade=True))
    assert [a['version'] for a in down['applied']] == ['20240101000003', '20240101000002']
    assert 'projects' not in tables(pg_db)


def test_check_mode_shows_the_adoption_in_the_diff(pg_db, tmp_path):
    path = write(tmp_path, DBMATE_FILES)
    dbmate_database(pg_db)
    plan = engine(pg_db, path, adopt_from='auto').plan()
    assert plan.diff['before'] == 'version: none\n'
    assert '-- adopt dbmate history public.schema_migrations into public.%s' % NEW in plan.diff['after']
    assert '--   applied: 20240101000001, 20240101000002' in plan.diff['after']
    assert not exists(pg_db, 'public.%s' % NEW)


def test_a_version_the_other_tool_applied_after_the_adoption_is_not_run_twice(pg_db, tmp_path):
    path = write(tmp_path, DBMATE_FILES)
    dbmate_database(pg_db)
    migrate(engine(pg_db, path, adopt_from='dbmate'))
    write(tmp_path, {'20240101000004_more.sql': '-- migrate:up\nCREATE TABLE more (id int);\n'})
    rows(pg_db, "CREATE TABLE more (id int); INSERT INTO schema_migrations VALUES ('20240101000004')")
    with pytest.raises(MigrationError) as err:
        migrate(engine(pg_db, path, adopt_from='dbmate'))
    msg = flat(err.value)
    assert '20240101000004_more.sql' in msg and 'dbmate history public.schema_migrations' in msg
    assert 'nothing was applied' in msg
    assert len(ours(pg_db)) == 3


def test_golang_migrate_history_adopted_newer_files_applied(pg_db, tmp_path):
    path = write(tmp_path, {
        '000001_users.up.sql': 'CREATE TABLE users (id int);\n', '000001_users.down.sql': 'DROP TABLE users;\n',
        '000002_projects.up.sql': 'CREATE TABLE projects (id int);\n',
        '000002_projects.down.sql': 'DROP TABLE projects;\n',
        '000003_tasks.up.sql': 'CREATE TABLE tasks (id int);\n', '000003_tasks.down.sql': 'DROP TABLE tasks;\n',
    })
    rows(pg_db, GOLANG_TABLE + '; CREATE TABLE users (id int); CREATE TABLE projects (id int); '
         'INSERT INTO schema_migrations VALUES (2, false)')
    planned, result = check_adopt_run_rerun(pg_db, path, adopt_from='golang-migrate')
    assert planned['adopt']['imported'] == ['1', '2'] and planned['adopt']['newer'] == ['3']
    assert [a['version'] for a in result['applied']] == ['3']
    assert [r[:3] for r in ours(pg_db)] == [('1', 'versioned', '000001_users.up.sql'),
                                            ('2', 'versioned', '000002_projects.up.sql'),
                                            ('3', 'versioned', '000003_tasks.up.sql')]


def test_dirty_golang_migrate_history_is_refused_with_nothing_written(pg_db, tmp_path):
    path = write(tmp_path, {'1_users.up.sql': 'CREATE TABLE users (id int);\n',
                            '2_projects.up.sql': 'CREATE TABLE projects (id int);\n'})
    rows(pg_db, GOLANG_TABLE + '; CREATE TABLE users (id int); INSERT INTO schema_migrations VALUES (2, true)')
    for check in (True, False):
        eng = engine(pg_db, path, adopt_from='auto')
        with pytest.raises(MigrationError) as err:
            eng.plan() if check else migrate(eng)
        msg = flat(err.value)
        assert 'golang-migrate history public.schema_migrations' in msg and 'dirty at version 2' in msg
        assert 'migrate force 2' in msg and 'nothing was applied' in msg
    assert not exists(pg_db, 'public.%s' % NEW) and tables(pg_db) == ['schema_migrations', 'users']


FLYWAY_FILES = {
    'V1__users.sql': 'CREATE TABLE users (id int);\n',
    'V2__projects.sql': 'CREATE TABLE projects (id int, name text);\n',     # changed since Flyway ran it
    'V3__tasks.sql': 'CREATE TABLE tasks (id int);\n',
    'R__user_view.sql': 'CREATE OR REPLACE VIEW user_view AS SELECT id FROM users;\n',
}


def flyway_database(pg_db, baseline=False):
    v1 = flyway_checksum(FLYWAY_FILES['V1__users.sql'])
    view = flyway_checksum(FLYWAY_FILES['R__user_view.sql'])
    first = ("(1, '1', '<< Flyway Baseline >>', 'BASELINE', '<< Flyway Baseline >>', NULL, 'flyway', now(), 0, true)"
             if baseline else
             "(1, '1', 'users', 'SQL', 'V1__users.sql', %d, 'flyway', now(), 5, true)" % v1)
    rows(pg_db, FLYWAY_TABLE + '; CREATE TABLE users (id int); CREATE TABLE projects (id int); '
         'CREATE TABLE old (id int); '
         'CREATE VIEW user_view AS SELECT id FROM users; '
         'INSERT INTO flyway_schema_history VALUES ' + first + ', '
         "(2, '1.5', 'old', 'SQL', 'V1_5__old.sql', 123, 'flyway', now(), 7, true), "
         "(3, '2', 'projects', 'SQL', 'V2__projects.sql', 42, 'flyway', now(), 9, true), "
         "(4, NULL, 'user view', 'SQL', 'R__user_view.sql', %d, 'flyway', now(), 1, true)" % view)


def test_flyway_history_adopted_with_our_checksums_and_differences_said(pg_db, tmp_path):
    path = write(tmp_path, FLYWAY_FILES)
    flyway_database(pg_db)
    planned, result = check_adopt_run_rerun(pg_db, path, adopt_from='flyway')
    adopt = result['adopt']
    assert adopt['tool'] == 'flyway' and adopt['table'] == 'public.flyway_schema_history'
    assert adopt['imported'] == ['1', '2'] and adopt['without_file'] == ['1.5']
    assert adopt['repeatables'] == ['R__user_view.sql'] and adopt['newer'] == ['3']
    assert [d['script'] for d in adopt['checksum_differences']] == ['V2__projects.sql']
    text = ' | '.join(result['warnings'])
    assert "Flyway's checksums (CRC-32) are not this collection's" in text
    assert 'V2__projects.sql differs from what Flyway applied' in text
    assert 'versions 1.5 have no file' in text
    # the repeatable Flyway ran with this content does not run again; V3 does
    assert [s['script'] for s in planned['plan']['steps']] == ['V3__tasks.sql']
    assert [a['script'] for a in result['applied']] == ['V3__tasks.sql']
    assert rows(pg_db, 'SELECT version, script, split_part(applied_by, \' \', 1), execution_time_ms, checksum IS NOT NULL '
                       'FROM %s WHERE error_message LIKE %%s ORDER BY installed_rank' % NEW, ('adopted%',)) == [
        ('1', 'V1__users.sql', 'flyway', 5, True), ('1.5', 'V1_5__old.sql', 'flyway', 7, False),
        ('2', 'V2__projects.sql', 'flyway', 9, True), (None, 'R__user_view.sql', 'postgres', 0, True)]
    # our checksums: a second run validates them without complaint
    assert info(pg_db, path)['checksum_mismatches'] == []


def test_flyway_baseline_is_adopted_as_our_baseline(pg_db, tmp_path):
    path = write(tmp_path, FLYWAY_FILES)
    flyway_database(pg_db, baseline=True)
    _planned, result = check_adopt_run_rerun(pg_db, path, adopt_from='auto')
    assert result['adopt']['baseline'] == '1' and result['adopt']['imported'] == ['2']
    assert [a['script'] for a in result['applied']] == ['V3__tasks.sql']
    state = info(pg_db, path)
    assert state['baseline'] == '1' and state['pending'] == [] and state['current_version'] == '3'


def test_flyway_checksum_is_crc32_of_the_lines_without_line_breaks():
    assert flyway_checksum('SELECT 1;\n') == flyway_checksum('SELECT 1;\r\n') == flyway_checksum('\ufeffSELECT 1;')
    assert flyway_checksum('a\nb\n') == flyway_checksum('ab')
    assert -2 ** 31 <= flyway_checksum('x' * 1000) < 2 ** 31


def test_other_tools_history_is_named_instead_of_a_raw_error(pg_db, tmp_path):
    path = write(tmp_path, DBMATE_FILES)
    dbmate_database(pg_db)
    with pytest.raises(MigrationError) as err:
        engine(pg_db, path).plan()
    msg = flat(err.value)
    assert 'dbmate history public.schema_migrations (2 versions, latest 20240101000002)' in msg
    assert 'set adopt_from: dbmate' in msg and 'nothing was applied' in msg
    assert err.value.details['foreign_histories'][0]['tool'] == 'dbmate'
    # pointing history_table at it explicitly: named, not "column installed_rank does not exist"
    with pytest.raises(MigrationError) as err:
        engine(pg_db, path, history_table='schema_migrations').plan()
    msg = flat(err.value)
    assert 'public.schema_migrations is the history table of dbmate, not of this collection' in msg
    assert 'installed_rank does not exist' not in msg and 'adopt_from: dbmate' in msg
    # migration_info says so too, as a warning
    state = info(pg_db, path)
    assert state['foreign_histories'] == [dict(tool='dbmate', table='public.schema_migrations', adoptable=True,
                                               versions=2, latest='20240101000002', problem=None)]
    assert any('dbmate history public.schema_migrations' in w for w in state['warnings'])
    assert not exists(pg_db, 'public.%s' % NEW)


def test_rails_history_is_recognised_and_not_adopted(pg_db, tmp_path):
    path = write(tmp_path, {'V1__users.sql': 'CREATE TABLE users (id int);\n'})
    rows(pg_db, 'CREATE TABLE schema_migrations (version character varying NOT NULL PRIMARY KEY); '
                'CREATE TABLE ar_internal_metadata (key varchar PRIMARY KEY, value varchar, '
                'created_at timestamp(6) NOT NULL, updated_at timestamp(6) NOT NULL); '
                "INSERT INTO schema_migrations VALUES ('20240101000001')")
    with pytest.raises(MigrationError) as err:
        engine(pg_db, path).plan()
    msg = flat(err.value)
    assert 'rails history public.schema_migrations' in msg and 'cannot be imported' in msg
    with pytest.raises(MigrationError) as err:
        engine(pg_db, path, adopt_from='dbmate').plan()
    assert 'no dbmate history table' in flat(err.value) and 'rails history' in flat(err.value)
    # baseline_version still works, with the other history named
    result = migrate(engine(pg_db, path, baseline_version='0'))
    assert [a['script'] for a in result['applied']] == ['<baseline>', 'V1__users.sql']
    assert any('rails history' in w for w in result['warnings'])


def test_old_default_history_table_keeps_working(pg_db, tmp_path):
    path = write(tmp_path, {'V1__users.sql': 'CREATE TABLE users (id int);\n'})
    migrate(engine(pg_db, path, history_table='schema_migrations'))     # as an older release made it
    assert not exists(pg_db, 'public.%s' % NEW)
    write(tmp_path, {'V2__projects.sql': 'CREATE TABLE projects (id int);\n'})
    plan = engine(pg_db, path).plan()
    assert [s.script for s in plan.work['migration'].steps] == ['V2__projects.sql']
    result = migrate(engine(pg_db, path))
    assert result['history_table'] == 'public.schema_migrations'
    assert [a['version'] for a in result['applied']] == ['2']
    warning = [w for w in result['warnings'] if 'former' in w or 'before this version' in w]
    assert warning and 'ALTER TABLE public.schema_migrations RENAME TO %s' % NEW in warning[0]
    assert 'history_table: schema_migrations' in warning[0]
    assert not exists(pg_db, 'public.%s' % NEW)
    assert rows(pg_db, 'SELECT count(*) FROM schema_migrations WHERE success') == [(2,)]
    assert info(pg_db, path)['current_version'] == '2'
    # given explicitly: no warning; renamed as the warning says: the new name, no warning
    assert migrate(engine(pg_db, path, history_table='schema_migrations'))['warnings'] == []
    rows(pg_db, 'ALTER TABLE public.schema_migrations RENAME TO %s' % NEW)
    again = migrate(engine(pg_db, path))
    assert not again['changed'] and again['warnings'] == [] and again['history_table'] == 'public.%s' % NEW


def test_new_default_name_on_a_fresh_database(pg_db, tmp_path):
    path = write(tmp_path, {'V1__users.sql': 'CREATE TABLE users (id int);\n'})
    result = migrate(engine(pg_db, path, adopt_from='auto'))        # nothing to adopt: a normal run
    assert result['adopt'] is None and result['history_table'] == 'public.%s' % NEW
    assert tables(pg_db) == [NEW, 'users']
    # a corpus dropping dbmate's schema_migrations does not touch ours
    rows(pg_db, 'DROP TABLE IF EXISTS schema_migrations')
    assert not migrate(engine(pg_db, path))['changed']
