"""PITR over pgBackRest: pgBackRest alone vs through the collection's engines, in the same run.

    python benchmarks/bench_pitr.py --scale 50 --repeat 1

Starts a throwaway cluster archiving into a throwaway encrypted repository
(tests/harness/pitr.py), loads ``pgbench -i -s SCALE``, then times, raw and
engine alternating (raw, engine, raw, engine, ...):

- full backup: ``pgbackrest backup --type=full --start-fast`` vs
  ``PhysicalBackupEngine`` (pg_stat_archiver, ``pgbackrest check``, the backup,
  ``pgbackrest info`` read back);
- restore to a time until the restored server accepts writes: ``pgbackrest
  restore --type=time --target=T --target-action=promote --set=L
  --archive-mode=off`` into an empty directory, ``pg_ctl start -w``, poll
  ``pg_is_in_recovery()`` every 0.2 s, one write, vs ``PitrRestoreEngine``
  (window check from ``pgbackrest info`` and ``repo-ls``, the same restore and
  start, the same poll, the write, the log read).  The restore alone
  (``pgbackrest restore``) is reported too;
- archive_command's cost: ``pgbench -T SECONDS -c 2`` TPS with archive_mode
  off vs on (restart between).

Each number is the median of --repeat runs (raw first in even runs, engine
first in odd ones); ratio = engine / raw.  Prints a
Markdown table (date, machine, load average before and after).
"""

import argparse
import datetime
import os
import platform
import shutil
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, '.venv', 'collections'))

from tests.harness.pitr import PitrLab, stop_data_dir  # noqa: E402
from ansible_collections.dbdevops.postgresql.plugins.module_utils.connection import ConnParams  # noqa: E402
from ansible_collections.dbdevops.postgresql.plugins.module_utils.pitr import options as o  # noqa: E402
from ansible_collections.dbdevops.postgresql.plugins.module_utils.pitr.backup import PhysicalBackupEngine  # noqa: E402
from ansible_collections.dbdevops.postgresql.plugins.module_utils.pitr.restore import PitrRestoreEngine  # noqa: E402


def log(msg):
    sys.stderr.write('[%s] %s\n' % (time.strftime('%H:%M:%S'), msg))
    sys.stderr.flush()


def load():
    with open('/proc/loadavg') as handle:
        return ' '.join(handle.read().split()[:3])


def pgbench(lab, *args):
    return lab.pg.run_as_owner([lab.pg.bin('pgbench'), '-h', lab.pg.socket_dir, '-p', str(lab.pg.port)]
                               + list(args), timeout=3600)


def raw_backup(lab):
    t0 = time.monotonic()
    lab.pgbackrest('backup', '--type=full', '--start-fast', timeout=3600)
    return time.monotonic() - t0


def raw_check(lab):
    t0 = time.monotonic()
    lab.pgbackrest('check', '--archive-timeout=10')
    return time.monotonic() - t0


CHECKS = []      # archive_check of each engine backup: passed (pgbackrest check ran) or archiver (left out)


def engine_backup(lab, conn):
    t0 = time.monotonic()
    engine = PhysicalBackupEngine(conn, o.PhysicalBackupOptions(**lab.repo_args()))
    result = engine.apply(engine.plan())
    CHECKS.append(result['archive_check'])
    return time.monotonic() - t0, result['backup']['label']


def latest_label(lab):
    import json
    info = json.loads(lab.pgbackrest('info', '--output=json').stdout)
    return info[0]['backup'][-1]['label']


def psql(lab, port, sock, query):
    return lab.pg.run_as_owner([lab.pg.bin('psql'), '-X', '-At', '-h', sock, '-p', str(port), '-d', 'postgres',
                                '-c', query], check=False)


def raw_restore(lab, target, label, path, port):
    os.mkdir(path, 0o700)
    lab.pg.chown(path)
    t0 = time.monotonic()
    lab.pgbackrest('restore', '--pg1-path=%s' % path, '--set=%s' % label, '--type=time', '--target=%s' % target,
                   '--target-action=promote', '--target-timeline=current', '--archive-mode=off', timeout=3600)
    restored = time.monotonic() - t0
    opts = ('-c port=%d -c listen_addresses=localhost -c unix_socket_directories=%s -c archive_mode=off '
            '-c hot_standby=on -c logging_collector=off' % (port, path))
    lab.pg.run_as_owner([lab.pg.bin('pg_ctl'), '-D', path, '-l', os.path.join(path, 'restore.log'), '-w', '-t',
                         '600', '-o', opts, 'start'])
    while psql(lab, port, path, 'SELECT pg_is_in_recovery()').stdout.strip() != 'f':
        time.sleep(0.2)
    done = psql(lab, port, path, 'CREATE TEMP TABLE w (x int); INSERT INTO w VALUES (1)')
    assert done.returncode == 0, done.stderr
    return restored, time.monotonic() - t0


