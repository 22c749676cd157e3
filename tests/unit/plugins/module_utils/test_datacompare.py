"""data_compare engine: two servers, order independence, every kind of difference."""

import pytest

from ansible_collections.dbdevops.postgresql.plugins.module_utils import datacompare
from ansible_collections.dbdevops.postgresql.plugins.module_utils.connection import ConnParams
from tests.harness.backup_samples import SAMPLE_SQL


def _load(cluster, db, extra=''):
    cluster.sql('DROP DATABASE IF EXISTS %s' % db)
    cluster.create_database(db)
    conn = cluster.connect(db)
    with conn.cursor() as cur:
        cur.execute(SAMPLE_SQL + extra)
    conn.close()


def test_two_servers_equal_then_each_kind_of_difference(pg, pg_factory):
    other = pg_factory(settings={'TimeZone': 'Asia/Tokyo', 'DateStyle': 'German, DMY'})
    _load(pg, 'cmp_src')
    # same data inserted in another physical order, on a server with other display settings
    _load(other, 'cmp_dst', 'CLUSTER public.customers USING customers_pkey; '
                            'UPDATE public.customers SET name = name;')
    src = ConnParams.from_params(pg.conn_params(dbname='cmp_src', password=True))
    dst = ConnParams.from_params(other.conn_params(dbname='cmp_dst'))
    report = datacompare.compare(src, dst)
    assert report['equal'] is True, report['differences']
    assert report['tables_compared'] == 4
    assert report['tables']['"sales"."orders"']['src_rows'] == 2000

    other.sql("UPDATE sales.orders SET amount = amount + 0.000001 WHERE id = 7", dbname='cmp_dst')
    other.sql("DELETE FROM public.\"Odd \"\"Name\"\"\" WHERE k IS NULL", dbname='cmp_dst')
    other.sql("CREATE TABLE public.only_here (x int)", dbname='cmp_dst')
    other.sql("DROP TABLE public.empty_one", dbname='cmp_dst')
    report = datacompare.compare(src, dst)
    assert report['equal'] is False
    status = dict((d['table'], d['status']) for d in report['differences'])
    assert status == {'"sales"."orders"': 'content differs',
                      '"public"."Odd ""Name"""': 'row count differs',
                      '"public"."only_here"': 'missing in source',
                      '"public"."empty_one"': 'missing in destination'}
    only = datacompare.compare(src, dst, schemas=['sales'], checksums=False)
    assert only['equal'] is True and list(only['tables']) == ['"sales"."orders"']
    # names as _catalog.parse_table reads them: a bare name in any schema, quotes around odd ones
    excluded = datacompare.compare(src, dst, exclude_tables=['sales.orders', 'only_here', 'empty_one',
                                                             '"Odd ""Name"""'])
    assert excluded['equal'] is True and excluded['tables_compared'] == 1
    pg.sql('DROP DATABASE cmp_src')


def test_unreachable_side_is_named(pg):
    src = ConnParams.from_params(pg.conn_params())
    dst = ConnParams.from_params(pg.conn_params(dbname='does_not_exist'))
    with pytest.raises(datacompare.CompareError) as err:
        datacompare.compare(src, dst)
    assert 'reading the destination' in str(err.value)
    assert 'database "does_not_exist"' in str(err.value)
