"""The modules migrate, migration_info, schema_diff and migration_new through AnsibleModule."""

import json
import os
import subprocess

import pytest
from ansible.module_utils import _internal as ansible_internal
from ansible.module_utils import basic
from ansible.module_utils.common import warnings as ansible_warnings
from ansible.module_utils.testing import patch_module_args

from ansible_collections.dbdevops.postgresql.plugins.modules import (
    migrate, migration_info, migration_new)
from tests.harness.pgcluster import free_port
from tests.harness.migrate_samples import write

from tests.harness import REPO_ROOT as ROOT  # noqa: E402


class Exit(Exception):
    def __init__(self, result, failed):
        super(Exit, self).__init__(result.get('msg'))
        self.result = result
        self.failed = failed


def run(module, args, check=False, diff=False):
    args = dict(args, _ansible_check_mode=check, _ansible_diff=diff)

    def finish(kwargs, failed):
        kwargs['warnings'] = list(ansible_warnings.get_warning_messages())
        raise Exit(kwargs, failed)

    def exit_json(self, **kwargs):
        finish(kwargs, False)

    def fail_json(self, msg, **kwargs):
        kwargs['msg'] = msg
        finish(kwargs, True)

    ansible_warnings._global_warnings.clear()

    # Another test may have imported controller code (a filter plugin imports
    # ansible.errors), which routes module warnings to the controller's display;
    # a module runs on a target, where they go into the result.
    was_controller = ansible_internal.is_controller
    ansible_internal.is_controller = False
    with patch_module_args(args):
        orig = basic.AnsibleModule.exit_json, basic.AnsibleModule.fail_json
        basic.AnsibleModule.exit_json, basic.AnsibleModule.fail_json = exit_json, fail_json
        try:
            module.main()
        except Exit as done:
            return done.result, done.failed
        finally:
            basic.AnsibleModule.exit_json, basic.AnsibleModule.fail_json = orig
            ansible_internal.is_controller = was_controller
    raise AssertionError('module returned without exit_json/fail_json')


FILES = {
    'V1__users.sql': 'CREATE TABLE users (id bigserial PRIMARY KEY, email text NOT NULL);\n',
    'U1__users.sql': 'DROP TABLE users;\n',
    'V2__users_email.sql': 'CREATE INDEX users_email ON users (email);\n',
    'U2__users_email.sql': 'DROP INDEX users_email;\n',
}


def tables(pg, db):
    return sorted(r[0] for r in pg.sql("SELECT tablename FROM pg_tables WHERE schemaname = 'public'",
                                       dbname=db))


def test_migrate_check_diff_run_rerun(pg_db, tmp_path):
    pg, db = pg_db
    args = dict(pg.conn_params(db), path=write(tmp_path, FILES))
    result, failed = run(migrate, args, check=True, diff=True)
    assert not failed and result['changed'] is True and result['applied'] == []
    assert [s['version'] for s in result['plan']['steps']] == ['1', '2']
    assert result['queries'] == [FILES['V1__users.sql'], FILES['V2__users_email.sql']]
    assert result['diff']['before'] == 'version: none\n'
    assert result['diff']['after'].startswith('version: 2\n-- up V1__users.sql\nCREATE TABLE users')
    assert tables(pg, db) == []

    result, failed = run(migrate, args, diff=True)
    assert not failed and result['changed'] is True
    assert [(a['version'], a['direction']) for a in result['applied']] == [('1', 'up'), ('2', 'up')]
    assert result['current_version'] == '2' and result['pending'] == []
    assert result['diff']['after'].startswith('version: 2\n')
    assert tables(pg, db) == ['schema_migrations', 'users']

    result, failed = run(migrate, args, diff=True)
    assert not failed and result['changed'] is False and 'diff' not in result
    result, failed = run(migrate, args, check=True)
    assert result['changed'] is False


def test_migrate_downgrade_and_lint_warnings(pg_db, tmp_path):
    pg, db = pg_db
    pg.sql('CREATE TABLE existing (id int)', dbname=db)
    files = dict(FILES, **{'V3__existing_idx.sql': 'CREATE INDEX existing_id ON existing (id);',
                           'U3__existing_idx.sql': 'DROP INDEX existing_id;'})
    args = dict(pg.conn_params(db), path=write(tmp_path, files))
    result, failed = run(migrate, args)
    assert any('create-index-not-concurrently' in w for w in result['warnings'])
    assert result['lint'][0]['script'] == 'V3__existing_idx.sql'
    down = dict(args, target='1', allow_downgrade=True)
    result, failed = run(migrate, down, check=True)
    assert [s['direction'] for s in result['plan']['steps']] == ['down', 'down']
    assert tables(pg, db) == ['existing', 'schema_migrations', 'users']
    result, failed = run(migrate, down)
    assert [a['version'] for a in result['applied']] == ['3', '2'] and result['current_version'] == '1'
    assert run(migrate, down)[0]['changed'] is False


