"""In-place restores (replace: true) against real PostgreSQL and a real pgBackRest repository.

- through a Debian cluster (``cluster``: pg_ctlcluster): a restore to a time, and one that fails and rolls back;
- runs killed with SIGKILL: the engine runs in a child Python process; killed while ``pgbackrest restore``
  runs (no pgBackRest process of it survives) or while the restored server starts, the next call rolls the run
  back; killed once the restored server was verified, the next call completes it; killed between the stop and
  the move (a journal written as that run would have), the next call starts the server again;
- journals that do not match the directories, or whose run still lives, are refused without touching anything.

The Debian cluster is named ``dbdtinp_<pid of the pytest process>`` and dropped at the end; a run killed before
its teardown leaves it behind, and the next run of this file drops every ``dbdtinp_`` cluster whose pytest
process is gone, with what lies next to its data directory (moved-aside copies, journals).
"""

import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from ansible_collections.dbdevops.postgresql.plugins.module_utils._pgclient import pid_alive
from ansible_collections.dbdevops.postgresql.plugins.module_utils.connection import ConnParams
from ansible_collections.dbdevops.postgresql.plugins.module_utils.errors import DbDevopsError
from ansible_collections.dbdevops.postgresql.plugins.module_utils.pitr import options as o
from ansible_collections.dbdevops.postgresql.plugins.module_utils.pitr.restore import (
    JOURNAL_SUFFIX, Journal, PitrRestoreEngine, this_process)
from tests.harness.pgcluster import PgCluster, free_port
from tests.harness.pitr import PitrLab, stop_data_dir

VERSION = '15'
PREFIX = 'dbdtinp_'
PG_ROOT = '/var/lib/postgresql/%s' % VERSION
CONF_ROOT = '/etc/postgresql/%s' % VERSION


# -- a Debian cluster ------------------------------------------------------------------------------------------

def _quiet(argv, check=True):
    done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                          check=False, timeout=180)
    if check and done.returncode != 0:
        raise RuntimeError('%s failed (%s): %s%s' % (' '.join(argv), done.returncode, done.stdout, done.stderr))
    return done


def lsclusters():
    """{name: (port, status)} of the clusters of VERSION (pg_lsclusters)."""
    out = {}
    for line in _quiet(['pg_lsclusters', '-h']).stdout.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[0] == VERSION:
            out[fields[1]] = (int(fields[2]), fields[3])
    return out


class DebianCluster(PgCluster):
    """A cluster made by pg_createcluster and driven with pg_ctlcluster, with PgCluster's access helpers."""

    def __init__(self, name, port):
        super(DebianCluster, self).__init__(bindir='/usr/lib/postgresql/%s/bin' % VERSION)
        self.name = name
        self.port = port
        self.base = PG_ROOT

    @property
    def cluster(self):
        return '%s/%s' % (VERSION, self.name)

    @property
    def datadir(self):
        return os.path.join(PG_ROOT, self.name)

    @property
    def socket_dir(self):
        return '/var/run/postgresql'

    @property
    def logfile(self):
        return '/var/log/postgresql/postgresql-%s-%s.log' % (VERSION, self.name)

    def create(self):
        _quiet(['pg_createcluster', VERSION, self.name, '--port', str(self.port), '--start-conf', 'manual',
                '-o', 'fsync=off', '-o', 'synchronous_commit=off', '-o', 'full_page_writes=off',
                '-o', 'shared_buffers=32MB', '-o', 'max_connections=40',
                '--', '--auth-local=trust', '--auth-host=scram-sha-256', '--no-sync'])
        return self.start()

    def ctl(self, action, *args):
        return _quiet(['pg_ctlcluster', VERSION, self.name, action] + list(args))

    def start(self, attempts=1):
        self.ctl('start')
        self.running = True
        return self

    def stop(self, mode='fast'):
        self.ctl('stop', '-m', mode)
        self.running = False

    def restart(self):
        self.ctl('restart')
        return self

    def status(self):
        return lsclusters().get(self.name)

    def destroy(self):
        drop_cluster(self.name)


