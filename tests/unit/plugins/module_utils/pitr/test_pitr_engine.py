"""PITR engines against a real cluster archiving into a real (encrypted) pgBackRest repository.

One lab for the module (cluster + stanza + a full backup); the tests run in
file order and the last ones break and repair the lab on purpose.
"""

import json
import os
import time

import pytest

from ansible_collections.dbdevops.postgresql.plugins.module_utils import datacompare
from ansible_collections.dbdevops.postgresql.plugins.module_utils.connection import ConnParams
from ansible_collections.dbdevops.postgresql.plugins.module_utils.errors import DbDevopsError
from ansible_collections.dbdevops.postgresql.plugins.module_utils.pitr import options as o
from ansible_collections.dbdevops.postgresql.plugins.module_utils.pitr.backup import (
    ArchivingError, PhysicalBackupEngine)
from ansible_collections.dbdevops.postgresql.plugins.module_utils.pitr.info import PhysicalBackupInfoEngine
from ansible_collections.dbdevops.postgresql.plugins.module_utils.pitr.restore import PitrRestoreEngine
from ansible_collections.dbdevops.postgresql.plugins.module_utils.pitr.restore_point import RestorePointEngine
from tests.harness.pgcluster import SUPERUSER_PASSWORD
from tests.harness.pitr import CIPHER_PASS, PitrLab, stop_data_dir

SECRETS = (CIPHER_PASS, SUPERUSER_PASSWORD)
RESULTS = []


def no_secret(result):
    text = json.dumps(result, default=str)
    RESULTS.append(text)
    for secret in SECRETS:
        assert secret not in text
    return result


@pytest.fixture(scope='module')
def lab():
    with PitrLab() as lab:
        lab.pg.create_database('bench')
        lab.record = os.path.join(lab.base, 'restore-points.json')
        result = run(PhysicalBackupEngine, lab, o.PhysicalBackupOptions)
        assert result['backup']['type'] == 'full'
        yield lab


@pytest.fixture
def scratch(lab):
    path = os.path.join(lab.base, 'scratch-%d' % time.monotonic_ns())
    yield path
    stop_data_dir(path)


def conn(lab):
    return ConnParams.from_params(lab.conn(password=True))


def run(engine_cls, lab, options_cls, check=False, **kwargs):
    if options_cls is not o.RestorePointOptions:
        kwargs = dict(lab.repo_args(), **kwargs)
    engine = engine_cls(conn(lab), options_cls(**kwargs))
    plan = engine.plan()
    return no_secret(plan.result() if check else engine.apply(plan))


def restored_sql(result, query, dbname='postgres'):
    import psycopg2
    c = psycopg2.connect(host=result['socket_dir'], port=result['port'], dbname=dbname, user='postgres')
    c.autocommit = True
    try:
        with c.cursor() as cur:
            cur.execute(query)
            return cur.fetchall() if cur.description else None
    finally:
        c.close()


def pgbench(lab, *args):
    lab.pg.run_as_owner([lab.pg.bin('pgbench'), '-h', lab.pg.socket_dir, '-p', str(lab.pg.port)] + list(args),
                        timeout=120)


def test_backup_check_mode_then_real_and_info(lab):
    before = run(PhysicalBackupInfoEngine, lab, o.PhysicalBackupInfoOptions)['backup_count']
    checked = run(PhysicalBackupEngine, lab, o.PhysicalBackupOptions, check=True, type='incr')
    assert checked['changed'] and checked['backup'] is None and checked['archive_check'] == 'skipped'
    assert '--start-fast' in checked['command'] and '--type=incr' in checked['command']
    assert run(PhysicalBackupInfoEngine, lab, o.PhysicalBackupInfoOptions)['backup_count'] == before
    done = run(PhysicalBackupEngine, lab, o.PhysicalBackupOptions, type='incr')
    b = done['backup']
    # the lab's archive_command is this stanza's archive-push and pg_stat_archiver shows it at work
    assert b['type'] == 'incr' and b['prior'] and done['archive_check'] == 'archiver'
    always = run(PhysicalBackupEngine, lab, o.PhysicalBackupOptions, type='incr', archive_check='always')
    assert always['archive_check'] == 'passed' and always['backup']['label'] != b['label']
    before += 1
    assert b['database_bytes'] > 1000000 and b['repo_bytes'] > 0 and b['wal_start'] and b['lsn_stop']
    assert b['stop_time'] >= b['start_time'] and done['duration_seconds'] > 0
    info = run(PhysicalBackupInfoEngine, lab, o.PhysicalBackupInfoOptions)
    assert info['backup_count'] == before + 1 and info['ok'], info['problems']
    assert [x['label'] for x in info['backups'][-2:]] == [b['label'], always['backup']['label']]
    assert info['recoverable']['earliest'] == info['backups'][0]['stop_time']
    assert info['recoverable']['latest'] >= b['stop_time']
    assert info['archiver']['status'] == 'ok' and info['status']['code'] == 0
    assert info['wal_archive']['max'] >= b['wal_stop']


