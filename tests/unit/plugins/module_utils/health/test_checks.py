"""Each health check against a real server: the condition is created for real, then found with the right status."""

import concurrent.futures
import time

import pytest

from ansible_collections.dbdevops.postgresql.plugins.module_utils.connection import ConnParams
from ansible_collections.dbdevops.postgresql.plugins.module_utils.errors import DbDevopsError
from ansible_collections.dbdevops.postgresql.plugins.module_utils.health import checks
from ansible_collections.dbdevops.postgresql.plugins.module_utils.health.engine import HealthEngine, HealthOptions
from tests.harness.pgcluster import free_port

from .conftest import backend_pid, check, run_health, session, wait_until


def test_a_fresh_cluster_is_ok_everywhere_and_checks_really_ran(fresh):
    report = run_health(fresh)
    assert report['status'] == 'ok', report['summary']
    statuses = dict((c['name'], c['status']) for c in report['checks'])
    assert [c['name'] for c in report['checks']] == ['connection'] + list(checks.CHECK_NAMES)
    assert not [n for n, s in statuses.items() if s in ('warning', 'critical')], report['summary']
    # only what cannot be judged on an idle new cluster is skipped, each with its reason
    assert set(n for n, s in statuses.items() if s == 'skipped') <= {'statements', 'cache_hit'}
    assert 'pg_stat_statements is not installed' in check(report, 'statements')['summary']
    assert report['counts']['ok'] >= 13 and sum(report['counts'].values()) == len(report['checks'])
    assert check(report, 'connection')['details']['application_name'] == 'dbdevops-health'
    assert check(report, 'wraparound')['details']['databases'], 'the wraparound check read no database'
    assert report['summary'].splitlines()[0].endswith(': ok (ok=%d warning=0 critical=0 skipped=%d)' % (
        report['counts']['ok'], report['counts']['skipped']))
    for c in report['checks']:
        assert set(c) == {'name', 'status', 'summary', 'details', 'thresholds'} and c['summary'], c


def test_ok_is_impossible_when_no_check_ran(pg):
    report = run_health(pg, skip_checks=list(checks.CHECK_NAMES))
    assert report['status'] == 'critical'
    assert check(report, 'checks_run')['status'] == 'critical'
    assert report['counts']['skipped'] == len(checks.CHECK_NAMES)


def test_unknown_check_name_is_refused(pg):
    with pytest.raises(DbDevopsError, match='skip_checks names unknown check.*locks_typo.*blocking_locks'):
        HealthEngine(ConnParams.from_params(pg.conn_params()), HealthOptions(skip_checks=['locks_typo']))


def test_server_down_is_a_critical_result_not_an_exception(pg):
    params = dict(pg.conn_params(), login_host='127.0.0.1', login_port=free_port())
    report = HealthEngine(ConnParams.from_params(params), HealthOptions(fail_on='never')).plan().report()
    assert report['status'] == 'critical'
    conn = check(report, 'connection')
    assert conn['status'] == 'critical' and 'refused the connection' in conn['summary']
    assert set(c['status'] for c in report['checks'] if c['name'] != 'connection') == {'skipped'}
    assert report['server_version'] is None and 'Traceback' not in repr(report)


def test_wrong_password_is_a_critical_result_naming_the_cause(pg):
    params = pg.conn_params(password='not-the-password')
    report = HealthEngine(ConnParams.from_params(params), HealthOptions(fail_on='never')).plan().report()
    assert report['status'] == 'critical'
    assert 'password authentication failed' in check(report, 'connection')['summary']
    assert 'not-the-password' not in repr(report)


def test_fail_on_raises_with_the_whole_result(pg):
    params = ConnParams.from_params(dict(pg.conn_params(), login_host='127.0.0.1', login_port=free_port()))
    with pytest.raises(DbDevopsError) as raised:
        HealthEngine(params, HealthOptions()).plan().result()        # default fail_on: critical
    assert 'is critical (fail_on=critical)' in str(raised.value) and 'refused' in str(raised.value)
    assert raised.value.details['status'] == 'critical' and raised.value.details['checks']
    # fail_on never returns it; the same run's apply() enforces fail_on too
    engine = HealthEngine(params, HealthOptions(fail_on='never'))
    assert engine.apply(engine.plan())['status'] == 'critical'


def test_fail_on_warning_fails_a_warning_and_critical_does_not(pg_db):
    cluster, name = pg_db
    cluster.sql('CREATE TABLE t (id int PRIMARY KEY, v int); CREATE INDEX t_v ON t (v)', dbname=name)
    params = ConnParams.from_params(cluster.conn_params(dbname=name))
    strict = dict(unused_index_min_bytes=0, memory_mb=1024, cpus=2, skip_checks=['cache_hit'])
    report = HealthEngine(params, HealthOptions(fail_on='critical', **strict)).plan().result()
    assert report['status'] == 'warning'
    with pytest.raises(DbDevopsError, match='is warning .fail_on=warning.*unused_indexes'):
        HealthEngine(params, HealthOptions(fail_on='warning', **strict)).plan().result()