def drop_cluster(name):
    """Drop a test cluster and whatever lies next to its data directory (moved-aside copies, journals)."""
    _quiet(['pg_dropcluster', '--stop', VERSION, name], check=False)
    for path in [os.path.join(PG_ROOT, name)] + glob.glob(os.path.join(PG_ROOT, name + '.*')):
        if os.path.isdir(path) and not os.path.islink(path):
            stop_data_dir(path)
            shutil.rmtree(path, ignore_errors=True)
        elif os.path.lexists(path):
            os.unlink(path)
    shutil.rmtree(os.path.join(CONF_ROOT, name), ignore_errors=True)
    log = '/var/log/postgresql/postgresql-%s-%s.log' % (VERSION, name)
    if os.path.exists(log):
        os.unlink(log)


def drop_leftovers():
    """Drop the dbdtinp_ clusters of pytest runs that are gone (killed before their teardown)."""
    names = set(lsclusters())
    for root in (PG_ROOT, CONF_ROOT):
        names.update(os.path.basename(p).split('.')[0] for p in glob.glob(os.path.join(root, PREFIX + '*')))
    for name in sorted(names):
        match = re.match(r'^%s(\d+)$' % PREFIX, name)
        if match and int(match.group(1)) != os.getpid() and not pid_alive(int(match.group(1))):
            drop_cluster(name)


# -- labs ------------------------------------------------------------------------------------------------------

def _marker_table(pg):
    pg.sql('CREATE TABLE marker (note text, at timestamptz DEFAULT clock_timestamp())')
    # some bulk, so that pgbackrest restore takes long enough to be caught at work
    pg.sql("CREATE TABLE bulk AS SELECT g, md5(g::text) AS h FROM generate_series(1, 150000) g")


@pytest.fixture(scope='module')
def debian_lab():
    if os.geteuid() != 0 or not shutil.which('pg_createcluster') \
            or not os.path.isdir('/usr/lib/postgresql/%s/bin' % VERSION):
        pytest.skip('a Debian cluster needs root, postgresql-common and PostgreSQL %s' % VERSION)
    drop_leftovers()
    cluster = DebianCluster('%s%d' % (PREFIX, os.getpid()), free_port())
    try:
        cluster.create()
        with PitrLab(pg=cluster) as lab:
            lab.record = os.path.join(lab.base, 'restore-points.json')
            _marker_table(cluster)
            lab.pgbackrest('backup', '--type=full', '--start-fast')
            yield lab
    finally:
        cluster.destroy()


@pytest.fixture(scope='module')
def ctl_lab():
    with PitrLab() as lab:
        _marker_table(lab.pg)
        lab.pgbackrest('backup', '--type=full', '--start-fast')
        lab.live_log = os.path.join(lab.base, 'live.log')
        yield lab


def run(lab, check=False, **kwargs):
    engine = PitrRestoreEngine(ConnParams(), o.PitrRestoreOptions(**dict(lab.repo_args(), **kwargs)))
    plan = engine.plan()
    return plan.result() if check else engine.apply(plan)


def notes(lab):
    return [r[0] for r in lab.pg.sql('SELECT note FROM marker ORDER BY at')]


def mark_target(lab):
    """A target time: the rows inserted before it are restored, those after it are not."""
    lab.switch_wal()
    time.sleep(1.1)
    target = lab.pg.sql("SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')")[0][0] + '+00'
    time.sleep(1.1)
    return target


def leftovers(lab):
    """What an in-place restore may leave next to the data directory (moved-aside copies, journal)."""
    folder, name = os.path.split(lab.pg.datadir)
    return sorted(n for n in os.listdir(folder) if n.startswith(name + '.pitr-'))


def journal_path(lab):
    return lab.pg.datadir + JOURNAL_SUFFIX


