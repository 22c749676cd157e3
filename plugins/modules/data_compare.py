#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: data_compare
short_description: Compare the data of two PostgreSQL databases table by table, without moving the data
version_added: 0.1.0
description:
  - Connects to two databases, possibly on different servers (O(src) and O(dst)), and computes on
    each server, per table, the exact row count and an order-independent content checksum (the
    sum over all rows of a 64-bit slice of C(md5) of the row's text). Only these two numbers per
    table travel over the network.
  - Both sides are read in one repeatable-read snapshot each, in parallel, with the same session
    settings (C(DateStyle), C(TimeZone), C(extra_float_digits), ...) so that equal data gives
    equal text.
  - Reports tables missing on one side, with different row counts, or with different content; RV(equal)
    is true when there is none.
  - Typical use is the check after a migration to another server, or after a restore.
  - The top-level connection options are the defaults of both O(src) and O(dst); what a block
    sets wins.
  - Read-only; never reports a change.
author:
  - dbdevops maintainers (@dbdevops)
extends_documentation_fragment:
  - dbdevops.postgresql.connection
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  src:
    description:
      - Connection to the source database.
      - Every suboption not given here takes the value of the top-level option of the same name,
        so two databases on one server need only O(src.db) and O(dst.db).
    type: dict
    required: true
    suboptions:
      login_user:
        description:
          - The role to log in as. Default O(login_user).
        type: str
      login_password:
        description:
          - The password of the block's login user. Default O(login_password).
          - It reaches libpq through a C(0600) passfile, never a command line or a log.
        type: str
      login_host:
        description:
          - Host running the database. Default O(login_host) (empty means the local Unix socket).
        type: str
      login_unix_socket:
        description:
          - Directory of the Unix domain socket. Default O(login_unix_socket).
        type: str
      login_port:
        description:
          - Database port. Default O(login_port).
        type: int
        aliases: [ port ]
      db:
        description:
          - Name of the database. Default O(db) (empty means C(postgres)).
        type: str
        aliases: [ login_db ]
      ssl_mode:
        description:
          - libpq C(sslmode). Default O(ssl_mode).
        type: str
        choices: [ allow, disable, prefer, require, verify-ca, verify-full ]
      ca_cert:
        description:
          - File with the certificate authorities that signed the server certificate. Default O(ca_cert).
        type: str
        aliases: [ ssl_rootcert ]
      ssl_cert:
        description:
          - Client SSL certificate file. Default O(ssl_cert).
        type: path
      ssl_key:
        description:
          - Client SSL private key file. Default O(ssl_key).
        type: path
      connect_params:
        description:
          - Further libpq connection parameters. Default O(connect_params).
        type: dict
  dst:
    description:
      - Connection to the destination database; same suboptions and defaults as O(src).
    type: dict
    required: true
    suboptions:
      login_user:
        description:
          - The role to log in as. Default O(login_user).
        type: str
      login_password:
        description:
          - The password of the block's login user. Default O(login_password).
          - It reaches libpq through a C(0600) passfile, never a command line or a log.
        type: str
      login_host:
        description:
          - Host running the database. Default O(login_host) (empty means the local Unix socket).
        type: str
      login_unix_socket:
        description:
          - Directory of the Unix domain socket. Default O(login_unix_socket).
        type: str
      login_port:
        description:
          - Database port. Default O(login_port).
        type: int
        aliases: [ port ]
      db:
        description:
          - Name of the database. Default O(db) (empty means C(postgres)).
        type: str
        aliases: [ login_db ]
      ssl_mode:
        description:
          - libpq C(sslmode). Default O(ssl_mode).
        type: str
        choices: [ allow, disable, prefer, require, verify-ca, verify-full ]
      ca_cert:
        description:
          - File with the certificate authorities that signed the server certificate. Default O(ca_cert).
        type: str
        aliases: [ ssl_rootcert ]
      ssl_cert:
        description:
          - Client SSL certificate file. Default O(ssl_cert).
        type: path
      ssl_key:
        description:
          - Client SSL private key file. Default O(ssl_key).
        type: path
      connect_params:
        description:
          - Further libpq connection parameters. Default O(connect_params).
        type: dict
  schemas:
    description:
      - Compare only tables in these schemas. Default all user schemas.
    type: list
    elements: str
    default: []
  tables:
    description:
      - Compare only these tables (C(name), C(schema.name)).
    type: list
    elements: str
    default: []
  exclude_tables:
    description:
      - Tables to leave out (C(name), C(schema.name)).
    type: list
    elements: str
    default: []
  checksums:
    description:
      - Compute content checksums. With V(false) only row counts are compared (cheaper).
    type: bool
    default: true
  fail_on_difference:
    description:
      - Fail the task when the databases differ (the report is still returned).
    type: bool
    default: false
seealso:
  - module: dbdevops.postgresql.restore
'''

EXAMPLES = r'''
- name: Check a migrated database against the original
  dbdevops.postgresql.data_compare:
    src:
      login_host: old-db.example.com
      login_user: postgres
      login_password: "{{ old_password }}"
      db: shop
    dst:
      login_host: new-db.example.com
      login_user: postgres
      login_password: "{{ new_password }}"
      db: shop
    fail_on_difference: true
  register: compare

- name: Only row counts of one schema, two databases on the same server
  dbdevops.postgresql.data_compare:
    login_host: db1.example.com
    login_password: "{{ vault_postgres_password }}"
    src: {db: app}
    dst: {db: app_restored}
    schemas: [public]
    checksums: false
'''

RETURN = r'''
equal:
  description: Whether every table matches on both sides.
  returned: always
  type: bool
  sample: true
differences:
  description: Tables that differ, with why.
  returned: always
  type: list
  elements: dict
  sample: [{"table": '"public"."orders"', "status": "row count differs", "src_rows": 1200, "dst_rows": 1199}]
tables:
  description: Per table (quoted C(schema.name)) the row counts, checksums and status on both sides.
  returned: always
  type: dict
  sample: {'"public"."orders"': {"src_rows": 1200, "dst_rows": 1200, "src_checksum": "-8812", "dst_checksum": "-8812", "status": "equal"}}
tables_compared:
  description: Number of tables compared.
  returned: always
  type: int
  sample: 42
duration_ms:
  description: Wall time in milliseconds.
  returned: always
  type: int
  sample: 850
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.dbdevops.postgresql.plugins.module_utils.connection import (
    ConnParams, connection_argument_spec)
from ansible_collections.dbdevops.postgresql.plugins.module_utils.errors import DbDevopsError
from ansible_collections.dbdevops.postgresql.plugins.module_utils import datacompare


def _block_spec():
    """The connection options without defaults: unset ones fall back to the top level."""
    spec = connection_argument_spec()
    for option in spec.values():
        option.pop('default', None)
    return spec


def argument_spec():
    spec = connection_argument_spec()
    spec.update(
        src=dict(type='dict', required=True, options=_block_spec()),
        dst=dict(type='dict', required=True, options=_block_spec()),
        schemas=dict(type='list', elements='str', default=[]),
        tables=dict(type='list', elements='str', default=[]),
        exclude_tables=dict(type='list', elements='str', default=[]),
        checksums=dict(type='bool', default=True),
        fail_on_difference=dict(type='bool', default=False),
    )
    return spec


def side_params(params, block):
    """Connection of one side: the block's options over the top-level ones."""
    merged = dict((field, params.get(field)) for field in ConnParams.FIELDS)
    merged.update((field, value) for field, value in (block or {}).items()
                  if field in ConnParams.FIELDS and value is not None)
    return ConnParams.from_params(merged)


def run(module):
    p = module.params
    src = side_params(p, p['src'])
    dst = side_params(p, p['dst'])
    report = datacompare.compare(src, dst, schemas=p['schemas'], tables=p['tables'],
                                 exclude_tables=p['exclude_tables'], checksums=p['checksums'])
    report['changed'] = False
    return report


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    try:
        result = run(module)
    except DbDevopsError as e:
        module.fail_json(msg=str(e), **e.details)
    if module.params['fail_on_difference'] and not result['equal']:
        module.fail_json(msg='the databases differ in %d table(s): %s' % (
            len(result['differences']), ', '.join('%s (%s)' % (d['table'], d['status'])
                                                  for d in result['differences'][:20])), **result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
