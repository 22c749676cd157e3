# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Restore a pgBackRest stanza to a time, an LSN, a restore point or the latest WAL.

``plan()`` touches nothing: it reads the stanza, checks the target against
the recoverable window (pgBackRest silently restores the latest backup for a
time no backup precedes: this refuses instead, naming the window), picks the
backup (``--set``: the newest one that ended before the target) and the
directory, port and socket of the restored server.  ``apply()``:

- scratch (default): ``pgbackrest restore --archive-mode=off`` into an empty
  directory, then ``pg_ctl start`` as the owner with ``-c`` settings that win
  over the restored files (port, localhost and a socket of its own,
  ``archive_mode=off`` so the copy never pushes into the live stanza); a
  failed scratch restore removes what it created;
- in place (``replace``): stop the live server, move its data directory
  aside, restore into an empty one, start as before; the old directory is
  kept until the new server reached the target and accepted a write, and is
  moved back (server started again) when anything fails.  Every step is
  recorded first in a journal next to the data directory
  (``<data_dir>.pitr-inplace.json``, see ``Journal``), so that a run killed
  with SIGKILL (or a host crash) is found by the next call for the same
  stanza, any mode, and is rolled back (or, once the restored server was
  verified, completed) before that call does what it was asked.

``pgbackrest restore`` runs in a process group of its own with a guard
(``_pgclient.popen(group=True)``): killing this process kills pgBackRest and
its workers too, so a killed run leaves nothing writing into the directory.

Recovery ends with ``--target-action=promote`` (pgBackRest's default would
pause); ``pg_ctl -w`` returns once the server accepts connections, before
recovery ends, so the engine polls ``pg_is_in_recovery()`` until false.
``state=absent`` stops and removes a scratch server this engine made (marked
by ``dbdevops_pitr_scratch.json``).  No Ansible imports.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import glob
import json
import os
import pwd
import re
import shlex
import shutil
import socket
import subprocess
import time

from ansible_collections.dbdevops.postgresql.plugins.module_utils import _pgclient
from ansible_collections.dbdevops.postgresql.plugins.module_utils._contract import Plan, finish
from ansible_collections.dbdevops.postgresql.plugins.module_utils.errors import DbDevopsError
from ansible_collections.dbdevops.postgresql.plugins.module_utils.pitr import info as pitr_info
from ansible_collections.dbdevops.postgresql.plugins.module_utils.pitr.restore_point import find_record
from ansible_collections.dbdevops.postgresql.plugins.module_utils.pitr.tool import PgBackRest, PgBackRestError, iso
from ansible_collections.dbdevops.postgresql.plugins.module_utils.replication.control import NodeControl

MARKER = 'dbdevops_pitr_scratch.json'
SOCKET_PATH_MAX = 100
STOPPING = re.compile(r'recovery stopping (before|after|at) .*')
STOP_TIME = re.compile(r'time (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?(?:[+-]\d\d(?::?\d\d)?)?)')
LSN_RE = re.compile(r'^[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}$')
MINIMAL_CONF = "# written by dbdevops.postgresql.pitr_restore: the restored data directory had no postgresql.conf\n"
JOURNAL_SUFFIX = '.pitr-inplace.json'
JOURNAL_VERSION = 1
# The phases of an in-place restore, each recorded before (stopping, rolling-back) or after the step it names.
PHASES = ('stopping', 'stopped', 'moved-aside', 'restoring', 'started', 'verified', 'rolling-back')
STAMP_RE = re.compile(r'^\d{8}T\d{6}(-\d+)?$')
MINIMAL_HBA = ("# written by dbdevops.postgresql.pitr_restore: the restored data directory had no pg_hba.conf\n"
               "local all all peer\nhost all all 127.0.0.1/32 scram-sha-256\nhost all all ::1/128 scram-sha-256\n")


class RestoreError(DbDevopsError):
    """The restore failed; the message says what was left in which state."""


def parse_time(text):
    """(epoch, text for pgBackRest) of a target time; no zone means UTC."""
    raw = (text or '').strip()
    norm = raw.replace('T', ' ', 1) if re.match(r'^\d{4}-\d\d-\d\dT', raw) else raw
    norm = re.sub(r'\s*(UTC|Z)$', '+00:00', norm, flags=re.I)
    norm = re.sub(r'([+-]\d\d)$', r'\1:00', norm)
    norm = re.sub(r'([+-]\d\d)(\d\d)$', r'\1:\2', norm)
    try:
        value = datetime.datetime.fromisoformat(norm)
    except ValueError:
        raise DbDevopsError('target_time %r is not a time: write it like "2026-11-28 10:42:00+00" '
                            '(ISO 8601; no zone means UTC)' % text)
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.timezone.utc)
    value = value.astimezone(datetime.timezone.utc)
    return value.timestamp(), value.strftime('%Y-%m-%d %H:%M:%S.%f+00')


def _free_port(port, socket_dir):
    if socket_dir and os.path.exists(os.path.join(socket_dir, '.s.PGSQL.%d' % port)):
        return False
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(('127.0.0.1', port))
        except OSError:
            return False
    return True


def _pg_bin(name, major, bin_dir):
    if bin_dir:
        return _pgclient.Tool(name, None, bin_dir).path
    path = '/usr/lib/postgresql/%s/bin/%s' % (major, name)
    if major and os.access(path, os.X_OK):
        return path
    return _pgclient.Tool(name, int(major) if major else None).path


