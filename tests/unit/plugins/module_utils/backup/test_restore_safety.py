"""Restore safety: a partial restore never removes what it was not asked to restore, scratch
names never collide with the target, a failed swap gives the original back, globals never
alter an existing role, verification covers sequences and large objects, a damaged newest
backup is not silently skipped, a selection that matches nothing is an error, a killed run
leaves nothing behind, and a non-superuser gets a clear answer."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from ansible_collections.dbdevops.postgresql.plugins.module_utils import _catalog
from ansible_collections.dbdevops.postgresql.plugins.module_utils.backup import catalog, restore
from ansible_collections.dbdevops.postgresql.plugins.module_utils.backup._tools import BackupError
from ansible_collections.dbdevops.postgresql.plugins.module_utils.connection import ConnParams
from ansible_collections.dbdevops.postgresql.plugins.modules import restore as restore_module
from tests.harness.backup_samples import load_sample, params_for, take_backup
from tests.harness.modules import run_module


def _databases(cluster):
    return sorted(r[0] for r in cluster.sql('SELECT datname FROM pg_database'))


def _scratch(cluster):
    return [d for d in _databases(cluster) if d.startswith('dbdevops_')]


def _plan(cluster, params=None, **kwargs):
    return restore.plan_restore(params or params_for(cluster), restore.RestoreOptions(**kwargs))


def _count(cluster, db, table):
    return cluster.sql('SELECT count(*) FROM %s' % table, dbname=db)[0][0]


def _edit_manifest(path, change):
    name = os.path.join(path, 'manifest.json')
    with open(name) as handle:
        manifest = json.load(handle)
    change(manifest)
    if hasattr(catalog, 'seal_manifest'):   # a hand edit is detected: seal it as if the backup wrote it
        manifest.pop('manifest_sha256', None)
        catalog.seal_manifest(manifest)
    with open(name, 'w') as handle:
        json.dump(manifest, handle)


# -- 1. a partial restore never removes anything outside its selection -----------------

def test_partial_replace_replaces_only_the_selection(sample_db, dest):
    cluster, name = sample_db
    cluster.sql('ALTER TABLE sales.orders DROP CONSTRAINT orders_customer_id_fkey', dbname=name)
    take_backup(cluster, name, dest)
    cluster.sql('DELETE FROM public.customers WHERE id > 10', dbname=name)
    cluster.sql('DELETE FROM sales.orders WHERE id > 5', dbname=name)
    cluster.sql('CREATE TABLE public.kept AS SELECT 1 AS x', dbname=name)
    # without replace: refused, and the message does not offer a whole-database replace
    with pytest.raises(BackupError) as err:
        _plan(cluster, src=dest, tables=['customers'])
    msg = str(err.value)
    assert 'is not empty' in msg and 'swap' not in msg
    assert 'replaces only the selected tables' in msg
    plan = _plan(cluster, src=dest, tables=['customers'], replace=True)
    assert plan['action'] == 'replace_selection'
    result = restore.run_restore(params_for(cluster), plan)
    assert result['verification']['passed'] is True and result['verification']['tables_checked'] == 1
    assert _count(cluster, name, 'public.customers') == 300
    assert _count(cluster, name, 'sales.orders') == 5           # not selected: untouched
    assert _count(cluster, name, 'public.kept') == 1            # made after the backup: kept
    assert cluster.sql("INSERT INTO public.customers (name) VALUES ('n') RETURNING id", dbname=name) == [(301,)]
    # one schema in place
    result = restore.run_restore(params_for(cluster), _plan(cluster, src=dest, schemas=['sales'],
                                                            replace=True))
    assert result['restored_tables'] == ['"sales"."orders"']
    assert _count(cluster, name, 'sales.orders') == 2000
    assert _count(cluster, name, 'public.customers') == 301 and _count(cluster, name, 'public.kept') == 1
    assert not _scratch(cluster)


def test_partial_replace_blocked_by_a_dependent_rolls_back(sample_db, dest):
    cluster, name = sample_db
    take_backup(cluster, name, dest)
    cluster.sql('DELETE FROM public.customers WHERE id > 10 AND id NOT IN (SELECT customer_id FROM sales.orders)',
                dbname=name)
    cluster.sql('CREATE VIEW public.rich AS SELECT * FROM public.customers WHERE balance > 100', dbname=name)
    before = _count(cluster, name, 'public.customers')
    with pytest.raises(BackupError) as err:
        restore.run_restore(params_for(cluster), _plan(cluster, src=dest, tables=['public.customers'],
                                                       replace=True))
    msg = str(err.value)
    print(msg)
    assert 'depends on' in msg and 'nothing was changed' in msg.lower()
    assert 'view rich' in msg or 'orders_customer_id_fkey' in msg
    assert _count(cluster, name, 'public.customers') == before
    assert cluster.sql("SELECT to_regclass('public.rich') IS NOT NULL", dbname=name)[0][0]
    assert not _scratch(cluster)


def test_partial_replace_fails_fast_behind_a_lock(sample_db, dest):
    cluster, name = sample_db
    cluster.sql('ALTER TABLE sales.orders DROP CONSTRAINT orders_customer_id_fkey', dbname=name)
    take_backup(cluster, name, dest)
    cluster.sql('DELETE FROM public.customers WHERE id > 10', dbname=name)
    holder = cluster.connect(name, autocommit=False)
    try:
        with holder.cursor() as cur:
            cur.execute('SELECT count(*) FROM public.customers')
        started = time.monotonic()
        with pytest.raises(BackupError) as err:
            restore.run_restore(params_for(cluster), _plan(cluster, src=dest, tables=['customers'],
                                                           replace=True, lock_timeout='1s'))
        assert time.monotonic() - started < 30
        assert 'lock_timeout 1s' in str(err.value) and 'nothing was changed' in str(err.value).lower()
    finally:
        holder.rollback()
        holder.close()
    assert _count(cluster, name, 'public.customers') == 10


# -- 2. scratch names never collide with the target -------------------------------------

def test_replace_of_a_long_multibyte_target(sample_db, dest):
    cluster, name = sample_db
    take_backup(cluster, name, dest)
    target = '\u00fc' * 31 + 'x'                        # 63 bytes
    assert len(target.encode('utf-8')) == 63
    cluster.sql('CREATE DATABASE "%s" TEMPLATE template0' % target)
    try:
        cluster.sql('CREATE TABLE only_in_target (x int)', dbname=target)
        for _index in range(2):
            result = restore.run_restore(params_for(cluster), _plan(cluster, src=dest, target_db=target,
                                                                    replace=True))
            assert result['verification']['passed'] is True
            assert _count(cluster, target, 'sales.orders') == 2000
        assert not _scratch(cluster)
        assert cluster.sql("SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
                           (target,)) == [(None,)]
    finally:
        cluster.sql('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % target)
    with pytest.raises(BackupError) as err:
        _plan(cluster, src=dest, target_db='\u00fc' * 40)
    assert 'target_db' in str(err.value) and '80 bytes' in str(err.value)


def test_verify_rollback_scratch_is_named_claimed_and_cleaned(pg_db, tmp_path, monkeypatch):
    from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate import verify
    from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate.options import MigrateOptions
    from tests.harness.migrate_samples import write
    cluster, db = pg_db
    stale = _catalog.scratch_name('verify', db)
    cluster.sql('CREATE DATABASE "%s" TEMPLATE template0' % stale)
    cluster.sql("COMMENT ON DATABASE \"%s\" IS '%s'" % (stale, _catalog.SCRATCH_COMMENT))
    seen = []
    real = verify._verify_on

    def spy(sparams, options, files, scratch, *args, **kwargs):
        seen.append((scratch, cluster.sql("SELECT shobj_description(oid, 'pg_database') FROM pg_database "
                                          "WHERE datname = %s", (scratch,))[0][0]))
        return real(sparams, options, files, scratch, *args, **kwargs)

    monkeypatch.setattr(verify, '_verify_on', spy)
    params = ConnParams.from_params(cluster.conn_params(db))
    path = write(tmp_path, {'V1__t.sql': 'CREATE TABLE t (x int);', 'U1__t.sql': 'DROP TABLE t;'})
    assert verify.verify_rollback(params, MigrateOptions(path))['verified'] is True
    assert seen[0][0].startswith('dbdevops_verify_') and seen[0][1] == _catalog.SCRATCH_COMMENT
    assert stale not in _databases(cluster) and seen[0][0] not in _databases(cluster)
    verify.verify_rollback(params, MigrateOptions(path), keep_database=True)   # kept: no longer scratch
    kept = [d for d in _databases(cluster) if d.startswith('dbdevops_verify_')]
    assert len(kept) == 1
    verify.verify_rollback(params, MigrateOptions(path))
    assert kept[0] in _databases(cluster)
    cluster.sql('DROP DATABASE "%s"' % kept[0])


# -- 3. a swap that cannot end every session gives the original back -------------------

def test_a_swap_failing_in_its_transaction_leaves_the_original(sample_db, dest, monkeypatch):
    from ansible_collections.dbdevops.postgresql.plugins.module_utils.backup import _swap
    cluster, name = sample_db
    take_backup(cluster, name, dest)
    cluster.sql('TRUNCATE sales.orders', dbname=name)
    real = _swap.rename_pair

    def half(cur, scratch_name, target, aside):
        real(cur, scratch_name, target, aside)
        cur.execute("SELECT 1/0")                          # fails after both renames, before commit

    monkeypatch.setattr(_swap, 'rename_pair', half)
    client = cluster.connect(name)
    try:
        with pytest.raises(BackupError) as err:
            restore.run_restore(params_for(cluster), _plan(cluster, src=dest, replace=True,
                                                           terminate_connections=True))
    finally:
        client.close()
    assert 'division by zero' in str(err.value)
    assert 'the original database "%s" is unchanged' % name in str(err.value)
    assert cluster.sql('SELECT datallowconn FROM pg_database WHERE datname = %s', (name,)) == [(True,)]
    assert _count(cluster, name, 'sales.orders') == 0
    assert not _scratch(cluster)


def test_terminate_refused_for_prepared_transaction_and_allowconn_restored(pg_factory, dest):
    cluster = pg_factory(settings={'max_prepared_transactions': 4})
    name = 'app'
    cluster.create_database(name)
    load_sample(cluster, name)
    take_backup(cluster, name, dest)
    cluster.sql('TRUNCATE sales.orders', dbname=name)
    conn = cluster.connect(name, autocommit=False)
    with conn.cursor() as cur:
        cur.execute("INSERT INTO public.empty_one VALUES (1)")
        cur.execute("PREPARE TRANSACTION 'stuck_gid'")
    conn.close()
    try:
        with pytest.raises(BackupError) as err:
            _plan(cluster, src=dest, replace=True, terminate_connections=True)
        assert 'prepared transaction' in str(err.value) and 'stuck_gid' in str(err.value)
        assert 'ROLLBACK PREPARED' in str(err.value)
        # prepared after the plan: the swap fails, the original is given back and connectable
        cluster.sql("ROLLBACK PREPARED 'stuck_gid'", dbname=name)
        plan = _plan(cluster, src=dest, replace=True, terminate_connections=True)
        conn = cluster.connect(name, autocommit=False)
        with conn.cursor() as cur:
            cur.execute("INSERT INTO public.empty_one VALUES (1)")
            cur.execute("PREPARE TRANSACTION 'late_gid'")
        conn.close()
        client = cluster.connect(name)
        with pytest.raises(BackupError) as err:
            restore.run_restore(params_for(cluster), plan)
        client.close()
        msg = str(err.value)
        assert 'late_gid' in msg and 'unchanged' in msg
        assert cluster.sql('SELECT datallowconn FROM pg_database WHERE datname = %s', (name,)) == [(True,)]
        assert _count(cluster, name, 'sales.orders') == 0
        assert not _scratch(cluster)
    finally:
        for gid in ('stuck_gid', 'late_gid'):
            if cluster.sql('SELECT 1 FROM pg_prepared_xacts WHERE gid = %s', (gid,)):
                cluster.sql("ROLLBACK PREPARED '%s'" % gid, dbname=name)


def test_sessions_a_non_superuser_cannot_end_are_named(sample_db, dest):
    cluster, name = sample_db
    take_backup(cluster, name, dest)
    cluster.sql('DROP ROLE IF EXISTS restorer')
    cluster.sql('CREATE ROLE restorer LOGIN CREATEDB')
    cluster.sql('GRANT pg_signal_backend TO restorer')
    cluster.sql('ALTER DATABASE "%s" OWNER TO restorer' % name)
    params = ConnParams.from_params(cluster.conn_params(user='restorer'))
    superuser = cluster.connect(name)                    # a postgres session: restorer cannot end it
    try:
        with pytest.raises(BackupError) as err:
            _plan(cluster, params, src=dest, replace=True, terminate_connections=True, no_owner=True)
        msg = str(err.value)
        assert 'cannot end' in msg and 'user postgres' in msg
        assert cluster.sql('SELECT datallowconn FROM pg_database WHERE datname = %s', (name,)) == [(True,)]
    finally:
        superuser.close()
        cluster.sql('ALTER DATABASE "%s" OWNER TO postgres' % name)
        cluster.sql('DROP ROLE restorer')


# -- 4. globals_first creates missing roles only ------------------------------------

def test_globals_first_never_alters_an_existing_role(sample_db, dest):
    cluster, name = sample_db
    for role in ('app_login', 'app_gone'):
        cluster.sql('DROP ROLE IF EXISTS %s' % role)
    cluster.sql("CREATE ROLE app_login LOGIN PASSWORD 'old-secret'")
    cluster.sql("CREATE ROLE app_gone LOGIN PASSWORD 'x'")
    take_backup(cluster, name, dest, globals=True)
    cluster.sql('ALTER ROLE app_login NOLOGIN PASSWORD NULL')   # disabled on purpose
    cluster.sql('DROP ROLE app_gone')
    target = name + '_g'
    try:
        plan = _plan(cluster, src=dest, target_db=target, globals_first=True)
        engine = restore.RestoreEngine(params_for(cluster), plan['options'])
        checked = engine.plan().result()
        assert checked['globals_created'] == ['role "app_gone"']
        result = restore.run_restore(params_for(cluster), plan)
        assert result['globals_created'] == ['role "app_gone"']
        assert cluster.sql("SELECT rolcanlogin, rolpassword IS NULL FROM pg_authid WHERE rolname = 'app_login'") == [
            (False, True)]
        assert cluster.sql("SELECT rolcanlogin FROM pg_roles WHERE rolname = 'app_gone'") == [(True,)]
        assert cluster.sql("SELECT rolsuper FROM pg_roles WHERE rolname = 'postgres'") == [(True,)]
    finally:
        cluster.sql('DROP DATABASE IF EXISTS "%s"' % target)
        cluster.sql('DROP ROLE IF EXISTS app_gone')
        cluster.sql('DROP ROLE IF EXISTS app_login')


# -- 6. sequences and large objects are verified --------------------------------------

def test_verification_covers_sequences_and_large_objects(sample_db, dest):
    cluster, name = sample_db
    oid = cluster.sql("SELECT lo_from_bytea(0, 'large object bytes')", dbname=name)[0][0]
    result = take_backup(cluster, name, dest)
    conn = cluster.connect(name)
    with conn.cursor() as cur:
        sequences = _catalog.sequence_values(cur)
        los = _catalog.large_object_digests(cur)
    conn.close()
    # a backup without the new keys (taken before they were recorded): said so, not silently passed
    _edit_manifest(result['path'], lambda m: [m.pop(k, None) for k in ('sequences', 'large_objects')])
    plain = restore.restore_drill(params_for(cluster), dest, backup_db=name)
    assert plain['passed'] is True
    assert 'not checked' in plain['verification']['sequences']
    assert 'not checked' in plain['verification']['large_objects']

    def with_keys(seq, lob):
        _edit_manifest(result['path'], lambda m: m.update(sequences=seq, large_objects=lob))

    with_keys(sequences, los)
    drill = restore.restore_drill(params_for(cluster), dest, backup_db=name)
    assert drill['passed'] is True, drill
    assert drill['verification']['sequences'] == dict(checked=len(sequences), mismatches=[])
    assert drill['verification']['large_objects'] == dict(checked=1, mismatches=[])
    bad = dict(sequences)
    bad['"public"."customers_id_seq"'] = [999, True]
    with_keys(bad, los)
    drill = restore.restore_drill(params_for(cluster), dest, backup_db=name)
    assert drill['passed'] is False and '"public"."customers_id_seq"' in drill['error']
    with_keys(sequences, {str(oid): '0' * 32})
    drill = restore.restore_drill(params_for(cluster), dest, backup_db=name)
    assert drill['passed'] is False and 'large object %s' % oid in drill['error']
    # a selection: its own sequences only, large objects not restored and said so
    with_keys(sequences, los)
    target = name + '_sel'
    out = restore.run_restore(params_for(cluster), _plan(cluster, src=dest, target_db=target,
                                                         tables=['customers']))
    cluster.sql('DROP DATABASE "%s"' % target)
    assert out['verification']['sequences'] == dict(checked=1, mismatches=[])
    assert 'not checked' in out['verification']['large_objects']
    assert not _scratch(cluster)


# -- 8. latest never skips a damaged newest backup silently ----------------------------

def test_latest_with_a_damaged_newest_backup(sample_db, dest):
    cluster, name = sample_db
    older = take_backup(cluster, name, dest)
    time.sleep(1.1)
    newest = take_backup(cluster, name, dest)
    os.unlink(os.path.join(newest['path'], newest['manifest']['archive']))
    target = name + '_latest'
    with pytest.raises(BackupError) as err:
        _plan(cluster, src=dest, backup_db=name, target_db=target)
    msg = str(err.value)
    assert newest['backup_id'] in msg and older['backup_id'] in msg and 'allow_older' in msg
    engine = restore.RestoreEngine(params_for(cluster), restore.RestoreOptions(
        src=dest, backup_db=name, target_db=target, allow_older=True))
    checked = engine.plan().result()
    assert checked['backup_id'] == older['backup_id']
    assert any(newest['backup_id'] in w for w in checked['warnings'])


# -- 10. a selection that matches nothing is an error ---------------------------------

def test_selection_matching_nothing_names_the_closest(sample_db, dest):
    cluster, name = sample_db
    take_backup(cluster, name, dest)
    with pytest.raises(BackupError) as err:
        _plan(cluster, src=dest, target_db=name + '_x', tables=['custmers'])
    assert '"custmers"' in str(err.value) and 'customers' in str(err.value)
    with pytest.raises(BackupError) as err:
        _plan(cluster, src=dest, target_db=name + '_x', schemas=['sals'])
    assert '"sals"' in str(err.value) and 'sales' in str(err.value)
    checked = run_module(restore_module, dict(cluster.conn_params(password=True), src=dest,
                                              target_db=name + '_x', tables=['custmers']), check=True)
    assert checked['failed'] and 'customers' in checked['msg']
    assert name + '_x' not in _databases(cluster)


# -- 11. kill -9 leaves no child and no scratch database --------------------------------

CHILD = r'''
import sys
sys.path[:0] = %(path)r
from ansible_collections.dbdevops.postgresql.plugins.module_utils.backup import catalog, restore
from ansible_collections.dbdevops.postgresql.plugins.module_utils.connection import ConnParams
params = ConnParams.from_params(%(conn)r)
opts = restore.RestoreOptions(**%(opts)r)
engine = restore.RestoreEngine(params, opts)
print(engine.apply(engine.plan()), flush=True)
'''


def _pg_restore_children(marker):
    found = []
    for pid in os.listdir('/proc'):
        if not pid.isdigit():
            continue
        try:
            with open('/proc/%s/cmdline' % pid, 'rb') as handle:
                argv = handle.read().split(b'\0')
        except OSError:
            continue
        if argv and argv[0].endswith((b'pg_restore', b'psql')) and any(marker.encode() in a for a in argv):
            found.append(int(pid))
    return found


@pytest.mark.parametrize('drill', [False, True])
def test_kill_9_leaves_nothing_behind(sample_db, dest, drill):
    cluster, name = sample_db
    cluster.sql('CREATE TABLE public.big AS SELECT g AS id, md5(g::text) AS t FROM generate_series(1, 300000) g; '
                'ALTER TABLE public.big ADD PRIMARY KEY (id)', dbname=name)
    take_backup(cluster, name, dest)
    opts = dict(src=dest, backup_db=name, drill=True) if drill else dict(src=dest, replace=True)
    script = CHILD % dict(path=sys.path[:3], conn=cluster.conn_params(), opts=opts)
    rng = random.Random(4242 if drill else 2424)
    marker = 'dbdevops_%s_' % ('drill' if drill else 'restore')
    for _index in range(5):
        child = subprocess.Popen([sys.executable, '-c', script], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(0.3, 2.0))
        child.send_signal(signal.SIGKILL)
        child.wait()
        for _wait in range(50):
            if not _pg_restore_children(marker):
                break
            time.sleep(0.1)
        assert not _pg_restore_children(marker)
        assert _count(cluster, name, 'public.big') == 300000   # the original stays whole
    left = _scratch(cluster)
    engine = restore.RestoreEngine(params_for(cluster), restore.RestoreOptions(**opts))
    result = engine.apply(engine.plan())
    print('left behind by kill -9:', left, 'dropped:', result['scratch_dropped'])
    assert set(left) <= set(result['scratch_dropped'])
    for _wait in range(50):
        if not _scratch(cluster):
            break
        time.sleep(0.1)
    assert not _scratch(cluster)
    assert _count(cluster, name, 'public.big') == 300000


def test_stale_scratch_is_dropped_and_reported(sample_db, dest):
    cluster, name = sample_db
    take_backup(cluster, name, dest)
    stale = _catalog.scratch_name('restore', name)
    cluster.sql('CREATE DATABASE "%s" TEMPLATE template0' % stale)
    cluster.sql("COMMENT ON DATABASE \"%s\" IS '%s'" % (stale, _catalog.SCRATCH_COMMENT))
    options = restore.RestoreOptions(src=dest, backup_db=name, drill=True)
    engine = restore.RestoreEngine(params_for(cluster), options)
    result = engine.apply(engine.plan())
    assert result['scratch_dropped'] == [stale]
    assert stale not in _databases(cluster)


# -- 13. non-superuser and the login database --------------------------------------------

def test_non_superuser_restore(sample_db, dest):
    cluster, name = sample_db
    take_backup(cluster, name, dest)
    cluster.sql('DROP ROLE IF EXISTS restorer')
    cluster.sql('CREATE ROLE restorer LOGIN CREATEDB')
    params = ConnParams.from_params(cluster.conn_params(user='restorer'))
    target = name + '_mine'
    try:
        with pytest.raises(BackupError) as err:
            _plan(cluster, params, src=dest, target_db=target)
        assert 'no_owner: true' in str(err.value) and 'restorer' in str(err.value)
        result = restore.run_restore(params, _plan(cluster, params, src=dest, target_db=target, no_owner=True))
        assert result['verification']['passed'] is True
        assert cluster.sql("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s",
                           (target,)) == [('restorer',)]
        assert _count(cluster, target, 'sales.orders') == 2000
    finally:
        cluster.sql('DROP DATABASE IF EXISTS "%s"' % target)
        cluster.sql('DROP ROLE restorer')


def test_replace_of_the_login_database(sample_db, dest):
    cluster, name = sample_db
    take_backup(cluster, name, dest)
    cluster.sql('TRUNCATE sales.orders', dbname=name)
    params = params_for(cluster, name)                   # logged into the database it replaces
    result = restore.run_restore(params, restore.plan_restore(params, restore.RestoreOptions(
        src=dest, replace=True)))
    assert result['verification']['passed'] is True
    assert _count(cluster, name, 'sales.orders') == 2000
    assert not _scratch(cluster)


# -- drills of what does not exist fail -------------------------------------------------

def test_drill_of_nothing_fails_with_the_path(pg, dest):
    missing = os.path.join(dest, 'nowhere')
    for src, backup_id in ((dest, 'latest'), (dest, '20990101T000000Z-x'), (missing, 'latest')):
        engine = restore.RestoreEngine(params_for(pg), restore.RestoreOptions(src=src, backup_id=backup_id,
                                                                              drill=True))
        with pytest.raises(BackupError) as err:
            engine.apply(engine.plan())
        assert src in str(err.value)
        failed = run_module(restore_module, dict(pg.conn_params(password=True), src=src, backup_id=backup_id,
                                                 drill=True))
        assert failed['failed'] and src in failed['msg']
