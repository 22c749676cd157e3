#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: backup_info
short_description: List the backups under a backup root, with status, sizes and ages; optionally verify them
version_added: 0.1.0
description:
  - Reads every backup folder under O(dest) written by M(dbdevops.postgresql.backup) or the
    C(backup) role and reports its status.
  - V(complete) means the manifest is readable and every file it lists is present with its size.
  - With O(verify=true), every file is re-hashed with SHA-256 and the archive's table of contents
    is read with C(pg_restore --list); a backup that passes is V(verified).
  - V(corrupt) means the manifest is unreadable or was edited after the backup was written (it
    carries its own SHA-256, C(manifest_sha256)), a file is missing, or a size, checksum or the
    table of contents differs; RV(backups[].problems) names each file at fault.
  - V(incomplete) means a folder named like a backup (C(<UTC start>-<database>)) has no manifest;
    the backup never finished or its manifest was deleted. It cannot be restored.
  - Only V(complete) and V(verified) backups are good. Restore picks and retention counts nothing else.
  - A O(dest) that does not exist is a failure, and so is finding no backup (of O(database)) unless
    O(allow_empty=true). A check that looks in the wrong place must not pass.
  - Interrupted or running backups (C(.partial-*) folders) are listed in RV(partial), never as backups.
  - Needs no database connection. Never changes anything.
author:
  - dbdevops maintainers (@dbdevops)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  dest:
    description:
      - The backup root folder.
    type: path
    required: true
  database:
    description:
      - Only backups of this database.
    type: str
  verify:
    description:
      - Re-hash every file and read each archive's table of contents.
    type: bool
    default: false
  fail_on_corrupt:
    description:
      - Fail when any backup is corrupt (the result is still returned), in check mode too.
    type: bool
    default: false
  allow_empty:
    description:
      - Succeed when no backup (of O(database)) is found under O(dest).
      - By default finding nothing fails, naming the folder; O(dest) must exist either way.
    type: bool
    default: false
  pg_bin_dir:
    description:
      - Folder holding C(pg_restore), used by O(verify). Default is the newest installed one.
    type: path
seealso:
  - module: dbdevops.postgresql.backup
  - module: dbdevops.postgresql.restore
'''

EXAMPLES = r'''
- name: List backups
  dbdevops.postgresql.backup_info:
    dest: /var/backups/postgresql
  register: info

- name: List a folder that may be empty (a new host)
  dbdevops.postgresql.backup_info:
    dest: /var/backups/postgresql
    allow_empty: true

- name: Verify every backup and fail on damage
  dbdevops.postgresql.backup_info:
    dest: /var/backups/postgresql
    verify: true
    fail_on_corrupt: true
'''

RETURN = r'''
backups:
  description: Backups, newest first.
  returned: always
  type: list
  elements: dict
  contains:
    backup_id:
      description: The backup id (its folder name).
      type: str
      sample: 20260101T020000Z-app
    path:
      description: The backup folder.
      type: str
      sample: /var/backups/postgresql/20260101T020000Z-app
    status:
      description: V(complete), V(verified), V(corrupt) or V(incomplete).
      type: str
      sample: verified
    problems:
      description: What is wrong, one entry per file at fault.
      type: list
      elements: str
      sample: ["app.dump: SHA-256 mismatch (file changed or damaged: ...)"]
    notes:
      description:
        - Warnings that do not make the backup corrupt, such as a manifest written before manifests
          carried their own checksum (its edits cannot be detected).
      type: list
      elements: str
      sample: []
    database:
      description: The database backed up.
      type: str
      sample: app
    bytes:
      description: Size of all files in bytes.
      type: int
      sample: 7340032
    age_seconds:
      description: Seconds since the backup ended.
      type: int
      sample: 3600
  sample: [{"backup_id": "20260101T020000Z-app", "status": "verified", "problems": [], "database": "app",
            "bytes": 7340032, "age_seconds": 3600, "format": "custom", "start": "2026-01-01T02:00:00.000000Z",
            "end": "2026-01-01T02:00:02.210000Z"}]
partial:
  description: Interrupted or running backup folders.
  returned: always
  type: list
  elements: dict
  sample: [{"name": ".partial-20260101T020000Z-app-4242", "pid": 4242, "running": false}]
count:
  description: Number of backups listed.
  returned: always
  type: int
  sample: 7
corrupt:
  description: Ids of corrupt backups.
  returned: always
  type: list
  elements: str
  sample: []
incomplete:
  description: Ids of incomplete backups (a backup folder without a manifest).
  returned: always
  type: list
  elements: str
  sample: []
total_bytes:
  description: Size of all backups listed.
  returned: always
  type: int
  sample: 51380224
latest:
  description: Id of the newest good backup per database.
  returned: always
  type: dict
  sample: {"app": "20260101T020000Z-app"}
'''

from ansible_collections.dbdevops.postgresql.plugins.module_utils._module import new_module, run
from ansible_collections.dbdevops.postgresql.plugins.module_utils._options import from_params
from ansible_collections.dbdevops.postgresql.plugins.module_utils.backup.catalog import (
    BackupInfoEngine, BackupInfoOptions)


def main():
    module = new_module(BackupInfoOptions, connection=False)
    run(module, lambda p: BackupInfoEngine(None, from_params(BackupInfoOptions, p)))


if __name__ == '__main__':
    main()
