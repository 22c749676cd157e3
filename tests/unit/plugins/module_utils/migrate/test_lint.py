"""Safety lint at plan time, with the live catalog (real PostgreSQL)."""


import pytest

from ansible_collections.dbdevops.postgresql.plugins.module_utils.errors import DbDevopsError
from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate import lint as mlint
from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate.steps import MigrationError
from ansible_collections.dbdevops.postgresql.plugins.modules import migrate as migrate_module
from tests.harness.migrate_samples import engine, migrate, plan_of, write
from tests.harness.modules import run_module


@pytest.fixture
def big_table(pg_db):
    # a database with a table and no history: the tests adopt it with baseline_version 0
    pg, db = pg_db
    pg.sql('CREATE TABLE accounts (id int, email text, n int); '
           'INSERT INTO accounts SELECT g, g::text, g FROM generate_series(1, 5000) g; ANALYZE accounts',
           dbname=db)
    return pg_db


def rules(plan):
    return sorted((f.script, f.line, f.rule) for f in plan.lint)


def test_each_rule_on_existing_table_with_size(big_table, tmp_path):
    path = write(tmp_path, {
        'V1__unsafe.sql': (
            'CREATE INDEX accounts_email_idx ON accounts (email);\n'
            'ALTER TABLE accounts ADD COLUMN token uuid DEFAULT gen_random_uuid();\n'
            'ALTER TABLE accounts ADD COLUMN created timestamptz DEFAULT now();\n'
            'ALTER TABLE accounts ALTER COLUMN email SET NOT NULL;\n'
            'ALTER TABLE accounts ADD CONSTRAINT n_pos CHECK (n > 0);\n'
            'ALTER TABLE accounts ADD CONSTRAINT n_pos2 CHECK (n > 0) NOT VALID;\n'
            'ALTER TABLE accounts ALTER COLUMN n TYPE bigint;\n'
            'ALTER TABLE accounts DROP COLUMN n;\n'
            'DROP TABLE accounts;\n'),
        'V2__nontx.sql': '-- dbdevops:transaction=off\nCREATE INDEX CONCURRENTLY x ON accounts (id);\n',
    })
    plan = plan_of(engine(big_table, path, baseline_version='0'))
    assert rules(plan) == [
        ('V1__unsafe.sql', 1, 'create-index-not-concurrently'),
        ('V1__unsafe.sql', 2, 'volatile-default'),
        ('V1__unsafe.sql', 4, 'set-not-null'),
        ('V1__unsafe.sql', 5, 'constraint-not-valid'),
        ('V1__unsafe.sql', 7, 'alter-column-type'),
        ('V1__unsafe.sql', 8, 'drop-column'),
        ('V1__unsafe.sql', 9, 'drop-table'),
    ]
    first = plan.lint[0].message
    assert 'existing table public.accounts' in first and '~5000 rows' in first and 'kB' in first
    assert any('[create-index-not-concurrently]' in w for w in plan.warnings)
    # lock_timeout off: the non-transactional file is flagged
    plan = plan_of(engine(big_table, path, lock_timeout='', baseline_version='0'))
    assert ('V2__nontx.sql', 1, 'non-transactional-lock-timeout') in rules(plan)


def test_new_table_in_same_plan_is_not_flagged(pg_db, tmp_path):
    path = write(tmp_path, {
        'V1__t.sql': 'CREATE TABLE t (id int, v text);\nCREATE INDEX t_v ON t (v);\n',
        'V2__t.sql': 'ALTER TABLE t ADD COLUMN u uuid DEFAULT gen_random_uuid();\n'
                     'ALTER TABLE t ALTER COLUMN v SET NOT NULL;\n',
    })
    assert plan_of(engine(pg_db, path)).lint == []


def test_fail_on_lint_refuses_before_anything_and_ignore_directive(big_table, tmp_path):
    pg, db = big_table
    path = write(tmp_path, {'V1__idx.sql': 'CREATE INDEX accounts_n ON accounts (n);\n'})
    with pytest.raises(MigrationError) as err:
        migrate(engine(big_table, path, fail_on_lint=True, baseline_version='0'))
    assert 'V1__idx.sql line 1' in str(err.value) and 'create-index-not-concurrently' in str(err.value)
    assert pg.sql("SELECT to_regclass('accounts_n')", dbname=db) == [(None,)]
    # refused at plan time, before the run takes its lock: not even the history table is created
    assert pg.sql("SELECT to_regclass('dbdevops_schema_history')", dbname=db) == [(None,)]
    write(tmp_path, {'V1__idx.sql': '-- dbdevops:lint-ignore=create-index-not-concurrently\n'
                                    'CREATE INDEX accounts_n ON accounts (n);\n'})
    assert migrate(engine(big_table, path, fail_on_lint=True, baseline_version='0'))['changed'] is True


