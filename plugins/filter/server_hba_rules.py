# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The server_hba_rules filter; the logic lives in module_utils/_hba.py (unit-tested)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
name: server_hba_rules
short_description: Turn pg_hba entries into community.postgresql.postgresql_pg_hba rules
version_added: 0.1.0
description:
  - Converts the C(server) role's C(server_hba_entries) into the O(community.postgresql.postgresql_pg_hba#module:rules)
    of M(community.postgresql.postgresql_pg_hba), in the given order.
  - An entry without C(method) gets V(scram-sha-256), without C(databases) or C(users) V(all); the address
    of a V(local) entry is dropped.
  - Check the entries with P(dbdevops.postgresql.server_hba_problems#filter) first.
options:
  _input:
    description: The entries, as the C(server) role's C(server_hba_entries) takes them.
    type: list
    elements: dict
    required: true
  header_lines:
    description:
      - Full-line comments written at the top of the file (C(postgresql_pg_hba) keeps comment-only
        rules when it rewrites the file). Each should start with C(#).
    type: list
    elements: str
    default: []
seealso:
  - plugin: dbdevops.postgresql.server_hba_problems
    plugin_type: filter
  - module: community.postgresql.postgresql_pg_hba
author:
  - dbdevops maintainers (@dbdevops)
'''

EXAMPLES = r'''
- name: Write pg_hba.conf from the entries, nothing else
  community.postgresql.postgresql_pg_hba:
    dest: /etc/postgresql/15/main/pg_hba.conf
    overwrite: true
    rules_behavior: combine
    rules: "{{ hba_entries | dbdevops.postgresql.server_hba_rules(header_lines=['# Ansible managed']) }}"
  vars:
    hba_entries:
      - {contype: local, databases: all, users: postgres, method: peer}
      - {contype: host, databases: app, users: app_rw, address: 10.0.0.0/24}
'''

RETURN = r'''
_value:
  description: Rules for M(community.postgresql.postgresql_pg_hba), the header comments first.
  type: list
  elements: dict
  sample:
    - {comment: '# Ansible managed'}
    - {contype: host, databases: app, users: app_rw, method: scram-sha-256, address: 10.0.0.0/24}
'''

from ansible.errors import AnsibleFilterError

from ansible_collections.dbdevops.postgresql.plugins.module_utils import _hba


def server_hba_rules(entries, header_lines=()):
    """postgresql_pg_hba rules (see module_utils/_hba.hba_rules)."""
    try:
        return _hba.hba_rules(entries, header_lines or ())
    except (KeyError, TypeError, AttributeError) as exc:
        raise AnsibleFilterError('server_hba_rules: every entry must be a dict with at least "contype" '
                                 '(check them with dbdevops.postgresql.server_hba_problems): %s' % exc)


class FilterModule(object):
    def filters(self):
        return {'server_hba_rules': server_hba_rules}