def test_restore_to_a_time_brings_back_deleted_rows_and_nothing_after(lab, scratch):
    pgbench(lab, '-i', '-s', '1', '-q', 'bench')
    pgbench(lab, '-T', '3', '-c', '2', 'bench')
    lab.pg.sql("CREATE TABLE marker (note text, at timestamptz DEFAULT now())", dbname='bench')
    lab.pg.sql("INSERT INTO marker (note) VALUES ('before T')", dbname='bench')
    lab.pg.sql('CREATE DATABASE bench_ref TEMPLATE bench')  # the data as it is at T, to compare with
    time.sleep(1.1)
    target = lab.pg.sql("SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')")[0][0] + '+00'
    time.sleep(1.1)
    deleted = lab.pg.sql('WITH d AS (DELETE FROM pgbench_accounts WHERE aid % 3 = 0 RETURNING 1) '
                         'SELECT count(*) FROM d', dbname='bench')[0][0]
    assert deleted > 30000
    lab.pg.sql("INSERT INTO marker (note) VALUES ('after T')", dbname='bench')
    lab.switch_wal()

    checked = run(PitrRestoreEngine, lab, o.PitrRestoreOptions, check=True, target_time=target,
                  target_data_dir=scratch)
    assert not os.path.exists(scratch), 'check mode created the target directory'
    assert '--type=time' in checked['command'] and '--target-action=promote' in checked['command']
    assert checked['backup_set'] and checked['port']

    done = run(PitrRestoreEngine, lab, o.PitrRestoreOptions, target_time=target, target_data_dir=scratch)
    assert done['data_dir'] == scratch and done['restore_seconds'] > 0 and done['replay_seconds'] > 0
    assert done['reached']['log_line'].startswith('recovery stopping before commit')
    assert done['reached']['timeline'] == 2 and done['reached']['time'] <= target.replace(' ', 'T')[:19] + 'Z' or \
        done['reached']['time'][:19] <= target[:19]
    assert restored_sql(done, 'SELECT count(*) FROM pgbench_accounts', 'bench')[0][0] == 100000
    assert restored_sql(done, 'SELECT note FROM marker ORDER BY at', 'bench') == [('before T',)]
    # writes are accepted and it does not archive into the live stanza
    assert restored_sql(done, "SELECT current_setting('archive_mode'), pg_is_in_recovery()") == [('off', False)]
    src = ConnParams.from_params(lab.pg.conn_params(dbname='bench_ref'))
    dst = ConnParams(login_host=done['socket_dir'], login_port=done['port'], db='bench')
    report = datacompare.compare(src, dst)
    assert report['equal'], report['differences']
    assert report['tables_compared'] == 5

    # drop it: check mode keeps it, the real run removes it, again is no change
    assert run(PitrRestoreEngine, lab, o.PitrRestoreOptions, check=True, state='absent',
               target_data_dir=scratch)['changed']
    assert os.path.isdir(scratch)
    assert run(PitrRestoreEngine, lab, o.PitrRestoreOptions, state='absent', target_data_dir=scratch)['changed']
    assert not os.path.exists(scratch)
    assert not run(PitrRestoreEngine, lab, o.PitrRestoreOptions, state='absent', target_data_dir=scratch)['changed']


def test_restore_to_a_restore_point(lab, scratch):
    lab.pg.sql("INSERT INTO marker (note) VALUES ('before point')", dbname='bench')
    with pytest.raises(DbDevopsError, match='64 bytes'):
        run(RestorePointEngine, lab, o.RestorePointOptions, name='x' * 64, record_file=lab.record)
    checked = run(RestorePointEngine, lab, o.RestorePointOptions, check=True, name='before-change',
                  stanza='t', record_file=lab.record)
    assert checked['lsn'] is None and not os.path.exists(lab.record)
    point = run(RestorePointEngine, lab, o.RestorePointOptions, name='before-change', stanza='t',
                record_file=lab.record)
    assert point['lsn'] and point['timeline'] == 1 and point['recorded_in'] == lab.record
    lab.pg.sql("INSERT INTO marker (note) VALUES ('after point')", dbname='bench')
    # not archived yet: refused, naming the window
    with pytest.raises(DbDevopsError, match='not archived yet'):
        run(PitrRestoreEngine, lab, o.PitrRestoreOptions, target_name='before-change', record_file=lab.record,
            target_data_dir=scratch)
    assert not os.path.exists(scratch)
    lab.switch_wal()
    done = run(PitrRestoreEngine, lab, o.PitrRestoreOptions, target_name='before-change', record_file=lab.record,
               target_data_dir=scratch)
    assert 'restore point "before-change"' in done['reached']['log_line']
    notes = [r[0] for r in restored_sql(done, 'SELECT note FROM marker ORDER BY at', 'bench')]
    assert notes[-1] == 'before point' and 'after point' not in notes
    run(PitrRestoreEngine, lab, o.PitrRestoreOptions, state='absent', target_data_dir=scratch)


