# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The history table: created on first use, read, appended to; folded into a History.

The table is append only: each run of a file adds one row (type
``versioned``, ``undo``, ``repeatable``, ``baseline`` or ``repair``; failed
attempts have ``success = false``).  A version is applied when its latest
successful row is not an undo.  The last row of a run carries the schema
fingerprint drift detection compares with.  No Ansible imports.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.dbdevops.postgresql.plugins.module_utils import _catalog
from ansible_collections.dbdevops.postgresql.plugins.module_utils import fingerprint as fpmod
from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate import files as mfiles

try:
    import psycopg2
    from psycopg2 import sql as pgsql
except ImportError:  # pragma: no cover - connection.require_psycopg2 explains it
    psycopg2 = None
    pgsql = None

COLUMNS = ('installed_rank', 'version', 'description', 'type', 'script', 'checksum',
           'applied_at', 'applied_by', 'execution_time_ms', 'success', 'error_message')

_CREATE = (
    'CREATE TABLE IF NOT EXISTS {} ('
    ' installed_rank integer PRIMARY KEY,'
    ' version text,'
    ' description text NOT NULL,'
    ' type text NOT NULL,'
    ' script text NOT NULL,'
    ' checksum text,'
    ' applied_at timestamptz NOT NULL DEFAULT clock_timestamp(),'
    ' applied_by text NOT NULL DEFAULT current_user,'
    ' execution_time_ms integer NOT NULL DEFAULT 0,'
    ' success boolean NOT NULL,'
    ' error_message text,'
    ' fingerprint text)')


class History(object):
    """The rows of the history table, folded into the current state."""

    def __init__(self, rows):
        self.rows = rows
        self.applied = {}          # key -> row dict (latest successful versioned/repair)
        self.baseline = None       # key
        self.repeatables = {}      # description -> checksum
        self.repeatable_rank = {}  # description -> rank of its last successful run
        self.last_undo_rank = 0    # rank of the last successful undo
        self.failed = {}           # key or script -> failed row not followed by a success
        self.max_rank = 0
        for row in rows:
            self._fold(row)

    def _fold(self, row):
        self.max_rank = max(self.max_rank, row['installed_rank'])
        key = mfiles.version_key(row['version']) if row['version'] else None
        fail_key = key if key is not None else row['script']
        if not row['success']:
            self.failed[fail_key] = row
            return
        self.failed.pop(fail_key, None)
        kind = row['type']
        if kind == 'baseline':
            self.baseline = key
        elif kind in ('versioned', 'repair'):
            self.applied[key] = row
        elif kind == 'undo':
            self.applied.pop(key, None)
            self.last_undo_rank = row['installed_rank']
        elif kind == 'repeatable':
            self.repeatables[row['description']] = row['checksum']
            self.repeatable_rank[row['description']] = row['installed_rank']

    def repeatable_due(self, mfile, upgrading):
        """Why a repeatable file runs in this plan, or None.

        It runs when it is new or its checksum changed, and also when the plan
        applies versioned migrations after an undo that came after its last run
        (a downgrade may have dropped what it created; the upgrade recreates it).
        """
        desc = mfile.description
        if self.repeatables.get(desc) != mfile.checksum:
            return 'new' if desc not in self.repeatables else 'checksum changed'
        if upgrading and self.last_undo_rank > self.repeatable_rank.get(desc, 0):
            return 're-applied after a downgrade (undo since it last ran)'
        return None

    def is_applied(self, key):
        return key in self.applied or (self.baseline is not None and key <= self.baseline)

    def current(self):
        keys = list(self.applied)
        if self.baseline is not None:
            keys.append(self.baseline)
        return max(keys) if keys else None

    def pending(self, files):
        """Version keys of ``files`` not applied, in order."""
        return [k for k in files.versions() if not self.is_applied(k)]

    def last_fingerprint(self):
        for row in reversed(self.rows):
            if row['success'] and row.get('has_fingerprint'):
                return row
        return None

    def check_files(self, files):
        """The one checksum validation: (mismatches, missing scripts) of the applied versions."""
        mismatches, missing = [], []
        for key, row in sorted(self.applied.items()):
            mfile = files.versioned.get(key)
            if mfile is None:
                missing.append(row['script'])
            elif row['checksum'] and row['checksum'] != mfile.checksum:
                mismatches.append(dict(version=mfile.version, script=mfile.script,
                                       applied_checksum=row['checksum'], file_checksum=mfile.checksum))
        return mismatches, missing


