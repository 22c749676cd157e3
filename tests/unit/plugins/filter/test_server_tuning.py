"""The server_tuning filter: pgtune heuristics (module_utils/_tuning.py), errors as filter errors."""

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.dbdevops.postgresql.plugins.filter.server_tuning import server_tuning
from ansible_collections.dbdevops.postgresql.plugins.module_utils._tuning import compute_tuning


def test_same_settings_as_the_computation():
    assert server_tuning(16384, 4) == compute_tuning(16384, 4, storage='ssd', workload='mixed')


def test_keyword_arguments_reach_the_computation():
    t = server_tuning(8192, 2, storage='hdd', workload='oltp', max_connections=50)
    assert t['random_page_cost'] == 4.0
    assert t['max_connections'] == 50


def test_memory_as_string_from_facts_is_accepted():
    assert server_tuning('16384', '4')['shared_buffers'] == '4GB'


@pytest.mark.parametrize('args, kwargs, message', [
    ((0, 2), {}, 'server_tuning: memory_mb must be greater than 0'),
    ((1024, 2), {'storage': 'nvme'}, "server_tuning: storage must be one of ssd, hdd, san, got 'nvme'"),
    ((1024, 2), {'workload': 'batch'}, 'server_tuning: workload must be one of'),
])
def test_bad_input_is_a_filter_error_naming_it(args, kwargs, message):
    with pytest.raises(AnsibleFilterError, match=message):
        server_tuning(*args, **kwargs)
