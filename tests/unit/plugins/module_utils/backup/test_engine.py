"""Backup engine, catalog and retention against a real throwaway cluster."""

import datetime
import json
import os
import stat

import pytest

from ansible_collections.dbdevops.postgresql.plugins.module_utils.connection import PgConnectionError
from ansible_collections.dbdevops.postgresql.plugins.module_utils.backup import _tools, catalog, engine, restore
from ansible_collections.dbdevops.postgresql.plugins.module_utils.backup._tools import BackupError
from ansible_collections.dbdevops.postgresql.plugins.module_utils import datacompare
from tests.harness.pgcluster import free_port
from tests.harness.backup_samples import params_for, take_backup


@pytest.mark.parametrize('fmt,jobs,compression', [('custom', 1, 'gzip'), ('directory', 2, 'gzip'),
                                                  ('custom', 1, 'none')])
def test_round_trip_per_format(sample_db, dest, fmt, jobs, compression):
    cluster, name = sample_db
    result = take_backup(cluster, name, dest, format=fmt, jobs=jobs, compression=compression,
                         globals=True)
    manifest = result['manifest']
    assert result['path'] == os.path.join(dest, result['backup_id'])
    assert manifest['database'] == name and manifest['format'] == fmt
    assert manifest['row_counts_exact'] is True
    counts = dict(('%s.%s' % (t['schema'], t['name']), t['rows']) for t in manifest['tables'])
    assert counts == {'public.customers': 300, 'sales.orders': 2000, 'public.Odd "Name"': 3,
                      'public.empty_one': 0}
    assert 'globals.sql' in manifest['files']
    assert manifest['pg_dump_version'].startswith('15.')
    assert manifest['bytes'] == sum(f['bytes'] for f in manifest['files'].values())
    for rel, info in manifest['files'].items():
        path = os.path.join(result['path'], rel)
        assert _tools.sha256_file(path) == (info['sha256'], info['bytes'])
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    for dirpath, _dirs, _files in os.walk(result['path']):
        assert stat.S_IMODE(os.stat(dirpath).st_mode) == 0o700
        if os.geteuid() == 0:
            assert os.stat(dirpath).st_uid == os.stat(cluster.datadir).st_uid
    assert not [n for n in os.listdir(dest) if n.startswith('.partial-')]

    params = params_for(cluster)
    target = name + '_copy'
    plan = restore.plan_restore(params, restore.RestoreOptions(src=dest, backup_id='latest',
                                                               target_db=target, jobs=jobs))
    assert plan['action'] == 'create'
    out = restore.run_restore(params, plan)
    assert out['verification']['passed'] is True
    assert out['verification']['tables_checked'] == 4
    assert out['verification']['rows_expected'] == 2303
    report = datacompare.compare(params.replace(db=name), params.replace(db=target))
    assert report['equal'] is True, report['differences']
    assert report['tables_compared'] == 4
    cluster.sql('DROP DATABASE "%s"' % target)


def test_counts_come_from_the_dump_snapshot(sample_db, dest):
    """Rows committed after the snapshot was exported are in neither the dump nor the counts."""
    cluster, name = sample_db
    params = params_for(cluster, name)
    opts = engine.BackupOptions(dest=dest, databases=[name])
    plan = engine.plan_backup(params, opts)
    real_run = engine._run_pg_dump

    def run_after_insert(*args, **kwargs):
        cluster.sql('INSERT INTO sales.orders (customer_id, amount) VALUES (1, 1)', dbname=name)
        return real_run(*args, **kwargs)

    engine._run_pg_dump = run_after_insert
    try:
        result = engine.run_backup(params, plan)[0]
    finally:
        engine._run_pg_dump = real_run
    rows = dict((t['name'], t['rows']) for t in result['manifest']['tables'])
    assert rows['orders'] == 2000
    assert cluster.sql('SELECT count(*) FROM sales.orders', dbname=name)[0][0] == 2001
    drill = restore.restore_drill(params_for(cluster), dest, backup_db=name)
    assert drill['passed'] is True, drill


def test_count_rows_off_and_several_databases(pg, dest):
    names = ['multi_a', 'multi_b']
    for n in names:
        pg.sql('DROP DATABASE IF EXISTS %s' % n)
        pg.create_database(n)
        pg.sql('CREATE TABLE t AS SELECT 1 AS x', dbname=n)
    try:
        params = params_for(pg)
        plan = engine.plan_backup(params, engine.BackupOptions(dest=dest, databases=names,
                                                               count_rows=False))
        results = engine.run_backup(params, plan)
        assert [r['database'] for r in results] == names
        assert all(r['manifest']['row_counts_exact'] is False for r in results)
        assert [(t['schema'], t['name'], t['rows']) for t in results[0]['manifest']['tables']] == [('public', 't', None)]
        backups, _partial = catalog.list_backups(dest)
        assert sorted(b['database'] for b in backups) == names
        with pytest.raises(BackupError, match='several databases'):
            catalog.find_backup(dest, 'latest')
    finally:
        for n in names:
            pg.sql('DROP DATABASE IF EXISTS %s' % n)


