"""Tuning advice: the server role's numbers against live settings and statistics; apply in check mode and for real."""

from ansible_collections.dbdevops.postgresql.plugins.module_utils import _tuning
from ansible_collections.dbdevops.postgresql.plugins.module_utils.connection import ConnParams
from ansible_collections.dbdevops.postgresql.plugins.module_utils.health import advice
from ansible_collections.dbdevops.postgresql.plugins.module_utils.health.engine import HealthEngine, HealthOptions

from .conftest import run_health, wait_until

LOW = ['effective_cache_size', 'effective_io_concurrency', 'min_wal_size', 'random_page_cost']


def _engine(cluster, **options):
    options = dict(dict(fail_on='never', memory_mb=1024, cpus=2), **options)
    return HealthEngine(ConnParams.from_params(cluster.conn_params()), HealthOptions(**options))


def _live(cluster, *names):
    return dict(cluster.sql('SELECT name, current_setting(name) FROM pg_settings WHERE name = ANY(%s)',
                            (list(names),)))


def _by_setting(report):
    return dict((r['setting'], r) for r in report['advice'])


def test_recommendations_are_the_server_roles_numbers(fresh):
    report = run_health(fresh, memory_mb=2048, cpus=2, tuning_workload='oltp')
    tuned = _tuning.compute_tuning(2048, 2, 'ssd', 'oltp', max_connections=40)
    recs = _by_setting(report)
    assert recs['effective_cache_size']['recommended'] == tuned['effective_cache_size'] == '1536MB'
    assert recs['effective_cache_size']['current'] == '4GB'
    assert recs['shared_buffers']['recommended'] == tuned['shared_buffers']
    assert recs['shared_buffers']['needs_restart'] is True and recs['shared_buffers']['risk'] == 'medium'
    assert recs['random_page_cost'] == dict(
        setting='random_page_cost', current='4', recommended='1.1', risk='low', needs_restart=False,
        source='tuning', action='advice',
        reason='the server role computes 1.1 for 2048 MB of memory, 2 CPU(s), ssd storage and a oltp workload')
    assert 'max_connections' not in recs                          # the live value is what work_mem is tuned for
    assert 'checkpoint_completion_target' not in recs             # already 0.9 on PostgreSQL 15
    assert report['tuning_inputs']['memory_mb'] == 2048 and report['changed'] is False and report['applied'] == []


def test_statistics_add_their_reasons(fresh, monkeypatch):
    for _checkpoint in range(advice.CHECKPOINTS_MIN):
        fresh.sql('CHECKPOINT')
    fresh.sql("SET work_mem = '64kB'; SELECT count(*) FROM (SELECT g FROM generate_series(1, 200000) g ORDER BY g DESC) s")
    wait_until(lambda: fresh.sql('SELECT sum(temp_files) > 0 FROM pg_stat_database')[0][0], what='temp files')
    monkeypatch.setattr(advice, 'TEMP_BYTES_MIN', 1)
    report = run_health(fresh, connections_warning_pct=1, cache_hit_warning_pct=100, cache_hit_min_reads=0)
    recs = _by_setting(report)
    assert 'checkpoints were requested by WAL volume' in recs['max_wal_size']['reason']
    assert recs['max_wal_size']['recommended'] == '4GB'           # the role's value, above twice the live 1GB
    assert 'temporary files' in recs['work_mem']['reason']
    assert recs['max_connections']['risk'] == 'high' and recs['max_connections']['needs_restart'] is True
    assert recs['max_connections']['recommended'] == '60' and 'pooler' in recs['max_connections']['reason']
    assert 'cache hit ratio is' in recs['shared_buffers']['reason']
    assert report['tuning_inputs']['checkpoints_requested'] >= advice.CHECKPOINTS_MIN


def test_apply_check_mode_then_real_then_nothing_left(fresh):
    before = _live(fresh, *LOW)
    engine = _engine(fresh, apply=True)
    checked = engine.plan().result()                              # check mode
    assert checked['changed'] is True and checked['applied'] == LOW
    assert checked['diff'] == dict(before=dict((k, before[k]) for k in LOW),
                                   after=dict(effective_cache_size='768MB', effective_io_concurrency='200',
                                              min_wal_size='1GB', random_page_cost='1.1'))
    assert set(r['action'] for r in checked['advice'] if r['setting'] in LOW) == {'would apply'}
    assert set(r['action'] for r in checked['advice'] if r['setting'] not in LOW) == {'advice'}
    assert _live(fresh, *LOW) == before                           # nothing changed

    done = engine.apply(engine.plan())
    assert done['changed'] is True and done['applied'] == LOW
    assert set(r['action'] for r in done['advice'] if r['setting'] in LOW) == {'applied'}
    assert _live(fresh, *LOW) == dict(effective_cache_size='768MB', effective_io_concurrency='200',
                                      min_wal_size='1GB', random_page_cost='1.1')
    assert _live(fresh, 'shared_buffers') == dict(shared_buffers='32MB')    # needs a restart: advice only

    again = _engine(fresh, apply=True)
    second = again.apply(again.plan())
    assert second['changed'] is False and second['applied'] == [] and second['diff'] is None
    assert 'shared_buffers' in _by_setting(second)


def test_without_apply_nothing_is_written(fresh):
    engine = _engine(fresh)
    result = engine.apply(engine.plan())
    assert result['changed'] is False and result['applied'] == [] and result['advice']
    assert _live(fresh, 'random_page_cost') == dict(random_page_cost='4')
