"""Backup engine vs raw pg_dump / pg_restore on pgbench data, in the same run.

    python benchmarks/bench_backup.py --scale 50 --repeat 3

Starts a throwaway cluster (tests/harness), loads ``pgbench -i -s SCALE`` and
times, for each case: raw ``pg_dump`` to a file vs the engine's backup (manifest,
row counts in the snapshot, SHA-256, read-back, fsync, rename) of the same
format; then raw ``CREATE DATABASE`` + ``pg_restore -j 2`` vs the engine's
restore into a new database with verification (it creates the database, checks
the checksums of every file and the row counts against the manifest; no
ANALYZE).  The ratio against ``pg_restore`` alone is printed too.

``--tables N`` (default 600) adds a second workload: a database of N small
tables (a serial key each, so N sequences, and a few large objects), where
the engine's own reads (row counts, sequence values, large-object digests,
in the dump's snapshot) cost most relative to the dump; its raw baseline is
``pg_dump`` plus SHA-256 of the archive, and the restore's ``createdb +
pg_restore -j 2`` (the verification reads every table, sequence and large
object again).  ``--workloads pgbench,tables`` picks either.

``--nice N`` (negative, as root) runs the benchmark and the cluster's server at
that niceness, to shield the measurement from other jobs on a shared machine;
raw and engine runs share it alike.  With autogroup scheduling (Linux
``kernel.sched_autogroup_enabled``), CPU is shared between sessions first, so
the nice value of the benchmark's and the server's sessions is set too
(``/proc/<pid>/autogroup``).

Raw and engine runs alternate (raw, engine, raw, engine, ...) so that load from
other processes on the machine hits both alike; each number is the median of
--repeat runs, and the ratio is engine median / raw median.  The spread is that
of the ratios of each run's pair (engine run i / raw run i): lowest, middle
and highest.  Prints a Markdown table on stdout (with the load average before
and after), progress on stderr.
"""

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
from ansible_collections.dbdevops.postgresql.plugins.module_utils.backup import engine, restore  # noqa: E402

CASES = [
    ('custom', 1, 'gzip', ['-Fc']),
    ('directory', 2, 'gzip', ['-Fd', '-j', '2']),
    ('custom', 1, 'none', ['-Fc', '-Z', '0']),
]


TABLES_SQL = """
DO $$
BEGIN
  FOR i IN 1..%(n)d LOOP
    EXECUTE format('CREATE TABLE t_%%s (id serial PRIMARY KEY, name text, amount numeric(12,2))', i);
    EXECUTE format('INSERT INTO t_%%s (name, amount) SELECT md5(g::text), g * 1.5 FROM generate_series(1, %%s) g',
                   i, 20 + i %% 50);
  END LOOP;
END $$;
SELECT lo_from_bytea(0, decode(repeat(md5(g::text), 100), 'hex')) FROM generate_series(1, 20) g;
"""


def _sha256_tree(path):
    from ansible_collections.dbdevops.postgresql.plugins.module_utils.backup import _tools
    if os.path.isdir(path):
        for rel in _tools.list_files(path):
            _tools.sha256_file(os.path.join(path, rel))
    else:
        _tools.sha256_file(path)


def timed(fn):
    t0 = time.monotonic()
    fn()
    return time.monotonic() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--scale', type=int, default=50)
    ap.add_argument('--repeat', type=int, default=3)
    ap.add_argument('--cases', default='', help='comma-separated case numbers (1-3), default all')
    ap.add_argument('--tables', type=int, default=600, help='small tables of the "tables" workload')
    ap.add_argument('--workloads', default='pgbench,tables')
    ap.add_argument('--nice', type=int, default=0, help='niceness of the benchmark and its server')
    args = ap.parse_args()
    if args.nice:
        _renice(os.getpid(), args.nice)
    load_before = os.getloadavg()
    cases = [CASES[int(i) - 1] for i in args.cases.split(',')] if args.cases else CASES
    workloads = args.workloads.split(',')
    work = tempfile.mkdtemp(prefix='dbdevops-bench-', dir=os.environ.get('BENCH_DIR'))
    os.chmod(work, 0o777)
    rows = []
    size = '-'
    with PgCluster(settings={'max_wal_size': '4GB', 'shared_buffers': '256MB'}) as pg:
        if args.nice:  # the server's processes too (runuser may have reset it); backends inherit it
            _renice(pg.postmaster_pid(), args.nice)
            for pid in subprocess.run(['pgrep', '-P', str(pg.postmaster_pid())], capture_output=True, check=False,
                                      text=True).stdout.split():
                _renice(int(pid), args.nice)
        env = pg.psql_env()
        params = ConnParams.from_params(pg.conn_params())
        if 'pgbench' in workloads:
            t = timed(lambda: subprocess.run([pg.bin('pgbench'), '-i', '-q', '-s', str(args.scale), 'postgres'],
                                             env=env, check=True, capture_output=True))
            size = pg.sql("SELECT pg_size_pretty(pg_database_size('postgres'))")[0][0]
            print('pgbench -i -s %d: %s in %.1f s' % (args.scale, size, t), file=sys.stderr)
            for case in cases:
                rows.append(bench(pg, env, params, work, 'postgres', case, args.repeat, hash_raw=False))
        if 'tables' in workloads:
            pg.create_database('many')
            t = timed(lambda: pg.sql(TABLES_SQL % dict(n=args.tables), dbname='many'))
            print('%d small tables in %.1f s' % (args.tables, t), file=sys.stderr)
            rows.append(bench(pg, env, params, work, 'many', CASES[0], args.repeat, hash_raw=True,
                              label='-Fc, %d small tables' % args.tables))
    shutil.rmtree(work, ignore_errors=True)
    print('%s, median of %d alternating runs, %d cores, %s, %s UTC, '
          'load average %.1f before, %.1f after, nice %d\n' % (
              ', '.join(filter(None, ['pgbench scale %d (%s)' % (args.scale, size) if 'pgbench' in workloads else '',
                                      '%d small tables' % args.tables if 'tables' in workloads else ''])),
              args.repeat, os.cpu_count(), platform.platform(terse=True),
              datetime.datetime.utcnow().strftime('%Y-%m-%d %H:%M'), load_before[0], os.getloadavg()[0],
              args.nice))
    print('| pg_dump flags | archive MiB | raw pg_dump s | engine backup s | ratio (goal <= 1.15) '
          '| pair ratios min / median / max | raw pg_restore -j2 s | raw createdb + pg_restore s '
          '| engine restore+verify s | ratio (goal <= 1.10) | pair ratios min / median / max '
          '| ratio vs pg_restore alone |')
    print('|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---|---:|')
    for label, nbytes, (a, b, c, cc, d), (backup_pairs, restore_pairs) in rows:
        print('| `%s` | %.1f | %.2f | %.2f | %.2fx | %s | %.2f | %.2f | %.2f | %.2fx | %s | %.2fx |' % (
            label, nbytes / 1048576.0, a, b, b / a, _spread(backup_pairs), c, cc, d, d / cc,
            _spread(restore_pairs), d / c))