def test_flipped_byte_makes_verify_fail_naming_the_file(sample_db, dest):
    cluster, name = sample_db
    result = take_backup(cluster, name, dest)
    archive = result['manifest']['archive']
    backups, dummy = catalog.list_backups(dest, verify=True)
    assert [b['status'] for b in backups] == ['verified']
    path = os.path.join(result['path'], archive)
    with open(path, 'r+b') as f:
        f.seek(os.path.getsize(path) // 2)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0xFF]))
    quick, dummy = catalog.list_backups(dest)
    assert quick[0]['status'] == 'complete'  # same size: only a re-hash can tell
    backups, dummy = catalog.list_backups(dest, verify=True)
    assert backups[0]['status'] == 'corrupt'
    assert backups[0]['problems'][0].startswith('%s: SHA-256 mismatch' % archive)
    # restore checks the checksums too and refuses the damaged backup
    with pytest.raises(BackupError) as err:
        restore.run_restore(params_for(cluster), restore.plan_restore(
            params_for(cluster), restore.RestoreOptions(src=dest, target_db=name + '_bad')))
    assert name + '_bad' not in [r[0] for r in cluster.sql('SELECT datname FROM pg_database')]
    assert archive in str(err.value) or 'pg_restore' in str(err.value)


def test_missing_file_and_unreadable_manifest_are_corrupt(sample_db, dest):
    cluster, name = sample_db
    first = take_backup(cluster, name, dest)
    second = take_backup(cluster, name, dest)
    os.unlink(os.path.join(first['path'], first['manifest']['archive']))
    with open(os.path.join(second['path'], 'manifest.json'), 'w') as f:
        f.write('{not json')
    backups, dummy = catalog.list_backups(dest)
    status = dict((b['backup_id'], b) for b in backups)
    assert status[first['backup_id']]['status'] == 'corrupt'
    assert status[first['backup_id']]['problems'] == ['%s: missing' % first['manifest']['archive']]
    assert status[second['backup_id']]['status'] == 'corrupt'
    with pytest.raises(BackupError, match='no complete backup'):
        catalog.find_backup(dest, 'latest')


# -- retention ---------------------------------------------------------------

def _fake(backup_id, end, db='app', status='complete'):
    return dict(backup_id=backup_id, database=db, status=status, path='/x/' + backup_id,
                end=_tools.iso(end))


def test_retention_plan_union_of_rules_and_tiers():
    now = datetime.datetime(2026, 3, 31, 12, tzinfo=datetime.timezone.utc)
    backups = [_fake('d%02d' % i, now - datetime.timedelta(days=i)) for i in range(0, 60)]
    delete = catalog.plan_retention(backups, catalog.RetentionPolicy(keep_last=3), now=now)
    assert sorted(d['backup_id'] for d in delete) == ['d%02d' % i for i in range(3, 60)]
    delete = catalog.plan_retention(backups, catalog.RetentionPolicy(keep_days=10), now=now)
    assert len(delete) == 50
    delete = catalog.plan_retention(backups, catalog.RetentionPolicy(keep_daily=2, keep_weekly=2,
                                                                     keep_monthly=3), now=now)
    kept = sorted(set(b['backup_id'] for b in backups) - set(d['backup_id'] for d in delete))
    # days: d00 d01; weeks: newest of this and last ISO week; months: Mar, Feb, Jan
    assert 'd00' in kept and 'd01' in kept
    assert 'd59' in kept  # newest of January (2026-01-31)
    assert len(kept) <= 7
    assert catalog.plan_retention(backups, catalog.RetentionPolicy(), now=now) == []


def test_retention_counts_only_good_backups_and_keeps_newest_good():
    now = datetime.datetime(2026, 3, 31, tzinfo=datetime.timezone.utc)
    old = now - datetime.timedelta(days=30)
    backups = [_fake('new-corrupt', now, status='corrupt'), _fake('good1', old),
               _fake('good2', old - datetime.timedelta(days=1)), _fake('other', old, db='b')]
    delete = catalog.plan_retention(backups, catalog.RetentionPolicy(keep_days=1), now=now)
    assert [d['backup_id'] for d in delete] == ['good2']
    delete = catalog.plan_retention(backups, catalog.RetentionPolicy(keep_last=0), now=now)
    assert [d['backup_id'] for d in delete] == ['good2']


def test_retention_on_disk_check_mode_then_real(sample_db, dest):
    cluster, name = sample_db
    ids = [take_backup(cluster, name, dest)['backup_id'] for dummy in range(3)]
    os.mkdir(os.path.join(dest, '.partial-20200101T000000Z-x-999999999'))
    later = _tools.utcnow() + datetime.timedelta(days=30)
    policy = catalog.RetentionPolicy(keep_days=7)
    plan = catalog.apply_retention(dest, policy, check_mode=True, now=later)
    assert sorted(d['backup_id'] for d in plan['deleted']) == sorted(ids[:2])
    assert plan['partial_removed'] == ['.partial-20200101T000000Z-x-999999999']
    assert sorted(os.listdir(dest)) == sorted(ids + ['.partial-20200101T000000Z-x-999999999'])
    done = catalog.apply_retention(dest, policy, now=later)
    assert done['deleted'] == plan['deleted']
    assert os.listdir(dest) == [ids[2]]  # every backup is older than the limit: the newest stays
    again = catalog.apply_retention(dest, policy, now=later)
    assert again['deleted'] == [] and os.listdir(dest) == [ids[2]]


def _flip_a_byte(path):
    with open(path, 'r+b') as f:
        f.seek(os.path.getsize(path) // 2)
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0xFF]))


