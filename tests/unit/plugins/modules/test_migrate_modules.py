"""The modules migrate, migration_info, schema_diff and migration_new through AnsibleModule."""

import json
import os
import subprocess

import pytest
import yaml

from ansible_collections.dbdevops.postgresql.plugins.module_utils._contract import same_shape
from ansible_collections.dbdevops.postgresql.plugins.modules import (
    migrate, migration_info, migration_new)
from tests.harness.pgcluster import free_port
from tests.harness.migrate_samples import info, write
from tests.harness.modules import run_module

from tests.harness import REPO_ROOT as ROOT  # noqa: E402


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
    result = run_module(migrate, args, check=True, diff=True)
    assert not result['failed'] and result['changed'] is True and result['applied'] == []
    assert [s['version'] for s in result['plan']['steps']] == ['1', '2']
    assert result['queries'] == [FILES['V1__users.sql'], FILES['V2__users_email.sql']]
    assert result['diff']['before'] == 'version: none\n'
    assert result['diff']['after'].startswith('version: 2\n-- up V1__users.sql\nCREATE TABLE users')
    assert tables(pg, db) == []

    result = run_module(migrate, args, diff=True)
    assert not result['failed'] and result['changed'] is True
    assert [(a['version'], a['direction']) for a in result['applied']] == [('1', 'up'), ('2', 'up')]
    assert result['current_version'] == '2' and result['pending'] == []
    assert result['diff']['after'].startswith('version: 2\n')
    assert tables(pg, db) == ['dbdevops_schema_history', 'users']

    result = run_module(migrate, args, diff=True)
    assert not result['failed'] and result['changed'] is False and 'diff' not in result
    result = run_module(migrate, args, check=True)
    assert result['changed'] is False


def test_migrate_downgrade_and_lint_warnings(pg_db, tmp_path):
    pg, db = pg_db
    # a row: the lint is quiet about an index on an empty table (PostgreSQL builds it at once)
    pg.sql('CREATE TABLE existing (id int); INSERT INTO existing VALUES (1)', dbname=db)
    files = dict(FILES, **{'V3__existing_idx.sql': 'CREATE INDEX existing_id ON existing (id);',
                           'U3__existing_idx.sql': 'DROP INDEX existing_id;'})
    # a database that already has tables adopts migrations with a baseline
    args = dict(pg.conn_params(db), path=write(tmp_path, files), baseline_version='0')
    result = run_module(migrate, args)
    assert any('create-index-not-concurrently' in w for w in result['warnings'])
    assert result['lint'][0]['script'] == 'V3__existing_idx.sql'
    down = dict(args, target='1', allow_downgrade=True)
    result = run_module(migrate, down, check=True)
    assert [s['direction'] for s in result['plan']['steps']] == ['down', 'down']
    assert tables(pg, db) == ['dbdevops_schema_history', 'existing', 'users']
    result = run_module(migrate, down)
    assert [a['version'] for a in result['applied']] == ['3', '2'] and result['current_version'] == '1'
    assert run_module(migrate, down)['changed'] is False


def test_migrate_failures_are_messages_not_tracebacks(pg, pg_db, tmp_path):
    _pg, db = pg_db
    path = write(tmp_path, dict(FILES, **{'V3__bad.sql': 'SELECT 1;\nSELEC 2;\n'}))
    result = run_module(migrate, dict(pg.conn_params(db), path=path))      # the parser refuses it at plan time
    assert result['failed'] and 'V3__bad.sql line 2' in result['msg'] and 'SELEC 2' in result['msg']
    assert result['file'] == 'V3__bad.sql' and result['line'] == 2 and 'nothing was applied' in result['msg']
    assert pg.sql("SELECT to_regclass('public.users') IS NULL", dbname=db) == [(True,)]
    # lint off: the statement reaches the server; V1 and V2 apply, V3 fails naming file, line, statement
    result = run_module(migrate, dict(pg.conn_params(db), path=path, lint=False))
    assert result['failed'] and 'V3__bad.sql line 2' in result['msg'] and 'SELEC 2' in result['msg']
    assert result['file'] == 'V3__bad.sql' and result['line'] == 2 and result['changed'] is True
    assert 'Traceback' not in result['msg']

    result = run_module(migrate, dict(pg.conn_params(db, password='wrong'), path=path))
    assert result['failed'] and 'password authentication failed' in result['msg'] and 'wrong' not in result['msg']
    result = run_module(migrate, dict(login_host='127.0.0.1', login_port=free_port(), db='x', path=path))
    assert result['failed'] and 'refused the connection' in result['msg']
    result = run_module(migrate, dict(pg.conn_params(db), path=str(tmp_path / 'nope')))
    assert result['failed'] and 'does not exist' in result['msg']
    os.symlink(str(tmp_path / 'gone'), str(tmp_path / 'V4__dangling.sql'))
    result = run_module(migrate, dict(pg.conn_params(db), path=path))
    assert result['failed'] and 'V4__dangling.sql (a dangling symbolic link)' in result['msg']
    assert pg.sql('SELECT max(version) FROM dbdevops_schema_history WHERE success', dbname=db) == [('2',)]


