# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Serialising runs, and retrying on lock timeouts.

Concurrent runs against one database serialise on an advisory lock held on
a separate idle connection (closing it releases the lock, also when the
runner dies).  A statement that gives up waiting for a table lock
(``lock_timeout``, SQLSTATE 55P03) is retried with exponential back-off by
``with_lock_retries``, the one retry loop of the engine.  No Ansible imports.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import os
import struct
import time

from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate.steps import (
    MigrationError, open_connection, sqlstate)

try:
    import psycopg2
except ImportError:  # pragma: no cover - connection.require_psycopg2 explains it
    psycopg2 = None

LOCK_NOT_AVAILABLE = '55P03'

# the error a migration's transaction raises before its COMMIT when the run lock is gone
LOCK_LOST_TEXT = 'dbdevops: migration lock lost'

# the run's advisory lock held by backend {0} ({1} classid, {2} objid); a pid is one backend
# of one database, so the database needs no test
_LOCK_ROW = ("pg_catalog.pg_locks l WHERE l.pid = {0} AND l.locktype = 'advisory' "
             "AND l.classid = {1}::bigint::oid AND l.objid = {2}::bigint::oid AND l.objsubid = 1 "
             "AND l.granted")

# in the order the message prints them: pid, application, user, from, connected
_HOLDER_SQL = (
    "SELECT a.pid, a.application_name, a.usename, coalesce(a.client_addr::text, 'local socket'), "
    "a.backend_start::text FROM pg_catalog.pg_stat_activity a WHERE a.pid = (SELECT l.pid FROM "
    + _LOCK_ROW.format('l.pid', '%s', '%s') + " LIMIT 1)")

# keepalives on the lock session: a dead network path ends it (and frees the lock) in about a
# minute instead of hours; connect_params given by the user win
LOCK_KEEPALIVES = dict(keepalives=1, keepalives_idle=30, keepalives_interval=10, keepalives_count=3)


def lock_key(schema, table):
    """The advisory lock key of the history table ``schema.table``."""
    digest = hashlib.sha256(('dbdevops.migrate:%s.%s' % (schema, table)).encode('utf-8')).digest()
    return struct.unpack('>q', digest[:8])[0]


def _halves(key):
    return (key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF


def connect_lock_session(params):
    """The idle session that holds the run lock: timeouts off (``connect``), keepalives on."""
    keepalives = dict(LOCK_KEEPALIVES)
    keepalives.update(params.connect_params)
    return open_connection(params.replace(connect_params=keepalives),
                           application_name='dbdevops-migrate-lock', autocommit=True)


class LockGuard(object):
    """Tells whether the run lock taken on ``lock_conn`` is still held.

    ``check()`` asks through the lock session itself (``pg_locks``: our advisory
    lock on its pid; a dead session is a lost lock).  ``commit_check_sql`` goes
    inside a migration's transaction, before its COMMIT, and fails
    (``is_lock_lost``) when the lock session is gone, so that transaction cannot
    commit.  It must cost next to nothing (it runs once per migration: reading
    pg_locks there cost 0.5 ms, a fresh pg_stat_activity 0.4 ms), so the lock
    session also holds a second advisory lock whose key is random to this run:
    while that session lives nobody can take it, and the moment it ends
    ``pg_try_advisory_xact_lock_shared`` of it succeeds.  A plain SELECT (a DO
    block costs three times as much), failing on a cast of a text.
    """

    def __init__(self, lock_conn, schema, table):
        self.conn = lock_conn
        self.where = '%s.%s' % (schema, table)
        classid, objid = _halves(lock_key(schema, table))
        self.pid = lock_conn.get_backend_pid()
        self._held_sql = 'SELECT EXISTS (SELECT 1 FROM %s)' % _LOCK_ROW.format(
            'pg_catalog.pg_backend_pid()', classid, objid)
        witness = struct.unpack('>q', os.urandom(8))[0]
        with lock_conn.cursor() as cur:
            cur.execute('SELECT pg_catalog.pg_try_advisory_lock(%s)', (witness,))
            if not cur.fetchone()[0]:     # 2**-64: another run drew the same key
                raise MigrationError('could not take the run-witness lock on %s; run again' % self.where)
        self.commit_check_sql = (
            "SELECT CASE WHEN pg_catalog.pg_try_advisory_xact_lock_shared(%d) THEN ('%s: session %d "
            "ended ' || pg_catalog.pg_backend_pid())::int ELSE 1 END" % (witness, LOCK_LOST_TEXT, self.pid))

    @staticmethod
    def is_lock_lost(exc):
        """Whether a psycopg2 error is ``commit_check_sql`` finding the lock gone."""
        return LOCK_LOST_TEXT in (getattr(getattr(exc, 'diag', None), 'message_primary', None) or '')

    def check(self):
        """True while the lock session is alive and holds the lock."""
        try:
            with self.conn.cursor() as cur:
                cur.execute(self._held_sql)
                return bool(cur.fetchone()[0])
        except psycopg2.Error:
            return False


def acquire(lock_conn, schema, table, wait, sleep=time.sleep):
    """Take the run lock on ``lock_conn``, waiting up to ``wait`` seconds; returns seconds waited."""
    key = lock_key(schema, table)
    started = time.time()
    delay = 0.02
    with lock_conn.cursor() as cur:
        while True:
            cur.execute('SELECT pg_try_advisory_lock(%s)', (key,))
            if cur.fetchone()[0]:
                return time.time() - started
            if time.time() - started >= wait:
                cur.execute(_HOLDER_SQL, _halves(key))
                holder = cur.fetchone()
                who = ('pid %s (%s, user %s, from %s, connected %s)' % holder) if holder \
                    else 'another session'
                raise MigrationError(
                    'another migration run holds the lock on %s.%s: %s; waited %.0f s (lock_wait). '
                    'Retry when it has finished, or raise lock_wait' % (schema, table, who, wait),
                    lock_holder=holder[0] if holder else None)
            sleep(delay)
            delay = min(delay * 2, 0.5)


def backoff(attempt):
    """Seconds to sleep before retry number ``attempt`` (1, 2, ...): 0.5, 1, 2, ... at most 8."""
    return min(0.5 * 2 ** (attempt - 1), 8)


def with_lock_retries(action, retries, sleep=time.sleep, after_error=None):
    """Call ``action()`` until it does not fail with a lock timeout, at most ``1 + retries`` times.

    ``after_error()`` runs after every failed attempt (a rollback).  Returns
    ``(error, attempts)``: ``error`` is None on success, else the psycopg2
    error of the last attempt (a lock timeout when the retries ran out).
    """
    attempts = 0
    while True:
        attempts += 1
        try:
            action()
            return None, attempts
        except psycopg2.Error as exc:
            if after_error is not None:
                after_error()
            if sqlstate(exc) != LOCK_NOT_AVAILABLE or attempts > retries:
                return exc, attempts
            sleep(backoff(attempts))
