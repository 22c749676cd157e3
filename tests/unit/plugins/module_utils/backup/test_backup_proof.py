"""Every proof tells the truth: what a backup records and what the catalog believes.

- the newest backup damaged: restore does not go back in time quietly (find_backup);
- a backup whose manifest was deleted stays visible (incomplete), an edited one is corrupt;
- nothing found is a failure naming the folder (backup_info, find_backup);
- sequences and large objects recorded in the dump's snapshot.
"""

import json
import os
import shutil

import pytest

from ansible_collections.dbdevops.postgresql.plugins.module_utils.backup import _tools, catalog, engine
from ansible_collections.dbdevops.postgresql.plugins.module_utils.backup._tools import BackupError
from ansible_collections.dbdevops.postgresql.plugins.modules import backup_info
from tests.harness.backup_samples import params_for, take_backup
from tests.harness.modules import run_module


def _three(cluster, name, dest):
    return [take_backup(cluster, name, dest) for _index in range(3)]


def _rewrite_manifest(folder, change):
    path = os.path.join(folder, 'manifest.json')
    with open(path) as f:
        manifest = json.load(f)
    change(manifest)
    with open(path, 'w') as f:
        json.dump(manifest, f, indent=2, sort_keys=True)


# -- item 8: the newest backup is damaged --------------------------------------

def test_latest_damaged_fails_by_default_naming_both_backups(sample_db, dest):
    cluster, name = sample_db
    results = _three(cluster, name, dest)
    ids = [r['backup_id'] for r in results]
    archive = results[2]['manifest']['archive']
    os.unlink(os.path.join(results[2]['path'], archive))
    with pytest.raises(BackupError) as err:
        catalog.find_backup(dest, 'latest', database=name)
    text = str(err.value)
    assert 'the newest backup of database "%s" under %s is damaged' % (name, dest) in text
    assert '"%s" (corrupt: %s: missing)' % (ids[2], archive) in text
    assert 'The newest good backup is "%s"' % ids[1] in text and 'backup_id: %s' % ids[1] in text
    assert err.value.details['newest_good'] == ids[1]
    assert err.value.details['damaged'] == [dict(backup_id=ids[2], status='corrupt',
                                                 problems=['%s: missing' % archive])]
    # the old call shape still works and still refuses
    with pytest.raises(BackupError, match='is damaged'):
        catalog.find_backup(dest, 'latest', database=name, verify=True)

    path, manifest = catalog.find_backup(dest, 'latest', database=name, allow_older=True)
    assert path == results[1]['path'] and manifest['id'] == ids[1]
    assert manifest[catalog.WARNINGS] == ['skipped the newer backup "%s" (corrupt: %s: missing); using "%s" instead'
                                          % (ids[2], archive, ids[1])]
    # the note is in memory only: the manifest still checks out with it
    assert catalog.check_backup(path, manifest, verify=True) == []
    # an explicit id is taken as asked
    path, manifest = catalog.find_backup(dest, ids[0], database=name)
    assert manifest['id'] == ids[0] and catalog.WARNINGS not in manifest


def test_latest_good_has_no_warning_and_damaged_older_ones_do_not_matter(sample_db, dest):
    cluster, name = sample_db
    results = _three(cluster, name, dest)
    os.unlink(os.path.join(results[0]['path'], results[0]['manifest']['archive']))
    path, manifest = catalog.find_backup(dest, 'latest', database=name)
    assert manifest['id'] == results[2]['backup_id'] and catalog.WARNINGS not in manifest


def test_latest_incomplete_counts_as_damaged(sample_db, dest):
    cluster, name = sample_db
    results = _three(cluster, name, dest)
    os.unlink(os.path.join(results[2]['path'], 'manifest.json'))
    with pytest.raises(BackupError) as err:
        catalog.find_backup(dest, 'latest', database=name)
    assert '"%s" (incomplete: manifest.json is missing' % results[2]['backup_id'] in str(err.value)
    with pytest.raises(BackupError, match='is incomplete: manifest.json is missing'):
        catalog.find_backup(dest, results[2]['backup_id'])
    path, manifest = catalog.find_backup(dest, 'latest', database=name, allow_older=True)
    assert manifest['id'] == results[1]['backup_id']


