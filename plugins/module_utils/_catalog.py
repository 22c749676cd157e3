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
