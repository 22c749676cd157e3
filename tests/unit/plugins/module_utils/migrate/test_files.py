"""Migration file discovery, naming, placeholders, directives, checksums (no database)."""

import os

import pytest

from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate import files as mfiles
from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate.files import (
    MigrationFilesError, checksum, discover, version_key)
from tests.harness.migrate_samples import write


def test_all_naming_conventions_and_numeric_order(tmp_path):
    path = write(tmp_path, {
        'V10__ten.sql': 'SELECT 10;', 'V2__two.sql': 'SELECT 2;', 'V1.10__one_ten.sql': 'SELECT 1;',
        'V1.2__one_two.sql': 'SELECT 1;', 'U2__two.sql': 'SELECT -2;', 'R__views.sql': 'SELECT 0;',
        '20240101120000_create_things.up.sql': 'SELECT 3;',
        '20240101120000_create_things.down.sql': 'SELECT -3;',
        'README.md': 'not a migration', 'notes.txt': 'ignored',
    })
    found = discover(path)
    assert [found.versioned[k].script for k in found.versions()] == [
        'V1.2__one_two.sql', 'V1.10__one_ten.sql', 'V2__two.sql', 'V10__ten.sql',
        '20240101120000_create_things.up.sql']
    assert sorted(found.undo) == [(2,), (20240101120000,)]
    assert list(found.repeatable) == ['views']
    assert found.versioned[(1, 2)].description == 'one two'
    assert found.versioned[(20240101120000,)].description == 'create things'


def test_misnamed_files_are_errors_naming_every_file(tmp_path):
    path = write(tmp_path, {'V1__ok.sql': 'SELECT 1;', 'v2__lower.sql': '', 'V3_one_underscore.sql': '',
                            'create_users.sql': '', 'V4__x.up.sql.bak': ''})
    with pytest.raises(MigrationFilesError) as err:
        discover(path)
    msg = str(err.value)
    for name in ('v2__lower.sql', 'V3_one_underscore.sql', 'create_users.sql'):
        assert name in msg
    assert 'V1__ok.sql' not in msg and 'nothing was applied' in msg


@pytest.mark.parametrize('names', [
    ('V1__a.sql', 'V1__b.sql'), ('V1__a.sql', 'V1.0__b.sql'), ('V1__a.sql', '1_b.up.sql'),
    ('U3__a.sql', '3_b.down.sql'), ('V1_1__a.sql', 'V1.1__b.sql'),
])
def test_duplicate_versions_name_both_files(tmp_path, names):
    path = write(tmp_path, dict((n, 'SELECT 1;') for n in names))
    with pytest.raises(MigrationFilesError) as err:
        discover(path)
    assert names[0] in str(err.value) and names[1] in str(err.value)
    assert 'two files for one version' in str(err.value)


def test_missing_folder_and_file_instead_of_folder(tmp_path):
    with pytest.raises(MigrationFilesError, match='does not exist; check the path option'):
        discover(str(tmp_path / 'nope'))
    write(tmp_path, {'V1__a.sql': ''})
    with pytest.raises(MigrationFilesError, match='is not a directory'):
        discover(str(tmp_path / 'V1__a.sql'))


def test_unreadable_files_named(tmp_path):
    write(tmp_path, {'V1__a.sql': 'SELECT 1;'})
    os.mkdir(str(tmp_path / 'V2__a_directory.sql'))
    os.symlink(str(tmp_path / 'gone'), str(tmp_path / 'V3__dangling.sql'))
    with open(str(tmp_path / 'V4__latin1.sql'), 'wb') as handle:
        handle.write(b'SELECT \xe9;')
    with pytest.raises(MigrationFilesError) as err:
        discover(str(tmp_path))
    msg = str(err.value)
    assert 'V2__a_directory.sql (not a regular file)' in msg
    assert 'V3__dangling.sql (a dangling symbolic link)' in msg
    assert 'V4__latin1.sql (not UTF-8 at byte 7)' in msg


def test_checksum_normalisation_documented_rules():
    base = checksum('CREATE TABLE t (id int);\nSELECT 1;\n')
    assert checksum('CREATE TABLE t (id int);\r\nSELECT 1;\r\n') == base          # CRLF
    assert checksum('CREATE TABLE t (id int);\rSELECT 1;') == base                # CR, no final EOL
    assert checksum('CREATE TABLE t (id int);  \t\nSELECT 1;   \n\n\n') == base   # trailing ws
    assert checksum('\ufeff\n\nCREATE TABLE t (id int);\nSELECT 1;\n') == base     # BOM, leading blank
    assert checksum('CREATE TABLE t (id int);\n  SELECT 1;\n') != base            # indentation is content
    assert checksum('create table t (id int);\nSELECT 1;\n') != base              # case is content
    assert checksum('CREATE TABLE t (id int); -- c\nSELECT 1;\n') != base         # comments are content


def test_placeholders_substituted_and_part_of_checksum(tmp_path):
    path = write(tmp_path, {'V1__grant.sql': 'GRANT SELECT ON t TO ${role};\n'})
    one = discover(path, {'role': 'alice'}).versioned[(1,)]
    two = discover(path, {'role': 'bob'}).versioned[(1,)]
    assert one.sql == 'GRANT SELECT ON t TO alice;\n'
    assert one.checksum != two.checksum


def test_unknown_placeholder_names_file_and_line(tmp_path):
    path = write(tmp_path, {'V1__grant.sql': '-- header\nGRANT SELECT ON t TO ${role};\n'})
    with pytest.raises(MigrationFilesError) as err:
        discover(path, {'other': 'x'})
    assert 'V1__grant.sql line 2: placeholder ${role} has no value' in str(err.value)


def test_directives(tmp_path):
    path = write(tmp_path, {
        'V1__a.sql': '-- dbdevops:transaction=off\nCREATE INDEX CONCURRENTLY i ON t (a);',
        'V2__b.sql': '-- dbdevops:lint-ignore=drop-table, drop-column\nDROP TABLE x;',
        'V3__c.sql': 'SELECT 1;'})
    found = discover(path)
    assert found.versioned[(1,)].transactional is False
    assert found.versioned[(3,)].transactional is True
    assert found.versioned[(2,)].lint_ignore == {'drop-table', 'drop-column'}


def test_unknown_directive_is_an_error(tmp_path):
    path = write(tmp_path, {'V1__a.sql': 'SELECT 1;\n-- dbdevops:transactions=off\n'})
    with pytest.raises(MigrationFilesError, match='V1__a.sql line 2: unknown directive'):
        discover(path)


def test_version_key_compares_numerically():
    assert version_key('1.10') > version_key('1.9')
    assert version_key('1.0.0') == version_key('1') == (1,)
    assert version_key('1_2') == (1, 2)
    assert mfiles.version_text(version_key('01.02')) == '1.2'
