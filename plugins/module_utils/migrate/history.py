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

import re

from ansible_collections.dbdevops.postgresql.plugins.module_utils import _catalog
from ansible_collections.dbdevops.postgresql.plugins.module_utils import fingerprint as fpmod
from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate import adopt as madopt
from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate import files as mfiles
from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate.options import (
    DEFAULT_HISTORY_TABLE, LEGACY_HISTORY_TABLE)
from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate.steps import (
    MigrationError, pg_error_text)

try:
    import psycopg2
    from psycopg2 import sql as pgsql
except ImportError:  # pragma: no cover - connection.require_psycopg2 explains it
    psycopg2 = None
    pgsql = None

COLUMNS = ('installed_rank', 'version', 'description', 'type', 'script', 'checksum',
           'applied_at', 'applied_by', 'execution_time_ms', 'success', 'error_message')
KINDS = ('versioned', 'undo', 'repeatable', 'baseline', 'repair')
_VERSIONED_KINDS = ('versioned', 'undo', 'baseline', 'repair')

# What a database holds besides extensions' objects: relations, functions, types.
_USER_OBJECTS_SQL = """
SELECT kind, name FROM (
  SELECT CASE c.relkind WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view' WHEN 'S' THEN 'sequence'
              WHEN 'f' THEN 'foreign table' ELSE 'table' END AS kind,
         quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS name,
         CASE WHEN c.relkind IN ('r', 'p') THEN 0 ELSE 1 END AS rank
    FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
   WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND {user_ns}
     AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_class'::regclass
                     AND d.objid = c.oid AND d.deptype = 'e')
  UNION ALL
  SELECT 'function', quote_ident(n.nspname) || '.' || quote_ident(p.proname), 2
    FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
   WHERE {user_ns} AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                     WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')
  UNION ALL
  SELECT 'type', quote_ident(n.nspname) || '.' || quote_ident(t.typname), 3
    FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
   WHERE t.typtype IN ('e', 'd', 'r', 'm') AND {user_ns}
     AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_type'::regclass
                     AND d.objid = t.oid AND d.deptype = 'e')
) o ORDER BY rank, name
""".format(user_ns="n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp)'")

# tables shaped like a history table (where a moved or misnamed history may be)
_HISTORY_LIKE_SQL = """
SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname)
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p') AND (SELECT count(*) FROM pg_catalog.pg_attribute a
        WHERE a.attrelid = c.oid AND NOT a.attisdropped
          AND a.attname IN ('installed_rank', 'version', 'script', 'checksum', 'success', 'applied_at')) = 6
 ORDER BY 1
"""

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

    def __init__(self, rows, where='the history table'):
        self.rows = rows
        for row in rows:
            _check_row(row, where)
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

    def unfinished(self):
        """Successful rows after the last fingerprint: what a run that never finished applied.

        A run records the fingerprint on its last successful row when it ends (also when it
        fails); a run killed half way records none, so the fingerprint before it is stale.
        """
        last = self.last_fingerprint()
        if last is None:
            return []
        return [r for r in self.rows if r['success'] and r['installed_rank'] > last['installed_rank']
                and r['type'] != 'repair']

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


def _check_row(row, where):
    """A row the history can be folded from, else a MigrationError naming row and column."""
    problem = None
    if row['installed_rank'] is None:
        problem = 'installed_rank is NULL'
    else:
        for column in ('type', 'script', 'success'):
            if row[column] is None:
                problem = '%s is NULL' % column
                break
    if problem is None and row['type'] not in KINDS:
        problem = 'type "%s" is not one of %s' % (row['type'], ', '.join(KINDS))
    if problem is None and row['type'] in _VERSIONED_KINDS and row['version'] is None:
        problem = 'version is NULL'
    elif problem is None and row['version'] is not None and not mfiles.is_version(row['version']):
        problem = 'version "%s" is not a version' % row['version']
    elif problem is None and row['type'] == 'repeatable' and row['description'] is None:
        problem = 'description is NULL'
    if problem is not None:
        raise MigrationError(
            '%s row installed_rank %s: %s; the history table was changed by hand, and it decides '
            'what runs: fix or delete that row (script %s); nothing was applied'
            % (where, row['installed_rank'], problem, row.get('script')),
            history_row=row_summary(row))