def row_summary(row):
    """A history row as returned to the user (no fingerprint, time as text)."""
    out = dict((k, row[k]) for k in COLUMNS)
    out['applied_at'] = str(row['applied_at'])
    return out


class HistoryTable(object):
    """The history table ``schema.name``: every statement that reads or writes it."""

    def __init__(self, schema, name):
        self.schema = schema
        self.name = name
        self.ident = pgsql.Identifier(schema, name) if pgsql else None
        self._insert = None
        self._record_head = None

    def exists(self, cur):
        cur.execute('SELECT to_regclass(%s) IS NOT NULL', (_catalog.qualified(self.schema, self.name),))
        return cur.fetchone()[0]

    def read(self, conn):
        """``(History, exists)``; a missing table is an empty history, nothing is created."""
        with conn.cursor() as cur:
            if not self.exists(cur):
                return History([]), False
            # the fingerprints (large JSON, one per run) are not read here: only whether a row
            # has one; fingerprint_of() fetches the one drift detection needs
            # applied_at as text: reported as text anyway, and parsing 2000 timestamps is slow
            cur.execute(pgsql.SQL('SELECT {}, fingerprint IS NOT NULL FROM {} ORDER BY installed_rank').format(
                pgsql.SQL(', ').join(pgsql.SQL('{}::text').format(pgsql.Identifier(c)) if c == 'applied_at'
                                     else pgsql.Identifier(c) for c in COLUMNS), self.ident))
            rows = []
            for r in cur.fetchall():
                row = dict(zip(COLUMNS, r))
                row['has_fingerprint'] = r[-1]
                rows.append(row)
        return History(rows), True

    def ensure(self, conn):
        """Create the schema and table when missing; True when this created the table."""
        with conn.cursor() as cur:
            if self.exists(cur):
                return False
            cur.execute(pgsql.SQL('CREATE SCHEMA IF NOT EXISTS {}').format(pgsql.Identifier(self.schema)))
            cur.execute(pgsql.SQL(_CREATE).format(self.ident))
            cur.execute(pgsql.SQL('CREATE INDEX IF NOT EXISTS {} ON {} (version)').format(
                pgsql.Identifier(self.name + '_version_idx'), self.ident))
        return True

    def fingerprint_of(self, conn, rank):
        with conn.cursor() as cur:
            cur.execute(pgsql.SQL('SELECT fingerprint FROM {} WHERE installed_rank = %s').format(self.ident),
                        (rank,))
            row = cur.fetchone()
        return fpmod.loads(row[0]) if row else None

    def store_fingerprint(self, conn, rank):
        """Record the live schema's fingerprint on the row of ``rank``."""
        if conn.status != psycopg2.extensions.STATUS_READY:
            conn.rollback()
        fp = fpmod.take(conn, exclude_tables=[(self.schema, self.name)])
        with conn.cursor() as cur:
            cur.execute(pgsql.SQL('UPDATE {} SET fingerprint = %s WHERE installed_rank = %s')
                        .format(self.ident), (fpmod.dumps(fp), rank))

    def insert(self, cur, rank, step, actor, ms, success, error):
        """Append the row of ``step`` through ``cur``."""
        if self._insert is None:
            self._insert = pgsql.SQL(
                'INSERT INTO {} (installed_rank, version, description, type, script, checksum, '
                'applied_by, execution_time_ms, success, error_message) '
                'VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)').format(self.ident)
        cur.execute(self._insert, (rank, step.version, step.description or step.script, step.kind,
                                   step.script, step.checksum, actor, ms, success, error))

    def record_sql(self, cur, rank, step, actor):
        """The successful row's INSERT as text, its duration measured by the server since BEGIN."""
        if self._record_head is None:
            self._record_head = pgsql.SQL(
                'INSERT INTO {} (installed_rank, version, description, type, script, checksum, '
                'applied_by, execution_time_ms, success) VALUES (').format(self.ident).as_string(cur)
        values = cur.mogrify('%s, %s, %s, %s, %s, %s, %s', (
            rank, step.version, step.description or step.script, step.kind, step.script,
            step.checksum, actor))
        if not isinstance(values, str):
            values = values.decode(psycopg2.extensions.encodings[cur.connection.encoding])
        return (self._record_head + values + ', (pg_catalog.date_part(\'epoch\', pg_catalog.clock_timestamp()'
                ' - pg_catalog.now()) * 1000)::integer, true)')
