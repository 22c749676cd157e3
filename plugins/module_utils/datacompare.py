# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Compare the data of two databases, possibly on different servers, without
moving the data: each server computes, per table, the exact row count and an
order-independent checksum (the sum of a 64-bit slice of md5 over each row's
text), and only those two numbers travel.  Sequences (last value, is_called)
and large objects (ids and md5 of their content) are compared too.

A row's text is built from its columns in name order (``ROW(a::text, b::text,
...)::text``), so the physical column order does not matter and NULL, ``''``
and ``'NULL'`` stay three different values; every setting that changes how a
value prints is pinned on both sides (``SESSION_SETTINGS``).

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

# Row text depends on these settings; both sides use the same values.  An empty
# search_path prints every regclass/regproc/regtype and user type schema-qualified;
# row_security off makes a policy-filtered read an error instead of a partial view.
SESSION_SETTINGS = (
    ("search_path", ""), ("DateStyle", "ISO, MDY"), ("IntervalStyle", "postgres"), ("TimeZone", "UTC"),
    ("extra_float_digits", "3"), ("bytea_output", "hex"), ("lc_monetary", "C"), ("lc_numeric", "C"),
    ("row_security", "off"),
)

CHECKSUM_SQL = ("SELECT count(*), coalesce(sum(('x' || substr(md5(ROW({})::text), 1, 16))::bit(64)::bigint"
                "::numeric), 0)::text FROM ONLY {}.{}")

# Every column of the relations data_compare may read (tables and materialized views).
COLUMNS_SQL = """
SELECT n.nspname, c.relname, c.relispopulated, a.attname, format_type(a.atttypid, a.atttypmod)
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
 WHERE c.relkind IN ('r', 'm')
   AND n.nspname NOT IN ('pg_catalog', 'information_schema')
   AND n.nspname !~ '^pg_toast' AND n.nspname !~ '^pg_temp'
"""


# Large object differences listed one by one in ``differences`` (the section counts them all).
MAX_LISTED_LARGE_OBJECTS = 100


@dataclasses.dataclass
class DataCompareOptions(object):
    """The options of data_compare (the connection blocks' suboptions come from ``_module``)."""
    src: dict = option(type='dict', required=True, cli=False)
    dst: dict = option(type='dict', required=True, cli=False)
    schemas: list = option([], type='list', elements='str')
    tables: list = option([], type='list', elements='str')
    exclude_tables: list = option([], type='list', elements='str')
    checksums: bool = option(True, type='bool')
    sequences: bool = option(True, type='bool')
    large_objects: bool = option(True, type='bool')
    materialized_views: bool = option(False, type='bool')
    fail_on_difference: bool = option(False, type='bool')


class CompareError(DbDevopsError):
    """A side could not be read (the message names which side and table)."""


@dataclasses.dataclass
class _Selection(object):
    """What one comparison reads, the same on both sides."""
    schemas: list
    tables: list
    exclude: list
    checksums: bool = True
    sequences: bool = True
    large_objects: bool = True
    materialized_views: bool = False

    def pick(self, relations):
        return _catalog.select_tables(relations, self.schemas, include=self.tables, exclude=self.exclude)

    def describe(self):
        parts = ['%s %r' % (label, value) for label, value in (
            ('schemas', self.schemas), ('tables', self.tables), ('exclude_tables', self.exclude)) if value]
        return ', '.join(parts) or 'no selection (every table)'


def _columns(cur):
    """({(schema, relation): {column: type}}, {(schema, relation): populated}) of every table and materialized view."""
    cur.execute(COLUMNS_SQL)
    columns, populated = {}, {}
    for schema, name, is_populated, column, type_name in cur.fetchall():
        columns.setdefault((schema, name), {})[column] = type_name
        populated[(schema, name)] = is_populated
    return columns, populated


def _checksum(cur, schema, name, columns):
    """(rows, checksum text) of one relation; the row text takes its columns in name order."""
    texts = pgsql.SQL(', ').join(pgsql.SQL('{}::text').format(pgsql.Identifier(c)) for c in sorted(columns))
    cur.execute(pgsql.SQL(CHECKSUM_SQL).format(texts, pgsql.Identifier(schema), pgsql.Identifier(name)))
    rows, checksum = cur.fetchone()
    return rows, checksum


def _read_relations(cur, sel, reading):
    """{qualified: {rows, checksum, columns, kind, populated}} of the selected tables (and views)."""
    columns, populated = _columns(cur)
    relations = [(s, n, 'table', True) for s, n in sel.pick(_catalog.list_user_tables(cur))]
    if sel.materialized_views:
        relations += [(s, n, 'materialized view', populated.get((s, n), True))
                      for s, n in sel.pick(_catalog.list_user_relations(cur, ['m']))]
    data = {}
    for schema, name, kind, populated in relations:
        key = _catalog.qualified(schema, name)
        reading[0] = '%s %s' % (kind, key)
        cols = columns.get((schema, name), {})
        rows, checksum = None, None
        if populated and sel.checksums:
            rows, checksum = _checksum(cur, schema, name, cols)
        elif populated:
            cur.execute(_catalog.count_sql(schema, name))
            rows = cur.fetchone()[0]
        data[key] = dict(rows=rows, checksum=checksum, columns=cols, kind=kind, populated=populated)
    return data


