# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Internal: acting on a local PostgreSQL server for the failover drill.

A server is named either by its data directory (``pg_ctl -D``, the log file
given or ``<data_dir>/log/dbdevops-failover-drill.log``; a start reuses the
options of the last start, ``postmaster.opts``) or by a Debian cluster
(``pg_ctlcluster 15 main``).  Run as root, ``pg_ctl``, ``pg_controldata``
and ``pg_rewind`` run as the owner of the data directory (``runuser``);
otherwise this process must be that owner.  Every program goes through
``_pgclient``; ``pg_rewind`` gets the source's password through a
``LibpqEnv`` passfile, never argv.  No Ansible imports.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import pwd
import re
import shlex
import signal
import subprocess
import time

from ansible_collections.dbdevops.postgresql.plugins.module_utils import _pgclient
from ansible_collections.dbdevops.postgresql.plugins.module_utils.errors import DbDevopsError

# Files pg_rewind copies from the source that belong to the target's own setup.
# postmaster.opts too: the crash recovery pg_rewind runs first (single-user mode) rewrites it.
OWN_CONFIG_FILES = ('postgresql.conf', 'postgresql.auto.conf', 'pg_hba.conf', 'pg_ident.conf', 'postmaster.opts')
RECOVERY_KEYS = ('primary_conninfo', 'primary_slot_name')


def _recovery_settings(conninfo, slot):
    """postgresql.auto.conf lines of a standby: primary_conninfo, and primary_slot_name when it has one."""
    def quoted(value):
        return "'%s'" % value.replace('\\', '\\\\').replace("'", "''")
    lines = 'primary_conninfo = %s\n' % quoted(conninfo)
    if slot:
        lines += 'primary_slot_name = %s\n' % quoted(slot)
    return lines


class ControlError(DbDevopsError):
    """A control program failed; the message names the node, the command and why."""


def _children_of(pid):
    """Pids whose parent is ``pid`` (the backends of a postmaster)."""
    found = []
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open('/proc/%s/stat' % entry) as handle:
                fields = handle.read().rsplit(')', 1)[1].split()
            if int(fields[1]) == pid:
                found.append(int(entry))
        except (OSError, IndexError, ValueError):
            continue
    return found


_alive = _pgclient.pid_alive


