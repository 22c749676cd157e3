"""fault: partition and mode: rejoin on a local pair.

Here the "partition" is the primary's server stopped behind the drill's back (by ``fault_command``, or by
the test while the drill waits for an outside fault): the drill cannot tell that from a cut network, and
it must behave the same, without ever controlling the primary itself. The real network partition across
two hosts is tests/unit/plugins/modules/test_failover_drill_multihost.py.
"""

import concurrent.futures
import time

import pytest

from ansible_collections.dbdevops.postgresql.plugins.module_utils.errors import DbDevopsError
from ansible_collections.dbdevops.postgresql.plugins.module_utils.replication.drill import DrillRefused
from ansible_collections.dbdevops.postgresql.plugins.module_utils.replication.rejoin import RejoinEngine

from .test_drill import engine_for, probe_exists, probe_ids, streams


def _partition_args(pair):
    args = pair.drill_args()
    # the drill must not need to control the primary: no data directory options at all
    for key in ('primary_data_dir', 'standby_data_dir', 'primary_log_file', 'standby_log_file'):
        args.pop(key)
    return args


def _stop_argv(pair):
    return ['runuser', '-u', 'postgres', '--', pair.primary.bin('pg_ctl'), '-D', pair.primary.datadir,
            '-m', 'immediate', '-w', 'stop']


def test_partition_by_fault_command_then_rejoin_on_the_old_primarys_host(pair, tmp_path):
    args = _partition_args(pair)
    engine = engine_for(args, mode='failover', fault='partition', fault_command=_stop_argv(pair),
                        probe_interval_ms=10, fence_confirm_seconds=1)
    plan = engine.plan()
    checked = plan.result()
    assert checked['verdict'] == 'planned' and not probe_exists(pair.primary)
    assert not any(c['check'].endswith('controllable') for c in checked['pre_checks'])
    assert any('run runuser' in s['step'] for s in checked['steps'])
    result = engine.apply(plan)
    assert set(result) == set(checked)
    assert result['passed'], result['verdict_reasons']
    assert result['old_primary_state'] == 'isolated'
    assert any('isolated, not stopped' in w and 'mode: rejoin' in w for w in result['warnings'])
    assert result['recovery'] and 'Fence it' in result['recovery'][0]
    assert 0 < result['rto_seconds'] < 30 and result['timeline_after'] == result['timeline_before'] + 1
    acked = set(a.id for a in engine.writer.acks if a.node == 'primary')
    assert len(acked) > 5
    assert result['lost_ids'] == sorted(acked - probe_ids(pair.standby))
    assert result['rpo_writes_lost'] == len(result['lost_ids'])
    confirm = [s for s in result['steps'] if s['step'].startswith('confirm')][0]
    assert 'isolated, not stopped' in confirm['detail'] and 'connection attempt' in confirm['detail']
    assert not pair.in_recovery(pair.standby)

    # the rejoin, on the old primary's host: the same blocks, primary = the node to rejoin
    rejoin_args = dict(args, mode='rejoin', primary_data_dir=pair.primary.datadir,
                       primary_log_file=pair.primary.logfile, report_path=str(tmp_path / 'rejoin.html'))
    rejoin = engine_for(rejoin_args)
    assert isinstance(rejoin, RejoinEngine)
    plan = rejoin.plan()
    checked = plan.result()
    assert checked['changed'] and checked['verdict'] == 'planned' and checked['old_primary_state'] == 'stopped'
    assert not any(s['step'].startswith('fence') for s in checked['steps'])
    done = rejoin.apply(plan)
    assert set(done) == set(checked)
    assert done['passed'] and done['rejoined'] and done['streaming'] and done['rewind_seconds'] > 0
    assert (done['timeline_before'], done['timeline_after']) == (1, 2)
    assert done['data_check']['equal']
    assert pair.in_recovery(pair.primary) and streams(pair.primary)
    assert probe_ids(pair.standby) <= probe_ids(pair.primary)
    assert (tmp_path / 'rejoin.html').exists()
    # again: it streams from the new primary already
    again = engine_for(rejoin_args)
    plan = again.plan()
    assert not plan.changed and plan.result()['verdict'] == 'passed' and plan.result()['steps'] == []
    assert not again.apply(plan)['changed']


