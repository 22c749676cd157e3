"""The folder-per-migration layout (Diesel, Sourcegraph, Prisma): read natively, applied and undone."""

import os

import pytest

from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate import scaffold
from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate.files import (
    MigrationFilesError, discover)
from tests.harness.migrate_samples import engine, info, migrate, write

NEW = 'dbdevops_schema_history'


def folder(root, files):
    """Write {'dir/name': text} below root."""
    for name, text in files.items():
        os.makedirs(os.path.join(str(root), os.path.dirname(name)), exist_ok=True)
        write(os.path.join(str(root), os.path.dirname(name)), {os.path.basename(name): text})
    return str(root)


def rows(pg_db, sql, params=None):
    pg, db = pg_db
    return pg.sql(sql, params, dbname=db)


def tables(pg_db):
    return sorted(r[0] for r in rows(pg_db, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))


DIESEL = {
    '2019-01-01-000000_create_users/up.sql': 'CREATE TABLE users (id int PRIMARY KEY, email text);\n',
    '2019-01-01-000000_create_users/down.sql': 'DROP TABLE users;\n',
    '2019-01-02-000000_index_email/up.sql': 'CREATE INDEX CONCURRENTLY users_email ON users (email);\n',
    '2019-01-02-000000_index_email/down.sql': 'DROP INDEX CONCURRENTLY users_email;\n',
    '2019-01-02-000000_index_email/metadata.toml': 'run_in_transaction = false\n',
    '2019-01-03-000000_create_posts/up.sql': 'CREATE TABLE posts (id int PRIMARY KEY);\n',
    '2019-01-03-000000_create_posts/down.sql': 'DROP TABLE posts;\n',
    'README.md': 'not a migration\n',
}


def test_folder_layout_applied_rerun_unchanged_and_undone(pg_db, tmp_path):
    path = folder(tmp_path, DIESEL)
    found = discover(path)
    assert [found.versioned[k].script for k in found.versions()] == [
        '2019-01-01-000000_create_users/up.sql', '2019-01-02-000000_index_email/up.sql',
        '2019-01-03-000000_create_posts/up.sql']
    assert [found.versioned[k].version for k in found.versions()] == [
        '20190101000000', '20190102000000', '20190103000000']        # as Diesel stores them
    assert found.versioned[(20190101000000,)].description == 'create users'
    assert not found.versioned[(20190102000000,)].transactional       # metadata.toml
    assert found.undo[(20190102000000,)].transactional is False
    assert found.layout == 'folder'

    plan = engine(pg_db, path, lint=False).plan()
    assert plan.changed and [s['script'] for s in plan.values['plan']['steps']] == [
        '2019-01-01-000000_create_users/up.sql', '2019-01-02-000000_index_email/up.sql',
        '2019-01-03-000000_create_posts/up.sql']
    assert tables(pg_db) == []
    result = migrate(engine(pg_db, path, lint=False))
    assert [a['version'] for a in result['applied']] == ['20190101000000', '20190102000000', '20190103000000']
    assert tables(pg_db) == [NEW, 'posts', 'users']
    assert rows(pg_db, "SELECT indisvalid FROM pg_index WHERE indexrelid = 'users_email'::regclass") == [(True,)]
    assert rows(pg_db, 'SELECT script FROM %s ORDER BY installed_rank' % NEW) == [
        ('2019-01-01-000000_create_users/up.sql',), ('2019-01-02-000000_index_email/up.sql',),
        ('2019-01-03-000000_create_posts/up.sql',)]
    assert not migrate(engine(pg_db, path, lint=False))['changed']
    assert info(pg_db, path)['checksum_mismatches'] == []

    down = migrate(engine(pg_db, path, target='0', allow_downgrade=True, lint=False))
    assert [a['script'] for a in down['applied']] == [
        '2019-01-03-000000_create_posts/down.sql', '2019-01-02-000000_index_email/down.sql',
        '2019-01-01-000000_create_users/down.sql']
    assert tables(pg_db) == [NEW] and down['current_version'] is None