def test_migrate_secret_placeholders_through_the_module(pg_db, tmp_path):
    pg, db = pg_db
    secret = 'm0dule-Secret-xyz'
    path = write(tmp_path, {'V1__cfg.sql': "CREATE TABLE cfg (v text);\nINSERT INTO cfg VALUES ('${tok}');\n",
                            'V2__bad.sql': "SELECT '${tok}'::int;\n"})
    args = dict(pg.conn_params(db), path=path, secret_placeholders=dict(tok=secret))
    for check in (True, False):
        result = run_module(migrate, dict(args, target='1'), check=check, diff=True)
        assert not result['failed'] and secret not in json.dumps(result) and '********' in result['queries'][0]
    assert pg.sql('SELECT v FROM cfg', dbname=db) == [(secret,)]
    result = run_module(migrate, args)
    assert result['failed'] and 'invalid input syntax for type integer' in result['msg']
    assert secret not in json.dumps(result)
    assert secret not in json.dumps(pg.sql('SELECT row_to_json(h) FROM dbdevops_schema_history h', dbname=db))
    result = run_module(migration_info, dict(pg.conn_params(db), path=path, secret_placeholders=dict(tok=secret)))
    assert not result['failed'] and secret not in json.dumps(result) and result['checksum_mismatches'] == []


def test_migrate_bad_option_values_are_messages(pg_db, tmp_path):
    pg, db = pg_db
    path = write(tmp_path, FILES)
    for extra, expect in ((dict(lock_timeout='soon'), 'lock_timeout "soon" is not a valid duration'),
                          (dict(target='9'), 'nearest: 2 (the newest)'),
                          (dict(connect_params={'no_such_option': '1'}), 'check connect_params')):
        result = run_module(migrate, dict(pg.conn_params(db), path=path, **extra))
        assert result['failed'] and expect in result['msg'] and 'Traceback' not in result['msg'], result
    assert tables(pg, db) == []


def test_migrate_verify_rollback_option(pg_db, tmp_path):
    pg, db = pg_db
    files = dict(FILES, **{'U2__users_email.sql': 'SELECT 1;'})
    args = dict(pg.conn_params(db), path=write(tmp_path, files), verify_rollback=True)
    result = run_module(migrate, args)
    assert result['failed'] and 'verified rollback failed at version 2' in result['msg']
    assert tables(pg, db) == []
    write(tmp_path, FILES)
    result = run_module(migrate, args)
    assert not result['failed'] and result['verify_rollback']['verified'] is True and result['changed']


def test_migration_info_and_drift(pg_db, tmp_path):
    pg, db = pg_db
    args = dict(pg.conn_params(db), path=write(tmp_path, FILES))
    result = run_module(migration_info, args)
    assert not result['failed'] and result['changed'] is False and result['pending'] == ['1', '2']
    assert result['history_exists'] is False and tables(pg, db) == []
    run_module(migrate, dict(args, target='1'))
    result = run_module(migration_info, args)
    assert result['current_version'] == '1' and result['pending'] == ['2']
    assert result['drift']['drifted'] is False
    pg.sql('ALTER TABLE users ADD COLUMN by_hand int', dbname=db)
    result = run_module(migration_info, args)
    assert result['drift']['drifted'] is True and not result['failed']
    assert result['drift']['summary'] == ['+ column public.users.by_hand (integer)']
    result = run_module(migration_info, dict(args, fail_on_drift=True))
    assert result['failed'] and 'schema drift since version 1' in result['msg']


