# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Internal to the backup engine: hashing, fsync, ownership, time (client programs: ``_pgclient``)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import hashlib
import os
import re
import time

from ansible_collections.dbdevops.postgresql.plugins.module_utils.errors import DbDevopsError

try:
    import pwd
except ImportError:  # pragma: no cover - not on POSIX
    pwd = None

CHUNK = 1024 * 1024
MANIFEST = 'manifest.json'
PARTIAL_PREFIX = '.partial-'
FORMAT_VERSION = 2   # 2: manifest_sha256, sequences, large_objects


class BackupError(DbDevopsError):
    """A backup, verify, retention or restore step failed (message says which and why)."""


# -- time -------------------------------------------------------------------

def utcnow():
    return datetime.datetime.now(datetime.timezone.utc)


def iso(ts):
    return ts.strftime('%Y-%m-%dT%H:%M:%S.%fZ')


def parse_iso(text):
    return datetime.datetime.strptime(text, '%Y-%m-%dT%H:%M:%S.%fZ').replace(tzinfo=datetime.timezone.utc)


def parse_compact(text):
    """The UTC time of a backup id's stamp (``20260101T020000Z``)."""
    return datetime.datetime.strptime(text, '%Y%m%dT%H%M%SZ').replace(tzinfo=datetime.timezone.utc)


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


def secure_path(path, mode, owner):
    """chmod/chown ``path`` to ``mode`` and ``owner`` (uid, gid) where they differ.

    Only where they differ: a change dirties the inode, so an fsync done
    before would have to write it again.
    """
    info = os.lstat(path)
    if info.st_mode & 0o7777 != mode:
        os.chmod(path, mode)
    if owner and (info.st_uid, info.st_gid) != tuple(owner):
        os.chown(path, owner[0], owner[1])


def secure_tree(root, owner):
    """Folders 0700, files 0600, owned by ``owner`` (uid, gid) when given."""
    for dirpath, dirnames, filenames in os.walk(root):
        secure_path(dirpath, 0o700, owner)
        for name in filenames:
            secure_path(os.path.join(dirpath, name), 0o600, owner)


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


class TailHasher(object):
    """SHA-256 of every file under ``root`` while a program writes them.

    For writers that only append (pg_dump's directory format): bytes are
    hashed as they land, so little remains to read when the writer exits.
    ``poll(stop)`` runs until the ``stop`` event is set (submit it to an
    executor), then reads every file to its end and returns
    ``{relpath: (sha256, bytes)}``.
    """

    def __init__(self, root, interval=0.05):
        self.root = root
        self.interval = interval
        self.state = {}

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

    def poll(self, stop):
        try:
            while not stop.is_set():
                if not self._pass():
                    stop.wait(self.interval)
            self._pass()
            return dict((rel, (digest.hexdigest(), size)) for rel, (_f, digest, size) in self.state.items())
        finally:
            for fobj, _digest, _size in self.state.values():
                fobj.close()


def monotonic_ms(start):
    return int(round((time.monotonic() - start) * 1000))


def safe_name(name):
    """A folder-safe form of a database name (the manifest keeps the real one)."""
    clean = re.sub(r'[^A-Za-z0-9_.-]', '_', name)
    if clean != name:
        clean = '%s-%s' % (clean, hashlib.sha256(name.encode('utf-8')).hexdigest()[:6])
    return clean