class Server(object):
    """A server in a data directory, reached through its socket, acted on as the owner."""

    def __init__(self, data_dir, port, socket_dir, os_user, major, bin_dir, log_file=None):
        self.data_dir = data_dir
        self.port = port
        self.socket_dir = socket_dir
        self.os_user = os_user
        self.major = major
        self.bin_dir = bin_dir
        self.log_file = log_file
        self.log_offset = 0

    def mark_log(self):
        """Read the log only from here on (a cluster's log holds the lines of earlier starts)."""
        try:
            self.log_offset = os.path.getsize(self.log_file) if self.log_file else 0
        except OSError:
            self.log_offset = 0

    def as_owner(self, argv):
        if os.geteuid() == 0 and self.os_user != 'root':
            return ['runuser', '-u', self.os_user, '--'] + list(argv)
        return list(argv)

    def pg_ctl(self, *args, **kwargs):
        argv = self.as_owner([_pg_bin('pg_ctl', self.major, self.bin_dir), '-D', self.data_dir] + list(args))
        return _pgclient.run(argv, timeout=kwargs.get('timeout', 300))

    def sql(self, query, timeout=30):
        argv = self.as_owner([_pg_bin('psql', self.major, self.bin_dir), '-X', '-A', '-t', '-q',
                              '-v', 'ON_ERROR_STOP=1', '-h', self.socket_dir, '-p', str(self.port),
                              '-U', self.os_user, '-d', 'postgres', '-c', query])
        env = dict(os.environ, PGCONNECT_TIMEOUT='5', PGOPTIONS=_pgclient.timeouts_off(self.major))
        for key in ('PGPASSWORD', 'PGSERVICE', 'PGHOST', 'PGPORT', 'PGUSER', 'PGDATABASE'):
            env.pop(key, None)
        return _pgclient.run(argv, env=env, timeout=timeout)

    def postmaster_alive(self):
        try:
            with open(os.path.join(self.data_dir, 'postmaster.pid')) as handle:
                pid = int(handle.readline().strip())
        except (OSError, ValueError):
            return False
        return _pgclient.pid_alive(pid)

    def postmaster_here(self):
        """Whether the postmaster named in postmaster.pid runs in this very directory (after a crash, the pid of a
        stale postmaster.pid may belong to another process: never stop that one)."""
        try:
            with open(os.path.join(self.data_dir, 'postmaster.pid')) as handle:
                pid = int(handle.readline().strip())
        except (OSError, ValueError):
            return False
        try:
            return _pgclient.pid_alive(pid) and os.path.samefile('/proc/%d/cwd' % pid, self.data_dir)
        except OSError:
            return False

    def log_tail(self, lines=15):
        if not self.log_file:
            return ''
        try:
            with open(self.log_file, 'rb') as handle:
                if os.fstat(handle.fileno()).st_size >= self.log_offset:  # smaller: rotated meanwhile
                    handle.seek(self.log_offset)
                text = handle.read().decode('utf-8', 'replace')
            return ''.join(text.splitlines(True)[-lines:])
        except OSError:
            return ''

    def log_errors(self):
        tail = self.log_tail(60)
        found = [ln.strip() for ln in tail.splitlines() if re.search(r'\b(FATAL|PANIC|ERROR):', ln)]
        return '; '.join(found[-3:]) or (tail.strip().splitlines() or ['no log'])[-1]

    def wait_promoted(self, timeout):
        """Poll pg_is_in_recovery() until false; raise when the server dies or the time is up."""
        deadline = time.monotonic() + timeout
        while True:
            done = self.sql('SELECT pg_is_in_recovery()', timeout=15)
            if done.returncode == 0 and done.stdout.strip() == 'f':
                return
            if not self.postmaster_alive():
                raise RestoreError('the restored server stopped during recovery: %s' % self.log_errors(),
                                   log_tail=self.log_tail())
            if time.monotonic() > deadline:
                raise RestoreError('recovery did not reach the target and promote within %d s (recovery_timeout); '
                                   'last answer: %s' % (timeout, (done.stdout.strip() or done.why())),
                                   log_tail=self.log_tail())
            time.sleep(0.2)

    def reached(self):
        done = self.sql("SELECT to_char(pg_last_xact_replay_timestamp() AT TIME ZONE 'UTC', "
                        "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), pg_last_wal_replay_lsn(), "
                        "('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int")
        if done.returncode != 0:
            raise RestoreError('cannot read where recovery stopped: %s' % done.why())
        replay_time, lsn, timeline = (done.stdout.strip().split('|') + ['', '', ''])[:3]
        line = None
        log_time = None
        text = self.log_tail(400)
        for match in STOPPING.finditer(text):
            line = match.group(0).strip()
        if line:
            found = STOP_TIME.search(line)
            if found:
                log_time = found.group(1)
        return dict(time=log_time or replay_time or None, replay_timestamp=replay_time or None, lsn=lsn or None,
                    timeline=int(timeline) if timeline.strip().isdigit() else None, log_line=line)

    def accepts_writes(self):
        done = self.sql('CREATE TEMP TABLE dbdevops_pitr_write_probe (x int); '
                        'INSERT INTO dbdevops_pitr_write_probe VALUES (1)')
        if done.returncode != 0:
            raise RestoreError('the restored server does not accept writes: %s' % done.why(),
                               log_tail=self.log_tail())


# who runs an in-place restore, and whether that process still runs (see Journal)
this_process = _pgclient.process_identity
process_alive = _pgclient.identity_alive


def _is_data_dir(path):
    return os.path.isfile(os.path.join(path, 'PG_VERSION')) and \
        os.path.isfile(os.path.join(path, 'global', 'pg_control'))