# -- item 9: deleted and edited manifests ----------------------------------------

def test_backup_without_manifest_is_listed_incomplete(sample_db, dest):
    cluster, name = sample_db
    results = _three(cluster, name, dest)
    gone = results[1]
    os.unlink(os.path.join(gone['path'], 'manifest.json'))
    os.mkdir(os.path.join(dest, 'not-a-backup'))  # someone else's folder: not listed
    backups, _partial = catalog.list_backups(dest)
    assert [b['backup_id'] for b in backups] == [r['backup_id'] for r in results][::-1]
    entry = backups[1]
    assert entry['status'] == 'incomplete' and entry['path'] == gone['path']
    assert entry['problems'] == ['manifest.json is missing: the backup never finished or its manifest '
                                 'was deleted; it cannot be restored or verified']
    assert entry['start'] == _tools.iso(_tools.parse_compact(gone['backup_id'][:16]))
    # the database filter still finds it by its name
    assert [b['status'] for b in catalog.list_backups(dest, database=name)[0]] == \
        ['complete', 'incomplete', 'complete']
    assert catalog.list_backups(dest, database=name + '_other')[0] == []
    # backup_info shows it and never counts it as good
    info = catalog.BackupInfoEngine(None, catalog.BackupInfoOptions(dest=dest)).plan().result()
    assert info['incomplete'] == [gone['backup_id']] and info['count'] == 3
    assert info['latest'] == {name: results[2]['backup_id']}


def test_retention_never_counts_incomplete_and_never_deletes_it(sample_db, dest):
    cluster, name = sample_db
    results = _three(cluster, name, dest)
    os.unlink(os.path.join(results[2]['path'], 'manifest.json'))
    done = catalog.apply_retention(dest, catalog.RetentionPolicy(keep_last=1))
    # the incomplete newest does not count: the newest good one stays, the oldest goes
    assert [d['backup_id'] for d in done['deleted']] == [results[0]['backup_id']]
    assert sorted(os.listdir(dest)) == sorted(r['backup_id'] for r in results[1:])


def test_edited_manifest_is_corrupt(sample_db, dest):
    cluster, name = sample_db
    result = take_backup(cluster, name, dest)
    manifest = result['manifest']
    assert manifest['format_version'] == 2
    assert manifest['manifest_sha256'] == catalog.manifest_digest(manifest)
    assert catalog.list_backups(dest, verify=True)[0][0]['status'] == 'verified'

    def more_rows(m):
        m['tables'][0]['rows'] += 1
    _rewrite_manifest(result['path'], more_rows)
    for verify in (False, True):
        entry = catalog.list_backups(dest, verify=verify)[0][0]
        assert entry['status'] == 'corrupt'
        assert entry['problems'] == ['manifest.json: edited or damaged after the backup was written (its '
                                     'content no longer matches manifest_sha256); do not trust this backup, '
                                     'take a new one']
    with pytest.raises(BackupError, match='manifest_sha256'):
        catalog.find_backup(dest, result['backup_id'])
    with pytest.raises(BackupError, match='no complete backup'):
        catalog.find_backup(dest, 'latest')


def test_old_manifest_without_checksum_is_readable_with_a_note(sample_db, dest):
    cluster, name = sample_db
    result = take_backup(cluster, name, dest)
    _rewrite_manifest(result['path'], lambda m: m.pop('manifest_sha256'))
    entry = catalog.list_backups(dest, verify=True)[0][0]
    assert entry['status'] == 'verified' and entry['problems'] == []
    assert entry['notes'] == [catalog.UNPROTECTED]
    path, manifest = catalog.find_backup(dest, 'latest')
    assert manifest['id'] == result['backup_id']


# -- item 7: nothing found is a failure ------------------------------------------

