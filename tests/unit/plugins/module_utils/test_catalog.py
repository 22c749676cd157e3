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
