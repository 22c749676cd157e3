"""Every engine feature through the same cycle, against a real throwaway PostgreSQL:

check mode (plan) -> would change, and the database is exactly as before (schema
fingerprint including the history table, and every history row) -> real run ->
the effect -> the same run again -> unchanged, and the plan is empty.
"""


import pytest

from ansible_collections.dbdevops.postgresql.plugins.module_utils import fingerprint as fpmod
from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate.steps import MigrationError
from tests.harness.migrate_samples import engine, migrate, plan_of, write


def sql(pg_db, text, params=None):
    pg, db = pg_db
    return pg.sql(text, params, dbname=db)


def snapshot(pg_db, opts):
    """Everything a run could change: the whole schema and the history rows."""
    pg, db = pg_db
    conn = pg.connect(db)
    try:
        schema = fpmod.take(conn)
    finally:
        conn.close()
    table = '%s.%s' % (opts.get('history_schema', 'public'), opts.get('history_table', 'dbdevops_schema_history'))
    exists = sql(pg_db, 'SELECT to_regclass(%s) IS NOT NULL', (table,))[0][0]
    history = sql(pg_db, 'SELECT * FROM %s ORDER BY installed_rank' % table) if exists else None
    return schema, history


def relations(pg_db):
    return sorted(r[0] for r in sql(pg_db, "SELECT relname FROM pg_class c JOIN pg_namespace n "
                                           "ON n.oid = c.relnamespace WHERE n.nspname = 'public' "
                                           "AND c.relkind IN ('r', 'v')"))


def applied(result):
    return [(a['kind'], a['version'] or a['script'], a['direction']) for a in result['applied']]


def prep_up(files_after=None, **opts):
    """Preparation: migrate the folder first (with ``opts``), then change files."""
    def prep(pg_db, path):
        migrate(engine(pg_db, path, **opts))
        if files_after:
            write(path, files_after)
    return prep


def prep_invalid_index(pg_db, path):
    sql(pg_db, 'CREATE TABLE t (a int); INSERT INTO t VALUES (1), (1)')
    with pytest.raises(MigrationError, match='INVALID index left behind'):
        migrate(engine(pg_db, path, baseline_version='0'))     # t was there before migrations
    sql(pg_db, 'DELETE FROM t')


