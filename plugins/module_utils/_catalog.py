# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Internal: the one catalog layer: user tables, row counts, identifier quoting, table names.

Every engine reads tables, counts rows, quotes identifiers for humans and
parses a user's "schema.table" through here, so the same input means the same
thing in restore, data_compare and schema_diff.  No Ansible imports.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import binascii
import os

from ansible_collections.dbdevops.postgresql.plugins.module_utils.errors import DbDevopsError

try:
    from psycopg2 import sql as pgsql
except ImportError:  # pragma: no cover - reported by connection.require_psycopg2
    pgsql = None

# Ordinary tables a user owns the data of: no system schemas, no temp or toast
# schemas, and no tables an extension creates (CREATE EXTENSION brings those).
USER_TABLES_SQL = """
SELECT n.nspname, c.relname
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind = 'r'
   AND n.nspname NOT IN ('pg_catalog', 'information_schema')
   AND n.nspname !~ '^pg_toast' AND n.nspname !~ '^pg_temp'
   AND NOT EXISTS (SELECT 1 FROM pg_depend d
                    WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
 ORDER BY 1, 2
"""


def list_user_tables(cur):
    """[(schema, table), ...] in name order, read through an open cursor."""
    cur.execute(USER_TABLES_SQL)
    return [tuple(row) for row in cur.fetchall()]


def list_user_relations(cur, kinds):
    """[(schema, name), ...] of the user relations of these ``relkind`` letters (``'m'`` materialized
    views, ...), chosen as ``list_user_tables`` chooses tables, in name order."""
    cur.execute(USER_TABLES_SQL.replace("c.relkind = 'r'", 'c.relkind = ANY(%s)'), (list(kinds),))
    return [tuple(row) for row in cur.fetchall()]


def quote_ident(name):
    """Quote an identifier the way PostgreSQL does, for text shown to humans."""
    return '"%s"' % name.replace('"', '""')


def qualified(schema, name):
    """``"schema"."name"``: the one spelling of a table in results and manifests."""
    return '%s.%s' % (quote_ident(schema), quote_ident(name))


def count_sql(schema, name):
    """``SELECT count(*) FROM ONLY schema.name`` composed safely (children not counted)."""
    return pgsql.SQL('SELECT count(*) FROM ONLY {}.{}').format(pgsql.Identifier(schema),
                                                               pgsql.Identifier(name))


def count_rows(cur, tables):
    """{qualified name: exact row count} of ``[(schema, table)]`` through an open cursor."""
    counts = {}
    for schema, name in tables:
        cur.execute(count_sql(schema, name))
        counts[qualified(schema, name)] = cur.fetchone()[0]
    return counts


