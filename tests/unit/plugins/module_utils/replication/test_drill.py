"""The failover drill on real pairs: switchover, failover (sync and async under load), refusals."""

import concurrent.futures
import os
import signal
import time

import psycopg2
import pytest

from ansible_collections.dbdevops.postgresql.plugins.module_utils.connection import ConnParams
from ansible_collections.dbdevops.postgresql.plugins.module_utils.errors import DbDevopsError
from ansible_collections.dbdevops.postgresql.plugins.module_utils.replication.drill import (
    DrillRefused, FailoverDrillEngine, FailoverDrillOptions)


def engine_for(args, **options):
    opts = FailoverDrillOptions(**dict(args, **options))
    sides = (ConnParams.from_params(args['primary']), ConnParams.from_params(args['standby']))
    return FailoverDrillEngine(sides, opts)


def probe_ids(cluster, table='dbdevops_drill_probe'):
    return set(r[0] for r in cluster.sql('SELECT id FROM %s' % table))


def probe_exists(cluster):
    return cluster.sql("SELECT to_regclass('dbdevops_drill_probe') IS NOT NULL")[0][0]


def streams(cluster):
    rows = cluster.sql('SELECT status FROM pg_stat_wal_receiver')
    return bool(rows) and rows[0][0] == 'streaming'


def test_switchover_loses_nothing_and_rejoins(pair, tmp_path):
    engine = engine_for(pair.drill_args(), rejoin=True, report_path=str(tmp_path / 'drill.html'))
    plan = engine.plan()
    checked = plan.result()
    assert checked['changed'] and checked['verdict'] == 'planned' and checked['rto_seconds'] is None
    assert not probe_exists(pair.primary)                       # check mode touched nothing
    result = engine.apply(plan)
    assert set(result) == set(checked)
    assert result['passed'] and result['verdict'] == 'passed', result['verdict_reasons']
    assert result['rpo_writes_lost'] == 0 and result['lost_ids'] == [] and result['rpo_lsn_bytes'] == 0
    assert 0 < result['rto_seconds'] < 10 and 0 < result['promotion_seconds'] < 10
    assert (result['timeline_before'], result['timeline_after']) == (1, 2)
    assert result['primary_after'].startswith('standby') and not result['two_primaries']
    # the old standby is the primary, the old primary streams from it and holds every acknowledged write
    assert not pair.in_recovery(pair.standby) and pair.in_recovery(pair.primary) and streams(pair.primary)
    acked = set(a.id for a in engine.writer.acks)
    assert acked and acked <= probe_ids(pair.standby)
    assert result['data_check']['equal'] and result['rejoined']
    page = (tmp_path / 'drill.html').read_text()
    assert '<svg' in page and 'passed' in page and '<script' not in page and 'http://' not in page.replace(
        'http://www.w3.org/2000/svg', '')


def test_failover_kill_with_synchronous_replication_loses_no_acknowledged_write(sync_pair):
    engine = engine_for(sync_pair.drill_args(), mode='failover', fault='kill', probe_interval_ms=5,
                        rejoin=True, sync_standby_names_after_promotion='', max_lost_writes=0)
    result = engine.apply(engine.plan())
    assert result['passed'], result['verdict_reasons']
    assert result['rpo_writes_lost'] == 0 and result['lost_ids'] == []
    acked_on_old = set(a.id for a in engine.writer.acks if a.node == 'primary')
    assert len(acked_on_old) > 20 and acked_on_old <= probe_ids(sync_pair.standby)
    assert result['rto_seconds'] > 0 and result['timeline_after'] == result['timeline_before'] + 1
    assert result['data_check']['equal'] and streams(sync_pair.primary)
    # the new primary got its synchronous_standby_names back once the old primary streamed again
    assert sync_pair.standby.sql('SHOW synchronous_standby_names')[0][0] == '*'


def _load(cluster, stop):
    """Bulk inserts on the primary until it dies or ``stop`` is set."""
    try:
        conn = cluster.connect()
        with conn.cursor() as cur:
            cur.execute('CREATE TABLE IF NOT EXISTS load (id int, pad text)')
            while not stop.is_set():
                cur.execute("INSERT INTO load SELECT g, repeat('x', 500) FROM generate_series(1, 2000) g")
    except psycopg2.Error:
        pass


