"""replication_info and failover_drill run as Ansible runs them (tests.harness.modules.run_module)."""

from ansible_collections.dbdevops.postgresql.plugins.modules import failover_drill, replication_info
from tests.harness.modules import run_module
from tests.harness.replpair import ReplPair


def test_replication_info_module_on_a_pair_and_alone(pg):
    with ReplPair() as pair:
        args = dict(login_user='postgres', nodes=[
            dict(name='db1', login_unix_socket=pair.primary.socket_dir, login_port=pair.primary.port),
            dict(name='db2', login_host='127.0.0.1', login_port=pair.standby.port,
                 login_password=pair.primary.conn_params(password=True)['login_password'])])
        checked = run_module(replication_info, args, check=True)
        real = run_module(replication_info, args)
        for result in (checked, real):
            assert not result['failed'] and not result['changed'], result.get('msg')
            assert [n['role'] for n in result['nodes']] == ['primary', 'standby']
            assert result['summary']['streaming_ok'] and result['summary']['primary'] == 'db1'
        assert set(checked) == set(real)
    alone = run_module(replication_info, pg.conn_params())
    assert not alone['failed'] and alone['nodes'][0]['role'] == 'primary'
    assert alone['summary'] == dict(primaries=1, standbys=0, unreachable=0, primary=alone['nodes'][0]['name'],
                                    streaming_ok=False, problems=[])


def test_failover_drill_module_check_then_switchover_and_back(tmp_path):
    with ReplPair() as pair:
        report = str(tmp_path / 'report.html')
        args = dict(pair.drill_args(), failback=True, report_path=report, probe_interval_ms=20)
        checked = run_module(failover_drill, args, check=True)
        assert not checked['failed'] and checked['changed'] and checked['verdict'] == 'planned'
        assert all(c['ok'] for c in checked['pre_checks'])
        assert not pair.in_recovery(pair.primary) and pair.in_recovery(pair.standby)
        real = run_module(failover_drill, args)
        assert not real['failed'], real.get('msg')
        assert set(real) == set(checked)
        assert real['passed'] and real['rpo_writes_lost'] == 0 and real['rto_seconds'] > 0
        assert real['failback']['writes_lost'] == 0 and real['failback']['rejoined']
        assert real['data_check']['equal']
        assert real['primary_after'].startswith('primary')        # back to the original roles
        assert not pair.in_recovery(pair.primary) and pair.in_recovery(pair.standby)
        assert 'login_password' not in repr(real) and pair.primary.conn_params(password=True)[
            'login_password'] not in repr(real)
        with open(report) as handle:
            assert '<svg' in handle.read()


def test_failover_drill_module_refuses_two_primaries(pg):
    with ReplPair() as pair:
        args = dict(pair.drill_args(), standby=pg.conn_params(), standby_data_dir=pg.datadir)
        result = run_module(failover_drill, args)
        assert result['failed'] and 'TWO PRIMARIES' in result['msg'] and 'nothing was touched' in result['msg']
        assert any(not c['ok'] for c in result['pre_checks'])
        assert not pair.in_recovery(pair.primary) and not pg.sql('SELECT pg_is_in_recovery()')[0][0]


def test_failover_drill_playbook_publishes_success_and_failure(tmp_path):
    from tests.harness.runner import run_playbook
    with ReplPair() as pair:
        args = pair.drill_args()
        hostvars = dict(dbdevops_become=False, dbdevops_login_user='postgres',
                        failover_drill_primary=args['primary'], failover_drill_standby=args['standby'],
                        failover_drill_primary_data_dir=args['primary_data_dir'],
                        failover_drill_standby_data_dir=args['standby_data_dir'],
                        failover_drill_primary_log_file=args['primary_log_file'],
                        failover_drill_standby_log_file=args['standby_log_file'],
                        failover_drill_report_path=str(tmp_path / 'drill.html'))
        done = run_playbook('failover_drill.yml', hostvars, tmp_path)
        assert done.status == 'successful', done
        published = done.stats['dbdevops_failover_drill']['localhost']
        assert published['failed'] is False and published['passed'] is True and published['error'] == ''
        assert published['rpo_writes_lost'] == 0 and published['rto_seconds'] > 0 and published['rejoined']
        assert (tmp_path / 'drill.html').exists()
        # the same inventory again: the roles are swapped now, so the drill refuses and says why
        again = run_playbook('failover_drill.yml', hostvars, tmp_path)
        assert again.status == 'failed'
        published = again.stats['dbdevops_failover_drill']['localhost']
        assert published['failed'] is True and 'the roles are swapped' in published['error']
        assert pair.in_recovery(pair.primary) and not pair.in_recovery(pair.standby)


def test_failover_drill_module_refuses_bad_partition_options_before_connecting():
    # nothing listens on port 1: the refusals come from the options alone, as messages, not tracebacks
    blocks = dict(primary=dict(login_host='127.0.0.1', login_port=1), standby=dict(login_host='127.0.0.1', login_port=1))
    for options, words in ((dict(mode='failover', fault='partition', rejoin=True), 'mode: rejoin on the old primary'),
                           (dict(mode='switchover', fault='partition'), 'set mode: failover'),
                           (dict(mode='failover', fault='kill', fault_command=['true']), 'fault_command is the fault'),
                           (dict(mode='rejoin', failback=True), 'failback does not apply to mode: rejoin')):
        result = run_module(failover_drill, dict(blocks, **options), check=True)
        assert result['failed'] and words in result['msg'], result['msg']
    # mode: rejoin ignores the drill's fault options (one inventory for both), then fails on the dead node
    result = run_module(failover_drill, dict(blocks, mode='rejoin', fault='partition', fault_command=['true']))
    assert result['failed'] and 'refusing to rejoin' in result['msg'] and 'nothing was touched' in result['msg']
