# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The server_tuning filter; the logic lives in module_utils/_tuning.py (unit-tested)."""

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
  - Used by the C(dbdevops.postgresql.server) role; render the values into C(postgresql.conf)
    with P(dbdevops.postgresql.server_conf_value#filter).
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
    description: Storage type; V(ssd) and V(san) lower C(random_page_cost) to 1.1.
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
seealso:
  - plugin: dbdevops.postgresql.server_conf_value
    plugin_type: filter
author:
  - dbdevops maintainers (@dbdevops)
'''

EXAMPLES = r'''
- name: Settings for this host
  ansible.builtin.debug:
    msg: "{{ ansible_facts['memtotal_mb'] | dbdevops.postgresql.server_tuning(cpus=ansible_facts['processor_vcpus'], storage='ssd') }}"

- name: A data warehouse on spinning disks with at most 50 sessions
  ansible.builtin.set_fact:
    pg_settings: "{{ 65536 | dbdevops.postgresql.server_tuning(cpus=16, storage='hdd', workload='dw', max_connections=50) }}"
'''

RETURN = r'''
_value:
  description:
    - Setting name to value. Memory sizes are rendered as PostgreSQL renders them (for example V(6026MB)),
      other values are numbers.
    - An input the heuristics cannot use (memory not above 0, an unknown O(storage) or O(workload))
      fails the template with a message naming it.
  type: dict
  sample: {shared_buffers: 4GB, effective_cache_size: 12GB, work_mem: 20971kB, max_connections: 100}
'''

from ansible.errors import AnsibleFilterError

from ansible_collections.dbdevops.postgresql.plugins.module_utils import _tuning


def server_tuning(memory_mb, cpus, storage='ssd', workload='mixed', max_connections=None):
    """pgtune-style settings (see module_utils/_tuning.compute_tuning)."""
    try:
        return _tuning.compute_tuning(memory_mb, cpus, storage=storage, workload=workload,
                                      max_connections=max_connections)
    except _tuning.TuningError as exc:
        raise AnsibleFilterError('server_tuning: %s' % exc)


class FilterModule(object):
    def filters(self):
        return {'server_tuning': server_tuning}