def test_lint_without_pglast_is_a_clear_warning(pg_db, tmp_path, monkeypatch):
    monkeypatch.setattr(mlint, 'HAS_PGLAST', False)
    path = write(tmp_path, {'V1__t.sql': 'CREATE TABLE t ();'})
    plan = plan_of(engine(pg_db, path))
    assert 'lint skipped: pglast not installed' in ' '.join(plan.warnings)


def test_lint_walks_json_tree_generically():
    tree = {'stmts': [{'stmt': {'IndexStmt': {'relation': {'relname': 't'}}}}]}
    assert [n for n, dummy in mlint.walk(tree)] == ['IndexStmt']


def test_a_statement_the_parser_rejects_is_an_error_in_check_mode_too(pg_db, tmp_path):
    """--check once passed with a warning on a syntax error; PostgreSQL's parser says no, so do we."""
    pg, db = pg_db
    path = write(tmp_path, {'V1__ok.sql': 'CREATE TABLE t (id int);\n',
                            'V2__typo.sql': 'CREATE TABLE u (id int);\nALTER TABEL u ADD COLUMN x int;\n'})
    with pytest.raises(MigrationError) as err:
        plan_of(engine(pg_db, path))
    message = str(err.value)
    assert "PostgreSQL's parser" in message and 'V2__typo.sql line 2' in message
    assert 'nothing was applied' in message
    assert pg.sql("SELECT to_regclass('public.t') IS NULL", dbname=db) == [(True,)]


def test_empty_and_new_tables_are_quiet_and_big_ones_are_not(big_table, tmp_path):
    pg, db = big_table
    pg.sql('CREATE TABLE staging (id int, v text)', dbname=db)
    path = write(tmp_path, {'V1__idx.sql': 'CREATE INDEX staging_v ON staging (v);\n'
                                           'ALTER TABLE staging ADD COLUMN seq bigint GENERATED ALWAYS AS IDENTITY;\n'
                                           'ALTER TABLE accounts ADD COLUMN seq bigserial;\n'})
    assert rules(plan_of(engine(big_table, path, baseline_version='0'))) == [
        ('V1__idx.sql', 3, 'add-column-identity')]


def test_lint_rules_option_and_project_file(big_table, tmp_path):
    path = write(tmp_path, {'V1__x.sql': 'CREATE TABLE t (id int);\nALTER TABLE accounts DROP COLUMN n;\n'})
    assert rules(plan_of(engine(big_table, path, baseline_version='0'))) == [('V1__x.sql', 2, 'drop-column')]
    plan = plan_of(engine(big_table, path, baseline_version='0',
                          lint_rules={'drop-column': False, 'prefer-bigint': True}))
    assert rules(plan) == [('V1__x.sql', 1, 'prefer-bigint')]
    write(tmp_path, {mlint.PROJECT_FILE: '{"rules": {"drop-column": false}}'})
    assert rules(plan_of(engine(big_table, path, baseline_version='0'))) == []
    # the option wins over the project file
    plan = plan_of(engine(big_table, path, baseline_version='0', lint_rules={'drop-column': True}))
    assert rules(plan) == [('V1__x.sql', 2, 'drop-column')]
    with pytest.raises(DbDevopsError) as err:
        plan_of(engine(big_table, path, baseline_version='0', lint_rules={'drop-colum': False}))
    assert 'unknown lint rule drop-colum' in str(err.value)


def test_fail_on_lint_counts_new_rules_and_module_takes_lint_rules(big_table, tmp_path):
    pg, db = big_table
    path = write(tmp_path, {'V1__rename.sql': 'ALTER TABLE accounts RENAME COLUMN email TO mail;\n'})
    with pytest.raises(MigrationError) as err:
        migrate(engine(big_table, path, fail_on_lint=True, baseline_version='0'))
    assert '[rename-column]' in str(err.value)
    result = run_module(migrate_module, dict(pg.conn_params(db), path=path, baseline_version='0', fail_on_lint=True,
                                             lint_rules={'rename-column': False}))
    assert not result.get('failed'), result.get('msg')
    assert result['changed'] is True and result['lint'] == []


def test_statement_timeout_option_counts_for_the_opt_in_rule(big_table, tmp_path):
    path = write(tmp_path, {'V1__x.sql': 'ALTER TABLE accounts ADD COLUMN a int;\n'})
    on = {'require-statement-timeout': True}
    assert rules(plan_of(engine(big_table, path, baseline_version='0', lint_rules=on))) == [
        ('V1__x.sql', 1, 'require-statement-timeout')]
    assert rules(plan_of(engine(big_table, path, baseline_version='0', lint_rules=on,
                                statement_timeout='10min'))) == []
