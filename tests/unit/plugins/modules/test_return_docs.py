"""RETURN matches reality: every module, run for real and in check mode, returns what it documents.

For each module a scenario runs it in check mode and then for real against a
throwaway cluster; the test asserts that
- check mode and the real run return the same keys (one shape, see _contract),
- every key returned is documented in RETURN,
- every key documented as ``returned: always`` is returned (both runs).
"""

import os
import shutil

import pytest
import yaml

from ansible_collections.dbdevops.postgresql.plugins.modules import (
    backup, backup_info, data_compare, migrate, migration_info, migration_new, restore, schema_diff)
from ansible_collections.dbdevops.postgresql.plugins.modules import failover_drill, replication_info
from ansible_collections.dbdevops.postgresql.plugins.modules import health_info
from ansible_collections.dbdevops.postgresql.plugins.modules import (
    physical_backup, physical_backup_info, pitr_restore, restore_point)
from tests.harness.modules import run_module

# Keys Ansible itself adds or that the adapter adds only when they apply.
ANSIBLE_KEYS = {'changed', 'failed', 'warnings', 'deprecations', 'msg', 'invocation', 'diff'}
MODULE_DIR = os.path.dirname(backup.__file__)

FILES = {
    'V1__users.sql': 'CREATE TABLE users (id bigserial PRIMARY KEY, email text NOT NULL);\n',
    'U1__users.sql': 'DROP TABLE users;\n',
    'V2__users_email.sql': 'CREATE INDEX users_email ON users (email);\n',
    'U2__users_email.sql': 'DROP INDEX users_email;\n',
}


def documented(module):
    doc = yaml.safe_load(module.RETURN) or {}
    always = {k for k, v in doc.items() if str(v.get('returned', '')).strip() == 'always'}
    return set(doc), always


def _write(folder, files):
    os.makedirs(folder, exist_ok=True)
    for name, text in files.items():
        with open(os.path.join(folder, name), 'w') as handle:
            handle.write(text)
    return folder


def check_then_real(module, args, prepare=None):
    if prepare:
        prepare()
    checked = run_module(module, args, check=True, diff=True)
    assert not checked['failed'], checked.get('msg')
    if prepare:
        prepare()
    real = run_module(module, args, diff=True)
    assert not real['failed'], real.get('msg')
    return checked, real


def assert_documented(module, checked, real):
    keys, always = documented(module)
    for label, result in (('check mode', checked), ('real run', real)):
        returned = set(result) - ANSIBLE_KEYS
        assert returned <= keys, '%s (%s) returns undocumented keys %s' % (
            module.__name__, label, sorted(returned - keys))
        missing = (always - ANSIBLE_KEYS) - set(result)
        assert not missing, '%s (%s) documents as always but does not return %s' % (
            module.__name__, label, sorted(missing))
    only_check = set(checked) - set(real) - {'diff'}
    only_real = set(real) - set(checked) - {'diff'}
    assert not only_check and not only_real, '%s: check mode and real run differ: %s / %s' % (
        module.__name__, sorted(only_check), sorted(only_real))


def test_every_module_is_covered():
    names = {n[:-3] for n in os.listdir(MODULE_DIR) if n.endswith('.py') and n != '__init__.py'}
    covered = {m.__name__.rsplit('.', 1)[-1] for m in ALL_MODULES}
    assert names == covered


ALL_MODULES = [backup, backup_info, data_compare, migrate, migration_info, migration_new, restore,
               schema_diff, replication_info, failover_drill, health_info,
               # check vs real against RETURN in test_pitr_modules.py (they need a pgBackRest stanza)
               physical_backup, physical_backup_info, pitr_restore, restore_point]


@pytest.fixture
def folder(tmp_path):
    return _write(str(tmp_path / 'migrations'), FILES)


def test_migrate_pending_and_nothing_pending(pg_db, folder):
    pg, db = pg_db
    args = dict(pg.conn_params(db), path=folder)
    checked, real = check_then_real(migrate, args)
    assert checked['changed'] and real['changed']
    assert_documented(migrate, checked, real)
    checked, real = check_then_real(migrate, args)          # nothing pending
    assert not checked['changed'] and not real['changed']
    assert_documented(migrate, checked, real)
    checked, real = check_then_real(migrate, dict(args, target='1', allow_downgrade=True,
                                                  verify_rollback=True))
    assert_documented(migrate, checked, real)


def test_migration_info(pg_db, folder):
    pg, db = pg_db
    args = dict(pg.conn_params(db), path=folder)
    assert_documented(migration_info, *check_then_real(migration_info, args))
    assert not run_module(migrate, args)['failed']
    assert_documented(migration_info, *check_then_real(migration_info, args))


def test_migration_new(tmp_path):
    args = dict(path=str(tmp_path / 'new'), description='create things', version='20260101000000')

    def empty_folder():
        shutil.rmtree(str(tmp_path / 'new'), ignore_errors=True)
        os.makedirs(str(tmp_path / 'new'))
    checked, real = check_then_real(migration_new, args, prepare=empty_folder)
    assert checked['changed'] and real['changed']
    assert_documented(migration_new, checked, real)


def test_schema_diff(pg, pg_db, tmp_path):
    _pg, db = pg_db
    other = pg.create_database(db + '_other')
    try:
        pg.sql('CREATE TABLE users (id int PRIMARY KEY, email text)', dbname=db)
        args = dict(pg.conn_params(db), src=dict(db=db), dst=dict(db=other),
                    dest=str(tmp_path / 'sync.sql'))
        assert_documented(schema_diff, *check_then_real(schema_diff, args))
        args.pop('dest')
        assert_documented(schema_diff, *check_then_real(schema_diff, args))
    finally:
        pg.sql('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % other)


def test_backup_backup_info_restore_data_compare(sample_db, dest):
    cluster, name = sample_db
    conn = cluster.conn_params(dbname=name, password=True)
    backup_args = dict(conn, dest=dest, retention_keep_last=1)
    assert_documented(backup, *check_then_real(backup, backup_args))
    assert_documented(backup, *check_then_real(backup, dict(backup_args, format='directory', jobs=2)))
    assert_documented(backup_info, *check_then_real(backup_info, dict(dest=dest)))
    assert_documented(backup_info, *check_then_real(backup_info, dict(dest=dest, verify=True)))

    target = name + '_copy'
    restore_args = dict(conn, src=dest, target_db=target)
    try:
        checked, real = check_then_real(restore, restore_args)
        assert real['changed']
        assert_documented(restore, checked, real)
        assert_documented(restore, *check_then_real(restore, dict(conn, src=dest, drill=True)))
        compare_args = dict(conn, src=dict(db=name), dst=dict(db=target))
        assert_documented(data_compare, *check_then_real(data_compare, compare_args))
    finally:
        cluster.sql('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % target)


def test_replication_info_and_failover_drill():
    from tests.harness.replpair import ReplPair
    with ReplPair() as pair:
        nodes = dict(nodes=[pair.primary.conn_params(), pair.standby.conn_params()])
        assert_documented(replication_info, *check_then_real(replication_info, nodes))
        assert_documented(failover_drill, *check_then_real(failover_drill, pair.drill_args()))


def test_health_info(pg):
    args = dict(pg.conn_params(), fail_on='never', memory_mb=1024, cpus=2)
    assert_documented(health_info, *check_then_real(health_info, args))
