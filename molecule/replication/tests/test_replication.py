"""Verify the replica role on this machine: 15/dbdrep_primary (port 5462) streams to
15/dbdrep_standby (port 5463); side_effect.yml's runs (check mode, a broken standby,
a rebuild) are judged from the results it saved.

The machine carries both inventory names; the SQL runs as the postgres OS user over
the Unix socket (peer), like the role does.
"""

import json
import os
import re
import time

import pytest
import testinfra.utils.ansible_runner
import yaml

SCENARIO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
with open(os.path.join(SCENARIO, 'vars', 'main.yml')) as f:
    VARS = yaml.safe_load(f)

# one name is enough: both are this machine
testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(
    os.environ['MOLECULE_INVENTORY_FILE']).get_hosts('dbdrep-primary')

VERSION = VARS['replica_version']
PRIMARY_PORT = VARS['replica_primary_port']
STANDBY_PORT = VARS['replica_port']
STANDBY = VARS['replica_cluster_name']
STANDBY_CONF = '/etc/postgresql/%s/%s' % (VERSION, STANDBY)
PASSFILE = STANDBY_CONF + '/dbdevops-replica.pgpass'
RECAP = re.compile(r'^(dbdrep-\w+)\s*:\s*ok=\d+\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)', re.M)


def sql(host, port, query):
    out = host.check_output("runuser -u postgres -- psql -X -p %d -d postgres -Atc %s" % (port, _quote(query)))
    return out.strip()


def _quote(text):
    return "'" + text.replace("'", "'\\''") + "'"


def recap(run):
    found = RECAP.findall(run['stdout'])
    assert found, 'no PLAY RECAP in the output:\n' + run['stdout'][-2000:]
    return {name: dict(changed=int(c), unreachable=int(u), failed=int(f)) for name, c, u, f in found}


@pytest.fixture(scope='module')
def results():
    path = os.path.join(os.environ['MOLECULE_EPHEMERAL_DIRECTORY'], 'side_effect_results.json')
    if not os.path.exists(path):
        pytest.fail('%s is missing: side_effect.yml did not run (run "molecule test", not only "verify")' % path)
    with open(path) as f:
        return json.load(f)


# --- replication -------------------------------------------------------------

def test_both_clusters_online_on_their_own_ports(host):
    out = host.check_output('pg_lsclusters -h')
    lines = {line.split()[1]: line.split() for line in out.splitlines()}
    assert lines[VARS['replica_primary_cluster_name']][2:4] == [str(PRIMARY_PORT), 'online']
    assert lines[STANDBY][2:4] == [str(STANDBY_PORT), 'online,recovery']


def test_standby_is_in_recovery_and_streams_from_the_primary(host):
    assert sql(host, STANDBY_PORT, 'SELECT pg_is_in_recovery()') == 't'
    row = sql(host, STANDBY_PORT, 'SELECT status, sender_host, sender_port, slot_name FROM pg_stat_wal_receiver')
    assert row == 'streaming|127.0.0.1|%d|dbdrep_standby' % PRIMARY_PORT


def test_primary_sees_the_standby_streaming_synchronously(host):
    row = sql(host, PRIMARY_PORT, "SELECT state, sync_state FROM pg_stat_replication WHERE application_name = 'dbdrep_standby'")
    assert row == 'streaming|sync'
    assert sql(host, PRIMARY_PORT, 'SHOW synchronous_standby_names') == 'FIRST 1 ("dbdrep_standby")'


def test_slot_is_active(host):
    assert sql(host, PRIMARY_PORT, "SELECT slot_type, active FROM pg_replication_slots WHERE slot_name = 'dbdrep_standby'") == 'physical|t'


def test_row_written_on_the_primary_appears_on_the_standby(host):
    marker = 'verify-%d' % time.time_ns()
    sql(host, PRIMARY_PORT, "INSERT INTO items (id, name) VALUES ((SELECT coalesce(max(id), 0) + 1 FROM items), '%s')" % marker)
    for _attempt in range(50):
        if sql(host, STANDBY_PORT, "SELECT count(*) FROM items WHERE name = '%s'" % marker) == '1':
            break
        time.sleep(0.1)
    else:
        pytest.fail('the row written on the primary did not reach the standby in 5 s')


@pytest.mark.parametrize('port', [PRIMARY_PORT, STANDBY_PORT])
def test_settings(host, port):
    assert sql(host, port, 'SHOW wal_log_hints') == 'on'
    assert sql(host, port, 'SHOW wal_level') == 'replica'
    assert sql(host, port, 'SHOW hot_standby') == 'on'
    assert sql(host, port, 'SELECT count(*) FROM pg_settings WHERE pending_restart') == '0'


def test_replication_role_has_a_scram_password(host):
    row = sql(host, PRIMARY_PORT, "SELECT rolreplication, rolcanlogin, rolsuper, rolpassword LIKE 'SCRAM-SHA-256$%' "
                                  "FROM pg_authid WHERE rolname = 'replicator'")
    assert row == 't|t|f|t'


