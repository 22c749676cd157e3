#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: restore_point
short_description: Create a named PostgreSQL restore point for point-in-time recovery
version_added: 0.2.0
description:
  - Runs C(pg_create_restore_point(name)) on the server of the connection options and returns the WAL position
    (LSN) and time of the restore point. M(dbdevops.postgresql.pitr_restore) can restore to it with O(name)
    (its O(dbdevops.postgresql.pitr_restore#module:target_name)).
  - The name, LSN, time, timeline and server (system identifier) are also recorded in O(record_file) (JSON, unless
    O(record=false)), so that a restore can choose a backup taken before the point and check it lies in the window.
  - C(pg_create_restore_point) is not idempotent - every run writes a new restore point, even with a name used
    before, and always reports C(changed=true). Recovery stops at the B(first) restore point of the name it meets
    after the backup it starts from; use names that are unique (a release number, a date).
  - Needs a superuser or a role granted EXECUTE on C(pg_create_restore_point), on a primary with C(wal_level)
    C(replica) or higher.
author:
  - dbdevops maintainers (@dbdevops)
extends_documentation_fragment:
  - dbdevops.postgresql.connection
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Validates the name and checks the server can create a restore point (primary, wal_level); creates and records nothing.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  name:
    description:
      - The name of the restore point, at most 63 bytes (longer names are refused, not cut).
    type: str
    required: true
  stanza:
    description:
      - The pgBackRest stanza the point belongs to, recorded with it in O(record_file).
    type: str
  record:
    description:
      - Record the restore point in O(record_file).
    type: bool
    default: true
  record_file:
    description:
      - The JSON file restore points are recorded in (created C(0640) when missing).
    type: path
    default: /var/lib/postgresql/dbdevops-restore-points.json
seealso:
  - module: dbdevops.postgresql.pitr_restore
'''

EXAMPLES = r'''
- name: Mark the moment before a release
  dbdevops.postgresql.restore_point:
    name: "before-release-{{ release }}"
    stanza: main
    login_unix_socket: /var/run/postgresql
  register: point

- name: Show it
  ansible.builtin.debug:
    msg: "restore point {{ point.name }} at {{ point.lsn }} ({{ point.time }})"
'''

RETURN = r'''
name:
  description: The name of the restore point.
  returned: always
  type: str
  sample: before-release-42
lsn:
  description: Its WAL position (null in check mode).
  returned: always
  type: str
  sample: 0/9000140
time:
  description: The server time it was created (ISO 8601 UTC; null in check mode).
  returned: always
  type: str
  sample: "2026-11-28T10:42:00.103Z"
timeline:
  description: The server's timeline (null in check mode).
  returned: always
  type: int
  sample: 1
recorded_in:
  description: The file it was recorded in (null when O(record=false)).
  returned: always
  type: str
  sample: /var/lib/postgresql/dbdevops-restore-points.json
'''

from ansible_collections.dbdevops.postgresql.plugins.module_utils._module import conn_params, new_module, run
from ansible_collections.dbdevops.postgresql.plugins.module_utils._options import from_params
from ansible_collections.dbdevops.postgresql.plugins.module_utils.pitr.options import RestorePointOptions
from ansible_collections.dbdevops.postgresql.plugins.module_utils.pitr.restore_point import RestorePointEngine


def main():
    module = new_module(RestorePointOptions)
    run(module, lambda p: RestorePointEngine(conn_params(p), from_params(RestorePointOptions, p)))


if __name__ == '__main__':
    main()
