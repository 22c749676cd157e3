"""The failover drill across two real hosts: a network partition, then the rejoin over SSH.

Two network namespaces (tests/harness/netns.py), each with its own sshd and its own Debian cluster:
host a runs 15/dbdt_a (10.78.0.11:5601), host b 15/dbdt_b (10.78.0.12:5602). Everything goes through
ansible-runner with an inventory whose host vars carry the SSH connection, as AWX would run it:

a) playbooks/replica.yml over SSH on both hosts: a is prepared as the primary, b's standby is built with
   pg_basebackup from a over the bridge and must stream;
b) playbooks/failover_drill.yml on the controller (this namespace, reaching both servers over the bridge)
   with fault: partition and fault_command ``ip link set dbdtva down``: the drill controls neither
   server, promotes b over SQL and reports a as isolated;
c) the link comes back and playbooks/failover_drill.yml with mode: rejoin runs on host a over SSH: it
   fences a (still a primary on the old timeline), rewinds it from b and makes it b's streaming standby;
d) the same rejoin the wrong way round (on host b, "new primary" a, which is a standby) is refused and
   changes nothing;
e) the teardown leaves nothing behind.

Runs as root only (namespaces, sshd, Debian clusters); about a minute and a half.
"""

import os
import shutil
import time

import psycopg2
import pytest

from ansible_collections.dbdevops.postgresql.plugins.modules import replication_info
from tests.harness import netns
from tests.harness.modules import run_module

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists(netns.SSHD)
                                or not os.path.exists('/usr/bin/pg_createcluster'),
                                reason='needs root, openssh-server and postgresql-common')

PASSWORD = 'dbdt-superuser-secret'
REPLICATOR_PASSWORD = 'dbdt-replicator-secret'
A = netns.HOSTS['a']
B = netns.HOSTS['b']
BLOCK_A = dict(login_host=A['addr'], login_port=A['port'])
BLOCK_B = dict(login_host=B['addr'], login_port=B['port'])
PASSFILE_A = '/etc/postgresql/15/dbdt_a/dbdevops-rejoin.pgpass'


@pytest.fixture
def hosts():
    built = netns.TwoHosts()
    try:
        yield built.up()
    finally:
        built.down()


def connect(block, timeout=2):
    conn = psycopg2.connect(host=block['login_host'], port=block['login_port'], user='postgres', password=PASSWORD,
                            dbname='postgres', connect_timeout=timeout)
    conn.autocommit = True
    return conn


def sql(block, statement, args=None):
    conn = connect(block)
    try:
        with conn.cursor() as cur:
            cur.execute(statement, args)
            return cur.fetchall()
    finally:
        conn.close()


def probe_ids(block):
    return set(r[0] for r in sql(block, 'SELECT id FROM dbdevops_drill_probe'))


def inventory(hosts):
    shared = dict(dbdevops_become=False, dbdevops_login_user='postgres', dbdevops_login_password=PASSWORD,
                  failover_drill_primary=BLOCK_A, failover_drill_standby=BLOCK_B)
    replica = dict(replica_password=REPLICATOR_PASSWORD, replica_primary_host=A['addr'],
                   replica_primary_port=A['port'], replica_primary_cluster_name=A['cluster'],
                   replica_cluster_name=B['cluster'], replica_port=B['port'],
                   replica_standbys=[dict(name='hostb', address=B['addr'] + '/32')], replica_wait_timeout=60)
    host_a = dict(hosts.host_vars('a'), replica_role='primary', failover_drill_mode='rejoin',
                  failover_drill_primary_cluster='15/' + A['cluster'],
                  failover_drill_rejoin_primary_conninfo='host=%s port=%d user=replicator passfile=%s '
                                                         'application_name=hosta' % (B['addr'], B['port'], PASSFILE_A),
                  **shared)
    host_b = dict(hosts.host_vars('b'), replica_role='standby', **shared)
    controller = dict(ansible_connection='local', ansible_python_interpreter='/usr/bin/python3',
                      failover_drill_mode='failover', failover_drill_fault='partition',
                      failover_drill_fault_command=['ip', 'link', 'set', A['veth'], 'down'],
                      failover_drill_fence_confirm_seconds=3, failover_drill_probe_interval_ms=20, **shared)
    return {'all': {'vars': replica, 'children': {
        'postgresql': {'hosts': {'hosta': host_a, 'hostb': host_b}},
        'controller': {'hosts': {'localhost': controller}}}}}