CASES = {
    'versioned': dict(
        files={'V1__a.sql': 'CREATE TABLE a (id int);', 'V2__b.sql': 'CREATE TABLE b (id int);'},
        effect=lambda db, r: (applied(r) == [('versioned', '1', 'up'), ('versioned', '2', 'up')]
                              and relations(db) == ['a', 'b', 'dbdevops_schema_history']
                              and r['current_version'] == '2' and r['pending'] == [])),
    'pair convention': dict(
        files={'1_create_a.up.sql': 'CREATE TABLE a (id int);', '1_create_a.down.sql': 'DROP TABLE a;',
               '2.1_create_b.up.sql': 'CREATE TABLE b (id int);'},
        effect=lambda db, r: applied(r) == [('versioned', '1', 'up'), ('versioned', '2.1', 'up')]
        and relations(db) == ['a', 'b', 'dbdevops_schema_history']),
    'timestamp versions compared numerically': dict(
        files={'V20260102000000__b.sql': 'CREATE TABLE b (id int);',
               'V9__a.sql': 'CREATE TABLE a (id int);'},
        effect=lambda db, r: [a[1] for a in applied(r)] == ['9', '20260102000000']
        and r['current_version'] == '20260102000000'),
    'placeholders': dict(
        files={'V1__a.sql': 'CREATE TABLE ${table} (id int);\nCOMMENT ON TABLE ${table} IS \'${note}\';'},
        opts=dict(placeholders={'table': 'placed', 'note': 'from a placeholder'}),
        effect=lambda db, r: sql(db, "SELECT obj_description('placed'::regclass)") == [('from a placeholder',)]),
    'transaction=off directive (concurrent index)': dict(
        files={'V1__a.sql': 'CREATE TABLE a (id int);',
               'V2__idx.sql': '-- dbdevops:transaction=off\nCREATE INDEX CONCURRENTLY a_id ON a (id);\n'},
        effect=lambda db, r: sql(db, "SELECT indisvalid FROM pg_index WHERE indexrelid = 'a_id'::regclass")
        == [(True,)]),
    'repeatable after the versioned ones': dict(
        files={'R__v.sql': 'CREATE OR REPLACE VIEW v AS SELECT id FROM a;', 'V1__a.sql': 'CREATE TABLE a (id int);'},
        effect=lambda db, r: applied(r) == [('versioned', '1', 'up'), ('repeatable', 'R__v.sql', 'up')]
        and 'v' in relations(db)),
    'repeatable whose checksum changed': dict(
        files={'R__v.sql': 'CREATE OR REPLACE VIEW v AS SELECT 1 AS one;'},
        prep=prep_up({'R__v.sql': 'CREATE OR REPLACE VIEW v AS SELECT 1 AS one, 2 AS two;'}),
        effect=lambda db, r: applied(r) == [('repeatable', 'R__v.sql', 'up')]
        and sql(db, 'SELECT * FROM v') == [(1, 2)]),
    'target': dict(
        files={'V1__a.sql': 'CREATE TABLE a (id int);', 'V2__b.sql': 'CREATE TABLE b (id int);'},
        opts=dict(target='1'),
        effect=lambda db, r: applied(r) == [('versioned', '1', 'up')] and r['pending'] == ['2']
        and relations(db) == ['a', 'dbdevops_schema_history']),
    'downgrade with allow_downgrade': dict(
        files={'V1__a.sql': 'CREATE TABLE a (id int);', 'U1__a.sql': 'DROP TABLE a;',
               'V2__b.sql': 'CREATE TABLE b (id int);', 'U2__b.sql': 'DROP TABLE b;'},
        prep=prep_up(), opts=dict(target='1', allow_downgrade=True),
        effect=lambda db, r: applied(r) == [('undo', '2', 'down')] and r['current_version'] == '1'
        and relations(db) == ['a', 'dbdevops_schema_history']),
    'baseline an existing database': dict(
        files={'V1__a.sql': 'CREATE TABLE a (id int);', 'V2__b.sql': 'CREATE TABLE b (id int);'},
        prep=lambda db, path: sql(db, 'CREATE TABLE a (id int)'), opts=dict(baseline_version='1'),
        effect=lambda db, r: applied(r) == [('baseline', '1', 'none'), ('versioned', '2', 'up')]
        and relations(db) == ['a', 'b', 'dbdevops_schema_history']),
    'out_of_order': dict(
        files={'V1__a.sql': 'CREATE TABLE a (id int);', 'V3__c.sql': 'CREATE TABLE c (id int);'},
        prep=prep_up({'V2__b.sql': 'CREATE TABLE b (id int);'}), opts=dict(out_of_order=True),
        effect=lambda db, r: applied(r) == [('versioned', '2', 'up')] and r['current_version'] == '3'),
    'repair a changed checksum': dict(
        files={'V1__a.sql': 'CREATE TABLE a (id int);'},
        prep=prep_up({'V1__a.sql': 'CREATE TABLE a (id int); -- reviewed'}), opts=dict(repair=True),
        effect=lambda db, r: applied(r) == [('repair', '1', 'none')]
        and sql(db, "SELECT count(*) FROM dbdevops_schema_history WHERE type = 'repair'") == [(1,)]),
    'history table location': dict(
        files={'V1__a.sql': 'CREATE TABLE a (id int);'},
        opts=dict(history_schema='ops', history_table='migration_log'),
        effect=lambda db, r: sql(db, 'SELECT version FROM ops.migration_log') == [('1',)]
        and relations(db) == ['a']),
    'lock_timeout and statement_timeout options': dict(
        files={'V1__a.sql': "CREATE TABLE a AS SELECT current_setting('lock_timeout') AS lt, "
                            "current_setting('statement_timeout') AS st;"},
        opts=dict(lock_timeout='1500ms', statement_timeout='20s'),
        effect=lambda db, r: sql(db, 'SELECT lt, st FROM a') == [('1500ms', '20s')]),
    'drop_invalid_indexes': dict(
        files={'V1__idx.sql': '-- dbdevops:transaction=off\nCREATE UNIQUE INDEX CONCURRENTLY t_a ON t (a);\n'},
        prep=prep_invalid_index, opts=dict(drop_invalid_indexes=True),
        effect=lambda db, r: sql(db, "SELECT indisvalid FROM pg_index WHERE indexrelid = 't_a'::regclass")
        == [(True,)]),
    'lint findings are warnings, not errors': dict(
        files={'V1__drop.sql': 'CREATE TABLE a (id int);\nDROP TABLE a;\n'},
        effect=lambda db, r: [f['rule'] for f in r['lint']] == ['drop-table']
        and any('[drop-table]' in w for w in r['warnings'])),
}


@pytest.mark.parametrize('name', sorted(CASES))
def test_feature_check_mode_then_run_then_rerun_unchanged(pg_db, tmp_path, name):
    case = CASES[name]
    opts = case.get('opts', {})
    path = write(tmp_path / 'migrations', case['files'])
    if case.get('prep'):
        case['prep'](pg_db, path)
    before = snapshot(pg_db, opts)

    plan = plan_of(engine(pg_db, path, **opts))
    assert plan.changed and plan.steps
    assert snapshot(pg_db, opts) == before, 'check mode changed the database'

    result = migrate(engine(pg_db, path, **opts))
    assert result['changed'] is True
    assert [(s['kind'], s['version']) for s in result['plan']['steps']] == \
        [(s.kind, s.version) for s in plan.steps], 'the run did not do what check mode showed'
    assert case['effect'](pg_db, result), result
    after = snapshot(pg_db, opts)
    assert after != before

    again = migrate(engine(pg_db, path, **opts))
    assert again['changed'] is False and again['applied'] == []
    assert plan_of(engine(pg_db, path, **opts)).changed is False
    assert snapshot(pg_db, opts) == after, 'a rerun changed the database'
