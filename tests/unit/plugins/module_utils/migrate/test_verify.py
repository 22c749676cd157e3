"""Verified rollback on a scratch database, and scaffolding of new migrations."""

import datetime
import os

import pytest

from ansible_collections.dbdevops.postgresql.plugins.module_utils.connection import ConnParams
from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate import scaffold
from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate.options import MigrateOptions
from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate.steps import MigrationError
from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate.verify import (
    describe_verify_failure, verify_rollback)
from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate.files import (
    MigrationFilesError, discover)
from tests.harness.migrate_samples import write

from tests.harness import REPO_ROOT as ROOT  # noqa: E402


def databases(pg):
    return sorted(r[0] for r in pg.sql("SELECT datname FROM pg_database WHERE datname LIKE 'dbdevops_verify%'"))


GOOD = {
    'V1__users.sql': 'CREATE TABLE users (id bigserial PRIMARY KEY, email text);',
    'U1__users.sql': 'DROP TABLE users;',
    'V2__email_idx.sql': 'CREATE INDEX users_email ON users (email);\nALTER TABLE users ADD COLUMN name text;',
    'U2__email_idx.sql': 'ALTER TABLE users DROP COLUMN name;\nDROP INDEX users_email;',
    'V3__no_undo.sql': 'CREATE TABLE audit (id int);',
}


def test_verified_rollback_passes_and_names_first_broken_undo(pg_db, tmp_path):
    pg, db = pg_db
    params = ConnParams.from_params(pg.conn_params(db))
    path = write(tmp_path, GOOD)
    report = verify_rollback(params, MigrateOptions(path))
    assert report == dict(verified=True, checked=['1', '2'], not_reversible=['V3__no_undo.sql'],
                          failure=None)
    assert databases(pg) == []                                           # scratch dropped
    assert pg.sql("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'", dbname=db) == [(0,)]

    write(tmp_path, {'U2__email_idx.sql': 'ALTER TABLE users DROP COLUMN name;\n'})   # forgets the index
    report = verify_rollback(params, MigrateOptions(path))
    assert report['verified'] is False
    assert report['failure']['version'] == '2' and report['failure']['stage'] == 'undo'
    msg = describe_verify_failure(report)
    assert 'version 2 (U2__email_idx.sql)' in msg and 'index public.users_email' in msg
    assert databases(pg) == []


def test_scaffold_templates_match_top_level_templates():
    with open(os.path.join(ROOT, 'templates', 'migration', 'up.sql')) as handle:
        assert handle.read() == scaffold.UP_TEMPLATE
    with open(os.path.join(ROOT, 'templates', 'migration', 'undo.sql')) as handle:
        assert handle.read() == scaffold.UNDO_TEMPLATE


def test_scaffold_new_migration_is_idempotent(tmp_path):
    now = datetime.datetime(2026, 1, 2, 3, 4, 5)
    plan = scaffold.plan_new(str(tmp_path), 'Add users.last_login', now=now)
    assert plan['changed'] and plan['version'] == '20260102030405'
    assert os.listdir(str(tmp_path)) == []                              # plan writes nothing
    scaffold.create_new(plan)
    assert sorted(os.listdir(str(tmp_path))) == [
        'U20260102030405__add_users_last_login.sql', 'V20260102030405__add_users_last_login.sql']
    assert '-- Add users.last_login' in open(plan['files'][0]['path']).read()
    assert discover(str(tmp_path)).latest() == (20260102030405,)
    again = scaffold.plan_new(str(tmp_path), 'add users last_login', now=now)
    assert again['changed'] is False and again['version'] == '20260102030405'
    pair = scaffold.plan_new(str(tmp_path), 'second', style='pair', version='20260102030406', now=now)
    scaffold.create_new(pair)
    assert os.path.exists(str(tmp_path / '20260102030406_second.up.sql'))
    with pytest.raises(MigrationFilesError, match='already exists'):
        scaffold.plan_new(str(tmp_path), 'third', version='20260102030406')


