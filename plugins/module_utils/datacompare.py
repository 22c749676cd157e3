# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Compare the data of two databases, possibly on different servers, without
moving the data: each server computes, per table, the exact row count and an
order-independent checksum (the sum of a 64-bit slice of md5 over each row's
text), and only those two numbers travel.

    report = compare(ConnParams(...), ConnParams(...), schemas=['public'])
    report['equal'], report['differences']
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import threading
import time

from ansible_collections.dbdevops.postgresql.plugins.module_utils.connection import (
    connect, quote_ident)
from ansible_collections.dbdevops.postgresql.plugins.module_utils._catalog import list_user_tables
from ansible_collections.dbdevops.postgresql.plugins.module_utils.errors import DbDevopsError

try:
    from psycopg2 import sql as pgsql
except ImportError:  # pragma: no cover - reported by connect()
    pgsql = None

# Row text depends on these settings; both sides use the same values.
SESSION_SETTINGS = (
    ("DateStyle", "ISO, MDY"), ("IntervalStyle", "postgres"), ("TimeZone", "UTC"),
    ("extra_float_digits", "3"), ("bytea_output", "hex"),
)


CHECKSUM_SQL = ("SELECT count(*), coalesce(sum(('x' || substr(md5(t::text), 1, 16))::bit(64)::bigint"
                "::numeric), 0)::text FROM ONLY {}.{} AS t")


class CompareError(DbDevopsError):
    """A side could not be read (the message names which side and table)."""


def _key(schema, name):
    return '%s.%s' % (quote_ident(schema), quote_ident(name))


def _selected(tables, schemas, only_tables, exclude):
    out = []
    for schema, name in tables:
        key = _key(schema, name)
        plain = '%s.%s' % (schema, name)
        if schemas and schema not in schemas:
            continue
        if only_tables and not ({key, plain, name} & set(only_tables)):
            continue
        if exclude and ({key, plain, name} & set(exclude)):
            continue
        out.append((schema, name))
    return out


def _side(label, params, schemas, only_tables, exclude, checksums, result):
    try:
        conn = connect(params, application_name='dbdevops-data-compare')
    except DbDevopsError as exc:
        result['error'] = '%s: %s' % (label, exc)
        return
    try:
        conn.set_session(readonly=True, isolation_level='REPEATABLE READ')
        with conn.cursor() as cur:
            for name, value in SESSION_SETTINGS:
                cur.execute('SELECT set_config(%s, %s, true)', (name, value))
            tables = _selected(list_user_tables(cur), schemas, only_tables, exclude)
            data = {}
            for schema, name in tables:
                ident = (pgsql.Identifier(schema), pgsql.Identifier(name))
                if checksums:
                    cur.execute(pgsql.SQL(CHECKSUM_SQL).format(*ident))
                    rows, checksum = cur.fetchone()
                else:
                    cur.execute(pgsql.SQL('SELECT count(*) FROM ONLY {}.{}').format(*ident))
                    rows, checksum = cur.fetchone()[0], None
                data[_key(schema, name)] = dict(rows=rows, checksum=checksum)
            result['tables'] = data
        conn.rollback()
    except Exception as exc:  # noqa: BLE001 - reported as a CompareError with the side
        result['error'] = '%s (%s): %s' % (label, params.where(), str(exc).strip().splitlines()[0])
    finally:
        conn.close()


def compare(src, dst, schemas=None, tables=None, exclude_tables=None, checksums=True):
    """Per-table row count and checksum on both sides; returns a report dict.

    ``equal`` is true when both sides hold the same tables with the same
    counts and checksums.  Both sides are read in parallel, each in one
    repeatable-read snapshot.
    """
    t0 = time.monotonic()
    results = (dict(), dict())
    threads = [threading.Thread(target=_side, args=(label, params, schemas or [], tables or [],
                                                    exclude_tables or [], checksums, res))
               for label, params, res in (('source', src, results[0]), ('destination', dst, results[1]))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for res in results:
        if 'error' in res:
            raise CompareError('data comparison failed reading the %s' % res['error'])
    left, right = results[0]['tables'], results[1]['tables']
    report, differences = {}, []
    for key in sorted(set(left) | set(right)):
        a, b = left.get(key), right.get(key)
        entry = dict(src_rows=a and a['rows'], dst_rows=b and b['rows'],
                     src_checksum=a and a['checksum'], dst_checksum=b and b['checksum'])
        if a is None:
            entry['status'] = 'missing in source'
        elif b is None:
            entry['status'] = 'missing in destination'
        elif a['rows'] != b['rows']:
            entry['status'] = 'row count differs'
        elif a['checksum'] != b['checksum']:
            entry['status'] = 'content differs'
        else:
            entry['status'] = 'equal'
        report[key] = entry
        if entry['status'] != 'equal':
            differences.append(dict(table=key, status=entry['status'], src_rows=entry['src_rows'],
                                    dst_rows=entry['dst_rows']))
    return dict(equal=not differences, tables=report, differences=differences,
                tables_compared=len(report), checksums=bool(checksums),
                duration_ms=int(round((time.monotonic() - t0) * 1000)))
