#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: backup
short_description: Take PostgreSQL backups you can prove, with a manifest, checksums and retention
version_added: 0.1.0
description:
  - Dumps one, several or all databases with C(pg_dump) in custom or directory
    format, and the cluster's roles and tablespaces with C(pg_dumpall --globals-only) on request.
  - Each backup is one folder under O(dest), named after the UTC start time and the database
    (its backup id). It is written under a temporary C(.partial-*) name and renamed into place
    only when C(pg_dump) exited 0, printed no error, and the archive reads back with
    C(pg_restore --list); a failed or interrupted backup never looks like a good one and never
    touches earlier backups.
  - Every backup has a C(manifest.json) with the server and C(pg_dump) versions, format,
    compression, times, size, the SHA-256 of every file, and the exact row count of every table
    taken in the same snapshot as the dump (an exported snapshot given to C(pg_dump --snapshot)),
    the value of every sequence and the MD5 of every large object. The manifest carries its own
    SHA-256 (C(manifest_sha256)), so an edited manifest makes the backup corrupt.
  - Server timeouts set on the database or role (C(statement_timeout), C(idle_in_transaction_session_timeout),
    C(idle_session_timeout), C(lock_timeout)) are off for every session the backup opens, its own and
    C(pg_dump)'s, from the first moment of the session.
  - The module's death (even C(kill -9)) kills C(pg_dump) and its parallel workers at once; the
    C(.partial-*) folder it leaves is removed by the next run and reported in RV(partial_removed).
  - Files are mode C(0600), folders C(0700), owned by O(os_owner) when the module runs as root.
  - The password reaches C(pg_dump) through an in-memory C(0600) passfile that vanishes with the
    processes holding it, never a command line, environment value or file on disk.
  - Retention options delete older backups after a successful backup. A backup is kept when any
    rule keeps it; only complete backups count, and the newest complete backup of each database is
    never deleted. Interrupted C(.partial-*) folders of dead processes are removed too.
  - A backup always reports C(changed=true).
  - Before retention deletes anything, it verifies (SHA-256 and table of contents) every backup it
    keeps of that database, so a damaged backup never counts as a good one (see O(retention_verify)).
author:
  - dbdevops maintainers (@dbdevops)
extends_documentation_fragment:
  - dbdevops.postgresql.connection
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Connects and checks everything a backup needs, returns the ids it would create and the backups retention would delete, and writes nothing.
  diff_mode:
    support: full
    details: The backup ids under O(dest) before and after the run (new backups added, those retention deletes removed).
  platform:
    platforms: posix
options:
  dest:
    description:
      - The backup root folder. Created (mode C(0700)) when missing.
    type: path
    required: true
  databases:
    description:
      - Databases to back up. Empty means the database named by O(db).
    type: list
    elements: str
    default: []
  all_databases:
    description:
      - Back up every database that accepts connections (templates excluded).
    type: bool
    default: false
  format:
    description:
      - C(pg_dump) archive format. V(directory) allows parallel dumps with O(jobs).
    type: str
    choices: [ custom, directory ]
    default: custom
  jobs:
    description:
      - Parallel C(pg_dump) workers; more than 1 needs O(format=directory).
    type: int
    default: 1
  compression:
    description:
      - Compression method. V(lz4) and V(zstd) need a PostgreSQL 16 or later C(pg_dump); with an
        older one the module fails saying so.
    type: str
    choices: [ gzip, none, lz4, zstd ]
    default: gzip
  compression_level:
    description:
      - Compression level (gzip and lz4 0-9, zstd 0-22). Default is the method's default.
    type: int
  globals:
    description:
      - Also dump roles and tablespaces (C(pg_dumpall --globals-only)) into C(globals.sql) of each backup.
    type: bool
    default: false
  count_rows:
    description:
      - Count the rows of every table in the dump's snapshot, so a restore can be verified exactly.
      - Also records the value of every sequence and the MD5 of every large object (read in the dump's
        snapshot, one at a time) in the manifest's C(sequences) and C(large_objects), for the restore
        to verify what is not in any table.
      - Turn off for huge databases where a full count costs too much; the manifest then holds null for all three.
    type: bool
    default: true
  os_owner:
    description:
      - OS user that owns the backup files when the module runs as root.
      - Default C(postgres) when that user exists.
    type: str
  pg_bin_dir:
    description:
      - Folder holding C(pg_dump) and C(pg_restore). Default is the lowest installed
        C(/usr/lib/postgresql/N/bin) with N at least the server's major version, else E(PATH).
    type: path
  lock_wait_timeout:
    description:
      - Fail the backup instead of waiting longer than this for the shared lock on a table at the
        start of the dump (C(pg_dump --lock-wait-timeout)), for example V(30s) or V(5min); a
        number alone is milliseconds. Default waits as long as it takes.
      - A backup that fails this way records nothing and leaves earlier backups untouched.
    type: str
  retention_keep_last:
    description:
      - Keep the newest N complete backups of each database.
    type: int
  retention_keep_days:
    description:
      - Keep complete backups younger than N days.
    type: int
  retention_keep_daily:
    description:
      - Keep the newest backup of each of the last N days that have one.
    type: int
  retention_keep_weekly:
    description:
      - Keep the newest backup of each of the last N ISO weeks that have one.
    type: int
  retention_keep_monthly:
    description:
      - Keep the newest backup of each of the last N months that have one.
    type: int
  retention_verify:
    description:
      - Before deleting any backup of a database, verify every backup of it that retention keeps
        (SHA-256 of every file and C(pg_restore --list)). A kept backup that fails verification is
        corrupt, does not count, and is reported in RV(retention_corrupt); the next good one is kept instead.
      - Corrupt backups are never deleted by retention.
      - Turning this off saves re-reading the kept backups, at the cost of trusting files that may have been damaged since they were written.
    type: bool
    default: true
