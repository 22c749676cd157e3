"""The server_conf_value filter: postgresql.conf quoting (module_utils/_tuning.py)."""

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.dbdevops.postgresql.plugins.filter.server_conf_value import server_conf_value


@pytest.mark.parametrize('value, text', [
    (True, 'on'), (False, 'off'), (40, '40'), (1.1, '1.1'), ('4GB', "'4GB'"),
    ("it's", "'it''s'"), (['localhost', '10.0.0.5'], "'localhost,10.0.0.5'"),
])
def test_quoting(value, text):
    assert server_conf_value(value) == text


def test_a_line_break_is_a_filter_error():
    with pytest.raises(AnsibleFilterError, match='server_conf_value: a postgresql.conf value cannot span lines'):
        server_conf_value("x'\nlisten_addresses = '*")
