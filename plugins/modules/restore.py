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
  - A target that exists and holds objects is refused unless O(replace=true). With O(replace=true)
    the backup is restored into a temporary database, verified, and only then swapped in with
    C(ALTER DATABASE ... RENAME); a failed restore leaves the original untouched. Sessions
    connected to the original are reported and the swap refused, unless
    O(terminate_connections=true).
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
      - The backup root folder (O(dbdevops.postgresql.backup#module:dest) of the backup module).
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
      - Restore the backup's roles and tablespaces (C(globals.sql)) before the database.
        Roles that exist are kept ("already exists" is not an error).
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
  description: The database restored into (the scratch database for a drill).
  returned: always
  type: str
  sample: app_copy
action:
  description: V(create) (new database), V(restore_into_empty), V(replace) or V(drill).
  returned: always
  type: str
  sample: create
verification:
  description: Checksums and row counts compared with the manifest.
  returned: success
  type: dict
  sample: {"checksums": "passed", "tables_checked": 12, "rows_expected": 1300000, "counted_while_restoring": 12,
           "mismatches": [], "errors": [], "passed": true}
terminated_sessions:
  description: Sessions ended before the swap (O(terminate_connections=true)).
  returned: success
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
  description: Result of a drill (O(drill=true)).
  returned: when drill
  type: dict
  sample: {"passed": true, "scratch_db": "drill_app_4242", "verification": {"passed": true}, "error": null}
tables:
  description: Number of tables restored (as listed in the manifest).
  returned: success
  type: int
  sample: 12
restored_tables:
  description: The tables restored (quoted C(schema.name)).
  returned: success
  type: list
  elements: str
  sample: ['"public"."customers"', '"sales"."orders"']
skipped:
  description: With O(tables), foreign keys left out because the table they reference is not restored.
  returned: success
  type: list
  elements: dict
  sample: [{"table": '"sales"."orders"', "foreign_key": "orders_customer_id_fkey", "references": '"public"."customers"',
            "reason": "the referenced table is not restored"}]
globals_restored:
  description: Whether roles and tablespaces were restored first.
  returned: success
  type: bool
  sample: false
duration_ms:
  description: Wall time in milliseconds.
  returned: success
  type: int
  sample: 6100
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.dbdevops.postgresql.plugins.module_utils.connection import (
    ConnParams, connection_argument_spec)
from ansible_collections.dbdevops.postgresql.plugins.module_utils.errors import DbDevopsError
from ansible_collections.dbdevops.postgresql.plugins.module_utils.backup import restore


def argument_spec():
    spec = connection_argument_spec()
    spec.update(
        src=dict(type='path', required=True),
        backup_id=dict(type='str', default='latest'),
        backup_db=dict(type='str'),
        target_db=dict(type='str'),
        replace=dict(type='bool', default=False),
        terminate_connections=dict(type='bool', default=False),
        schemas=dict(type='list', elements='str', default=[]),
        tables=dict(type='list', elements='str', default=[]),
        jobs=dict(type='int', default=1),
        globals_first=dict(type='bool', default=False),
        analyze=dict(type='bool', default=True),
        verify=dict(type='bool', default=True),
        no_owner=dict(type='bool', default=False),
        drill=dict(type='bool', default=False),
        pg_bin_dir=dict(type='path'),
    )
    return spec


def run(module):
    p = module.params
    params = ConnParams.from_params(p)
    if p['drill']:
        if module.check_mode:
            path, manifest = restore.catalog.find_backup(p['src'], p['backup_id'], database=p['backup_db'])
            return dict(changed=False, backup_id=manifest['id'], target_db='', action='drill',
                        target_sessions=[])
        result = restore.restore_drill(params, p['src'], backup_id=p['backup_id'],
                                       backup_db=p['backup_db'], jobs=p['jobs'],
                                       pg_bin_dir=p['pg_bin_dir'])
        out = dict(changed=False, backup_id=result['backup_id'], target_db=result['scratch_db'],
                   action='drill', drill=result, verification=result['verification'],
                   target_sessions=[], duration_ms=result['duration_ms'])
        if not result['passed']:
            module.fail_json(msg='restore drill of backup %s failed: %s' % (
                result['backup_id'], result['error'] or result['verification']), **out)
        return out
    opts = restore.RestoreOptions(
        src=p['src'], backup_id=p['backup_id'], backup_db=p['backup_db'], target_db=p['target_db'],
        replace=p['replace'], tables=p['tables'], schemas=p['schemas'], jobs=p['jobs'],
        globals_first=p['globals_first'], analyze=p['analyze'], verify=p['verify'],
        terminate_connections=p['terminate_connections'], no_owner=p['no_owner'],
        pg_bin_dir=p['pg_bin_dir'])
    plan = restore.plan_restore(params, opts)
    diff = dict(before=dict(database=plan['target_db'],
                            state='absent' if plan['action'] == 'create' else
                            'empty' if plan['action'] == 'restore_into_empty' else 'has data'),
                after=dict(database=plan['target_db'], state='restored from %s' % plan['backup_id']))
    base = dict(changed=True, backup_id=plan['backup_id'], target_db=plan['target_db'],
                action=plan['action'], target_sessions=plan['target_sessions'])
    if module._diff:
        base['diff'] = diff
    if module.check_mode:
        return base
    result = restore.run_restore(params, plan)
    base.update(verification=result['verification'], terminated_sessions=result['terminated_sessions'],
                duration_ms=result['duration_ms'], tables=result['tables'],
                restored_tables=result['restored_tables'], skipped=result['skipped'],
                globals_restored=result['globals_restored'])
    return base


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    try:
        result = run(module)
    except DbDevopsError as e:
        module.fail_json(msg=str(e), **e.details)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
