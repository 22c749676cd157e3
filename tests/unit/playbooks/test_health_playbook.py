"""playbooks/health.yml as AWX runs it: ansible-runner, the connection in inventory host vars, no -e."""

import os

import pytest
import yaml

from tests.harness import REPO_ROOT
from tests.harness.pgcluster import SUPERUSER_PASSWORD, free_port
from tests.harness.runner import run_playbook


def test_health_info_takes_the_group_connection_defaults():
    """The playbook sets the connection for group/dbdevops.postgresql.postgresql; health_info must be in it."""
    with open(os.path.join(REPO_ROOT, 'meta', 'runtime.yml')) as handle:
        runtime = yaml.safe_load(handle)
    assert 'health_info' in runtime['action_groups']['postgresql'], \
        'add health_info to action_groups.postgresql in meta/runtime.yml'


@pytest.fixture
def hostvars(pg_factory):
    cluster = pg_factory()
    conn = cluster.conn_params(password=True)
    return cluster, dict(dbdevops_login_host=conn['login_host'], dbdevops_login_port=conn['login_port'],
                         dbdevops_login_user=conn['login_user'], dbdevops_login_password=conn['login_password'],
                         dbdevops_become=False, health_options=dict(memory_mb=1024, cpus=2))


def _host(done):
    return done.stats['dbdevops_health']['localhost']


def test_healthy_server_is_published_ok(hostvars, tmp_path):
    _cluster, inventory = hostvars
    done = run_playbook('health.yml', inventory, tmp_path)
    assert done.status == 'successful' and done.rc == 0, done
    published = _host(done)
    assert published['failed'] is False and published['error'] == '' and published['status'] == 'ok'
    assert published['counts']['ok'] >= 13 and published['counts']['critical'] == 0
    assert published['checks']['connection'] == 'ok' and published['checks']['blocking_locks'] == 'ok'
    assert SUPERUSER_PASSWORD not in repr(done.events)


def test_warning_is_published_and_fails_only_with_fail_on_warning(hostvars, tmp_path):
    cluster, inventory = hostvars
    cluster.sql('CREATE TABLE t (id int PRIMARY KEY, v int); CREATE INDEX t_v ON t (v)')
    inventory['health_options'] = dict(inventory['health_options'], unused_index_min_bytes=0,
                                       skip_checks=['cache_hit'])
    passed = run_playbook('health.yml', inventory, tmp_path)
    assert passed.status == 'successful', passed
    assert _host(passed)['status'] == 'warning' and _host(passed)['failed'] is False
    assert [p for p in _host(passed)['problems'] if p.startswith('warning unused_indexes: ')]

    failed = run_playbook('health.yml', dict(inventory, health_fail_on='warning'), tmp_path)
    assert failed.status == 'failed' and failed.rc != 0, failed
    published = _host(failed)
    assert published['failed'] is True and published['status'] == 'warning'
    assert 'warning unused_indexes: ' in published['error']


def test_server_down_is_published_critical_then_fails(hostvars, tmp_path):
    _cluster, inventory = hostvars
    done = run_playbook('health.yml', dict(inventory, dbdevops_login_port=free_port()), tmp_path)
    assert done.status == 'failed' and done.rc != 0, done
    published = _host(done)
    assert published['failed'] is True and published['status'] == 'critical'
    assert published['checks']['connection'] == 'critical' and published['counts']['critical'] == 1
    assert 'critical connection: cannot connect' in published['error'] and 'refused' in published['error']
    assert [m for m in done.failures() if m and 'refused' in m]


def test_bad_option_is_published_with_its_error(hostvars, tmp_path):
    _cluster, inventory = hostvars
    done = run_playbook('health.yml', dict(inventory, health_fail_on='sometimes'), tmp_path)
    assert done.status == 'failed'
    assert _host(done)['failed'] is True and 'set it to critical, warning or never' in _host(done)['error']
