#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: schema_diff
short_description: Compare two PostgreSQL schemas and write a sync script
version_added: 0.1.0
description:
  - Fingerprints the source database (the connection options) and the target database
    (the C(target_*) options, defaulting to the source's) with the same catalog code as
    drift detection, lists the differences, and writes SQL that turns the target schema
    into the source schema.
  - The script is for review, not for blind use; a rename shows up as a drop plus a create.
  - Reads both databases only; the only change it makes is writing O(dest).
author:
  - dbdevops maintainers (@dbdevops)
extends_documentation_fragment:
  - dbdevops.postgresql.connection
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: Computes everything, does not write O(dest).
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
    details: Shows the old and new content of O(dest).
options:
  target_db:
    description:
      - Database to compare with the source database O(db).
    type: str
    required: true
  target_login_host:
    description:
      - Host of the target database. Default is O(login_host).
    type: str
  target_login_port:
    description:
      - Port of the target database. Default is O(login_port).
    type: int
  target_login_user:
    description:
      - Role for the target database. Default is O(login_user).
    type: str
  target_login_password:
    description:
      - Password for the target database. Default is O(login_password).
    type: str
  target_login_unix_socket:
    description:
      - Unix socket directory for the target database. Default is O(login_unix_socket).
    type: str
  dest:
    description:
      - File to write the sync script to. Nothing is written when unset.
    type: path
  exclude_tables:
    description:
      - Tables left out of the comparison, as C(schema.table) (for example the migration history).
    type: list
    elements: str
    default: [public.schema_migrations]
seealso:
  - module: dbdevops.postgresql.migration_info
'''

EXAMPLES = r'''
- name: What differs between staging and production, as SQL for production
  dbdevops.postgresql.schema_diff:
    db: app_staging
    target_db: app
    dest: /tmp/sync-app.sql
  register: schema_diff
'''

RETURN = r'''
identical:
  description: Whether both schemas have the same fingerprint.
  returned: always
  type: bool
  sample: false
differences:
  description: What the target lacks, has extra, or has differently, relative to the source.
  returned: always
  type: list
  elements: dict
  sample: [{change: added, object: index public.users_email_idx, detail: CREATE INDEX ...}]
summary:
  description: The differences as one line each.
  returned: always
  type: list
  elements: str
  sample: ["+ index public.users_email_idx (CREATE INDEX users_email_idx ON public.users ...)"]
sync_script:
  description: SQL turning the target schema into the source schema.
  returned: always
  type: str
  sample: "BEGIN;\nCREATE INDEX users_email_idx ON public.users USING btree (email);\nCOMMIT;\n"
source_fingerprint:
  description: SHA-256 digest of the source fingerprint.
  returned: always
  type: str
  sample: 3f1c...
target_fingerprint:
  description: SHA-256 digest of the target fingerprint.
  returned: always
  type: str
  sample: 9ab2...
'''

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.dbdevops.postgresql.plugins.module_utils.connection import (
    ConnParams, connect, connection_argument_spec)
from ansible_collections.dbdevops.postgresql.plugins.module_utils.errors import DbDevopsError
from ansible_collections.dbdevops.postgresql.plugins.module_utils import fingerprint


def argument_spec():
    spec = connection_argument_spec()
    spec.update(
        target_db=dict(type='str', required=True),
        target_login_host=dict(type='str'),
        target_login_port=dict(type='int'),
        target_login_user=dict(type='str'),
        target_login_password=dict(type='str', no_log=True),
        target_login_unix_socket=dict(type='str'),
        dest=dict(type='path'),
        exclude_tables=dict(type='list', elements='str', default=['public.schema_migrations']),
    )
    return spec


def target_params(source, params):
    changes = dict(db=params['target_db'])
    for field in ('login_host', 'login_port', 'login_user', 'login_password', 'login_unix_socket'):
        if params.get('target_' + field) is not None:
            changes[field] = params['target_' + field]
    return source.replace(**changes)


def take(params, exclude):
    conn = connect(params, autocommit=True, application_name='dbdevops-schema-diff')
    try:
        return fingerprint.take(conn, exclude_tables=exclude)
    finally:
        conn.close()


def compare(params):
    source = ConnParams.from_params(params)
    target = target_params(source, params)
    exclude = []
    for item in params['exclude_tables']:
        schema, _dot, table = item.rpartition('.')
        exclude.append((schema or 'public', table))
    src_fp, dst_fp = take(source, exclude), take(target, exclude)
    diffs = fingerprint.compare(dst_fp, src_fp)
    script, _has = fingerprint.sync_script(dst_fp, src_fp)
    return dict(identical=not diffs, differences=diffs, summary=fingerprint.format_differences(diffs, 500),
                sync_script=script, source_fingerprint=fingerprint.digest(src_fp),
                target_fingerprint=fingerprint.digest(dst_fp))


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    try:
        result = compare(module.params)
    except DbDevopsError as e:
        module.fail_json(msg=str(e), **e.details)
    changed = False
    dest = module.params['dest']
    if dest:
        old = None
        if os.path.exists(dest):
            with open(dest) as handle:
                old = handle.read()
        changed = old != result['sync_script']
        if changed and module._diff:
            result['diff'] = dict(before=old or '', after=result['sync_script'],
                                  before_header=dest, after_header=dest)
        if changed and not module.check_mode:
            tmp = dest + '.tmp'
            with open(tmp, 'w') as handle:
                handle.write(result['sync_script'])
            module.atomic_move(tmp, dest)
    module.exit_json(changed=changed, **result)


if __name__ == '__main__':
    main()