def _read_sequences(cur, sel, reading):
    """{qualified: [last_value, is_called]} of the selected sequences."""
    if not sel.sequences:
        return {}
    cur.execute(_catalog.SEQUENCES_SQL)
    wanted = set(_catalog.qualified(s, n) for s, n in sel.pick([tuple(r) for r in cur.fetchall()]))
    reading[0] = 'sequences'
    return dict((k, v) for k, v in _catalog.sequence_values(cur).items() if k in wanted)


def _read_large_objects(cur, sel, reading):
    """{oid: md5 or None (checksums off)} of every large object, or None when not compared."""
    if not sel.large_objects:
        return None
    reading[0] = 'large objects'
    if sel.checksums:
        return _catalog.large_object_digests(cur)
    cur.execute('SELECT oid FROM pg_largeobject_metadata ORDER BY oid')
    return dict((str(oid), None) for (oid,) in cur.fetchall())


def _hint(exc):
    text = str(exc)
    if 'row-level security' in text:
        return (': compare as a superuser or a role with BYPASSRLS (data_compare never compares the rows '
                'a policy lets one role see)')
    if 'permission denied' in text:
        return ': grant the comparing role SELECT on it, or leave it out (exclude_tables, sequences, large_objects)'
    return ''


def _side(label, params, sel):
    """{tables, sequences, large_objects} of one side, read in one snapshot."""
    try:
        conn = connect(params, application_name='dbdevops-data-compare')
    except DbDevopsError as exc:
        raise CompareError('data comparison failed reading the %s: %s' % (label, exc))
    reading = ['the catalog']
    try:
        conn.set_session(readonly=True, isolation_level='REPEATABLE READ')
        with conn.cursor() as cur:
            for name, value in SESSION_SETTINGS:
                cur.execute('SELECT set_config(%s, %s, true)', (name, value))
            out = dict(tables=_read_relations(cur, sel, reading), sequences=_read_sequences(cur, sel, reading),
                       large_objects=_read_large_objects(cur, sel, reading))
        conn.rollback()
        return out
    except Exception as exc:  # noqa: BLE001 - reported as a CompareError with the side
        raise CompareError('data comparison failed reading the %s (%s), %s: %s%s'
                           % (label, params.where(), reading[0], str(exc).strip().splitlines()[0], _hint(exc)),
                           side=label, reading=reading[0])
    finally:
        conn.close()


def _column_difference(a, b):
    """None when both relations have the same columns with the same types, else what differs."""
    if a == b:
        return None
    return dict(only_in_source=sorted(set(a) - set(b)), only_in_destination=sorted(set(b) - set(a)),
                types_differ=dict((c, [a[c], b[c]]) for c in sorted(set(a) & set(b)) if a[c] != b[c]))


def _status(a, b):
    if a is None:
        return 'missing in source'
    if b is None:
        return 'missing in destination'
    if a['kind'] != b['kind']:
        return '%s in source, %s in destination' % (a['kind'], b['kind'])
    if a['columns'] != b['columns']:
        return 'columns differ'
    if a['populated'] != b['populated']:
        return 'not populated in %s' % ('source' if not a['populated'] else 'destination')
    if a['rows'] != b['rows']:
        return 'row count differs'
    if a['checksum'] != b['checksum']:
        return 'content differs'
    return 'equal'


def _compare_tables(left, right):
    report, differences = {}, []
    for key in sorted(set(left) | set(right)):
        a, b = left.get(key), right.get(key)
        entry = dict(src_rows=a and a['rows'], dst_rows=b and b['rows'],
                     src_checksum=a and a['checksum'], dst_checksum=b and b['checksum'],
                     status=_status(a, b))
        report[key] = entry
        if entry['status'] != 'equal':
            diff = dict(table=key, status=entry['status'], src_rows=entry['src_rows'], dst_rows=entry['dst_rows'])
            if entry['status'] == 'columns differ':
                diff['columns'] = _column_difference(a['columns'], b['columns'])
            differences.append(diff)
    return report, differences


def _compare_sequences(left, right):
    report, differences = {}, []
    for key in sorted(set(left) | set(right)):
        a, b = left.get(key), right.get(key)
        status = ('missing in source' if a is None else 'missing in destination' if b is None
                  else 'equal' if a == b else 'value differs')
        entry = dict(src_last_value=a and a[0], src_is_called=a and a[1],
                     dst_last_value=b and b[0], dst_is_called=b and b[1], status=status)
        report[key] = entry
        if status != 'equal':
            differences.append(dict(sequence=key, **entry))
    return report, differences


