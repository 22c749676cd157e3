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
  - Read-only; never reports a change.
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
  src:
    description:
      - Connection to the source database, with the same options as the other modules of this collection.
    type: dict
    required: true
    suboptions:
      login_user:
        description:
        - The role this module logs in as.
        - Defaults to the E(PGUSER) environment variable, else C(postgres).
        type: str
        default: postgres
      login_password:
        description:
        - The password of C(login_user).
        - It reaches libpq and client programs (C(pg_dump) and friends) through a C(0600) passfile, never through
          a command line or a log.
        type: str
        default: ''
      login_host:
        description:
        - Host running the database. Empty means the local Unix socket.
        type: str
        default: ''
      login_unix_socket:
        description:
        - Directory of the Unix domain socket for local connections.
        type: str
        default: ''
      login_port:
        description:
        - Database port to connect to.
        type: int
        default: 5432
        aliases:
        - port
      db:
        description:
        - Name of the database to connect to.
        - Empty means C(postgres).
        type: str
        default: ''
        aliases:
        - login_db
      ssl_mode:
        description:
        - Whether and with what priority an SSL connection is negotiated, as libpq's C(sslmode).
        type: str
        default: prefer
        choices:
        - allow
        - disable
        - prefer
        - require
        - verify-ca
        - verify-full
      ca_cert:
        description:
        - File with the certificate authorities that signed the server certificate.
        type: str
        aliases:
        - ssl_rootcert
      ssl_cert:
        description:
        - Client SSL certificate file.
        type: path
      ssl_key:
        description:
        - Client SSL private key file.
        type: path
      connect_params:
        description:
        - Further libpq connection parameters; they take precedence.
        type: dict
        default: {}
  dst:
    description:
      - Connection to the destination database; same suboptions as O(src).
    type: dict
    required: true
    suboptions:
      login_user:
        description:
        - The role this module logs in as.
        - Defaults to the E(PGUSER) environment variable, else C(postgres).
        type: str
        default: postgres
      login_password:
        description:
        - The password of C(login_user).
        - It reaches libpq and client programs (C(pg_dump) and friends) through a C(0600) passfile, never through
          a command line or a log.
        type: str
        default: ''
      login_host:
        description:
        - Host running the database. Empty means the local Unix socket.
        type: str
        default: ''
      login_unix_socket:
        description:
        - Directory of the Unix domain socket for local connections.
        type: str
        default: ''
      login_port:
        description:
        - Database port to connect to.
        type: int
        default: 5432
        aliases:
        - port
      db:
        description:
        - Name of the database to connect to.
        - Empty means C(postgres).
        type: str
        default: ''
        aliases:
        - login_db
      ssl_mode:
        description:
        - Whether and with what priority an SSL connection is negotiated, as libpq's C(sslmode).
        type: str
        default: prefer
        choices:
        - allow
        - disable
        - prefer
        - require
        - verify-ca
        - verify-full
      ca_cert:
        description:
        - File with the certificate authorities that signed the server certificate.
        type: str
        aliases:
        - ssl_rootcert
      ssl_cert:
        description:
        - Client SSL certificate file.
        type: path
      ssl_key:
        description:
        - Client SSL private key file.
        type: path
      connect_params:
        description:
        - Further libpq connection parameters; they take precedence.
        type: dict
        default: {}
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
requirements:
  - psycopg2 >= 2.8 on the managed host (Debian package C(python3-psycopg2)).
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

- name: Only row counts of one schema, on the same server
  dbdevops.postgresql.data_compare:
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


def argument_spec():
    return dict(
        src=dict(type='dict', required=True, options=connection_argument_spec()),
        dst=dict(type='dict', required=True, options=connection_argument_spec()),
        schemas=dict(type='list', elements='str', default=[]),
        tables=dict(type='list', elements='str', default=[]),
        exclude_tables=dict(type='list', elements='str', default=[]),
        checksums=dict(type='bool', default=True),
        fail_on_difference=dict(type='bool', default=False),
    )


def run(module):
    p = module.params
    src = ConnParams.from_params(p['src'])
    dst = ConnParams.from_params(p['dst'])
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
