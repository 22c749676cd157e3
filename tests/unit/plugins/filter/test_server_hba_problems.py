"""The server_hba_problems filter (checks in module_utils/_hba.py, tested in test_hba.py)."""

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.dbdevops.postgresql.plugins.filter.server_hba_problems import server_hba_problems


def test_good_entries_have_no_problem():
    assert server_hba_problems([
        {'contype': 'local', 'databases': 'all', 'users': 'postgres', 'method': 'peer'},
        {'contype': 'host', 'databases': 'app', 'users': 'app', 'address': '10.0.0.0/24'},
    ]) == []


@pytest.mark.parametrize('entries', [None, []])
def test_no_entries_no_problem(entries):
    assert server_hba_problems(entries) == []


def test_each_problem_names_the_entry_by_index():
    problems = server_hba_problems([
        {'contype': 'local', 'databases': 'all', 'users': 'postgres', 'method': 'peer'},
        {'contype': 'host', 'databases': 'app', 'users': 'app', 'address': '10.0.0.300/24'},
    ])
    assert len(problems) == 1
    assert problems[0].startswith('server_hba_entries[1] (host app app 10.0.0.300/24 scram-sha-256): address')


def test_a_single_dict_instead_of_a_list_is_a_filter_error():
    with pytest.raises(AnsibleFilterError, match='expects a list of pg_hba entries, got dict'):
        server_hba_problems({'contype': 'host'})