class Journal(object):
    """The record of one in-place restore: ``<data_dir>.pitr-inplace.json``, 0600, owned like the data directory.

    Written (atomically: a temporary file renamed over it) before each step
    that changes something, removed when the run ended either way.  A journal
    found by a later run means a run was killed: ``phase`` says how far it got,
    ``stamp`` names the directories it used (``aside``: the original data
    directory, ``failed``: where a half-restored one is moved to be removed).
    """

    def __init__(self, data_dir):
        self.data_dir = data_dir.rstrip('/') or data_dir
        self.path = self.data_dir + JOURNAL_SUFFIX
        self.entry = None

    def aside(self, stamp):
        return '%s.pitr-old-%s' % (self.data_dir, stamp)

    def failed(self, stamp):
        return '%s.pitr-failed-%s' % (self.data_dir, stamp)

    def untrusted(self, why):
        return DbDevopsError(
            'the in-place restore journal %s %s. Nothing was touched. Look at %s and at any %s.pitr-old-* next to it '
            '(the original data directory of an interrupted in-place restore): put the original back at %s (stopped), '
            'then remove %s and run again' % (self.path, why, self.data_dir, self.data_dir, self.data_dir, self.path),
            journal=self.path)

    def read(self):
        """The entry of an interrupted run, None when there is none; raise when it cannot be trusted."""
        if not os.path.lexists(self.path):
            return None
        if os.path.islink(self.path) or not os.path.isfile(self.path):
            raise self.untrusted('is not a regular file')
        try:
            with open(self.path) as handle:
                entry = json.load(handle)
        except (OSError, ValueError) as exc:
            raise self.untrusted('cannot be read (%s)' % exc)
        if not isinstance(entry, dict) or entry.get('version') != JOURNAL_VERSION:
            raise self.untrusted('is not a journal of version %d' % JOURNAL_VERSION)
        stamp = str(entry.get('stamp'))
        if entry.get('data_dir') != self.data_dir:
            raise self.untrusted('belongs to the data directory %r, not %s' % (entry.get('data_dir'), self.data_dir))
        if not STAMP_RE.match(stamp) or entry.get('aside') != self.aside(stamp):
            raise self.untrusted('names the moved-aside directory %r, not %s'
                                 % (entry.get('aside'), self.aside(stamp)))
        if entry.get('phase') not in PHASES:
            raise self.untrusted('has the unknown phase %r' % entry.get('phase'))
        self.entry = entry
        return entry

    def write(self, **changes):
        entry = dict(self.entry or {}, **changes)
        entry['updated'] = time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())
        owner = None
        if os.geteuid() == 0:
            info = os.stat(self.data_dir if os.path.isdir(self.data_dir)
                           else entry.get('aside') or os.path.dirname(self.path))
            owner = (info.st_uid, info.st_gid)
        _pgclient.write_json_atomic(self.path, entry, owner=owner)
        self.entry = entry

    def remove(self):
        # the journal and the temporary file of a write that was killed (write_json_atomic: <path>.<pid>.tmp)
        for path in [self.path] + glob.glob(glob.escape(self.path) + '.*.tmp'):
            if os.path.lexists(path):
                os.unlink(path)
        _pgclient.fsync_dir(os.path.dirname(self.path))
        self.entry = None


