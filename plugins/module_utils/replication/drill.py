# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The failover drill: switch or fail a primary over to its standby and measure RTO and RPO.

The drill runs on the host of both servers (it stops, kills, starts and
rewinds them locally through ``control.NodeControl``) and connects to each
through its connection block.  While it acts, a probe writer
(``probe.ProbeWriter``) commits numbered rows, so the figures are measured,
not estimated:

- RTO: the last acknowledged write on the old primary to the first
  acknowledged write on the new one;
- promotion time: the fault (stopping or killing the primary) to the
  standby confirmed out of recovery;
- RPO: the writes the old primary acknowledged that the new primary does not
  hold (count and ids, read on the new primary), and the WAL gap between the
  last LSN the old primary was known to have flushed and what the standby had
  replayed when it was promoted.

Modes: ``switchover`` (stop writes, CHECKPOINT, stop the primary ``fast``,
wait until the standby has replayed the shutdown checkpoint, promote; no
acknowledged write may be lost) and ``failover`` (the primary is stopped
``immediate`` or its postmaster is killed with SIGKILL, then the standby is
promoted).  The old primary is confirmed down (pg_ctl status, connection
refused, its backends gone) before the standby is promoted, and the probe
writes only to the node the drill calls the primary.

``fault: partition`` (failover mode) is the drill across hosts: the drill
controls no server.  It runs wherever it reaches both nodes, cuts the
primary off with ``fault_command`` (an argv run here, for example
``ip link set <veth> down``) or waits up to ``fault_wait_seconds`` for an
outside fault that the probe writer notices, confirms the old primary stays
unreachable for ``fence_confirm_seconds``, promotes the standby over SQL and
measures as always.  The old primary is *isolated, not stopped*
(``old_primary_state: isolated``): it must be fenced before its network
returns, then rejoined with ``mode: rejoin`` on its own host
(``rejoin.RejoinEngine``; ``FailoverDrillEngine(sides, options)`` builds one
when ``options.mode`` is ``rejoin``).  ``rejoin`` rewinds the
old primary (pg_rewind) and starts it as a standby of the new primary;
``failback`` switches back to the original roles.  The probe table (and
``compare_tables``) are then compared between the two nodes with
``datacompare``.

``plan()`` runs the pre-checks (exactly one primary, the standby streams from
it, the lag is under ``max_lag_bytes``, the servers can be controlled from
here) and lists the steps; a failed pre-check refuses the drill and touches
nothing.  ``apply()`` runs it; a step that fails ends the drill with the state
reached and the commands to recover.  No Ansible imports.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import dataclasses
import datetime
import hashlib
import json
import os
import pwd
import shlex
import time

from ansible_collections.dbdevops.postgresql.plugins.module_utils import _pgclient, datacompare
from ansible_collections.dbdevops.postgresql.plugins.module_utils._contract import Plan, finish
from ansible_collections.dbdevops.postgresql.plugins.module_utils._options import option
from ansible_collections.dbdevops.postgresql.plugins.module_utils.connection import connect
from ansible_collections.dbdevops.postgresql.plugins.module_utils.errors import DbDevopsError
from ansible_collections.dbdevops.postgresql.plugins.module_utils.replication import info, probe, report
from ansible_collections.dbdevops.postgresql.plugins.module_utils.replication.control import NodeControl

try:
    from psycopg2.extensions import make_dsn, parse_dsn
except ImportError:  # pragma: no cover - reported by connect()
    make_dsn = parse_dsn = None

NODES = ('primary', 'standby')
RESULT_KEYS = ('mode', 'fault', 'passed', 'verdict', 'verdict_reasons', 'primary_before', 'primary_after',
               'rto_seconds', 'promotion_seconds', 'rpo_writes_lost', 'lost_ids', 'rpo_lsn_bytes',
               'timeline_before', 'timeline_after', 'writes_acknowledged', 'writes_failed', 'two_primaries',
               'steps', 'events', 'pre_checks', 'rejoined', 'failback', 'data_check', 'nodes', 'recovery',
               'report_path', 'old_primary_state', 'rewind_seconds', 'streaming', 'interrupted_drill')
PARTITION_WARNING = ('%s was isolated, not stopped: it still runs and accepts writes from any client that reaches '
                     'it. Fence it (stop it) before its network returns, then rejoin it as a standby of %s: run '
                     'failover_drill with mode: rejoin on its host (that stops it first if it still runs)')

# The drill's journals (one per pair of nodes): /var/tmp survives a reboot, unlike /tmp.


def default_state_dir():
    """``~/.dbdevops/failover-drill`` of the user running the drill (from the password database, not $HOME, which
    su/become may leave pointing at another user): private to that user, kept across reboots, and never a folder
    another user made first (as a shared one in /var/tmp could be)."""
    return os.path.join(pwd.getpwuid(os.geteuid()).pw_dir, '.dbdevops', 'failover-drill')


# The phases a journal goes through, in order; "done" is never written: the journal is removed.
PHASES = ('started', 'fault', 'fault-injected', 'promoting', 'promoted', 'rejoining', 'rejoined', 'recovering')


@dataclasses.dataclass
class FailoverDrillOptions(object):
    """The options of failover_drill (the primary/standby blocks' suboptions come from ``_module``)."""
    primary: dict = option(type='dict', required=True, cli=False)
    standby: dict = option(type='dict', required=True, cli=False)
    mode: str = option('switchover', choices=['switchover', 'failover', 'rejoin'])
    fault: str = option('stop_immediate', choices=['stop_immediate', 'kill', 'partition'])
    fault_command: list = option(type='list', elements='str')
    fault_wait_seconds: float = option(60.0, type='float')
    fence_confirm_seconds: float = option(3.0, type='float')
    primary_data_dir: str = option(type='path')
    primary_cluster: str = option()
    primary_log_file: str = option(type='path')
    standby_data_dir: str = option(type='path')
    standby_cluster: str = option()
    standby_log_file: str = option(type='path')
    pg_bin_dir: str = option(type='path')
    max_lag_bytes: int = option(16 * 1024 * 1024, type='int')
    probe_db: str = option('postgres')
    probe_table: str = option('dbdevops_drill_probe')
    probe_interval_ms: int = option(50, type='int')
    warmup_seconds: float = option(1.0, type='float')
    promote_timeout: int = option(60, type='int')
    catchup_timeout: int = option(60, type='int')
    rejoin: bool = option(False, type='bool')
    failback: bool = option(False, type='bool')
    rejoin_primary_conninfo: str = option(no_log=True)
    sync_standby_names_after_promotion: str = option()
    compare_tables: list = option([], type='list', elements='str')
    max_lost_writes: int = option(type='int')
    max_rto_seconds: float = option(type='float')
    report_path: str = option(type='path')
    fail_on_verdict: bool = option(True, type='bool')
    state_dir: str = option(type='path')
    RULES = dict(mutually_exclusive=[('primary_data_dir', 'primary_cluster'),
                                     ('standby_data_dir', 'standby_cluster')])


class DrillRefused(DbDevopsError):
    """A pre-check failed: nothing was touched."""


class DrillInterrupted(DbDevopsError):
    """A step failed half-way: the details say what state was reached and how to recover."""


def _iso(wall):
    return datetime.datetime.fromtimestamp(wall, datetime.timezone.utc).isoformat(timespec='milliseconds')


def _round(value, digits=3):
    return None if value is None else round(value, digits)


