# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Tuning advice: live settings against what the ``server`` role would set, and what the statistics say.

The recommended values are those of ``_tuning.compute_tuning`` (the same code
the ``server`` role's ``server_tuning`` filter runs), for this host's memory and
CPUs and the current ``max_connections``.  The statistics add their own
reasons: a low cache hit ratio (``shared_buffers``), connections near the
limit (``max_connections``), temporary files (``work_mem``) and checkpoints
requested by WAL volume rather than by time (``max_wal_size``).

    recs = advise(session, options, checks_by_name)
    # [{'setting': 'random_page_cost', 'current': '4', 'recommended': '1.1', 'reason': '...',
    #   'risk': 'low', 'needs_restart': False, 'source': 'tuning', 'action': 'advice'}]

Only low-risk settings that need no restart can be applied (``ALTER SYSTEM`` then
``pg_reload_conf()``).  No Ansible imports.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import math
import os
import re

from ansible_collections.dbdevops.postgresql.plugins.module_utils import _tuning

# How much harm a wrong value can do. Planner and I/O hints are low; memory and
# disk use are medium; what needs a restart or changes admission is at least medium.
RISK = dict(
    effective_cache_size='low', random_page_cost='low', effective_io_concurrency='low',
    checkpoint_completion_target='low', min_wal_size='low',
    work_mem='medium', maintenance_work_mem='medium', max_wal_size='medium', shared_buffers='medium',
    max_parallel_workers_per_gather='medium', max_parallel_maintenance_workers='medium',
    max_parallel_workers='medium', max_worker_processes='medium', max_connections='high',
)
# Memory settings within this ratio of the recommendation are left alone.
TOLERANCE = 0.10
TEMP_BYTES_MIN = 64 * 1024 * 1024
CHECKPOINTS_MIN = 5
_UNITS_KB = {'kB': 1, 'MB': 1024, 'GB': 1024 * 1024, 'TB': 1024 * 1024 * 1024}
_MEMORY_RE = re.compile(r'^\s*(\d+)\s*(kB|MB|GB|TB)?\s*$')


def host_memory_mb(meminfo='/proc/meminfo'):
    """MemTotal of this host in MB (None when it cannot be read)."""
    try:
        with open(meminfo) as handle:
            for line in handle:
                if line.startswith('MemTotal:'):
                    return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def host_cpus():
    return os.cpu_count()


def unit_kb(unit):
    """The size in kB of a pg_settings ``unit`` ('8kB', 'kB', 'MB'); None for a setting without memory unit."""
    match = re.match(r'^(\d*)\s*(kB|MB|GB|TB)$', unit or '')
    if not match:
        return None
    return int(match.group(1) or 1) * _UNITS_KB[match.group(2)]


def memory_kb(text):
    """'768MB' -> 786432; a bare number is kB."""
    match = _MEMORY_RE.match(str(text))
    if not match:
        return None
    return int(match.group(1)) * _UNITS_KB[match.group(2) or 'kB']


def _settings(session, names):
    with session.conn.cursor() as cur:
        cur.execute("""SELECT name, setting, unit, vartype, context, current_setting(name)
                         FROM pg_settings WHERE name = ANY(%s)""", (list(names),))
        return dict((r[0], dict(setting=r[1], unit=r[2], vartype=r[3], context=r[4], shown=r[5]))
                    for r in cur.fetchall())


def normalized(setting, value):
    """A live pg_settings row or a recommended value as a number to compare: kB for memory, else float."""
    if isinstance(value, dict):  # a pg_settings row
        size = unit_kb(value['unit'])
        number = float(value['setting'])
        return number * size if size else number
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    kb = memory_kb(value)
    return float(kb) if kb is not None else None


def differs(setting, live, recommended):
    current, target = normalized(setting, live), normalized(setting, recommended)
    if current is None or target is None:
        return False
    if unit_kb(live['unit']):
        return abs(current - target) > TOLERANCE * target
    return abs(current - target) > 1e-9


def _rec(setting, live, recommended, reason, source):
    return dict(setting=setting, current=live['shown'] if live else None, recommended=str(recommended),
                reason=reason, risk=RISK.get(setting, 'medium'),
                needs_restart=bool(live and live['context'] == 'postmaster'), source=source, action='advice')


def _format_kb(kb):
    return _tuning.format_memory_kb(int(kb))


def _stats(session):
    with session.conn.cursor() as cur:
        cur.execute('SELECT coalesce(sum(temp_files), 0)::bigint, coalesce(sum(temp_bytes), 0)::bigint '
                    'FROM pg_stat_database')
        temp_files, temp_bytes = cur.fetchone()
        if session.server_version_num >= 170000:
            cur.execute('SELECT num_timed::bigint, num_requested::bigint FROM pg_stat_checkpointer')
        else:
            cur.execute('SELECT checkpoints_timed::bigint, checkpoints_req::bigint FROM pg_stat_bgwriter')
        timed, requested = cur.fetchone()
    return dict(temp_files=temp_files, temp_bytes=temp_bytes, checkpoints_timed=timed,
                checkpoints_requested=requested)


def advise(session, opts, checks):
    """(recommendations, inputs): ``checks`` maps check names to their results (cache hit, connections)."""
    memory_mb = opts.memory_mb or host_memory_mb()
    cpus = opts.cpus or host_cpus()
    inputs = dict(memory_mb=memory_mb, cpus=cpus, workload=opts.tuning_workload, storage=opts.tuning_storage)
    if not memory_mb or not cpus:
        raise _tuning.TuningError('cannot read the memory or CPUs of this host; set memory_mb and cpus')
    live_max = _settings(session, ['max_connections'])['max_connections']
    tuned = _tuning.compute_tuning(memory_mb, cpus, opts.tuning_storage, opts.tuning_workload,
                                   max_connections=int(live_max['setting']))
    tuned.pop('max_connections', None)
    live = _settings(session, list(tuned) + ['max_connections'])
    recs = {}
    for name in sorted(tuned):
        if name in live and differs(name, live[name], tuned[name]):
            recs[name] = _rec(name, live[name], tuned[name],
                              'the server role computes %s for %d MB of memory, %d CPU(s), %s storage and a %s '
                              'workload' % (tuned[name], memory_mb, cpus, opts.tuning_storage, opts.tuning_workload),
                              'tuning')
    stats = _stats(session)
    inputs.update(stats)

    cache = checks.get('cache_hit') or {}
    if cache.get('status') in ('warning', 'critical'):
        why = 'the cache hit ratio is %s%%' % cache['details'].get('hit_pct')
        if 'shared_buffers' in recs:
            recs['shared_buffers']['reason'] += '; %s' % why
            recs['shared_buffers']['source'] = 'tuning+statistics'
        else:
            inputs['cache_note'] = '%s with shared_buffers already at the recommendation: the working set is ' \
                                   'larger than memory' % why

    conns = checks.get('connections') or {}
    if conns.get('status') in ('warning', 'critical'):
        current = int(live['max_connections']['setting'])
        recs['max_connections'] = _rec(
            'max_connections', live['max_connections'], int(math.ceil(current * 1.5)),
            '%s%% of the connection slots are in use; a connection pooler (pgbouncer) is the better fix, as every '
            'connection slot costs memory' % conns['details'].get('used_pct'), 'statistics')

    if stats['temp_files'] > 0 and stats['temp_bytes'] >= TEMP_BYTES_MIN and 'work_mem' in live:
        current_kb = normalized('work_mem', live['work_mem'])
        target_kb = max(current_kb * 2, normalized('work_mem', tuned['work_mem']))
        why = '%d temporary files (%d MB) were written since the statistics were reset' % (
            stats['temp_files'], stats['temp_bytes'] // (1024 * 1024))
        if 'work_mem' in recs and normalized('work_mem', tuned['work_mem']) >= current_kb * 2:
            recs['work_mem']['reason'] += '; %s' % why
            recs['work_mem']['source'] = 'tuning+statistics'
        else:
            recs['work_mem'] = _rec('work_mem', live['work_mem'], _format_kb(target_kb), why, 'statistics')

    total = stats['checkpoints_timed'] + stats['checkpoints_requested']
    if (stats['checkpoints_requested'] >= CHECKPOINTS_MIN and stats['checkpoints_requested'] > stats['checkpoints_timed']
            and 'max_wal_size' in live):
        current_kb = normalized('max_wal_size', live['max_wal_size'])
        target_kb = max(current_kb * 2, normalized('max_wal_size', tuned['max_wal_size']))
        why = '%d of %d checkpoints were requested by WAL volume rather than by checkpoint_timeout' % (
            stats['checkpoints_requested'], total)
        recs['max_wal_size'] = _rec('max_wal_size', live['max_wal_size'], _format_kb(target_kb),
                                    (recs['max_wal_size']['reason'] + '; ' + why) if 'max_wal_size' in recs else why,
                                    'tuning+statistics' if 'max_wal_size' in recs else 'statistics')
    order = dict(low=0, medium=1, high=2)
    out = sorted(recs.values(), key=lambda r: (order[r['risk']], r['needs_restart'], r['setting']))
    return out, inputs


def appliable(rec):
    """Whether ``apply`` may set it: low risk, no restart."""
    return rec['risk'] == 'low' and not rec['needs_restart'] and rec['recommended'] not in (None, '')


def applied_now(session, recs):
    """Whether the live values (after a reload) equal the recommendations."""
    live = _settings(session, [r['setting'] for r in recs])
    return all(r['setting'] in live and not differs(r['setting'], live[r['setting']], _value(r['recommended']))
               for r in recs)


def _value(text):
    """A recommendation as compute_tuning wrote it: numbers back to numbers."""
    try:
        return float(text)
    except (TypeError, ValueError):
        return text