def _compare_large_objects(left, right):
    if left is None or right is None:
        return dict(compared=False, src_count=None, dst_count=None, status='not compared', missing_in_source=0,
                    missing_in_destination=0, content_differs=0), []
    section = dict(compared=True, src_count=len(left), dst_count=len(right), missing_in_source=0,
                   missing_in_destination=0, content_differs=0)
    differences = []
    for oid in sorted(set(left) | set(right), key=int):
        status = ('missing in source' if oid not in left else 'missing in destination' if oid not in right
                  else 'equal' if left[oid] == right[oid] else 'content differs')
        if status == 'equal':
            continue
        section[status.replace(' ', '_')] += 1
        if len(differences) < MAX_LISTED_LARGE_OBJECTS:
            differences.append(dict(large_object=oid, status=status, src_md5=left.get(oid), dst_md5=right.get(oid)))
    section['status'] = 'differs' if (section['missing_in_source'] or section['missing_in_destination']
                                      or section['content_differs']) else 'equal'
    return section, differences


def compare(src, dst, schemas=None, tables=None, exclude_tables=None, checksums=True,
            sequences=True, large_objects=True, materialized_views=False):
    """Per-table row count and checksum, sequences and large objects on both sides; returns a report dict.

    ``equal`` is true when both sides hold the same tables with the same
    columns, counts and checksums, the same sequence values and the same large
    objects, and at least one of them was compared: when nothing matches the
    selection on either side, DbDevopsError says so (no verdict on nothing).
    Both sides are read in parallel, each in one repeatable-read snapshot.
    Names in ``tables`` and ``exclude_tables`` are read by
    ``_catalog.parse_table`` (a bare name matches in any schema) and select
    sequences as they select tables; large objects belong to no schema and are
    compared whenever ``large_objects`` is true.
    """
    t0 = time.monotonic()
    for text in list(tables or []) + list(exclude_tables or []):
        _catalog.parse_table(text)   # a name that cannot be read is the caller's error, not a side's
    sel = _Selection(list(schemas or []), list(tables or []), list(exclude_tables or []), bool(checksums),
                     bool(sequences), bool(large_objects), bool(materialized_views))
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        sides = [pool.submit(_side, label, params, sel) for label, params in (('source', src), ('destination', dst))]
    left, right = [side.result() for side in sides]   # the source's error first, as before
    table_report, differences = _compare_tables(left['tables'], right['tables'])
    sequence_report, sequence_differences = _compare_sequences(left['sequences'], right['sequences'])
    lo_report, lo_differences = _compare_large_objects(left['large_objects'], right['large_objects'])
    compared = len(table_report) + len(sequence_report) + len(set(left['large_objects'] or ())
                                                              | set(right['large_objects'] or ()))
    if not compared:
        raise DbDevopsError('nothing to compare: no table%s%s matches %s on either side (source %s; '
                            'destination %s); check the selection and the databases'
                            % (', materialized view' if sel.materialized_views else '',
                               ', sequence or large object' if sel.sequences or sel.large_objects else '',
                               sel.describe(), src.where(), dst.where()),
                            selection=dict(schemas=sel.schemas, tables=sel.tables, exclude_tables=sel.exclude))
    differences += sequence_differences + lo_differences
    return dict(equal=not differences, tables=table_report, differences=differences,
                tables_compared=len(table_report), sequences=sequence_report,
                sequences_compared=len(sequence_report), large_objects=lo_report, checksums=bool(checksums),
                duration_ms=int(round((time.monotonic() - t0) * 1000)))


def _difference_item(diff):
    if 'sequence' in diff:
        return 'sequence %s (%s)' % (diff['sequence'], diff['status'])
    if 'large_object' in diff:
        return 'large object %s (%s)' % (diff['large_object'], diff['status'])
    return '%s (%s)' % (diff['table'], diff['status'])


def difference_message(report):
    """The one-line failure of ``fail_on_difference``: what differs, how many of each kind, and which (first 20)."""
    lo = report.get('large_objects') or {}
    lo_count = sum(lo.get(k) or 0 for k in ('missing_in_source', 'missing_in_destination', 'content_differs'))
    counts = (('table(s)', sum(1 for d in report['differences'] if 'table' in d)),
              ('sequence(s)', sum(1 for d in report['differences'] if 'sequence' in d)),
              ('large object(s)', lo_count))
    return 'the databases differ in %s: %s' % (
        ', '.join('%d %s' % (n, label) for label, n in counts if n),
        ', '.join(_difference_item(d) for d in report['differences'][:20]))


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
                         exclude_tables=opts.exclude_tables, checksums=opts.checksums, sequences=opts.sequences,
                         large_objects=opts.large_objects, materialized_views=opts.materialized_views)
        plan = Plan(False, values=report)
        if opts.fail_on_difference and not report['equal']:
            raise DbDevopsError(difference_message(report), **plan.result())
        return plan

    def apply(self, plan):
        return plan.result()