def test_migration_new_module(tmp_path):
    args = dict(path=str(tmp_path), description='create memberships', version='20260101000000')
    result = run_module(migration_new, args, check=True)
    assert not result['failed'] and result['changed'] and os.listdir(str(tmp_path)) == []
    result = run_module(migration_new, args)
    assert result['changed'] and len(os.listdir(str(tmp_path))) == 2
    result = run_module(migration_new, args)
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
        result = run_module(module, args, check=check)
        assert result['failed'], result
        assert expected % dict(tmp=tmp_path) in result['msg'], result['msg']
        assert 'Traceback' not in result['msg'] and '\n' not in result['msg']
        assert 'wrong' not in result['msg'] and 'harness-superuser-secret' not in result['msg']
    assert tables(pg, db) == []                                     # not even the history table


def test_migration_info_reports_failed_migrations_without_failing(pg_db, tmp_path):
    pg, db = pg_db
    args = dict(pg.conn_params(db), path=write(tmp_path, dict(FILES, **{'V3__bad.sql': 'SELECT 1 / 0;'})))
    result = run_module(migrate, args)
    assert result['failed'] and result['line'] == 1
    result = run_module(migration_info, args)
    assert result['failed'] is False and result['changed'] is False
    assert 'failed' not in info(pg_db, args['path'])  # a truthy "failed" key would fail the task
    assert [(f['script'], f['success']) for f in result['failed_migrations']] == [('V3__bad.sql', False)]
    assert 'V3__bad.sql line 1: division by zero' in result['failed_migrations'][0]['error_message']
    assert result['current_version'] == '2' and result['pending'] == ['3']


def test_migrate_diff_mode_shows_version_and_sql_for_a_downgrade(pg_db, tmp_path):
    pg, db = pg_db
    args = dict(pg.conn_params(db), path=write(tmp_path, FILES))
    run_module(migrate, args)
    down = dict(args, target='1', allow_downgrade=True)
    result = run_module(migrate, down, check=True, diff=True)
    assert not result['failed'] and result['changed'] is True and result['applied'] == []
    assert result['diff']['before'] == 'version: 2\n'
    assert result['diff']['after'] == 'version: 1\n-- down U2__users_email.sql\nDROP INDEX users_email;\n'
    assert result['queries'] == ['DROP INDEX users_email;\n']
    assert pg.sql("SELECT to_regclass('users_email') IS NOT NULL", dbname=db) == [(True,)]
    result = run_module(migrate, down, diff=True)
    assert [(a['version'], a['direction']) for a in result['applied']] == [('2', 'down')]
    assert result['diff']['after'].startswith('version: 1\n')
    result = run_module(migrate, down, diff=True)
    assert result['changed'] is False and 'diff' not in result


ANSIBLE_KEYS = {'changed', 'failed', 'warnings', 'diff'}


def check_then_real(module, args):
    """The module in check mode, then for real (both in diff mode); both results."""
    checked = run_module(module, args, check=True, diff=True)
    real = run_module(module, args, diff=True)
    assert not checked['failed'] and not real['failed'], (checked.get('msg'), real.get('msg'))
    return checked, real


def test_check_mode_returns_the_keys_of_a_real_run(pg_db, tmp_path):
    pg, db = pg_db
    args = dict(pg.conn_params(db), path=write(tmp_path, FILES))
    for module, extra, changed in (
            (migration_info, {}, False),
            (migrate, dict(verify_rollback=True), True),                  # pending work
            (migrate, {}, False),                                         # nothing pending
            (migration_info, {}, False),
            (migrate, dict(target='1', allow_downgrade=True), True)):     # downgrade
        checked, real = check_then_real(module, dict(args, **extra))
        assert checked['changed'] is changed and real['changed'] is changed
        assert same_shape(checked, real) == ([], []), module.__name__
        documented = set(yaml.safe_load(module.RETURN)) | ANSIBLE_KEYS
        assert set(real) <= documented, sorted(set(real) - documented)
        if module is migrate:
            assert checked['applied'] == [] and checked['lock_wait_s'] == 0.0
            assert checked['history_created'] is real['history_created']
            assert checked['plan']['steps'] == real['plan']['steps']
            assert checked['queries'] == real['queries']
            assert ('diff' in checked) is changed and ('diff' in real) is changed
    assert real['current_version'] == '1' and real['history_created'] is False


def test_migration_new_check_mode_returns_the_keys_of_a_real_run(tmp_path):
    args = dict(path=str(tmp_path), description='create memberships', version='20260101000000')
    checked, real = check_then_real(migration_new, args)
    assert checked['changed'] and real['changed'] and len(os.listdir(str(tmp_path))) == 2
    assert same_shape(checked, real) == ([], [])
    assert set(real) <= set(yaml.safe_load(migration_new.RETURN)) | ANSIBLE_KEYS