# -- the whole schema, and a scratch database prepared from a template or a setup file

NEEDS_PREREQUISITES = {
    # the migrations expect the extension and the lookup table the application's platform team creates
    'V1__accounts.sql': 'CREATE TABLE accounts (id bigint PRIMARY KEY, code citext REFERENCES platform_codes);',
    'U1__accounts.sql': 'DROP TABLE accounts;',
    'V2__comment.sql': "COMMENT ON TABLE accounts IS 'customer accounts';\n"
                       'GRANT SELECT ON accounts TO PUBLIC;',
    'U2__comment.sql': 'COMMENT ON TABLE accounts IS NULL;\n',             # forgets the grant
}
PREREQUISITES = 'CREATE EXTENSION citext;\nCREATE TABLE platform_codes (code citext PRIMARY KEY);\n'


def test_scratch_prepared_from_setup_file_or_template_and_grant_forgotten_by_undo(pg_db, tmp_path):
    pg, db = pg_db
    params = ConnParams.from_params(pg.conn_params(db))
    path = write(tmp_path / 'm', NEEDS_PREREQUISITES)
    with pytest.raises(MigrationError, match='extension|type "citext" does not exist'):
        verify_rollback(params, MigrateOptions(path))                     # a bare scratch database lacks them
    assert databases(pg) == []

    setup = tmp_path / 'setup.sql'
    setup.write_text(PREREQUISITES)
    report = verify_rollback(params, MigrateOptions(path, verify_setup=str(setup)))
    assert report['verified'] is False and report['checked'] == ['1']
    failure = report['failure']
    assert failure['version'] == '2' and failure['stage'] == 'undo'
    assert failure['differences'] == [dict(change='changed', object='table public.accounts',
                                           detail='acl: +PUBLIC: SELECT')]
    msg = describe_verify_failure(report)
    assert msg.endswith('its undo does not restore the schema it had before (+ is there after the undo, '
                        '- is missing):\n~ table public.accounts (acl: +PUBLIC: SELECT)')
    assert databases(pg) == []

    write(tmp_path / 'm', {'U2__comment.sql': 'COMMENT ON TABLE accounts IS NULL;\n'
                                              'REVOKE SELECT ON accounts FROM PUBLIC;'})
    assert verify_rollback(params, MigrateOptions(path, verify_setup=str(setup)))['verified'] is True

    template = pg.create_database(db + '_tpl')
    try:
        pg.sql(PREREQUISITES, dbname=template)
        report = verify_rollback(params, MigrateOptions(path, verify_template=template))
        assert report['verified'] is True and report['checked'] == ['1', '2']
        # a template someone is connected to cannot be copied: the error says so
        busy = pg.connect(template)
        try:
            with pytest.raises(MigrationError, match='verify_template.*nobody may be connected'):
                verify_rollback(params, MigrateOptions(path, verify_template=template))
        finally:
            busy.close()
        # a template that already holds the history table would mix two histories
        opts = MigrateOptions(path)
        pg.sql('CREATE TABLE %s.%s (installed_rank int)' % (opts.history_schema, opts.history_table),
               dbname=template)
        with pytest.raises(MigrationError, match='already has the history table'):
            verify_rollback(params, MigrateOptions(path, verify_template=template))
    finally:
        pg.sql('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % template)
    assert databases(pg) == []

    bad = tmp_path / 'bad.sql'
    bad.write_text('CREATE EXTENSION no_such_extension;')
    with pytest.raises(MigrationError, match='verify_setup .*bad.sql failed on scratch database'):
        verify_rollback(params, MigrateOptions(path, verify_setup=str(bad)))
    with pytest.raises(MigrationError, match='cannot read the verify_setup file'):
        verify_rollback(params, MigrateOptions(path, verify_setup=str(tmp_path / 'missing.sql')))
    assert databases(pg) == []
