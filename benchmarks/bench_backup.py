#!/usr/bin/env python3
"""Backup engine vs raw pg_dump / pg_restore on pgbench data, in the same run.

    python benchmarks/bench_backup.py --scale 50 --repeat 3

Starts a throwaway cluster (tests/harness), loads ``pgbench -i -s SCALE`` and
times, for each case: raw ``pg_dump`` to a file vs the engine's backup (manifest,
row counts in the snapshot, SHA-256, read-back, fsync, rename) of the same
format; then raw ``pg_restore -j 2`` vs the engine's restore with verification
(checksums while restoring, row counts against the manifest; no ANALYZE).
Best of --repeat runs; prints a Markdown table.
"""

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
from ansible_collections.dbdevops.postgresql.plugins.module_utils.backup import engine, restore  # noqa: E402

CASES = [
    ('custom', 1, 'gzip', ['-Fc']),
    ('directory', 2, 'gzip', ['-Fd', '-j', '2']),
    ('custom', 1, 'none', ['-Fc', '-Z', '0']),
]


def timed(fn):
    t0 = time.monotonic()
    fn()
    return time.monotonic() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--scale', type=int, default=50)
    ap.add_argument('--repeat', type=int, default=3)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix='dbdevops-bench-')
    os.chmod(work, 0o777)
    rows = []
    with PgCluster(settings={'max_wal_size': '4GB', 'shared_buffers': '256MB'}) as pg:
        env = pg.psql_env()
        t = timed(lambda: subprocess.run([pg.bin('pgbench'), '-i', '-q', '-s', str(args.scale), 'postgres'],
                                         env=env, check=True, capture_output=True))
        size = pg.sql("SELECT pg_size_pretty(pg_database_size('postgres'))")[0][0]
        print('pgbench -i -s %d: %s in %.1f s' % (args.scale, size, t), file=sys.stderr)
        params = ConnParams.from_params(pg.conn_params())
        for fmt, jobs, comp, raw_flags in CASES:
            label = ' '.join(raw_flags)
            raw_times, eng_times, rraw, reng = [], [], [], []
            for i in range(args.repeat):
                out = os.path.join(work, 'raw')
                shutil.rmtree(out, ignore_errors=True)
                if os.path.exists(out):
                    os.unlink(out)
                raw_times.append(timed(lambda: subprocess.run(
                    [pg.bin('pg_dump')] + raw_flags + ['-f', out, 'postgres'], env=env, check=True)))
                dest = os.path.join(work, 'engine')
                shutil.rmtree(dest, ignore_errors=True)
                opts = engine.BackupOptions(dest=dest, databases=['postgres'], format=fmt, jobs=jobs,
                                            compression=comp)
                result = {}
                eng_times.append(timed(lambda: result.update(
                    r=engine.run_backup(params, engine.plan_backup(params, opts))[0])))
                nbytes = result['r']['bytes']
                # restore: raw pg_restore -j 2 vs engine with verification
                pg.sql('DROP DATABASE IF EXISTS raw_r')
                pg.sql('CREATE DATABASE raw_r TEMPLATE template0')
                rraw.append(timed(lambda: subprocess.run(
                    [pg.bin('pg_restore'), '-j', '2', '--exit-on-error', '-d', 'raw_r', out],
                    env=env, check=True)))
                pg.sql('DROP DATABASE raw_r')
                pg.sql('DROP DATABASE IF EXISTS eng_r')
                ropts = restore.RestoreOptions(src=dest, target_db='eng_r', jobs=2, analyze=False)
                reng.append(timed(lambda: restore.run_restore(params, restore.plan_restore(params, ropts))))
                pg.sql('DROP DATABASE eng_r')
                pg.sql('CHECKPOINT')
            rows.append((label, nbytes, min(raw_times), min(eng_times), min(rraw), min(reng)))
            print('%-14s raw %.2fs engine %.2fs (%.2fx) | restore raw %.2fs engine %.2fs (%.2fx)' % (
                label, min(raw_times), min(eng_times), min(eng_times) / min(raw_times),
                min(rraw), min(reng), min(reng) / min(rraw)), file=sys.stderr)
    shutil.rmtree(work, ignore_errors=True)
    print('pgbench scale %d (%s), best of %d, %d cores\n' % (args.scale, size, args.repeat, os.cpu_count()))
    print('| pg_dump flags | archive MiB | raw pg_dump s | engine backup s | ratio | raw pg_restore -j2 s | engine restore+verify s | ratio |')
    print('|---|---:|---:|---:|---:|---:|---:|---:|')
    for label, nbytes, a, b, c, d in rows:
        print('| `%s` | %.0f | %.2f | %.2f | %.2fx | %.2f | %.2f | %.2fx |' % (
            label, nbytes / 1048576.0, a, b, b / a, c, d, d / c))


if __name__ == '__main__':
    main()