def test_backup_info_fails_on_missing_folder_and_on_no_backup(dest):
    missing = os.path.join(dest, 'nowhere')
    result = run_module(backup_info, dict(dest=missing))
    assert result['failed']
    assert result['msg'] == ('backup folder %s does not exist: check dest (a typo, or the backup '
                             'volume is not mounted)' % missing)
    result = run_module(backup_info, dict(dest=missing), check=True)
    assert result['failed'] and missing in result['msg']

    os.mkdir(os.path.join(dest, 'empty'))
    empty = os.path.join(dest, 'empty')
    result = run_module(backup_info, dict(dest=empty))
    assert result['failed']
    assert result['msg'] == ('no backup found under %s: set allow_empty: true when an empty backup '
                             'folder is expected' % empty)
    assert result['count'] == 0
    result = run_module(backup_info, dict(dest=empty, database='app', allow_empty=True))
    assert not result['failed'] and result['count'] == 0 and result['backups'] == []


def test_backup_info_no_backup_of_that_database(sample_db, dest):
    cluster, name = sample_db
    take_backup(cluster, name, dest)
    result = run_module(backup_info, dict(dest=dest, database='other'))
    assert result['failed']
    assert result['msg'] == ('no backup of database "other" found under %s (it holds backups of: %s): '
                             'set allow_empty: true when that is expected' % (dest, name))
    result = run_module(backup_info, dict(dest=dest, database=name))
    assert not result['failed'] and result['count'] == 1


def test_find_backup_nothing_found_names_folder_and_database(pg, dest):
    with pytest.raises(BackupError) as err:
        catalog.find_backup(dest)
    assert str(err.value) == 'no complete backup under %s (the folder holds no backup)' % dest
    with pytest.raises(BackupError) as err:
        catalog.find_backup(dest, database='app')
    assert str(err.value) == 'no complete backup of database "app" under %s (the folder holds no backup)' % dest
    with pytest.raises(BackupError) as err:
        catalog.find_backup(os.path.join(dest, 'nowhere'), database='app')
    assert os.path.join(dest, 'nowhere') in str(err.value) and 'does not exist' in str(err.value)


def test_partial_folder_without_manifest_is_not_incomplete(sample_db, dest):
    cluster, name = sample_db
    result = take_backup(cluster, name, dest)
    shutil.copytree(result['path'], os.path.join(dest, '.partial-%s-999999999' % result['backup_id']))
    backups, partial = catalog.list_backups(dest)
    assert [b['status'] for b in backups] == ['complete'] and len(partial) == 1


def test_engine_plan_is_unchanged_by_proof_keys(sample_db, dest):
    """The check-mode answer names the backups it would take (sanity of the plan after the changes)."""
    cluster, name = sample_db
    plan = engine.BackupEngine(params_for(cluster, name),
                               engine.BackupOptions(dest=dest, databases=[name])).plan()
    assert plan.result()['backups'][0]['database'] == name


# -- item 6: what is not in any table ----------------------------------------------

def test_manifest_records_sequences_and_large_objects_of_the_snapshot(pg_db, dest):
    import hashlib
    from tests.harness import rich_schema
    cluster, name = pg_db
    rich_schema.load(cluster, name)
    truth = rich_schema.snapshot(cluster, name)
    params = params_for(cluster, name)
    plan = engine.plan_backup(params, engine.BackupOptions(dest=dest, databases=[name]))
    real_run = engine._run_pg_dump

    def run_after_changes(*args, **kwargs):
        # after the snapshot was exported: in neither the archive nor the manifest
        cluster.sql("SELECT lo_from_bytea(0, 'too late'::bytea)", dbname=name)
        return real_run(*args, **kwargs)

    engine._run_pg_dump = run_after_changes
    try:
        manifest = engine.run_backup(params, plan)[0]['manifest']
    finally:
        engine._run_pg_dump = real_run
    expected_seq = dict(('"%s"."%s"' % (s.replace('"', '""'), n.replace('"', '""')), [v, c])
                        for (s, n), (v, c) in truth['sequences'].items())
    assert manifest['sequences'] == expected_seq
    assert manifest['sequences']['"public"."free_counter"'] == [107, True]
    assert manifest['sequences']['"public"."never_called"'] == [1, False]
    conn = cluster.connect(name)
    try:
        with conn.cursor() as cur:
            expected_lo = {}
            for oid in sorted(truth['large_objects']):
                cur.execute('SELECT lo_get(%s)', (oid,))
                expected_lo[str(oid)] = hashlib.md5(bytes(cur.fetchone()[0])).hexdigest()
    finally:
        conn.close()
    assert len(expected_lo) == 2 and manifest['large_objects'] == expected_lo
    # what the manifest says is written, and sealed
    with open(os.path.join(dest, manifest['id'], 'manifest.json')) as f:
        on_disk = json.load(f)
    assert on_disk['sequences'] == expected_seq and on_disk['large_objects'] == expected_lo
    assert catalog.check_backup(os.path.join(dest, manifest['id']), on_disk, verify=True) == []


