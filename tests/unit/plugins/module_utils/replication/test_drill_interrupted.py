"""The failover drill killed with SIGKILL half-way: the next run finds its journal and puts a primary back.

The drill runs in a child Python process; one of its steps is held (it sleeps) so the kill lands exactly
at the phase the test waits for in the journal.
"""

import json
import os
import pwd
import signal
import subprocess
import sys
import tempfile
import threading
import time

import psycopg2
import pytest

from ansible_collections.dbdevops.postgresql.plugins.module_utils.connection import ConnParams
from ansible_collections.dbdevops.postgresql.plugins.module_utils.replication import info
from ansible_collections.dbdevops.postgresql.plugins.module_utils.replication.drill import (
    DrillJournal, FailoverDrillEngine, FailoverDrillOptions)

# Runs one drill with the step named in argv[2] held, so the test can kill it there.
CHILD = r'''
import json, sys, time
from ansible_collections.dbdevops.postgresql.plugins.module_utils.connection import ConnParams
from ansible_collections.dbdevops.postgresql.plugins.module_utils.replication import drill

def held(*args, **kwargs):
    time.sleep(600)

setattr(drill.FailoverDrillEngine, sys.argv[2], held)
args = json.loads(sys.argv[1])
engine = drill.FailoverDrillEngine((ConnParams.from_params(args['primary']), ConnParams.from_params(args['standby'])),
                                   drill.FailoverDrillOptions(**args))
engine.apply(engine.plan())
'''


def engine_for(args, **options):
    opts = FailoverDrillOptions(**dict(args, **options))
    return FailoverDrillEngine((ConnParams.from_params(args['primary']), ConnParams.from_params(args['standby'])),
                               opts)


def journal_of(args):
    return DrillJournal(args['state_dir'], dict(primary=ConnParams.from_params(args['primary']),
                                                standby=ConnParams.from_params(args['standby'])))


def roles(args):
    return tuple(info.read_node(ConnParams.from_params(args[n]), n, 2)['role'] for n in ('primary', 'standby'))


class Writer(object):
    """Commits numbered rows to ``kept`` on the primary until it fails; keeps the acknowledged ids."""

    def __init__(self, cluster):
        cluster.sql('CREATE TABLE kept (id int PRIMARY KEY)')
        self.cluster, self.acked, self.stop = cluster, [], threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            conn = self.cluster.connect()
            conn.autocommit = True
            with conn.cursor() as cur:
                n = 0
                while not self.stop.is_set():
                    n += 1
                    cur.execute('INSERT INTO kept VALUES (%s)', (n,))
                    self.acked.append(n)
                    time.sleep(0.005)
        except psycopg2.Error:
            pass

    def end(self):
        self.stop.set()
        self.thread.join(10)
        return set(self.acked)


