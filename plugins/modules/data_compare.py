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
  - A row's text is built from its columns in name order, each column's text form, so the physical
    column order does not matter (an inheritance child that C(pg_dump) recreates with another column
    order compares equal) and C(NULL), the empty string and the string C('NULL') stay three different values.
    The column set itself (names and types) is compared first; a difference there is the status C(columns differ).
  - Both sides are read in one repeatable-read snapshot each, in parallel, with the same session
    settings, so that equal data gives equal text; an empty C(search_path) (C(regclass), C(regproc) and
    type names print schema-qualified), C(DateStyle), C(IntervalStyle), C(TimeZone) C(UTC),
    C(extra_float_digits) 3 (floats compare to the last digit), C(bytea_output) C(hex),
    C(lc_monetary) and C(lc_numeric) C(C).
  - C(row_security) is off, so a table with row-level security is either read whole (a superuser or a role
    with C(BYPASSRLS)) or the comparison fails naming the table; it never compares the rows a policy lets
    one role see.
  - Sequences (last value and C(is_called)) and large objects (count, ids and an C(md5) of each one's
    content) are compared too (O(sequences), O(large_objects)); materialized views on request
    (O(materialized_views)).
  - Reports tables missing on one side, with other columns, with different row counts, or with different content,
    and sequences and large objects that differ; RV(equal) is true when there is none.
  - Comparing nothing is not a verdict - when no table, sequence or large object matches the selection on either side
    the task fails naming the selection.
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
      - Compare only tables (and sequences) in these schemas. Default all user schemas.
    type: list
    elements: str
    default: []
  tables:
    description:
      - Compare only these tables (C(name), C(schema.name)).
      - Names are taken as written (no case folding); double-quote a part holding a dot or a quote,
        as in C("my.schema"."My Table") (C("") is one quote). A bare C(name) matches in any schema.
      - Sequences are selected by name in the same way, so with O(tables) set only the sequences named here are compared.
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
      - Compute content checksums. With V(false) only row counts (and large object ids) are compared (cheaper).
    type: bool
    default: true
  sequences:
    description:
      - Compare the C(last_value) and C(is_called) of every selected sequence (see O(schemas), O(tables),
        O(exclude_tables)).
    type: bool
    default: true
  large_objects:
    description:
      - Compare large objects - their count, their ids and (with O(checksums)) an C(md5) of each one's content.
      - Large objects belong to no schema or table, so O(schemas), O(tables) and O(exclude_tables) do not
        select them; set V(false) when comparing only part of a database.
    type: bool
    default: true
  materialized_views:
    description:
      - Also compare the rows of materialized views, like tables (they appear in RV(tables)). A view that is not
        populated on one side is the status C(not populated in source) or C(not populated in destination).
    type: bool
    default: false
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
    large_objects: false

- name: After a restore, everything including materialized views; fail naming what differs
  dbdevops.postgresql.data_compare:
    src: {db: app}
    dst: {db: app_restored}
    materialized_views: true
    fail_on_difference: true
'''

RETURN = r'''
equal:
  description:
    - Whether every table, sequence and large object compared matches on both sides.
    - Never true for a comparison of nothing (that fails instead).
  returned: always
  type: bool
  sample: true
differences:
  description:
    - What differs, with why. A table entry has C(table), C(status) (C(missing in source), C(missing in destination),
      C(columns differ), C(not populated in source), C(not populated in destination), C(row count differs),
      C(content differs), or with O(materialized_views) C(table in source, materialized view in destination) and the
      reverse), C(src_rows) and C(dst_rows); with C(columns differ) also C(columns) (C(only_in_source),
      C(only_in_destination), C(types_differ)).
    - A sequence entry has C(sequence), C(status) (C(value differs) or missing on a side) and the values of both
      sides as in RV(sequences).
    - A large object entry has C(large_object) (its id), C(status) (C(content differs) or missing on a side),
      C(src_md5) and C(dst_md5); at most 100 are listed (RV(large_objects) counts them all).
  returned: always
  type: list
  elements: dict
  sample: [{"table": '"public"."orders"', "status": "row count differs", "src_rows": 1200, "dst_rows": 1199},
           {"sequence": '"public"."orders_id_seq"', "status": "value differs", "src_last_value": 1200,
            "src_is_called": true, "dst_last_value": 1199, "dst_is_called": true},
           {"large_object": "16403", "status": "content differs", "src_md5": "9e10...", "dst_md5": "77ab..."}]
tables:
  description:
    - Per table (quoted C(schema.name)) the row counts, checksums and status on both sides.
    - With O(materialized_views), materialized views too.
  returned: always
  type: dict
  sample: {'"public"."orders"': {"src_rows": 1200, "dst_rows": 1200, "src_checksum": "-8812", "dst_checksum": "-8812", "status": "equal"}}
tables_compared:
  description: Number of tables (and materialized views) compared.
  returned: always
  type: int
  sample: 42
sequences:
  description: Per sequence (quoted C(schema.name)) its last value and C(is_called) on both sides, and the status.
  returned: always
  type: dict
  sample: {'"public"."orders_id_seq"': {"src_last_value": 1200, "src_is_called": true, "dst_last_value": 1200,
                                        "dst_is_called": true, "status": "equal"}}
sequences_compared:
  description: Number of sequences compared (0 with O(sequences=false)).
  returned: always
  type: int
  sample: 3
large_objects:
  description:
    - The large objects of both sides - C(compared) (O(large_objects)), C(src_count), C(dst_count), how many are
      C(missing_in_source), C(missing_in_destination) and C(content_differs), and C(status) (C(equal), C(differs),
      or C(not compared)).
  returned: always
  type: dict
  sample: {"compared": true, "src_count": 2, "dst_count": 2, "missing_in_source": 0, "missing_in_destination": 0,
           "content_differs": 0, "status": "equal"}
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
