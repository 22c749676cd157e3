"""pg_hba entry checks of the server role (plugins/module_utils/_hba.py)."""

import pytest

from ansible_collections.dbdevops.postgresql.plugins.module_utils._hba import hba_problems, hba_rules


def good_entries():
    return [
        {'contype': 'local', 'databases': 'all', 'users': 'postgres', 'method': 'peer'},
        {'contype': 'host', 'databases': 'app', 'users': 'app_rw,app_ro', 'address': '10.0.0.0/24'},
        {'contype': 'hostssl', 'databases': 'all', 'users': 'all', 'address': 'fd00::/8'},
        {'contype': 'host', 'databases': 'all', 'users': 'all', 'address': '192.168.1.7',
         'netmask': '255.255.255.255'},
        {'contype': 'host', 'databases': 'all', 'users': 'all', 'address': '.example.com'},
        {'contype': 'host', 'databases': 'all', 'users': 'all', 'address': 'samenet'},
        {'contype': 'host', 'databases': 'all', 'users': 'all', 'address': '127.0.0.1/32',
         'method': 'ldap', 'options': 'ldapserver=ldap.example.com ldapport=389'},
    ]


def test_valid_entries_have_no_problems():
    assert hba_problems(good_entries()) == []


@pytest.mark.parametrize('entry, message', [
    ({'contype': 'hots', 'databases': 'all', 'users': 'all', 'address': '10.0.0.0/8'},
     'server_hba_entries[0] (hots all all 10.0.0.0/8 scram-sha-256): contype "hots" is not one of'),
    ({'contype': 'host', 'databases': 'all', 'users': 'all', 'address': '10.0.0.300/24'},
     'address "10.0.0.300/24" is not a valid IP network'),
    ({'contype': 'host', 'databases': 'all', 'users': 'all', 'address': '10.0.0.1'},
     'address "10.0.0.1" is a bare IP address: write it as 10.0.0.1/32'),
    ({'contype': 'host', 'databases': 'all', 'users': 'all'},
     'a "host" entry needs an address'),
    ({'contype': 'local', 'databases': 'all', 'users': 'all', 'address': '10.0.0.0/8'},
     'a "local" entry is for Unix-socket connections and takes no address'),
    ({'contype': 'host', 'databases': 'all', 'users': 'all', 'address': '10.0.0.0/8', 'method': 'scram'},
     'method "scram" is not one of'),
    ({'contype': 'host', 'databases': 'my db', 'users': 'all', 'address': '10.0.0.0/8'},
     'databases "my db" is not a comma-separated list of names'),
    ({'contype': 'host', 'databases': 'all', 'users': '', 'address': '10.0.0.0/8'},
     'users must not be empty'),
    ({'contype': 'host', 'databases': 'all', 'users': 'all', 'address': 'bad_host!'},
     'address "bad_host!" is neither an IP network'),
    ({'contype': 'host', 'databases': 'all', 'users': 'all', 'address': '10.0.0.0/8', 'options': 'clientcert'},
     'option "clientcert" is not of the form name=value'),
])
def test_each_problem_names_the_entry(entry, message):
    problems = hba_problems([entry])
    assert len(problems) == 1, problems
    assert problems[0].startswith('server_hba_entries[0] (')
    assert message in problems[0]


def test_problem_index_points_at_the_bad_entry():
    entries = good_entries() + [{'contype': 'host', 'databases': 'app', 'users': 'app', 'address': '300.1.1.1/32'}]
    problems = hba_problems(entries)
    assert problems == ['server_hba_entries[7] (host app app 300.1.1.1/32 scram-sha-256): address '
                        '"300.1.1.1/32" is not a valid IP network in CIDR notation (for example 10.0.0.0/24 or fd00::/8)']


def test_rules_default_to_scram_and_keep_order_and_header():
    rules = hba_rules([{'contype': 'host', 'databases': 'app', 'users': 'app_rw', 'address': '10.0.0.0/24'},
                       {'contype': 'local', 'databases': 'all', 'users': 'all', 'method': 'peer'}],
                      header_lines=['# Ansible managed'])
    assert rules == [
        {'comment': '# Ansible managed'},
        {'contype': 'host', 'databases': 'app', 'users': 'app_rw', 'method': 'scram-sha-256',
         'address': '10.0.0.0/24'},
        {'contype': 'local', 'databases': 'all', 'users': 'all', 'method': 'peer'},
    ]


def test_trust_only_when_an_entry_asks_for_it():
    rules = hba_rules([{'contype': 'host', 'address': '10.0.0.0/8'}])
    assert rules[0]['method'] == 'scram-sha-256'
    assert all(r.get('method') != 'trust' for r in hba_rules(good_entries()))
