"""Verified rollback on a scratch database, and scaffolding of new migrations."""

import datetime
import os

import pytest

from ansible_collections.dbdevops.postgresql.plugins.module_utils.connection import ConnParams
from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate import scaffold
from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate.options import MigrateOptions
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
