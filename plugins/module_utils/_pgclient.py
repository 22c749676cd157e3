# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Internal: running PostgreSQL client programs (pg_dump, pg_restore, psql, pg_basebackup, pgbackrest).

Every client program the collection starts goes through here, so that:

- server timeouts a database or role may carry (ALTER DATABASE ... SET
  statement_timeout) are off from the first moment of the client's session
  (PGOPTIONS), so they cannot cut a long dump or restore half-way;
- the password never reaches argv or the environment: it is in a passfile that
  lives in memory (``memfd_create``; ``PGPASSFILE=/proc/self/fd/N``) and so
  cannot outlive the processes that hold it, even after kill -9; where memfd
  is missing, a 0600 file in a private 0700 folder removed on exit;
- children die with their parent (``PR_SET_PDEATHSIG``, SIGKILL): a killed
  module or cron run leaves no pg_dump holding table locks.  The signal fires
  when the *thread* that started the child ends, so start a child from the
  thread that waits for it.  A program that forks workers of its own
  (``pg_dump -j``, ``pg_restore -j``: the death signal is not inherited) is
  started with ``group=True``: in a process group of its own, watched by a
  guard that kills the whole group when this process dies, even by kill -9;
- stderr is captured and its error lines are easy to quote;
- the right binary for the server's major version is found once (``Tool``).

No Ansible imports.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import ctypes
import ctypes.util
import glob
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile

from ansible_collections.dbdevops.postgresql.plugins.module_utils.errors import DbDevopsError

ERROR_LINE = re.compile(r'(^|\s)(error|fatal|panic):', re.I)
_PR_SET_PDEATHSIG = 1
_LIBC = None


class ClientError(DbDevopsError):
    """A client program could not be found or run (the message names which and why)."""


# -- children that die with their parent ---------------------------------------

def _libc():
    global _LIBC
    if _LIBC is None:
        try:
            _LIBC = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6', use_errno=True)
        except OSError:
            _LIBC = False
    return _LIBC


def die_with_parent():
    """preexec_fn: SIGKILL this child when the thread that started it ends (Linux)."""
    libc = _libc()
    if libc:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


# The guard of a process group: blocks reading a pipe only this process holds
# the write end of.  "done" on it: the program ended, nothing to do.  End of
# file without "done": this process died (kill -9 too): kill the whole group.
_GUARD = 'read line; [ "$line" = done ] || kill -s KILL -- "-$1" 2>/dev/null; exit 0'


class _GroupPopen(subprocess.Popen):
    """A client program leading a process group of its own, with its guard (see ``popen``)."""

    guard = None

    def _release(self):
        guard, self.guard = self.guard, None
        if guard is not None:
            try:
                guard.stdin.write(b'done\n')
                guard.stdin.close()
            except OSError:
                pass
            guard.wait()

    def wait(self, timeout=None):
        code = super(_GroupPopen, self).wait(timeout)
        self._release()
        return code

    def poll(self):
        code = super(_GroupPopen, self).poll()
        if code is not None:
            self._release()
        return code

    def kill_group(self):
        """SIGKILL the program and every worker it forked (while it is not reaped, the group is ours)."""
        if self.returncode is None:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except OSError:
                pass


def popen(argv, env=None, group=False, **kwargs):
    """subprocess.Popen for a client program: dies with its parent, no stdin unless given.

    ``env`` may be a ``LibpqEnv`` (its environment and passfile descriptor are passed).
    ``group=True`` for programs that fork workers (``-j``): the program and its
    workers are killed together when this process dies, and by ``kill()``.
    """
    if isinstance(env, LibpqEnv):
        kwargs['pass_fds'] = tuple(kwargs.get('pass_fds', ())) + env.pass_fds
        env = env.environ
    kwargs.setdefault('stdin', subprocess.DEVNULL)
    _libc()  # load before fork: the child must not import anything
    try:
        if not group:
            return subprocess.Popen(argv, env=env, preexec_fn=die_with_parent, **kwargs)
        proc = _GroupPopen(argv, env=env, preexec_fn=die_with_parent, start_new_session=True, **kwargs)
    except OSError as exc:
        raise ClientError('cannot run %s: %s' % (argv[0], exc.strerror or exc))
    try:
        proc.guard = subprocess.Popen(['/bin/sh', '-c', _GUARD, 'dbdevops-guard', str(proc.pid)],
                                      stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL, start_new_session=True)
    except OSError as exc:
        proc.kill_group()
        proc.wait()
        raise ClientError('cannot start the guard of %s: %s' % (argv[0], exc.strerror or exc))
    return proc


