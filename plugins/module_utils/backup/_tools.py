# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Internal to the backup engine: client binaries, hashing, fsync, ownership, time."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import glob
import hashlib
import os
import re
import shutil
import subprocess
import threading
import time

from ansible_collections.dbdevops.postgresql.plugins.module_utils.errors import DbDevopsError

try:
    import pwd
except ImportError:  # pragma: no cover - not on POSIX
    pwd = None

CHUNK = 1024 * 1024
MANIFEST = 'manifest.json'
PARTIAL_PREFIX = '.partial-'
FORMAT_VERSION = 1
ERROR_LINE = re.compile(r'(^|\s)(error|fatal|panic):', re.I)


class BackupError(DbDevopsError):
    """A backup, verify, retention or restore step failed (message says which and why)."""


# -- time -------------------------------------------------------------------

def utcnow():
    return datetime.datetime.now(datetime.timezone.utc)


def iso(ts):
    return ts.strftime('%Y-%m-%dT%H:%M:%S.%fZ')


def parse_iso(text):
    return datetime.datetime.strptime(text, '%Y-%m-%dT%H:%M:%S.%fZ').replace(tzinfo=datetime.timezone.utc)


# -- client programs --------------------------------------------------------

def _version_of(path):
    try:
        out = subprocess.run([path, '--version'], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             universal_newlines=True, check=False).stdout
    except OSError:
        return None
    match = re.search(r'(\d+)(?:\.(\d+))?', out)
    if not match:
        return None
    return (int(match.group(1)), int(match.group(2) or 0)), out.strip()


def find_tool(name, server_major=None, bin_dir=None):
    """Path of a PostgreSQL client program able to talk to ``server_major``.

    ``bin_dir`` wins; else /usr/lib/postgresql/<N>/bin (the lowest N that is at
    least the server's major version, else the highest), else PATH.
    """
    if bin_dir:
        path = os.path.join(bin_dir, name)
        if not os.access(path, os.X_OK):
            raise BackupError('%s not found in pg_bin_dir %s: point pg_bin_dir at the bin '
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
    raise BackupError('%s is not installed on this host: install the PostgreSQL client package '
                      '(Debian "postgresql-client"), or set pg_bin_dir' % name)


class Tool(object):
    """A client program with its version and the features it supports."""

    def __init__(self, name, server_major=None, bin_dir=None):
        self.name = name
        self.path = find_tool(name, server_major, bin_dir)
        version = _version_of(self.path)
        if not version:
            raise BackupError('cannot run %s --version: is it a PostgreSQL client program?' % self.path)
        (self.major, self.minor), self.version_text = version
        self.version = '%d.%d' % (self.major, self.minor)
        if server_major and self.major < server_major:
            raise BackupError('%s is version %s but the server is %d: %s cannot dump or restore a '
                              'newer server; install postgresql-client-%d or set pg_bin_dir'
                              % (self.path, self.version, server_major, name, server_major))
        self._help = None

    def help_text(self):
        if self._help is None:
            self._help = subprocess.run([self.path, '--help'], stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, universal_newlines=True,
                                        check=False).stdout
        return self._help

    def compression_methods(self):
        """Methods this pg_dump can write: gzip always; lz4/zstd with 16+ clients."""
        methods = ['none', 'gzip']
        if re.search(r'--compress=METHOD', self.help_text()) or self.major >= 16:
            methods += ['lz4', 'zstd']
        return methods


# -- files ------------------------------------------------------------------

def fsync_path(path):
    flags = os.O_RDONLY
    if os.path.isdir(path):
        flags |= getattr(os, 'O_DIRECTORY', 0)
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root):
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            fsync_path(os.path.join(dirpath, name))
        fsync_path(dirpath)


def sha256_file(path):
    digest = hashlib.sha256()
    size = 0
    with open(path, 'rb') as f:
        while True:
            block = f.read(CHUNK)
            if not block:
                break
            size += len(block)
            digest.update(block)
    return digest.hexdigest(), size


def list_files(root):
    """Relative paths of all regular files under root, sorted."""
    out = []
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            out.append(os.path.relpath(os.path.join(dirpath, name), root))
    return sorted(out)


