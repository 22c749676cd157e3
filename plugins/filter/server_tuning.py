# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters the ``server`` role uses; the logic lives in module_utils (unit-tested)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
name: server_tuning
short_description: PostgreSQL settings tuned for a host's memory and CPUs
version_added: 0.1.0
description:
  - Computes C(shared_buffers) (25% of RAM), C(effective_cache_size) (75%), C(work_mem),
    C(maintenance_work_mem), C(min_wal_size)/C(max_wal_size), C(checkpoint_completion_target) 0.9,
    C(random_page_cost) (1.1 on SSD), C(effective_io_concurrency), C(max_connections) and, from
    4 CPUs up, the parallel worker settings, using the pgtune heuristics.
  - The same file also provides C(server_conf_value) (quote a value for postgresql.conf),
    C(server_hba_problems) (sentences naming each malformed pg_hba entry) and
    C(server_hba_rules) (entries to M(community.postgresql.postgresql_pg_hba) rules) and
    C(server_group_privileges) (the read-only / read-write group-role pattern as
    M(community.postgresql.postgresql_privs) entries, default privileges included).
options:
  _input:
    description: Memory available to the cluster, in MB (for example C(ansible_memtotal_mb)).
    type: int
    required: true
  cpus:
    description: CPUs available to the cluster (for example C(ansible_processor_vcpus)).
    type: int
    required: true
  storage:
    description: Storage type; C(ssd) and C(san) lower C(random_page_cost) to 1.1.
    type: str
    choices: [ssd, hdd, san]
    default: ssd
  workload:
    description: Workload profile.
    type: str
    choices: [web, oltp, dw, mixed, desktop]
    default: mixed
  max_connections:
    description: Overrides the workload's C(max_connections); C(work_mem) follows it.
    type: int
author:
  - dbdevops maintainers
'''

EXAMPLES = r'''
- name: Settings for this host
  ansible.builtin.debug:
    msg: "{{ ansible_memtotal_mb | dbdevops.postgresql.server_tuning(cpus=ansible_processor_vcpus, storage='ssd') }}"
'''

RETURN = r'''
_value:
  description: Setting name to value (memory sizes rendered as PostgreSQL renders them, for example C(6026MB)).
  type: dict
'''

from ansible.errors import AnsibleFilterError

from ansible_collections.dbdevops.postgresql.plugins.module_utils import _hba, _tuning


def server_tuning(memory_mb, cpus, storage='ssd', workload='mixed', max_connections=None):
    try:
        return _tuning.compute_tuning(memory_mb, cpus, storage=storage, workload=workload,
                                      max_connections=max_connections)
    except _tuning.TuningError as exc:
        raise AnsibleFilterError('server_tuning: %s' % exc)


def server_conf_value(value):
    try:
        return _tuning.conf_value(value)
    except _tuning.TuningError as exc:
        raise AnsibleFilterError('server_conf_value: %s' % exc)


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
    for entry in group_access or []:
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


def server_hba_problems(entries):
    return _hba.hba_problems(entries)


def server_hba_rules(entries, header_lines=()):
    return _hba.hba_rules(entries, header_lines)


class FilterModule(object):
    def filters(self):
        return {
            'server_tuning': server_tuning,
            'server_conf_value': server_conf_value,
            'server_hba_problems': server_hba_problems,
            'server_hba_rules': server_hba_rules,
            'server_group_privileges': server_group_privileges,
        }