class PitrRestoreEngine(object):
    def __init__(self, conn_params, options):
        self.params = conn_params
        self.options = options
        self.tool = PgBackRest(options)
        self.settings = self.tool.settings()
        if options.replace and options.state == 'absent':
            raise DbDevopsError('replace and state=absent do not go together: state=absent drops a scratch server')

    # -- the owner
    def owner(self):
        try:
            return pwd.getpwnam(self.tool.os_user)
        except KeyError:
            raise DbDevopsError('os_user %s does not exist on this host' % self.tool.os_user)

    def chown(self, path):
        if os.geteuid() == 0:
            owner = self.owner()
            os.chown(path, owner.pw_uid, owner.pw_gid)

    # -- plan
    def plan(self):
        interrupted = self.plan_interrupted()
        try:
            plan = self.plan_absent() if self.options.state == 'absent' else self.plan_present(interrupted)
        except DbDevopsError as exc:
            if interrupted:
                exc.message = ('%s. Note: an in-place restore of %s was interrupted (journal %s, phase %s); the next '
                               'run that gets past this check %s it first' % (
                                   exc.message.rstrip('.'), interrupted['journal'].data_dir,
                                   interrupted['journal'].path, interrupted['report']['phase'],
                                   'rolls back' if interrupted['report']['action'] == 'rolled_back' else 'completes'))
                exc.details.setdefault('interrupted_restore', interrupted['report'])
                exc.args = (exc.message,)
            raise
        plan.values['interrupted_restore'] = interrupted['report'] if interrupted else None
        if interrupted:
            plan.changed = True
            plan.work['interrupted'] = interrupted
            plan.work['interrupted_warning'] = _interrupted_warning(interrupted['journal'], interrupted['report'],
                                                                    planned=True)
            plan.warnings.insert(0, plan.work['interrupted_warning'])
        return plan

    def plan_present(self, interrupted):
        self.tool.check_config()
        entry, backups = pitr_info.read_stanza(self.tool)
        if not backups:
            raise DbDevopsError('stanza %s has no backup to restore: take one with dbdevops.postgresql.physical_backup'
                                % self.tool.stanza)
        win = pitr_info.window(self.tool, entry, backups)
        major = ((entry.get('db') or [{}])[-1]).get('version')
        warnings = []
        kind, value, text, chosen = self.choose(backups, win, warnings)
        values = dict(state='present', target=dict(type=kind, value=text, timeline=self.options.target_timeline),
                      backup_set=chosen['label'], window=pitr_info.public_window(win), reached=None,
                      restore_seconds=0.0, replay_seconds=0.0, old_data_dir=None)
        if self.options.replace:
            values.update(self.plan_replace(interrupted))
        else:
            values.update(self.plan_scratch())
        args = ['--pg1-path=%s' % values['data_dir'], '--set=%s' % chosen['label']]
        if kind == 'default':
            args.append('--type=default')
        else:
            args += ['--type=%s' % kind, '--target=%s' % text, '--target-action=promote']
        if self.options.target_timeline:
            args.append('--target-timeline=%s' % self.options.target_timeline)
        if not self.options.replace:
            args += ['--archive-mode=off', '--tablespace-map-all=%s.tablespaces' % values['data_dir']]
        values['command'] = self.tool.display(self.tool.argv('restore', *args))
        return Plan(True, values, warnings=warnings, work=dict(args=args, major=major, window=win))

    def choose(self, backups, win, warnings):
        """(type, value, text, backup): the target and the backup restored, or refuse naming the window."""
        o = self.options
        span = 'the recoverable window is %s .. %s (LSN %s .. %s)' % (
            win['earliest'], win['latest'] or 'nothing archived', win['earliest_lsn'], win['latest_lsn'])
        if o.target_time:
            epoch, text = parse_time(o.target_time)
            fits = [b for b in backups if b['stop_epoch'] is not None and b['stop_epoch'] + 1 <= epoch]
            if not fits:
                raise DbDevopsError('target_time %s is before the end of the oldest backup (%s): nothing restores to '
                                    'it; %s' % (o.target_time, win['earliest'], span),
                                    window=pitr_info.public_window(win))
            if win['latest_epoch'] is None or epoch > win['latest_epoch']:
                raise DbDevopsError('target_time %s is after the newest archived WAL (segment %s reached the '
                                    'repository at %s): it is in the future or not archived yet (switch WAL with '
                                    'pg_switch_wal() and wait for the archiver); %s'
                                    % (o.target_time, win['latest_wal'], win['latest'], span),
                                    window=pitr_info.public_window(win))
            return 'time', epoch, text, self.pick(fits, 'target_time %s' % o.target_time)
        if o.target_lsn or o.target_name:
            if o.target_lsn:
                if not LSN_RE.match(o.target_lsn.strip()):
                    raise DbDevopsError('target_lsn %r is not an LSN: write it like 0/5000100' % o.target_lsn)
                lsn, kind, text = o.target_lsn.strip(), 'lsn', o.target_lsn.strip()
                what = 'target_lsn %s' % o.target_lsn
            else:
                record, count = find_record(o.record_file, o.target_name, self.tool.stanza)
                kind, text, what = 'name', o.target_name, 'restore point %r' % o.target_name
                if record is None:
                    warnings.append('restore point %r is not recorded in %s: restoring the newest backup; recovery '
                                    'fails if the point was made before it' % (o.target_name, o.record_file))
                    return kind, None, text, self.pick(backups, what)
                if count > 1:
                    warnings.append('restore point %r was made %d times: recovery stops at the first one after the '
                                    'backup it starts from' % (o.target_name, count))
                lsn = record['lsn']
                what = '%s (LSN %s, %s)' % (what, lsn, record.get('time'))
            target = pitr_info.lsn_int(lsn)
            fits = [b for b in backups if b['lsn_stop'] and pitr_info.lsn_int(b['lsn_stop']) <= target]
            if not fits:
                raise DbDevopsError('%s is before the end of the oldest backup (LSN %s): nothing restores to it; %s'
                                    % (what, win['earliest_lsn'], span), window=pitr_info.public_window(win))
            if not win['latest_lsn'] or target >= pitr_info.lsn_int(win['latest_lsn']):
                raise DbDevopsError('%s is after the newest archived WAL (up to LSN %s): it is not archived yet '
                                    '(switch WAL with pg_switch_wal() and wait for the archiver); %s'
                                    % (what, win['latest_lsn'], span), window=pitr_info.public_window(win))
            return kind, target, text, self.pick(fits, what)
        return 'default', None, None, self.pick(backups, 'the latest WAL')

    def pick(self, fits, what):
        if not self.options.backup_set:
            return fits[-1]
        for backup in fits:
            if backup['label'] == self.options.backup_set:
                return backup
        raise DbDevopsError('backup_set %s cannot restore to %s: it is not a backup of the stanza or it ended after '
                            'the target; backups that can: %s' % (self.options.backup_set, what,
                                                                  ', '.join(b['label'] for b in fits)))

    def plan_scratch(self):
        o = self.options
        live = self.settings.get('pg1-path')
        target = o.target_data_dir
        if not target:
            if not live:
                raise DbDevopsError('set target_data_dir: the config file %s names no pg1-path to put the scratch '
                                    'server next to' % self.tool.config)
            target = os.path.join(os.path.dirname(live.rstrip('/')), 'pitr-%s' % self.tool.stanza)
        target = os.path.abspath(target)
        if live and os.path.realpath(target) == os.path.realpath(live):
            raise DbDevopsError('target_data_dir %s is the live data directory (pg1-path): restore in place only with '
                                'replace: true' % target)
        if os.path.exists(target):
            if not os.path.isdir(target):
                raise DbDevopsError('target_data_dir %s exists and is not a directory' % target)
            if os.listdir(target):
                raise DbDevopsError('target_data_dir %s is not empty: choose another, or drop the scratch server there '
                                    'with state: absent' % target)
        elif not os.path.isdir(os.path.dirname(target)):
            raise DbDevopsError('the parent of target_data_dir %s does not exist' % target)
        if os.path.exists(target + '.tablespaces'):
            raise DbDevopsError('%s.tablespaces exists (tablespaces of an earlier scratch restore): remove it first'
                                % target)
        socket_dir = o.target_socket_dir or (target if len(target) + 16 < SOCKET_PATH_MAX else '/tmp')
        port = o.target_port
        if port:
            if not _free_port(port, socket_dir if os.path.isdir(socket_dir) else None):
                raise DbDevopsError('target_port %d is in use on this host: choose another' % port)
        else:
            port = int(self.settings.get('pg1-port') or 5432) + 1
            while not _free_port(port, socket_dir if os.path.isdir(socket_dir) else None):
                port += 1
        if str((o.target_settings or {}).get('archive_mode', 'off')).lower() not in ('off', 'false', '0', 'no'):
            raise DbDevopsError('target_settings cannot turn archive_mode on: a scratch copy must not archive into '
                                'the live stanza')
        log_file = o.target_log_file or os.path.join(target, 'log', 'pitr_restore.log')
        return dict(data_dir=target, port=port, socket_dir=socket_dir, log_file=log_file)

    def plan_replace(self, interrupted=None):
        o = self.options
        live = self.settings.get('pg1-path')
        if not live:
            raise DbDevopsError('replace needs the live data directory: the config file %s names no pg1-path'
                                % self.tool.config)
        live = live.rstrip('/') or live
        # an interrupted run is undone first: it puts the data directory back (or refuses to plan)
        if not interrupted and not os.path.isdir(live):
            raise DbDevopsError('the live data directory %s (pg1-path) does not exist' % live)
        socket_dir = self.settings.get('pg1-socket-path') or '/var/run/postgresql'
        port = int(self.settings.get('pg1-port') or 5432)
        if o.cluster:
            node = NodeControl('cluster', cluster=o.cluster, bin_dir=o.pg_bin_dir)
            cluster_dir = node.resolve_data_dir()
            if os.path.realpath(cluster_dir) != os.path.realpath(live):
                raise DbDevopsError('cluster %s has the data directory %s, but the stanza\'s pg1-path (config file '
                                    '%s) is %s: restoring in place would stop one server and replace the files of '
                                    'another; set cluster to the stanza\'s cluster'
                                    % (o.cluster, cluster_dir, self.tool.config, live))
            log_file = o.log_file or _cluster_log(o.cluster)
        else:
            log_file = o.log_file or os.path.join(live, 'log', 'pitr_restore.log')
        return dict(data_dir=live, port=port, socket_dir=socket_dir, log_file=log_file)

    def plan_absent(self):
        target = os.path.abspath(self.options.target_data_dir)
        values = dict(state='absent', target=None, backup_set=None, window=None, data_dir=target, port=None,
                      socket_dir=None, log_file=None, command=None, reached=None, restore_seconds=0.0,
                      replay_seconds=0.0, old_data_dir=None)
        if not os.path.exists(target):
            return Plan(False, values, work=dict(drop=False))
        marker = os.path.join(target, MARKER)
        if not os.path.isfile(marker):
            raise DbDevopsError('%s is not a scratch server made by pitr_restore (no %s in it): refusing to remove it'
                                % (target, MARKER))
        live = self.settings.get('pg1-path')
        if live and os.path.realpath(live) == os.path.realpath(target):
            raise DbDevopsError('%s is the live data directory (pg1-path): refusing to remove it' % target)
        try:
            with open(marker) as handle:
                meta = json.load(handle)
        except (OSError, ValueError):
            meta = {}
        values.update(port=meta.get('port'), socket_dir=meta.get('socket_dir'), log_file=meta.get('log_file'),
                      backup_set=meta.get('backup_set'))
        return Plan(True, values, work=dict(major=meta.get('major'), drop=True))

    # -- an interrupted in-place restore
    def plan_interrupted(self):
        """{journal, entry, report} of an in-place restore of pg1-path that was killed, or None.

        Reads only.  ``report['action']``: ``completed`` when the restored
        server had been verified (only the cleanup was left), else
        ``rolled_back``; ``report['steps']`` says what will be done.  Raises,
        touching nothing, when the journal and the directories do not agree.
        """
        live = self.settings.get('pg1-path')
        if not live:
            return None
        journal = Journal(live)
        entry = journal.read()
        if entry is None:
            return None
        data_dir, phase, stamp = journal.data_dir, entry['phase'], entry['stamp']
        aside, failed = journal.aside(stamp), journal.failed(stamp)
        owner = entry.get('owner') or {}
        if process_alive(owner):
            raise DbDevopsError('an in-place restore of %s is running now (pid %s on %s, started %s, phase %s; journal '
                                '%s): wait for it to end'
                                % (data_dir, owner.get('pid'), owner.get('host'), entry.get('started'), phase,
                                   journal.path), journal=journal.path)

        def inconsistent(why):
            return DbDevopsError(
                'an in-place restore of %s was interrupted in phase %s (journal %s), but %s. Nothing was touched. '
                'Find the original data directory of %s (it was to be kept at %s), put it back at %s with the server '
                'stopped, then remove %s and run again'
                % (data_dir, phase, journal.path, why, data_dir, aside, data_dir, journal.path),
                journal=journal.path, data_dir=data_dir, old_data_dir=aside)

        server = Server(data_dir, entry.get('port'), entry.get('socket_dir'), self.tool.os_user, entry.get('major'),
                        self.options.pg_bin_dir)
        has_aside = os.path.lexists(aside)
        steps = []
        if phase == 'verified':
            action = 'completed'
            if not _is_data_dir(data_dir):
                raise inconsistent('the restored data directory %s, which had been verified, is not a data directory '
                                   '(no PG_VERSION or global/pg_control)' % data_dir)
            if not server.postmaster_here():
                steps.append('start the restored server in %s' % data_dir)
            if has_aside:
                keep = entry.get('keep_old_data_dir') or self.options.keep_old_data_dir
                steps.append(('keep the old data directory %s' if keep else 'remove the old data directory %s')
                             % aside)
        else:
            action = 'rolled_back'
            if has_aside:
                if not _is_data_dir(aside):
                    raise inconsistent('%s, where the original data directory was moved, is not a data directory (no '
                                       'PG_VERSION or global/pg_control)' % aside)
                if os.path.lexists(data_dir):
                    if server.postmaster_here():
                        steps.append('stop the server running in the half-restored %s (pg_ctl stop -m immediate)'
                                     % data_dir)
                    steps.append('move the half-restored %s to %s' % (data_dir, failed))
                steps.append('move the original data directory %s back to %s' % (aside, data_dir))
            elif phase in ('stopping', 'stopped', 'rolling-back'):
                # stopping/stopped: it was never moved; rolling-back: it was moved back already
                if not _is_data_dir(data_dir):
                    raise inconsistent('neither %s nor %s is a data directory' % (aside, data_dir))
            else:
                raise inconsistent('%s, where the original data directory was moved, does not exist (%s %s)'
                                   % (aside, data_dir, 'holds a half-restored copy' if os.path.lexists(data_dir)
                                      else 'does not exist either'))
            if has_aside or os.path.lexists(failed):
                steps.append('remove the half-restored copy %s' % failed)
            if entry.get('was_running'):
                how = 'pg_ctlcluster %s start' % entry['cluster'] if entry.get('cluster') else 'pg_ctl start'
                steps.append('start the original server again unless it runs (%s)' % how)
        steps.append('remove the journal %s' % journal.path)
        report = dict(phase=phase, stamp=stamp, action=action, journal=journal.path, old_data_dir=aside, steps=steps)
        return dict(journal=journal, entry=entry, report=report)

    def recover(self, interrupted):
        """Roll back or complete the interrupted run; its report with the steps done."""
        journal, entry = interrupted['journal'], dict(interrupted['entry'])
        journal.entry = entry
        report = dict(interrupted['report'], steps=[])
        steps = report['steps']
        data_dir, stamp = journal.data_dir, entry['stamp']
        aside = journal.aside(stamp)
        major = entry.get('major')
        node = self._node(data_dir, entry.get('cluster'), entry.get('log_file'), major)
        server = Server(data_dir, entry.get('port'), entry.get('socket_dir'), self.tool.os_user, major,
                        self.options.pg_bin_dir, entry.get('log_file'))
        server.mark_log()
        try:
            if report['action'] == 'completed':
                journal.write(owner=this_process())
                if not server.postmaster_here():
                    node.start()
                    steps.append('started the restored server in %s' % data_dir)
                if os.path.lexists(aside):
                    if entry.get('keep_old_data_dir') or self.options.keep_old_data_dir:
                        steps.append('kept the old data directory %s' % aside)
                    else:
                        _rmtree(aside)
                        steps.append('removed the old data directory %s' % aside)
                journal.remove()
                steps.append('removed the journal %s' % journal.path)
            else:
                self.undo(journal, node, server, steps)
                steps.append('removed the journal %s' % journal.path)
        except Exception as exc:  # noqa: BLE001 - any failure: say what was done and where things are
            if report['action'] == 'completed':
                doing, where = 'completing', 'The restored data directory is %s' % data_dir
            else:
                doing = 'rolling back'
                where = 'The original data directory is %s' % (aside if os.path.lexists(aside) else data_dir)
            raise RestoreError('an in-place restore of %s was interrupted (journal %s, phase %s); %s it failed: %s. '
                               'Done so far: %s. %s. The journal is kept: fix what failed and run again, or finish '
                               'by hand and remove %s'
                               % (data_dir, journal.path, report['phase'], doing, exc, '; '.join(steps) or 'nothing',
                                  where, journal.path),
                               interrupted_restore=report, log_tail=server.log_tail())
        return report

    def undo(self, journal, node, server, steps):
        """Put the original data directory back and start it if it ran; idempotent, so a killed undo can be redone.

        The journal says ``rolling-back`` (and who does it) before anything moves; it is removed at the end.
        """
        entry = journal.entry
        data_dir = journal.data_dir
        aside, failed = journal.aside(entry['stamp']), journal.failed(entry['stamp'])
        journal.write(phase='rolling-back', owner=this_process())
        if os.path.lexists(aside):
            if os.path.lexists(data_dir):
                if server.postmaster_here():
                    done = server.pg_ctl('-m', 'immediate', '-w', 'stop', timeout=120)
                    if server.postmaster_here():
                        raise RestoreError('cannot stop the server running in the half-restored %s: %s'
                                           % (data_dir, done.why()))
                    steps.append('stopped the restored server')
                if os.path.lexists(failed):
                    _rmtree(failed)
                os.rename(data_dir, failed)
            os.rename(aside, data_dir)
            _pgclient.fsync_dir(os.path.dirname(data_dir))
            steps.append('moved the original data directory back')
        if os.path.lexists(failed):
            _rmtree(failed)
            steps.append('removed the half-restored copy')
        if entry.get('was_running') and not node.running():
            node.start()
            check = server.sql('SELECT 1')
            if check.returncode != 0:
                raise RestoreError('the original server started but does not answer: %s' % check.why())
            steps.append('started the server again')
        journal.remove()

    # -- apply
    def apply(self, plan):
        interrupted = plan.work.get('interrupted')
        report = self.recover(interrupted) if interrupted else None
        try:
            if self.options.state == 'absent':
                result = self.apply_absent(plan)
            elif self.options.replace:
                result = self.apply_replace(plan)
            else:
                result = self.apply_scratch(plan)
        except DbDevopsError as exc:
            if report:
                exc.message = '%s (Before this, the interrupted in-place restore of %s was %s: %s.)' % (
                    exc.message, interrupted['journal'].data_dir, report['action'].replace('_', ' '),
                    '; '.join(report['steps']))
                exc.args = (exc.message,)
                exc.details['interrupted_restore'] = report
            raise
        result['interrupted_restore'] = report
        if report:
            result['changed'] = True
            result['warnings'] = [_interrupted_warning(interrupted['journal'], report, planned=False)] + [
                w for w in result['warnings'] if w != plan.work.get('interrupted_warning')]
        return result

    def _node(self, data_dir, cluster, log_file, major):
        # the data directory also with a cluster: NodeControl runs pg_ctlcluster as its owner
        return NodeControl('live server', data_dir=data_dir, cluster=cluster, log_file=log_file,
                           bin_dir=self.options.pg_bin_dir, server_major=int(major) if major else None)

    def _restore(self, plan, values):
        t0 = time.monotonic()
        self._run_restore(plan.work['args'])
        values['restore_seconds'] = round(time.monotonic() - t0, 3)

    def _run_restore(self, args):
        """``pgbackrest restore`` in a process group of its own, with its guard: when this process dies (kill -9
        too) the guard kills pgBackRest and the workers it forked, so nothing keeps writing into the directory
        a later run rolls back.  (``runuser`` alone would leave pgBackRest running: only runuser gets the
        death signal.)"""
        tool = self.tool
        tool.check_config()
        argv = tool.argv('restore', *args)
        try:
            proc = _pgclient.popen(argv, group=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except _pgclient.ClientError as exc:
            raise PgBackRestError('cannot run pgbackrest (%s): install it (Debian package "pgbackrest") or set '
                                  'the pgbackrest option' % exc, command=tool.display(argv))
        try:
            out, err = proc.communicate(timeout=tool.timeout)
        except subprocess.TimeoutExpired:
            _pgclient.kill(proc)
            raise PgBackRestError('pgbackrest restore did not finish within %s s (command_timeout); it was killed '
                                  'with its workers' % tool.timeout, command=tool.display(argv))
        except BaseException:
            _pgclient.kill(proc)
            raise
        done = _pgclient.Completed(argv, proc.returncode, (out or b'').decode('utf-8', 'replace'),
                                   (err or b'').decode('utf-8', 'replace'))
        if done.returncode != 0:
            raise tool.error('restore', done, argv)
        return done

    def _server(self, values, major):
        return Server(values['data_dir'], values['port'], values['socket_dir'], self.tool.os_user, major,
                      self.options.pg_bin_dir, values['log_file'])

    def start_options(self, values):
        settings = dict(port=values['port'], listen_addresses='localhost',
                        unix_socket_directories=values['socket_dir'], archive_mode='off', hot_standby='on',
                        logging_collector='off', external_pid_file='', cluster_name='pitr-%s' % self.tool.stanza)
        settings.update(self.options.target_settings or {})
        settings['archive_mode'] = 'off'
        return ' '.join('-c %s' % shlex.quote('%s=%s' % (k, v)) for k, v in settings.items())

    def apply_scratch(self, plan):
        values = dict(plan.values)
        target = values['data_dir']
        created = not os.path.exists(target)
        if created:
            os.mkdir(target, 0o700)
        os.chmod(target, 0o700)
        self.chown(target)
        server = self._server(values, plan.work['major'])
        try:
            self._restore(plan, values)
            for name, text in (('postgresql.conf', MINIMAL_CONF), ('pg_hba.conf', MINIMAL_HBA), ('pg_ident.conf', '')):
                self._write_if_missing(os.path.join(target, name), text)
            self._write_marker(values, plan.work['major'])
            log_dir = os.path.dirname(values['log_file'])
            if not os.path.isdir(log_dir):
                os.makedirs(log_dir, 0o700)
                self.chown(log_dir)
            t0 = time.monotonic()
            done = server.pg_ctl('-l', values['log_file'], '-w', '-t', str(self.options.recovery_timeout),
                                 '-o', self.start_options(values), 'start',
                                 timeout=self.options.recovery_timeout + 60)
            if done.returncode != 0 and not server.postmaster_alive():
                raise RestoreError('the restored server did not start: %s' % server.log_errors(),
                                   log_tail=server.log_tail())
            server.wait_promoted(self.options.recovery_timeout)
            server.accepts_writes()
            values['replay_seconds'] = round(time.monotonic() - t0, 3)
            values['reached'] = server.reached()
        except DbDevopsError as exc:
            details = dict(exc.details)
            details.setdefault('log_tail', server.log_tail())
            server.pg_ctl('-m', 'immediate', '-w', 'stop', timeout=120)
            # the directory was missing or empty before: everything in it is ours
            _rmtree(target, keep_root=not created)
            _rmtree(target + '.tablespaces')
            raise RestoreError('scratch restore of stanza %s into %s failed: %s. The scratch directory was removed; '
                               'the live server was not touched.' % (self.tool.stanza, target, exc), **details)
        return finish(values, changed=True, warnings=plan.warnings)

    def _write_if_missing(self, path, text):
        if not os.path.exists(path):
            with open(path, 'w') as handle:
                handle.write(text)
            os.chmod(path, 0o600)
            self.chown(path)

    def _write_marker(self, values, major):
        path = os.path.join(values['data_dir'], MARKER)
        with open(path, 'w') as handle:
            json.dump(dict(stanza=self.tool.stanza, backup_set=values['backup_set'], target=values['target'],
                           port=values['port'], socket_dir=values['socket_dir'], log_file=values['log_file'],
                           major=major, created=iso(time.time())), handle, indent=1, sort_keys=True)
        os.chmod(path, 0o600)
        self.chown(path)

    def apply_absent(self, plan):
        values = dict(plan.values)
        if not plan.work.get('drop'):
            return finish(values, changed=False)
        target = values['data_dir']
        major = plan.work.get('major') or _read_version(target)
        server = Server(target, values['port'], values['socket_dir'], self.tool.os_user, major, self.options.pg_bin_dir)
        if server.postmaster_alive():
            done = server.pg_ctl('-m', 'immediate', '-w', 'stop', timeout=120)
            if done.returncode != 0 and server.postmaster_alive():
                raise RestoreError('cannot stop the scratch server in %s: %s' % (target, done.why()))
        _rmtree(target)
        _rmtree(target + '.tablespaces')
        return finish(values, changed=True)

    def apply_replace(self, plan):
        values = dict(plan.values)
        data_dir = values['data_dir']
        o = self.options
        major = plan.work['major']
        node = self._node(data_dir, o.cluster, values['log_file'], major)
        server = self._server(values, major)
        journal = Journal(data_dir)
        if os.path.lexists(journal.path):
            raise DbDevopsError('another in-place restore of %s started after this run made its plan (journal %s): '
                                'nothing was touched; run again when it has ended' % (data_dir, journal.path),
                                journal=journal.path)
        server.mark_log()
        was_running = node.running()
        base = time.strftime('%Y%m%dT%H%M%S', time.gmtime())
        stamp, number = base, 1
        while os.path.lexists(journal.aside(stamp)) or os.path.lexists(journal.failed(stamp)):
            number += 1
            stamp = '%s-%d' % (base, number)
        aside = journal.aside(stamp)
        # "stopping" before the server is stopped: a run killed in between must start it again
        self._first_write(
            journal, version=JOURNAL_VERSION, tool='dbdevops.postgresql.pitr_restore', stanza=self.tool.stanza,
            data_dir=data_dir, stamp=stamp, aside=aside, failed=journal.failed(stamp), phase='stopping',
            was_running=was_running, cluster=o.cluster, log_file=values['log_file'], port=values['port'],
            socket_dir=values['socket_dir'], major=major, keep_old_data_dir=bool(o.keep_old_data_dir),
            backup_set=values['backup_set'], target=values['target'], owner=this_process(),
            started=time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()))
        try:
            if was_running:
                node.stop('fast')
            journal.write(phase='stopped')
            os.rename(data_dir, aside)
            _pgclient.fsync_dir(os.path.dirname(data_dir))
            journal.write(phase='moved-aside')
            os.mkdir(data_dir, 0o700)
            self.chown(data_dir)
            journal.write(phase='restoring')
            self._restore(plan, values)
            opts = os.path.join(aside, 'postmaster.opts')
            if os.path.isfile(opts) and not os.path.exists(os.path.join(data_dir, 'postmaster.opts')):
                shutil.copy2(opts, os.path.join(data_dir, 'postmaster.opts'))
                self.chown(os.path.join(data_dir, 'postmaster.opts'))
            if values['log_file'] and not o.cluster and not os.path.isdir(os.path.dirname(values['log_file'])):
                os.makedirs(os.path.dirname(values['log_file']), 0o700)
                self.chown(os.path.dirname(values['log_file']))
            journal.write(phase='started')
            t0 = time.monotonic()
            try:
                node.start()
            except DbDevopsError as exc:
                if not server.postmaster_alive():
                    raise RestoreError('the restored server did not start: %s (%s)' % (server.log_errors(), exc),
                                       log_tail=server.log_tail())
            server.wait_promoted(o.recovery_timeout)
            server.accepts_writes()
            values['replay_seconds'] = round(time.monotonic() - t0, 3)
            journal.write(phase='verified')
        except BaseException as exc:
            self.roll_back(journal, node, server, exc)
            raise  # roll_back raises; keeps linters calm
        # verified: from here on the restore stands; what is left is reporting and cleanup
        warnings = list(plan.warnings)
        try:
            values['reached'] = server.reached()
        except DbDevopsError as exc:
            warnings.append('the restore is done, but where recovery stopped cannot be read: %s' % exc)
        if o.keep_old_data_dir:
            values['old_data_dir'] = aside
        else:
            _rmtree(aside)
        journal.remove()
        return finish(values, changed=True, warnings=warnings)

    @staticmethod
    def _first_write(journal, **entry):
        try:
            journal.write(**entry)
        except OSError as exc:
            raise RestoreError('cannot write the in-place restore journal %s (%s): nothing was touched; the folder '
                               'of the data directory must be writable by this user' % (journal.path, exc))

    def roll_back(self, journal, node, server, exc):
        details = dict(getattr(exc, 'details', {}) or {})
        details.setdefault('log_tail', server.log_tail())
        steps = []
        data_dir, aside = journal.data_dir, journal.aside(journal.entry['stamp'])
        try:
            self.undo(journal, node, server, steps)
        except BaseException as again:  # noqa: BLE001 - report both failures
            raise RestoreError('in-place restore of stanza %s failed (%s) AND rolling back failed (%s) after: %s. '
                               'The original data directory is %s; look before starting anything. The journal %s '
                               'is kept: the next pitr_restore run for this stanza tries the roll back again'
                               % (self.tool.stanza, exc, again, ', '.join(steps) or 'nothing',
                                  aside if os.path.exists(aside) else data_dir, journal.path), **details)
        raise RestoreError('in-place restore of stanza %s failed: %s. Rolled back: %s; the server serves as before.'
                           % (self.tool.stanza, exc, ', '.join(steps) or 'nothing had changed'), **details)