def test_count_rows_off_records_no_sequences_nor_large_objects(sample_db, dest):
    cluster, name = sample_db
    manifest = take_backup(cluster, name, dest, count_rows=False)['manifest']
    assert manifest['sequences'] is None and manifest['large_objects'] is None
    manifest = take_backup(cluster, name, dest)['manifest']
    assert manifest['large_objects'] == {}
    assert manifest['sequences'] == {'"public"."customers_id_seq"': [300, True],
                                     '"sales"."orders_id_seq"': [2000, True]}


# -- item 12: server timeouts set on the database or role ----------------------------

def _set_timeouts(cluster, name, value):
    """The four timeouts on the database and on the role, set from one session (they bite new ones)."""
    conn = cluster.connect('postgres')
    try:
        with conn.cursor() as cur:
            for setting in ('statement_timeout', 'idle_in_transaction_session_timeout',
                            'idle_session_timeout', 'lock_timeout'):
                cur.execute('ALTER DATABASE "%s" SET %s = %%s' % (name, setting), (value,))
                cur.execute('ALTER ROLE postgres SET %s = %%s' % setting, (value,))
    finally:
        conn.close()


@pytest.mark.parametrize('value', ['1ms', '30ms'])
def test_backup_survives_tiny_server_timeouts(pg_factory, dest, value):
    from tests.harness.backup_samples import load_sample
    cluster = pg_factory()
    cluster.create_database('app')
    load_sample(cluster, 'app')
    cluster.sql("CREATE TABLE slow AS SELECT g, repeat('x', 200) AS pad FROM generate_series(1, 200000) g",
                dbname='app')
    _set_timeouts(cluster, 'app', value)
    # the settings bite: a plain session of that database is cut off
    with pytest.raises(Exception) as err:
        conn = cluster.connect('app')
        with conn.cursor() as cur:
            cur.execute('SELECT pg_sleep(0.2)')
    assert 'timeout' in str(err.value) or 'server closed the connection' in str(err.value)
    for fmt, jobs, count_rows in (('custom', 1, True), ('directory', 2, False)):
        result = take_backup(cluster, 'app', dest, format=fmt, jobs=jobs, globals=True, count_rows=count_rows)
        rows = dict((t['name'], t['rows']) for t in result['manifest']['tables'])
        assert rows['slow'] == (200000 if count_rows else None)
    backups, _partial = catalog.list_backups(dest, verify=True)
    assert [b['status'] for b in backups] == ['verified', 'verified']


def test_batched_reads_match_one_query_per_object(pg_db):
    from ansible_collections.dbdevops.postgresql.plugins.module_utils import _catalog
    from tests.harness import rich_schema
    cluster, name = pg_db
    rich_schema.load(cluster, name)
    conn = cluster.connect(name)
    try:
        with conn.cursor() as cur:
            tables = _catalog.list_user_tables(cur)
            assert len(tables) > 7
            for chunk in (1, 3, 100):
                assert _catalog.count_rows_batched(cur, tables, chunk=chunk) == _catalog.count_rows(cur, tables)
                assert _catalog.sequence_values_batched(cur, chunk=chunk) == _catalog.sequence_values(cur)
            assert _catalog.count_rows_batched(cur, []) == {}
    finally:
        conn.close()


