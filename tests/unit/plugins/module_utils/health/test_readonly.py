"""A health run never waits behind the application: read-only session, catalog and statistics views only."""

import time

import psycopg2
import pytest

from ansible_collections.dbdevops.postgresql.plugins.module_utils.connection import ConnParams
from ansible_collections.dbdevops.postgresql.plugins.module_utils.health import checks
from ansible_collections.dbdevops.postgresql.plugins.module_utils.health.engine import HealthOptions, Session

from .conftest import check, run_health, session

APP_SCHEMA = """
CREATE TABLE ledger (id int PRIMARY KEY, account int, amount numeric);
INSERT INTO ledger SELECT g, g % 50, g FROM generate_series(1, 20000) g;
CREATE INDEX ledger_account ON ledger (account);
DELETE FROM ledger WHERE id <= 5000;
"""


@pytest.fixture
def app_db(pg_db):
    cluster, name = pg_db
    cluster.sql(APP_SCHEMA, dbname=name)
    return cluster, name


def test_session_is_read_only_with_its_own_timeouts(app_db):
    cluster, name = app_db
    opts = HealthOptions(lock_timeout_ms=700, statement_timeout_ms=4000)
    live = Session(ConnParams.from_params(cluster.conn_params(dbname=name)), opts)
    try:
        with live.conn.cursor() as cur:
            cur.execute("SELECT current_setting('default_transaction_read_only'), current_setting('lock_timeout'), "
                        "current_setting('statement_timeout'), current_setting('application_name')")
            assert cur.fetchone() == ('on', '700ms', '4s', 'dbdevops-health')
            with pytest.raises(psycopg2.errors.ReadOnlySqlTransaction):
                cur.execute('DELETE FROM ledger')
    finally:
        live.close()
    assert cluster.sql('SELECT count(*) FROM ledger', dbname=name) == [(15000,)]


def test_a_run_completes_while_the_application_holds_access_exclusive(app_db):
    cluster, name = app_db
    with session(cluster, name) as app:
        with app.cursor() as cur:
            cur.execute('LOCK TABLE ledger IN ACCESS EXCLUSIVE MODE')
        # what the checks avoid: pg_relation_size() opens the relation and queues behind the lock
        with session(cluster, name) as other, other.cursor() as cur:
            cur.execute("SET lock_timeout = '200ms'")
            with pytest.raises(psycopg2.errors.LockNotAvailable):
                cur.execute("SELECT pg_relation_size('ledger')")
        started = time.monotonic()
        report = run_health(cluster, name, lock_timeout_ms=500, statement_timeout_ms=3000, unused_index_min_bytes=0)
        elapsed = time.monotonic() - started
        app.rollback()
    assert elapsed < 3, elapsed
    assert not [c for c in report['checks'] if 'could not run' in c['summary']], report['summary']
    assert 'ledger' in [t['name'] for t in check(report, 'sizes')['details']['largest_tables']]
    assert [u['index'] for u in check(report, 'unused_indexes')['details']['unused']] == ['ledger_account']


def checks_and_their_locks(params):
    """Every check in one transaction, then the session's own relation locks: (results, [(schema, rel, mode)])."""
    live = Session(params, HealthOptions())
    try:
        live.conn.autocommit = False
        opts = HealthOptions(unused_index_min_bytes=0)
        results = [fn(live, opts) for _name, fn in checks.CHECKS]
        with live.conn.cursor() as cur:
            cur.execute("""SELECT n.nspname, c.relname, l.mode
                             FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
                             JOIN pg_namespace n ON n.oid = c.relnamespace
                            WHERE l.pid = pg_backend_pid() AND l.locktype = 'relation'""")
            locks = cur.fetchall()
        live.conn.rollback()
    finally:
        live.close()
    return results, locks


def test_checks_lock_only_catalog_and_statistics_views(app_db):
    """Every check in one transaction, then the session's own relation locks: AccessShareLock on pg_catalog only."""
    cluster, name = app_db
    results, locks = checks_and_their_locks(ConnParams.from_params(cluster.conn_params(dbname=name)))
    assert [r['name'] for r in results] == list(checks.CHECK_NAMES)
    assert len(locks) > 10, locks                                  # the views read are really seen
    assert set(nsp for nsp, _rel, _mode in locks) == {'pg_catalog'}, locks
    assert set(mode for _nsp, _rel, mode in locks) == {'AccessShareLock'}, locks
    assert not [rel for _nsp, rel, _mode in locks if rel.startswith('ledger')]
    assert {'pg_class', 'pg_stat_activity', 'pg_locks'} <= set(rel for _nsp, rel, _mode in locks)