def engine_restore(lab, conn, target, label, path, port):
    t0 = time.monotonic()
    engine = PitrRestoreEngine(conn, o.PitrRestoreOptions(target_time=target, backup_set=label, target_data_dir=path,
                                                          target_port=port, **lab.repo_args()))
    result = engine.apply(engine.plan())
    return result['restore_seconds'], time.monotonic() - t0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--scale', type=int, default=50)
    parser.add_argument('--repeat', type=int, default=1)
    parser.add_argument('--tps-seconds', type=int, default=20)
    args = parser.parse_args()
    load_before = load()
    started = datetime.datetime.now(datetime.timezone.utc)
    rows = {}
    samples_out = {}
    with PitrLab() as lab:
        conn = ConnParams.from_params(lab.conn(password=True))
        lab.pg.create_database('bench')
        log('pgbench -i -s %d' % args.scale)
        pgbench(lab, '-i', '-s', str(args.scale), '-q', 'bench')
        size = lab.pg.sql("SELECT pg_size_pretty(pg_database_size('bench'))")[0][0]
        samples = dict(raw_backup=[], engine_backup=[], raw_restore=[], engine_restore=[], raw_writes=[],
                       engine_writes=[], raw_check=[])
        for i in range(args.repeat):
            order = ('raw', 'engine') if i % 2 == 0 else ('engine', 'raw')  # cache warmth hits both alike
            for kind in order:
                log('run %d: %s backup' % (i, kind))
                if kind == 'raw':
                    samples['raw_backup'].append(raw_backup(lab))
                else:
                    seconds, label = engine_backup(lab, conn)
                    samples['engine_backup'].append(seconds)
            samples['raw_check'].append(raw_check(lab))
            pgbench(lab, '-T', '3', '-c', '2', 'bench')
            time.sleep(1.1)
            target = lab.pg.sql("SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')")[0][0] + '+00'
            time.sleep(1.1)
            pgbench(lab, '-T', '2', '-c', '2', 'bench')
            lab.switch_wal()
            for kind in order:
                path = os.path.join(lab.base, '%s-restore-%d' % (kind, i))
                port = lab.pg.port + 10 + (1 if kind == 'engine' else 0)
                log('run %d: %s restore to %s' % (i, kind, target))
                try:
                    if kind == 'raw':
                        restored, writes = raw_restore(lab, target, label, path, port)
                    else:
                        restored, writes = engine_restore(lab, conn, target, label, path, port)
                finally:
                    stop_data_dir(path)
                    shutil.rmtree(path, ignore_errors=True)
                samples['%s_restore' % kind].append(restored)
                samples['%s_writes' % kind].append(writes)
        for key, values in samples.items():
            rows[key] = statistics.median(values)
        samples_out.update(samples)
        on, off = [], []
        for i in range(args.repeat):
            log('run %d: TPS with archive_mode on' % i)
            on.append(tps(lab, args.tps_seconds))
            lab.pg.sql('ALTER SYSTEM SET archive_mode = off')
            lab.pg.restart()
            log('run %d: TPS with archive_mode off' % i)
            off.append(tps(lab, args.tps_seconds))
            lab.pg.sql('ALTER SYSTEM RESET archive_mode')
            lab.pg.restart()
        tps_on, tps_off = statistics.median(on), statistics.median(off)
    load_after = load()
    print('## PITR benchmark (%s UTC)\n' % started.strftime('%Y-%m-%d %H:%M'))
    print('- machine: %s, %d CPUs, %s; load average before %s, after %s' % (
        platform.node(), os.cpu_count(), platform.platform(), load_before, load_after))
    print('- pgbench scale %d (database %s), repeat %d, encrypted repository (aes-256-cbc), lz4, process-max=1\n'
          % (args.scale, size, args.repeat))
    print('| step | pgBackRest alone (s) | through the collection (s) | ratio |')
    print('| --- | ---: | ---: | ---: |')
    for label, raw, eng in (('full backup', 'raw_backup', 'engine_backup'),
                            ('pgbackrest restore (files)', 'raw_restore', 'engine_restore'),
                            ('restore to a time until the server accepts writes', 'raw_writes', 'engine_writes')):
        print('| %s | %.2f | %.2f | %.2fx |' % (label, rows[raw], rows[eng], rows[eng] / rows[raw]))
    print('\n`pgbackrest check` (a WAL switch and the wait for it in the repository) alone takes %.2f s here; '
          'the engine\'s backups: archive_check %s (`archiver`: left out because pg_stat_archiver showed this '
          'stanza\'s archive-push at work, see docs/pitr.md).' % (rows['raw_check'], ', '.join(CHECKS)))
    print('\n| pgbench TPS (-c 2, %d s) | archive_mode off | archive_mode on (pgbackrest archive-push) | cost |'
          % args.tps_seconds)
    print('| --- | ---: | ---: | ---: |')
    print('| TPC-B like | %.0f | %.0f | %.1f%% |' % (tps_off, tps_on, 100.0 * (tps_off - tps_on) / tps_off))
    print('\nEvery sample (s): %s; TPS on %s, off %s' % (
        ', '.join('%s %s' % (k, '/'.join('%.2f' % v for v in vals)) for k, vals in samples_out.items()),
        '/'.join('%.0f' % v for v in on), '/'.join('%.0f' % v for v in off)))


def tps(lab, seconds):
    out = pgbench(lab, '-T', str(seconds), '-c', '2', 'bench').stdout
    for line in out.splitlines():
        if line.startswith('tps'):
            return float(line.split('=')[1].split()[0])
    raise RuntimeError('no tps in pgbench output: %s' % out)


if __name__ == '__main__':
    main()
