#!/usr/bin/env python
# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Migration engine against a psql baseline, side by side on one throwaway cluster.

    source scripts/bootstrap.sh dev && python benchmarks/bench_migrate.py [--sizes 500,1000,2000]

For each size N: N tiny migrations (one CREATE TABLE each), applied by
(a) one psql session running N transactions from one file, and (b) the
engine in-process (Ansible start-up excluded), each into a fresh database;
then the engine again with nothing pending.  Prints times and ratios.
"""

from __future__ import absolute_import, division, print_function

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, '.venv', 'collections'))

from tests.harness.pgcluster import PgCluster  # noqa: E402
from ansible_collections.dbdevops.postgresql.plugins.module_utils.connection import ConnParams  # noqa: E402
from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate.engine import (  # noqa: E402
    MigrateOptions, Migrator)


def make_folder(n):
    path = tempfile.mkdtemp(prefix='bench-migrations-')
    for i in range(1, n + 1):
        with open(os.path.join(path, 'V%d__create_t%d.sql' % (i, i)), 'w') as handle:
            handle.write('CREATE TABLE t%d (id int);\n' % i)
    return path


def bench_psql(pg, n, db):
    script = tempfile.NamedTemporaryFile('w', suffix='.sql', delete=False)
    for i in range(1, n + 1):
        script.write('BEGIN;\nCREATE TABLE t%d (id int);\nCOMMIT;\n' % i)
    script.close()
    started = time.time()
    subprocess.run([pg.bin('psql'), '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', db, '-f', script.name],
                   env=pg.psql_env(), check=True)
    elapsed = time.time() - started
    os.unlink(script.name)
    return elapsed


def bench_engine(pg, path, db, **opts):
    params = ConnParams.from_params(pg.conn_params(db))
    started = time.time()
    result = Migrator(params, MigrateOptions(path, **opts)).migrate()
    elapsed = time.time() - started
    return elapsed, result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--sizes', default='500,1000,2000')
    parser.add_argument('--repeat', type=int, default=3, help='best of R runs')
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(',')]
    rows = []
    with PgCluster() as pg:
        counter = [0]

        def fresh():
            counter[0] += 1
            return pg.create_database('bench_%d' % counter[0])

        warm = make_folder(100)             # first connections and caches are not the measure
        bench_psql(pg, 100, fresh())
        bench_engine(pg, warm, fresh())
        shutil.rmtree(warm)
        for n in sizes:
            path = make_folder(n)
            try:
                psql = min(bench_psql(pg, n, fresh()) for _ in range(args.repeat))
                engine_runs, idle_runs, nolint_runs = [], [], []
                for _ in range(args.repeat):
                    db = fresh()
                    elapsed, result = bench_engine(pg, path, db)
                    assert len(result['applied']) == n, result['applied'][-1:]
                    engine_runs.append(elapsed)
                    elapsed, result = bench_engine(pg, path, db)
                    assert not result['changed']
                    idle_runs.append(elapsed)
                    elapsed, _ = bench_engine(pg, path, fresh(), lint=False)
                    nolint_runs.append(elapsed)
                rows.append((n, psql, min(engine_runs), min(nolint_runs), min(idle_runs)))
            finally:
                shutil.rmtree(path)
    print('| migrations | psql, 1 session (s) | engine (s) | ratio | engine, lint off (s) | ratio '
          '| nothing pending (s) | engine ms/migration |')
    print('|---:|---:|---:|---:|---:|---:|---:|---:|')
    for n, psql, eng, nolint, idle in rows:
        print('| %d | %.2f | %.2f | %.2fx | %.2f | %.2fx | %.3f | %.2f |' % (
            n, psql, eng, eng / psql, nolint, nolint / psql, idle, 1000.0 * eng / n))
    if len(rows) > 1:
        base = rows[0]
        print('\nscaling (engine time per migration relative to %d): %s' % (
            base[0], ', '.join('%d: %.2fx' % (r[0], (r[2] / r[0]) / (base[2] / base[0])) for r in rows)))


if __name__ == '__main__':
    main()