def resolve_owner(os_owner):
    """(uid, gid) to chown backups to, or None when not root / no such user."""
    if os.geteuid() != 0 or pwd is None:
        return None
    name = os_owner or 'postgres'
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        if os_owner:
            raise BackupError('os_owner "%s" does not exist on this host: create it or set '
                              'os_owner to the database OS user' % os_owner)
        return None
    return entry.pw_uid, entry.pw_gid


def secure_tree(root, owner):
    """Folders 0700, files 0600, owned by ``owner`` (uid, gid) when given."""
    for dirpath, dirnames, filenames in os.walk(root):
        os.chmod(dirpath, 0o700)
        if owner:
            os.chown(dirpath, owner[0], owner[1])
        for name in filenames:
            path = os.path.join(dirpath, name)
            os.chmod(path, 0o600)
            if owner:
                os.chown(path, owner[0], owner[1])


def ensure_dir(path, owner):
    if not os.path.isdir(path):
        try:
            os.makedirs(path, 0o700)
        except OSError as exc:
            raise BackupError('cannot create backup folder %s: %s' % (path, exc.strerror or exc))
        if owner:
            os.chown(path, owner[0], owner[1])


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except OSError as exc:
        return exc.errno == 1  # EPERM: alive, someone else's
    return True


def error_lines(stderr_text):
    return [ln for ln in stderr_text.splitlines() if ERROR_LINE.search(ln)]


def first_error(stderr_text, default='no message'):
    lines = error_lines(stderr_text) or [ln for ln in stderr_text.splitlines() if ln.strip()]
    return lines[0].strip() if lines else default


class TailHasher(threading.Thread):
    """SHA-256 of every file under ``root`` while a program writes them.

    For writers that only append (pg_dump's directory format, pg_dumpall -f):
    bytes are hashed as they land, so little remains to read when the writer
    exits.  ``finish()`` reads every file to its end and returns
    ``{relpath: (sha256, bytes)}``.
    """

    def __init__(self, root, poll=0.05):
        super(TailHasher, self).__init__(name='dbdevops-tail-hasher')
        self.daemon = True
        self.root = root
        self.poll = poll
        self.state = {}
        self.stop_event = threading.Event()
        self.error = None

    def _pass(self):
        progressed = False
        if not os.path.isdir(self.root):
            return False
        for rel in list_files(self.root):
            entry = self.state.get(rel)
            if entry is None:
                try:
                    fobj = open(os.path.join(self.root, rel), 'rb')
                except OSError:
                    continue
                entry = self.state[rel] = [fobj, hashlib.sha256(), 0]
            fobj, digest, size = entry
            while True:
                block = fobj.read(CHUNK)
                if not block:
                    break
                digest.update(block)
                size += len(block)
                progressed = True
            entry[2] = size
        return progressed

    def run(self):
        try:
            while not self.stop_event.is_set():
                if not self._pass():
                    self.stop_event.wait(self.poll)
        except Exception as exc:  # noqa: BLE001 - reported by finish()
            self.error = exc

    def finish(self):
        self.stop_event.set()
        self.join()
        if self.error:
            raise self.error
        self._pass()
        result = {}
        for rel, (fobj, digest, size) in self.state.items():
            fobj.close()
            result[rel] = (digest.hexdigest(), size)
        return result

    def abort(self):
        self.stop_event.set()
        self.join()
        for fobj, _digest, _size in self.state.values():
            fobj.close()


class Reader(threading.Thread):
    """Collect a pipe (stderr) in the background."""

    def __init__(self, stream):
        super(Reader, self).__init__(name='dbdevops-reader')
        self.daemon = True
        self.stream = stream
        self.chunks = []

    def run(self):
        for block in iter(lambda: self.stream.read(65536), b''):
            self.chunks.append(block)

    def text(self):
        self.join()
        return b''.join(self.chunks).decode('utf-8', 'replace')


def kill_process(proc):
    if proc is not None and proc.poll() is None:
        try:
            proc.kill()
        except OSError:
            pass
        try:
            proc.wait(10)
        except Exception:  # noqa: BLE001 - best effort
            pass


def monotonic_ms(start):
    return int(round((time.monotonic() - start) * 1000))


def safe_name(name):
    """A folder-safe form of a database name (the manifest keeps the real one)."""
    clean = re.sub(r'[^A-Za-z0-9_.-]', '_', name)
    if clean != name:
        clean = '%s-%s' % (clean, hashlib.sha256(name.encode('utf-8')).hexdigest()[:6])
    return clean