# What the engine's grouped catalog read must equal: one subquery per table and kind.
TABLE_OBJECTS_PER_TABLE_SQL = """
SELECT n.nspname, c.relname,
       ARRAY(SELECT i.relname FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
              WHERE x.indrelid = c.oid ORDER BY 1),
       ARRAY(SELECT k.conname FROM pg_constraint k WHERE k.conrelid = c.oid AND k.contype <> 'f' ORDER BY 1),
       ARRAY(SELECT json_build_object('name', k.conname, 'schema', rn.nspname, 'table', r.relname)::text
               FROM pg_constraint k JOIN pg_class r ON r.oid = k.confrelid
               JOIN pg_namespace rn ON rn.oid = r.relnamespace
              WHERE k.conrelid = c.oid AND k.contype = 'f' ORDER BY k.conname),
       ARRAY(SELECT a.attname FROM pg_attrdef d JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
              WHERE d.adrelid = c.oid ORDER BY 1),
       ARRAY(SELECT s.relname FROM pg_depend dep JOIN pg_class s ON s.oid = dep.objid
              WHERE dep.classid = 'pg_class'::regclass AND dep.refclassid = 'pg_class'::regclass
                AND dep.refobjid = c.oid AND dep.deptype IN ('a', 'i') AND s.relkind = 'S' ORDER BY 1),
       ARRAY(SELECT t.tgname FROM pg_trigger t WHERE t.tgrelid = c.oid AND NOT t.tgisinternal ORDER BY 1),
       ARRAY(SELECT p.polname FROM pg_policy p WHERE p.polrelid = c.oid ORDER BY 1)
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
   AND n.nspname !~ '^pg_toast' AND n.nspname !~ '^pg_temp'
"""


def test_engine_snapshot_reads_match_one_query_per_object(pg_db):
    from ansible_collections.dbdevops.postgresql.plugins.module_utils import _catalog
    from tests.harness import rich_schema
    cluster, name = pg_db
    rich_schema.load(cluster, name)
    cluster.sql('CREATE SCHEMA "Odd ""S"""; CREATE SEQUENCE "Odd ""S"""."reset seq"; '
                "SELECT setval('\"Odd \"\"S\"\"\".\"reset seq\"', 42, false); "
                'CREATE TABLE "Odd ""S"""."Kid" (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, '
                'inv int REFERENCES invoices (id), note text DEFAULT \'x\'); '
                'CREATE TRIGGER "Kid trigger" BEFORE INSERT ON "Odd ""S"""."Kid" '
                'FOR EACH ROW EXECUTE FUNCTION suppress_redundant_updates_trigger(); '
                'CREATE TABLE "Odd ""S""".empty_one ()', dbname=name)
    conn = cluster.connect(name)
    try:
        with conn.cursor() as cur:
            expected = _catalog.sequence_values(cur)
            assert any(not called for _value, called in expected.values())  # never called, setval(false)
            assert any(called for _value, called in expected.values())
            for chunk in (1, 2, 100):
                assert engine.sequence_values(cur, chunk=chunk) == expected
            objects = engine.table_objects(cur)
            cur.execute(TABLE_OBJECTS_PER_TABLE_SQL)
            reference = dict(((s, n), dict(
                indexes=list(i), constraints=list(c), foreign_keys=[json.loads(fk) for fk in f],
                defaults=list(d), sequences=list(q), triggers=list(t), policies=list(p)))
                for s, n, i, c, f, d, q, t, p in cur.fetchall())
            assert objects == reference
            kid = objects[('Odd "S"', 'Kid')]
            assert kid['foreign_keys'] and kid['triggers'] == ['Kid trigger'] and kid['defaults'] == ['note']
            assert kid['sequences'] and objects[('Odd "S"', 'empty_one')]['indexes'] == []
            assert any(o['policies'] for o in objects.values())
    finally:
        conn.close()


def test_manifest_file_is_the_canonical_json_sealed_first(sample_db, dest):
    cluster, name = sample_db
    result = take_backup(cluster, name, dest)
    with open(os.path.join(result['path'], 'manifest.json'), 'rb') as f:
        data = f.read()
    on_disk = json.loads(data.decode('utf-8'))
    assert data.startswith(b'{"manifest_sha256":"%s",' % on_disk['manifest_sha256'].encode('ascii'))
    assert on_disk['manifest_sha256'] == catalog.manifest_digest(on_disk) == result['manifest']['manifest_sha256']
    assert on_disk == result['manifest']
    assert catalog.check_backup(result['path'], on_disk, verify=True) == []
    for rel in ('manifest.json', result['manifest']['archive']):
        assert os.stat(os.path.join(result['path'], rel)).st_mode & 0o777 == 0o600, rel
