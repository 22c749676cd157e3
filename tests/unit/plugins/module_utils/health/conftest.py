"""Fixtures of the health tests: a cluster of their own, sessions that hold things, a polling helper."""

import contextlib
import time

import psycopg2
import pytest

from ansible_collections.dbdevops.postgresql.plugins.module_utils.connection import ConnParams
from ansible_collections.dbdevops.postgresql.plugins.module_utils.health.engine import HealthEngine, HealthOptions


def wait_until(probe, timeout=15, interval=0.1, what='condition'):
    """Poll ``probe()`` until it returns something true (statistics reach the views asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError('timed out waiting for %s' % what)
        time.sleep(interval)


def run_health(cluster, dbname='postgres', **options):
    """The engine's report (fail_on never unless given), from a connection over the cluster's socket."""
    options.setdefault('fail_on', 'never')
    options.setdefault('memory_mb', 1024)
    options.setdefault('cpus', 2)
    engine = HealthEngine(ConnParams.from_params(cluster.conn_params(dbname=dbname)), HealthOptions(**options))
    return engine.plan().report()


def check(report, name):
    found = [c for c in report['checks'] if c['name'] == name]
    assert len(found) == 1, [c['name'] for c in report['checks']]
    return found[0]


@contextlib.contextmanager
def session(cluster, dbname):
    """A client session (not autocommit: it holds what it does until closed)."""
    conn = psycopg2.connect(host=cluster.socket_dir, port=cluster.port, dbname=dbname, user='postgres',
                            application_name='health-test')
    try:
        yield conn
    finally:
        conn.close()


def backend_pid(conn):
    with conn.cursor() as cur:
        cur.execute('SELECT pg_backend_pid()')
        return cur.fetchone()[0]


@pytest.fixture
def fresh(pg_factory):
    """A cluster of its own, for tests that change its configuration or need it untouched."""
    return pg_factory()