def row_summary(row):
    """A history row as returned to the user (no fingerprint, time as text)."""
    out = dict((k, row[k]) for k in COLUMNS)
    out['applied_at'] = str(row['applied_at'])
    return out


def resolve_table(conn, schema, name, given):
    """``(name, warnings)``: the history table to use in ``schema``.

    A name the user gave is used as is.  Otherwise the default
    (``dbdevops_schema_history``), unless it is absent and a table with the old
    default name ``schema_migrations`` and this collection's columns exists: a
    database migrated before the rename keeps its history there.
    """
    if given or name != DEFAULT_HISTORY_TABLE:
        return name, []
    with conn.cursor() as cur:
        cur.execute('SELECT to_regclass(%s), to_regclass(%s)', (
            _catalog.qualified(schema, DEFAULT_HISTORY_TABLE), _catalog.qualified(schema, LEGACY_HISTORY_TABLE)))
        new, old = cur.fetchone()
        if old is None:
            return name, []
        cur.execute('SELECT array_agg(attname::text) FROM pg_catalog.pg_attribute WHERE attrelid = %s::regclass '
                    'AND attnum > 0 AND NOT attisdropped', (old,))
        ours = madopt.classify(schema, LEGACY_HISTORY_TABLE, cur.fetchone()[0] or []) == 'dbdevops'
    if not ours:
        return name, []
    shown = schema if re.match(r'^[a-z_][a-z0-9_$]*$', schema) else _catalog.quote_ident(schema)
    where = '%s.%s' % (shown, LEGACY_HISTORY_TABLE)
    if new is not None:
        return name, ['%s.%s is the history table; %s, with the same columns, is an old copy under the '
                      'former default name and is not read: drop it when you no longer need it'
                      % (shown, DEFAULT_HISTORY_TABLE, where)]
    return LEGACY_HISTORY_TABLE, [
        'the history is in %s, the default name before this version (also the name dbmate, '
        'golang-migrate and Rails use); it stays in use. To move to the new default: ALTER TABLE %s '
        'RENAME TO %s (no run may be going on); to keep it: set history_table: %s, which also silences '
        'this warning' % (where, where, DEFAULT_HISTORY_TABLE, LEGACY_HISTORY_TABLE)]