notes:
  - Only the custom and directory formats are supported; both can be restored selectively and in parallel.
  - Backups run through the client programs on the managed host; the module picks the
    C(pg_dump) that matches the server (see O(pg_bin_dir)).
seealso:
  - module: dbdevops.postgresql.backup_info
  - module: dbdevops.postgresql.restore
  - module: dbdevops.postgresql.data_compare
'''

EXAMPLES = r'''
- name: Back up the app database, keep a week and at least 3 backups
  dbdevops.postgresql.backup:
    db: app
    dest: /var/backups/postgresql
    retention_keep_last: 3
    retention_keep_days: 7

- name: Back up every database in parallel directory format, with roles
  dbdevops.postgresql.backup:
    all_databases: true
    dest: /var/backups/postgresql
    format: directory
    jobs: 4
    globals: true
    login_host: db1.example.com
    login_password: "{{ vault_postgres_password }}"

- name: Daily/weekly/monthly tiers
  dbdevops.postgresql.backup:
    databases: [app, billing]
    dest: /var/backups/postgresql
    retention_keep_daily: 7
    retention_keep_weekly: 4
    retention_keep_monthly: 12
  register: backup

- name: Show where it went
  ansible.builtin.debug:
    msg: "{{ backup.backup_id }} at {{ backup.path }}: {{ backup.bytes }} bytes; deleted {{ backup.deleted }}"
'''

RETURN = r'''
backup_id:
  description: Id of the (first) backup taken; in check mode the id it would have (empty when no database).
  returned: always
  type: str
  sample: 20260101T020000Z-app
path:
  description: Folder of the (first) backup (empty in check mode).
  returned: always
  type: str
  sample: /var/backups/postgresql/20260101T020000Z-app
bytes:
  description: Size in bytes of all files of the backups taken (0 in check mode).
  returned: always
  type: int
  sample: 7340032
duration_ms:
  description: Wall time of the backups in milliseconds (0 in check mode).
  returned: always
  type: int
  sample: 2210
manifest:
  description: The manifest of the (first) backup (empty in check mode).
  returned: always
  type: dict
  sample: {"id": "20260101T020000Z-app", "database": "app", "format": "custom", "bytes": 7340032,
           "files": {"app.dump": {"sha256": "9f86d0...", "bytes": 7339000}},
           "tables": [{"schema": "public", "name": "orders", "rows": 120000}],
           "sequences": {"\"public\".\"orders_id_seq\"": [120000, true]}, "large_objects": {"16403": "5d41402abc4b2a76b9719d911017c592"},
           "format_version": 2, "manifest_sha256": "3b1f0c..."}
backups:
  description:
    - One entry per database backed up (or that would be), with C(backup_id), C(database), C(path),
      C(bytes) and C(duration_ms); in check mode C(path) is null and the sizes and times 0.
  returned: always
  type: list
  elements: dict
  sample: [{"backup_id": "20260101T020000Z-app", "database": "app", "path": "/var/backups/postgresql/20260101T020000Z-app",
            "bytes": 7340032, "duration_ms": 2210}]
deleted:
  description: Ids of the backups retention deleted (in check mode, would delete).
  returned: always
  type: list
  elements: str
  sample: [20251201T020000Z-app]
partial_removed:
  description: Interrupted C(.partial-*) folders removed (in check mode, would remove).
  returned: always
  type: list
  elements: str
  sample: []
retention_corrupt:
  description: Backups retention found damaged while verifying what it keeps (they are kept, not counted).
  returned: always
  type: list
  elements: dict
  sample: [{"backup_id": "20251230T020000Z-app", "database": "app", "problems": ["app.dump: SHA-256 mismatch (...)"]}]
diff:
  description: With C(--diff), the backup ids under O(dest) before and after.
  returned: when diff mode is on
  type: dict
  sample: {"before": {"backups": ["20251231T020000Z-app"]}, "after": {"backups": ["20260101T020000Z-app"]}}
compression_supported:
  description: Compression methods the C(pg_dump) in use can write.
  returned: always
  type: list
  elements: str
  sample: [none, gzip]
'''

from ansible_collections.dbdevops.postgresql.plugins.module_utils._module import conn_params, new_module, run
from ansible_collections.dbdevops.postgresql.plugins.module_utils._options import from_params
from ansible_collections.dbdevops.postgresql.plugins.module_utils.backup.engine import BackupEngine, BackupOptions


def main():
    module = new_module(BackupOptions)
    run(module, lambda p: BackupEngine(conn_params(p), from_params(BackupOptions, p)))


if __name__ == '__main__':
    main()