def test_partition_drill_across_two_hosts_then_rejoin_over_ssh(hosts, tmp_path):
    t0 = time.monotonic()
    hosts.create_primary_cluster('a', PASSWORD, REPLICATOR_PASSWORD)
    inv = inventory(hosts)

    # a) the pair, built by the replica role over SSH across the two hosts
    built = netns.run_playbook_over_ssh('replica.yml', inv, tmp_path)
    assert built.status == 'successful', built
    assert built.stats['dbdevops_replica']['hostb']['streaming'] is True
    assert built.stats['dbdevops_replica']['hosta']['standbys'][0]['client_addr'] == B['addr']
    # the standby's pg_hba (pg_createcluster's) lets the controller and host a in, for the drill and the rejoin
    hosts.add_hba('b')
    hosts.reload('b')
    with open(PASSFILE_A, 'w') as handle:
        handle.write('%s:*:replication:replicator:%s\n' % (B['addr'], REPLICATOR_PASSWORD))
    os.chmod(PASSFILE_A, 0o600)
    shutil.chown(PASSFILE_A, 'postgres', 'postgres')
    assert sql(BLOCK_B, 'SELECT pg_is_in_recovery()')[0][0] is True
    t_built = time.monotonic() - t0

    # b) the partition: the drill runs on the controller, cuts a's link and promotes b
    drill = netns.run_playbook_over_ssh('failover_drill.yml', inv, tmp_path,
                                        extravars=dict(failover_drill_hosts='controller'))
    assert drill.status == 'successful', drill
    result = drill.stats['dbdevops_failover_drill']['localhost']
    assert result['failed'] is False and result['passed'] is True, result
    assert result['old_primary_state'] == 'isolated' and result['rejoined'] is False
    assert 0 < result['rto_seconds'] < 30
    assert (result['timeline_before'], result['timeline_after']) == (1, 2)
    assert result['primary_after'].endswith('(%s:%d)' % (B['addr'], B['port']))
    assert 'Fence it' in result['recovery'][0]
    warnings = [w for e in drill.events if e.get('event') == 'runner_on_ok'
                for w in e['event_data']['res'].get('warnings', [])]
    assert any('isolated, not stopped' in w for w in warnings)
    # the drill's fault_command took a's link down; a is cut off from here, yet still runs as a primary (its
    # Unix socket is a file: it still answers there)
    flags = netns.run(['ip', '-o', 'link', 'show', A['veth']]).stdout.split('<', 1)[1].split('>', 1)[0]
    assert 'UP' not in flags.split(','), flags
    with pytest.raises(psycopg2.OperationalError):
        connect(BLOCK_A).close()
    assert hosts.psql('a', 'SELECT pg_is_in_recovery()') == 'f'
    assert sql(BLOCK_B, 'SELECT pg_is_in_recovery()')[0][0] is False
    # RPO: the writes the drill calls lost are on a (acknowledged there) and missing on b
    on_a = set(int(i) for i in hosts.psql('a', 'SELECT id FROM dbdevops_drill_probe').split())
    on_b = probe_ids(BLOCK_B)
    assert set(result['lost_ids']) <= on_a - on_b and result['rpo_writes_lost'] == len(result['lost_ids'])
    assert len(on_a) > 5
    t_drill = time.monotonic() - t0

    # c) the link comes back: two primaries until the rejoin, run on a over SSH, fences a first
    hosts.link('a', 'up')
    assert sql(BLOCK_A, 'SELECT pg_is_in_recovery()')[0][0] is False
    rejoin = netns.run_playbook_over_ssh('failover_drill.yml', inv, tmp_path,
                                         extravars=dict(failover_drill_hosts='hosta'))
    assert rejoin.status == 'successful', rejoin
    done = rejoin.stats['dbdevops_failover_drill']['hosta']
    assert done['passed'] is True and done['rejoined'] is True and done['streaming'] is True, done
    assert done['old_primary_state'] == 'primary' and done['rewind_seconds'] > 0
    assert done['data_check']['equal'] is True
    assert rejoin.changed('hosta') == 1
    assert sql(BLOCK_A, 'SELECT status, sender_host, sender_port FROM pg_stat_wal_receiver') == [
        ('streaming', B['addr'], B['port'])]
    assert sql(BLOCK_B, "SELECT host(client_addr), state FROM pg_stat_replication") == [(A['addr'], 'streaming')]
    assert on_b <= probe_ids(BLOCK_A)
    nodes = run_module(replication_info, dict(login_user='postgres', login_password=PASSWORD, nodes=[
        dict(BLOCK_A, name='hosta'), dict(BLOCK_B, name='hostb')]))
    assert not nodes['failed'], nodes.get('msg')
    assert nodes['summary']['primary'] == 'hostb' and nodes['summary']['streaming_ok'] is True
    assert [n['role'] for n in nodes['nodes']] == ['standby', 'primary']
    # the same rejoin again: a already streams from b
    again = netns.run_playbook_over_ssh('failover_drill.yml', inv, tmp_path,
                                        extravars=dict(failover_drill_hosts='hosta'))
    assert again.status == 'successful' and again.changed('hosta') == 0, again

    # d) the rejoin the wrong way round: on b, with a (a standby) named as the new primary
    wrong = netns.run_playbook_over_ssh('failover_drill.yml', inv, tmp_path, extravars=dict(
        failover_drill_hosts='hostb', failover_drill_mode='rejoin', failover_drill_primary=BLOCK_B,
        failover_drill_standby=BLOCK_A, failover_drill_primary_cluster='15/' + B['cluster']))
    assert wrong.status == 'failed'
    published = wrong.stats['dbdevops_failover_drill']['hostb']
    assert published['failed'] is True and 'not a primary' in published['error'] \
        and 'nothing was touched' in published['error']
    assert sql(BLOCK_B, 'SELECT pg_is_in_recovery()')[0][0] is False
    assert sql(BLOCK_A, 'SELECT status FROM pg_stat_wal_receiver') == [('streaming',)]
    t_rejoin = time.monotonic() - t0

    # e) nothing left behind
    hosts.down()
    left = netns.leftovers()
    assert not any(left.values()), left
    print('built %.1f s, drill %.1f s, rejoin %.1f s, total %.1f s'
          % (t_built, t_drill - t_built, t_rejoin - t_drill, time.monotonic() - t0))
