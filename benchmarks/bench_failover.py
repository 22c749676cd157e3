"""Failover drill figures: median and spread of RTO, promotion time and RPO over repeated drills.

    python benchmarks/bench_failover.py --repeat 5

Each drill runs on a fresh primary + streaming standby (tests/harness/replpair.py,
two throwaway clusters on this machine, local sockets): ``--repeat``
switchovers (asynchronous replication, the old primary rejoined with
pg_rewind) and ``--repeat`` failovers (synchronous replication, the primary's
postmaster killed with SIGKILL, synchronous_standby_names emptied on the new
primary until a standby is back).  The probe writer commits every
``--interval-ms``.  Goals: switchover RTO <= 2 s, failover RTO <= 3 s, no
acknowledged write lost with synchronous replication.  Prints a Markdown table
(median, lowest, highest) with the load average before and after; progress
on stderr.
"""

import argparse
import os
import platform
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, '.venv', 'collections'))
sys.path.insert(0, ROOT)

from ansible_collections.dbdevops.postgresql.plugins.module_utils.connection import ConnParams  # noqa: E402
from ansible_collections.dbdevops.postgresql.plugins.module_utils.replication.drill import (  # noqa: E402
    FailoverDrillEngine, FailoverDrillOptions)
from tests.harness.replpair import ReplPair  # noqa: E402

GOALS = {'switchover': 2.0, 'failover': 3.0}


def one_drill(kind, interval_ms):
    sync = kind == 'failover'
    with ReplPair(sync=sync) as pair:
        args = pair.drill_args()
        options = dict(args, probe_interval_ms=interval_ms, fail_on_verdict=False)
        if kind == 'switchover':
            options.update(mode='switchover', rejoin=True)
        else:
            options.update(mode='failover', fault='kill', sync_standby_names_after_promotion='', max_lost_writes=0)
        engine = FailoverDrillEngine((ConnParams.from_params(args['primary']), ConnParams.from_params(args['standby'])),
                                     FailoverDrillOptions(**options))
        return engine.apply(engine.plan())


def spread(values):
    values = [v for v in values if v is not None]
    if not values:
        return '-'
    return '%.3f (%.3f - %.3f)' % (statistics.median(values), min(values), max(values))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n', maxsplit=1)[0])
    parser.add_argument('--repeat', type=int, default=5)
    parser.add_argument('--interval-ms', type=int, default=50)
    args = parser.parse_args()
    load_before = os.getloadavg()
    rows = []
    for kind in ('switchover', 'failover'):
        results = []
        for run in range(args.repeat):
            t0 = time.monotonic()
            result = one_drill(kind, args.interval_ms)
            results.append(result)
            print('%s %d/%d: verdict %s, RTO %s s, promotion %s s, lost %s, LSN gap %s (%.1f s)'
                  % (kind, run + 1, args.repeat, result['verdict'], result['rto_seconds'],
                     result['promotion_seconds'], result['rpo_writes_lost'], result['rpo_lsn_bytes'],
                     time.monotonic() - t0), file=sys.stderr)
        rto = [r['rto_seconds'] for r in results]
        rows.append((kind, spread(rto), spread([r['promotion_seconds'] for r in results]),
                     spread([r['rpo_writes_lost'] for r in results]), spread([r['rpo_lsn_bytes'] for r in results]),
                     sum(1 for r in results if r['passed']), len(results),
                     'met' if rto and statistics.median([v for v in rto if v is not None] or [1e9]) <= GOALS[kind]
                     else 'MISSED', GOALS[kind]))
    load_after = os.getloadavg()
    print('Machine: %s, %d CPUs; load average %.2f before, %.2f after; probe interval %d ms; %d drills of each kind.\n'
          % (platform.platform(), os.cpu_count(), load_before[0], load_after[0], args.interval_ms, args.repeat))
    print('| drill | RTO s median (min - max) | fault to promotion s | acknowledged writes lost | WAL gap bytes '
          '| passed | RTO goal |')
    print('| --- | --- | --- | --- | --- | --- | --- |')
    for kind, rto, promo, lost, gap, passed, total, goal, limit in rows:
        print('| %s | %s | %s | %s | %s | %d/%d | <= %.0f s: %s |'
              % (kind, rto, promo, lost, gap, passed, total, limit, goal))


if __name__ == '__main__':
    main()
