"""Restore engine: refusal, replace-by-swap, failures that leave the original intact, drills."""

import os

import pytest

from ansible_collections.dbdevops.postgresql.plugins.module_utils.backup import catalog, restore
from ansible_collections.dbdevops.postgresql.plugins.module_utils.backup._tools import BackupError
from ansible_collections.dbdevops.postgresql.plugins.module_utils import datacompare
from tests.harness.backup_samples import params_for, take_backup


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


def test_restore_tables_brings_indexes_constraints_defaults_sequences(sample_db, dest):
    """A restored table is usable: keys, indexes, defaults, its sequence, triggers, comments;
    a foreign key comes along only when the table it references is restored too."""
    cluster, name = sample_db
    cluster.sql("""
        CREATE INDEX customers_name_idx ON public.customers (lower(name));
        ALTER TABLE public.customers ADD CONSTRAINT balance_not_negative CHECK (balance >= 0) NOT VALID;
        ALTER TABLE public.customers ADD CONSTRAINT name_unique UNIQUE (name);
        COMMENT ON TABLE public.customers IS 'the customers';
        COMMENT ON COLUMN public.customers.born IS 'birthday';
        CREATE FUNCTION public.touch() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$;
        CREATE TRIGGER customers_touch BEFORE UPDATE ON public.customers
            FOR EACH ROW EXECUTE FUNCTION public.touch();
        CREATE TABLE public.unrelated (id int PRIMARY KEY);""", dbname=name)
    result = take_backup(cluster, name, dest)
    objects = dict((t['name'], t['objects']) for t in result['manifest']['tables'])
    assert objects['customers']['sequences'] == ['customers_id_seq']
    assert objects['orders']['foreign_keys'] == [dict(name='orders_customer_id_fkey', schema='public',
                                                      table='customers')]

    def restore_tables(target, tables):
        cluster.sql('CREATE DATABASE "%s" TEMPLATE template0' % target)
        cluster.sql('CREATE FUNCTION public.touch() RETURNS trigger LANGUAGE plpgsql '
                    'AS $$BEGIN RETURN NEW; END$$', dbname=target)  # triggers need their function
        return restore.run_restore(params_for(cluster), _plan(cluster, src=dest, target_db=target,
                                                              tables=tables, jobs=2))

    one = name + '_one'
    out = restore_tables(one, ['public.customers'])
    assert out['restored_tables'] == ['"public"."customers"'] and out['skipped'] == []
    assert out['verification']['passed'] is True and out['verification']['tables_checked'] == 1

    def q(sql):
        return cluster.sql(sql, dbname=one)

    assert sorted(r[0] for r in q("SELECT indexname FROM pg_indexes WHERE tablename = 'customers'")) == [
        'customers_name_idx', 'customers_pkey', 'name_unique']
    assert sorted(r[0] for r in q("SELECT conname FROM pg_constraint WHERE conrelid = 'public.customers'::regclass")) == [
        'balance_not_negative', 'customers_pkey', 'name_unique']
    assert q("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal") == [('customers_touch',)]
    assert q("SELECT obj_description('public.customers'::regclass)") == [('the customers',)]
    # the serial default and its sequence, set past the restored rows
    assert q("INSERT INTO public.customers (name) VALUES ('new') RETURNING id") == [(301,)]
    assert q("SELECT to_regclass('public.unrelated') IS NULL") == [(True,)]
    assert q("SELECT count(*) FROM pg_tables WHERE schemaname = 'sales'") == [(0,)]

    alone = name + '_alone'
    out = restore_tables(alone, ['sales.orders'])
    assert out['skipped'] == [dict(table='"sales"."orders"', foreign_key='orders_customer_id_fkey',
                                   references='"public"."customers"',
                                   reason='the referenced table is not restored')]
    assert cluster.sql("SELECT count(*) FROM sales.orders", dbname=alone) == [(2000,)]
    assert cluster.sql("SELECT conname FROM pg_constraint WHERE conrelid = 'sales.orders'::regclass",
                       dbname=alone) == [('orders_pkey',)]

    both = name + '_both'
    out = restore_tables(both, ['sales.orders', 'customers'])
    assert out['skipped'] == [] and out['tables'] == 2
    assert sorted(r[0] for r in cluster.sql(
        "SELECT conname FROM pg_constraint WHERE conrelid = 'sales.orders'::regclass", dbname=both)) == [
        'orders_customer_id_fkey', 'orders_pkey']
    for target in (one, alone, both):
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
    if manifest.pop('manifest_sha256', None):   # sealed backups: reseal, as if the backup promised it
        catalog.seal_manifest(manifest)
    with open(path, 'w') as f:
        json.dump(manifest, f)
    for jobs in (1, 2):  # counted while pg_restore runs, serially or in parallel: still exact
        drill = restore.restore_drill(params_for(cluster), dest, backup_db=name, jobs=jobs)
        assert drill['passed'] is False
        assert '"sales"."orders" has 2000 rows, backup had 2001' in drill['error']
        assert drill['verification']['mismatches'] == [
            dict(table='"sales"."orders"', expected=2001, actual=2000)]
        assert drill['scratch_db'] not in _databases(cluster)


@pytest.mark.parametrize('jobs', [1, 2])
def test_rows_are_counted_while_pg_restore_builds_indexes(sample_db, dest, jobs):
    cluster, name = sample_db
    take_backup(cluster, name, dest)
    target = name + '_early'
    result = restore.run_restore(params_for(cluster), _plan(cluster, src=dest, target_db=target, jobs=jobs))
    verification = result['verification']
    assert verification['passed'] is True and verification['tables_checked'] == 4
    # serially the last table's data is only known done at the end; in parallel every one is
    assert verification['counted_while_restoring'] >= 3
    cluster.sql('DROP DATABASE "%s"' % target)


def test_globals_first_recreates_roles(sample_db, dest):
    cluster, name = sample_db
    cluster.sql('DROP ROLE IF EXISTS app_reader')
    cluster.sql('CREATE ROLE app_reader')
    cluster.sql('GRANT SELECT ON public.customers TO app_reader', dbname=name)
    take_backup(cluster, name, dest, globals=True)
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
