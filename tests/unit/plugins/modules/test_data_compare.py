"""The data_compare module: src/dst blocks over the top level, check mode, fail_on_difference."""

import pytest

from ansible_collections.dbdevops.postgresql.plugins.modules import data_compare
from tests.harness.modules import run_module
from tests.harness.pgcluster import SUPERUSER_PASSWORD, free_port

TABLES = ('CREATE SCHEMA sales; CREATE TABLE sales.orders (id int PRIMARY KEY, amount numeric); '
          'INSERT INTO sales.orders SELECT g, g * 1.5 FROM generate_series(1, 50) g; '
          'CREATE TABLE public."My.Table" (k text); INSERT INTO public."My.Table" VALUES (\'a\'), (\'b\')')


@pytest.fixture
def two_dbs(pg_db):
    """(cluster, db, copy): two databases with the same tables and rows."""
    pg, db = pg_db
    copy = pg.create_database(db + '_copy')
    for name in (db, copy):
        pg.sql(TABLES, dbname=name)
    yield pg, db, copy
    pg.sql('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % copy)


def test_check_mode_and_real_run_give_the_same_answer(two_dbs):
    pg, db, copy = two_dbs
    args = dict(pg.conn_params(), src=dict(db=db), dst=dict(db=copy))
    checked = run_module(data_compare, args, check=True, diff=True)
    real = run_module(data_compare, args, diff=True)
    assert not real['failed'] and real['changed'] is False and checked['changed'] is False
    assert sorted(checked) == sorted(real)
    assert real['equal'] is True and real['tables_compared'] == 2 and real['checksums'] is True
    assert real['tables']['"sales"."orders"']['src_rows'] == 50 and real['differences'] == []
    assert 'diff' not in real and real['warnings'] == []
    counts = run_module(data_compare, dict(args, checksums=False, tables=['"My.Table"']))
    assert list(counts['tables']) == ['"public"."My.Table"'] and counts['checksums'] is False
    assert counts['tables']['"public"."My.Table"']['src_checksum'] is None
    bad = run_module(data_compare, dict(args, exclude_tables=['a.b.c']))
    assert bad['failed'] and bad['msg'].startswith("cannot read the table name 'a.b.c'")


def test_fail_on_difference_fails_with_the_report_in_check_mode_too(two_dbs):
    pg, db, copy = two_dbs
    pg.sql('DELETE FROM sales.orders WHERE id = 1', dbname=copy)
    args = dict(pg.conn_params(), src=dict(db=db), dst=dict(db=copy))
    report = run_module(data_compare, args)
    assert not report['failed'] and report['equal'] is False and report['changed'] is False
    for check in (False, True):
        failed = run_module(data_compare, dict(args, fail_on_difference=True), check=check)
        assert failed['failed'] is True
        assert failed['msg'] == 'the databases differ in 1 table(s): "sales"."orders" (row count differs)'
        assert failed['differences'] == [dict(table='"sales"."orders"', status='row count differs',
                                              src_rows=50, dst_rows=49)]
        assert failed['tables'] == report['tables'] and failed['equal'] is False
    excluded = run_module(data_compare, dict(args, fail_on_difference=True, exclude_tables=['orders']))
    assert not excluded['failed'] and excluded['equal'] is True and excluded['tables_compared'] == 1


def test_blocks_take_the_top_level_options_and_win_over_them(two_dbs):
    pg, db, copy = two_dbs
    top = dict(login_host='127.0.0.1', login_port=free_port(), login_password=SUPERUSER_PASSWORD)
    both = run_module(data_compare, dict(top, src=dict(db=db, port=pg.port),
                                         dst=dict(login_db=copy, login_port=pg.port)))
    assert not both['failed'], both.get('msg')
    assert both['equal'] is True
    dst_wrong = run_module(data_compare, dict(top, src=dict(db=db, port=pg.port), dst=dict(db=copy)))
    assert dst_wrong['failed'] and 'reading the destination' in dst_wrong['msg']
    src_wrong = run_module(data_compare, dict(top, login_port=pg.port, src=dict(db=db, port=free_port()),
                                              dst=dict(db=copy)))
    assert src_wrong['failed'] and 'reading the source' in src_wrong['msg']
    assert SUPERUSER_PASSWORD not in repr(both) + repr(dst_wrong) + repr(src_wrong)
    missing = run_module(data_compare, dict(top, src=dict(db=db)))
    assert missing['failed'] and 'dst' in missing['msg']


def test_libpq_environment_fills_unset_top_level_options(two_dbs, monkeypatch):
    pg, db, copy = two_dbs
    monkeypatch.setenv('PGPORT', str(pg.port))
    monkeypatch.setenv('PGHOST', pg.socket_dir)
    monkeypatch.setenv('PGDATABASE', db)
    result = run_module(data_compare, dict(src=dict(), dst=dict(db=copy)))
    assert not result['failed'], result.get('msg')
    assert result['equal'] is True and result['tables_compared'] == 2
    # an option given wins over the environment
    given = run_module(data_compare, dict(login_port=free_port(), src=dict(), dst=dict(db=copy)))
    assert given['failed'] and 'reading the source' in given['msg']


def test_sequences_columns_and_nothing_to_compare_through_the_module(two_dbs):
    pg, db, copy = two_dbs
    for name in (db, copy):
        pg.sql('CREATE SEQUENCE sales.counter', dbname=name)
    pg.sql("SELECT nextval('sales.counter'); ALTER TABLE public.\"My.Table\" ALTER COLUMN k TYPE varchar(5)",
           dbname=copy)
    args = dict(pg.conn_params(), src=dict(db=db), dst=dict(db=copy))
    failed = run_module(data_compare, dict(args, fail_on_difference=True))
    assert failed['failed'] is True
    assert failed['msg'] == ('the databases differ in 1 table(s), 1 sequence(s): "public"."My.Table" (columns differ), '
                             'sequence "sales"."counter" (value differs)')
    assert failed['differences'][0]['columns'] == dict(only_in_source=[], only_in_destination=[],
                                                       types_differ={'k': ['text', 'character varying(5)']})
    assert failed['sequences']['"sales"."counter"']['src_is_called'] is False
    assert failed['sequences_compared'] == 1 and failed['large_objects']['src_count'] == 0
    only_orders = run_module(data_compare, dict(args, tables=['sales.orders'], fail_on_difference=True))
    assert not only_orders['failed'] and only_orders['sequences_compared'] == 0
    nothing = run_module(data_compare, dict(args, schemas=['nosuch']))
    assert nothing['failed'] is True and 'equal' not in nothing
    assert nothing['msg'].startswith("nothing to compare: no table, sequence or large object matches schemas "
                                     "['nosuch'] on either side")
