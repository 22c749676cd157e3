"""playbooks/monitoring.yml as AWX runs it (ansible-runner, settings in the inventory): success and failure paths."""

import os
import shutil
import subprocess

import pytest

from tests.harness.pgcluster import free_port
from tests.harness.runner import run_playbook


def _psql(port, sql):
    done = subprocess.run(['runuser', '-u', 'postgres', '--', 'psql', '-XAt', '-p', str(port), '-c', sql],
                          check=True, capture_output=True, text=True)
    return done.stdout.strip()


@pytest.fixture
def cluster():
    """A Debian-layout cluster of the test's own (15/monrun<pid>) preloading pg_prewarm; removed afterwards."""
    name, port = 'monrun%d' % os.getpid(), free_port()
    subprocess.run(['pg_createcluster', '15', name, '-p', str(port)], check=True, capture_output=True)
    with open('/etc/postgresql/15/%s/conf.d/other.conf' % name, 'w') as handle:
        handle.write("shared_preload_libraries = 'pg_prewarm'\n")
    subprocess.run(['pg_ctlcluster', '15', name, 'start'], check=True, capture_output=True)
    yield name, port
    subprocess.run(['pg_dropcluster', '--stop', '15', name], check=False, capture_output=True)
    shutil.rmtree('/etc/postgresql/15/%s' % name, ignore_errors=True)
    for path in ('/etc/logrotate.d/dbdevops-postgresql-15-%s' % name, '/var/log/postgresql/postgresql-15-%s.log' % name):
        if os.path.exists(path):
            os.remove(path)


def test_monitoring_from_the_inventory_publishes_what_it_did(cluster, tmp_path):
    name, port = cluster
    hostvars = dict(monitoring_cluster_name=name, monitoring_port=port, monitoring_log_min_duration_statement='2s')
    done = run_playbook('monitoring.yml', hostvars, tmp_path)
    assert done.status == 'successful' and done.rc == 0, done
    published = done.stats['dbdevops_monitoring']['localhost']
    assert published['failed'] is False and published['error'] == ''
    assert published['cluster'] == '15/%s' % name
    assert published['preload'] == ['pg_prewarm', 'pg_stat_statements']   # the existing entry kept, first
    assert published['restarted'] is True
    assert published['enabled'] == dict(exporter=False, alert_rules=False, pgaudit=False, pgbadger=False,
                                        health_report=False)
    assert _psql(port, 'SHOW shared_preload_libraries') == 'pg_prewarm, pg_stat_statements'
    assert _psql(port, 'SHOW log_min_duration_statement') == '2s'
    assert 'pg_stat_statements' in _psql(port, 'SELECT extname FROM pg_extension').split()
    assert os.path.exists('/etc/logrotate.d/dbdevops-postgresql-15-%s' % name)

    again = run_playbook('monitoring.yml', hostvars, tmp_path)
    assert again.status == 'successful', again
    assert again.stats['dbdevops_monitoring']['localhost']['restarted'] is False   # nothing changed: no restart
    assert again.changed() == 0


def test_monitoring_of_a_missing_cluster_fails_and_says_so(tmp_path):
    name = 'nosuch%d' % os.getpid()
    done = run_playbook('monitoring.yml', dict(monitoring_cluster_name=name, monitoring_port=free_port()), tmp_path)
    assert done.status == 'failed' and done.rc != 0
    published = done.stats['dbdevops_monitoring']['localhost']
    assert published['failed'] is True
    assert 'cluster 15/%s does not exist' % name in published['error'] and 'Nothing was changed' in published['error']
    assert not os.path.exists('/etc/logrotate.d/dbdevops-postgresql-15-%s' % name)