def read_journal(lab):
    try:
        with open(journal_path(lab)) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None  # missing, or (never: it is renamed into place) half written


# -- the engine in a child process, to kill --------------------------------------------------------------------

CHILD = '''
import json, sys
from ansible_collections.dbdevops.postgresql.plugins.module_utils.connection import ConnParams
from ansible_collections.dbdevops.postgresql.plugins.module_utils.pitr.options import PitrRestoreOptions
from ansible_collections.dbdevops.postgresql.plugins.module_utils.pitr.restore import PitrRestoreEngine
engine = PitrRestoreEngine(ConnParams(), PitrRestoreOptions(**json.loads(sys.argv[1])))
print(json.dumps(engine.apply(engine.plan()), default=str))
'''


def spawn(lab, **kwargs):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    return subprocess.Popen([sys.executable, '-c', CHILD, json.dumps(dict(lab.repo_args(), **kwargs))], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def restore_processes(lab):
    """{pid: argv} of the processes running `pgbackrest restore` (and its workers) with this lab's config."""
    found = {}
    for pid in os.listdir('/proc'):
        if not pid.isdigit():
            continue
        try:
            with open('/proc/%s/cmdline' % pid, 'rb') as handle:
                words = [w.decode('utf-8', 'replace') for w in handle.read().split(b'\0') if w]
        except OSError:
            continue
        if '--config=%s' % lab.config in words and any(w.startswith('restore') for w in words):
            found[int(pid)] = words
    return found


def wait_for(what, timeout, step=0.002):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = what()
        if value:
            return value
        time.sleep(step)
    return what()


def listing(path):
    try:
        return os.listdir(path)
    except OSError:
        return []


def kill(proc):
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL


# -- through a Debian cluster ----------------------------------------------------------------------------------

def test_failed_in_place_restore_through_a_cluster_rolls_back(debian_lab):
    lab, cluster = debian_lab, debian_lab.pg
    lab.pg.sql("INSERT INTO marker (note) VALUES ('live row')")
    rows = notes(lab)
    datadir_id = os.stat(cluster.datadir).st_ino
    port = cluster.status()[0]
    with pytest.raises(DbDevopsError) as err:
        # a restore point nobody made: recovery ends before the target and the restored server stops
        run(lab, target_name='never-made', record_file=lab.record, replace=True, cluster=cluster.cluster,
            recovery_timeout=60)
    message = str(err.value)
    assert 'Rolled back' in message and 'the server serves as before' in message, message
    assert 'started the server again' in message
    # the error quotes the cluster's own log, read from where this run started
    assert 'recovery ended before configured recovery target was reached' in message, message
    assert cluster.status() == (port, 'online')
    assert os.stat(cluster.datadir).st_ino == datadir_id
    assert notes(lab) == rows
    assert lab.pg.sql('SELECT pg_is_in_recovery()') == [(False,)]
    assert leftovers(lab) == []
    lab.pg.sql("INSERT INTO marker (note) VALUES ('still writable')")


def test_kill_during_pgbackrest_restore_is_rolled_back_by_the_next_run(debian_lab):
    lab, cluster = debian_lab, debian_lab.pg
    lab.pg.sql("INSERT INTO marker (note) VALUES ('before the target')")
    target = mark_target(lab)
    lab.pg.sql("INSERT INTO marker (note) VALUES ('after the target')")
    lab.switch_wal()
    rows = notes(lab)
    datadir_id = os.stat(cluster.datadir).st_ino
    port = cluster.status()[0]

    child = spawn(lab, target_time=target, replace=True, cluster=cluster.cluster)
    try:
        at_work = wait_for(lambda: [p for p, argv in restore_processes(lab).items()
                                    if os.path.basename(argv[0]) == 'pgbackrest'
                                    and listing(cluster.datadir)], timeout=60)
        assert at_work, 'pgbackrest restore never ran: %s' % (child.poll() is not None and child.communicate(),)
    finally:
        kill(child)
    entry = read_journal(lab)
    assert entry['phase'] == 'restoring' and entry['was_running'] and entry['cluster'] == cluster.cluster
    # the guard of pgBackRest's process group killed it and its workers at once: the restore went no further
    assert wait_for(lambda: not restore_processes(lab), timeout=2, step=0.01), restore_processes(lab)
    time.sleep(1)
    assert not restore_processes(lab)
    assert not os.path.exists(os.path.join(cluster.datadir, 'recovery.signal')), 'pgbackrest restore went on'
    assert cluster.status() == (port, 'down')
    assert os.path.isdir(entry['aside']) and os.stat(entry['aside']).st_ino == datadir_id
    assert os.stat(journal_path(lab)).st_mode & 0o777 == 0o600
    assert os.stat(journal_path(lab)).st_uid == os.stat(entry['aside']).st_uid

    scratch = os.path.join(lab.base, 'scratch')  # a folder the server's OS user can reach
    # check mode: says what it would do, changes nothing
    checked = run(lab, check=True, target_time=target, target_data_dir=scratch)
    report = checked['interrupted_restore']
    assert report['phase'] == 'restoring' and report['action'] == 'rolled_back'
    assert report['stamp'] == entry['stamp'] and report['old_data_dir'] == entry['aside']
    assert any('back to %s' % cluster.datadir in s for s in report['steps']), report['steps']
    assert checked['changed'] and 'interrupted in phase restoring' in checked['warnings'][0]
    assert read_journal(lab) == entry and os.path.isdir(entry['aside']) and not os.path.exists(scratch)
    assert cluster.status() == (port, 'down')

    # a plain (scratch) restore: rolls the interrupted run back first, then does what it was asked
    done = run(lab, target_time=target, target_data_dir=scratch)
    try:
        report = done['interrupted_restore']
        assert report['action'] == 'rolled_back' and report['phase'] == 'restoring'
        assert 'moved the original data directory back' in report['steps']
        assert 'started the server again' in report['steps']
        assert cluster.status() == (port, 'online')
        assert os.stat(cluster.datadir).st_ino == datadir_id
        assert notes(lab) == rows
        assert leftovers(lab) == []
        assert 'rolled back first' in done['warnings'][0]
        # ... and the scratch restore it was asked for (a Debian data directory has no pg_hba.conf: the
        # engine wrote one with peer authentication, so ask as the server's OS user)
        restored = cluster.run_as_owner([cluster.bin('psql'), '-X', '-A', '-t', '-h', done['socket_dir'],
                                         '-p', str(done['port']), '-d', 'postgres',
                                         '-c', 'SELECT note FROM marker ORDER BY at'])
        assert restored.stdout.split('\n')[:-1] == rows[:rows.index('after the target')]
    finally:
        run(lab, state='absent', target_data_dir=scratch)
    again = run(lab, state='absent', target_data_dir=scratch)
    assert again['interrupted_restore'] is None and not again['changed']


def test_in_place_restore_through_a_cluster(debian_lab):
    lab, cluster = debian_lab, debian_lab.pg
    lab.pg.sql("INSERT INTO marker (note) VALUES ('kept')")
    target = mark_target(lab)
    lab.pg.sql("INSERT INTO marker (note) VALUES ('doomed')")
    lab.switch_wal()
    expected = notes(lab)[:-1]
    port = cluster.status()[0]
    checked = run(lab, check=True, target_time=target, replace=True, cluster=cluster.cluster)
    assert checked['changed'] and '--type=time' in checked['command'] and checked['interrupted_restore'] is None
    assert checked['data_dir'] == cluster.datadir and checked['log_file'] == cluster.logfile
    assert cluster.status() == (port, 'online') and notes(lab)[-1] == 'doomed' and leftovers(lab) == []

    done = run(lab, target_time=target, replace=True, cluster=cluster.cluster)
    assert done['changed'] and done['interrupted_restore'] is None and done['old_data_dir'] is None
    # back under pg_ctlcluster, on its port, with the rows as they were at the target
    assert cluster.status() == (port, 'online')
    assert notes(lab) == expected
    assert done['reached']['timeline'] >= 2 and done['reached']['log_line'].startswith('recovery stopping before')
    assert lab.pg.sql("SELECT pg_is_in_recovery(), current_setting('archive_mode')") == [(False, 'on')]
    assert leftovers(lab) == []
    lab.pg.sql("INSERT INTO marker (note) VALUES ('after the restore')")


# -- through pg_ctl --------------------------------------------------------------------------------------------

def test_kill_after_the_restored_server_was_verified_is_completed_by_the_next_run(ctl_lab):
    lab = ctl_lab

    def verified_or_ended():
        return child.poll() is not None or (read_journal(lab) or {}).get('phase') == 'verified'

    err = b''
    for attempt in range(3):
        lab.pg.sql("INSERT INTO marker (note) VALUES ('kept %d')" % attempt)
        target = mark_target(lab)
        lab.pg.sql("INSERT INTO marker (note) VALUES ('doomed %d')" % attempt)
        lab.switch_wal()
        expected = notes(lab)[:-1]
        child = spawn(lab, target_time=target, target_timeline='latest', replace=True, log_file=lab.live_log)
        try:
            # the window between "verified" and the end of the cleanup is short: poll hard
            verified = wait_for(verified_or_ended, timeout=120, step=0.0005)
        finally:
            if child.poll() is None:
                kill(child)
            else:
                out, err = child.communicate()
        entry = read_journal(lab)
        if entry is not None:
            break
        assert verified and child.returncode == 0, err  # finished before the poller saw "verified": again
    else:
        pytest.fail('three runs ended before the poller saw the journal say "verified"')
    assert entry['phase'] == 'verified' and os.path.isdir(entry['aside'])
    # the restored server runs, promoted
    assert notes(lab) == expected

    nowhere = os.path.join(lab.base, 'no-scratch-here')
    checked = run(lab, check=True, state='absent', target_data_dir=nowhere)
    assert checked['changed'] and checked['interrupted_restore']['action'] == 'completed'
    assert 'remove the old data directory %s' % entry['aside'] in checked['interrupted_restore']['steps']
    assert read_journal(lab) == entry and os.path.isdir(entry['aside'])

    done = run(lab, state='absent', target_data_dir=nowhere)
    report = done['interrupted_restore']
    assert done['changed'] and report['action'] == 'completed' and report['phase'] == 'verified'
    assert report['steps'] == ['removed the old data directory %s' % entry['aside'],
                               'removed the journal %s' % journal_path(lab)]
    assert leftovers(lab) == []
    assert notes(lab) == expected
    assert lab.pg.sql('SELECT pg_is_in_recovery()') == [(False,)]
    again = run(lab, state='absent', target_data_dir=nowhere)
    assert not again['changed'] and again['interrupted_restore'] is None


def test_kill_while_the_restored_server_starts_is_rolled_back_by_the_next_run(ctl_lab):
    lab = ctl_lab
    lab.pg.sql("INSERT INTO marker (note) VALUES ('kept')")
    target = mark_target(lab)
    lab.pg.sql("INSERT INTO marker (note) VALUES ('not doomed: the restore is rolled back')")
    lab.switch_wal()
    rows = notes(lab)
    datadir_id = os.stat(lab.pg.datadir).st_ino
    child = spawn(lab, target_time=target, target_timeline='latest', replace=True, log_file=lab.live_log)
    try:
        assert wait_for(lambda: (read_journal(lab) or {}).get('phase') == 'started', timeout=120), \
            child.poll() is not None and child.communicate()
        # the restored server is up (in recovery, or promoting)
        assert wait_for(lab.pg.postmaster_pid, timeout=30)
    finally:
        kill(child)
    restored_pid = lab.pg.postmaster_pid()
    assert os.path.samefile('/proc/%d/cwd' % restored_pid, lab.pg.datadir)
    entry = read_journal(lab)
    assert entry['phase'] == 'started' and os.stat(entry['aside']).st_ino == datadir_id

    done = run(lab, state='absent', target_data_dir=os.path.join(lab.base, 'nothing'))
    report = done['interrupted_restore']
    assert report['action'] == 'rolled_back' and report['phase'] == 'started'
    assert report['steps'][:4] == ['stopped the restored server', 'moved the original data directory back',
                                   'removed the half-restored copy', 'started the server again'], report['steps']
    assert wait_for(lambda: not pid_alive(restored_pid), timeout=5, step=0.05)
    assert os.stat(lab.pg.datadir).st_ino == datadir_id
    assert notes(lab) == rows and lab.pg.sql('SELECT pg_is_in_recovery()') == [(False,)]
    assert leftovers(lab) == []


def test_a_run_killed_after_stopping_the_server_starts_it_again(ctl_lab):
    """Killed between the stop and the move: the journal says "stopped", the server is down."""
    lab = ctl_lab
    rows = notes(lab)
    lab.pg.stop()
    journal = Journal(lab.pg.datadir)
    stamp = time.strftime('%Y%m%dT%H%M%S', time.gmtime())
    journal.write(version=1, data_dir=lab.pg.datadir, stamp=stamp, aside=journal.aside(stamp), phase='stopped',
                  was_running=True, cluster=None, log_file=lab.live_log, port=lab.pg.port,
                  socket_dir=lab.pg.socket_dir, major='15', keep_old_data_dir=False,
                  owner=dict(this_process(), pid=2 ** 22 + 1))
    try:
        done = run(lab, state='absent', target_data_dir=os.path.join(lab.base, 'nothing'))
    finally:
        lab.pg.running = True
    report = done['interrupted_restore']
    assert report['action'] == 'rolled_back' and report['phase'] == 'stopped'
    assert report['steps'] == ['started the server again', 'removed the journal %s' % journal.path]
    assert notes(lab) == rows and leftovers(lab) == []


def test_a_journal_that_does_not_match_the_directories_is_refused(ctl_lab):
    lab = ctl_lab
    rows = notes(lab)
    journal = Journal(lab.pg.datadir)
    stamp = '20260101T000000'
    entry = dict(version=1, data_dir=lab.pg.datadir, stamp=stamp, aside=journal.aside(stamp), phase='restoring',
                 was_running=True, cluster=None, log_file=lab.live_log, port=lab.pg.port,
                 socket_dir=lab.pg.socket_dir, major='15', keep_old_data_dir=False)
    try:
        # the moved-aside original is not where the journal says: never guess, touch nothing
        journal.write(owner=dict(this_process(), boot='another boot'), **entry)
        for check in (True, False):
            with pytest.raises(DbDevopsError) as err:
                run(lab, check=check, latest=True, replace=True, log_file=lab.live_log)
            message = str(err.value)
            assert journal.path in message and journal.aside(stamp) in message, message
            assert 'does not exist' in message and 'Nothing was touched' in message
            assert 'then remove %s' % journal.path in message
        # the same journal, written by a process that still runs: refused as a restore at work
        journal.write(owner=this_process())
        with pytest.raises(DbDevopsError, match=r'is running now \(pid %d' % os.getpid()):
            run(lab, state='absent', target_data_dir=os.path.join(lab.base, 'nothing'))
        # a journal that is not one
        with open(journal.path, 'w') as handle:
            handle.write('{"version": 1, "data_dir": "/elsewhere"')
        with pytest.raises(DbDevopsError, match='cannot be read'):
            run(lab, state='absent', target_data_dir=os.path.join(lab.base, 'nothing'))
        assert os.path.exists(journal.path)
    finally:
        os.unlink(journal.path)
    assert notes(lab) == rows and lab.pg.sql('SELECT pg_is_in_recovery()') == [(False,)]
    assert leftovers(lab) == []