def _interrupted_warning(journal, report, planned):
    what = 'rolled back' if report['action'] == 'rolled_back' else 'completed'
    return 'an in-place restore of %s was interrupted in phase %s (journal %s): %s' % (
        journal.data_dir, report['phase'], journal.path,
        ('this run %s it first' % ('rolls back' if what == 'rolled back' else 'completes')) if planned
        else '%s first: %s' % (what, '; '.join(report['steps'])))


def _cluster_log(cluster):
    """Where a Debian cluster logs (pg_ctlcluster's -l): the "log" link of its configuration, else the default."""
    match = re.match(r'^\s*(\d+)\s*/\s*(\S+)\s*$', cluster or '')
    if not match:
        return None
    link = '/etc/postgresql/%s/%s/log' % match.groups()
    if os.path.lexists(link):
        return os.path.realpath(link)
    return '/var/log/postgresql/postgresql-%s-%s.log' % match.groups()


def _read_version(data_dir):
    try:
        with open(os.path.join(data_dir, 'PG_VERSION')) as handle:
            return handle.read().strip()
    except OSError:
        return None


def _rmtree(path, keep_root=False):
    if not os.path.exists(path):
        return
    if keep_root:
        for name in os.listdir(path):
            full = os.path.join(path, name)
            if os.path.isdir(full) and not os.path.islink(full):
                shutil.rmtree(full, ignore_errors=True)
            else:
                os.unlink(full)
        return
    shutil.rmtree(path, ignore_errors=True)