def test_hba_allows_the_standby_for_replication_only(host):
    rules = sql(host, PRIMARY_PORT, "SELECT type, database, user_name, address, auth_method FROM pg_hba_file_rules "
                                    "WHERE 'replicator' = ANY(user_name)")
    assert rules == 'host|{replication}|{replicator}|127.0.0.1|scram-sha-256'


# --- the password ----------------------------------------------------------------

def test_passfile_is_private_and_named_by_primary_conninfo(host):
    f = host.file(PASSFILE)
    assert f.user == 'postgres' and f.mode == 0o600
    conninfo = sql(host, STANDBY_PORT, 'SHOW primary_conninfo')
    assert 'passfile=' in conninfo and PASSFILE in conninfo
    assert 'application_name=dbdrep_standby' in conninfo
    assert 'password' not in conninfo.replace('passfile', '')


def test_password_is_in_no_file_but_the_passfile_and_in_no_output(host, results):
    password = VARS['replica_password']
    for path in [STANDBY_CONF + '/conf.d/dbdevops-standby.conf',
                 '/var/lib/postgresql/%s/%s/postgresql.auto.conf' % (VERSION, STANDBY)]:
        assert password not in host.file(path).content_string
    for run in results.values():
        assert password not in run['stdout']


def test_standby_settings_file(host):
    f = host.file(STANDBY_CONF + '/conf.d/dbdevops-standby.conf')
    assert f.user == 'postgres' and f.mode == 0o640
    text = f.content_string
    assert 'Ansible managed' in text
    primary_max_connections = sql(host, PRIMARY_PORT, 'SHOW max_connections')
    assert 'max_connections = %s\n' % primary_max_connections in text


# --- side effects ------------------------------------------------------------------

def test_check_mode_on_converged_hosts_reports_no_change(results):
    run = results['check']
    assert int(run['rc']) == 0, run['stdout'][-3000:]
    for name, counts in recap(run).items():
        assert counts == dict(changed=0, unreachable=0, failed=0), name


def test_rebuild_never_overwrites_a_primary(results):
    run = results['primary']
    assert int(run['rc']) != 0
    assert ('%s/%s on dbdrep-standby (port %d) is not in recovery and 1 standbys stream from it: it is a primary, '
            'and replica_rebuild never overwrites one. Nothing was changed.'
            % (VERSION, VARS['replica_primary_cluster_name'], PRIMARY_PORT)) in run['stdout']
    assert recap(run)['dbdrep-standby']['changed'] == 0


def test_broken_standby_is_refused_with_what_to_do_and_left_alone(results):
    run = results['broken']
    assert int(run['rc']) != 0
    out = run['stdout']
    assert ('The standby %s/%s on dbdrep-standby (port %d) is broken: it is not in recovery: it was promoted, '
            'or it is a primary of its own. Nothing was changed.' % (VERSION, STANDBY, STANDBY_PORT)) in out
    assert 'run again with -e replica_rebuild=true' in out
    assert recap(run)['dbdrep-standby']['changed'] == 0
    after = run['after']
    assert after['in_recovery'] is False and after['has_promoted_only'] is True


def test_rebuild_brings_the_standby_back(results):
    run = results['rebuild']
    assert int(run['rc']) == 0, run['stdout'][-3000:]
    assert recap(run)['dbdrep-standby']['changed'] > 0
    after = run['after']
    assert after == dict(in_recovery=True, has_promoted_only=False, receiver='streaming')


@pytest.mark.parametrize('mode', ['switchover', 'failover'])
def test_drill_there_and_back_loses_no_acknowledged_write(host, mode):
    """side_effect.yml drilled the pair after the rebuild: synchronous replication, so neither a
    switchover nor an immediate-stop failover may lose an acknowledged write; both end in the
    original roles, streaming again."""
    path = os.path.join(os.environ['MOLECULE_EPHEMERAL_DIRECTORY'], 'drill_results.json')
    with open(path) as handle:
        drill = json.load(handle)[mode]
    assert drill['passed'] is True, drill.get('verdict_reasons')
    assert drill['rpo_writes_lost'] == 0 and drill['lost_ids'] == []
    assert drill['rto_seconds'] > 0 and drill['timeline_after'] > drill['timeline_before']
    assert drill['rejoined'] and drill['two_primaries'] is False
    assert drill['primary_after'].startswith('primary')


def test_pair_streams_in_the_original_roles_after_the_drills(host):
    assert sql(host, PRIMARY_PORT, 'SELECT pg_is_in_recovery()') == 'f'
    assert sql(host, STANDBY_PORT, 'SELECT pg_is_in_recovery()') == 't'
    assert sql(host, PRIMARY_PORT, "SELECT state || ':' || sync_state FROM pg_stat_replication") == 'streaming:sync'
