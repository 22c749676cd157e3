# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The server_hba_problems filter; the logic lives in module_utils/_hba.py (unit-tested)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
name: server_hba_problems
short_description: Find malformed pg_hba entries before they reach pg_hba.conf
version_added: 0.1.0
description:
  - Checks each entry of the C(server) role's C(server_hba_entries) for what an argument spec cannot
    say, so that a typo fails the play naming the entry instead of leaving a C(pg_hba.conf) the server
    refuses to load.
  - Checked are the connection type and method, the address (an IP network in CIDR notation, an IP
    address with a netmask, a host name, or V(all), V(samehost), V(samenet); none for V(local)
    entries), the database and user lists, and the options (C(name=value)).
options:
  _input:
    description:
      - The entries, as the C(server) role's C(server_hba_entries) takes them.
      - Each is a dict with C(contype), C(databases), C(users), C(address), C(netmask), C(method)
        (default V(scram-sha-256)), C(options) and C(comment).
    type: list
    elements: dict
    required: true
seealso:
  - plugin: dbdevops.postgresql.server_hba_rules
    plugin_type: filter
author:
  - dbdevops maintainers (@dbdevops)
'''

EXAMPLES = r'''
- name: Refuse malformed pg_hba entries before changing anything
  ansible.builtin.assert:
    that: problems | length == 0
    fail_msg: "Malformed pg_hba entries: {{ problems | join(' | ') }}"
  vars:
    problems: "{{ server_hba_entries | dbdevops.postgresql.server_hba_problems }}"
'''

RETURN = r'''
_value:
  description:
    - One sentence per problem naming the entry by its index and fields; empty when every entry is fine.
  type: list
  elements: str
  sample:
    - 'server_hba_entries[4] (host app app_rw 10.0.0.300/24 scram-sha-256): address "10.0.0.300/24" is not a valid IP network
      in CIDR notation (for example 10.0.0.0/24 or fd00::/8)'
'''

from ansible.errors import AnsibleFilterError

from ansible_collections.dbdevops.postgresql.plugins.module_utils import _hba


def server_hba_problems(entries):
    """Sentences naming each malformed entry (see module_utils/_hba.hba_problems)."""
    if entries is not None and not isinstance(entries, (list, tuple)):
        raise AnsibleFilterError('server_hba_problems: expects a list of pg_hba entries, got %s'
                                 % type(entries).__name__)
    return _hba.hba_problems(entries)


class FilterModule(object):
    def filters(self):
        return {'server_hba_problems': server_hba_problems}
