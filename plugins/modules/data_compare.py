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
  - dbdevops.postgresql.connection.blocks
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Read-only; check mode runs the same comparison and returns the same report.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  src:
    required: true
  dst:
    required: true
  schemas:
    description:
      - Compare only tables in these schemas. Default all user schemas.
    type: list
    elements: str
    default: []
  tables:
    description:
      - Compare only these tables (C(name), C(schema.name)).
      - Names are taken as written (no case folding); double-quote a part holding a dot or a quote,
        as in C("my.schema"."My Table") (C("") is one quote). A bare C(name) matches in any schema.
    type: list
    elements: str
    default: []
  exclude_tables:
    description:
      - Tables to leave out (C(name), C(schema.name)), written as in O(tables).
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
      - Fail the task when the databases differ (the report is still returned), in check mode too.
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
checksums:
  description: Whether content checksums were compared (O(checksums)); with V(false) only row counts were.
  returned: always
  type: bool
  sample: true
duration_ms:
  description: Wall time in milliseconds.
  returned: always
  type: int
  sample: 850
'''

from ansible_collections.dbdevops.postgresql.plugins.module_utils._module import (
    block_params, connection_blocks, new_module, run)
from ansible_collections.dbdevops.postgresql.plugins.module_utils._options import from_params
from ansible_collections.dbdevops.postgresql.plugins.module_utils.datacompare import (
    DataCompareEngine, DataCompareOptions)


def main():
    module = new_module(DataCompareOptions, extra=connection_blocks(DataCompareOptions, 'src', 'dst'))
    run(module, lambda p: DataCompareEngine(block_params(p, p['src'], p['dst']),
                                            from_params(DataCompareOptions, p)))


if __name__ == '__main__':
    main()