def validate(opts):
    """What the argument spec cannot say about the mode and the fault; raises DbDevopsError.

    ``mode: rejoin`` ignores the fault options, so one inventory serves the drill and the rejoin."""
    if opts.mode == 'rejoin':
        if opts.failback:
            raise DbDevopsError('failback does not apply to mode: rejoin (it rejoins the old primary only)')
        return
    if opts.fault == 'partition' and opts.mode != 'failover':
        raise DbDevopsError('fault: partition is a failover fault: set mode: failover (mode is %s)' % opts.mode)
    if opts.fault == 'partition' and (opts.rejoin or opts.failback):
        raise DbDevopsError('fault: partition cannot rejoin or fail back in the same run: the old primary is '
                            'isolated, not stopped, and this host cannot stop or rewind it. Run without rejoin and '
                            'failback, fence the old primary, then run failover_drill with mode: rejoin on the old '
                            'primary\'s host')
    if opts.fault_command is not None and (opts.fault != 'partition' or opts.mode != 'failover'):
        raise DbDevopsError('fault_command is the fault of fault: partition (mode: failover); got mode %s, fault %s'
                            % (opts.mode, opts.fault))
    if opts.fault_command is not None and (not opts.fault_command or not all(
            isinstance(w, str) and w for w in opts.fault_command)):
        raise DbDevopsError('fault_command must be a non-empty list of program and arguments (an argv, run '
                            'without a shell), for example [ip, link, set, veth1, down]; got %r' % (opts.fault_command,))
    for name in ('fault_wait_seconds', 'fence_confirm_seconds'):
        if getattr(opts, name) is not None and getattr(opts, name) < 0:
            raise DbDevopsError('%s must be 0 or more, got %s' % (name, getattr(opts, name)))


class DrillJournal(object):
    """The journal of one drill run on one pair of nodes: ``<state_dir>/drill-<key>.json``.

    ``key`` comes from both nodes' addresses (host:port of their connection
    blocks, in sorted order), so a run with the blocks swapped finds it too.
    Written atomically (a 0600 temp file in the same 0700 folder, fsync,
    rename) at every phase, removed when the run ends with one primary.
    """

    def __init__(self, state_dir, params):
        self.state_dir = state_dir or default_state_dir()
        addresses = sorted(info.node_label(p) for p in params.values())
        self.key = hashlib.sha256('\n'.join(addresses).encode('utf-8')).hexdigest()[:16]
        self.path = os.path.join(self.state_dir, 'drill-%s.json' % self.key)
        self.data = None

    def read(self):
        """The journal an earlier run left, or None."""
        try:
            with open(self.path) as handle:
                found = json.load(handle)
        except FileNotFoundError:
            return None
        except PermissionError as exc:
            raise DbDevopsError('cannot read the failover drill journal %s: %s. The folder belongs to another user: '
                                'run the drill as that user, or set state_dir to a folder of this user (each run on a '
                                'pair must use the same one)' % (self.path, exc), journal=self.path)
        except (OSError, ValueError) as exc:
            raise DbDevopsError('cannot read the failover drill journal %s: %s. It records a drill that was '
                                'interrupted: check both nodes (dbdevops.postgresql.replication_info), then remove '
                                'the file' % (self.path, exc), journal=self.path)
        if not isinstance(found, dict) or not isinstance(found.get('nodes'), dict):
            raise DbDevopsError('the failover drill journal %s is not one this collection wrote (no nodes): check '
                                'both nodes, then remove the file' % self.path, journal=self.path)
        return found

    @staticmethod
    def owner_alive(found):
        """Whether the process that wrote ``found`` still runs (same boot, pid and start time)."""
        return _pgclient.identity_alive(found.get('owner'))

    def write(self, **changes):
        if self.data is None:
            self.data = dict(version=1, owner=_pgclient.process_identity(), started_at=_iso(time.time()))
        self.data.update(changes, updated_at=_iso(time.time()))
        try:
            if not os.path.isdir(self.state_dir):
                os.makedirs(self.state_dir, 0o700)  # the parents too (~/.dbdevops), 0700 as well
            _pgclient.write_json_atomic(self.path, self.data)
        except OSError as exc:
            raise DbDevopsError('cannot write the failover drill journal %s: %s (set state_dir to a folder this '
                                'user can write)' % (self.path, exc))

    def remove(self):
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        self.data = None


