"""Health engine on a database of many tables: engine time, time per check, and the locks it takes.

    python benchmarks/bench_health.py --tables 10000 --repeat 5

Starts a throwaway cluster (tests/harness), creates ``--tables`` tables (a
primary key and a secondary index each, one row each, every tenth with dead
rows; created in DO blocks of 500 tables per transaction), then ANALYZE so
``pg_class`` carries real sizes.  Then:

* the whole engine (``HealthEngine.plan()``: connect, every check, the tuning
  advice), median and spread of ``--repeat`` runs; goal: under 2 s;
* each check alone, median of ``--repeat`` runs, slowest first;
* every check in one transaction, then the session's relation locks from
  ``pg_locks``: the benchmark fails unless they are all AccessShareLock on
  ``pg_catalog`` relations and none is on a user table.

Prints a Markdown table on stdout (with the load average before and after),
progress on stderr.  Exit status 1 when the goal or the lock assertion fails.
"""

import argparse
import datetime
import os
import platform
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, '.venv', 'collections'))

from tests.harness.pgcluster import PgCluster  # noqa: E402
from tests.unit.plugins.module_utils.health.test_readonly import checks_and_their_locks  # noqa: E402
from ansible_collections.dbdevops.postgresql.plugins.module_utils.connection import ConnParams  # noqa: E402
from ansible_collections.dbdevops.postgresql.plugins.module_utils.health import checks  # noqa: E402
from ansible_collections.dbdevops.postgresql.plugins.module_utils.health.engine import (  # noqa: E402
    HealthEngine, HealthOptions, Session)

GOAL_SECONDS = 2.0
BATCH = 500

CREATE_BATCH = """
DO $$
BEGIN
  FOR i IN %(first)d..%(last)d LOOP
    EXECUTE format('CREATE TABLE app.t%%s (id int PRIMARY KEY, v int, note text)', i);
    EXECUTE format('CREATE INDEX t%%s_v ON app.t%%s (v)', i, i);
    EXECUTE format('INSERT INTO app.t%%s VALUES (1, 1, ''x'')', i);
    IF i %% 10 = 0 THEN
      EXECUTE format('INSERT INTO app.t%%s SELECT g, g, ''y'' FROM generate_series(2, 50) g', i);
      EXECUTE format('DELETE FROM app.t%%s WHERE id > 10', i);
    END IF;
  END LOOP;
END $$;
"""


def log(message):
    sys.stderr.write('%s %s\n' % (time.strftime('%H:%M:%S'), message))
    sys.stderr.flush()


def build(cluster, dbname, tables):
    cluster.create_database(dbname)
    cluster.sql('CREATE SCHEMA app', dbname=dbname)
    started = time.monotonic()
    for first in range(1, tables + 1, BATCH):
        cluster.sql(CREATE_BATCH % dict(first=first, last=min(first + BATCH - 1, tables)), dbname=dbname)
    cluster.sql('ANALYZE', dbname=dbname)
    return time.monotonic() - started


def timed(fn, repeat):
    runs = []
    for _run in range(repeat):
        t0 = time.monotonic()
        fn()
        runs.append(time.monotonic() - t0)
    return runs


def lock_report(params):
    return checks_and_their_locks(params)[1]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n', maxsplit=1)[0])
    parser.add_argument('--tables', type=int, default=10000)
    parser.add_argument('--repeat', type=int, default=5)
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    with PgCluster() as cluster:
        dbname = 'bench_health'
        log('creating %d tables' % args.tables)
        build_seconds = build(cluster, dbname, args.tables)
        log('created in %.1f s' % build_seconds)
        params = ConnParams.from_params(cluster.conn_params(dbname=dbname))
        opts = HealthOptions(fail_on='never', memory_mb=4096, cpus=2)
        last = {}

        def whole():
            last['report'] = HealthEngine(params, opts).plan().report()

        whole()  # warm the catalog caches once, as a cron job's second run would find them
        engine_runs = timed(whole, args.repeat)
        log('engine median %.3f s' % statistics.median(engine_runs))
        per_check = []
        live = Session(params, opts)
        try:
            for name, fn in checks.CHECKS:
                # the replication checks share one read of the state per run: start each run afresh
                runs = timed(lambda fn=fn: (live.cache.clear(), fn(live, opts)), args.repeat)
                per_check.append((statistics.median(runs), name))
        finally:
            live.close()
        locks = lock_report(params)
    load_after = os.getloadavg()
    report = last['report']
    median = statistics.median(engine_runs)
    namespaces = sorted(set(nsp for nsp, _rel, _mode in locks))
    modes = sorted(set(mode for _nsp, _rel, mode in locks))
    user = [rel for nsp, rel, _mode in locks if nsp != 'pg_catalog']
    locks_ok = namespaces == ['pg_catalog'] and modes == ['AccessShareLock'] and not user
    goal_ok = median < GOAL_SECONDS
    print('## Health engine, %d tables (%s)\n' % (args.tables, datetime.datetime.now().strftime('%Y-%m-%d %H:%M')))
    print('Host: %s, %d CPUs, Python %s; load average before %.2f/%.2f/%.2f, after %.2f/%.2f/%.2f.\n' % (
        platform.node(), os.cpu_count(), platform.python_version(), load_before[0], load_before[1], load_before[2],
        load_after[0], load_after[1], load_after[2]))
    print('Setup: %d tables + %d indexes created and analyzed in %.1f s; status %s, counts %s.\n' % (
        args.tables, args.tables * 2, build_seconds, report['status'], report['counts']))
    print('| measure | median | min | max | goal |')
    print('| --- | --- | --- | --- | --- |')
    print('| engine (connect, %d checks, advice), %d runs | %.3f s | %.3f s | %.3f s | < %.1f s: %s |' % (
        len(checks.CHECKS), args.repeat, median, min(engine_runs), max(engine_runs), GOAL_SECONDS,
        'met' if goal_ok else 'MISSED'))
    for seconds, name in sorted(per_check, reverse=True):
        print('| check %s | %.1f ms | | | |' % (name, seconds * 1000))
    print('\nLocks held by the health session after every check in one transaction: %d relation locks, '
          'modes %s, schemas %s, on user tables: %s -> %s.' % (
              len(locks), ', '.join(modes), ', '.join(namespaces), ', '.join(user) or 'none',
              'ok' if locks_ok else 'FAILED'))
    return 0 if goal_ok and locks_ok else 1


if __name__ == '__main__':
    sys.exit(main())
