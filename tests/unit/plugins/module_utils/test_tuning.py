"""Tuning computation of the server role (plugins/module_utils/_tuning.py)."""

import pytest

from ansible_collections.dbdevops.postgresql.plugins.module_utils._tuning import (
    TuningError, compute_tuning, conf_value, format_memory_kb)


@pytest.mark.parametrize('kb, text', [
    (1024 * 1024, '1GB'), (6026 * 1024, '6026MB'), (2048, '2MB'), (7864, '7864kB'), (64, '64kB'),
    (1024 ** 3, '1TB'),
])
def test_format_memory_matches_how_postgresql_shows_it(kb, text):
    assert format_memory_kb(kb) == text


def test_16gb_4cpu_ssd_mixed():
    t = compute_tuning(16384, 4, storage='ssd', workload='mixed')
    assert t['shared_buffers'] == '4GB'            # 25 %
    assert t['effective_cache_size'] == '12GB'     # 75 %
    assert t['maintenance_work_mem'] == '1GB'      # RAM / 16
    assert t['max_connections'] == 100
    assert t['checkpoint_completion_target'] == 0.9
    assert t['random_page_cost'] == 1.1
    assert t['effective_io_concurrency'] == 200
    assert t['max_wal_size'] == '4GB' and t['min_wal_size'] == '1GB'
    assert t['max_worker_processes'] == 4
    assert t['max_parallel_workers_per_gather'] == 2
    # (16 GB - 4 GB) / (100 * 3) / 2 workers per gather = 20971 kB
    assert t['work_mem'] == '20971kB'


def test_uneven_memory_rounds_down_to_whole_megabytes():
    t = compute_tuning(24105, 2)
    assert t['shared_buffers'] == '6026MB'
    assert t['effective_cache_size'] == '18078MB'


def test_hdd_keeps_the_spinning_disk_page_cost():
    t = compute_tuning(4096, 2, storage='hdd')
    assert t['random_page_cost'] == 4.0
    assert t['effective_io_concurrency'] == 2


def test_few_cpus_leave_parallel_settings_to_postgresql():
    t = compute_tuning(4096, 2)
    assert 'max_worker_processes' not in t
    assert 'max_parallel_workers_per_gather' not in t


def test_many_cpus_cap_workers_per_gather_at_four():
    t = compute_tuning(65536, 32)
    assert t['max_parallel_workers_per_gather'] == 4
    assert t['max_parallel_workers'] == 32


def test_maintenance_work_mem_is_capped_at_2gb():
    assert compute_tuning(262144, 8)['maintenance_work_mem'] == '2GB'


def test_more_connections_mean_less_work_mem():
    few = compute_tuning(8192, 2, max_connections=50)
    many = compute_tuning(8192, 2, max_connections=500)
    assert few['max_connections'] == 50 and many['max_connections'] == 500
    assert int(few['work_mem'][:-2]) > int(many['work_mem'][:-2])


def test_work_mem_never_drops_below_64kb():
    assert compute_tuning(256, 1, max_connections=5000)['work_mem'] == '64kB'


def test_workload_profiles():
    assert compute_tuning(8192, 2, workload='oltp')['max_connections'] == 300
    assert compute_tuning(8192, 2, workload='dw')['max_wal_size'] == '16GB'
    assert compute_tuning(8192, 2, workload='desktop')['shared_buffers'] == '512MB'


def test_tiny_memory_still_gives_valid_sizes():
    t = compute_tuning(1, 1)
    assert t['shared_buffers'] == '256kB'
    assert t['maintenance_work_mem'] == '64kB'


@pytest.mark.parametrize('kwargs, message', [
    (dict(memory_mb=0, cpus=2), 'memory_mb must be greater than 0'),
    (dict(memory_mb='lots', cpus=2), "memory_mb must be a whole number, got 'lots'"),
    (dict(memory_mb=1024, cpus=2, storage='nvme'), "storage must be one of ssd, hdd, san, got 'nvme'"),
    (dict(memory_mb=1024, cpus=2, workload='batch'), "workload must be one of"),
])
def test_bad_inputs_name_the_input(kwargs, message):
    with pytest.raises(TuningError, match=message):
        compute_tuning(**kwargs)


@pytest.mark.parametrize('value, text', [
    (True, 'on'), (False, 'off'), (100, '100'), (0.9, '0.9'), ('6GB', "'6GB'"),
    ("it's", "'it''s'"), (['localhost', '10.0.0.5'], "'localhost,10.0.0.5'"),
    ('C:\\dir', "'C:\\\\dir'"),
])
def test_conf_value_quoting(value, text):
    assert conf_value(value) == text


def test_conf_value_refuses_newlines():
    with pytest.raises(TuningError, match='cannot span lines'):
        conf_value("a\nlisten_addresses = '*'")
