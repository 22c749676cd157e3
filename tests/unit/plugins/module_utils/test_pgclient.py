"""Client programs through _pgclient: password kept off disk and argv, children die with their parent."""

import os
import signal
import stat
import subprocess
import sys
import textwrap
import time

import pytest

from ansible_collections.dbdevops.postgresql.plugins.module_utils import _pgclient
from ansible_collections.dbdevops.postgresql.plugins.module_utils.connection import ConnParams
from tests.harness import REPO_ROOT
from tests.harness.pgcluster import SUPERUSER_PASSWORD


def _psql(pg, sql, env):
    return _pgclient.run([pg.bin('psql'), '-XAtc', sql], env=env)


def test_password_in_an_in_memory_passfile_nowhere_on_disk(pg):
    params = ConnParams.from_params(pg.conn_params(password=True))
    before = set(os.listdir('/tmp'))
    with _pgclient.LibpqEnv(params) as env:
        assert env.environ['PGPASSFILE'].startswith('/proc/self/fd/')
        assert 'PGPASSWORD' not in env.environ
        assert all(SUPERUSER_PASSWORD not in v for v in env.environ.values())
        assert not any(name.startswith('dbdevops') for name in set(os.listdir('/tmp')) - before)
        done = _psql(pg, 'SELECT 42', env)
        assert done.ok, done.stderr
        assert done.stdout.strip() == '42'
    assert env.pass_fds == ()


def test_wrong_password_fails_with_the_server_message(pg):
    params = ConnParams.from_params(pg.conn_params(password='not-the-password'))
    with _pgclient.LibpqEnv(params) as env:
        done = _psql(pg, 'SELECT 1', env)
    assert not done.ok
    assert 'password authentication failed' in done.why()
    assert 'not-the-password' not in done.why()


def test_file_fallback_is_0600_in_a_private_folder_and_removed(pg):
    params = ConnParams.from_params(pg.conn_params(password=True))
    with _pgclient.LibpqEnv(params, memory=False) as env:
        path = env.environ['PGPASSFILE']
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
        assert _psql(pg, 'SELECT 1', env).ok
    assert not os.path.exists(path) and not os.path.exists(os.path.dirname(path))


def test_colons_and_backslashes_in_passwords(pg):
    pg.sql("DROP ROLE IF EXISTS odd")
    pg.sql("CREATE ROLE odd LOGIN PASSWORD 'a:b\\c'")
    params = ConnParams.from_params(pg.conn_params(user='odd', password='a:b\\c'))
    with _pgclient.LibpqEnv(params) as env:
        done = _psql(pg, 'SELECT current_user', env)
    assert done.stdout.strip() == 'odd', done.stderr


# what holds the ansible_collections/ this test imports (wherever bootstrap put it)
_COLLECTIONS = _pgclient.__file__.split(os.sep + 'ansible_collections' + os.sep, maxsplit=1)[0]


def test_children_die_with_a_killed_parent(tmp_path):
    """kill -9 of the process that started a client program leaves no orphan behind."""
    pidfile = tmp_path / 'child.pid'
    script = textwrap.dedent('''
        import sys
        sys.path[:0] = [%r, %r]
        from ansible_collections.dbdevops.postgresql.plugins.module_utils import _pgclient
        proc = _pgclient.popen(['sleep', '300'])
        open(%r, 'w').write(str(proc.pid))
        proc.wait()
    ''' % (_COLLECTIONS, REPO_ROOT, str(pidfile)))
    parent = subprocess.Popen([sys.executable, '-c', script])
    try:
        for _attempt in range(100):
            if pidfile.exists() and pidfile.read_text():
                break
            time.sleep(0.05)
        child = int(pidfile.read_text())
        os.kill(child, 0)                       # running
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        for _attempt in range(100):
            try:
                os.kill(child, 0)
            except ProcessLookupError:
                break
            with open('/proc/%d/stat' % child) as handle:
                if handle.read().split(') ')[1].startswith('Z'):
                    break                       # a zombie waiting for init: dead
            time.sleep(0.05)
        else:
            os.kill(child, signal.SIGKILL)
            pytest.fail('the child outlived its killed parent')
    finally:
        if parent.poll() is None:
            parent.kill()


def test_errors_are_quoted_from_stderr():
    done = _pgclient.Completed(['x'], 1, '', 'notice: fine\npg_dump: error: query failed: boom\n')
    assert not done.ok
    assert done.why() == 'exit status 1: pg_dump: error: query failed: boom'
    assert _pgclient.Completed(['x'], 0, '', '').ok


def test_missing_program_is_a_clear_error(tmp_path):
    with pytest.raises(_pgclient.ClientError, match='pg_dump not found in pg_bin_dir'):
        _pgclient.find_tool('pg_dump', bin_dir=str(tmp_path))
    with pytest.raises(_pgclient.ClientError, match='cannot run'):
        _pgclient.run([str(tmp_path / 'nothing-here')])


def test_server_timeouts_are_off_for_client_programs(pg_factory):
    """A database and role with tiny timeouts cannot cut a client program's session short."""
    cluster = pg_factory()
    cluster.create_database('tight')
    conn = cluster.connect('postgres')
    with conn.cursor() as cur:
        for name in ('statement_timeout', 'idle_in_transaction_session_timeout', 'idle_session_timeout',
                     'lock_timeout'):
            cur.execute('ALTER DATABASE tight SET %s = 5' % name)
    conn.close()
    params = ConnParams.from_params(cluster.conn_params(dbname='tight', password=True))
    show = ("SELECT pg_sleep(0.1), current_setting('statement_timeout'), "
            "current_setting('idle_in_transaction_session_timeout'), current_setting('lock_timeout'), "
            "current_setting('idle_session_timeout')")
    with _pgclient.LibpqEnv(params, server_major=15, base_env=dict(os.environ, PGOPTIONS='-c work_mem=8MB')) as env:
        assert env.environ['PGOPTIONS'] == ('-c work_mem=8MB -c statement_timeout=0 -c '
                                            'idle_in_transaction_session_timeout=0 -c lock_timeout=0 '
                                            '-c idle_session_timeout=0')
        done = _psql(cluster, show + ", current_setting('work_mem')", env)
    assert done.ok, done.stderr
    assert done.stdout.strip() == '|0|0|0|0|8MB'
    # without the server's version, idle_session_timeout (14+) is left out; the rest is off
    with _pgclient.LibpqEnv(params) as env:
        assert 'idle_session_timeout' not in env.environ['PGOPTIONS']
        done = _psql(cluster, show, env)
    assert done.ok, done.stderr
    assert done.stdout.strip().startswith('|0|0|0|')
    # a program that must keep them can say so
    with _pgclient.LibpqEnv(params, timeouts=False, base_env={}) as env:
        assert 'PGOPTIONS' not in env.environ
        done = _psql(cluster, 'SELECT pg_sleep(0.1)', env)
    assert not done.ok and 'statement timeout' in done.why()
