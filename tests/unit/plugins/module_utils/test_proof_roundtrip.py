"""Every proof tells the truth: the rich database through backup and restore, then data_compare.

The rich fixture (tests/harness/rich_schema.py) goes through the collection's
own backup and restore engines in both formats; data_compare must call the
copy equal, and the independent ``rich_schema.snapshot`` of both sides must
agree.  Then one thing at a time changes in a copy of the restored database
and data_compare must find exactly what the independent reader finds.
"""

import pytest

from ansible_collections.dbdevops.postgresql.plugins.module_utils import _catalog, datacompare
from ansible_collections.dbdevops.postgresql.plugins.module_utils.backup.engine import BackupEngine, BackupOptions
from ansible_collections.dbdevops.postgresql.plugins.module_utils.backup.restore import (
    RestoreEngine, RestoreOptions)
from ansible_collections.dbdevops.postgresql.plugins.modules import data_compare
from tests.harness import rich_schema
from tests.harness.backup_samples import make_dest, params_for, rm
from tests.harness.modules import run_module

SOURCE = 'proof_rich_src'


@pytest.fixture(scope='module')
def rich(pg):
    """(cluster, source db, {format: restored db}): the rich database, backed up and restored per format."""
    pg.sql('DROP DATABASE IF EXISTS %s WITH (FORCE)' % SOURCE)
    pg.create_database(SOURCE)
    rich_schema.load(pg, SOURCE)
    restored, errors, roots = {}, {}, []
    for fmt in ('custom', 'directory'):
        root = make_dest()
        roots.append(root)
        target = '%s_%s' % (SOURCE, fmt)
        pg.sql('DROP DATABASE IF EXISTS %s WITH (FORCE)' % target)
        try:
            options = BackupOptions(dest=root, databases=[SOURCE], format=fmt, jobs=2 if fmt == 'directory' else 1)
            backup = BackupEngine(params_for(pg, SOURCE), options)
            backup.apply(backup.plan())
            restore = RestoreEngine(params_for(pg), RestoreOptions(src=root, target_db=target))
            restore.apply(restore.plan())
            restored[fmt] = target
        except Exception as exc:  # noqa: BLE001 - a restore bug is a finding, reported by the test
            errors[fmt] = '%s: %s' % (type(exc).__name__, exc)
    yield pg, SOURCE, restored, errors
    for name in [SOURCE] + ['%s_%s' % (SOURCE, fmt) for fmt in ('custom', 'directory')]:
        pg.sql('DROP DATABASE IF EXISTS %s WITH (FORCE)' % name)
    for root in roots:
        rm(root)


def _restored(rich, fmt):
    cluster, source, restored, errors = rich
    if fmt not in restored:
        pytest.fail('backup/restore of the rich database (%s format) failed: %s' % (fmt, errors[fmt]))
    return cluster, source, restored[fmt]


def _compare(cluster, src, dst, **kwargs):
    return datacompare.compare(params_for(cluster, src), params_for(cluster, dst), **kwargs)


def _snapshot_differences(before, after):
    """What the independent reader sees differ, spelled as data_compare names it."""
    out = set()
    for (schema, table) in set(before['tables']) | set(after['tables']):
        if before['tables'].get((schema, table)) != after['tables'].get((schema, table)):
            out.add(_catalog.qualified(schema, table))
    for oid in set(before['large_objects']) | set(after['large_objects']):
        if before['large_objects'].get(oid) != after['large_objects'].get(oid):
            out.add(str(oid))
    for (schema, name) in set(before['sequences']) | set(after['sequences']):
        if before['sequences'].get((schema, name)) != after['sequences'].get((schema, name)):
            out.add(_catalog.qualified(schema, name))
    return out


def _names(report):
    return dict((d.get('table') or d.get('sequence') or d.get('large_object'), d['status'])
                for d in report['differences'])


def _columns(cluster, db, table):
    return [r[0] for r in cluster.sql('SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass '
                                      'AND attnum > 0 AND NOT attisdropped ORDER BY attnum', (table,), dbname=db)]