def _stall_receiver(pair, engine):
    """SIGSTOP the standby's WAL receiver once the probe writer has 20 acknowledged writes, SIGCONT it once
    the primary's postmaster is gone: what the primary acknowledged in between never reaches the standby."""
    deadline = time.monotonic() + 60
    while (engine.writer is None or len(engine.writer.acks) < 20) and time.monotonic() < deadline:
        time.sleep(0.005)
    pid = pair.standby.sql('SELECT pid FROM pg_stat_wal_receiver')[0][0]
    postmaster = pair.primary.postmaster_pid()
    os.kill(pid, signal.SIGSTOP)
    try:
        while time.monotonic() < deadline:
            try:
                with open('/proc/%d/stat' % postmaster) as handle:
                    if handle.read().rsplit(')', 1)[1].split()[0] == 'Z':
                        break
            except OSError:
                break
            time.sleep(0.005)
    finally:
        os.kill(pid, signal.SIGCONT)


def test_failover_async_under_load_reports_exactly_the_lost_writes(pair):
    import threading
    stop = threading.Event()
    engine = engine_for(pair.drill_args(), mode='failover', fault='stop_immediate', probe_interval_ms=5,
                        warmup_seconds=1.5)
    plan = engine.plan()
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        load = pool.submit(_load, pair.primary, stop)
        stall = pool.submit(_stall_receiver, pair, engine)
        try:
            result = engine.apply(plan)
        finally:
            stop.set()
        stall.result()
        load.result()
    acked = set(a.id for a in engine.writer.acks if a.node == 'primary')
    on_new_primary = probe_ids(pair.standby)
    expected_lost = sorted(acked - on_new_primary)
    assert result['lost_ids'] == expected_lost and result['rpo_writes_lost'] == len(expected_lost)
    assert expected_lost, 'the stalled receiver should have cost acknowledged writes'
    assert result['rpo_lsn_bytes'] > 0
    assert result['passed']                               # no limit on loss for a failover by default
    # the lost writes were real commits: the old primary, started alone, holds every acknowledged id
    pair.primary.running = False
    pair.primary.start()
    assert acked <= probe_ids(pair.primary)


def test_refusals_touch_nothing(pair, pg):
    args = pair.drill_args()

    def refused(**options):
        with pytest.raises(DrillRefused) as info:
            engine_for(dict(args, **options.pop('args', {})), **options).plan()
        assert 'nothing was touched' in str(info.value)
        assert not pair.in_recovery(pair.primary) and pair.in_recovery(pair.standby)
        assert not probe_exists(pair.primary)
        return str(info.value)

    # lag above the threshold: replay paused while the primary writes
    pair.standby.sql('SELECT pg_wal_replay_pause()')
    pair.primary.sql("CREATE TABLE filler AS SELECT g FROM generate_series(1, 10000) g")
    time.sleep(0.5)
    message = refused(max_lag_bytes=1024)
    assert 'bytes behind the primary (max_lag_bytes 1024)' in message and 'replay is paused' in message
    pair.standby.sql('SELECT pg_wal_replay_resume()')
    pair.wait_replayed()

    # the standby does not stream
    original = pair.standby.sql('SHOW primary_conninfo')[0][0]
    pair.standby.sql("ALTER SYSTEM SET primary_conninfo = 'host=%s port=1 user=postgres'" % pair.primary.socket_dir)
    pair.standby.sql('SELECT pg_reload_conf()')
    deadline = time.monotonic() + 20
    while streams(pair.standby) and time.monotonic() < deadline:
        time.sleep(0.1)
    message = refused()
    assert "the standby's WAL receiver is" in message
    pair.standby.sql('ALTER SYSTEM SET primary_conninfo = %s', (original,))
    pair.standby.sql('SELECT pg_reload_conf()')
    pair.wait_streaming()

    # two primaries: the "standby" is another primary
    message = refused(args=dict(standby=pg.conn_params(), standby_data_dir=pg.datadir))
    assert 'TWO PRIMARIES' in message
    assert not pg.sql('SELECT pg_is_in_recovery()')[0][0]


def test_interrupted_drill_says_how_to_recover(pair):
    # a pg_bin_dir without pg_rewind: the switchover happens, the rejoin cannot
    bindir = os.path.dirname(pair.primary.bin('pg_ctl'))
    fake = os.path.join(pair.primary.base, 'bin')
    os.mkdir(fake)
    for name in ('pg_ctl', 'pg_controldata'):
        os.symlink(os.path.join(bindir, name), os.path.join(fake, name))
    engine = engine_for(pair.drill_args(), rejoin=True, pg_bin_dir=fake)
    with pytest.raises(DbDevopsError) as info:
        engine.apply(engine.plan())
    message, details = str(info.value), info.value.details
    assert 'interrupted at step "pg_rewind primary' in message and 'pg_rewind not found' in message
    assert details['verdict'] == 'interrupted' and details['rpo_writes_lost'] == 0
    assert details['recovery'][0].startswith('the primary is now standby')
    assert 'pg_ctl -D %s' % pair.primary.datadir in details['recovery'][1]
    assert not pair.in_recovery(pair.standby)
