"""replication_info's engine on a primary + streaming standby, and on a single server."""

from ansible_collections.dbdevops.postgresql.plugins.module_utils.connection import ConnParams
from ansible_collections.dbdevops.postgresql.plugins.module_utils.replication import info
from ansible_collections.dbdevops.postgresql.plugins.module_utils.replication.info import (
    ReplicationInfoEngine, ReplicationInfoOptions)
from tests.harness.pgcluster import free_port
from tests.harness.replpair import ReplPair


def params(cluster, **kw):
    return ConnParams.from_params(cluster.conn_params(**kw))


def test_pair_roles_streaming_lag_and_slots():
    with ReplPair(slot='standby_slot') as pair:
        pair.primary.sql('CREATE TABLE t AS SELECT g AS id, repeat(\'x\', 200) AS pad FROM generate_series(1, 20000) g')
        pair.wait_replayed()
        engine = ReplicationInfoEngine([(params(pair.primary), 'db1'), (params(pair.standby, password=True), 'db2')],
                                       ReplicationInfoOptions())
        plan = engine.plan()
        checked, real = plan.result(), engine.apply(plan)
        assert set(checked) == set(real) and not real['changed']
        primary, standby = real['nodes']
        assert (primary['name'], primary['role'], standby['name'], standby['role']) == ('db1', 'primary', 'db2', 'standby')
        assert primary['timeline'] == standby['timeline'] == 1
        assert primary['system_identifier'] == standby['system_identifier']
        assert standby['receiver']['status'] == 'streaming'
        assert standby['receiver']['sender_port'] == pair.primary.port
        assert standby['receiver']['slot_name'] == 'standby_slot'
        assert standby['replay_lsn'] == standby['receive_lsn']
        assert standby['replay_lag_seconds'] == 0.0          # caught up: an idle primary is no lag
        [sender] = primary['senders']
        assert sender['state'] == 'streaming' and sender['sync_state'] == 'async'
        assert sender['replay_lag_bytes'] is not None and sender['replay_lag_bytes'] >= 0
        [slot] = primary['slots']
        assert slot['slot_name'] == 'standby_slot' and slot['active']
        assert slot['retained_bytes'] is not None and slot['retained_bytes'] >= 0
        assert real['summary'] == dict(primaries=1, standbys=1, unreachable=0, primary='db1', streaming_ok=True,
                                       problems=[])

        # replay paused with WAL waiting: lag in bytes and seconds, and the summary still streams
        pair.standby.sql('SELECT pg_wal_replay_pause()')
        pair.primary.sql('INSERT INTO t SELECT g, \'y\' FROM generate_series(1, 5000) g')
        pair.primary.sql('SELECT pg_switch_wal()')
        import time
        time.sleep(1.2)
        nodes = info.read_nodes([(params(pair.primary), 'db1'), (params(pair.standby), 'db2')])
        assert nodes[1]['replay_paused'] is True
        assert info.lsn_int(nodes[1]['receive_lsn']) > info.lsn_int(nodes[1]['replay_lsn'])
        assert nodes[1]['replay_lag_seconds'] > 0
        assert nodes[0]['senders'][0]['replay_lag_bytes'] > 0
        pair.standby.sql('SELECT pg_wal_replay_resume()')


def test_single_node_and_unreachable(pg):
    closed = ConnParams.from_params(dict(pg.conn_params(), login_port=free_port()))
    engine = ReplicationInfoEngine([(params(pg), None), (closed, 'gone')], ReplicationInfoOptions(connect_timeout=2))
    result = engine.apply(engine.plan())
    single, gone = result['nodes']
    assert single['role'] == 'primary' and single['senders'] == [] and single['receiver'] is None
    assert single['name'] == '%s:%d' % (pg.socket_dir, pg.port)
    assert gone['role'] == 'unreachable' and 'refused' in gone['error']
    assert result['summary']['primaries'] == 1 and result['summary']['standbys'] == 0
    assert not result['summary']['streaming_ok'] and 'unreachable: gone' in result['summary']['problems']
    assert any('gone' in w or str(closed.login_port) in w for w in result['warnings'])
