# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Compare the data of two databases, possibly on different servers, without
moving the data: each server computes, per table, the exact row count and an
order-independent checksum (the sum of a 64-bit slice of md5 over each row's
text), and only those two numbers travel.

    report = compare(ConnParams(...), ConnParams(...), schemas=['public'])
    report['equal'], report['differences']

The module runs it as an engine (``DataCompareEngine((src, dst), options)``,
``plan()`` / ``apply(plan)``): read-only, never a change.  No Ansible imports.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import concurrent.futures
import dataclasses
import time

from ansible_collections.dbdevops.postgresql.plugins.module_utils import _catalog
from ansible_collections.dbdevops.postgresql.plugins.module_utils._contract import Plan
from ansible_collections.dbdevops.postgresql.plugins.module_utils._options import option
from ansible_collections.dbdevops.postgresql.plugins.module_utils.connection import connect
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


@dataclasses.dataclass
class DataCompareOptions(object):
    """The options of data_compare (the connection blocks' suboptions come from ``_module``)."""
    src: dict = option(type='dict', required=True, cli=False)
    dst: dict = option(type='dict', required=True, cli=False)
    schemas: list = option([], type='list', elements='str')
    tables: list = option([], type='list', elements='str')
    exclude_tables: list = option([], type='list', elements='str')
    checksums: bool = option(True, type='bool')
    fail_on_difference: bool = option(False, type='bool')


class CompareError(DbDevopsError):
    """A side could not be read (the message names which side and table)."""


def _side(label, params, schemas, only_tables, exclude, checksums):
    """{qualified table: {rows, checksum}} of one side, read in one snapshot."""
    try:
        conn = connect(params, application_name='dbdevops-data-compare')
    except DbDevopsError as exc:
        raise CompareError('data comparison failed reading the %s: %s' % (label, exc))
    try:
        conn.set_session(readonly=True, isolation_level='REPEATABLE READ')
        with conn.cursor() as cur:
            for name, value in SESSION_SETTINGS:
                cur.execute('SELECT set_config(%s, %s, true)', (name, value))
            tables = _catalog.select_tables(_catalog.list_user_tables(cur), schemas,
                                            include=only_tables, exclude=exclude)
            data = {}
            for schema, name in tables:
                if checksums:
                    cur.execute(pgsql.SQL(CHECKSUM_SQL).format(pgsql.Identifier(schema),
                                                               pgsql.Identifier(name)))
                    rows, checksum = cur.fetchone()
                else:
                    cur.execute(_catalog.count_sql(schema, name))
                    rows, checksum = cur.fetchone()[0], None
                data[_catalog.qualified(schema, name)] = dict(rows=rows, checksum=checksum)
        conn.rollback()
        return data
    except Exception as exc:  # noqa: BLE001 - reported as a CompareError with the side
        raise CompareError('data comparison failed reading the %s (%s): %s'
                           % (label, params.where(), str(exc).strip().splitlines()[0]))
    finally:
        conn.close()


def _status(a, b):
    if a is None:
        return 'missing in source'
    if b is None:
        return 'missing in destination'
    if a['rows'] != b['rows']:
        return 'row count differs'
    if a['checksum'] != b['checksum']:
        return 'content differs'
    return 'equal'


def compare(src, dst, schemas=None, tables=None, exclude_tables=None, checksums=True):
    """Per-table row count and checksum on both sides; returns a report dict.

    ``equal`` is true when both sides hold the same tables with the same
    counts and checksums.  Both sides are read in parallel, each in one
    repeatable-read snapshot.  Table names in ``tables`` and ``exclude_tables``
    are read by ``_catalog.parse_table`` (a bare name matches in any schema).
    """
    t0 = time.monotonic()
    for text in list(tables or []) + list(exclude_tables or []):
        _catalog.parse_table(text)   # a name that cannot be read is the caller's error, not a side's
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        sides = [pool.submit(_side, label, params, schemas or [], tables or [], exclude_tables or [],
                             checksums)
                 for label, params in (('source', src), ('destination', dst))]
    left, right = [side.result() for side in sides]   # the source's error first, as before
    report, differences = {}, []
    for key in sorted(set(left) | set(right)):
        a, b = left.get(key), right.get(key)
        entry = dict(src_rows=a and a['rows'], dst_rows=b and b['rows'],
                     src_checksum=a and a['checksum'], dst_checksum=b and b['checksum'],
                     status=_status(a, b))
        report[key] = entry
        if entry['status'] != 'equal':
            differences.append(dict(table=key, status=entry['status'], src_rows=entry['src_rows'],
                                    dst_rows=entry['dst_rows']))
    return dict(equal=not differences, tables=report, differences=differences,
                tables_compared=len(report), checksums=bool(checksums),
                duration_ms=int(round((time.monotonic() - t0) * 1000)))


def difference_message(report):
    """The one-line failure of ``fail_on_difference``: how many tables differ, and which (first 20)."""
    return 'the databases differ in %d table(s): %s' % (
        len(report['differences']), ', '.join('%s (%s)' % (d['table'], d['status'])
                                              for d in report['differences'][:20]))


class DataCompareEngine(object):
    """data_compare as an engine: ``sides`` is ``(src ConnParams, dst ConnParams)``.

    ``plan()`` does the comparison (it only reads); ``apply(plan)`` has
    nothing left to do and returns the same answer, so check mode and a real
    run report the same keys.  ``changed`` is always false.  With
    ``fail_on_difference`` a difference raises DbDevopsError carrying the
    report, in check mode too.
    """

    def __init__(self, sides, options):
        self.src, self.dst = sides
        self.options = options

    def plan(self):
        opts = self.options
        report = compare(self.src, self.dst, schemas=opts.schemas, tables=opts.tables,
                         exclude_tables=opts.exclude_tables, checksums=opts.checksums)
        plan = Plan(False, values=report)
        if opts.fail_on_difference and not report['equal']:
            raise DbDevopsError(difference_message(report), **plan.result())
        return plan

    def apply(self, plan):
        return plan.result()