def test_retention_verifies_what_it_keeps_and_never_counts_a_damaged_backup(sample_db, dest):
    cluster, name = sample_db
    results = [take_backup(cluster, name, dest) for dummy in range(3)]
    ids = [r['backup_id'] for r in results]
    _flip_a_byte(os.path.join(results[2]['path'], results[2]['manifest']['archive']))
    policy = catalog.RetentionPolicy(keep_last=1)
    # without re-verification the damaged newest would count and the last good one would go
    blind = catalog.apply_retention(dest, policy, check_mode=True, verify=False)
    assert [d['backup_id'] for d in blind['deleted']] == ids[:2][::-1]

    checked = catalog.apply_retention(dest, policy, check_mode=True)
    assert [d['backup_id'] for d in checked['deleted']] == [ids[0]]
    assert [c['backup_id'] for c in checked['corrupt']] == [ids[2]]
    assert checked['corrupt'][0]['problems'][0].startswith('%s: SHA-256 mismatch' % results[2]['manifest']['archive'])
    assert checked['verified'] == [ids[1]]
    assert sorted(os.listdir(dest)) == sorted(ids)  # check mode deletes nothing

    done = catalog.apply_retention(dest, policy)
    assert [d['backup_id'] for d in done['deleted']] == [ids[0]]
    # the damaged one stays for a person to look at, the newest good one stays as the backup
    assert sorted(os.listdir(dest)) == sorted(ids[1:])
    path, manifest = catalog.find_backup(dest, 'latest', database=name)
    assert manifest['id'] in (ids[1], ids[2])


def test_cli_skips_on_a_standby_and_backs_up_on_the_primary(sample_db, pg_factory, dest, capsys):
    from ansible_collections.dbdevops.postgresql.plugins.module_utils.backup import cli
    standby = pg_factory()
    standby.stop()
    open(os.path.join(standby.datadir, 'standby.signal'), 'w').close()
    standby.start()
    assert standby.sql('SELECT pg_is_in_recovery()') == [(True,)]
    config = os.path.join(dest, 'standby.json')
    with open(config, 'w') as f:
        json.dump(dict(login_unix_socket=standby.socket_dir, login_port=standby.port, dest=dest,
                       all_databases=True, retention=dict(keep_last=1)), f)
    assert cli.main(['--config', config, 'backup']) == 0
    out = capsys.readouterr().out
    assert 'skipped: ' in out and 'is a standby (pg_is_in_recovery() is true)' in out
    assert os.listdir(dest) == ['standby.json']

    cluster, name = sample_db
    primary = os.path.join(dest, 'primary.json')
    with open(primary, 'w') as f:
        json.dump(dict(login_unix_socket=cluster.socket_dir, login_port=cluster.port, dest=dest,
                       databases=[name], format='directory', jobs=2, retention=dict(keep_last=1)), f)
    assert cli.main(['--config', primary, 'backup']) == 0
    assert cli.main(['--config', primary, 'list', '--verify']) == 0
    out = capsys.readouterr().out
    assert 'backup ok: ' in out and ' verified ' in out
    # all_databases picks every database that accepts connections
    plan = engine.plan_backup(params_for(cluster), engine.BackupOptions(dest=dest, all_databases=True))
    assert name in plan['databases'] and 'template0' not in plan['databases']


# -- clear errors ------------------------------------------------------------

def test_zstd_on_pg15_client_is_refused_clearly(sample_db, dest):
    cluster, name = sample_db
    with pytest.raises(BackupError) as err:
        engine.plan_backup(params_for(cluster, name),
                           engine.BackupOptions(dest=dest, databases=[name], compression='zstd'))
    assert 'needs pg_dump 16 or later' in str(err.value) and 'supports only none, gzip' in str(err.value)


