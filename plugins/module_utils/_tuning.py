# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Internal: server tuning computed from host memory and CPUs, and conf-file quoting.

Used by the ``server`` role through the ``dbdevops.postgresql.server_tuning``
filter.  Plain Python, no Ansible import, so unit tests call it directly.

The rules follow the widely used pgtune heuristics:

* ``shared_buffers`` 25 % of RAM (desktop: 1/16), ``effective_cache_size`` 75 %
  (desktop: 25 %);
* ``maintenance_work_mem`` RAM/16 (data warehouse: RAM/8), at most 2 GB;
* ``work_mem`` = (RAM - shared_buffers) / (3 x max_connections) / parallel
  workers per gather, at least 64 kB (data warehouse: halved, desktop: /6);
* ``max_wal_size`` / ``min_wal_size`` by workload; ``checkpoint_completion_target`` 0.9;
* ``random_page_cost`` 1.1 and ``effective_io_concurrency`` 200 on SSD
  (HDD: 4 and 2; SAN: 1.1 and 300);
* parallel-query workers only from 4 CPUs up (below that the defaults win).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import math

from ansible_collections.dbdevops.postgresql.plugins.module_utils.errors import DbDevopsError

WORKLOADS = ('web', 'oltp', 'dw', 'mixed', 'desktop')
STORAGE_TYPES = ('ssd', 'hdd', 'san')

_KB_PER_MB = 1024
_KB_PER_GB = 1024 * 1024

_MAX_CONNECTIONS = {'web': 200, 'oltp': 300, 'dw': 40, 'mixed': 100, 'desktop': 20}
# (min_wal_size, max_wal_size) in kB
_WAL_SIZES = {
    'web': (1 * _KB_PER_GB, 4 * _KB_PER_GB),
    'oltp': (2 * _KB_PER_GB, 8 * _KB_PER_GB),
    'dw': (4 * _KB_PER_GB, 16 * _KB_PER_GB),
    'mixed': (1 * _KB_PER_GB, 4 * _KB_PER_GB),
    'desktop': (100 * _KB_PER_MB, 2 * _KB_PER_GB),
}
_RANDOM_PAGE_COST = {'ssd': 1.1, 'san': 1.1, 'hdd': 4.0}
_IO_CONCURRENCY = {'ssd': 200, 'san': 300, 'hdd': 2}
_MAINTENANCE_WORK_MEM_CAP_KB = 2 * _KB_PER_GB
_WORK_MEM_MIN_KB = 64


class TuningError(DbDevopsError):
    """Inputs the tuning cannot work with (the message names the input)."""


def format_memory_kb(kb):
    """Render kB as PostgreSQL renders it in SHOW: the largest unit that divides exactly."""
    kb = int(kb)
    if kb <= 0:
        raise TuningError('a memory size must be positive, got %r kB' % kb)
    for unit, size in (('TB', _KB_PER_GB * 1024), ('GB', _KB_PER_GB), ('MB', _KB_PER_MB)):
        if kb % size == 0:
            return '%d%s' % (kb // size, unit)
    return '%dkB' % kb


def _floor_mb(kb):
    """Round down to whole MB (keeps values readable) unless that would give 0."""
    return (kb // _KB_PER_MB) * _KB_PER_MB if kb >= _KB_PER_MB else kb


def _positive_int(name, value):
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise TuningError('%s must be a whole number, got %r' % (name, value))
    if number <= 0:
        raise TuningError('%s must be greater than 0, got %r' % (name, value))
    return number


def compute_tuning(memory_mb, cpus, storage='ssd', workload='mixed', max_connections=None):
    """Return a dict of postgresql.conf settings tuned for this host.

    memory_mb       RAM the cluster may use, in MB (usually ansible_memtotal_mb)
    cpus            CPUs the cluster may use (usually ansible_processor_vcpus)
    storage         'ssd', 'hdd' or 'san'
    workload        'web', 'oltp', 'dw', 'mixed' or 'desktop'
    max_connections overrides the workload's default; work_mem follows it
    """
    memory_kb = _positive_int('memory_mb', memory_mb) * _KB_PER_MB
    cpus = _positive_int('cpus', cpus)
    if storage not in STORAGE_TYPES:
        raise TuningError('storage must be one of %s, got %r' % (', '.join(STORAGE_TYPES), storage))
    if workload not in WORKLOADS:
        raise TuningError('workload must be one of %s, got %r' % (', '.join(WORKLOADS), workload))
    if max_connections is None:
        max_connections = _MAX_CONNECTIONS[workload]
    max_connections = _positive_int('max_connections', max_connections)

    shared_buffers_kb = _floor_mb(memory_kb // 16 if workload == 'desktop' else memory_kb // 4)
    effective_cache_kb = _floor_mb(memory_kb // 4 if workload == 'desktop' else memory_kb * 3 // 4)
    maintenance_kb = _floor_mb(memory_kb // 8 if workload == 'dw' else memory_kb // 16)
    maintenance_kb = min(maintenance_kb, _MAINTENANCE_WORK_MEM_CAP_KB)
    min_wal_kb, max_wal_kb = _WAL_SIZES[workload]

    settings = {
        'max_connections': max_connections,
        'shared_buffers': format_memory_kb(shared_buffers_kb),
        'effective_cache_size': format_memory_kb(effective_cache_kb),
        'maintenance_work_mem': format_memory_kb(maintenance_kb),
        'checkpoint_completion_target': 0.9,
        'min_wal_size': format_memory_kb(min_wal_kb),
        'max_wal_size': format_memory_kb(max_wal_kb),
        'random_page_cost': _RANDOM_PAGE_COST[storage],
        'effective_io_concurrency': _IO_CONCURRENCY[storage],
    }

    workers_per_gather = 1
    if cpus >= 4:
        workers_per_gather = min(4, int(math.ceil(cpus / 2.0)))
        settings.update({
            'max_worker_processes': cpus,
            'max_parallel_workers': cpus,
            'max_parallel_workers_per_gather': workers_per_gather,
            'max_parallel_maintenance_workers': workers_per_gather,
        })

    work_mem_kb = (memory_kb - shared_buffers_kb) // (max_connections * 3) // workers_per_gather
    if workload == 'dw':
        work_mem_kb //= 2
    elif workload == 'desktop':
        work_mem_kb //= 6
    settings['work_mem'] = format_memory_kb(max(work_mem_kb, _WORK_MEM_MIN_KB))
    return settings


def conf_value(value):
    """Quote a value for postgresql.conf: numbers bare, booleans on/off, the rest quoted."""
    if isinstance(value, bool):
        return 'on' if value else 'off'
    if isinstance(value, (int, float)):
        return repr(value) if isinstance(value, float) else str(value)
    if isinstance(value, (list, tuple)):
        # list-valued settings (listen_addresses, shared_preload_libraries, ...)
        value = ','.join(str(item) for item in value)
    text = str(value)
    if '\n' in text or '\r' in text:
        raise TuningError('a postgresql.conf value cannot span lines: %r' % text)
    return "'%s'" % text.replace('\\', '\\\\').replace("'", "''")
