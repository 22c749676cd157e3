# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The server_conf_value filter; the logic lives in module_utils/_tuning.py (unit-tested)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
name: server_conf_value
short_description: Quote a value for postgresql.conf
version_added: 0.1.0
description:
  - Renders a value the way C(postgresql.conf) takes it. Booleans become V(on)/V(off), integers and
    floats stay bare, lists are joined with commas and quoted, anything else is put in single
    quotes, with single quotes inside doubled and backslashes escaped.
  - A value containing a line break fails the template, so a value can never inject a second setting.
options:
  _input:
    description: The setting's value.
    type: raw
    required: true
seealso:
  - plugin: dbdevops.postgresql.server_tuning
    plugin_type: filter
author:
  - dbdevops maintainers (@dbdevops)
'''

EXAMPLES = r'''
- name: One postgresql.conf line per setting
  ansible.builtin.copy:
    dest: /etc/postgresql/15/main/conf.d/50-app.conf
    content: |
      {% for name, value in pg_settings.items() %}
      {{ name }} = {{ value | dbdevops.postgresql.server_conf_value }}
      {% endfor %}
    mode: "0644"
  vars:
    pg_settings:
      shared_buffers: 4GB
      jit: false
      random_page_cost: 1.1
      listen_addresses: [localhost, 10.0.0.5]
# shared_buffers = '4GB'
# jit = off
# random_page_cost = 1.1
# listen_addresses = 'localhost,10.0.0.5'
'''

RETURN = r'''
_value:
  description: The value as it is written on the right of C(=) in C(postgresql.conf).
  type: str
  sample: "'localhost,10.0.0.5'"
'''

from ansible.errors import AnsibleFilterError

from ansible_collections.dbdevops.postgresql.plugins.module_utils import _tuning


def server_conf_value(value):
    """Quote ``value`` for postgresql.conf (see module_utils/_tuning.conf_value)."""
    try:
        return _tuning.conf_value(value)
    except _tuning.TuningError as exc:
        raise AnsibleFilterError('server_conf_value: %s' % exc)


class FilterModule(object):
    def filters(self):
        return {'server_conf_value': server_conf_value}