def kill_at(args, hold, phase, timeout=40):
    """Start the drill in a child process, wait until its journal says ``phase``, SIGKILL it."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    child = subprocess.Popen([sys.executable, '-c', CHILD, json.dumps(args), hold], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    journal = journal_of(args)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            found = journal.read()
            if found and found.get('phase') == phase:
                break
            if child.poll() is not None:
                raise AssertionError('the drill ended before phase %s: %s' % (phase, child.stdout.read()[-3000:]))
            time.sleep(0.01)
        else:
            raise AssertionError('no phase %s in %s within %ss' % (phase, journal.path, timeout))
    finally:
        child.kill()
        child.wait(10)
    assert child.returncode == -signal.SIGKILL
    found = journal.read()
    assert found['phase'] == phase and found['owner']['pid'] == child.pid
    assert oct(os.stat(journal.path).st_mode & 0o777) == '0o600'
    return journal


def test_killed_after_the_fault_restarts_the_old_primary(pair, tmp_path):
    args = dict(pair.drill_args(), mode='failover', fault='stop_immediate', warmup_seconds=0.3,
                probe_interval_ms=20, state_dir=str(tmp_path / 'state'))
    writer = Writer(pair.primary)
    time.sleep(0.3)
    journal = kill_at(args, '_confirm_down', 'fault-injected')
    acked = writer.end()
    assert acked
    assert roles(args) == ('unreachable', 'standby')           # the kill left the pair without a primary

    engine = engine_for(args)
    plan = engine.plan()
    checked = plan.result()
    interrupted = checked['interrupted_drill']
    assert checked['changed'] and interrupted['phase'] == 'fault-injected'
    assert interrupted['action'].startswith('start primary') and 'was not promoted' in interrupted['action']
    assert roles(args) == ('unreachable', 'standby') and os.path.exists(journal.path)   # check mode: no change

    result = engine.apply(plan)
    assert set(result) == set(checked)
    done = result['interrupted_drill']
    assert done['action'].startswith('started primary') and done['phase'] == 'fault-injected'
    assert any('streams from it again' in s for s in done['steps']), done['steps']
    # then the drill itself ran: the standby is the primary, nothing acknowledged was lost
    assert result['passed'], result['verdict_reasons']
    assert not os.path.exists(journal.path) and not os.listdir(str(tmp_path / 'state'))
    assert roles(args) == ('unreachable', 'primary')
    pair.standby.sql('INSERT INTO kept VALUES (-1)')
    assert acked <= set(r[0] for r in pair.standby.sql('SELECT id FROM kept'))
    assert engine_for(args).journal.read() is None                # a third run finds no journal


def test_killed_after_the_promotion_keeps_the_new_primary_and_rejoins(sync_pair, tmp_path):
    args = dict(sync_pair.drill_args(), mode='failover', fault='stop_immediate', warmup_seconds=0.3,
                probe_interval_ms=20, state_dir=str(tmp_path / 'state'))
    writer = Writer(sync_pair.primary)
    time.sleep(0.3)
    journal = kill_at(args, '_first_write', 'promoted')
    acked = writer.end()
    assert acked and roles(args) == ('unreachable', 'primary')

    # any mode looks for the journal first: here the rejoin of the old primary
    engine = engine_for(args, mode='rejoin')
    plan = engine.plan()
    assert plan.result()['interrupted_drill']['action'].startswith('kept standby')
    assert os.path.exists(journal.path)
    result = engine.apply(plan)
    done = result['interrupted_drill']
    assert done['phase'] == 'promoted' and 'needs a rejoin' in done['action']
    assert result['rejoined'] and result['streaming'] and result['passed'], result['verdict_reasons']
    assert not os.path.exists(journal.path)
    assert roles(args) == ('standby', 'primary')
    sync_pair.standby.sql('INSERT INTO kept VALUES (-1)')     # synchronous: it commits once a standby streams
    assert acked <= set(r[0] for r in sync_pair.standby.sql('SELECT id FROM kept'))


def test_a_live_drill_is_not_taken_for_an_interrupted_one(pair, tmp_path):
    args = dict(pair.drill_args(), state_dir=str(tmp_path / 'state'))
    journal = journal_of(args)
    journal.write(phase='fault-injected', nodes={}, primary='primary', standby='standby')   # this process: alive
    try:
        engine = engine_for(args)
        with pytest.raises(Exception) as raised:
            engine.plan()
        message = str(raised.value)
        assert 'another failover drill runs on these nodes (pid %d' % os.getpid() in message
        assert 'nothing was touched' in message
    finally:
        journal.remove()
    assert not pair.in_recovery(pair.primary) and pair.in_recovery(pair.standby)


CONTROL_CHILD = r'''
import sys
from ansible_collections.dbdevops.postgresql.plugins.module_utils.replication.control import NodeControl
NodeControl('node', data_dir=sys.argv[1])._run(['sleep', sys.argv[2]], 'sleep')
'''


def _pids_with(cmdline):
    found = []
    for entry in os.listdir('/proc'):
        try:
            with open('/proc/%s/cmdline' % entry, 'rb') as handle:
                if handle.read().split(b'\0')[:2] == [b'sleep', cmdline.encode()]:
                    found.append(int(entry))
        except (OSError, ValueError):
            continue
    return found


def test_programs_die_with_a_killed_drill():
    """As root the programs run under runuser, which forks: its child must die with the drill too."""
    folder = tempfile.mkdtemp(prefix='dbdevops-ctl-')
    try:
        if os.geteuid() == 0:
            owner = pwd.getpwnam('postgres')
            os.chown(folder, owner.pw_uid, owner.pw_gid)
        marker = '%d.%d' % (600 + os.getpid() % 100, time.monotonic_ns() % 1000)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        child = subprocess.Popen([sys.executable, '-c', CONTROL_CHILD, folder, marker], env=env)
        deadline = time.monotonic() + 10
        while not _pids_with(marker) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _pids_with(marker), 'sleep did not start'
        child.kill()
        child.wait(10)
        deadline = time.monotonic() + 5
        while _pids_with(marker) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not _pids_with(marker)
    finally:
        os.rmdir(folder)
