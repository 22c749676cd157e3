"""The shared connection layer against a real throwaway cluster."""

import time

import pytest

from ansible_collections.dbdevops.postgresql.plugins.module_utils import connection
from ansible_collections.dbdevops.postgresql.plugins.module_utils.connection import (
    ConnParams, PgConnectionError, connect)
from tests.harness.pgcluster import free_port


def test_connect_with_password_over_tcp(pg):
    params = ConnParams.from_params(pg.conn_params(password=True))
    conn = connect(params)
    with conn.cursor() as cur:
        cur.execute('SELECT current_user, inet_server_addr() IS NOT NULL')
        assert cur.fetchone() == ('postgres', True)
    conn.close()


def test_bad_password_is_one_line_naming_host_port_db(pg):
    params = ConnParams.from_params(pg.conn_params(password='wrong-password'))
    with pytest.raises(PgConnectionError) as err:
        connect(params)
    msg = str(err.value)
    assert '\n' not in msg
    assert '127.0.0.1 port %d' % pg.port in msg
    assert 'database "postgres"' in msg and 'user "postgres"' in msg
    assert 'password authentication failed' in msg
    assert 'wrong-password' not in msg


def test_missing_password_is_explained(pg):
    params = ConnParams.from_params(pg.conn_params(tcp=True))
    with pytest.raises(PgConnectionError, match='none was given; set login_password'):
        connect(params)


def test_unknown_database_is_named(pg):
    params = ConnParams.from_params(pg.conn_params(dbname='no_such_db'))
    with pytest.raises(PgConnectionError) as err:
        connect(params)
    assert 'database "no_such_db"' in str(err.value)
    assert 'the database does not exist' in str(err.value)


def test_refused_connection_names_port():
    port = free_port()
    params = ConnParams(login_host='127.0.0.1', login_port=port, db='app')
    with pytest.raises(PgConnectionError) as err:
        connect(params)
    msg = str(err.value)
    assert '127.0.0.1 port %d, database "app"' % port in msg
    assert 'refused the connection' in msg and '\n' not in msg


def test_missing_psycopg2_message(monkeypatch):
    monkeypatch.setattr(connection, 'HAS_PSYCOPG2', False)
    monkeypatch.setattr(connection, 'PSYCOPG2_IMPORT_ERROR', ImportError('No module named psycopg2'))
    with pytest.raises(connection.DbDevopsError, match='python3-psycopg2'):
        connect(ConnParams())


def test_params_from_dict_and_labels():
    params = ConnParams.from_params({'login_host': 'db1', 'login_port': 5433, 'db': 'app',
                                     'login_user': None, 'unrelated': 1})
    assert params.libpq_kwargs()['host'] == 'db1'
    assert params.where() == 'db1 port 5433, database "app", user "postgres"'


def test_our_sessions_turn_off_server_timeouts(pg_db):
    """A database that ends idle or slow sessions must not end ours half-way."""
    cluster, name = pg_db
    cluster.sql("ALTER DATABASE \"%s\" SET statement_timeout = '50ms'" % name)
    cluster.sql("ALTER DATABASE \"%s\" SET idle_in_transaction_session_timeout = '50ms'" % name)
    cluster.sql("ALTER DATABASE \"%s\" SET idle_session_timeout = '50ms'" % name)
    conn = connect(ConnParams.from_params(cluster.conn_params(name)))
    try:
        with conn.cursor() as cur:
            cur.execute('SELECT pg_sleep(0.2)')          # longer than statement_timeout
            time.sleep(0.2)                               # idle in transaction, longer than the limit
            cur.execute("SELECT current_setting('statement_timeout'), "
                        "current_setting('idle_in_transaction_session_timeout'), "
                        "current_setting('idle_session_timeout')")
            assert cur.fetchone() == ('0', '0', '0')
        conn.commit()
        time.sleep(0.2)                                   # idle outside a transaction
        with conn.cursor() as cur:
            cur.execute('SELECT 1')
            assert cur.fetchone() == (1,)
    finally:
        conn.close()
