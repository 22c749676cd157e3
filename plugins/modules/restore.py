#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: restore
short_description: Restore a verified PostgreSQL backup safely, or run a restore drill
version_added: 0.1.0
description:
  - Restores a backup taken by M(dbdevops.postgresql.backup) (or the C(backup) role), a given
    O(backup_id) or the newest complete one, into the same database name or O(target_db).
  - The backup's SHA-256 checksums are re-checked while C(pg_restore) runs, and afterwards the
    row count of every restored table is compared with the count in the manifest (taken in the
    dump's own snapshot). Any difference fails the restore.
  - Sequence values and large objects are compared with the manifest too when the backup recorded
    them; for an older backup RV(verification) says they were not checked.
  - A target that exists and holds objects is refused unless O(replace=true). With O(replace=true)
    the backup is restored into a temporary database, verified, and only then swapped in with
    C(ALTER DATABASE ... RENAME) (both renames in one transaction); a failed restore leaves the
    original untouched. Sessions connected to the original are reported and the swap refused,
    unless O(terminate_connections=true). Prepared transactions on the target, and with
    O(terminate_connections=true) sessions the login role may not end, are refused when planning.
  - With O(tables) or O(schemas) and O(replace=true), only the selection is replaced, inside the
    target, in one transaction that also checks the row counts and sequence values before it commits;
    nothing outside the selection is removed. An object outside the selection that depends on it (a
    foreign key, a view) makes it fail with nothing changed, and so does a lock not granted within
    O(lock_timeout).
  - Temporary databases carry generated names (C(dbdevops_restore_...), C(dbdevops_swap_...),
    C(dbdevops_drill_...)) and are marked as scratch while a run uses them; every run first drops
    those a killed run left behind (RV(scratch_dropped)).
  - C(pg_restore) runs with C(--exit-on-error); "errors ignored on restore" is a failure.
  - With O(drill=true) the backup is restored into a scratch database, verified, and the scratch
    database dropped; RV(drill) says whether it passed and why not. The module fails when the drill fails.
author:
  - dbdevops maintainers (@dbdevops)
extends_documentation_fragment:
  - dbdevops.postgresql.connection
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Resolves the backup and the target and reports what would be done; restores nothing.
  diff_mode:
    support: full
    details: Returns the target database before (exists, user objects) and after (the backup restored).
  platform:
    platforms: posix
options:
  src:
    description:
      - The backup root folder, the O(dbdevops.postgresql.backup#module:dest) the backups were taken into.
    type: path
    required: true
  backup_id:
    description:
      - Backup to restore, or V(latest) for the newest complete backup (of O(backup_db)).
    type: str
    default: latest
  backup_db:
    description:
      - With O(backup_id=latest), the database whose backups to pick from. Needed when the
        backup root holds backups of several databases.
    type: str
  target_db:
    description:
      - Database to restore into. Default is the database the backup was taken of.
    type: str
  replace:
    description:
      - Replace a non-empty target, through a temporary database swapped in after success.
    type: bool
    default: false
  terminate_connections:
    description:
      - With O(replace=true), end sessions connected to the target before the swap.
    type: bool
    default: false
  schemas:
    description:
      - Restore only these schemas (all their objects).
    type: list
    elements: str
    default: []
  tables:
    description:
      - Restore only these tables (C(name) or C(schema.name)) as usable tables, with their definition, data,
        and what belongs to each table as recorded in the manifest (primary key, unique and check
        constraints, indexes, column defaults, owned and identity sequences with their current
        value, triggers, row-level security policies, comments and privileges). C(pg_restore --table)
        alone would restore only the definition and the data.
      - A foreign key is restored only when the table it references is in the list too; the others
        are left out and listed in RV(skipped).
      - Functions that triggers or defaults call, and types the table uses, are not restored;
        they must exist in the target (restore their schema, or the whole database, for those).
    type: list
    elements: str
    default: []
  jobs:
    description:
      - Parallel C(pg_restore) workers.
    type: int
    default: 1
  globals_first:
    description:
      - Create the backup's roles and tablespaces (C(globals.sql)) that are missing, before the database,
        in one transaction. A role or tablespace that exists is never altered (no password, C(LOGIN) or
        membership of it is changed); RV(globals_created) lists what was created.
    type: bool
    default: false
  analyze:
    description:
      - Run C(ANALYZE) on the restored database.
    type: bool
    default: true
  verify:
    description:
      - Check the backup's checksums and compare row counts with the manifest.
    type: bool
    default: true
  no_owner:
    description:
      - Do not restore ownership and privileges (C(pg_restore --no-owner --no-acl)); objects are
        owned by O(login_user).
    type: bool
    default: false
  drill:
    description:
      - Restore into a scratch database, verify, drop it, and report pass or fail.
    type: bool
    default: false
  allow_older:
    description:
      - With O(backup_id=latest), when the newest backup is damaged (corrupt or incomplete), restore the
        newest good one instead, with a warning naming the damaged one. By default that fails, naming both.
    type: bool
    default: false
  lock_timeout:
    description:
      - With O(tables) or O(schemas) and O(replace=true), how long the one transaction that replaces the
        selection waits for a lock before it fails with nothing changed (a PostgreSQL interval, such as V(5s)).
    type: str
    default: 5s
  pg_bin_dir:
    description:
      - Folder holding C(pg_restore) and C(psql). Default picks the one matching the server.
    type: path
seealso:
  - module: dbdevops.postgresql.backup
  - module: dbdevops.postgresql.backup_info
  - module: dbdevops.postgresql.data_compare
'''

EXAMPLES = r'''
- name: Restore the newest backup of app into app_copy
  dbdevops.postgresql.restore:
    src: /var/backups/postgresql
    backup_db: app
    target_db: app_copy
    jobs: 4

- name: Replace app with a given backup, ending open sessions
  dbdevops.postgresql.restore:
    src: /var/backups/postgresql
    backup_id: 20260101T020000Z-app
    replace: true
    terminate_connections: true

- name: Put back one table from the newest backup, keeping everything else in app
  dbdevops.postgresql.restore:
    src: /var/backups/postgresql
    backup_db: app
    tables: [public.customers]
    replace: true
    lock_timeout: 10s

- name: Restore one schema into a scratch database
  dbdevops.postgresql.restore:
    src: /var/backups/postgresql
    backup_db: app
    target_db: app_reporting
    schemas: [reporting]

- name: Restore drill of the newest backup
  dbdevops.postgresql.restore:
    src: /var/backups/postgresql
    backup_db: app
    drill: true
  register: drill
'''

RETURN = r'''
backup_id:
  description: The backup restored (or that would be).
  returned: always
  type: str
  sample: 20260101T020000Z-app
target_db:
  description: The database restored into (the scratch database for a drill; empty in check mode of a drill).
  returned: always
  type: str
  sample: app_copy
action:
  description: V(create) (new database), V(restore_into_empty), V(replace), V(replace_selection)
    (O(tables) or O(schemas) replaced inside the target) or V(drill).
  returned: always
  type: str
  sample: create
verification:
  description: Checksums and row counts compared with the manifest (empty in check mode).
  returned: always
  type: dict
  sample: {"checksums": "passed", "tables_checked": 12, "rows_expected": 1300000, "counted_while_restoring": 12,
           "mismatches": [], "errors": [], "sequences": {"checked": 3, "mismatches": []},
           "large_objects": {"checked": 0, "mismatches": []}, "passed": true}
terminated_sessions:
  description: Sessions ended before the swap (O(terminate_connections=true)); empty in check mode.
  returned: unless O(drill=true)
  type: list
  elements: dict
  sample: []
target_sessions:
  description: Sessions connected to the target when the restore was planned.
  returned: always
  type: list
  elements: dict
  sample: [{"pid": 4242, "user": "app", "application_name": "web", "client_addr": "10.0.0.5", "state": "idle"}]
drill:
  description:
    - Result of a drill (O(drill=true)). In check mode C(passed) is null and nothing else is filled in.
  returned: when O(drill=true)
  type: dict
  sample: {"passed": true, "backup_id": "20260101T020000Z-app", "database": "app",
           "scratch_db": "dbdevops_drill_app_3f2a9c01b7", "verification": {"passed": true}, "error": null,
           "scratch_dropped": [], "duration_ms": 6100}
tables:
  description: Number of tables restored (or that would be), as listed in the manifest.
  returned: unless O(drill=true)
  type: int
  sample: 12
restored_tables:
  description: The tables restored (or that would be), quoted C(schema.name).
  returned: unless O(drill=true)
  type: list
  elements: str
  sample: ['"public"."customers"', '"sales"."orders"']
skipped:
  description: With O(tables), foreign keys left out because the table they reference is not restored.
  returned: unless O(drill=true)
  type: list
  elements: dict
  sample: [{"table": '"sales"."orders"', "foreign_key": "orders_customer_id_fkey", "references": '"public"."customers"',
            "reason": "the referenced table is not restored"}]
globals_restored:
  description: Whether roles and tablespaces were restored first (in check mode, whether they would be).
  returned: unless O(drill=true)
  type: bool
  sample: false
globals_created:
  description: With O(globals_first), the roles and tablespaces created (in check mode, that would be).
  returned: unless O(drill=true)
  type: list
  elements: str
  sample: ['role "app_reader"']
scratch_dropped:
  description: Scratch databases that killed runs had left behind, dropped before this run (empty in check mode).
  returned: always
  type: list
  elements: str
  sample: ["dbdevops_restore_app_3f2a9c01b7"]
duration_ms:
  description: Wall time in milliseconds (0 in check mode).
  returned: always
  type: int
  sample: 6100
'''

from ansible_collections.dbdevops.postgresql.plugins.module_utils._module import conn_params, new_module, run
from ansible_collections.dbdevops.postgresql.plugins.module_utils._options import from_params
from ansible_collections.dbdevops.postgresql.plugins.module_utils.backup.restore import (
    RestoreEngine, RestoreOptions)


def main():
    module = new_module(RestoreOptions)
    run(module, lambda p: RestoreEngine(conn_params(p), from_params(RestoreOptions, p)))


if __name__ == '__main__':
    main()
