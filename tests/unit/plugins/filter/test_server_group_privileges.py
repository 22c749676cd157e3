"""The server_group_privileges filter: the read-only / read-write group-role pattern."""

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.dbdevops.postgresql.plugins.filter.server_group_privileges import server_group_privileges


def test_group_access_expands_to_grants_and_default_privileges():
    privs = server_group_privileges([{'database': 'app', 'owner': 'app_owner',
                                      'read_role': 'app_read', 'write_role': 'app_write'}])
    table = dict(((p['roles'], p['type'], p['objs']), p) for p in privs)
    assert table[('app_read', 'database', 'app')]['privs'] == 'CONNECT'
    assert table[('app_read', 'schema', 'public')]['privs'] == 'USAGE'
    assert table[('app_read', 'table', 'ALL_IN_SCHEMA')]['privs'] == 'SELECT'
    assert table[('app_read', 'default_privs', 'TABLES')]['privs'] == 'SELECT'
    assert table[('app_write', 'table', 'ALL_IN_SCHEMA')]['privs'] == 'SELECT,INSERT,UPDATE,DELETE'
    assert table[('app_write', 'default_privs', 'TABLES')]['target_roles'] == 'app_owner'
    assert table[('app_write', 'default_privs', 'SEQUENCES')]['privs'] == 'USAGE,SELECT,UPDATE'
    assert len(privs) == 12


def test_group_access_without_owner_grants_no_default_privileges():
    privs = server_group_privileges([{'database': 'app', 'read_role': 'r'}])
    assert [p['type'] for p in privs] == ['database', 'schema', 'table', 'sequence']


def test_schema_is_used_for_every_grant():
    privs = server_group_privileges([{'database': 'app', 'schema': 'sales', 'write_role': 'w', 'owner': 'o'}])
    assert {p.get('schema', p['objs']) for p in privs if p['type'] != 'database'} == {'sales'}


@pytest.mark.parametrize('access', [None, []])
def test_no_access_no_privileges(access):
    assert server_group_privileges(access) == []


def test_an_entry_without_database_is_a_filter_error():
    with pytest.raises(AnsibleFilterError, match=r'server_group_privileges: entry 0 .* needs a "database"'):
        server_group_privileges([{'read_role': 'r'}])
