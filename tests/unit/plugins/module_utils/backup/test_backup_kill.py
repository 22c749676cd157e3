"""kill -9 of a backup at random moments: no pg_dump left, no password on disk, the leftovers cleaned."""

import binascii
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

from ansible_collections.dbdevops.postgresql.plugins.module_utils.backup import catalog, engine
from ansible_collections.dbdevops.postgresql.plugins.module_utils.connection import ConnParams

CHILD = textwrap.dedent('''
    import json, sys
    from ansible_collections.dbdevops.postgresql.plugins.module_utils.backup import engine
    from ansible_collections.dbdevops.postgresql.plugins.module_utils.connection import ConnParams
    conn, opts = json.loads(sys.argv[1])
    params = ConnParams.from_params(conn)
    engine.run_backup(params, engine.plan_backup(params, engine.BackupOptions(**opts)))
''')


def _processes_mentioning(text):
    """PIDs of live processes (not zombies) whose command line mentions ``text``."""
    found = []
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open('/proc/%s/cmdline' % entry, 'rb') as f:
                cmdline = f.read().decode('utf-8', 'replace')
            with open('/proc/%s/stat' % entry) as f:
                state = f.read().rsplit(')', 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if text in cmdline and state != 'Z':
            found.append((int(entry), cmdline.replace('\0', ' ')))
    return found


def _files_holding(secret, roots, since):
    """Regular files under ``roots`` changed since ``since`` whose bytes hold ``secret``."""
    found = []
    needle = secret.encode('utf-8')
    for root in roots:
        for dirpath, _dirnames, filenames in os.walk(root):
            for name in filenames:
                path = os.path.join(dirpath, name)
                try:
                    info = os.lstat(path)
                    if not os.path.isfile(path) or info.st_mtime < since or info.st_size > 8 * 1024 * 1024:
                        continue
                    with open(path, 'rb') as f:
                        if needle in f.read():
                            found.append(path)
                except OSError:
                    continue
    return found


def _wait_gone(text, timeout=1.0):
    deadline = time.time() + timeout
    left = _processes_mentioning(text)
    while left and time.time() < deadline:
        time.sleep(0.05)
        left = _processes_mentioning(text)
    return left


def test_kill_9_at_random_moments_leaves_nothing_behind(pg_db, dest):
    cluster, name = pg_db
    # tables that take pg_dump -j workers seconds each: a worker is always mid-table when killed
    for index in range(2):
        cluster.sql("CREATE TABLE big_%d AS SELECT g, md5(g::text) || repeat('y', 60) AS pad "
                    "FROM generate_series(1, 1000000) g" % index, dbname=name)
    cluster.sql("SELECT lo_from_bytea(0, 'a large object'::bytea)", dbname=name)
    password = 'kill-test-' + binascii.hexlify(os.urandom(8)).decode('ascii')
    cluster.sql("DROP ROLE IF EXISTS killer")
    cluster.sql("CREATE ROLE killer LOGIN SUPERUSER PASSWORD '%s'" % password)
    conn = cluster.conn_params(dbname=name, user='killer', password=password)
    assert conn['login_host'] == '127.0.0.1'
    rng = random.Random(int(os.environ.get('KILL_SEED', '0')) or None)
    started = time.time() - 1
    killed_pids = []
    try:
        for attempt in range(5):
            fmt = ('custom', 'directory')[attempt % 2]
            opts = dict(dest=dest, databases=[name], format=fmt, jobs=1 if fmt == 'custom' else 2)
            child = subprocess.Popen([sys.executable, '-c', CHILD, json.dumps([conn, opts])],
                                     env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            # wait until pg_dump runs (most kills land mid-dump), then a random moment more
            deadline = time.time() + 20
            while not _processes_mentioning('--file=%s/' % dest) and time.time() < deadline \
                    and child.poll() is None:
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.8))
            assert child.poll() is None, 'the backup ended before the kill: %s' % child.stderr.read()
            os.kill(child.pid, signal.SIGKILL)
            child.wait()
            child.stderr.close()
            killed_pids.append(child.pid)
            # pg_dump and its -j workers die with the backup, at once: no table locks, no writer
            left = _wait_gone(dest)
            assert left == [], 'still running 1s after kill -9 of the backup: %s' % left
            # the server saw pg_dump's sessions end too: no locks held on the tables
            deadline = time.time() + 5
            sessions = None
            while time.time() < deadline:
                sessions = cluster.sql("SELECT pid, application_name, state FROM pg_stat_activity "
                                       "WHERE usename = 'killer'")
                if not sessions:
                    break
                time.sleep(0.05)
            assert sessions == [], sessions
        assert _files_holding(password, ['/tmp', dest], started) == []
        partial = sorted(n for n in os.listdir(dest) if n.startswith('.partial-'))
        assert partial, 'no kill landed during a backup: %s' % os.listdir(dest)
        assert all(n.rsplit('-', 1)[1] in [str(p) for p in killed_pids] for n in partial)

        # the next run removes the leftovers and says so
        params = ConnParams.from_params(conn)
        backup = engine.BackupEngine(params, engine.BackupOptions(dest=dest, databases=[name]))
        plan = backup.plan()
        assert plan.result()['partial_removed'] == partial  # check mode says what it would remove
        assert sorted(n for n in os.listdir(dest) if n.startswith('.partial-')) == partial
        result = backup.apply(plan)
        assert result['partial_removed'] == partial
        assert not [n for n in os.listdir(dest) if n.startswith('.partial-')]
        backups, left_partial = catalog.list_backups(dest, verify=True)
        assert left_partial == [] and backups[0]['backup_id'] == result['backup_id']
        assert all(b['status'] == 'verified' for b in backups), backups
        assert _files_holding(password, ['/tmp', dest], started) == []
    finally:
        for pid, _cmd in _processes_mentioning('--file=%s/' % dest):
            os.kill(pid, signal.SIGKILL)
        cluster.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'killer'")
        time.sleep(0.2)
        cluster.sql("DROP ROLE IF EXISTS killer")
