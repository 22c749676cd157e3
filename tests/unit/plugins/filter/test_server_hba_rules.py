"""The server_hba_rules filter (conversion in module_utils/_hba.py, tested in test_hba.py)."""

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.dbdevops.postgresql.plugins.filter.server_hba_rules import server_hba_rules


def test_rules_with_header_first():
    rules = server_hba_rules([{'contype': 'host', 'databases': 'app', 'users': 'app_rw', 'address': '10.0.0.0/24'}],
                             header_lines=['# Ansible managed'])
    assert rules == [
        {'comment': '# Ansible managed'},
        {'contype': 'host', 'databases': 'app', 'users': 'app_rw', 'method': 'scram-sha-256',
         'address': '10.0.0.0/24'},
    ]


def test_without_header_and_with_none_header():
    entries = [{'contype': 'local', 'method': 'peer', 'address': '127.0.0.1/32'}]
    expected = [{'contype': 'local', 'databases': 'all', 'users': 'all', 'method': 'peer'}]
    assert server_hba_rules(entries) == expected
    assert server_hba_rules(entries, header_lines=None) == expected


def test_an_entry_without_contype_is_a_filter_error():
    with pytest.raises(AnsibleFilterError, match='server_hba_rules: every entry must be a dict with at least "contype"'):
        server_hba_rules([{'databases': 'all'}])
