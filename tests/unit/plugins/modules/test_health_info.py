"""health_info as Ansible runs it: argument parsing, check mode, diff, fail_on, documented keys."""

import yaml

from ansible_collections.dbdevops.postgresql.plugins.modules import health_info
from tests.harness.modules import run_module
from tests.harness.pgcluster import SUPERUSER_PASSWORD, free_port

ANSIBLE_KEYS = {'changed', 'failed', 'warnings', 'deprecations', 'msg', 'invocation', 'diff'}
LOW = ['effective_cache_size', 'effective_io_concurrency', 'min_wal_size', 'random_page_cost']


def _args(cluster, **extra):
    return dict(cluster.conn_params(password=True), memory_mb=1024, cpus=2, **extra)


def _documented():
    doc = yaml.safe_load(health_info.RETURN)
    return set(doc), {k for k, v in doc.items() if v['returned'] == 'always'}


def test_healthy_server_check_mode_and_real_return_the_documented_keys(pg_factory):
    cluster = pg_factory()
    checked = run_module(health_info, _args(cluster), check=True)
    real = run_module(health_info, _args(cluster))
    keys, always = _documented()
    for result in (checked, real):
        assert not result['failed'], result.get('msg')
        assert result['status'] == 'ok' and result['changed'] is False
        assert set(result) - ANSIBLE_KEYS == keys == always
        assert result['summary'].startswith('127.0.0.1:%d/postgres: ok (' % cluster.port)
        assert result['counts']['ok'] >= 13
    assert SUPERUSER_PASSWORD not in repr(real)


def test_server_down_fails_by_default_with_the_whole_result(pg):
    args = dict(pg.conn_params(password=True), login_port=free_port())
    failed = run_module(health_info, args)
    assert failed['failed'] is True
    assert failed['msg'].startswith('PostgreSQL at 127.0.0.1:%d/postgres is critical (fail_on=critical): critical '
                                    'connection: cannot connect' % args['login_port'])
    assert 'refused' in failed['msg'] and 'Traceback' not in repr(failed)
    assert failed['status'] == 'critical' and failed['counts']['critical'] == 1 and len(failed['checks']) == 15
    reported = run_module(health_info, dict(args, fail_on='never'))
    assert reported['failed'] is False and reported['status'] == 'critical'


def test_wrong_password_fails_clearly_and_never_shows_it(pg):
    failed = run_module(health_info, dict(pg.conn_params(password='s3cret-wrong'), fail_on='warning'))
    assert failed['failed'] is True and 'password authentication failed' in failed['msg']
    assert 's3cret-wrong' not in repr(failed)


def test_fail_on_warning(pg_db):
    cluster, name = pg_db
    cluster.sql('CREATE TABLE t (id int PRIMARY KEY, v int); CREATE INDEX t_v ON t (v)', dbname=name)
    args = _args(cluster, db=name, unused_index_min_bytes=0, skip_checks=['cache_hit'])
    assert run_module(health_info, args)['status'] == 'warning'                 # fail_on critical: passes
    failed = run_module(health_info, dict(args, fail_on='warning'), check=True)  # check mode fails too
    assert failed['failed'] is True and 'warning unused_indexes' in failed['msg']
    assert failed['status'] == 'warning' and failed['checks']


def test_bad_options_are_refused_by_the_argument_spec(pg):
    wrong = run_module(health_info, dict(pg.conn_params(), fail_on='sometimes'))
    assert wrong['failed'] and 'fail_on' in wrong['msg'] and 'sometimes' in wrong['msg']
    unknown = run_module(health_info, dict(pg.conn_params(), skip_checks=['locks']))
    assert unknown['failed'] and 'skip_checks names unknown check(s) locks' in unknown['msg']


def test_apply_check_mode_diff_then_real_then_unchanged(pg_factory):
    cluster = pg_factory()
    args = _args(cluster, apply=True, fail_on='never')
    checked = run_module(health_info, args, check=True, diff=True)
    assert checked['changed'] is True and checked['applied'] == LOW
    assert checked['diff']['before']['random_page_cost'] == '4' and checked['diff']['after']['random_page_cost'] == '1.1'
    assert cluster.sql("SELECT current_setting('random_page_cost')") == [('4',)]
    real = run_module(health_info, args, diff=True)
    assert real['changed'] is True and real['applied'] == LOW
    assert cluster.sql("SELECT setting FROM pg_settings WHERE name IN ('random_page_cost', 'effective_cache_size') "
                       "ORDER BY name") == [('98304',), ('1.1',)]
    again = run_module(health_info, args, diff=True)
    assert again['changed'] is False and again['applied'] == [] and 'diff' not in again
    assert set(again) - ANSIBLE_KEYS == set(real) - ANSIBLE_KEYS