def test_restore_to_an_lsn(lab, scratch):
    lab.pg.sql("INSERT INTO marker (note) VALUES ('at lsn')", dbname='bench')
    lsn = lab.pg.sql('SELECT pg_current_wal_insert_lsn()::text')[0][0]
    lab.pg.sql("INSERT INTO marker (note) VALUES ('after lsn')", dbname='bench')
    lab.switch_wal()
    done = run(PitrRestoreEngine, lab, o.PitrRestoreOptions, target_lsn=lsn, target_data_dir=scratch)
    assert done['target'] == dict(type='lsn', value=lsn, timeline='current')
    assert 'recovery stopping after WAL location (LSN) "%s"' % lsn in done['reached']['log_line']
    notes = [r[0] for r in restored_sql(done, 'SELECT note FROM marker ORDER BY at', 'bench')]
    assert notes[-1] == 'at lsn' and 'after lsn' not in notes
    run(PitrRestoreEngine, lab, o.PitrRestoreOptions, state='absent', target_data_dir=scratch)


def test_targets_outside_the_window_are_refused_before_anything_is_touched(lab, scratch):
    for target, words in (('2001-01-01 00:00:00+00', 'before the end of the oldest backup'),
                          (time.strftime('%Y-%m-%d %H:%M:%S+00', time.gmtime(time.time() + 3600)), 'in the future')):
        with pytest.raises(DbDevopsError, match=words) as err:
            run(PitrRestoreEngine, lab, o.PitrRestoreOptions, target_time=target, target_data_dir=scratch)
        assert 'recoverable window is' in str(err.value)
        assert not os.path.exists(scratch)
    with pytest.raises(DbDevopsError, match='before the end of the oldest backup'):
        run(PitrRestoreEngine, lab, o.PitrRestoreOptions, target_lsn='0/100', target_data_dir=scratch)
    with pytest.raises(DbDevopsError, match='not a time'):
        run(PitrRestoreEngine, lab, o.PitrRestoreOptions, target_time='yesterday', target_data_dir=scratch)
    os.mkdir(scratch)
    open(os.path.join(scratch, 'precious'), 'w').close()
    with pytest.raises(DbDevopsError, match='not empty'):
        run(PitrRestoreEngine, lab, o.PitrRestoreOptions, latest=True, target_data_dir=scratch)
    with pytest.raises(DbDevopsError, match='not a scratch server'):
        run(PitrRestoreEngine, lab, o.PitrRestoreOptions, state='absent', target_data_dir=scratch)
    assert os.listdir(scratch) == ['precious']


def test_in_place_restore_that_fails_rolls_back(lab):
    lab.pg.sql("INSERT INTO marker (note) VALUES ('live row')", dbname='bench')
    rows = lab.pg.sql('SELECT note FROM marker ORDER BY at', dbname='bench')
    datadir_id = os.stat(lab.pg.datadir).st_ino
    log_file = os.path.join(lab.base, 'live.log')
    with pytest.raises(DbDevopsError) as err:
        # a restore point nobody made: recovery ends before the target, the restored server stops
        run(PitrRestoreEngine, lab, o.PitrRestoreOptions, target_name='never-made', replace=True,
            record_file=lab.record, log_file=log_file, recovery_timeout=60)
    assert 'Rolled back' in str(err.value) and 'serves as before' in str(err.value), str(err.value)
    assert 'recovery ended before configured recovery target was reached' in str(err.value)
    assert os.stat(lab.pg.datadir).st_ino == datadir_id
    assert lab.pg.sql('SELECT note FROM marker ORDER BY at', dbname='bench') == rows
    assert lab.pg.sql('SELECT pg_is_in_recovery()') == [(False,)]
    assert not [n for n in os.listdir(os.path.dirname(lab.pg.datadir)) if '.pitr-' in n]
    lab.pg.sql("INSERT INTO marker (note) VALUES ('still writable')", dbname='bench')


