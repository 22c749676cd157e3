"""Backups that go wrong: pg_dump killed, destination full; and no password in `ps`."""

import os
import signal
import subprocess
import tempfile
import threading
import time

import pytest

from ansible_collections.dbdevops.postgresql.plugins.module_utils.backup import catalog, engine
from ansible_collections.dbdevops.postgresql.plugins.module_utils.backup._tools import BackupError
from tests.harness.pgcluster import SUPERUSER_PASSWORD
from tests.harness.backup_samples import params_for, take_backup


def _children(name, arg=None):
    """PIDs of our child processes called ``name`` (with ``arg`` among their arguments)."""
    found = []
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open('/proc/%s/stat' % entry) as f:
                fields = f.read().rsplit(')', 1)
            comm = fields[0].split('(', 1)[1]
            ppid = int(fields[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if comm == name and ppid == os.getpid():
            if arg is not None:
                try:
                    with open('/proc/%s/cmdline' % entry, 'rb') as f:
                        if not any(a.startswith(arg) for a in f.read().decode().split('\0')):
                            continue
                except OSError:
                    continue
            found.append(int(entry))
    return found


def _wait_for_child(name, timeout=15, arg=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        pids = _children(name, arg)
        if pids:
            return pids[0]
        time.sleep(0.05)
    raise AssertionError('no %s child process appeared' % name)


def _backup_in_thread(params, opts):
    outcome = {}

    def target():
        try:
            outcome['result'] = engine.run_backup(params, engine.plan_backup(params, opts))
        except BaseException as exc:  # noqa: BLE001 - inspected by the test
            outcome['error'] = exc

    thread = threading.Thread(target=target)
    thread.start()
    return thread, outcome


def test_pg_dump_killed_midway_records_nothing_and_hides_password(sample_db, dest):
    cluster, name = sample_db
    earlier = take_backup(cluster, name, dest)
    # Hold a lock pg_dump must wait for: the dump is then reliably "in progress".
    locker = cluster.connect(name, autocommit=False)
    locker.cursor().execute('LOCK TABLE sales.orders IN ACCESS EXCLUSIVE MODE')
    params = params_for(cluster, name, password=True)
    assert params.login_password == SUPERUSER_PASSWORD and params.login_host == '127.0.0.1'
    thread, outcome = _backup_in_thread(params, engine.BackupOptions(dest=dest, databases=[name]))
    try:
        # the dump itself, not the `pg_dump --version` the plan runs first
        pid = _wait_for_child('pg_dump', arg='--snapshot=')
        assert [n for n in os.listdir(dest) if n.startswith('.partial-')]

        # The password is nowhere in any process's arguments or environment.
        args = subprocess.run(['ps', '-eo', 'args'], stdout=subprocess.PIPE, universal_newlines=True, check=False).stdout
        envs = subprocess.run(['ps', 'axeww'], stdout=subprocess.PIPE, universal_newlines=True, check=False).stdout
        assert 'pg_dump' in args and 'PGPASSFILE=' in envs
        assert SUPERUSER_PASSWORD not in args
        assert SUPERUSER_PASSWORD not in envs
        with open('/proc/%d/environ' % pid, 'rb') as f:
            environ = f.read().decode()
        with open('/proc/%d/cmdline' % pid, 'rb') as f:
            cmdline = f.read().decode()
        assert SUPERUSER_PASSWORD not in environ and SUPERUSER_PASSWORD not in cmdline
        assert 'PGPASSWORD' not in environ
        passfile = [v for v in environ.split('\0') if v.startswith('PGPASSFILE=')][0].split('=', 1)[1]
        assert oct(os.stat(passfile).st_mode & 0o777) == '0o600'

        os.kill(pid, signal.SIGKILL)
        thread.join(30)
    finally:
        locker.rollback()
        locker.close()
        thread.join(30)
    error = outcome.get('error')
    assert isinstance(error, BackupError), outcome
    assert 'pg_dump was killed by signal 9' in str(error)
    assert 'no backup was recorded and earlier backups are untouched' in str(error)
    assert os.listdir(dest) == [earlier['backup_id']]
    backups, partial = catalog.list_backups(dest, verify=True)
    assert [(b['backup_id'], b['status']) for b in backups] == [(earlier['backup_id'], 'verified')]
    assert partial == []
    assert not os.path.exists(passfile)


def _mount_small(path, size='1m'):
    if os.geteuid() != 0:
        pytest.skip('mounting a small filesystem needs root')
    proc = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=%s,mode=0755' % size, 'tmpfs', path],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, check=False)
    if proc.returncode == 0:
        return None
    image = path + '.img'
    subprocess.run(['truncate', '-s', '2M', image], check=True)
    subprocess.run(['mkfs.ext4', '-q', '-F', image], check=True)
    proc = subprocess.run(['mount', '-o', 'loop', image, path], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, check=False)
    if proc.returncode != 0:
        pytest.skip('cannot mount a small filesystem here: %s' % proc.stderr)
    lost = os.path.join(path, 'lost+found')
    if os.path.isdir(lost):
        os.rmdir(lost)
    return image


@pytest.fixture
def small_dest():
    base = tempfile.mkdtemp(prefix='dbdevops-full-')
    image = _mount_small(base)
    yield base
    subprocess.run(['umount', base], check=False)
    if image:
        os.unlink(image)
    os.rmdir(base)


@pytest.mark.parametrize('fmt', ['custom', 'directory'])
def test_destination_full_clear_error_nothing_partial(sample_db, small_dest, fmt):
    cluster, name = sample_db
    earlier = take_backup(cluster, name, small_dest, format=fmt)
    cluster.sql("CREATE TABLE big AS SELECT g, md5(g::text) || md5((g * 7)::text) AS pad "
                "FROM generate_series(1, 60000) g", dbname=name)
    with pytest.raises(BackupError) as err:
        take_backup(cluster, name, small_dest, format=fmt, compression='none')
    msg = str(err.value)
    assert 'backup of database "%s" failed' % name in msg
    assert 'full' in msg and 'No space left on device' in msg
    assert os.listdir(small_dest) == [earlier['backup_id']]
    backups, dummy = catalog.list_backups(small_dest, verify=True)
    assert [b['status'] for b in backups] == ['verified']