def test_diesel_history_adopted_with_its_folders(pg_db, tmp_path):
    path = folder(tmp_path, DIESEL)
    rows(pg_db, 'CREATE TABLE __diesel_schema_migrations (version VARCHAR(50) PRIMARY KEY NOT NULL, '
                'run_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP); '
                'CREATE TABLE users (id int PRIMARY KEY, email text); '
                "INSERT INTO __diesel_schema_migrations (version) VALUES ('20190101000000')")
    result = migrate(engine(pg_db, path, adopt_from='diesel', lint=False))
    assert result['adopt']['imported'] == ['20190101000000']
    assert result['adopt']['newer'] == ['20190102000000', '20190103000000']
    assert [a['version'] for a in result['applied']] == ['20190102000000', '20190103000000']
    assert not migrate(engine(pg_db, path, adopt_from='diesel', lint=False))['changed']


def test_sourcegraph_and_prisma_folders(tmp_path):
    path = folder(tmp_path, {
        '1528395834/up.sql': 'CREATE TABLE a (id int);\n', '1528395834/down.sql': 'DROP TABLE a;\n',
        '1528395834/metadata.yaml': "name: 'create a'\nparents: []\n",
        '1528395835_second/migration.sql': 'CREATE TABLE b (id int);\n',
        '1528395836/up.sql': 'CREATE INDEX CONCURRENTLY b_id ON b (id);\n',
        '1528395836/metadata.yaml': 'name: index b\ncreateIndexConcurrently: true\n',
    })
    found = discover(path)
    assert [(found.versioned[k].script, found.versioned[k].description) for k in found.versions()] == [
        ('1528395834/up.sql', 'create a'), ('1528395835_second/migration.sql', 'second'),
        ('1528395836/up.sql', 'index b')]
    assert not found.versioned[(1528395836,)].transactional and found.versioned[(1528395834,)].transactional
    assert list(found.undo) == [(1528395834,)]


@pytest.mark.parametrize('files, expect', [
    ({'V1__flat.sql': 'SELECT 1;', '2_folder/up.sql': 'SELECT 2;'},
     'mixes two layouts: flat files (V1__flat.sql) and folders per migration (2_folder/)'),
    ({'1_pair.up.sql': 'SELECT 1;', '2_folder/up.sql': 'SELECT 2;'},
     'flat files (1_pair.up.sql) and folders per migration (2_folder/)'),
    ({'1_a/up.sql': 'SELECT 1;', '1_a/extra.sql': 'SELECT 2;'},
     '1_a/ holds extra.sql (a migration folder holds up.sql and down.sql, or migration.sql)'),
    ({'1_a/down.sql': 'SELECT 1;'}, '1_a/ holds down.sql but no up.sql'),
    ({'1_a/up.sql': 'SELECT 1;', '1_a/migration.sql': 'SELECT 1;'}, '1_a/ holds both migration.sql and up.sql'),
    ({'1_a/notes.txt': 'x'}, '1_a/ holds no .sql file'),
    ({'1_a/up.sql': 'SELECT 1;', '1.0_b/up.sql': 'SELECT 1;'},
     'two files for one version: 1.0_b/up.sql and 1_a/up.sql'),
])
def test_folder_layout_errors_name_the_files(tmp_path, files, expect):
    path = folder(tmp_path, files)
    with pytest.raises(MigrationFilesError) as err:
        discover(path)
    assert expect in ' '.join(str(err.value).split()) and 'nothing was applied' in str(err.value)


def test_repeatables_may_sit_next_to_folders(tmp_path):
    path = folder(tmp_path, {'1_a/up.sql': 'SELECT 1;', 'R__views.sql': 'SELECT 2;', 'other/x.sql': 'ignored'})
    found = discover(path)
    assert list(found.repeatable) == ['views'] and found.versions() == [(1,)]