def test_blocked_lock_chain_names_blocker_and_blocked_with_their_queries(pg_db):
    cluster, name = pg_db
    cluster.sql('CREATE TABLE accounts (id int PRIMARY KEY, balance int); INSERT INTO accounts VALUES (1, 10)',
                dbname=name)
    with session(cluster, name) as blocker, session(cluster, name) as waiter, \
            concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        blocker_pid, waiter_pid = backend_pid(blocker), backend_pid(waiter)
        with blocker.cursor() as cur:
            cur.execute('UPDATE accounts SET balance = 11 WHERE id = 1')
        waiting = pool.submit(lambda: waiter.cursor().execute('UPDATE accounts SET balance = 12 WHERE id = 1'))
        wait_until(lambda: cluster.sql("SELECT 1 FROM pg_stat_activity WHERE pid = %s AND wait_event_type = 'Lock'",
                                       (waiter_pid,)), what='the second session to wait')
        time.sleep(1.2)
        report = run_health(cluster, name, lock_wait_warning_seconds=1, lock_wait_critical_seconds=60)
        blocker.rollback()
        waiting.result(timeout=10)
        waiter.rollback()
    locks = check(report, 'blocking_locks')
    assert locks['status'] == 'warning' and report['status'] in ('warning', 'critical'), locks
    (chain,) = locks['details']['blocked']
    assert chain['pid'] == waiter_pid and chain['blocked_by'] == [blocker_pid]
    assert chain['query'] == 'UPDATE accounts SET balance = 12 WHERE id = 1'
    assert chain['blockers'][0]['query'] == 'UPDATE accounts SET balance = 11 WHERE id = 1'
    assert chain['blockers'][0]['state'] == 'idle in transaction'
    assert chain['wait_seconds'] >= 1 and chain['mode'] == 'ShareLock'
    assert [b['pid'] for b in locks['details']['root_blockers']] == [blocker_pid]
    assert 'pid %d' % waiter_pid in locks['summary'] and 'pid %d' % blocker_pid in locks['summary']
    assert locks['thresholds'] == dict(warning_seconds=1, critical_seconds=60)


def test_idle_in_transaction_and_long_running_sessions(pg_db):
    cluster, name = pg_db
    with session(cluster, name) as idle, session(cluster, name) as busy, \
            concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        idle_pid, busy_pid = backend_pid(idle), backend_pid(busy)
        idle.commit()
        busy.commit()
        with idle.cursor() as cur:
            cur.execute('SELECT 1')
        sleeping = pool.submit(lambda: busy.cursor().execute('SELECT pg_sleep(4) /* long one */'))
        time.sleep(1.5)
        report = run_health(cluster, name, idle_in_transaction_warning_seconds=1,
                            idle_in_transaction_critical_seconds=1000, long_query_warning_seconds=1,
                            long_transaction_warning_seconds=1, long_transaction_critical_seconds=1.2)
        sleeping.result(timeout=10)
    sessions = check(report, 'sessions')
    assert sessions['status'] == 'warning', sessions
    assert [s['pid'] for s in sessions['details']['idle_in_transaction_sessions']] == [idle_pid]
    assert sessions['details']['idle_in_transaction_sessions'][0]['last_query'] == 'SELECT 1'
    assert 'pid %d' % idle_pid in sessions['summary']
    running = check(report, 'long_running')
    assert running['status'] == 'critical', running                  # transactions past the 1.2 s critical limit
    assert [q['pid'] for q in running['details']['queries']] == [busy_pid]
    assert 'pg_sleep(4)' in running['details']['queries'][0]['query']
    assert set(t['pid'] for t in running['details']['transactions']) == {idle_pid, busy_pid}
    assert report['status'] == 'critical'