def parse_table(text):
    """(schema or None, name) from what a user typed: ``t``, ``s.t``, ``"My.Schema"."T"``.

    Names are taken as written (no case folding); double quotes allow dots and
    quotes inside a part (``""`` is one quote).  A bare name has no schema and
    matches that name in any schema.  Raises DbDevopsError on anything else.
    """
    raw = text
    text = (text or '').strip()
    parts, current, quoted, i = [], [], False, 0
    if not text:
        raise DbDevopsError('empty table name: write "table" or "schema.table"')
    while i < len(text):
        ch = text[i]
        if quoted:
            if ch == '"':
                if text[i + 1:i + 2] == '"':
                    current.append('"')
                    i += 1
                else:
                    quoted = False
            else:
                current.append(ch)
        elif ch == '"':
            quoted = True
        elif ch == '.':
            parts.append(''.join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    parts.append(''.join(current))
    if quoted or len(parts) > 2 or not all(parts):
        raise DbDevopsError('cannot read the table name %r: write "table", "schema.table", or quote '
                            'a part holding a dot: "\\"my.schema\\".table"' % raw)
    if len(parts) == 1:
        return None, parts[0]
    return parts[0], parts[1]


def table_matcher(selectors):
    """A predicate ``matches(schema, name)`` for a list of user-typed table names."""
    parsed = [parse_table(s) for s in selectors or ()]

    def matches(schema, name):
        return any(n == name and (s is None or s == schema) for s, n in parsed)
    return matches


def select_tables(tables, schemas=None, include=None, exclude=None):
    """Filter [(schema, table)]: in ``schemas`` (if any), matching ``include`` (if any), not ``exclude``."""
    wanted = table_matcher(include)
    unwanted = table_matcher(exclude)
    out = []
    for schema, name in tables:
        if schemas and schema not in schemas:
            continue
        if include and not wanted(schema, name):
            continue
        if exclude and unwanted(schema, name):
            continue
        out.append((schema, name))
    return out


# -- generated names and scratch databases ---------------------------------------

MAX_IDENTIFIER_BYTES = 63          # NAMEDATALEN - 1: PostgreSQL cuts longer names silently
SCRATCH_PREFIX = 'dbdevops_'
SCRATCH_COMMENT = 'dbdevops.postgresql scratch database; dropped by the next run when no run holds it'
_SCRATCH_LOCK_CLASS = 0x64627376   # advisory lock class: 'dbsv'


def utf8_prefix(text, max_bytes):
    """The longest prefix of ``text`` whose UTF-8 form fits ``max_bytes`` (never half a character)."""
    data = text.encode('utf-8')[:max(0, max_bytes)]
    return data.decode('utf-8', 'ignore')


def check_identifier(name, what):
    """Raise DbDevopsError when ``name`` would be cut by PostgreSQL (over 63 bytes) or is empty."""
    size = len(name.encode('utf-8'))
    if not name or size > MAX_IDENTIFIER_BYTES:
        raise DbDevopsError('%s %r is %d bytes; PostgreSQL keeps at most %d bytes of a name and would '
                            'cut it: choose a shorter name' % (what, name, size, MAX_IDENTIFIER_BYTES))
    return name


def scratch_name(kind, base=''):
    """A new, unique name for a scratch database of ``kind`` (restore, swap, drill, verify):
    ``dbdevops_<kind>_<as much of base as fits>_<random>``, at most 63 bytes."""
    token = binascii.hexlify(os.urandom(5)).decode('ascii')
    head = '%s%s_' % (SCRATCH_PREFIX, kind)
    room = MAX_IDENTIFIER_BYTES - len(head.encode('utf-8')) - len(token) - 1
    name = '%s%s_%s' % (head, utf8_prefix(base, room), token)
    return check_identifier(name, 'generated name')


class ScratchClaim(object):
    """Marks a scratch database as ours for as long as this run lives.

    Holds a session advisory lock keyed on the name on its own connection (to
    the maintenance database), and comments the database as scratch once it
    exists (``mark(cur)``).  kill -9 ends the session and frees the lock, so
    ``drop_stale_scratch`` of a later run knows the database is abandoned.
    """

    def __init__(self, connect_fn, name):
        self.name = name
        self.conn = connect_fn()
        self.conn.autocommit = True
        with self.conn.cursor() as cur:
            cur.execute('SELECT pg_advisory_lock(%s, hashtext(%s))', (_SCRATCH_LOCK_CLASS, name))

    def mark(self, cur):
        """Comment the (new) database as a scratch database of ours."""
        cur.execute(pgsql.SQL('COMMENT ON DATABASE {} IS {}').format(
            pgsql.Identifier(self.name), pgsql.Literal(SCRATCH_COMMENT)))

    def release(self):
        if self.conn is not None:
            try:
                self.conn.close()
            finally:
                self.conn = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.release()
        return False


STALE_SCRATCH_SQL = """
SELECT d.datname FROM pg_database d
 WHERE d.datname LIKE 'dbdevops\\_%%'
   AND shobj_description(d.oid, 'pg_database') = %s
   AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.datid = d.oid)
 ORDER BY 1
"""


def drop_stale_scratch(conn):
    """Drop scratch databases a killed run left behind; returns their names.

    A scratch database is stale when it carries our comment, nobody is
    connected to it, and no live run holds its advisory lock.  ``conn`` is an
    autocommit connection to another database of the same server.
    """
    dropped = []
    with conn.cursor() as cur:
        cur.execute(STALE_SCRATCH_SQL, (SCRATCH_COMMENT,))
        for (name,) in cur.fetchall():
            cur.execute('SELECT pg_try_advisory_lock(%s, hashtext(%s))', (_SCRATCH_LOCK_CLASS, name))
            if not cur.fetchone()[0]:
                continue                                   # a live run holds it
            try:
                cur.execute(pgsql.SQL('DROP DATABASE IF EXISTS {}').format(pgsql.Identifier(name)))
                dropped.append(name)
            except Exception:  # noqa: BLE001 - someone connected meanwhile: leave it for next time
                pass
            finally:
                cur.execute('SELECT pg_advisory_unlock(%s, hashtext(%s))', (_SCRATCH_LOCK_CLASS, name))
    return dropped


# -- sequences and large objects (data that is not in any table) -------------------

SEQUENCES_SQL = """
SELECT n.nspname, c.relname
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind = 'S'
   AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_temp'
   AND NOT EXISTS (SELECT 1 FROM pg_depend d
                    WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
 ORDER BY 1, 2
"""


def sequence_values(cur):
    """{qualified sequence: [last_value, is_called]} of every user sequence."""
    cur.execute(SEQUENCES_SQL)
    out = {}
    for schema, name in cur.fetchall():
        cur.execute(pgsql.SQL('SELECT last_value, is_called FROM {}.{}').format(
            pgsql.Identifier(schema), pgsql.Identifier(name)))
        last_value, is_called = cur.fetchone()
        out[qualified(schema, name)] = [int(last_value), bool(is_called)]
    return out


def large_object_digests(cur):
    """{oid (str): md5 of its content} of every large object (read with lo_get, one at a time)."""
    cur.execute('SELECT oid FROM pg_largeobject_metadata ORDER BY oid')
    out = {}
    for (oid,) in cur.fetchall():
        cur.execute('SELECT md5(lo_get(%s))', (oid,))
        out[str(oid)] = cur.fetchone()[0]
    return out


# -- the same reads, a chunk of objects per statement -------------------------------

def _union_rows(cur, items, branch, chunk):
    """Rows of ``SELECT <index>, ... UNION ALL ...`` over ``items``, ``chunk`` of them per statement.

    ``branch(index, item)`` composes one ``SELECT`` whose first column is
    ``index``; yields ``(item, row[1:])``.  Hundreds of small objects then
    cost a few statements instead of one round trip and plan each.
    """
    for start in range(0, len(items), chunk):
        part = items[start:start + chunk]
        cur.execute(pgsql.SQL(' UNION ALL ').join(branch(index, item) for index, item in enumerate(part)))
        for row in cur.fetchall():
            yield part[row[0]], row[1:]


def count_rows_batched(cur, tables, chunk=100):
    """``count_rows`` with ``chunk`` tables per statement (same answer, far fewer round trips)."""
    def branch(index, table):
        return pgsql.SQL('SELECT {}::int, count(*) FROM ONLY {}.{}').format(
            pgsql.Literal(index), pgsql.Identifier(table[0]), pgsql.Identifier(table[1]))
    return dict((qualified(*table), row[0]) for table, row in _union_rows(cur, list(tables), branch, chunk))


def sequence_values_batched(cur, chunk=100):
    """``sequence_values`` with ``chunk`` sequences per statement."""
    cur.execute(SEQUENCES_SQL)
    sequences = [tuple(row) for row in cur.fetchall()]

    def branch(index, seq):
        return pgsql.SQL('SELECT {}::int, last_value, is_called FROM {}.{}').format(
            pgsql.Literal(index), pgsql.Identifier(seq[0]), pgsql.Identifier(seq[1]))
    return dict((qualified(*seq), [int(row[0]), bool(row[1])])
                for seq, row in _union_rows(cur, sequences, branch, chunk))