class HistoryTable(object):
    """The history table ``schema.name``: every statement that reads or writes it."""

    def __init__(self, schema, name):
        self.schema = schema
        self.name = name
        self.ident = pgsql.Identifier(schema, name) if pgsql else None
        self.where = '%s.%s' % (schema, name)
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
            try:
                cur.execute(pgsql.SQL('SELECT {}, fingerprint IS NOT NULL FROM {} ORDER BY installed_rank').format(
                    pgsql.SQL(', ').join(pgsql.SQL('{}::text').format(pgsql.Identifier(c)) if c == 'applied_at'
                                         else pgsql.Identifier(c) for c in COLUMNS), self.ident))
            except psycopg2.Error as exc:
                self._unreadable(conn, exc)
            rows = []
            for r in cur.fetchall():
                row = dict(zip(COLUMNS, r))
                row['has_fingerprint'] = r[-1]
                rows.append(row)
        return History(rows, self.where), True

    def _unreadable(self, conn, exc):
        """Raise the MigrationError of a history table the SELECT failed on (missing columns...)."""
        if conn.status != psycopg2.extensions.STATUS_READY:
            conn.rollback()
        with conn.cursor() as cur:
            cur.execute('SELECT attname FROM pg_catalog.pg_attribute WHERE attrelid = to_regclass(%s) '
                        'AND attnum > 0 AND NOT attisdropped', (_catalog.qualified(self.schema, self.name),))
            present = set(r[0] for r in cur.fetchall())
        missing = [c for c in COLUMNS + ('fingerprint',) if c not in present]
        tool = madopt.classify(self.schema, self.name, present, explicit=True)
        if tool not in (None, 'dbdevops'):
            raise MigrationError(
                'history table %s is the history table of %s, not of this collection (its columns: %s); '
                'leave history_table unset (this collection then uses %s) or name another table%s; '
                'nothing was applied' % (
                    self.where, tool, ', '.join(sorted(present)), DEFAULT_HISTORY_TABLE,
                    ', and set adopt_from: %s to import the versions %s applied' % (tool, tool)
                    if tool in madopt.ADOPTABLE else
                    ', and set baseline_version to the version the database is at'),
                foreign_tool=tool, missing_columns=missing)
        if missing:
            raise MigrationError(
                'history table %s has no column %s: it was altered by hand or is not a history table '
                'of this collection; restore the column%s, or point history_schema/history_table at '
                'the right table; nothing was applied'
                % (self.where, ', '.join(missing), 's' if len(missing) > 1 else ''), missing_columns=missing)
        raise MigrationError('cannot read history table %s: %s; nothing was applied'
                             % (self.where, pg_error_text(exc)))

    def refuse_lost_history(self, conn, foreign=()):
        """Raise when the database has objects but no history table (a lost or misnamed history).

        ``foreign`` (``adopt.Foreign``) are other tools' histories found: the message names them.
        """
        with conn.cursor() as cur:
            cur.execute(_USER_OBJECTS_SQL)
            found = cur.fetchall()
            if not found:
                return
            cur.execute(_HISTORY_LIKE_SQL)
            elsewhere = [r[0] for r in cur.fetchall()]
        shown = ', '.join('%s %s' % (kind, name) for kind, name in found[:8])
        if len(found) > 8:
            shown += ', ... (%d objects in all)' % len(found)
        hint = ('a history table exists at %s: set history_schema and history_table to it'
                % ' and '.join(elsewhere) if elsewhere else
                'if the history is kept elsewhere, check history_schema and history_table')
        if foreign:
            hint = '%s. Or %s' % (madopt.describe(foreign)[0].upper() + madopt.describe(foreign)[1:],
                                  hint[0].lower() + hint[1:])
        raise MigrationError(
            'no history table %s, but the database is not empty: %s. Running now would apply every '
            'migration again on top of it. %s; if this database already is at some version, set '
            'baseline_version to it (baseline_version: 0 applies every migration on top of what is '
            'there); nothing was applied' % (self.where, shown, hint),
            objects_found=['%s %s' % f for f in found[:50]], history_tables_found=elsewhere,
            foreign_histories=[f.summary() for f in foreign])

    def ensure(self, conn, rows=()):
        """Create the schema and table when missing; True when this created the table.

        ``rows`` (dicts of COLUMNS, e.g. from ``adopt.adoption``) are inserted in the
        transaction that creates the table: an adopted history is there whole or not at all.
        """
        with conn.cursor() as cur:
            if self.exists(cur):
                return False
            cur.execute('SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = %s', (self.schema,))
            create_schema = cur.fetchone() is None
            try:
                cur.execute('BEGIN')
                if create_schema:
                    cur.execute(pgsql.SQL('CREATE SCHEMA IF NOT EXISTS {}').format(pgsql.Identifier(self.schema)))
                cur.execute(pgsql.SQL(_CREATE).format(self.ident))
                cur.execute(pgsql.SQL('CREATE INDEX IF NOT EXISTS {} ON {} (version)').format(
                    pgsql.Identifier(self.name + '_version_idx'), self.ident))
                for row in rows:
                    cur.execute(pgsql.SQL(
                        'INSERT INTO {} (installed_rank, version, description, type, script, checksum, '
                        'applied_at, applied_by, execution_time_ms, success, error_message) VALUES '
                        '(%s, %s, %s, %s, %s, %s, coalesce(%s::timestamptz, pg_catalog.clock_timestamp()), '
                        '%s, %s, %s, %s)').format(self.ident), tuple(row[c] for c in COLUMNS))
                cur.execute('COMMIT')
            except psycopg2.Error as exc:
                cur.execute('ROLLBACK')
                cur.execute('SELECT current_user, current_database()')
                user, dbname = cur.fetchone()
                grant = ('GRANT CREATE ON DATABASE %s TO %s' % (_catalog.quote_ident(dbname), _catalog.quote_ident(user))
                         if create_schema else
                         'GRANT CREATE ON SCHEMA %s TO %s' % (_catalog.quote_ident(self.schema), _catalog.quote_ident(user)))
                raise MigrationError(
                    'cannot create the history table %s as role %s: %s; %s, or set history_schema '
                    'to a schema that role may create tables in; nothing was applied'
                    % (self.where, user, pg_error_text(exc), grant), sqlstate=getattr(exc, 'pgcode', None))
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