def test_unused_and_invalid_indexes(pg_db):
    cluster, name = pg_db
    cluster.sql("""CREATE TABLE orders (id int PRIMARY KEY, customer int, code text, ref int);
                   INSERT INTO orders SELECT g, g % 100, 'c' || (g % 10), g FROM generate_series(1, 20000) g;
                   CREATE INDEX orders_customer ON orders (customer);
                   CREATE INDEX orders_used ON orders (ref);""", dbname=name)
    with session(cluster, name) as conn:
        with conn.cursor() as cur:                                    # scan orders_used once
            cur.execute('SET enable_seqscan = off; SET enable_bitmapscan = off;'
                        'SELECT count(*) FROM orders WHERE ref = 5')
        conn.commit()
    wait_until(lambda: cluster.sql("SELECT idx_scan > 0 FROM pg_stat_user_indexes WHERE indexrelname = 'orders_used'",
                                   dbname=name)[0][0], what='the index scan in the statistics')
    # a unique index built concurrently over duplicates fails and stays behind, invalid
    conn = cluster.connect(name)
    try:
        with pytest.raises(Exception, match='could not create unique index'):
            conn.cursor().execute('CREATE UNIQUE INDEX CONCURRENTLY orders_code_key ON orders (code)')
    finally:
        conn.close()
    report = run_health(cluster, name, unused_index_min_bytes=0)
    unused = check(report, 'unused_indexes')
    assert unused['status'] == 'warning', unused
    names = [u['index'] for u in unused['details']['unused']]
    assert names == ['orders_customer']             # not the primary key, not the one scanned, not the invalid one
    assert unused['details']['unused'][0]['bytes'] > 0 and 'orders_customer' in unused['summary']
    invalid = check(report, 'invalid_indexes')
    assert invalid['status'] == 'warning'
    assert [(i['table'], i['index'], i['is_unique']) for i in invalid['details']['invalid']] == [
        ('orders', 'orders_code_key', True)]
    assert 'REINDEX INDEX CONCURRENTLY "public"."orders_code_key"' in invalid['details']['invalid'][0]['fix']
    # above the size limit, the same unused index is not a warning
    quiet = check(run_health(cluster, name, unused_index_min_bytes=1024 ** 3), 'unused_indexes')
    assert quiet['status'] == 'ok' and quiet['details']['below_min_size'] == 1


def test_dead_tuples_on_a_table_autovacuum_skips(pg_db):
    cluster, name = pg_db
    cluster.sql("""CREATE TABLE events (id int, payload text) WITH (autovacuum_enabled = off);
                   INSERT INTO events SELECT g, 'x' FROM generate_series(1, 5000) g;
                   DELETE FROM events WHERE id <= 3000;""", dbname=name)
    wait_until(lambda: cluster.sql("SELECT n_dead_tup >= 3000 FROM pg_stat_user_tables WHERE relname = 'events'",
                                   dbname=name)[0][0], what='the dead rows in the statistics')
    report = run_health(cluster, name)
    dead = check(report, 'dead_tuples')
    assert dead['status'] == 'critical', dead                        # 60 % dead, default critical 50 %
    (table,) = dead['details']['tables']
    assert (table['table'], table['dead_tuples'], table['live_tuples']) == ('events', 3000, 2000)
    assert table['dead_pct'] == 60.0 and table['autovacuum_enabled'] is False
    assert table['last_vacuum'] is None and table['seconds_since_vacuum'] is None
    assert 'autovacuum is off on it' in dead['summary'] and 'never vacuumed' in dead['summary']
    assert dead['thresholds'] == dict(warning_pct=20.0, critical_pct=50.0, min_dead_tuples=1000)
    assert check(run_health(cluster, name, dead_tuples_warning_pct=70, dead_tuples_critical_pct=90),
                 'dead_tuples')['status'] == 'ok'


def test_an_unread_replication_slot_holding_wal(pg_db):
    cluster, name = pg_db
    cluster.sql("SELECT pg_create_physical_replication_slot('h1_forgotten', true)")
    try:
        cluster.sql('CREATE TABLE filler AS SELECT g, md5(g::text) FROM generate_series(1, 20000) g', dbname=name)
        report = run_health(cluster, name, slot_retained_warning_bytes=1024, slot_retained_critical_bytes=1024 ** 3)
    finally:
        cluster.sql("SELECT pg_drop_replication_slot('h1_forgotten')")
    slots = check(report, 'replication_slots')
    assert slots['status'] == 'warning', slots
    (slot,) = [s for s in slots['details']['slots'] if s['slot_name'] == 'h1_forgotten']
    assert slot['active'] is False and slot['retained_bytes'] > 1024 and slot['slot_type'] == 'physical'
    assert "pg_drop_replication_slot('h1_forgotten')" in slots['summary']
    assert check(report, 'replication')['status'] == 'ok'


def test_settings_pending_a_restart(fresh):
    fresh.sql("ALTER SYSTEM SET shared_buffers = '48MB'")
    fresh.sql('SELECT pg_reload_conf()')
    wait_until(lambda: fresh.sql("SELECT pending_restart FROM pg_settings WHERE name = 'shared_buffers'")[0][0],
               what='pending_restart')
    report = run_health(fresh)
    pending = check(report, 'pending_restart')
    assert pending['status'] == 'warning' and 'shared_buffers' in pending['summary']
    assert [s['name'] for s in pending['details']['settings']] == ['shared_buffers']
    assert report['status'] == 'warning'


