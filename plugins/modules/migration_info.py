#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: migration_info
short_description: Report the migration state of a PostgreSQL database
version_added: 0.1.0
description:
  - Reads the history table written by M(dbdevops.postgresql.migrate) and the files of
    O(path) and reports applied, pending, failed attempts (RV(failed_migrations)), checksum mismatches, missing files,
    the current version, and schema drift.
  - Drift compares the live schema with the fingerprint (tables, columns, types, defaults,
    constraints, indexes, views, functions, triggers, sequences, enum types, extensions)
    recorded at the end of the last migration run, and lists the differences.
  - Never changes anything; the history table is not created when missing.
  - History tables of other migration tools (dbmate, golang-migrate, Flyway, Diesel, Rails, sqitch,
    Liquibase, ...) are listed in RV(foreign_histories); with no history of this collection, a
    warning names them and the O(dbdevops.postgresql.migrate#module:adopt_from) that imports them.
author:
  - dbdevops maintainers (@dbdevops)
extends_documentation_fragment:
  - dbdevops.postgresql.connection
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: Reads only, in check mode or not.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
options:
  path:
    description:
      - Folder on the managed host holding the migration files.
    type: path
    required: true
  placeholders:
    description:
      - Values for C(${name}) placeholders, as given to M(dbdevops.postgresql.migrate)
        (they are part of the checksums).
    type: dict
    default: {}
  secret_placeholders:
    description:
      - The O(dbdevops.postgresql.migrate#module:secret_placeholders) given to
        M(dbdevops.postgresql.migrate); their values are masked in the result.
    type: dict
    default: {}
  history_schema:
    description:
      - Schema of the history table.
    type: str
    default: public
  history_table:
    description:
      - Name of the history table, as given to M(dbdevops.postgresql.migrate).
      - When not set, C(dbdevops_schema_history), or C(schema_migrations) when only that exists with
        this collection's columns (the default before 0.2.0; a warning says how to rename it).
    type: str
  fail_on_drift:
    description:
      - Fail when the live schema differs from the recorded fingerprint.
    type: bool
    default: false
seealso:
  - module: dbdevops.postgresql.migrate
'''

EXAMPLES = r'''
- name: Migration state of app
  dbdevops.postgresql.migration_info:
    db: app
    path: /srv/app/migrations
  register: state

- name: Stop when someone changed the schema by hand
  ansible.builtin.assert:
    that: not state.drift.drifted
    fail_msg: "schema drift: {{ state.drift.summary | join(', ') }}"
'''

RETURN = r'''
changed:
  description: Always false; nothing is ever changed.
  returned: always
  type: bool
  sample: false
current_version:
  description: Highest applied version (or the baseline); null when none.
  returned: always
  type: str
  sample: "3"
applied:
  description: Applied versions with their history row.
  returned: always
  type: list
  elements: dict
  sample: [{installed_rank: 1, version: "1", description: create users, type: versioned,
            script: V1__create_users.sql, checksum: 6e88..., applied_at: "2026-01-01 00:00:00+00",
            applied_by: postgres, execution_time_ms: 3, success: true, error_message: null}]
pending:
  description: Versions in O(path) not applied yet.
  returned: always
  type: list
  elements: str
  sample: ["4", "5"]
pending_repeatables:
  description: Repeatable files new or changed since they last ran.
  returned: always
  type: list
  elements: str
  sample: [R__views.sql]
out_of_order:
  description: Pending versions older than the current version.
  returned: always
  type: list
  elements: str
  sample: []
failed_migrations:
  description:
    - Failed attempts not followed by a successful run of the same file.
    - Named so because a result key C(failed) would make Ansible fail the task.
  returned: always
  type: list
  elements: dict
  sample: [{version: "4", script: V4__x.sql, success: false, error_message: "V4__x.sql line 3: ..."}]
checksum_mismatches:
  description: Applied files whose content changed since, with both checksums.
  returned: always
  type: list
  elements: dict
  sample: [{version: "2", script: V2__x.sql, applied_checksum: ab..., file_checksum: cd...}]
missing_files:
  description: Applied versions whose file is no longer in O(path).
  returned: always
  type: list
  elements: str
  sample: []
baseline:
  description: Baseline version, when the database was baselined.
  returned: always
  type: str
  sample: null
drift:
  description:
    - Live schema against the fingerprint recorded by the last run.
    - When the last run did not finish (killed half way), what it applied is covered by no
      fingerprint; then C(checked) is false, C(unfinished) lists its scripts and the next
      M(dbdevops.postgresql.migrate) run records the fingerprint again.
  returned: always
  type: dict
  sample: {checked: true, drifted: true, since_version: "3",
           summary: ["+ index public.users_name_idx (CREATE INDEX ...)"], differences: []}
invalid_indexes:
  description:
    - INVALID indexes of the database (left by a C(CREATE INDEX CONCURRENTLY) or
      C(REINDEX CONCURRENTLY) that failed), with their table and definition; builds in
      progress are not listed. Each is a problem to fix (M(dbdevops.postgresql.migrate) with
      O(dbdevops.postgresql.migrate#module:drop_invalid_indexes) drops those its files build).
  returned: always
  type: list
  elements: dict
  sample: [{index: public.users_email_key, table: public.users,
            definition: "CREATE UNIQUE INDEX users_email_key ON public.users USING btree (email)"}]
history_table:
  description: The history table read, as C(schema.table).
  returned: always
  type: str
  sample: public.dbdevops_schema_history
foreign_histories:
  description:
    - History tables of other migration tools found in the database, with the tool, whether
      M(dbdevops.postgresql.migrate) can adopt it, its number of versions (null for golang-migrate,
      which keeps only the current one), latest version and what prevents adopting it.
  returned: always
  type: list
  elements: dict
  sample: [{tool: dbmate, table: public.schema_migrations, adoptable: true, versions: 12,
            latest: "20240101120000", problem: null}]
history_exists:
  description: Whether the history table exists.
  returned: always
  type: bool
  sample: true
history:
  description: Every row of the history table in rank order (without fingerprints).
  returned: always
  type: list
  elements: dict
  sample: []
'''

from ansible_collections.dbdevops.postgresql.plugins.module_utils._module import (
    conn_params, new_module, run)
from ansible_collections.dbdevops.postgresql.plugins.module_utils._options import from_params
from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate.engine import MigrationInfoEngine
from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate.options import MigrationInfoOptions


def main():
    module = new_module(MigrationInfoOptions)
    run(module, lambda p: MigrationInfoEngine(conn_params(p), from_params(MigrationInfoOptions, p)))


if __name__ == '__main__':
    main()