def test_partition_waits_for_an_outside_fault_and_fences_a_running_primary_at_rejoin(pair):
    args = _partition_args(pair)
    engine = engine_for(args, mode='failover', fault='partition', fault_wait_seconds=30, fence_confirm_seconds=1)
    plan = engine.plan()

    def pull_the_cable():
        deadline = time.monotonic() + 30
        while (engine.writer is None or len(engine.writer.acks) < 10) and time.monotonic() < deadline:
            time.sleep(0.01)
        pair.primary.run_as_owner(_stop_argv(pair)[4:])

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        cable = pool.submit(pull_the_cable)
        result = engine.apply(plan)
        cable.result()
    assert result['passed'] and result['old_primary_state'] == 'isolated', result['verdict_reasons']
    assert result['events'][0]['event'].startswith('fault: the probe writer lost primary')
    # the network "comes back" with the old primary still a primary: two primaries until the rejoin fences it
    pair.primary.running = False
    pair.primary.start()
    assert not pair.in_recovery(pair.primary) and not pair.in_recovery(pair.standby)
    rejoin = engine_for(dict(args, mode='rejoin'))
    plan = rejoin.plan()
    assert plan.values['old_primary_state'] == 'primary'
    assert plan.result()['steps'][0]['step'].startswith('fence')
    done = rejoin.apply(plan)
    assert done['passed'] and streams(pair.primary) and pair.in_recovery(pair.primary)
    assert [s['step'] for s in done['steps']][0].startswith('fence') and done['steps'][0]['ok']


def test_bad_combinations_and_refusals_touch_nothing(pair):
    args = _partition_args(pair)
    for options, words in (
            (dict(fault='partition'), 'set mode: failover'),
            (dict(mode='failover', fault='partition', rejoin=True), 'mode: rejoin on the old primary'),
            (dict(mode='failover', fault='partition', failback=True), 'mode: rejoin on the old primary'),
            (dict(mode='failover', fault='kill', fault_command=['true']), 'fault_command is the fault of'),
            (dict(mode='failover', fault='partition', fault_command=[]), 'non-empty list')):
        with pytest.raises(DbDevopsError) as info:
            engine_for(args, **options).plan()
        assert words in str(info.value)
    # rejoin while the "new primary" is still a standby: nothing was promoted
    with pytest.raises(DrillRefused) as info:
        engine_for(dict(args, mode='rejoin', primary_data_dir=pair.primary.datadir)).plan()
    assert 'not a primary' in str(info.value) and 'nothing was touched' in str(info.value)
    # the partition drill needs a streaming standby, like every drill
    original = pair.standby.sql('SHOW primary_conninfo')[0][0]
    pair.standby.sql("ALTER SYSTEM SET primary_conninfo = 'host=%s port=1 user=postgres'" % pair.primary.socket_dir)
    pair.standby.sql('SELECT pg_reload_conf()')
    deadline = time.monotonic() + 20
    while streams(pair.standby) and time.monotonic() < deadline:
        time.sleep(0.1)
    with pytest.raises(DrillRefused) as info:
        engine_for(args, mode='failover', fault='partition', fault_command=['false']).plan()
    assert "the standby's WAL receiver is" in str(info.value)
    pair.standby.sql('ALTER SYSTEM SET primary_conninfo = %s', (original,))
    pair.standby.sql('SELECT pg_reload_conf()')
    assert not pair.in_recovery(pair.primary) and pair.in_recovery(pair.standby) and not probe_exists(pair.primary)


def test_a_failing_fault_command_promotes_nothing(pair):
    engine = engine_for(_partition_args(pair), mode='failover', fault='partition', fault_command=['false'])
    with pytest.raises(DbDevopsError) as info:
        engine.apply(engine.plan())
    assert 'fault_command false failed' in str(info.value) and 'nothing was promoted' in str(info.value)
    assert info.value.details['verdict'] == 'interrupted'
    assert not pair.in_recovery(pair.primary) and pair.in_recovery(pair.standby)