@pytest.mark.parametrize('fmt', ['custom', 'directory'])
def test_rich_database_round_trips_and_both_readers_agree(rich, fmt):
    cluster, source, target = _restored(rich, fmt)
    report = _compare(cluster, source, target, materialized_views=True)
    assert report['equal'] is True, report['differences']
    before, after = rich_schema.snapshot(cluster, source), rich_schema.snapshot(cluster, target)
    assert sorted(before['tables']) == sorted(after['tables'])
    for table in before['tables']:
        assert before['tables'][table] == after['tables'][table], table
    assert before['large_objects'] == after['large_objects'] and len(before['large_objects']) == 2
    assert before['sequences'] == after['sequences'] and len(before['sequences']) == 3
    # data_compare read what the independent reader read: every table, every sequence, every large object
    assert report['tables_compared'] == len(before['tables']) + 1          # + the materialized view
    assert report['sequences_compared'] == 3
    assert report['large_objects'] == dict(compared=True, src_count=2, dst_count=2, status='equal',
                                           missing_in_source=0, missing_in_destination=0, content_differs=0)
    assert report['sequences']['"public"."never_called"']['dst_is_called'] is False
    # pg_dump recreates the inheritance child with the inherited columns first: same data, other order
    assert _columns(cluster, source, 'dogs') != _columns(cluster, target, 'dogs')
    assert report['tables']['"public"."dogs"']['status'] == 'equal'


def _move_first_2026_event_to_2025(cluster, db):
    """The same rows in the parent ``events``, one of them in another partition (bounds moved)."""
    cluster.sql("""
        ALTER TABLE events DETACH PARTITION events_2025;
        ALTER TABLE events DETACH PARTITION events_2026;
        WITH moved AS (DELETE FROM events_2026 WHERE happened = (SELECT min(happened) FROM events_2026)
                       RETURNING *)
        INSERT INTO events_2025 SELECT * FROM moved;
        ALTER TABLE events ATTACH PARTITION events_2025 FOR VALUES FROM ('2025-01-01') TO ('2026-01-07');
        ALTER TABLE events ATTACH PARTITION events_2026 FOR VALUES FROM ('2026-01-07') TO ('2027-01-01');
    """, dbname=db)


FIRST_A_ROW = "(SELECT ctid FROM kitchen_sink WHERE t = 'a' LIMIT 1)"
CHANGES = {
    'keyless row': ("UPDATE kitchen_sink SET qty = 2 WHERE ctid = %s" % FIRST_A_ROW,
                    {'"public"."kitchen_sink"': 'content differs'}),
    'float last digit': ("UPDATE kitchen_sink SET ratio = 0.30000000000000004 WHERE ratio = 0.3",
                         {'"public"."kitchen_sink"': 'content differs'}),
    'empty string to NULL': ("UPDATE invoices SET note = NULL WHERE id = 3",
                             {'"public"."invoices"': 'content differs'}),
    'NULL to the string NULL': ("UPDATE invoices SET note = 'NULL' WHERE id = 1",
                                {'"public"."invoices"': 'content differs'}),
    'one bytea bit': (r"UPDATE kitchen_sink SET raw = set_bit(raw, 0, 1) WHERE ctid = %s" % FIRST_A_ROW,
                      {'"public"."kitchen_sink"': 'content differs'}),
    'a column other than t': ("UPDATE kitchen_sink SET feeling = 'ok' WHERE feeling = 'sad'",
                              {'"public"."kitchen_sink"': 'content differs'}),
    'a regclass value': ("UPDATE kitchen_sink SET rel = 'scratchpad' WHERE rel = 'invoices'::regclass",
                         {'"public"."kitchen_sink"': 'content differs'}),
    'inheritance child only': ("UPDATE ONLY dogs SET good_boy = false WHERE id = 2",
                               {'"public"."dogs"': 'content differs'}),
    'large object byte': ("SELECT lo_put(min(oid), 0, '\\x46'::bytea) FROM pg_largeobject_metadata",
                          {'first': 'content differs'}),
    'large object gone': ("SELECT lo_unlink(max(oid)) FROM pg_largeobject_metadata",
                          {'last': 'missing in destination'}),
    'sequence value': ("SELECT setval('free_counter', 114)", {'"public"."free_counter"': 'value differs'}),
    'sequence is_called': ("SELECT setval('free_counter', 107, false)",
                           {'"public"."free_counter"': 'value differs'}),
    'row moved between partitions': (_move_first_2026_event_to_2025,
                                     {'"public"."events_2025"': 'row count differs',
                                      '"public"."events_2026"': 'row count differs'}),
    'jsonb deep inside a partition': ("UPDATE events SET payload = jsonb_set(payload, '{nested,1}', '\"y\"') "
                                      "WHERE id = 150", {'"public"."events_other"': 'content differs'}),
    '63-byte name': ('UPDATE "%s" SET "%s" = 65 WHERE "%s" = 64' % ((rich_schema.LONG_NAME,) * 3),
                     {_catalog.qualified('public', rich_schema.LONG_NAME): 'content differs'}),
    'quoted names': ('UPDATE "Odd Schema"."Quoted ""Table""" SET "ünïcødé" = \'ss\' WHERE "Mixed Case" = 2',
                     {'"Odd Schema"."Quoted ""Table"""': 'content differs'}),
}