class FailoverDrillEngine(object):
    """failover_drill as an engine: ``sides`` is ``(primary ConnParams, standby ConnParams)``.

    With ``options.mode == 'rejoin'`` the instance is a ``rejoin.RejoinEngine``.
    """

    def __new__(cls, sides, options):
        if cls is FailoverDrillEngine and getattr(options, 'mode', None) == 'rejoin':
            from ansible_collections.dbdevops.postgresql.plugins.module_utils.replication.rejoin import RejoinEngine
            return object.__new__(RejoinEngine)
        return object.__new__(cls)

    def __init__(self, sides, options):
        self.params = dict(zip(NODES, sides))
        self.options = options
        self.labels = dict((n, '%s (%s)' % (n, info.node_label(self.params[n]))) for n in NODES)
        self.controls = {}
        self.steps = []
        self.events = []
        self.roles = dict(primary='primary', standby='standby')   # what the drill knows each node is now
        self.down = set()
        self.writer = None
        self.t0 = None
        self.current_step = None
        self.sync_restore = {}
        self.warnings = []
        self.journal = DrillJournal(getattr(options, 'state_dir', None), self.params)
        # an interrupted run is looked for before anything else, in every mode (rejoin.RejoinEngine too)
        drill_plan, drill_apply = type(self).plan, type(self).apply
        self.plan = lambda: self._plan_after_journal(drill_plan)
        self.apply = lambda plan: self._apply_after_journal(drill_plan, drill_apply, plan)

    # -- an interrupted run (kill -9) -------------------------------------------
    def _plan_after_journal(self, drill_plan):
        found = self.journal.read()
        if found is None:
            return drill_plan(self)
        assessed = self._assess_interrupted(found)
        steps = [dict(step=s, planned=True) for s in assessed['steps']]
        steps.append(dict(step='then the pre-checks and the run as planned (mode %s)' % self.options.mode,
                          planned=True))
        public = dict((k, v) for k, v in assessed.items() if k not in ('nodes', 'controls', 'restart'))
        values = self._values(verdict='planned', steps=steps, nodes=assessed['nodes'],
                              primary_before=None, interrupted_drill=public)
        return Plan(True, values=values, work=dict(interrupted=found, assessed=assessed))

    def _apply_after_journal(self, drill_plan, drill_apply, plan):
        if 'interrupted' not in plan.work:
            return self._journaled(drill_apply, plan)
        done = self._recover_interrupted(plan.work['interrupted'])
        summary = 'an interrupted drill was found (phase %s) and put right: %s' % (done['phase'], done['action'])
        try:
            result = self._journaled(drill_apply, drill_plan(self))
        except DbDevopsError as exc:
            raise type(exc)('%s (before that, %s)' % (exc, summary), **dict(exc.details, interrupted_drill=done))
        result['interrupted_drill'] = done
        result['changed'] = True
        return result

    def _journaled(self, drill_apply, plan):
        """``drill_apply(plan)`` with a journal from the first change to the end of the run."""
        if not plan.changed:
            return drill_apply(self, plan)
        self._journal_phase('rejoining' if self.options.mode == 'rejoin' else 'started')
        try:
            result = drill_apply(self, plan)
        except DbDevopsError as exc:
            nodes = exc.details.get('nodes') or []
            if sum(1 for n in nodes if n.get('role') == 'primary') == 1:
                self.journal.remove()
            else:
                exc.message = ('%s. The journal %s stays: the next failover_drill run on these nodes puts a primary '
                               'back first' % (exc.message, self.journal.path))
            raise
        self.journal.remove()
        return result

    def _journal_phase(self, phase, **extra):
        """Record ``phase`` (see PHASES), with what is needed to put the nodes right if this process dies."""
        if self.journal.data is None:
            nodes = {}
            for n in NODES:
                ctl = self.controls.get(n)
                nodes[n] = dict(label=self.labels[n], address=info.node_label(self.params[n]),
                                data_dir=ctl.data_dir if ctl else None, cluster=ctl.cluster if ctl else None,
                                log_file=ctl.log_file if ctl else None)
            major = next((c.server_major for c in self.controls.values()), None)
            self.journal.write(mode=self.options.mode, fault=self.options.fault, nodes=nodes,
                               bin_dir=self.options.pg_bin_dir, server_major=major, primary='primary',
                               standby='standby', state_dir=self.journal.state_dir)
        self.journal.write(phase=phase, **extra)

    def _journal_controls(self, found):
        """NodeControl of each current block from the journal (None where the drill controlled nothing)."""
        by_address = dict((info.node_label(self.params[n]), n) for n in NODES)
        mapping, controls = {}, {}
        for jnode, entry in found['nodes'].items():
            current = by_address.get(entry.get('address'))
            if current is None:
                raise DbDevopsError('the failover drill journal %s names %s, which neither the primary nor the '
                                    'standby block reaches: run with the blocks of that drill, or check the nodes and '
                                    'remove the file' % (self.journal.path, entry.get('address')))
            mapping[jnode] = current
            if entry.get('data_dir') or entry.get('cluster'):
                controls[current] = NodeControl(self.labels[current], data_dir=entry.get('data_dir'),
                                                cluster=entry.get('cluster'), log_file=entry.get('log_file'),
                                                bin_dir=found.get('bin_dir'), server_major=found.get('server_major'))
        return mapping, controls

    def _assess_interrupted(self, found):
        """What an interrupted run left and what putting it right takes; reads only.

        Returns {phase, found, action, steps, journal, nodes, restart}; raises when a human must decide."""
        if DrillJournal.owner_alive(found):
            raise DbDevopsError('another failover drill runs on these nodes (pid %s, since %s, journal %s): wait '
                                'until it ends; nothing was touched'
                                % ((found.get('owner') or {}).get('pid'), found.get('started_at'), self.journal.path))
        mapping, controls = self._journal_controls(found)
        old, new = mapping[found.get('primary', 'primary')], mapping[found.get('standby', 'standby')]
        phase = found.get('phase') or 'started'
        nodes = dict((n, info.read_node(self.params[n], self.labels[n], 2)) for n in NODES)
        roles = dict((n, nodes[n]['role']) for n in NODES)
        now = '%s is %s, %s is %s' % (self.labels[old], roles[old], self.labels[new], roles[new])
        out = dict(phase=phase, journal=self.journal.path, started_at=found.get('started_at'),
                   mode=found.get('mode'), fault=found.get('fault'), restart=None, nodes=[nodes[n] for n in NODES],
                   found='a drill (mode %s) was interrupted at phase %s: %s' % (found.get('mode'), phase, now))
        primaries = [n for n in NODES if roles[n] == 'primary']
        if len(primaries) == 1:
            primary = primaries[0]
            other = new if primary == old else old
            out['action'] = ('%s is still the primary' % self.labels[old] if primary == old else
                             'kept %s, promoted by the interrupted drill, as the primary' % self.labels[new])
            out['action'] += ('; %s is its standby' % self.labels[other] if roles[other] == 'standby' else
                              '; %s is %s: it needs a rejoin as a standby of %s (failover_drill mode: rejoin on its '
                              'host)' % (self.labels[other], roles[other], self.labels[primary]))
            out['steps'] = ['remove the journal %s' % self.journal.path]
            return out
        why = None
        if len(primaries) > 1:
            why = 'TWO PRIMARIES: %s and %s both accept writes' % (self.labels[old], self.labels[new])
        elif roles[new] != 'standby':
            why = 'no primary, and %s is %s' % (self.labels[new], roles[new])
        elif roles[old] != 'unreachable':
            why = 'no primary, and %s is %s' % (self.labels[old], roles[old])
        elif old not in controls:
            why = ('no primary: %s is unreachable and the drill (fault %s) does not control it from here'
                   % (self.labels[old], found.get('fault')))
        else:
            why = self._not_restartable(controls[old], nodes[new])
        if why:
            self.controls.update(controls)
            self.roles = {old: 'down', new: roles[new]}
            try:
                advice = self._recovery([nodes[n] for n in NODES])
            except Exception as exc:  # noqa: BLE001 - the message must come out anyway
                advice = ['check both nodes with dbdevops.postgresql.replication_info (%s)' % exc]
            out.update(action='none: a human must decide', steps=[])
            raise DbDevopsError('an interrupted failover drill (journal %s, phase %s) left a state this run does '
                                'not put right on its own: %s. Look at: %s. Then remove the journal and run again'
                                % (self.journal.path, phase, why, ' / '.join(advice)),
                                interrupted_drill=dict((k, v) for k, v in out.items() if k != 'nodes'),
                                nodes=out['nodes'])
        ctl = controls[old]
        out['restart'] = old
        out['action'] = ('start %s again as the primary (it holds every transaction it committed; %s was not '
                         'promoted)' % (self.labels[old], self.labels[new]))
        out['steps'] = ['confirm %s was not promoted and no promotion is under way' % self.labels[new],
                        'start %s as the primary: %s' % (self.labels[old], ctl.shell_command('start')),
                        'wait until %s accepts writes, and %s streams from it' % (self.labels[old], self.labels[new]),
                        'confirm one primary, then remove the journal %s' % self.journal.path]
        out['controls'] = controls
        return out

    def _not_restartable(self, ctl, standby_node):
        """Why the stopped old primary cannot simply be started again as the primary (None when it can)."""
        try:
            ctl.resolve_data_dir()
            if not os.path.isfile(os.path.join(ctl.data_dir, 'PG_VERSION')):
                return 'no primary: the data directory %s of the old primary is gone' % ctl.data_dir
            if ctl.running():
                return 'no primary: the old primary runs (%s) but does not answer' % ctl.describe()
            for signal_file in ('standby.signal', 'recovery.signal'):
                if os.path.exists(os.path.join(ctl.data_dir, signal_file)):
                    return ('no primary: the old primary (%s) has %s: a rejoin had begun, it would start as a '
                            'standby' % (ctl.describe(), signal_file))
            control = ctl.controldata()
        except DbDevopsError as exc:
            return 'no primary, and the old primary cannot be read: %s' % exc
        state = control.get('Database cluster state', '')
        if state not in ('shut down', 'in production'):
            return 'no primary: the old primary\'s control file says %r (expected shut down or in production)' % state
        if standby_node.get('system_identifier') and \
                str(control.get('Database system identifier')) != str(standby_node['system_identifier']):
            return 'no primary: the old primary (%s) and the standby are not the same cluster' % ctl.describe()
        return None

    def _recover_interrupted(self, found):
        """Put right what ``_assess_interrupted`` found (assessed again: time has passed); the report."""
        assessed = self._assess_interrupted(found)
        old = assessed.pop('restart')
        controls = assessed.pop('controls', {})
        assessed.pop('nodes')
        done = []
        if old is not None:
            new = 'standby' if old == 'primary' else 'primary'
            self.journal.data = dict(found)
            self.journal.write(phase='recovering', owner=_pgclient.process_identity(),
                               interrupted_phase=found.get('phase'))
            self._settle_promotion(new, controls.get(new))
            if self._is_primary(new):
                raise DbDevopsError('%s was promoted while this run looked (an interrupted pg_promote): it is the '
                                    'primary now; %s needs a rejoin (mode: rejoin). The journal %s stays'
                                    % (self.labels[new], self.labels[old], self.journal.path))
            done.append('%s was not promoted and no promotion is under way' % self.labels[new])
            controls[old].start()
            done.append('started %s (%s)' % (self.labels[old], controls[old].describe()))
            self._wait('%s accepts writes' % self.labels[old], lambda: self._is_primary(old),
                       self.options.promote_timeout)
            if self._two_primaries():
                controls[old].stop('immediate')
                raise DbDevopsError('TWO PRIMARIES after starting %s again: it was stopped (immediate) at once; %s '
                                    'is the primary. The journal %s stays; check both nodes'
                                    % (self.labels[old], self.labels[new], self.journal.path))
            done.append('%s is the one primary' % self.labels[old])
            assessed['action'] = 'started' + assessed['action'][len('start'):]
            try:
                self._wait('%s streams from %s' % (self.labels[new], self.labels[old]),
                           lambda: info.streaming(info.read_node(self.params[new], new, 2)),
                           self.options.catchup_timeout, 0.05)
                done.append('%s streams from it again' % self.labels[new])
            except DbDevopsError as exc:
                done.append('%s does not stream yet: %s' % (self.labels[new], exc))
        self.journal.remove()
        done.append('removed the journal %s' % self.journal.path)
        assessed['steps'] = done
        return assessed

    def _settle_promotion(self, node, ctl, timeout=10.0, quiet=1.0):
        """Wait until a promotion an interrupted pg_promote may have asked for is over: no promote.signal
        in ``node``'s data directory and ``quiet`` seconds still in recovery (or out of it)."""
        deadline = time.monotonic() + timeout
        since = time.monotonic()
        while time.monotonic() < deadline:
            pending = bool(ctl and ctl.data_dir and os.path.exists(os.path.join(ctl.data_dir, 'promote.signal')))
            if pending or self._is_primary(node):
                if not pending:
                    return
                since = time.monotonic()
            elif time.monotonic() - since >= quiet:
                return
            time.sleep(0.05)

    # -- pre-checks -------------------------------------------------------------
    def _settings(self, node):
        conn = connect(self.params[node].replace(connect_params=dict(self.params[node].connect_params,
                                                                     connect_timeout=5)),
                       autocommit=True, application_name='dbdevops_failover_drill')
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT current_setting('data_directory'), current_setting('wal_log_hints'), "
                            "current_setting('data_checksums'), current_setting('primary_conninfo'), "
                            "current_setting('full_page_writes'), (SELECT count(*) FROM pg_database WHERE datname = %s), "
                            "current_setting('primary_slot_name')", (self.options.probe_db,))
                data_dir, hints, checksums, conninfo, fpw, probe_db, slot = cur.fetchone()
        finally:
            conn.close()
        return dict(data_directory=data_dir, wal_log_hints=hints == 'on', data_checksums=checksums == 'on',
                    primary_conninfo=conninfo, full_page_writes=fpw == 'on',
                    probe_db_exists=bool(probe_db), primary_slot_name=slot or None)

    def _control(self, node, settings, major):
        opts = self.options
        cluster = getattr(opts, node + '_cluster')
        data_dir = getattr(opts, node + '_data_dir') or settings.get('data_directory')
        return NodeControl(self.labels[node], data_dir=data_dir, cluster=cluster,
                           log_file=getattr(opts, node + '_log_file'), bin_dir=opts.pg_bin_dir,
                           server_major=major)

    def prechecks(self):
        """Read both nodes; return (checks, nodes, settings); refuse with every reason found."""
        opts = self.options
        nodes = dict((n, info.read_node(self.params[n], self.labels[n])) for n in NODES)
        reasons, checks = [], []

        def check(name, ok, detail):
            checks.append(dict(check=name, ok=bool(ok), detail=detail))
            if not ok:
                reasons.append(detail)

        for n in NODES:
            check('%s reachable' % n, nodes[n]['reachable'], nodes[n]['error'] or '%s answers' % self.labels[n])
        if reasons:
            raise DrillRefused('refusing the failover drill, nothing was touched: %s' % '; '.join(reasons),
                               pre_checks=checks, nodes=list(nodes.values()))
        p, s = nodes['primary'], nodes['standby']
        roles = (p['role'], s['role'])
        if roles == ('primary', 'primary'):
            check('exactly one primary', False, 'TWO PRIMARIES: both %s and %s accept writes; fix that before '
                  'any drill' % (self.labels['primary'], self.labels['standby']))
        elif roles == ('standby', 'standby'):
            check('exactly one primary', False, 'no primary: both nodes are standbys')
        elif roles == ('standby', 'primary'):
            check('exactly one primary', False, 'the roles are swapped: %s is the primary and %s its standby; '
                  'swap the primary and standby options' % (self.labels['standby'], self.labels['primary']))
        else:
            check('exactly one primary', True, '%s is the one primary' % self.labels['primary'])
            check('same cluster', p['system_identifier'] == s['system_identifier'],
                  'system identifiers: primary %s, standby %s' % (p['system_identifier'], s['system_identifier']))
            receiver = s['receiver'] or {}
            streams = info.streaming(s) and receiver.get('sender_port') in (None, p['port'])
            check('standby streams from the primary', streams,
                  'the standby\'s WAL receiver is %s from port %s (the primary listens on %s)'
                  % (receiver.get('status') or 'not running', receiver.get('sender_port'), p['port'])
                  if not streams else 'the standby streams from port %s' % p['port'])
            check('same timeline', p['timeline'] == s['timeline'],
                  'timelines: primary %s, standby %s' % (p['timeline'], s['timeline']))
            check('replay not paused', not s['replay_paused'], 'WAL replay is paused on the standby'
                  if s['replay_paused'] else 'WAL replay runs')
            lag = max(0, info.lsn_int(p['current_lsn']) - info.lsn_int(s['replay_lsn'] or '0/0'))
            check('lag under max_lag_bytes', lag <= opts.max_lag_bytes,
                  'the standby replays %d bytes behind the primary (max_lag_bytes %d)' % (lag, opts.max_lag_bytes))
        if reasons:
            raise DrillRefused('refusing the failover drill, nothing was touched: %s' % '; '.join(reasons),
                               pre_checks=checks, nodes=list(nodes.values()))
        settings = dict((n, self._settings(n)) for n in NODES)
        major = p['server_version_num'] // 10000
        for n in (() if opts.fault == 'partition' and opts.mode == 'failover' else NODES):
            control = self._control(n, settings[n], major)
            self.controls[n] = control
            if control.cluster:
                ok, detail = True, '%s is controlled by pg_ctlcluster %s' % (self.labels[n], control.cluster)
                try:
                    control._cluster_parts()
                except DbDevopsError as exc:
                    ok, detail = False, str(exc)
            else:
                ok = bool(control.data_dir) and os.path.isfile(os.path.join(control.data_dir, 'PG_VERSION'))
                detail = ('%s: data directory %s is here' % (self.labels[n], control.data_dir) if ok else
                          '%s: data directory %s is not on this host: the drill must run on the host of both '
                          'servers (set %s_data_dir or %s_cluster)' % (self.labels[n], control.data_dir, n, n))
                if ok:
                    try:
                        if not control.running():
                            ok, detail = False, '%s: pg_ctl status says no server runs in %s' % (
                                self.labels[n], control.data_dir)
                    except DbDevopsError as exc:
                        ok, detail = False, str(exc)
            check('%s controllable' % n, ok, detail)
        check('probe database', settings['primary']['probe_db_exists'],
              'probe_db %s exists' % opts.probe_db if settings['primary']['probe_db_exists']
              else 'probe_db %s does not exist on the primary' % opts.probe_db)
        if opts.rejoin or opts.failback:
            for n in (('primary', 'standby') if opts.failback else ('primary',)):
                rewindable = settings[n]['wal_log_hints'] or settings[n]['data_checksums']
                check('%s rewindable' % n, rewindable,
                      '%s: wal_log_hints or data checksums %s' % (
                          self.labels[n], 'on' if rewindable else 'are both off: pg_rewind cannot rejoin it; '
                          'set wal_log_hints = on (restart) or run without rejoin'))
            for n in (NODES if opts.failback else ('standby',)):
                fpw = settings[n]['full_page_writes']
                check('%s full_page_writes' % n, fpw, '%s: full_page_writes is %s%s' % (
                    self.labels[n], 'on' if fpw else 'off', '' if fpw else
                    ': pg_rewind needs it on the server it rewinds from; set full_page_writes = on (reload)'))
        if reasons:
            raise DrillRefused('refusing the failover drill, nothing was touched: %s' % '; '.join(reasons),
                               pre_checks=checks, nodes=list(nodes.values()))
        return checks, nodes, settings

    def planned_steps(self):
        opts = self.options
        steps = ['create and empty the probe table %s in %s on the primary' % (opts.probe_table, opts.probe_db),
                 'start the probe writer (a commit every %d ms) on the primary' % opts.probe_interval_ms]
        if opts.mode == 'switchover':
            steps += ['stop the writes', 'CHECKPOINT on the primary', 'stop the primary (fast)',
                      'wait until the standby has replayed the primary\'s shutdown checkpoint']
        elif opts.fault == 'partition':
            steps += [('cut the primary off: run %s' % ' '.join(shlex.quote(w) for w in opts.fault_command))
                      if opts.fault_command else
                      'wait up to %ss for the primary to become unreachable (the probe writer fails)'
                      % opts.fault_wait_seconds]
        else:
            steps += ['%s the primary' % ('kill -9 the postmaster of' if opts.fault == 'kill' else
                                          'stop (immediate)')]
        if opts.mode == 'failover' and opts.fault == 'partition':
            steps += ['confirm the old primary stays unreachable from here for %ss (isolated, not stopped)'
                      % opts.fence_confirm_seconds]
        else:
            steps += ['confirm the old primary is down']
        steps += ['promote the standby (pg_promote, then pg_is_in_recovery)',
                  'write to the new primary; measure RTO and RPO']
        if opts.mode == 'failover' and opts.fault == 'partition':
            steps += ['report the old primary as isolated: fence it before its network returns, then rejoin it '
                      '(mode: rejoin on its host)']
        if opts.rejoin or opts.failback:
            steps += ['CHECKPOINT on the new primary', 'pg_rewind the old primary from the new primary',
                      'start the old primary as a standby; wait until it streams']
        if opts.failback:
            steps += ['switch over back to the original roles', 'rejoin the original standby; wait until it streams']
        if opts.rejoin or opts.failback:
            steps += ['compare the probe table%s between primary and standby (datacompare)'
                      % (' and %s' % ', '.join(opts.compare_tables) if opts.compare_tables else '')]
        if opts.report_path:
            steps += ['write the HTML report to %s' % opts.report_path]
        return steps

    def _values(self, **given):
        values = dict((k, None) for k in RESULT_KEYS)
        values.update(mode=self.options.mode, fault=self.options.fault if self.options.mode == 'failover' else None,
                      passed=False, verdict='not run', verdict_reasons=[], lost_ids=[], steps=[], events=[],
                      pre_checks=[], two_primaries=False, rejoined=False, failback=None, data_check=None,
                      nodes=[], recovery=[], report_path=self.options.report_path, writes_acknowledged=0,
                      writes_failed=0, streaming=None)
        values.update(given)
        return values

    def plan(self):
        validate(self.options)
        checks, nodes, _settings = self.prechecks()
        steps = [dict(step=s, planned=True) for s in self.planned_steps()]
        values = self._values(pre_checks=checks, steps=steps, nodes=list(nodes.values()),
                              primary_before=self.labels['primary'], verdict='planned',
                              timeline_before=nodes['primary']['timeline'])
        return Plan(True, values=values, work=dict(settings=_settings, nodes=nodes))

    # -- helpers ----------------------------------------------------------------
    def _now(self):
        return time.monotonic() - self.t0

    def _step(self, name, func, *args, **kwargs):
        self.current_step = name
        start_mono, start_wall = time.monotonic(), time.time()
        entry = dict(step=name, started_at=_iso(start_wall), offset_seconds=_round(start_mono - self.t0),
                     duration_seconds=None, ok=None, detail=None)
        self.steps.append(entry)
        try:
            out = func(*args, **kwargs)
        except Exception as exc:
            entry.update(ok=False, detail=str(exc), duration_seconds=_round(time.monotonic() - start_mono))
            raise
        entry.update(ok=True, duration_seconds=_round(time.monotonic() - start_mono))
        if isinstance(out, str):
            entry['detail'] = out
        return out

    def _event(self, name, mono, wall=None):
        self.events.append(dict(event=name, offset_seconds=_round(mono - self.t0),
                                at=_iso(wall if wall is not None else time.time() - (time.monotonic() - mono))))

    def _connect(self, node, dbname=None, timeout=5):
        params = self.params[node]
        params = params.replace(connect_params=dict(params.connect_params, connect_timeout=timeout))
        return connect(params, dbname=dbname, autocommit=True, application_name='dbdevops_failover_drill')

    def _query(self, node, statement, args=None, dbname=None, timeout=5):
        conn = self._connect(node, dbname, timeout)
        try:
            with conn.cursor() as cur:
                cur.execute(statement, args)
                return cur.fetchone() if cur.description else None
        finally:
            conn.close()

    def _wait(self, what, predicate, timeout, interval=0.02):
        deadline = time.monotonic() + timeout
        last = None
        while True:
            try:
                if predicate():
                    return
            except DbDevopsError as exc:
                last = str(exc)
            except Exception as exc:  # noqa: BLE001 - retried until the deadline
                last = str(exc).strip()
            if time.monotonic() >= deadline:
                raise DbDevopsError('timed out after %ss waiting until %s%s' % (
                    timeout, what, ' (last error: %s)' % last if last else ''))
            time.sleep(interval)

    def _replayed_past(self, node, lsn, strictly=False):
        op = '>' if strictly else '>='
        row = self._query(node, 'SELECT pg_last_wal_replay_lsn() %s %%s::pg_lsn' % op, (lsn,))
        return bool(row and row[0])

    def _is_primary(self, node):
        return not self._query(node, 'SELECT pg_is_in_recovery()')[0]

    def _refuses_connections(self, node):
        try:
            conn = self._connect(node, timeout=2)
        except DbDevopsError:
            return True
        conn.close()
        return False

    # -- the moves --------------------------------------------------------------
    def _stop_writes(self):
        if not self.writer.pause(30):
            raise DbDevopsError('the probe writer did not stop within 30 s')
        return 'writes stopped after %d acknowledged' % len(self.writer.acks)

    def _switchover_fault(self, src, dst):
        """CHECKPOINT, stop ``src`` fast, wait until ``dst`` replayed its shutdown checkpoint; the LSN."""
        self._step('CHECKPOINT on %s' % self.labels[src], self._query, src, 'CHECKPOINT')
        fault = time.monotonic()
        self._event('fault: %s stopped (fast)' % src, fault)
        self._step('stop %s (fast)' % self.labels[src], self.controls[src].stop, 'fast')
        self.down.add(src)
        ckpt = self.controls[src].controldata().get('Latest checkpoint location')
        if not ckpt:
            raise DbDevopsError('pg_controldata shows no latest checkpoint location for %s' % self.labels[src])
        self._step('wait until %s replayed %s' % (self.labels[dst], ckpt), self._wait,
                   '%s replayed the shutdown checkpoint %s of %s' % (self.labels[dst], ckpt, self.labels[src]),
                   lambda: self._replayed_past(dst, ckpt, strictly=True), self.options.catchup_timeout)
        return fault, ckpt

    def _failover_fault(self, src, dst):
        control = self.controls[src]
        pids = control.processes()
        fault = time.monotonic()
        if self.options.fault == 'kill':
            self._event('fault: postmaster of %s killed (SIGKILL)' % src, fault)
            self._step('kill -9 the postmaster of %s' % self.labels[src], control.kill)
        else:
            self._event('fault: %s stopped (immediate)' % src, fault)
            self._step('stop %s (immediate)' % self.labels[src], control.stop, 'immediate')
        self.down.add(src)
        if not control.wait_gone(pids):
            raise DbDevopsError('processes of %s still run after the fault: %s' % (self.labels[src], pids))
        self._step('let %s replay what it received' % self.labels[dst], self._settle_replay, dst)
        acked = [a.lsn for a in self.writer.acked(src) if a.lsn]
        return fault, max(acked, key=info.lsn_int) if acked else None

    def _partition_fault(self, src, dst):
        """Cut ``src`` off (fault_command) or wait until something else does; stop the writes. Returns
        (fault time, last flush LSN the old primary reported to the probe)."""
        opts = self.options
        before = len(self.writer.failed_at)
        if opts.fault_command:
            fault = time.monotonic()
            self._event('fault: %s cut off (fault_command)' % src, fault)
            self._step('run fault_command %s' % ' '.join(shlex.quote(w) for w in opts.fault_command),
                       self._run_fault_command)
        else:
            self._step('wait up to %ss for %s to become unreachable' % (opts.fault_wait_seconds, self.labels[src]),
                       self._wait, 'the probe writer fails to write to %s (an outside fault: nothing cut it off '
                       'within fault_wait_seconds)' % self.labels[src],
                       lambda: len(self.writer.failed_at) > before, opts.fault_wait_seconds)
            fault = self.writer.failed_at[before]
            self._event('fault: the probe writer lost %s (%s)' % (src, self.writer.last_error), fault)
        # never again to the old primary: a write in flight fails within the writer's TCP timeouts
        if not self.writer.pause(30):
            raise DbDevopsError('the probe writer is still blocked on a write to %s: refusing to promote'
                                % self.labels[src])
        acked = [a.lsn for a in self.writer.acked(src) if a.lsn]
        return fault, max(acked, key=info.lsn_int) if acked else None

    def _run_fault_command(self):
        argv = list(self.options.fault_command)
        try:
            done = _pgclient.run(argv, timeout=120)
        except (OSError, DbDevopsError) as exc:
            raise DbDevopsError('fault_command %s could not run: %s' % (argv[0], exc))
        if done.returncode != 0:
            raise DbDevopsError('fault_command %s failed (%s): nothing was promoted; undo what it did, if anything'
                                % (' '.join(shlex.quote(w) for w in argv), done.why()))
        return 'fault_command exited 0'

    def _confirm_isolated(self, node):
        """Every connection attempt to ``node`` fails for fence_confirm_seconds (at least one attempt)."""
        deadline = time.monotonic() + self.options.fence_confirm_seconds
        attempts, last = 0, None
        while True:
            attempts += 1
            try:
                conn = self._connect(node, timeout=2)
            except DbDevopsError as exc:
                last = (str(exc).strip().splitlines() or [''])[0]
            else:
                conn.close()
                raise DbDevopsError('%s still accepts connections from here after the fault: refusing to promote, '
                                    'that would make two primaries (is the fault in place?)' % self.labels[node])
            if time.monotonic() >= deadline:
                break
            time.sleep(0.2)
        return ('%s is isolated, not stopped: %d connection attempt(s) over %.1f s failed (last: %s)'
                % (self.labels[node], attempts, self.options.fence_confirm_seconds, last))

    def _settle_replay(self, node, quiet=0.3, timeout=30):
        """Wait until ``node`` replayed what it received, or its replay stopped moving for ``quiet`` seconds.

        What a standby received from a failed primary may end inside a record
        that will never be completed: replay then stops short of the receive
        LSN for good.  Promotion replays whatever is left anyway; this only
        makes the replay LSN read before it the one promotion starts from.
        """
        deadline = time.monotonic() + timeout
        last, since = None, time.monotonic()
        while time.monotonic() < deadline:
            replay, caught_up = self._query(node, 'SELECT pg_last_wal_replay_lsn()::text, '
                                                  'pg_last_wal_replay_lsn() >= pg_last_wal_receive_lsn() '
                                                  'OR pg_last_wal_receive_lsn() IS NULL')
            if caught_up:
                return 'replayed everything received (%s)' % replay
            if replay != last:
                last, since = replay, time.monotonic()
            elif time.monotonic() - since >= quiet:
                return 'replay stopped at %s, short of what was received (an incomplete last record)' % replay
            time.sleep(0.02)
        return 'replay still moving after %ss (at %s); promoting anyway' % (timeout, last)

    def _confirm_down(self, node):
        control = self.controls[node]
        if control.running():
            raise DbDevopsError('%s still runs (pg_ctl status): refusing to promote, that would make two '
                                'primaries' % self.labels[node])
        if not self._refuses_connections(node):
            raise DbDevopsError('%s still accepts connections: refusing to promote, that would make two primaries'
                                % self.labels[node])
        return '%s is down: not running and refusing connections' % self.labels[node]

    def _promote(self, node):
        timeout = self.options.promote_timeout
        answer = None
        try:
            answer = self._query(node, 'SELECT pg_promote(wait => true, wait_seconds => %s)', (timeout,))[0]
        except DbDevopsError:
            raise
        except Exception as exc:  # noqa: BLE001 - ambiguous: confirmed below
            answer = 'error: %s' % str(exc).strip()
        if answer is not True:
            # false or an error does not say the promotion failed: it may still finish
            self._wait('%s is out of recovery after pg_promote answered %r' % (self.labels[node], answer),
                       lambda: self._is_primary(node), timeout)
        promoted = time.monotonic()
        self.roles[node] = 'primary'
        for other in NODES:
            if other != node:
                self.roles[other] = 'down' if other in self.down else self.roles[other]
        return promoted, answer

    def _two_primaries(self):
        both = []
        for n in NODES:
            try:
                if not self._query(n, 'SELECT pg_is_in_recovery()', timeout=2)[0]:
                    both.append(n)
            except DbDevopsError:
                pass
        return both if len(both) > 1 else []

    def _conninfo_for(self, node, new_primary, settings):
        """primary_conninfo for ``node`` rejoining as a standby of ``new_primary``."""
        if node == 'primary' and self.options.rejoin_primary_conninfo:
            return self.options.rejoin_primary_conninfo
        if node == 'standby':
            original = settings['standby']['primary_conninfo']
            if original:
                return original
        base = settings['standby']['primary_conninfo'] or ''
        try:
            parts = parse_dsn(base) if base else {}
        except Exception:  # noqa: BLE001 - rebuilt below
            parts = {}
        target = self.params[new_primary]
        parts['host'] = target.host or 'localhost'
        parts['port'] = str(target.login_port)
        parts.setdefault('user', target.login_user)
        return make_dsn(**parts)

    def _rejoin(self, node, source, conninfo, slot=None):
        """Rewind ``node`` from ``source`` and start it as its standby. ``slot``: the physical slot it
        streams through (the original standby's own, on a failback), created on ``source`` when
        pg_rewind left none there (pg_rewind never copies slots)."""
        control = self.controls[node]
        self._journal_phase('rejoining', primary=source, standby=node)
        self._step('CHECKPOINT on %s' % self.labels[source], self._query, source, 'CHECKPOINT')
        if control.running():
            raise DbDevopsError('%s runs: stop it before pg_rewind' % self.labels[node])
        source_params = self.params[source]
        if slot:
            self._step('replication slot %s on %s' % (slot, self.labels[source]), self._query, source,
                       'SELECT count(pg_create_physical_replication_slot(%s, true)) FROM (SELECT 1) AS one '
                       'WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = %s)', (slot, slot))
        self._step('pg_rewind %s from %s' % (self.labels[node], self.labels[source]), control.rewind,
                   source_params, conninfo, slot)
        self._step('start %s as a standby' % self.labels[node], control.start)
        self.down.discard(node)
        self.roles[node] = 'standby'
        self._step('wait until %s streams from %s' % (self.labels[node], self.labels[source]), self._wait,
                   '%s streams from %s' % (self.labels[node], self.labels[source]),
                   lambda: info.streaming(info.read_node(self.params[node], node, 2)),
                   self.options.catchup_timeout, 0.05)
        self._event('%s rejoined as a standby' % node, time.monotonic())
        self._journal_phase('rejoined')
        self._restore_sync_names(source)

    def _handover(self, src, dst, planned):
        """Take the primary role from ``src`` to ``dst``; returns the measures of that handover."""
        opts = self.options
        self._journal_phase('fault', primary=src, standby=dst)
        if planned:
            self._step('stop the writes', self._stop_writes)
            last_ack = self.writer.last_ack(src)
            fault, last_lsn = self._switchover_fault(src, dst)
        elif opts.fault == 'partition':
            fault, last_lsn = self._partition_fault(src, dst)
            last_ack = self.writer.last_ack(src)
        else:
            fault, last_lsn = self._failover_fault(src, dst)
            self.writer.pause(30)   # never again to the old primary, whatever happens to it
            last_ack = self.writer.last_ack(src)
        self._journal_phase('fault-injected')
        if last_ack is not None:
            self._event('last acknowledged write on %s (id %d)' % (src, last_ack.id), last_ack.mono, last_ack.wall)
        if not planned and opts.fault == 'partition':
            self._step('confirm %s is unreachable' % self.labels[src], self._confirm_isolated, src)
            self._step('let %s replay what it received' % self.labels[dst], self._settle_replay, dst)
        else:
            self._step('confirm %s is down' % self.labels[src], self._confirm_down, src)
        replay_lsn = self._query(dst, 'SELECT pg_last_wal_replay_lsn()::text')[0]
        self._journal_phase('promoting')
        promoted, answer = self._step('promote %s' % self.labels[dst], self._promote, dst)
        self._journal_phase('promoted')
        self._event('promotion of %s confirmed' % dst, promoted)
        if self.options.sync_standby_names_after_promotion is not None:
            self._step('synchronous_standby_names on %s' % self.labels[dst], self._set_sync_names, dst,
                       self.options.sync_standby_names_after_promotion)
        self.writer.set_target(dst)
        first = self._step('first write on %s' % self.labels[dst], self._first_write, dst, promoted)
        self._event('first acknowledged write on %s (id %d)' % (dst, first.id), first.mono, first.wall)
        acked = [a.id for a in self.writer.acked(src)]
        conn = self._connect(dst, dbname=opts.probe_db)
        try:
            present = probe.present_ids(conn, opts.probe_table, acked)
        finally:
            conn.close()
        lost = sorted(set(acked) - present)
        gap = None
        if last_lsn and replay_lsn:
            gap = max(0, info.lsn_int(last_lsn) - info.lsn_int(replay_lsn))
        two = self._two_primaries()
        return dict(rto_seconds=_round(first.mono - last_ack.mono) if last_ack else None,
                    promotion_seconds=_round(promoted - fault), writes_lost=len(lost), lost_ids=lost,
                    lsn_gap_bytes=gap, last_primary_lsn=last_lsn, standby_replay_lsn=replay_lsn,
                    promote_answer=answer, acknowledged_before=len(acked), two_primaries=two)

    def _first_write(self, node, after):
        ack = self.writer.wait_first_ack(node, after, self.options.promote_timeout)
        if ack is None:
            why = self.writer.last_error
            try:
                names = self._query(node, "SELECT current_setting('synchronous_standby_names')")[0]
            except Exception:  # noqa: BLE001 - only to explain
                names = ''
            if names:
                why = ('commits wait for a synchronous standby (synchronous_standby_names = %r) and none is '
                       'connected yet; set sync_standby_names_after_promotion (for example to an empty string) '
                       'to let the new primary commit alone until the old one rejoins' % names)
            raise DbDevopsError('no write was acknowledged by %s within %ss after its promotion: %s'
                                % (self.labels[node], self.options.promote_timeout, why))
        return ack

    def _set_sync_names(self, node, value):
        """ALTER SYSTEM synchronous_standby_names on ``node`` and reload; remembers the value to restore."""
        before = self._query(node, "SELECT current_setting('synchronous_standby_names')")[0]
        self.sync_restore.setdefault(node, before)
        self._query(node, 'ALTER SYSTEM SET synchronous_standby_names = %s', (value,))
        self._query(node, 'SELECT pg_reload_conf()')
        self._wait('synchronous_standby_names is %r on %s' % (value, self.labels[node]),
                   lambda: self._query(node, "SELECT current_setting('synchronous_standby_names')")[0] == value, 10)
        return 'synchronous_standby_names %r -> %r' % (before, value)

    def _restore_sync_names(self, node):
        if node in self.sync_restore:
            value = self.sync_restore.pop(node)
            self._step('restore synchronous_standby_names on %s' % self.labels[node], self._set_sync_names,
                       node, value)
            self.sync_restore.pop(node, None)

    def _prepare_probe(self):
        opts = self.options
        conn = self._connect('primary', dbname=opts.probe_db)
        try:
            probe.create_probe_table(conn, opts.probe_table)
            with conn.cursor() as cur:
                cur.execute('SELECT pg_current_wal_lsn()::text')
                lsn = cur.fetchone()[0]
        finally:
            conn.close()
        self._wait('%s replayed the probe table' % self.labels['standby'],
                   lambda: self._replayed_past('standby', lsn), opts.catchup_timeout)

    def _start_writer(self):
        opts = self.options
        self.writer = probe.ProbeWriter(dict((n, self.params[n].replace(db=opts.probe_db)) for n in NODES),
                                        opts.probe_table, opts.probe_interval_ms)
        self.writer.start('primary')
        deadline = time.monotonic() + max(5.0, opts.warmup_seconds * 3)
        time.sleep(max(0.0, opts.warmup_seconds))
        while not self.writer.acked('primary'):
            if time.monotonic() > deadline:
                raise DbDevopsError('the probe writer could not write to %s: %s'
                                    % (self.labels['primary'], self.writer.last_error))
            time.sleep(0.01)
        return '%d writes acknowledged before the fault' % len(self.writer.acked('primary'))

    def _data_check(self, primary, standby):
        opts = self.options
        self.writer.pause(30)
        lsn = self._query(primary, 'SELECT pg_current_wal_lsn()::text')[0]
        self._wait('%s replayed %s' % (self.labels[standby], lsn), lambda: self._replayed_past(standby, lsn),
                   opts.catchup_timeout)
        tables = [opts.probe_table] + list(opts.compare_tables)
        src = self.params[primary].replace(db=opts.probe_db)
        dst = self.params[standby].replace(db=opts.probe_db)
        found = datacompare.compare(src, dst, tables=tables, sequences=False, large_objects=False)
        return dict(equal=found['equal'], tables_compared=found['tables_compared'],
                    differences=found['differences'], between=[self.labels[primary], self.labels[standby]])

    # -- the drill --------------------------------------------------------------
    def apply(self, plan):
        opts = self.options
        self.t0 = time.monotonic()
        settings = plan.work['settings']
        values = self._values(pre_checks=plan.values['pre_checks'], primary_before=self.labels['primary'],
                              timeline_before=plan.values['timeline_before'])
        error = None
        try:
            self._run(values, settings)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a report with the way back
            error = exc
        finally:
            if self.writer is not None:
                try:
                    self.writer.stop()
                except DbDevopsError as exc:
                    values['verdict_reasons'].append(str(exc))
        if self.writer is not None:
            values['writes_acknowledged'] = len(self.writer.acks)
            values['writes_failed'] = self.writer.failures
        values['steps'], values['events'] = self.steps, self.events
        values['nodes'] = [info.read_node(self.params[n], self.labels[n], 2) for n in NODES]
        primaries = [n for n in values['nodes'] if n['role'] == 'primary']
        if len(primaries) > 1:
            values['two_primaries'] = True
        values['primary_after'] = primaries[0]['name'] if len(primaries) == 1 else None
        if error is not None:
            try:
                values['recovery'] = self._recovery(values['nodes'])
            except Exception as exc:  # noqa: BLE001 - the report must come out anyway
                values['recovery'] = ['check both nodes with dbdevops.postgresql.replication_info (%s)' % exc]
        elif values['old_primary_state'] == 'isolated':
            values['recovery'] = [PARTITION_WARNING % (self.labels['primary'], self.labels['standby'])]
        self._verdict(values, error)
        if opts.report_path:
            report.write_report(opts.report_path, values)
        result = finish(values, changed=True, warnings=self.warnings)
        if error is not None:
            raise DrillInterrupted(
                'failover drill interrupted at step "%s": %s. Now: %s. To recover: %s'
                % (self.current_step, str(error).strip() or repr(error),
                   '; '.join('%s is %s' % (n['name'], n['role']) for n in values['nodes']),
                   ' / '.join(values['recovery'])), **result)
        if values['two_primaries']:
            raise DbDevopsError('TWO PRIMARIES after the drill: %s both accept writes; stop the old one now'
                                % ', '.join(n['name'] for n in primaries), **result)
        if opts.fail_on_verdict and not values['passed']:
            raise DbDevopsError('failover drill failed: %s' % '; '.join(values['verdict_reasons']), **result)
        return result

    def _run(self, values, settings):
        opts = self.options
        self._step('prepare the probe table', self._prepare_probe)
        self._step('start the probe writer on %s' % self.labels['primary'], self._start_writer)
        measured = self._handover('primary', 'standby', planned=opts.mode == 'switchover')
        values.update(rto_seconds=measured['rto_seconds'], promotion_seconds=measured['promotion_seconds'],
                      rpo_writes_lost=measured['writes_lost'], lost_ids=measured['lost_ids'],
                      rpo_lsn_bytes=measured['lsn_gap_bytes'])
        if measured['two_primaries']:
            values['two_primaries'] = True
            raise DbDevopsError('TWO PRIMARIES: %s both accept writes after the promotion'
                                % ', '.join(self.labels[n] for n in measured['two_primaries']))
        values['timeline_after'] = info.read_node(self.params['standby'], 'standby')['timeline']
        if opts.fault == 'partition':
            values['old_primary_state'] = 'isolated'
            self.warnings.append(PARTITION_WARNING % (self.labels['primary'], self.labels['standby']))
            return
        values['old_primary_state'] = 'stopped' if opts.mode == 'switchover' else (
            'killed' if opts.fault == 'kill' else 'stopped (immediate)')
        if not (opts.rejoin or opts.failback):
            return
        self._rejoin('primary', 'standby', self._conninfo_for('primary', 'standby', settings))
        values['rejoined'] = True
        primary, standby = 'standby', 'primary'
        if opts.failback:
            back = self._handover('standby', 'primary', planned=True)
            self._rejoin('standby', 'primary', self._conninfo_for('standby', 'primary', settings),
                         settings['standby']['primary_slot_name'])
            values['failback'] = dict((k, back[k]) for k in ('rto_seconds', 'promotion_seconds', 'writes_lost',
                                                             'lost_ids', 'lsn_gap_bytes'))
            values['failback']['rejoined'] = True
            if back['two_primaries']:
                values['two_primaries'] = True
                raise DbDevopsError('TWO PRIMARIES after the failback')
            primary, standby = 'primary', 'standby'
        values['data_check'] = self._step('compare %s and %s' % (self.labels[primary], self.labels[standby]),
                                          self._data_check, primary, standby)

    def _verdict(self, values, error):
        opts = self.options
        reasons = values['verdict_reasons']
        if error is not None:
            reasons.append('interrupted at step "%s": %s' % (self.current_step, str(error).strip()))
        if values['two_primaries']:
            reasons.append('two primaries were found')
        if values['rto_seconds'] is None:
            reasons.append('no RTO was measured (no write acknowledged before the fault and after the promotion)')
        if values['rpo_writes_lost'] is None:
            reasons.append('no RPO was measured')
        limit = opts.max_lost_writes
        if limit is None and opts.mode == 'switchover':
            limit = 0
        if values['rpo_writes_lost'] is not None and limit is not None and values['rpo_writes_lost'] > limit:
            reasons.append('%d acknowledged write(s) lost (allowed: %d): ids %s'
                           % (values['rpo_writes_lost'], limit, values['lost_ids'][:20]))
        if opts.max_rto_seconds is not None and values['rto_seconds'] is not None \
                and values['rto_seconds'] > opts.max_rto_seconds:
            reasons.append('RTO %.3f s is above max_rto_seconds %s' % (values['rto_seconds'], opts.max_rto_seconds))
        failback = values.get('failback') or {}
        if failback and failback.get('writes_lost'):
            reasons.append('%d acknowledged write(s) lost in the failback' % failback['writes_lost'])
        if (opts.rejoin or opts.failback) and error is None:
            check = values.get('data_check') or {}
            if not check.get('equal'):
                reasons.append('the data check found differences: %s' % check.get('differences'))
        values['passed'] = not reasons
        values['verdict'] = 'passed' if not reasons else ('interrupted' if error is not None else 'failed')

    def _recovery(self, nodes):
        """What to do from the state the drill left, in words and commands."""
        by_role = dict((n, node['role']) for n, node in zip(NODES, nodes))
        out = []
        cmds = dict((n, self.controls[n]) for n in NODES if n in self.controls)
        primaries = [n for n in NODES if by_role[n] == 'primary']
        if len(primaries) > 1:
            old = 'primary' if self.roles.get('standby') == 'primary' else 'standby'
            out.append('TWO PRIMARIES: stop %s now (%s) and point every client at %s'
                       % (self.labels[old], cmds[old].shell_command('stop', 'fast') if old in cmds else 'pg_ctl stop',
                          self.labels['standby' if old == 'primary' else 'primary']))
            return out
        if not primaries:
            down = [n for n in NODES if by_role[n] == 'unreachable']
            if 'primary' in down and by_role['standby'] == 'standby' and self.options.fault == 'partition':
                out.append('the old primary %s is unreachable from here (cut off by the fault, not stopped) and the '
                           'standby %s was not promoted: restore the old primary\'s network (undo fault_command) '
                           'and check that it streams again; or fence the old primary (stop it) and promote the '
                           'standby: SELECT pg_promote() on %s'
                           % (self.labels['primary'], self.labels['standby'], self.labels['standby']))
            elif 'primary' in down and by_role['standby'] == 'standby':
                out.append('no primary runs: start the old primary again (%s); the standby %s was not promoted'
                           % (cmds['primary'].shell_command('start') if 'primary' in cmds else 'pg_ctl start',
                              self.labels['standby']))
                out.append('or promote the standby: SELECT pg_promote() on %s' % self.labels['standby'])
            else:
                out.append('no primary answers: check both servers (%s)'
                           % ', '.join('%s: %s' % (self.labels[n], by_role[n]) for n in NODES))
            return out
        primary = primaries[0]
        other = 'standby' if primary == 'primary' else 'primary'
        out.append('the primary is now %s: point clients at it' % self.labels[primary])
        if self.options.fault == 'partition' and primary == 'standby' and by_role[other] != 'standby':
            out.append(PARTITION_WARNING % (self.labels[other], self.labels[primary]))
        elif by_role[other] == 'standby':
            out.append('%s is its standby: check it streams (dbdevops.postgresql.replication_info)'
                       % self.labels[other])
        elif other in cmds:
            ctl = cmds[other]
            out.append('%s is down: to rejoin it as a standby run CHECKPOINT on %s, then %s, write standby.signal '
                       'and primary_conninfo (pointing at %s) in its data directory, then %s; or run the drill '
                       'again later' % (self.labels[other], self.labels[primary],
                                        ctl.rewind_command(self.labels[primary]) if not ctl.cluster else
                                        'pg_rewind -D <its data directory> --source-server=...',
                                        self.labels[primary], ctl.shell_command('start')))
        return out