def test_scaffold_folder_style_creates_the_folder_and_refuses_mixing(tmp_path):
    import datetime
    now = datetime.datetime(2026, 1, 2, 3, 4, 5)
    path = str(tmp_path)
    new = scaffold.plan_new(path, 'Create users', style='folder', now=now)
    assert new['changed'] and [f['path'] for f in new['files']] == [
        os.path.join(path, '20260102030405_create_users', 'up.sql'),
        os.path.join(path, '20260102030405_create_users', 'down.sql')]
    assert os.listdir(path) == []                                   # planning writes nothing
    scaffold.create_new(new)
    again = scaffold.plan_new(path, 'Create users', style='folder', now=now)
    assert not again['changed'] and again['files'] == [dict(path=new['files'][0]['path']),
                                                       dict(path=new['files'][1]['path'])]
    assert discover(path).versioned[(20260102030405,)].script == '20260102030405_create_users/up.sql'
    with pytest.raises(MigrationFilesError) as err:
        scaffold.plan_new(path, 'Add posts', style='flyway', now=now)
    assert 'uses the folder-per-migration layout (20260102030405_create_users/up.sql)' in str(err.value)
    assert 'give style: folder' in str(err.value)


DBMATE_FILES = {
    '20240101000001_create_users.sql': (
        '-- migrate:up\nCREATE TABLE users (id int PRIMARY KEY, email text);\n\n'
        '-- migrate:down\nDROP TABLE users;\n'),
    '20240101000002_index_email.sql': (
        '-- migrate:up transaction:false\nCREATE INDEX CONCURRENTLY users_email ON users (email);\n\n'
        '-- migrate:down transaction:false\nDROP INDEX CONCURRENTLY users_email;\n'),
    '20240101000003_seed.sql': '-- migrate:up\nINSERT INTO users VALUES (1, \'a\');\n\n-- migrate:down\n',
}


def test_dbmate_files_read_natively_applied_and_undone(pg_db, tmp_path):
    path = write(tmp_path, DBMATE_FILES)
    found = discover(path)
    assert [(found.versioned[k].script, found.versioned[k].transactional) for k in found.versions()] == [
        ('20240101000001_create_users.sql', True), ('20240101000002_index_email.sql', False),
        ('20240101000003_seed.sql', True)]
    assert sorted(found.undo) == [(20240101000001,), (20240101000002,)]     # an empty down is no undo
    assert 'DROP TABLE' not in found.versioned[(20240101000001,)].sql
    assert found.undo[(20240101000001,)].shown == 'DROP TABLE users;\n'   # shown without the padding
    # a statement keeps the line number it has in the file
    assert found.undo[(20240101000001,)].statements[0].line == 5
    result = migrate(engine(pg_db, path, lint=False))
    assert [a['version'] for a in result['applied']] == ['20240101000001', '20240101000002', '20240101000003']
    assert not migrate(engine(pg_db, path, lint=False))['changed']
    with pytest.raises(Exception) as err:            # the seed has an empty down section: no undo
        migrate(engine(pg_db, path, target='20240101000001', allow_downgrade=True, lint=False))
    assert 'no undo file for 20240101000003' in str(err.value)
    write(tmp_path, {'20240101000003_seed.sql': DBMATE_FILES['20240101000003_seed.sql'] + 'DELETE FROM users;\n'})
    # a new down section leaves the up part's checksum as it was: no repair needed
    down = migrate(engine(pg_db, path, target='20240101000001', allow_downgrade=True, lint=False))
    assert [(a['kind'], a['script']) for a in down['applied']] == [
        ('undo', '20240101000003_seed.sql'), ('undo', '20240101000002_index_email.sql')]
    assert rows(pg_db, "SELECT to_regclass('users_email')") == [(None,)]
    assert rows(pg_db, 'SELECT count(*) FROM users') == [(0,)]


def test_dbmate_file_without_marker_is_misnamed(tmp_path):
    path = write(tmp_path, {'20240101000001_x.sql': 'CREATE TABLE x (id int);\n'})
    with pytest.raises(MigrationFilesError) as err:
        discover(path)
    assert '"-- migrate:up" line (dbmate)' in str(err.value) and '20240101000001_x.sql' in str(err.value)


def test_migration_new_module_folder_style(tmp_path):
    from ansible_collections.dbdevops.postgresql.plugins.modules import migration_new
    from tests.harness.modules import run_module
    args = dict(path=str(tmp_path), description='Create users', style='folder', version='7')
    checked = run_module(migration_new, args, check=True)
    assert checked['changed'] and os.listdir(str(tmp_path)) == []
    real = run_module(migration_new, args)
    assert real['changed'] and sorted(os.listdir(str(tmp_path / '7_create_users'))) == ['down.sql', 'up.sql']
    assert not run_module(migration_new, args)['changed']