class Completed(object):
    """What a finished client program left: exit status, stdout and stderr (text)."""

    def __init__(self, argv, returncode, stdout, stderr):
        self.argv = argv
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr

    @property
    def ok(self):
        """Exit status 0 and no error line on stderr."""
        return self.returncode == 0 and not error_lines(self.stderr)

    def why(self, default='no message'):
        """One line for an error message: the first error on stderr, or the exit status."""
        if self.returncode != 0:
            return 'exit status %d: %s' % (self.returncode, first_error(self.stderr, default))
        return first_error(self.stderr, default)


def run(argv, env=None, input_text=None, timeout=None, stdout=True):
    """Run a client program to its end; stdout (unless ``stdout=False``) and stderr captured."""
    proc = popen(argv, env=env, stdin=subprocess.PIPE if input_text is not None else subprocess.DEVNULL,
                 stdout=subprocess.PIPE if stdout else subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        out, err = proc.communicate(input_text.encode('utf-8') if input_text is not None else None,
                                    timeout=timeout)
    except BaseException:
        kill(proc)
        raise
    return Completed(argv, proc.returncode, (out or b'').decode('utf-8', 'replace'),
                     (err or b'').decode('utf-8', 'replace'))


def kill(proc):
    """Kill a child (and the workers of a ``group=True`` one) and reap it; quiet when it is already gone."""
    if proc is not None and proc.poll() is None:
        if isinstance(proc, _GroupPopen):
            proc.kill_group()
        try:
            proc.kill()
        except OSError:
            pass
        try:
            proc.wait(10)
        except Exception:  # noqa: BLE001 - best effort
            pass


def pid_alive(pid):
    """Whether process ``pid`` runs (a zombie does not; another user's process does)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open('/proc/%d/stat' % pid) as handle:
            return handle.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except (OSError, IndexError):
        return False


def boot_id():
    """This boot's id (a pid is unique only within one boot), None when the kernel does not say."""
    try:
        with open('/proc/sys/kernel/random/boot_id') as handle:
            return handle.read().strip()
    except OSError:
        return None


def process_start(pid):
    """The start time (clock ticks after boot) of a live process, None when it is gone or a zombie."""
    try:
        with open('/proc/%d/stat' % int(pid)) as handle:
            fields = handle.read().rsplit(')', 1)[1].split()
    except (OSError, ValueError, IndexError, TypeError):
        return None
    if not fields or fields[0] in ('Z', 'X'):
        return None
    return fields[19] if len(fields) > 19 else None


def process_identity():
    """Who this process is, for a journal another run reads: pid, its start time, the boot and the host
    (a pid alone may be reused)."""
    pid = os.getpid()
    return dict(pid=pid, start=process_start(pid), boot=boot_id(), host=socket.gethostname())


def identity_alive(identity):
    """Whether the process a journal names (``process_identity()``) still runs: same boot, pid and start."""
    identity = identity or {}
    if not identity.get('pid') or identity.get('boot') != boot_id():
        return False
    start = process_start(identity['pid'])
    return start is not None and start == identity.get('start')


def fsync_dir(path):
    """Make a rename or unlink in ``path`` durable (best effort)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_json_atomic(path, data, owner=None):
    """Write ``data`` as JSON to ``path`` so a reader (or a crash) sees the old file or the new one, never a
    part: a 0600 temporary file beside it (no symlink followed), fsync, ``owner`` (uid, gid) when given,
    rename, fsync of the folder."""
    folder = os.path.dirname(path) or '.'
    tmp = '%s.%d.tmp' % (path, os.getpid())
    if os.path.lexists(tmp):
        os.unlink(tmp)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, 'w') as handle:
            json.dump(data, handle, indent=1, sort_keys=True)
            handle.write('\n')
            handle.flush()
            os.fsync(handle.fileno())
        if owner is not None:
            os.chown(tmp, owner[0], owner[1])
        os.rename(tmp, path)
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise
    fsync_dir(folder)


def error_lines(stderr_text):
    """The lines of a client's stderr that report an error."""
    return [ln for ln in (stderr_text or '').splitlines() if ERROR_LINE.search(ln)]


def first_error(stderr_text, default='no message'):
    """The first error line of stderr (else its first line, else ``default``)."""
    lines = error_lines(stderr_text) or [ln for ln in (stderr_text or '').splitlines() if ln.strip()]
    return lines[0].strip() if lines else default


# -- server timeouts off from the session's start ------------------------------

# Every server has these; idle_session_timeout only 14 and later (an unknown
# name in the startup packet is a FATAL error, so it is named only when the
# server is known to have it).
TIMEOUTS = ('statement_timeout', 'idle_in_transaction_session_timeout', 'lock_timeout')
TIMEOUTS_14 = ('idle_session_timeout',)


def timeouts_off(server_major=None, existing=''):
    """libpq ``options`` (PGOPTIONS) turning server timeouts off for a whole session.

    Startup options override ALTER DATABASE / ALTER ROLE settings and apply
    before the first query, so even an ``idle_session_timeout`` of 1ms cannot
    end the session between connecting and resetting it.  ``existing``
    options are kept, ours come last (and so win).
    """
    names = TIMEOUTS + (TIMEOUTS_14 if server_major and int(server_major) >= 14 else ())
    ours = ' '.join('-c %s=0' % name for name in names)
    return ('%s %s' % (existing.strip(), ours)).strip() if existing else ours


# -- the password, kept off argv and the environment ---------------------------

class LibpqEnv(object):
    """Environment for libpq clients started as subprocesses; a context manager.

    The password goes into a passfile named by PGPASSFILE, never into argv nor
    PGPASSWORD (``ps e`` shows a process environment).  On Linux the passfile
    is an anonymous in-memory file (no path on disk; it vanishes with the last
    process holding it, even after kill -9): pass ``env`` itself to ``popen``
    or ``run``, or ``pass_fds=env.pass_fds`` to subprocess.  Elsewhere it is a
    0600 file in a 0700 folder, removed on exit::

        with LibpqEnv(params, dbname='app', server_major=15) as env:
            run([pg_dump, ...], env=env)

    PGOPTIONS turns the server timeouts off (``timeouts_off``); give
    ``server_major`` so that ``idle_session_timeout`` (14+) is included, and
    ``timeouts=False`` for a program that must keep them.
    """

    def __init__(self, params, dbname=None, base_env=None, tmpdir=None, memory=True, server_major=None,
                 timeouts=True):
        self.params = params
        self.dbname = dbname
        self.server_major = server_major
        self.timeouts = timeouts
        self.base_env = dict(os.environ if base_env is None else base_env)
        self.tmpdir = tmpdir
        self.memory = memory
        self.passfile = None
        self.environ = None
        self.pass_fds = ()
        self._fd = None
        self._folder = None

    def __enter__(self):
        p = self.params
        env = dict(self.base_env)
        for key in ('PGPASSWORD', 'PGPASSFILE', 'PGSERVICE', 'PGSERVICEFILE'):
            env.pop(key, None)
        env['PGUSER'] = p.login_user
        env['PGPORT'] = str(p.login_port)
        env['PGDATABASE'] = self.dbname or p.dbname
        if p.host:
            env['PGHOST'] = p.host
        else:
            env.pop('PGHOST', None)
        env['PGSSLMODE'] = p.ssl_mode
        for key, value in (('PGSSLROOTCERT', p.ca_cert), ('PGSSLCERT', p.ssl_cert),
                           ('PGSSLKEY', p.ssl_key)):
            if value:
                env[key] = value
        env.setdefault('PGCONNECT_TIMEOUT', '10')
        if self.timeouts:
            env['PGOPTIONS'] = timeouts_off(self.server_major, env.get('PGOPTIONS', ''))
        if p.login_password:
            line = ('*:*:*:*:%s\n' % _pgpass_escape(p.login_password)).encode('utf-8')
            env['PGPASSFILE'] = self._write_passfile(line)
        self.environ = env
        return self

    def _write_passfile(self, line):
        if self.memory and hasattr(os, 'memfd_create') and os.path.isdir('/proc/self/fd'):
            fd = os.memfd_create('dbdevops-pgpass', 0)  # no MFD_CLOEXEC: children inherit it
            os.write(fd, line)
            os.fchmod(fd, stat.S_IRUSR | stat.S_IWUSR)
            self._fd = fd
            self.pass_fds = (fd,)
            self.passfile = '/proc/self/fd/%d' % fd
            return self.passfile
        self._folder = tempfile.mkdtemp(prefix='dbdevops-', dir=self.tmpdir)
        path = os.path.join(self._folder, 'pgpass')
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
        self.passfile = path
        return path

    def __exit__(self, *exc_info):
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._folder:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None
        self.passfile = None
        self.pass_fds = ()
        return False


def _pgpass_escape(value):
    return value.replace('\\', '\\\\').replace(':', '\\:')


# -- finding the right binary ---------------------------------------------------

_VERSIONS = {}


def _version_of(path):
    """((major, minor), text) of a program's ``--version``; asked once per binary (path, size, mtime)."""
    try:
        info = os.stat(path)
        key = (path, info.st_size, info.st_mtime_ns)
    except OSError:
        key = None
    if key in _VERSIONS:
        return _VERSIONS[key]
    try:
        out = run([path, '--version']).stdout
    except ClientError:
        return None
    match = re.search(r'(\d+)(?:\.(\d+))?', out)
    if not match:
        return None
    found = (int(match.group(1)), int(match.group(2) or 0)), out.strip()
    if key is not None:
        _VERSIONS[key] = found
    return found


def find_tool(name, server_major=None, bin_dir=None):
    """Path of a PostgreSQL client program able to talk to ``server_major``.

    ``bin_dir`` wins; else /usr/lib/postgresql/<N>/bin (the lowest N that is at
    least the server's major version, else the highest), else PATH.
    """
    if bin_dir:
        path = os.path.join(bin_dir, name)
        if not os.access(path, os.X_OK):
            raise ClientError('%s not found in pg_bin_dir %s: point pg_bin_dir at the bin '
                              'directory of a PostgreSQL client installation' % (name, bin_dir))
        return path
    found = []
    for path in glob.glob('/usr/lib/postgresql/*/bin/%s' % name) + \
            glob.glob('/usr/pgsql-*/bin/%s' % name):
        match = re.search(r'(?:postgresql/|pgsql-)(\d+)', path)
        if match and os.access(path, os.X_OK):
            found.append((int(match.group(1)), path))
    found.sort()
    if found:
        if server_major:
            for major, path in found:
                if major >= server_major:
                    return path
        return found[-1][1]
    path = shutil.which(name)
    if path:
        return path
    raise ClientError('%s is not installed on this host: install the PostgreSQL client package '
                      '(Debian "postgresql-client"), or set pg_bin_dir' % name)


class Tool(object):
    """A client program with its version and the features it supports."""

    def __init__(self, name, server_major=None, bin_dir=None):
        self.name = name
        self.path = find_tool(name, server_major, bin_dir)
        version = _version_of(self.path)
        if not version:
            raise ClientError('cannot run %s --version: is it a PostgreSQL client program?' % self.path)
        (self.major, self.minor), self.version_text = version
        self.version = '%d.%d' % (self.major, self.minor)
        if server_major and self.major < server_major:
            raise ClientError('%s is version %s but the server is %d: %s cannot work with a '
                              'newer server; install postgresql-client-%d or set pg_bin_dir'
                              % (self.path, self.version, server_major, name, server_major))
        self._help = None

    def help_text(self):
        if self._help is None:
            done = run([self.path, '--help'])
            self._help = done.stdout + done.stderr
        return self._help

    def compression_methods(self):
        """Methods this pg_dump can write: gzip always; lz4/zstd with 16+ clients."""
        methods = ['none', 'gzip']
        if re.search(r'--compress=METHOD', self.help_text()) or self.major >= 16:
            methods += ['lz4', 'zstd']
        return methods


# -- an archive's table of contents, read once ------------------------------------

TOC_LINE = re.compile(r'^(?P<dump_id>\d+);\s+(?P<catalog_oid>\d+)\s+(?P<oid>\d+)\s+(?P<rest>.*)$')


class TocEntry(object):
    """One line of ``pg_restore --list``: dump id, and the rest (kind, schema, name, owner)."""

    def __init__(self, line, dump_id, rest):
        self.line = line
        self.dump_id = int(dump_id)
        self.rest = rest

    def __repr__(self):
        return 'TocEntry(%r)' % self.line


def read_toc(pg_restore, archive, env=None):
    """The archive's table of contents: [TocEntry] in archive order, comments left out.

    Raises ClientError naming the archive when pg_restore cannot read it; its
    details hold ``archive`` and pg_restore's ``stderr``.
    """
    done = run([pg_restore, '--list', archive], env=env)
    if not done.ok:
        raise ClientError('pg_restore cannot read the archive %s (%s)' % (archive, done.why()),
                          archive=archive, stderr=done.stderr)
    entries = []
    for line in done.stdout.splitlines():
        match = TOC_LINE.match(line)
        if match:
            entries.append(TocEntry(line, match.group('dump_id'), match.group('rest')))
    return entries


@contextlib.contextmanager
def use_list(entries, tmpdir=None):
    """A temporary ``pg_restore --use-list`` file naming ``entries`` (TocEntry), removed afterwards.

        with use_list(chosen) as path:
            run([pg_restore, '--use-list=%s' % path, ...])
    """
    fd, path = tempfile.mkstemp(prefix='dbdevops-use-list-', dir=tmpdir)
    try:
        with os.fdopen(fd, 'w') as handle:
            handle.write(''.join(entry.line + '\n' for entry in entries))
        yield path
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass
