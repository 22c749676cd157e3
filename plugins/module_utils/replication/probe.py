# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Internal: the drill's probe writer, committing numbered rows to whichever node the drill names.

The writer runs in a pool of one thread with its own autocommit connection
(short ``connect_timeout``; over TCP, keepalives and ``tcp_user_timeout`` of a
few seconds, so a write in flight to a primary whose network is gone fails
instead of waiting for the kernel's retransmissions).  Every ``interval`` it inserts the next id into
its table; an id is *acknowledged* when the INSERT (and so the commit)
returned, and is recorded with the node written to, ``time.monotonic()`` and
the wall clock.  A failed attempt burns its id (its commit may or may not
have happened) and the writer retries with the next one.  It writes only to
``target``, which only the drill sets: ``None`` stops the writes (the writer
drops its connection and reports ``idle``), so it never writes to a node the
drill no longer calls the primary.  No Ansible imports.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import concurrent.futures
import threading
import time

from ansible_collections.dbdevops.postgresql.plugins.module_utils.connection import connect
from ansible_collections.dbdevops.postgresql.plugins.module_utils.errors import DbDevopsError

try:
    from psycopg2 import sql as pgsql
except ImportError:  # pragma: no cover - reported by connect()
    pgsql = None

PROBE_APPLICATION = 'dbdevops_drill_probe'
# A partitioned primary answers nothing: without these a write in flight waits minutes for TCP to give up.
# libpq ignores them on Unix sockets.
TCP_DEAD_PEER = dict(keepalives=1, keepalives_idle=1, keepalives_interval=1, keepalives_count=2,
                     tcp_user_timeout=3000)


def create_probe_table(conn, table):
    """The probe table, emptied (autocommit connection to the primary)."""
    with conn.cursor() as cur:
        cur.execute(pgsql.SQL('CREATE TABLE IF NOT EXISTS {} (id bigint PRIMARY KEY, written_at timestamptz NOT NULL)')
                    .format(pgsql.Identifier(table)))
        cur.execute(pgsql.SQL('TRUNCATE {}').format(pgsql.Identifier(table)))


def present_ids(conn, table, ids):
    """The subset of ``ids`` present in the probe table (read on one node)."""
    if not ids:
        return set()
    with conn.cursor() as cur:
        cur.execute(pgsql.SQL('SELECT id FROM {} WHERE id = ANY(%s)').format(pgsql.Identifier(table)), (list(ids),))
        return set(row[0] for row in cur.fetchall())


class Ack(object):
    __slots__ = ('id', 'node', 'mono', 'wall', 'lsn')

    def __init__(self, id_, node, mono, wall, lsn):
        self.id, self.node, self.mono, self.wall, self.lsn = id_, node, mono, wall, lsn


class ProbeWriter(object):
    """Numbered commits every ``interval_ms`` to the node named by ``target`` (see the module header)."""

    def __init__(self, params_by_node, table, interval_ms=50, connect_timeout=2):
        self.params = dict((node, p.replace(connect_params=dict(TCP_DEAD_PEER, **dict(
            p.connect_params, connect_timeout=connect_timeout)))) for node, p in params_by_node.items())
        self.table = table
        self.interval = max(1, int(interval_ms)) / 1000.0
        self.acks = []
        self.failures = 0
        self.failed_at = []           # time.monotonic() of each failed attempt
        self.last_error = None
        self._target = None
        self._lock = threading.Lock()
        self._idle = threading.Event()
        self._idle.set()
        self._stop = threading.Event()
        self._first_ack = {}
        self._pool = None
        self._future = None
        self._next_id = 1
        self._conn = None

    # -- the drill's side
    def start(self, target):
        self.set_target(target)
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        self._future = self._pool.submit(self._loop)

    def set_target(self, target):
        with self._lock:
            self._target = target
            if target is not None:
                self._idle.clear()

    def pause(self, timeout=30):
        """Stop writing and wait until no write is in flight; True when the writer is idle.

        A write still waiting after ``timeout`` (a commit waiting for a
        synchronous standby that is gone) is cancelled, and the wait goes on a
        little longer.
        """
        self.set_target(None)
        if self._idle.wait(timeout):
            return True
        self._cancel()
        return self._idle.wait(5)

    def _cancel(self):
        conn = self._conn
        if conn is not None:
            try:
                conn.cancel()
            except Exception:  # noqa: BLE001 - gone already
                pass

    def stop(self):
        self.set_target(None)
        self._stop.set()
        if not self._idle.wait(2):
            self._cancel()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        if self._future is not None and self._future.exception() is not None:
            raise DbDevopsError('the probe writer failed: %s' % self._future.exception())

    def acked(self, node=None):
        with self._lock:
            return [a for a in self.acks if node is None or a.node == node]

    def last_ack(self, node=None, before=None):
        found = [a for a in self.acked(node) if before is None or a.mono <= before]
        return found[-1] if found else None

    def wait_first_ack(self, node, after, timeout):
        """The first acknowledged write on ``node`` after monotonic time ``after`` (or None at timeout)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for ack in self.acked(node):
                if ack.mono >= after:
                    return ack
            time.sleep(0.005)
        return None

    # -- the writer thread
    def _loop(self):
        conn, conn_node = None, None
        insert = pgsql.SQL('INSERT INTO {} (id, written_at) VALUES (%s, clock_timestamp())').format(
            pgsql.Identifier(self.table))
        while not self._stop.is_set():
            with self._lock:
                target = self._target
            if target != conn_node and conn is not None:
                _close(conn)
                conn, conn_node, self._conn = None, None, None
            if target is None:
                self._idle.set()
                time.sleep(0.002)
                continue
            started = time.monotonic()
            try:
                if conn is None:
                    conn = connect(self.params[target], autocommit=True, application_name=PROBE_APPLICATION)
                    conn_node = target
                    self._conn = conn
                with self._lock:
                    id_ = self._next_id
                    self._next_id += 1
                with conn.cursor() as cur:
                    cur.execute(insert, (id_,))
                    mono, wall = time.monotonic(), time.time()
                    lsn = None
                    try:
                        cur.execute('SELECT pg_current_wal_flush_lsn()::text')
                        lsn = cur.fetchone()[0]
                    except Exception:  # noqa: BLE001 - the write is acknowledged all the same
                        pass
                with self._lock:
                    self.acks.append(Ack(id_, target, mono, wall, lsn))
            except Exception as exc:  # noqa: BLE001 - a failed write is data, the writer goes on
                self.failures += 1
                self.failed_at.append(time.monotonic())
                self.last_error = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
                if conn is not None:
                    _close(conn)
                conn, conn_node, self._conn = None, None, None
            pause = self.interval - (time.monotonic() - started)
            if pause > 0:
                self._stop.wait(pause)
        if conn is not None:
            _close(conn)
        self._idle.set()


def _close(conn):
    try:
        conn.close()
    except Exception:  # noqa: BLE001 - a dead connection
        pass