def test_migrate_failures_are_messages_not_tracebacks(pg, pg_db, tmp_path):
    _pg, db = pg_db
    path = write(tmp_path, dict(FILES, **{'V3__bad.sql': 'SELECT 1;\nSELEC 2;\n'}))
    result, failed = run(migrate, dict(pg.conn_params(db), path=path))
    assert failed and 'V3__bad.sql line 2' in result['msg'] and 'SELEC 2' in result['msg']
    assert result['file'] == 'V3__bad.sql' and result['line'] == 2 and result['changed'] is True
    assert 'Traceback' not in result['msg']

    result, failed = run(migrate, dict(pg.conn_params(db, password='wrong'), path=path))
    assert failed and 'password authentication failed' in result['msg'] and 'wrong' not in result['msg']
    result, failed = run(migrate, dict(login_host='127.0.0.1', login_port=free_port(), db='x', path=path))
    assert failed and 'refused the connection' in result['msg']
    result, failed = run(migrate, dict(pg.conn_params(db), path=str(tmp_path / 'nope')))
    assert failed and 'does not exist' in result['msg']
    os.symlink(str(tmp_path / 'gone'), str(tmp_path / 'V4__dangling.sql'))
    result, failed = run(migrate, dict(pg.conn_params(db), path=path))
    assert failed and 'V4__dangling.sql (a dangling symbolic link)' in result['msg']
    assert pg.sql('SELECT max(version) FROM schema_migrations WHERE success', dbname=db) == [('2',)]


def test_migrate_verify_rollback_option(pg_db, tmp_path):
    pg, db = pg_db
    files = dict(FILES, **{'U2__users_email.sql': 'SELECT 1;'})
    args = dict(pg.conn_params(db), path=write(tmp_path, files), verify_rollback=True)
    result, failed = run(migrate, args)
    assert failed and 'verified rollback failed at version 2' in result['msg']
    assert tables(pg, db) == []
    write(tmp_path, FILES)
    result, failed = run(migrate, args)
    assert not failed and result['verify_rollback']['verified'] is True and result['changed']


def test_migration_info_and_drift(pg_db, tmp_path):
    pg, db = pg_db
    args = dict(pg.conn_params(db), path=write(tmp_path, FILES))
    result, failed = run(migration_info, args)
    assert not failed and result['changed'] is False and result['pending'] == ['1', '2']
    assert result['history_exists'] is False and tables(pg, db) == []
    run(migrate, dict(args, target='1'))
    result, dummy = run(migration_info, args)
    assert result['current_version'] == '1' and result['pending'] == ['2']
    assert result['drift']['drifted'] is False
    pg.sql('ALTER TABLE users ADD COLUMN by_hand int', dbname=db)
    result, failed = run(migration_info, args)
    assert result['drift']['drifted'] is True and not failed
    assert result['drift']['summary'] == ['+ column public.users.by_hand (integer)']
    result, failed = run(migration_info, dict(args, fail_on_drift=True))
    assert failed and 'schema drift since version 1' in result['msg']


def test_migration_new_module(tmp_path):
    args = dict(path=str(tmp_path), description='create memberships', version='20260101000000')
    result, failed = run(migration_new, args, check=True)
    assert not failed and result['changed'] and os.listdir(str(tmp_path)) == []
    result, failed = run(migration_new, args)
    assert result['changed'] and len(os.listdir(str(tmp_path))) == 2
    result, failed = run(migration_new, args)
    assert result['changed'] is False


def test_ansible_runs_the_module_end_to_end(pg_db, tmp_path):
    pg, db = pg_db
    path = write(tmp_path, FILES)
    argv = ['ansible', 'localhost', '-m', 'dbdevops.postgresql.migrate', '-a',
            json.dumps(dict(login_unix_socket=pg.socket_dir, login_port=pg.port, db=db, path=path))]
    env = dict(os.environ, ANSIBLE_PYTHON_INTERPRETER=os.environ.get(
        'DBDEVOPS_TEST_PYTHON', os.path.join(ROOT, '.venv', 'bin', 'python')))
    if not os.environ.get('ANSIBLE_COLLECTIONS_PATH'):
        pytest.skip('ANSIBLE_COLLECTIONS_PATH not set: source scripts/bootstrap.sh dev')
    out = subprocess.run(argv + ['--check'], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         universal_newlines=True, timeout=120, check=False)
    res = json.loads(out.stdout.split(' => ', 1)[1])
    assert res['changed'] is True and tables(pg, db) == [], out.stderr
    out = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         universal_newlines=True, timeout=120, check=False)
    res = json.loads(out.stdout.split(' => ', 1)[1])
    assert res['changed'] is True and res['current_version'] == '2', out.stderr
    out = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         universal_newlines=True, timeout=120, check=False)
    assert out.stdout.startswith('localhost | SUCCESS')


