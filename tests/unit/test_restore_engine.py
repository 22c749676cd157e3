"""Restore engine: refusal, replace-by-swap, failures that leave the original intact, drills."""

import os

import pytest

from ansible_collections.dbdevops.postgresql.plugins.module_utils.backup import restore
from ansible_collections.dbdevops.postgresql.plugins.module_utils.backup._tools import BackupError
from ansible_collections.dbdevops.postgresql.plugins.module_utils import datacompare
from tests.harness.backup_samples import load_sample, make_dest, params_for, rm, take_backup


@pytest.fixture
def dest():
    path = make_dest()
    yield path
    rm(path)


@pytest.fixture
def sample_db(pg_db):
    cluster, name = pg_db
    load_sample(cluster, name)
    return cluster, name


def _databases(cluster):
    return sorted(r[0] for r in cluster.sql('SELECT datname FROM pg_database'))


def _plan(cluster, **kwargs):
    return restore.plan_restore(params_for(cluster), restore.RestoreOptions(**kwargs))


def test_non_empty_target_refused_without_replace(sample_db, dest):
    cluster, name = sample_db
    take_backup(cluster, name, dest)
    before = _databases(cluster)
    with pytest.raises(BackupError) as err:
        _plan(cluster, src=dest)
    assert 'database "%s" is not empty' % name in str(err.value)
    assert 'replace: true' in str(err.value)
    assert _databases(cluster) == before


def test_replace_swaps_in_a_verified_copy(sample_db, dest):
    cluster, name = sample_db
    take_backup(cluster, name, dest)
    cluster.sql('DELETE FROM sales.orders WHERE id > 100', dbname=name)
    cluster.sql('CREATE TABLE public.added_later (x int)', dbname=name)
    plan = _plan(cluster, src=dest, replace=True, jobs=2)
    assert plan['action'] == 'replace'
    result = restore.run_restore(params_for(cluster), plan)
    assert result['verification']['passed'] and result['verification']['tables_checked'] == 4
    assert cluster.sql('SELECT count(*) FROM sales.orders', dbname=name)[0][0] == 2000
    assert cluster.sql("SELECT to_regclass('public.added_later') IS NULL", dbname=name)[0][0]
    assert not [d for d in _databases(cluster) if '__restore_' in d or '__old_' in d]


def test_replace_failing_half_way_leaves_original_unchanged(sample_db, dest):
    cluster, name = sample_db
    cluster.sql('DROP ROLE IF EXISTS soon_gone')
    cluster.sql('CREATE ROLE soon_gone')
    cluster.sql('CREATE TABLE public.owned (x int); ALTER TABLE public.owned OWNER TO soon_gone',
                dbname=name)
    take_backup(cluster, name, dest)
    # the role the backup needs disappears: pg_restore fails after creating some objects
    cluster.sql('REASSIGN OWNED BY soon_gone TO postgres; DROP OWNED BY soon_gone', dbname=name)
    cluster.sql('DROP ROLE soon_gone')
    cluster.sql("INSERT INTO public.customers (name) VALUES ('after the backup')", dbname=name)
    snapshot = datacompare.compare(params_for(cluster, name), params_for(cluster, name))['tables']
    before = _databases(cluster)
    with pytest.raises(BackupError) as err:
        restore.run_restore(params_for(cluster), _plan(cluster, src=dest, replace=True))
    msg = str(err.value)
    assert 'pg_restore of backup' in msg and 'role "soon_gone" does not exist' in msg
    assert 'the original database "%s" is unchanged' % name in msg
    assert _databases(cluster) == before
    after = datacompare.compare(params_for(cluster, name), params_for(cluster, name))['tables']
    assert after == snapshot
    assert cluster.sql('SELECT count(*) FROM public.customers', dbname=name)[0][0] == 301


