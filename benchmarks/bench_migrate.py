#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Migration engine against a psql baseline, side by side on one throwaway cluster.

    source scripts/bootstrap.sh dev && python benchmarks/bench_migrate.py [--sizes 500,1000,2000] [--repeat 7]

For each size N: N tiny migrations (one CREATE TABLE each), applied by
(a) one psql session running N transactions from one file, and (b) the
engine in-process (Ansible start-up excluded), each into a fresh database;
then the engine again on that database with nothing pending, and (c) the
engine with lint off.  The three are interleaved within each repetition (in
a rotating order) so that load from other processes on the machine hits all
of them alike; the table shows medians over the repetitions, and the ratio
is the median of the per-repetition ratios engine / psql.
"""

from __future__ import absolute_import, division, print_function

import argparse
import datetime
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, '.venv', 'collections'))

from tests.harness.pgcluster import PgCluster  # noqa: E402
from ansible_collections.dbdevops.postgresql.plugins.module_utils.connection import ConnParams  # noqa: E402
from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate.engine import MigrateEngine  # noqa: E402
from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate.options import MigrateOptions  # noqa: E402


def make_folder(n):
    path = tempfile.mkdtemp(prefix='bench-migrations-')
    for i in range(1, n + 1):
        with open(os.path.join(path, 'V%d__create_t%d.sql' % (i, i)), 'w') as handle:
            handle.write('CREATE TABLE t%d (id int);\n' % i)
    return path


def make_psql_script(n):
    script = tempfile.NamedTemporaryFile('w', suffix='.sql', delete=False)
    for i in range(1, n + 1):
        script.write('BEGIN;\nCREATE TABLE t%d (id int);\nCOMMIT;\n' % i)
    script.close()
    return script.name


def bench_psql(pg, script, db):
    started = time.time()
    subprocess.run([pg.bin('psql'), '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', db, '-f', script],
                   env=pg.psql_env(), check=True)
    return time.time() - started


def bench_engine(pg, path, db, **opts):
    params = ConnParams.from_params(pg.conn_params(db))
    started = time.time()
    engine = MigrateEngine(params, MigrateOptions(path, **opts))
    result = engine.apply(engine.plan())       # what the module does on a real run
    return time.time() - started, result


def environment(pg):
    version = pg.sql('SHOW server_version')[0][0]
    try:
        load = ', '.join('%.1f' % x for x in os.getloadavg())
    except OSError:
        load = 'unknown'
    try:
        with open('/etc/debian_version') as handle:
            distro = 'Debian ' + handle.read().strip()
    except IOError:
        distro = platform.platform()
    return ('%s UTC; %s, %d CPUs, load average %s at start; PostgreSQL %s (harness cluster, fsync off); '
            'Python %s' % (datetime.datetime.utcnow().strftime('%Y-%m-%d %H:%M'), distro, os.cpu_count() or 0,
                           load, version, platform.python_version()))


def scratch_databases(pg):
    """(fresh, drop): fresh() creates the next ``bench_<n>`` database and returns its name; drop(name) removes it."""
    counter = [0]

    def fresh():
        counter[0] += 1
        return pg.create_database('bench_%d' % counter[0])

    def drop(db):
        pg.sql('DROP DATABASE IF EXISTS "%s"' % db)

    return fresh, drop


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--sizes', default='500,1000,2000')
    parser.add_argument('--repeat', type=int, default=7, help='repetitions per size (medians reported)')
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(',')]
    rows = []
    with PgCluster() as pg:
        print(environment(pg))
        fresh, drop = scratch_databases(pg)
        warm = make_folder(100)             # first connections and caches are not the measure
        warm_script = make_psql_script(100)
        db = fresh()
        bench_psql(pg, warm_script, db)
        drop(db)
        db = fresh()
        bench_engine(pg, warm, db)
        drop(db)
        shutil.rmtree(warm)
        os.unlink(warm_script)
        for n in sizes:
            path = make_folder(n)
            script = make_psql_script(n)
            psql, engine, idle, nolint = [], [], [], []
            try:
                for rep in range(args.repeat):
                    runs = ['psql', 'engine', 'nolint']
                    runs = runs[rep % 3:] + runs[:rep % 3]
                    for what in runs:
                        db = fresh()
                        if what == 'psql':
                            psql.append(bench_psql(pg, script, db))
                        elif what == 'engine':
                            elapsed, result = bench_engine(pg, path, db)
                            assert len(result['applied']) == n, result['applied'][-1:]
                            engine.append(elapsed)
                            elapsed, result = bench_engine(pg, path, db)
                            assert not result['changed']
                            idle.append(elapsed)
                        else:
                            elapsed, result = bench_engine(pg, path, db, lint=False)
                            assert len(result['applied']) == n
                            nolint.append(elapsed)
                        drop(db)
            finally:
                shutil.rmtree(path)
                os.unlink(script)
            med = statistics.median
            rows.append(dict(n=n, psql=med(psql), engine=med(engine), idle=med(idle), nolint=med(nolint),
                             ratio=med([e / p for e, p in zip(engine, psql)]),
                             ratio_nolint=med([e / p for e, p in zip(nolint, psql)]),
                             ratio_range=(min(e / p for e, p in zip(engine, psql)),
                                          max(e / p for e, p in zip(engine, psql)))))
            print('N=%d done: psql %s; engine %s' % (
                n, ' '.join('%.2f' % x for x in psql), ' '.join('%.2f' % x for x in engine)), file=sys.stderr)
    print('\n%d repetitions per size, medians:\n' % args.repeat)
    print('| migrations | psql, 1 session (s) | engine (s) | ratio (min-max) | engine, lint off (s) | ratio '
          '| nothing pending (s) | engine ms/migration |')
    print('|---:|---:|---:|---:|---:|---:|---:|---:|')
    for r in rows:
        print('| %d | %.2f | %.2f | %.2fx (%.2f-%.2f) | %.2f | %.2fx | %.3f | %.2f |' % (
            r['n'], r['psql'], r['engine'], r['ratio'], r['ratio_range'][0], r['ratio_range'][1],
            r['nolint'], r['ratio_nolint'], r['idle'], 1000.0 * r['engine'] / r['n']))
    if len(rows) > 1:
        base = rows[0]
        print('\nscaling, engine time per migration relative to %d: %s' % (
            base['n'], ', '.join('%d: %.2fx' % (r['n'], (r['engine'] / r['n']) / (base['engine'] / base['n']))
                                 for r in rows)))


if __name__ == '__main__':
    main()