def _bad_folder(tmp_path, files, extra=None):
    path = write(tmp_path, files)
    if extra:
        extra(tmp_path)
    return path


BAD_INPUT = {
    'missing folder': (lambda tmp: str(tmp / 'nope'), None,
                       'migrations folder %(tmp)s/nope does not exist; check the path option'),
    'duplicate versions': (lambda tmp: write(tmp, dict(FILES, **{'V2.0__again.sql': 'SELECT 1;'})), None,
                           'two files for one version: V2.0__again.sql and V2__users_email.sql'),
    'bad names': (lambda tmp: write(tmp, dict(FILES, **{'V3_add_thing.sql': 'SELECT 1;',
                                                        'add_other.sql': 'SELECT 1;'})), None,
                  'misnamed migration files (expected V<version>__<description>.sql'),
    'unreadable file': (lambda tmp: _bad_folder(tmp, FILES, lambda t: os.mkfifo(str(t / 'V3__fifo.sql'))),
                        None, 'unreadable migration files: V3__fifo.sql (not a regular file)'),
    'file not UTF-8': (lambda tmp: _bad_folder(tmp, FILES, lambda t: open(str(t / 'V3__x.sql'), 'wb').write(
        b'SELECT \xff;')), None, 'V3__x.sql (not UTF-8 at byte 7)'),
    'wrong password': (lambda tmp: write(tmp, FILES), dict(password='wrong'),
                       'password authentication failed; check login_user and login_password'),
    'server down': (lambda tmp: write(tmp, FILES), 'down',
                    'the server refused the connection (not running, or not listening there)'),
}


@pytest.mark.parametrize('name', sorted(BAD_INPUT))
@pytest.mark.parametrize('check', [True, False], ids=['check', 'run'])
def test_bad_input_clear_message_no_traceback_nothing_applied(pg_db, tmp_path, name, check):
    pg, db = pg_db
    make, conn, expected = BAD_INPUT[name]
    path = make(tmp_path)
    if conn == 'down':
        args = dict(login_host='127.0.0.1', login_port=free_port(), db=db, path=path)
    else:
        args = dict(pg.conn_params(db, **(conn or {})), path=path)
    for module in (migrate, migration_info):
        result, failed = run(module, args, check=check)
        assert failed, result
        assert expected % dict(tmp=tmp_path) in result['msg'], result['msg']
        assert 'Traceback' not in result['msg'] and '\n' not in result['msg']
        assert 'wrong' not in result['msg'] and 'harness-superuser-secret' not in result['msg']
    assert tables(pg, db) == []                                     # not even the history table


def test_migration_info_reports_failed_migrations_without_failing(pg_db, tmp_path):
    pg, db = pg_db
    args = dict(pg.conn_params(db), path=write(tmp_path, dict(FILES, **{'V3__bad.sql': 'SELECT 1 / 0;'})))
    result, failed = run(migrate, args)
    assert failed and result['line'] == 1
    result, failed = run(migration_info, args)
    assert not failed and result['changed'] is False
    assert 'failed' not in result                    # a truthy "failed" key would fail the task
    assert [(f['script'], f['success']) for f in result['failed_migrations']] == [('V3__bad.sql', False)]
    assert 'V3__bad.sql line 1: division by zero' in result['failed_migrations'][0]['error_message']
    assert result['current_version'] == '2' and result['pending'] == ['3']


def test_migrate_diff_mode_shows_version_and_sql_for_a_downgrade(pg_db, tmp_path):
    pg, db = pg_db
    args = dict(pg.conn_params(db), path=write(tmp_path, FILES))
    run(migrate, args)
    down = dict(args, target='1', allow_downgrade=True)
    result, failed = run(migrate, down, check=True, diff=True)
    assert not failed and result['changed'] is True and result['applied'] == []
    assert result['diff']['before'] == 'version: 2\n'
    assert result['diff']['after'] == 'version: 1\n-- down U2__users_email.sql\nDROP INDEX users_email;\n'
    assert result['queries'] == ['DROP INDEX users_email;\n']
    assert pg.sql("SELECT to_regclass('users_email') IS NOT NULL", dbname=db) == [(True,)]
    result, failed = run(migrate, down, diff=True)
    assert [(a['version'], a['direction']) for a in result['applied']] == [('2', 'down')]
    assert result['diff']['after'].startswith('version: 1\n')
    result, failed = run(migrate, down, diff=True)
    assert result['changed'] is False and 'diff' not in result
