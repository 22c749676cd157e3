"""data_compare engine: two servers, order independence, every kind of difference."""

import pytest

from ansible_collections.dbdevops.postgresql.plugins.module_utils import datacompare
from ansible_collections.dbdevops.postgresql.plugins.module_utils.connection import ConnParams
from ansible_collections.dbdevops.postgresql.plugins.module_utils.errors import DbDevopsError
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


@pytest.fixture
def pair(pg_db):
    """(cluster, src db, dst db, compare(**kw) over them): two empty databases of one cluster."""
    cluster, src = pg_db
    dst = cluster.create_database(src + '_dst')

    def run(**kwargs):
        return datacompare.compare(ConnParams.from_params(cluster.conn_params(dbname=src)),
                                   ConnParams.from_params(cluster.conn_params(dbname=dst)), **kwargs)
    yield cluster, src, dst, run
    cluster.sql('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % dst)


def _both(cluster, src, dst, statement):
    for name in (src, dst):
        cluster.sql(statement, dbname=name)


def _statuses(report):
    return dict((d.get('table') or d.get('sequence') or d.get('large_object'), d['status'])
                for d in report['differences'])


def test_a_column_named_t_does_not_hide_the_other_columns(pair):
    cluster, src, dst, run = pair
    _both(cluster, src, dst, "CREATE TABLE public.k (t text, v int); INSERT INTO public.k VALUES ('same', 1)")
    cluster.sql('UPDATE public.k SET v = 2', dbname=dst)
    report = run()
    assert report['equal'] is False
    assert _statuses(report) == {'"public"."k"': 'content differs'}
    cluster.sql('UPDATE public.k SET v = 1', dbname=dst)
    cluster.sql("UPDATE public.k SET t = 'other'", dbname=dst)
    assert _statuses(run()) == {'"public"."k"': 'content differs'}


def test_rows_compare_by_column_name_not_physical_order(pair):
    cluster, src, dst, run = pair
    cluster.sql("CREATE TABLE public.p (a int, b text, c date); "
                "INSERT INTO public.p VALUES (1, 'x', '2020-01-01'), (2, NULL, NULL)", dbname=src)
    cluster.sql("CREATE TABLE public.p (c date, a int, b text); "
                "INSERT INTO public.p (a, b, c) VALUES (2, NULL, NULL), (1, 'x', '2020-01-01')", dbname=dst)
    report = run()
    assert report['equal'] is True, report['differences']
    assert report['tables']['"public"."p"']['src_checksum'] == report['tables']['"public"."p"']['dst_checksum']
    # NULL, '' and the string 'NULL' are three different values
    for value in ("''", "'NULL'"):
        cluster.sql('UPDATE public.p SET b = %s WHERE a = 2' % value, dbname=dst)
        assert _statuses(run()) == {'"public"."p"': 'content differs'}


def test_session_search_path_does_not_change_how_values_print(pair):
    cluster, src, dst, run = pair
    _both(cluster, src, dst, "CREATE TABLE public.r (rel regclass, fn regproc, ty regtype); "
                             "CREATE TYPE public.mood AS ENUM ('ok'); "
                             "INSERT INTO public.r VALUES ('public.r', 'pg_catalog.now', 'public.mood')")
    cluster.sql('ALTER DATABASE "%s" SET search_path = pg_catalog' % dst)
    cluster.sql('ALTER DATABASE "%s" SET DateStyle = \'SQL, DMY\'' % dst)
    report = run()
    assert report['equal'] is True, report['differences']


def test_a_different_column_set_is_a_difference_of_its_own(pair):
    cluster, src, dst, run = pair
    cluster.sql('CREATE TABLE public.c (id int, v int); INSERT INTO public.c VALUES (1, 1)', dbname=src)
    cluster.sql('CREATE TABLE public.c (id int, v bigint); INSERT INTO public.c VALUES (1, 1)', dbname=dst)
    report = run()
    assert report['equal'] is False
    [diff] = report['differences']
    assert diff['status'] == 'columns differ'
    assert diff['columns'] == dict(only_in_source=[], only_in_destination=[],
                                   types_differ={'v': ['integer', 'bigint']})
    cluster.sql('ALTER TABLE public.c DROP COLUMN v; ALTER TABLE public.c ADD COLUMN w int', dbname=dst)
    [diff] = run()['differences']
    assert diff['status'] == 'columns differ'
    assert diff['columns'] == dict(only_in_source=['v'], only_in_destination=['w'], types_differ={})


def test_row_level_security_errors_instead_of_comparing_a_filtered_view(pair):
    cluster, src, dst, run = pair
    cluster.sql("DROP ROLE IF EXISTS cmp_reader; CREATE ROLE cmp_reader LOGIN PASSWORD 'r3ader'")
    _both(cluster, src, dst, "CREATE TABLE public.s (who text, v int); ALTER TABLE public.s ENABLE ROW LEVEL SECURITY; "
                             "CREATE POLICY mine ON public.s USING (who = current_user); "
                             "GRANT SELECT ON public.s TO cmp_reader; "
                             "INSERT INTO public.s VALUES ('cmp_reader', 1), ('other', 2)")
    cluster.sql("UPDATE public.s SET v = 3 WHERE who = 'other'", dbname=dst)
    try:
        sides = [ConnParams.from_params(cluster.conn_params(dbname=db, user='cmp_reader', password='r3ader'))
                 for db in (src, dst)]
        with pytest.raises(datacompare.CompareError) as err:
            datacompare.compare(*sides)
        msg = str(err.value)
        assert 'reading the source' in msg and '"public"."s"' in msg and 'row-level security' in msg
        assert _statuses(run()) == {'"public"."s"': 'content differs'}   # the superuser sees every row
    finally:
        _both(cluster, src, dst, 'DROP TABLE public.s')
        cluster.sql('DROP ROLE cmp_reader')


def test_sequences_and_large_objects_are_compared(pair):
    cluster, src, dst, run = pair
    _both(cluster, src, dst, "CREATE TABLE public.x (id serial); INSERT INTO public.x DEFAULT VALUES; "
                             "CREATE SEQUENCE public.free; SELECT lo_from_bytea(4242, 'large'::bytea)")
    report = run()
    assert report['equal'] is True, report['differences']
    assert report['sequences']['"public"."x_id_seq"'] == dict(
        src_last_value=1, src_is_called=True, dst_last_value=1, dst_is_called=True, status='equal')
    assert report['sequences_compared'] == 2
    assert report['large_objects'] == dict(compared=True, src_count=1, dst_count=1, status='equal',
                                           missing_in_source=0, missing_in_destination=0, content_differs=0)

    cluster.sql("SELECT setval('public.x_id_seq', 1, false); SELECT nextval('public.free'); "
                "SELECT lo_put(4242, 0, 'L'::bytea); SELECT lo_from_bytea(4343, 'extra'::bytea)", dbname=dst)
    report = run()
    assert report['equal'] is False
    assert _statuses(report) == {'"public"."x_id_seq"': 'value differs', '"public"."free"': 'value differs',
                                 '4242': 'content differs', '4343': 'missing in source'}
    assert report['large_objects']['status'] == 'differs'
    assert datacompare.difference_message(report) == (
        'the databases differ in 2 sequence(s), 2 large object(s): sequence "public"."free" (value differs), '
        'sequence "public"."x_id_seq" (value differs), large object 4242 (content differs), '
        'large object 4343 (missing in source)')
    off = run(sequences=False, large_objects=False)
    assert off['equal'] is True and off['sequences'] == {} and off['large_objects']['compared'] is False
    # without checksums the ids still count, not the content
    assert _statuses(run(checksums=False, sequences=False)) == {'4343': 'missing in source'}


def test_materialized_views_on_request(pair):
    cluster, src, dst, run = pair
    _both(cluster, src, dst, 'CREATE TABLE public.base (v int); INSERT INTO public.base VALUES (1); '
                             'CREATE MATERIALIZED VIEW public.mv AS SELECT v FROM public.base')
    cluster.sql('INSERT INTO public.base VALUES (2); REFRESH MATERIALIZED VIEW public.mv; '
                'DELETE FROM public.base WHERE v = 2', dbname=dst)
    assert run()['equal'] is True and '"public"."mv"' not in run()['tables']
    report = run(materialized_views=True)
    assert _statuses(report) == {'"public"."mv"': 'row count differs'}
    cluster.sql('REFRESH MATERIALIZED VIEW public.mv WITH NO DATA', dbname=dst)
    assert _statuses(run(materialized_views=True)) == {'"public"."mv"': 'not populated in destination'}


def test_comparing_nothing_is_not_a_verdict(pair):
    cluster, src, dst, run = pair
    with pytest.raises(DbDevopsError) as err:
        run()
    assert 'nothing to compare' in str(err.value)
    _both(cluster, src, dst, 'CREATE TABLE public.here (x int)')
    assert run()['equal'] is True
    with pytest.raises(DbDevopsError) as err:
        run(schemas=['nosuch'], tables=['absent'])
    msg = str(err.value)
    assert "schemas ['nosuch']" in msg and "tables ['absent']" in msg and 'on either side' in msg
