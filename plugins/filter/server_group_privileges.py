# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The server_group_privileges filter (plain data expansion, unit-tested)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
name: server_group_privileges
short_description: Expand the read-only / read-write group-role pattern into postgresql_privs entries
version_added: 0.1.0
description:
  - Each entry names a database, a schema (default V(public)), and the group roles that may read
    (C(read_role)) or read and write (C(write_role)) it, and optionally the C(owner) that creates
    the tables.
  - Each group gets C(CONNECT) on the database, C(USAGE) on the schema, and its privileges on the
    tables and sequences that exist (read C(SELECT); write C(SELECT,INSERT,UPDATE,DELETE) on tables,
    C(USAGE,SELECT,UPDATE) on sequences).
  - With C(owner) set, the same privileges are also granted as default privileges on what C(owner)
    creates later (C(ALTER DEFAULT PRIVILEGES)).
options:
  _input:
    description:
      - The group access entries, as the C(server) role's C(server_group_access) takes them.
      - Keys C(database) (required), C(schema), C(owner), C(read_role), C(write_role).
    type: list
    elements: dict
    required: true
seealso:
  - module: community.postgresql.postgresql_privs
author:
  - dbdevops maintainers (@dbdevops)
'''

EXAMPLES = r'''
- name: Grant the read and write groups of app
  community.postgresql.postgresql_privs:
    login_db: "{{ item.database }}"
    roles: "{{ item.roles }}"
    type: "{{ item.type }}"
    objs: "{{ item.objs }}"
    privs: "{{ item.privs }}"
    schema: "{{ item.schema | default(omit) }}"
    target_roles: "{{ item.target_roles | default(omit) }}"
  loop: "{{ group_access | dbdevops.postgresql.server_group_privileges }}"
  vars:
    group_access:
      - {database: app, owner: app_owner, read_role: app_read, write_role: app_write}
'''

RETURN = r'''
_value:
  description:
    - Keyword arguments for M(community.postgresql.postgresql_privs), one entry per grant
      (C(database), C(roles), C(type), C(objs), C(privs), and C(schema) and C(target_roles) where they apply).
    - Six per group role, four without C(owner).
  type: list
  elements: dict
  sample:
    - {database: app, roles: app_read, type: database, objs: app, privs: CONNECT}
    - {database: app, roles: app_read, type: schema, objs: public, privs: USAGE}
    - {database: app, roles: app_read, type: table, schema: public, objs: ALL_IN_SCHEMA, privs: SELECT}
'''

from ansible.errors import AnsibleFilterError

_READ = {'table': 'SELECT', 'sequence': 'SELECT'}
_WRITE = {'table': 'SELECT,INSERT,UPDATE,DELETE', 'sequence': 'USAGE,SELECT,UPDATE'}


def server_group_privileges(group_access):
    """Expand the read-only / read-write group-role pattern into postgresql_privs entries.

    Each entry ``{database, schema (public), owner, read_role, write_role}`` gives
    each group CONNECT on the database, USAGE on the schema, its privileges on the
    tables and sequences that exist, and - when ``owner`` is set - the same as
    default privileges on what ``owner`` creates later (ALTER DEFAULT PRIVILEGES).
    """
    privileges = []
    for index, entry in enumerate(group_access or []):
        if not isinstance(entry, dict) or not entry.get('database'):
            raise AnsibleFilterError('server_group_privileges: entry %d (%r) needs a "database"' % (index, entry))
        database = entry['database']
        schema = entry.get('schema') or 'public'
        owner = entry.get('owner')
        for role_key, grants in (('read_role', _READ), ('write_role', _WRITE)):
            role = entry.get(role_key)
            if not role:
                continue
            # comma-separated strings, as community.postgresql.postgresql_privs takes them
            base = {'database': database, 'roles': role}
            privileges.append(dict(base, type='database', objs=database, privs='CONNECT'))
            privileges.append(dict(base, type='schema', objs=schema, privs='USAGE'))
            for objtype in ('table', 'sequence'):
                privileges.append(dict(base, type=objtype, schema=schema, objs='ALL_IN_SCHEMA',
                                       privs=grants[objtype]))
            if owner:
                for objtype, objs in (('table', 'TABLES'), ('sequence', 'SEQUENCES')):
                    privileges.append(dict(base, type='default_privs', schema=schema, objs=objs,
                                           privs=grants[objtype], target_roles=owner))
    return privileges


class FilterModule(object):
    def filters(self):
        return {'server_group_privileges': server_group_privileges}