def test_replace_with_active_session_refused_unless_terminate(sample_db, dest):
    cluster, name = sample_db
    take_backup(cluster, name, dest)
    cluster.sql('TRUNCATE sales.orders', dbname=name)
    client = cluster.connect(name)
    try:
        with pytest.raises(BackupError) as err:
            restore.run_restore(params_for(cluster), _plan(cluster, src=dest, replace=True))
        assert 'has 1 active connection(s)' in str(err.value)
        assert 'the original is unchanged' in str(err.value)
        assert cluster.sql('SELECT count(*) FROM sales.orders', dbname=name)[0][0] == 0
        result = restore.run_restore(params_for(cluster), _plan(cluster, src=dest, replace=True,
                                                                terminate_connections=True))
        assert len(result['terminated_sessions']) == 1
        assert cluster.sql('SELECT count(*) FROM sales.orders', dbname=name)[0][0] == 2000
        assert cluster.sql("SELECT datallowconn FROM pg_database WHERE datname = %s", (name,))[0][0]
    finally:
        client.close()


def test_restore_one_schema_and_one_table(sample_db, dest):
    cluster, name = sample_db
    # a schema subset must be self-contained: no foreign key into another schema
    cluster.sql('ALTER TABLE sales.orders DROP CONSTRAINT orders_customer_id_fkey', dbname=name)
    take_backup(cluster, name, dest)
    for target, opts, expected in (
            (name + '_sales', dict(schemas=['sales']), {('sales', 'orders')}),
            (name + '_cust', dict(tables=['public.customers'], no_owner=True), {('public', 'customers')})):
        cluster.sql('CREATE DATABASE "%s" TEMPLATE template0' % target)  # empty target: allowed
        plan = _plan(cluster, src=dest, target_db=target, **opts)
        assert plan['action'] == 'restore_into_empty'
        result = restore.run_restore(params_for(cluster), plan)
        assert result['verification']['passed'] is True
        assert result['verification']['tables_checked'] == len(expected)
        got = set(tuple(r) for r in cluster.sql(
            "SELECT schemaname, tablename FROM pg_tables WHERE schemaname NOT IN "
            "('pg_catalog', 'information_schema')", dbname=target))
        assert got == expected
        cluster.sql('DROP DATABASE "%s"' % target)


def test_restore_drill_passes_and_detects_damage(sample_db, dest):
    cluster, name = sample_db
    result = take_backup(cluster, name, dest, format='directory', jobs=2)
    drill = restore.restore_drill(params_for(cluster), dest, backup_db=name, jobs=2)
    assert drill['passed'] is True and drill['verification']['tables_checked'] == 4
    assert drill['scratch_db'] not in _databases(cluster)
    # a manifest that promises more rows than the archive holds: the drill fails with details
    import json
    path = os.path.join(result['path'], 'manifest.json')
    with open(path) as f:
        manifest = json.load(f)
    for t in manifest['tables']:
        if t['name'] == 'orders':
            t['rows'] += 1
    with open(path, 'w') as f:
        json.dump(manifest, f)
    drill = restore.restore_drill(params_for(cluster), dest, backup_db=name)
    assert drill['passed'] is False
    assert '"sales"."orders" has 2000 rows, backup had 2001' in drill['error']
    assert drill['verification']['mismatches'] == [
        dict(table='"sales"."orders"', expected=2001, actual=2000)]
    assert drill['scratch_db'] not in _databases(cluster)


def test_globals_first_recreates_roles(sample_db, dest):
    cluster, name = sample_db
    cluster.sql('DROP ROLE IF EXISTS app_reader')
    cluster.sql('CREATE ROLE app_reader')
    cluster.sql('GRANT SELECT ON public.customers TO app_reader', dbname=name)
    take_backup(cluster, name, dest, globals_dump=True)
    cluster.sql('REVOKE ALL ON public.customers FROM app_reader', dbname=name)
    cluster.sql('DROP ROLE app_reader')
    target = name + '_g'
    result = restore.run_restore(params_for(cluster), _plan(cluster, src=dest, target_db=target,
                                                            globals_first=True))
    assert result['globals_restored'] is True
    assert cluster.sql("SELECT has_table_privilege('app_reader', 'public.customers', 'SELECT')",
                       dbname=target)[0][0] is True
    cluster.sql('DROP DATABASE "%s"' % target)
    cluster.sql('DROP OWNED BY app_reader', dbname='postgres')
    cluster.sql('DROP ROLE app_reader')