def _run_grouped(argv, env=None, timeout=None):
    """``_pgclient.run`` with the program in a process group of its own (``popen(group=True)``).

    As root the programs run under ``runuser``, which forks: the program is its
    child and does not inherit the death signal, so a kill -9 of this process
    would leave pg_rewind or a single-user postgres running.  The group's guard
    kills them all.  A postmaster started by pg_ctl leaves the group (setsid).
    """
    proc = _pgclient.popen(argv, env=env, group=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException:
        _pgclient.kill(proc)
        raise
    return _pgclient.Completed(argv, proc.returncode, (out or b'').decode('utf-8', 'replace'),
                               (err or b'').decode('utf-8', 'replace'))


class NodeControl(object):
    """Start, stop, kill, inspect and rewind one local server (see the module header)."""

    def __init__(self, label, data_dir=None, cluster=None, log_file=None, bin_dir=None, server_major=None):
        self.label = label
        self.data_dir = data_dir
        self.cluster = cluster
        self.log_file = log_file
        self.bin_dir = bin_dir
        self.server_major = server_major
        self._tools = {}

    # -- describing
    def describe(self):
        return ('cluster %s' % self.cluster) if self.cluster else ('data directory %s' % self.data_dir)

    def resolve_data_dir(self):
        """The data directory; a Debian cluster's is read from its configuration (pg_conftool)."""
        if self.data_dir or not self.cluster:
            return self.data_dir
        version, name = self._cluster_parts()
        done = _pgclient.run(['pg_conftool', '-s', version, name, 'show', 'data_directory'], timeout=60)
        if done.returncode != 0 or not done.stdout.strip():
            raise ControlError('%s: cannot read the data directory of cluster %s with pg_conftool: %s (is the '
                               'cluster on this host? pg_lsclusters lists them)'
                               % (self.label, self.cluster, done.why()))
        self.data_dir = done.stdout.strip()
        return self.data_dir

    def tool(self, name):
        if name not in self._tools:
            self._tools[name] = _pgclient.Tool(name, self.server_major, self.bin_dir).path
        return self._tools[name]

    def owner(self):
        info = os.stat(self.data_dir)
        return pwd.getpwuid(info.st_uid)

    def _as_owner(self, argv):
        if os.geteuid() == 0:
            owner = self.owner()
            if owner.pw_uid != 0:
                return ['runuser', '-u', owner.pw_name, '--'] + list(argv)
        return list(argv)

    def _cluster_parts(self):
        match = re.match(r'^\s*(\d+)\s*/\s*(\S+)\s*$', self.cluster or '')
        if not match:
            raise ControlError('%s: cluster must be written VERSION/NAME (as pg_lsclusters shows it), got %r'
                               % (self.label, self.cluster))
        return match.group(1), match.group(2)

    def command(self, action, mode=None):
        """The argv of ``action`` (start, stop, status) for humans and for running."""
        if self.cluster:
            version, name = self._cluster_parts()
            argv = ['pg_ctlcluster', version, name, action]
            if action == 'stop' and mode:
                argv += ['-m', mode]
            return argv
        argv = [self.tool('pg_ctl'), '-D', self.data_dir]
        if action == 'start':
            argv += ['-l', self.log_path(), '-w', '-t', '120']
            opts = self.start_options()
            if opts:
                argv += ['-o', opts]
        elif action == 'stop':
            argv += ['-m', mode or 'fast', '-w', '-t', '120']
        return argv + [action]

    def log_path(self):
        return self.log_file or os.path.join(self.data_dir, 'log', 'dbdevops-failover-drill.log')

    def start_options(self):
        """The options of the last start (postmaster.opts) without the program and its -D."""
        return ' '.join(shlex.quote(w) for w in self._start_words())

    def _start_words(self):
        try:
            with open(os.path.join(self.data_dir, 'postmaster.opts')) as handle:
                words = shlex.split(handle.read())
        except (OSError, ValueError):
            return []
        words = words[1:]
        out, skip = [], False
        for word in words:
            if skip:
                skip = False
                continue
            if word == '-D':
                skip = True
                continue
            if word.startswith('-D'):
                continue
            out.append(word)
        return out

    def shell_command(self, action, mode=None):
        try:
            argv = self.command(action, mode)
        except DbDevopsError:
            argv = ['pg_ctl', '-D', self.data_dir or '<data directory>', action]
        return ' '.join(shlex.quote(w) for w in self._as_owner(argv))

    # -- acting
    def _run(self, argv, what, env=None, timeout=180):
        done = _run_grouped(self._as_owner(argv), env=env, timeout=timeout)
        if done.returncode != 0:
            raise ControlError('%s (%s): %s failed: %s' % (self.label, self.describe(), what, done.why()),
                               command=' '.join(shlex.quote(w) for w in argv), stderr=done.stderr[-2000:])
        return done

    def running(self):
        """Whether the server runs (pg_ctl status / pg_ctlcluster status: 0 running, 3 not)."""
        done = _run_grouped(self._as_owner(self.command('status')), timeout=60)
        if done.returncode == 0:
            # pg_ctl status believes a killed postmaster nobody reaped yet (a zombie) still runs
            pid = self.postmaster_pid() if self.data_dir else None
            return True if pid is None else _alive(pid)
        if done.returncode == 3:
            return False
        raise ControlError('%s (%s): cannot tell whether the server runs: %s'
                           % (self.label, self.describe(), done.why()))

    def postmaster_pid(self):
        try:
            with open(os.path.join(self.data_dir, 'postmaster.pid')) as handle:
                return int(handle.readline().strip())
        except (OSError, ValueError):
            return None

    def stop(self, mode='fast'):
        self._run(self.command('stop', mode), 'stop -m %s' % mode)

    def start(self):
        if not self.cluster:
            folder = os.path.dirname(self.log_path())
            if not os.path.isdir(folder):
                os.makedirs(folder)
                self._chown(folder)
            self.wait_reaped()
        self._run(self.command('start'), 'start')

    def kill(self):
        """SIGKILL the postmaster; returns the pids of its backends, to wait for with ``wait_gone``."""
        pid = self.postmaster_pid()
        if not pid or not _alive(pid):
            raise ControlError('%s (%s): no running postmaster to kill (postmaster.pid: %s)'
                               % (self.label, self.describe(), pid))
        children = _children_of(pid)
        os.kill(pid, signal.SIGKILL)
        return [pid] + children

    def processes(self):
        """The postmaster and its backends, now (for ``wait_gone`` after an immediate stop)."""
        pid = self.postmaster_pid()
        if not pid or not _alive(pid):
            return []
        return [pid] + _children_of(pid)

    @staticmethod
    def wait_gone(pids, timeout=15):
        """True once none of ``pids`` lives (orphaned backends of a killed postmaster included)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not any(_alive(p) for p in pids):
                return True
            time.sleep(0.01)
        return not any(_alive(p) for p in pids)

    def wait_reaped(self, timeout=30):
        """Wait until the postmaster named in postmaster.pid is gone, zombie included (else a new
        server or pg_rewind's crash recovery takes the lock file for a live one)."""
        pid = self.postmaster_pid()
        deadline = time.monotonic() + timeout
        while pid and os.path.exists('/proc/%d' % pid) and time.monotonic() < deadline:
            if _alive(pid):
                return False
            time.sleep(0.02)
        return True

    def controldata(self):
        """pg_controldata as {field: value}."""
        done = self._run([self.tool('pg_controldata'), '-D', self.data_dir], 'pg_controldata')
        out = {}
        for line in done.stdout.splitlines():
            if ':' in line:
                key, value = line.split(':', 1)
                out[key.strip()] = value.strip()
        return out

    def _chown(self, path):
        if os.geteuid() == 0:
            owner = self.owner()
            os.chown(path, owner.pw_uid, owner.pw_gid)

    def rewind_command(self, source_label):
        """pg_rewind as a person would run it (the password from ~/.pgpass or PGPASSFILE, never argv)."""
        try:
            program = self.tool('pg_rewind')
        except DbDevopsError:
            program = 'pg_rewind'
        return '%s --source-server="host=... port=... user=... (%s)"' % (
            ' '.join(shlex.quote(w) for w in self._as_owner([program, '-D', self.data_dir])), source_label)

    def rewind(self, source_params, conninfo, slot=None):
        """pg_rewind this (stopped) data directory from ``source_params``, then make it a standby.

        The target keeps its own configuration files (pg_rewind copies the
        source's); ``conninfo`` becomes its primary_conninfo (and ``slot`` its
        primary_slot_name) and standby.signal is written.  Returns pg_rewind's last line.
        """
        saved = {}
        for name in OWN_CONFIG_FILES:
            path = os.path.join(self.data_dir, name)
            if os.path.isfile(path):
                with open(path) as handle:
                    saved[name] = handle.read()
        t0 = time.monotonic()
        self.wait_reaped()
        reaped = time.monotonic() - t0
        self._finish_crash_recovery()
        argv = [self.tool('pg_rewind'), '-D', self.data_dir, '--source-server=dbname=%s' % source_params.dbname]
        with _pgclient.LibpqEnv(source_params, server_major=self.server_major) as env:
            if os.geteuid() == 0:
                owner = self.owner()
                for fd in env.pass_fds:
                    os.fchown(fd, owner.pw_uid, owner.pw_gid)
                if env.passfile and not env.pass_fds:
                    os.chown(os.path.dirname(env.passfile), owner.pw_uid, owner.pw_gid)
                    os.chown(env.passfile, owner.pw_uid, owner.pw_gid)
            done = self._run(argv, 'pg_rewind', env=env, timeout=3600)
        for name, text in saved.items():
            if name == 'postgresql.auto.conf':
                text = ''.join(line for line in text.splitlines(True)
                               if line.split('=', 1)[0].strip() not in RECOVERY_KEYS)
                text += _recovery_settings(conninfo, slot)
            self._write(name, text)
        if 'postgresql.auto.conf' not in saved:
            self._write('postgresql.auto.conf', _recovery_settings(conninfo, slot))
        self._write('standby.signal', '')
        lines = [ln for ln in (done.stdout + done.stderr).splitlines() if ln.strip()]
        return '%s (%.2f s waiting for the old postmaster to be reaped, %.2f s pg_rewind)' % (
            lines[-1].strip() if lines else '', reaped, time.monotonic() - t0 - reaped)

    def _finish_crash_recovery(self):
        """Bring a data directory that was not shut down cleanly (immediate stop, kill) to a clean
        shutdown, in single-user mode (no listener: it never accepts a client), with the options of
        its last start. pg_rewind would do this itself, but without them: a Debian cluster keeps its
        postgresql.conf outside the data directory, and the single-user server would not start."""
        state = self.controldata().get('Database cluster state', '')
        if state in ('shut down', 'shut down in recovery'):
            return
        words = self._start_words()
        if self.cluster and not any(w.startswith('config_file=') for w in words):
            version, name = self._cluster_parts()
            words += ['-c', 'config_file=/etc/postgresql/%s/%s/postgresql.conf' % (version, name)]
        self._run([self.tool('postgres'), '--single', '-F', '-c', 'exit_on_error=true', '-D', self.data_dir]
                  + words + ['template1'], 'crash recovery in single-user mode (state was %r)' % state,
                  timeout=3600)

    def _write(self, name, text):
        path = os.path.join(self.data_dir, name)
        tmp = path + '.dbdevops-tmp'
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, 'w') as handle:
            handle.write(text)
        self._chown(tmp)
        os.rename(tmp, path)