@pytest.fixture
def changed_copy(rich):
    """A function making a fresh copy of the restored (custom format) database with one change."""
    cluster, source, target = _restored(rich, 'custom')
    copies = []

    def make(change):
        copy = '%s_change_%d' % (SOURCE, len(copies))
        copies.append(copy)
        cluster.sql('DROP DATABASE IF EXISTS %s WITH (FORCE)' % copy)
        cluster.sql('CREATE DATABASE %s TEMPLATE %s' % (copy, target))
        if callable(change):
            change(cluster, copy)
        else:
            cluster.sql(change, dbname=copy)
        return copy
    yield cluster, source, make
    for copy in copies:
        cluster.sql('DROP DATABASE IF EXISTS %s WITH (FORCE)' % copy)


def _large_object_ids(cluster, db):
    return [str(r[0]) for r in cluster.sql('SELECT oid FROM pg_largeobject_metadata ORDER BY oid', dbname=db)]


@pytest.mark.parametrize('what', sorted(CHANGES))
def test_each_change_is_found_by_both_readers(changed_copy, what):
    cluster, source, make = changed_copy
    change, expected = CHANGES[what]
    ids = _large_object_ids(cluster, source)
    expected = dict((dict(first=ids[0], last=ids[-1]).get(k, k), v) for k, v in expected.items())
    copy = make(change)
    report = _compare(cluster, source, copy)
    assert report['equal'] is False
    assert _names(report) == expected
    # the independent reader sees exactly the same things differ
    assert _snapshot_differences(rich_schema.snapshot(cluster, source), rich_schema.snapshot(cluster, copy)) \
        == set(expected)


def test_the_module_names_what_differs(changed_copy):
    cluster, source, make = changed_copy
    ids = _large_object_ids(cluster, source)
    copy = make("SELECT setval('free_counter', 114); "
                "UPDATE kitchen_sink SET ratio = 0.30000000000000004 WHERE ratio = 0.3; "
                "SELECT lo_put(min(oid), 0, '\\x46'::bytea) FROM pg_largeobject_metadata")
    args = dict(cluster.conn_params(), src=dict(db=source), dst=dict(db=copy))
    report = run_module(data_compare, args)
    assert not report['failed'] and report['equal'] is False and report['changed'] is False
    failed = run_module(data_compare, dict(args, fail_on_difference=True), check=True)
    assert failed['failed'] is True
    assert failed['msg'] == (
        'the databases differ in 1 table(s), 1 sequence(s), 1 large object(s): '
        '"public"."kitchen_sink" (content differs), sequence "public"."free_counter" (value differs), '
        'large object %s (content differs)' % ids[0])
    assert failed['sequences']['"public"."free_counter"'] == dict(
        src_last_value=107, src_is_called=True, dst_last_value=114, dst_is_called=True, status='value differs')
    assert failed['large_objects']['content_differs'] == 1 and failed['differences'] == report['differences']
    # each kind can be left out
    narrowed = run_module(data_compare, dict(args, sequences=False, large_objects=False,
                                             exclude_tables=['kitchen_sink'], fail_on_difference=True))
    assert not narrowed['failed'], narrowed['msg']
    assert narrowed['equal'] is True and narrowed['sequences_compared'] == 0
    assert narrowed['large_objects']['compared'] is False


def test_identical_data_in_another_column_order_is_equal(changed_copy):
    cluster, source, make = changed_copy
    copy = make("""
        CREATE TABLE kitchen_sink_2 AS SELECT u, p, money_col, addr, fn, rel, dur, stamp, small, ratio, words,
                                              raw, docb, doc, tags, span, qty, feeling, t FROM kitchen_sink;
        DROP TABLE kitchen_sink;
        ALTER TABLE kitchen_sink_2 RENAME TO kitchen_sink;
    """)
    assert _columns(cluster, copy, 'kitchen_sink')[0] == 'u'
    report = _compare(cluster, source, copy)
    assert report['equal'] is True, report['differences']
    assert report['tables']['"public"."kitchen_sink"']['src_rows'] == 4