def test_sizes_come_from_the_catalog(pg_db):
    cluster, name = pg_db
    cluster.sql("""CREATE TABLE big (id int PRIMARY KEY, pad text);
                   INSERT INTO big SELECT g, repeat('x', 200) FROM generate_series(1, 20000) g;
                   CREATE TABLE small (id int);""", dbname=name)
    cluster.sql('VACUUM ANALYZE big', dbname=name)
    sizes = check(run_health(cluster, name, top_n=1), 'sizes')
    assert sizes['status'] == 'ok'
    (largest,) = sizes['details']['largest_tables']
    real = cluster.sql("SELECT pg_relation_size('big'), pg_total_relation_size('big')", dbname=name)[0]
    assert largest['name'] == 'big' and largest['bytes'] == real[0]
    assert largest['total_bytes'] >= real[0] and largest['estimated_rows'] == 20000
    assert [i['name'] for i in sizes['details']['largest_indexes']] == ['big_pkey']
    assert name in [d['database'] for d in sizes['details']['databases']]


def test_replication_lag_on_the_primary_and_the_standby():
    from tests.harness.replpair import ReplPair
    with ReplPair(slot='h1_standby') as pair:
        pair.wait_streaming()
        healthy = run_health(pair.primary)
        repl = check(healthy, 'replication')
        assert repl['status'] == 'ok' and len(repl['details']['senders']) == 1, repl
        assert repl['details']['senders'][0]['state'] == 'streaming'
        assert check(healthy, 'replication_slots')['status'] == 'ok'   # the standby reads its slot
        standby = run_health(pair.standby)
        assert standby['in_recovery'] is True
        assert check(standby, 'replication')['status'] == 'ok'
        assert 'Standby streaming' in check(standby, 'replication')['summary']
        # replay paused on the standby while the primary writes: the lag grows and is found on both sides
        pair.standby.sql('SELECT pg_wal_replay_pause()')
        pair.primary.sql('CREATE TABLE lagging AS SELECT g FROM generate_series(1, 50000) g')
        wait_until(lambda: pair.primary.sql('SELECT replay_lsn < pg_current_wal_lsn() AND flush_lsn = '
                                            'pg_current_wal_lsn() FROM pg_stat_replication')[0][0],
                   what='WAL flushed on the standby and not replayed')
        lagging = check(run_health(pair.primary, replication_lag_warning_bytes=1024), 'replication')
        pair.standby.sql('SELECT pg_wal_replay_resume()')
    assert lagging['status'] == 'warning', lagging
    assert lagging['details']['senders'][0]['replay_lag_bytes'] > 1024
    assert lagging['thresholds']['warning_bytes'] == 1024


def test_a_pg_monitor_login_runs_every_check(pg_db):
    cluster, name = pg_db
    cluster.sql("DROP ROLE IF EXISTS h1_monitor; CREATE ROLE h1_monitor LOGIN IN ROLE pg_monitor")
    try:
        params = dict(cluster.conn_params(dbname=name), login_user='h1_monitor')
        opts = HealthOptions(fail_on='never', memory_mb=1024, cpus=2)
        report = HealthEngine(ConnParams.from_params(params), opts).plan().report()
    finally:
        cluster.sql('DROP ROLE h1_monitor')
    assert check(report, 'connection')['details']['superuser'] is False
    assert not [c['summary'] for c in report['checks'] if 'could not' in c['summary']], report['summary']
    assert report['status'] == 'ok', report['summary']


def test_top_statements_from_pg_stat_statements(pg_factory):
    cluster = pg_factory(settings={'shared_preload_libraries': 'pg_stat_statements'})
    cluster.sql('CREATE EXTENSION pg_stat_statements')
    cluster.sql('CREATE TABLE work (id int); INSERT INTO work SELECT generate_series(1, 1000)')
    for _run in range(3):
        cluster.sql('SELECT pg_sleep(0.4), count(*) FROM work')
    statements = check(run_health(cluster, top_n=5), 'statements')
    assert statements['status'] == 'ok', statements
    by_mean, by_total = statements['details']['by_mean_time'], statements['details']['by_total_time']
    assert len(by_mean) == 5 and len(by_total) == 5
    assert [r['mean_ms'] for r in by_mean] == sorted((r['mean_ms'] for r in by_mean), reverse=True)
    (sleeper,) = [r for r in by_total if 'pg_sleep' in r['query']]
    assert sleeper['calls'] == 3 and sleeper['total_ms'] >= 1200 and sleeper['database'] == 'postgres'
    assert by_total[0]['total_ms'] >= 1200                            # nothing else here takes that long
    assert 'pg_sleep' in statements['summary']


def test_statements_installed_but_not_loaded_is_skipped_with_the_reason(pg_db):
    cluster, name = pg_db
    cluster.sql('CREATE EXTENSION pg_stat_statements', dbname=name)
    statements = check(run_health(cluster, name), 'statements')
    assert statements['status'] == 'skipped'
    assert 'cannot be read' in statements['summary'] and 'shared_preload_libraries' in statements['summary']