def test_jobs_need_directory_format(sample_db, dest):
    cluster, name = sample_db
    with pytest.raises(BackupError, match='jobs > 1 needs format: directory'):
        engine.plan_backup(params_for(cluster, name),
                           engine.BackupOptions(dest=dest, databases=[name], jobs=2))


def test_wrong_password_database_down_unknown_database(pg, pg_factory, dest):
    bad = params_for(pg, password='not-the-password')
    with pytest.raises(PgConnectionError) as err:
        engine.plan_backup(bad, engine.BackupOptions(dest=dest))
    assert 'password authentication failed' in str(err.value)
    assert 'not-the-password' not in str(err.value)

    with pytest.raises(BackupError) as err:
        engine.plan_backup(params_for(pg), engine.BackupOptions(dest=dest, databases=['nope']))
    assert 'database "nope" does not exist' in str(err.value)

    down = params_for(pg).replace(login_port=free_port())
    with pytest.raises(PgConnectionError) as err:
        engine.plan_backup(down, engine.BackupOptions(dest=dest))
    assert 'refused the connection' in str(err.value) and 'PostgreSQL is started' in str(err.value)
    assert os.listdir(dest) == []


def test_missing_backup_id_lists_available(sample_db, dest):
    cluster, name = sample_db
    result = take_backup(cluster, name, dest)
    with pytest.raises(BackupError) as err:
        restore.plan_restore(params_for(cluster), restore.RestoreOptions(src=dest, backup_id='20990101T000000Z-x'))
    assert 'backup "20990101T000000Z-x" not found under %s' % dest in str(err.value)
    assert result['backup_id'] in str(err.value)
    with pytest.raises(BackupError, match='does not exist'):
        catalog.find_backup(os.path.join(dest, 'nowhere'))


def test_manifest_is_json_with_required_fields(sample_db, dest):
    cluster, name = sample_db
    result = take_backup(cluster, name, dest)
    with open(os.path.join(result['path'], 'manifest.json')) as f:
        manifest = json.load(f)
    for key in ('id', 'host', 'cluster', 'database', 'server_version', 'pg_dump_version', 'format',
                'compression', 'start', 'end', 'duration_ms', 'bytes', 'files', 'tables', 'snapshot'):
        assert key in manifest, key
    assert manifest['start'] <= manifest['end']


def _bin_dir_with_failing_pg_restore(cluster, folder):
    """pg_dump and pg_dumpall of the cluster; a pg_restore that answers --version, then fails."""
    os.makedirs(folder)
    for name in ('pg_dump', 'pg_dumpall'):
        os.symlink(cluster.bin(name), os.path.join(folder, name))
    fake = os.path.join(folder, 'pg_restore')
    with open(fake, 'w') as f:
        f.write('#!/bin/sh\n[ "$1" = --version ] && exec %s --version\n'
                'echo "pg_restore: error: could not read input file: broken on purpose" >&2\nexit 1\n'
                % cluster.bin('pg_restore'))
    os.chmod(fake, 0o755)
    return folder


def _children_mentioning(text):
    found = []
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            try:
                with open('/proc/%s/cmdline' % entry, 'rb') as f:
                    if text.encode('utf-8') in f.read():
                        found.append(int(entry))
            except OSError:
                pass
    return found


@pytest.mark.parametrize('fmt,jobs', [('custom', 1), ('directory', 2)])
def test_archive_that_does_not_read_back_records_nothing(sample_db, dest, tmp_path, fmt, jobs):
    cluster, name = sample_db
    bin_dir = _bin_dir_with_failing_pg_restore(cluster, str(tmp_path / 'bin'))
    with pytest.raises(BackupError) as err:
        take_backup(cluster, name, dest, format=fmt, jobs=jobs, pg_bin_dir=bin_dir)
    assert 'does not read back' in str(err.value) and 'broken on purpose' in str(err.value)
    assert 'no backup was recorded' in str(err.value)
    assert os.listdir(dest) == []
    assert _children_mentioning(dest) == []  # no pg_dump, no read-back left behind


def test_failed_dump_leaves_no_read_back_waiting(sample_db, dest):
    cluster, name = sample_db
    cluster.sql('CREATE TABLE locked_out (id int)', dbname=name)
    conn = cluster.connect(name, autocommit=False)
    try:
        with conn.cursor() as cur:
            cur.execute('LOCK TABLE locked_out IN ACCESS EXCLUSIVE MODE')
        with pytest.raises(BackupError) as err:
            take_backup(cluster, name, dest, lock_wait_timeout='200ms')
        assert 'pg_dump' in str(err.value)
    finally:
        conn.rollback()
        conn.close()
    assert os.listdir(dest) == []
    assert _children_mentioning(dest) == []
    assert take_backup(cluster, name, dest)['manifest']['status'] == 'complete'