def _renice(pid, nice):
    """Niceness of a process and of its session's autogroup (where the kernel has them)."""
    os.setpriority(os.PRIO_PROCESS, pid, nice)
    try:
        with open('/proc/%d/autogroup' % pid, 'w') as f:
            f.write(str(nice))
    except OSError:
        pass


def _spread(ratios):
    return '%.2f / %.2f / %.2f' % (min(ratios), statistics.median(ratios), max(ratios))


def bench(pg, env, params, work, dbname, case, repeat, hash_raw, label=None):
    """One case, raw and engine runs alternating: (label, archive bytes, medians)."""
    fmt, jobs, comp, raw_flags = case
    label = label or ' '.join(raw_flags)
    if hash_raw:
        label += ' (raw: pg_dump + sha256)'
    raw_times, eng_times, rraw, rcreate, reng = [], [], [], [], []
    out = os.path.join(work, 'raw')
    dest = os.path.join(work, 'engine')
    for i in range(repeat):
        # backup: raw then engine, alternating
        shutil.rmtree(out, ignore_errors=True)
        if os.path.exists(out):
            os.unlink(out)

        def raw_dump():
            subprocess.run([pg.bin('pg_dump')] + raw_flags + ['-f', out, dbname], env=env, check=True)
            if hash_raw:
                _sha256_tree(out)
        raw_times.append(timed(raw_dump))
        shutil.rmtree(dest, ignore_errors=True)
        opts = engine.BackupOptions(dest=dest, databases=[dbname], format=fmt, jobs=jobs, compression=comp)
        result = {}
        eng_times.append(timed(lambda: result.update(
            r=engine.run_backup(params, engine.plan_backup(params, opts))[0])))
        nbytes = result['r']['bytes']
        # restore: raw pg_restore -j 2 vs engine with verification, alternating
        pg.sql('DROP DATABASE IF EXISTS raw_r')
        create = timed(lambda: pg.sql('CREATE DATABASE raw_r TEMPLATE template0'))
        rraw.append(timed(lambda: subprocess.run(
            [pg.bin('pg_restore'), '-j', '2', '--exit-on-error', '-d', 'raw_r', out],
            env=env, check=True)))
        rcreate.append(create + rraw[-1])
        pg.sql('DROP DATABASE raw_r')
        pg.sql('CHECKPOINT')
        pg.sql('DROP DATABASE IF EXISTS eng_r')
        ropts = restore.RestoreOptions(src=dest, target_db='eng_r', jobs=2, analyze=False)
        rres = {}
        reng.append(timed(lambda: rres.update(
            r=restore.run_restore(params, restore.plan_restore(params, ropts)))))
        assert rres['r']['verification']['passed'], rres
        pg.sql('DROP DATABASE eng_r')
        pg.sql('CHECKPOINT')
        print('  %-12s run %d: dump raw %.2f engine %.2f | restore raw %.2f (+createdb %.2f) engine %.2f' % (
            label, i + 1, raw_times[-1], eng_times[-1], rraw[-1], rcreate[-1], reng[-1]), file=sys.stderr)
    med = [statistics.median(x) for x in (raw_times, eng_times, rraw, rcreate, reng)]
    print('%-14s raw %.2fs engine %.2fs (%.2fx) | restore raw %.2fs (+createdb %.2fs) engine %.2fs (%.2fx)' % (
        label, med[0], med[1], med[1] / med[0], med[2], med[3], med[4], med[4] / med[3]), file=sys.stderr)
    pairs = ([e / r for r, e in zip(raw_times, eng_times)], [e / r for r, e in zip(rcreate, reng)])
    return label, nbytes, med, pairs


if __name__ == '__main__':
    main()
