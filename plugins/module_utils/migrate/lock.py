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
import struct
import time

from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate.steps import (
    MigrationError, sqlstate)

try:
    import psycopg2
except ImportError:  # pragma: no cover - connection.require_psycopg2 explains it
    psycopg2 = None

LOCK_NOT_AVAILABLE = '55P03'

_HOLDER_SQL = (
    "SELECT a.pid, a.application_name, a.client_addr::text, a.backend_start::text, a.usename "
    "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' "
    "AND l.granted AND l.objsubid = 1 AND l.classid = %s::bigint::oid AND l.objid = %s::bigint::oid "
    "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())")


def lock_key(schema, table):
    """The advisory lock key of the history table ``schema.table``."""
    digest = hashlib.sha256(('dbdevops.migrate:%s.%s' % (schema, table)).encode('utf-8')).digest()
    return struct.unpack('>q', digest[:8])[0]


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
                cur.execute(_HOLDER_SQL, ((key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF))
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
