"""The one catalog layer (_catalog): table names mean the same thing everywhere."""

import pytest

from ansible_collections.dbdevops.postgresql.plugins.module_utils import _catalog
from ansible_collections.dbdevops.postgresql.plugins.module_utils.connection import ConnParams, connect
from ansible_collections.dbdevops.postgresql.plugins.module_utils.errors import DbDevopsError


@pytest.mark.parametrize('text, parsed', [
    ('users', (None, 'users')),
    ('public.users', ('public', 'users')),
    ('"public"."users"', ('public', 'users')),
    ('Sales.Orders', ('Sales', 'Orders')),                  # as written, no case folding
    ('"my.schema".t', ('my.schema', 't')),
    ('"a ""quoted"" name"', (None, 'a "quoted" name')),
    ('  s.t  ', ('s', 't')),
    ('s."t.x"', ('s', 't.x')),
    ('résumé.données', ('résumé', 'données')),
])
def test_parse_table(text, parsed):
    assert _catalog.parse_table(text) == parsed


@pytest.mark.parametrize('text', ['', 'a.b.c', '"open', '.t', 's.', 'a..b'])
def test_parse_table_rejects_what_it_cannot_read(text):
    with pytest.raises(DbDevopsError, match='table'):
        _catalog.parse_table(text)


def test_qualified_round_trips_through_parse_table():
    for schema, name in [('public', 'users'), ('my.schema', 'a "b"'), ('S', 'T')]:
        assert _catalog.parse_table(_catalog.qualified(schema, name)) == (schema, name)


def test_select_tables_bare_name_matches_any_schema():
    tables = [('public', 'users'), ('audit', 'users'), ('public', 'orders'), ('my.s', 't')]
    assert _catalog.select_tables(tables, include=['users']) == [('public', 'users'), ('audit', 'users')]
    assert _catalog.select_tables(tables, include=['audit.users']) == [('audit', 'users')]
    assert _catalog.select_tables(tables, exclude=['users', '"my.s".t']) == [('public', 'orders')]
    assert _catalog.select_tables(tables, schemas=['public'], exclude=['orders']) == [('public', 'users')]


def test_user_tables_and_exact_counts_of_odd_names(pg_db):
    cluster, name = pg_db
    cluster.sql('CREATE SCHEMA "my.s"; CREATE TABLE "my.s"."a ""b""" (i int);'
                'INSERT INTO "my.s"."a ""b""" SELECT generate_series(1, 5);'
                'CREATE TABLE parent (i int); CREATE TABLE child () INHERITS (parent);'
                'INSERT INTO child VALUES (1), (2)', dbname=name)
    conn = connect(ConnParams.from_params(cluster.conn_params(name)))
    try:
        with conn.cursor() as cur:
            tables = _catalog.list_user_tables(cur)
            assert tables == [('my.s', 'a "b"'), ('public', 'child'), ('public', 'parent')]
            counts = _catalog.count_rows(cur, tables)
    finally:
        conn.close()
    assert counts == {'"my.s"."a ""b"""': 5, '"public"."child"': 2, '"public"."parent"': 0}


@pytest.mark.parametrize('kind, base', [
    ('restore', 'app'), ('swap', 'x' * 100), ('drill', '\u3131' * 40), ('verify', ''),
    ('restore', 'a"b c'),
])
def test_scratch_names_fit_63_bytes_and_are_unique(kind, base):
    names = {_catalog.scratch_name(kind, base) for _index in range(50)}
    assert len(names) == 50
    for name in names:
        assert len(name.encode('utf-8')) <= 63
        assert name.startswith('dbdevops_%s_' % kind)
        name.encode('utf-8').decode('utf-8')                # never half a character


def test_check_identifier_refuses_names_postgresql_would_cut():
    assert _catalog.check_identifier('\u3131' * 21, 'database') == '\u3131' * 21      # 63 bytes
    with pytest.raises(DbDevopsError, match='64 bytes; PostgreSQL keeps at most 63'):
        _catalog.check_identifier('\u3131' * 21 + 'x', 'database')


def test_stale_scratch_is_dropped_live_scratch_is_kept(pg):
    params = ConnParams.from_params(pg.conn_params())
    live = _catalog.scratch_name('drill', 'live')
    dead = _catalog.scratch_name('drill', 'dead')
    plain = 'dbdevops_not_ours_%d' % id(pg)
    admin = connect(params, autocommit=True)
    try:
        claims = []
        for name in (live, dead):
            claim = _catalog.ScratchClaim(lambda: connect(params), name)
            with admin.cursor() as cur:
                cur.execute('CREATE DATABASE "%s"' % name)
                claim.mark(cur)
            claims.append(claim)
        with admin.cursor() as cur:
            cur.execute('CREATE DATABASE "%s"' % plain)       # our prefix, no comment: not ours
        claims[1].release()                                    # the run that made it is gone
        assert _catalog.drop_stale_scratch(admin) == [dead]
        assert _catalog.drop_stale_scratch(admin) == []
        claims[0].release()
        assert _catalog.drop_stale_scratch(admin) == [live]
        with admin.cursor() as cur:
            cur.execute('SELECT datname FROM pg_database WHERE datname = %s', (plain,))
            assert cur.fetchone() == (plain,)
    finally:
        with admin.cursor() as cur:
            for name in (live, dead, plain):
                cur.execute('DROP DATABASE IF EXISTS "%s"' % name)
        admin.close()


def test_sequences_and_large_objects(pg_db):
    cluster, name = pg_db
    cluster.sql("CREATE TABLE t (id serial); INSERT INTO t DEFAULT VALUES; INSERT INTO t DEFAULT VALUES;"
                "CREATE SEQUENCE \"Free Seq\" START 10; CREATE SEQUENCE untouched;"
                "SELECT nextval('\"Free Seq\"'); SELECT lo_from_bytea(4242, 'hello')", dbname=name)
    conn = connect(ConnParams.from_params(cluster.conn_params(name)))
    try:
        with conn.cursor() as cur:
            assert _catalog.sequence_values(cur) == {'"public"."Free Seq"': [10, True],
                                                     '"public"."t_id_seq"': [2, True],
                                                     '"public"."untouched"': [1, False]}
            assert _catalog.large_object_digests(cur) == {'4242': '5d41402abc4b2a76b9719d911017c592'}
    finally:
        conn.close()