def test_in_place_restore_to_a_time(lab):
    lab.switch_wal()
    time.sleep(1.1)
    target = lab.pg.sql("SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')")[0][0] + '+00'
    time.sleep(1.1)
    lab.pg.sql("INSERT INTO marker (note) VALUES ('doomed')", dbname='bench')
    lab.switch_wal()
    done = run(PitrRestoreEngine, lab, o.PitrRestoreOptions, target_time=target, replace=True,
               log_file=os.path.join(lab.base, 'live.log'), keep_old_data_dir=True)
    assert done['old_data_dir'] and os.path.isdir(done['old_data_dir'])
    notes = [r[0] for r in lab.pg.sql('SELECT note FROM marker ORDER BY at', dbname='bench')]
    assert notes[-1] == 'still writable' and 'doomed' not in notes
    assert lab.pg.sql("SELECT pg_is_in_recovery(), current_setting('archive_mode')") == [(False, 'on')]
    import shutil
    shutil.rmtree(done['old_data_dir'])
    lab.switch_wal()  # the new timeline archives into the stanza
    info = run(PhysicalBackupInfoEngine, lab, o.PhysicalBackupInfoOptions)
    assert info['archiver']['status'] == 'ok' and info['wal_archive']['max'] > '00000001'


def test_verify_names_a_corrupt_file(lab):
    info = run(PhysicalBackupInfoEngine, lab, o.PhysicalBackupInfoOptions, verify=True)
    assert info['verify']['ok'] and info['verify']['checked'] > 100 and not info['verify']['corrupt_files']
    label = info['backups'][0]['label']
    folder = os.path.join(lab.repo, 'backup', 't', label, 'pg_data', 'base', '1')
    victim = os.path.join(folder, sorted(n for n in os.listdir(folder) if n[0].isdigit())[0])
    with open(victim, 'rb') as handle:
        saved = handle.read()
    try:
        with open(victim, 'r+b') as handle:
            handle.seek(40)
            handle.write(b'XXXX')
        info = run(PhysicalBackupInfoEngine, lab, o.PhysicalBackupInfoOptions, verify=True)
        assert not info['ok'] and not info['verify']['ok']
        rel = os.path.relpath(victim, lab.repo)
        assert info['verify']['corrupt_files'] == [rel]
        assert any(rel in p for p in info['problems'])
    finally:
        with open(victim, 'wb') as handle:
            handle.write(saved)


def test_broken_archiving_is_reported_and_blocks_backups_fast(lab):
    engine = PhysicalBackupEngine(conn(lab), o.PhysicalBackupOptions(archive_check_timeout=3, **lab.repo_args()))
    plan = engine.plan()  # archiving works at plan time
    failed_before = lab.pg.sql('SELECT failed_count FROM pg_stat_archiver')[0][0]
    lab.break_archiving()
    try:
        t0 = time.monotonic()
        with pytest.raises(ArchivingError, match='WAL archiving does not work') as err:
            engine.apply(plan)
        assert time.monotonic() - t0 < 20
        no_secret(err.value.details)
        assert 'pgBackRest said:' in str(err.value)
        lab.pg.sql("INSERT INTO marker (note) VALUES ('not archived')", dbname='bench')
        lab.switch_wal(wait=False)
        deadline = time.monotonic() + 20
        while lab.pg.sql('SELECT failed_count FROM pg_stat_archiver')[0][0] == failed_before \
                and time.monotonic() < deadline:
            time.sleep(0.2)
        info = run(PhysicalBackupInfoEngine, lab, o.PhysicalBackupInfoOptions)
        assert info['archiver']['status'] == 'failing' and not info['ok'], info['archiver']
        assert info['archiver']['failed_count'] > 0 and info['archiver']['last_failed_wal']
        assert any('WAL archiving fails' in p for p in info['problems'])
        labels = [b['label'] for b in info['backups']]
        t0 = time.monotonic()
        with pytest.raises(ArchivingError, match='WAL archiving fails') as err:
            run(PhysicalBackupEngine, lab, o.PhysicalBackupOptions)
        assert time.monotonic() - t0 < 5
        assert [b['label'] for b in run(PhysicalBackupInfoEngine, lab, o.PhysicalBackupInfoOptions)['backups']] \
            == labels
    finally:
        lab.fix_archiving()


def test_no_secret_in_any_result_or_log(lab):
    assert RESULTS
    logs = lab.logs_text()
    assert 'repo1-cipher-pass=<redacted>' in logs  # pgBackRest logged its options, and hid the passphrase
    for secret in SECRETS:
        assert secret not in logs
