"""The shared connection layer against a real throwaway cluster."""

import os
import stat
import subprocess

import pytest

from ansible_collections.dbdevops.postgresql.plugins.module_utils import connection
from ansible_collections.dbdevops.postgresql.plugins.module_utils.connection import (
    ConnParams, LibpqEnv, PgConnectionError, connect)
from tests.harness.pgcluster import SUPERUSER_PASSWORD, free_port


def test_argument_spec_names_match_community_postgresql():
    spec = connection.connection_argument_spec()
    assert set(spec) == {'login_user', 'login_password', 'login_host', 'login_unix_socket',
                         'login_port', 'db', 'ssl_mode', 'ca_cert', 'ssl_cert', 'ssl_key',
                         'connect_params'}
    assert spec['login_password']['no_log'] is True
    assert spec['db']['aliases'] == ['login_db']
    assert spec['login_port']['aliases'] == ['port']
    assert spec['ca_cert']['aliases'] == ['ssl_rootcert']
    assert spec['ssl_mode']['choices'] == connection.SSL_MODES


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


def test_libpq_env_password_in_0600_passfile_not_env(pg):
    params = ConnParams.from_params(pg.conn_params(password=True))
    with LibpqEnv(params) as env:
        passfile = env.environ['PGPASSFILE']
        assert stat.S_IMODE(os.stat(passfile).st_mode) == 0o600
        assert 'PGPASSWORD' not in env.environ
        assert all(SUPERUSER_PASSWORD not in v for k, v in env.environ.items() if k != 'PGPASSFILE')
        out = subprocess.run([pg.bin('psql'), '-XAtc', 'SELECT 42'], env=env.environ, check=False,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             universal_newlines=True)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == '42'
    assert not os.path.exists(passfile)


def test_libpq_env_escapes_colons_and_backslashes(pg):
    conn = pg.connect()
    with conn.cursor() as cur:
        cur.execute("CREATE ROLE odd LOGIN PASSWORD 'a:b\\c'")
    conn.close()
    params = ConnParams.from_params(pg.conn_params(user='odd', password='a:b\\c'))
    with LibpqEnv(params) as env:
        out = subprocess.run([pg.bin('psql'), '-XAtc', 'SELECT current_user'], env=env.environ, check=False,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             universal_newlines=True)
    assert out.stdout.strip() == 'odd', out.stderr


def test_params_from_prefixed_dict_and_labels():
    params = ConnParams.from_params({'src_login_host': 'db1', 'src_login_port': 5433,
                                     'src_db': 'app'}, prefix='src_')
    assert params.libpq_kwargs()['host'] == 'db1'
    assert params.where() == 'db1 port 5433, database "app", user "postgres"'
