#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: migrate
short_description: Apply versioned SQL migrations to a PostgreSQL database
version_added: 0.1.0
description:
  - Applies the migration files of a folder in version order, each in its own
    transaction together with its history row, so a crash leaves all of a
    migration or none of it.
  - File names are C(V<version>__<description>.sql) with optional undo
    C(U<version>__<description>.sql), repeatable C(R__<description>.sql), or the
    pair convention C(<version>_<name>.up.sql) / C(.down.sql). A misnamed C(.sql)
    file or two files for one version is an error naming the files.
  - dbmate files, C(<version>_<name>.sql) with a C(-- migrate:up) and optionally a
    C(-- migrate:down) section, are read as they are (each section is a file of its own, with
    the line numbers of the file; C(transaction:false) after a marker runs it outside a transaction).
  - A folder per migration, C(<version>_<name>/up.sql) with optional C(down.sql) (Diesel,
    Sourcegraph) or C(migration.sql) (Prisma), is read as well; Diesel's C(2019-01-01-000000)
    is version C(20190101000000), as Diesel records it, and a C(metadata.toml) with
    C(run_in_transaction = false) (or a C(metadata.yaml) with C(createIndexConcurrently) true)
    runs the file outside a transaction. One folder uses one layout; flat versioned files next to
    migration folders are an error naming one of each (C(R__) files may stay).
  - The history table is C(dbdevops_schema_history) unless O(history_table) is given. A database
    migrated by an earlier release keeps its history in C(schema_migrations) (the old default,
    recognised by its columns) with a warning saying how to rename it.
  - History tables of other tools (dbmate, golang-migrate, Flyway, Diesel, Rails, sqitch,
    Liquibase, Alembic, goose, Prisma, ...) are recognised and named in the refusal to run on a
    database with objects and no history; O(adopt_from) imports the versions dbmate,
    golang-migrate, Flyway or Diesel applied, so a team can switch in one run.
  - A file whose text contains the line C(-- dbdevops:transaction=off) runs
    outside a transaction, one statement per round trip (for
    C(CREATE INDEX CONCURRENTLY)); a failure names the statement and which ones ran.
    Any other file must not contain C(BEGIN), C(COMMIT), C(ROLLBACK) or C(END) (savepoints are fine);
    such a file is refused at plan time, naming file and line.
  - Repeatable files run after the versioned ones when new or changed, and again on the first
    upgrade after a downgrade; never in a run that undoes versions.
  - A failing migration is reported with its file, line and statement; the history keeps the
    failed attempt and the database stays at the last good version.
  - Checksums (SHA-256 of the file with line endings, trailing whitespace and
    leading/trailing blank lines normalised, placeholders substituted) of applied
    files are validated before anything runs.
  - Concurrent runs against one database serialize on an advisory lock held on a
    separate idle connection; the others wait up to O(lock_wait) seconds and then
    find nothing pending.
  - Safety lint of the planned files (needs C(pglast)) is reported as warnings.
  - The run checks that it still holds its lock before each statement of a non-transactional
    file and inside each migration's transaction before its C(COMMIT); a lost lock (its
    session terminated) stops the run with nothing further applied.
  - Each file starts from a clean session (C(RESET ALL), then the module's own settings), so
    a C(SET search_path) in one file does not carry over into the next.
  - A O(target) that no file nor the history has is refused naming the nearest versions;
    C(target=0) (or a target below the first version) undoes everything.
author:
  - dbdevops maintainers (@dbdevops)
extends_documentation_fragment:
  - dbdevops.postgresql.connection
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: Returns the exact plan and SQL; creates nothing, not even the history table.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
    details: Shows the version and the SQL to run before and after.
options:
  path:
    description:
      - Folder on the managed host holding the migration files (not searched recursively).
    type: path
    required: true
  target:
    description:
      - Version to migrate to. Default is the latest version in O(path).
      - V(latest) means the same. V(0) with O(allow_downgrade) undoes everything.
    type: str
  allow_downgrade:
    description:
      - Allow a O(target) below the current version; undo files then run newest first.
      - Every needed undo file must exist, else nothing runs.
    type: bool
    default: false
  placeholders:
    description:
      - Values for C(${name}) placeholders in the files. They are part of the checksum.
    type: dict
    default: {}
  secret_placeholders:
    description:
      - Values for C(${name}) placeholders that are secrets (passwords, tokens). They are
        substituted in what runs, as written (put quotes around them in the file), but
        shown as C(********) everywhere else - C(plan), C(queries), C(diff), error
        messages and the history table - and they are not part of the checksum, so a new
        value is not a changed file. A name given in both wins here.
      - The server may still log the statements (C(log_statement)); keep that in mind.
    type: dict
    default: {}
  lock_timeout:
    description:
      - PostgreSQL C(lock_timeout) for the migration session, so a statement waiting for a
        lock does not queue every query behind it. Empty turns it off.
      - On C(lock_not_available) (SQLSTATE 55P03) the migration is retried O(lock_retries) times
        with exponential back-off.
    type: str
    default: 5s
  lock_retries:
    description:
      - How many times a migration (or, outside a transaction, a statement) is retried after a lock timeout.
    type: int
    default: 3
  statement_timeout:
    description:
      - PostgreSQL C(statement_timeout) for the migration session. Unset means no limit.
    type: str
  lock_wait:
    description:
      - Seconds to wait for another migration run holding the migration lock before failing.
    type: int
    default: 300
  history_schema:
    description:
      - Schema of the history table; created if missing.
    type: str
    default: public
  history_table:
    description:
      - Name of the history table; created on first use. Used as given when set.
      - When not set, C(dbdevops_schema_history); but when that table does not exist and
        C(schema_migrations) with this collection's columns does (made by a release before 0.2.0,
        whose default it was), C(schema_migrations) is used, with a warning naming the
        C(ALTER TABLE ... RENAME) that moves it to the new name.
      - C(schema_migrations) is also the table of dbmate, golang-migrate and Rails; pointing this
        option at another tool's history is an error naming the tool (see O(adopt_from)).
    type: str
  adopt_from:
    description:
      - Import another tool's history into this collection's history when the latter does not
        exist yet, in the transaction that creates it; then newer files run in the same run.
      - V(dbmate) (C(schema_migrations(version))), V(golang-migrate)
        (C(schema_migrations(version, dirty)); every file up to its version counts as applied),
        V(flyway) (C(flyway_schema_history); baselines, undos and repeatables included),
        V(diesel) (C(__diesel_schema_migrations)), or V(auto) for the one such table found (none
        found is not an error).
      - Applied versions are matched to the local files by version and recorded with this
        collection's checksums of those files (Flyway's CRC-32 checksums are compared and
        differences reported as warnings). Applied versions without a local file are recorded as
        applied without a checksum and never run; local files newer than the other history run.
      - A dirty golang-migrate history or a Flyway history with failed migrations is refused.
      - Once the history exists nothing is imported again; a pending version that the other
        tool's history says it applied since is refused rather than run twice.
      - Check mode reports the import in RV(adopt) and writes nothing.
    type: str
    choices: [auto, dbmate, golang-migrate, flyway, diesel]
    version_added: 0.2.0
  adopt_table:
    description:
      - The other tool's history table as C(table) or C(schema.table), when it is not found by its
        default name (dbmate C(--migrations-table), Flyway C(table), golang-migrate
        C(x-migrations-table)). Its columns must be those of O(adopt_from).
    type: str
    version_added: 0.2.0
  out_of_order:
    description:
      - Apply pending versions older than the current version. Without it they are an error listing them.
    type: bool
    default: false
  baseline_version:
    description:
      - Mark an existing database, with no applied migrations, as being at this version;
        versions up to it are never run.
      - A database that has objects but no history table (a dropped history, or a misspelled
        O(history_schema) / O(history_table)) is refused unless this is set, so that nothing
        runs twice; C(0) applies every migration on top of what is there.
    type: str
  repair:
    description:
      - Accept the current checksum of applied files that changed since; records a C(repair)
        history row with who and when.
    type: bool
    default: false
  lint:
    description:
      - Lint the planned files for unsafe operations (needs C(pglast) on the managed host).
    type: bool
    default: true
  fail_on_lint:
    description:
      - Treat lint findings as errors; nothing runs when there is one.
    type: bool
    default: false
  lint_rules:
    description:
      - Turn lint rules on or off for this project, a mapping of a rule id (or the category
        C(safety) or C(style)) to true or false, for example C(drop-column=false) and C(style=true)
        turn off C(drop-column) and turn on every opt-in style rule.
      - Applied over the defaults and over C(dbdevops-lint.json) in O(path); a file can still
        silence rules for itself with C(-- dbdevops:lint-ignore=rule,rule).
      - The rules, their defaults and examples are in C(docs/lint-rules.md); an unknown rule id is
        an error.
    type: dict
    default: {}
    version_added: 0.2.0
  drop_invalid_indexes:
    description:
      - Before running a non-transactional file, drop INVALID indexes it builds with
        C(CREATE INDEX CONCURRENTLY) (left by an earlier failed build).
      - Without it, a statement of a non-transactional file after which an index it builds
        is INVALID (for example C(CREATE INDEX CONCURRENTLY IF NOT EXISTS) skipping the
        half-built index of an earlier attempt) fails the migration, naming the index.
    type: bool
    default: false
  verify_rollback:
    description:
      - Before applying, prove on a scratch database (created and dropped on the same server;
        needs C(CREATEDB)) that each undo file restores the schema fingerprint it had before,
        and that re-applying gives the same schema again. Fails naming the first migration that does not.
      - Also done in check mode, since it does not touch O(db).
      - The comparison covers the whole schema fingerprint (comments, grants, row-level security
        and policies, storage parameters, statistics targets, ownership, replica identity, types,
        domains and the rest); a long definition that differs is shown as a unified diff.
    type: bool
    default: false
  verify_template:
    description:
      - Database copied as the scratch database of O(verify_rollback) (C(CREATE DATABASE ... TEMPLATE)),
        for extensions and objects the migrations expect but do not create. Default C(template0).
      - Nobody may be connected to it while the copy is made, and it must not hold the history table.
    type: str
    version_added: 0.2.0
  verify_setup:
    description:
      - SQL file run in the scratch database of O(verify_rollback) before the first migration
        (after the copy of O(verify_template)), for example C(CREATE EXTENSION) statements.
    type: path
    version_added: 0.2.0
  applied_by:
    description:
      - Text recorded in the C(applied_by) history column. Default is the login user with the OS user and host.
    type: str
notes:
  - A failed task also returns C(file), C(line), C(statement) and C(sqlstate) of the failure, and for a
    file run outside a transaction C(statements_ran) and C(invalid_indexes).
  - The history table records every attempt (C(success=false) rows for failures) with
    rank, version, description, type, script, checksum, time, user, duration, error and,
    on the last row of a run, the schema fingerprint used by drift detection.
seealso:
  - module: dbdevops.postgresql.migration_info
  - module: dbdevops.postgresql.schema_diff
  - module: dbdevops.postgresql.migration_new
'''

EXAMPLES = r'''
- name: Show what would run (pull request job)
  dbdevops.postgresql.migrate:
    db: app
    path: /srv/app/migrations
  check_mode: true
  diff: true
  register: plan

- name: Apply every pending migration
  dbdevops.postgresql.migrate:
    db: app
    login_host: db1.example.com
    login_password: "{{ vault_pg_password }}"
    path: /srv/app/migrations
    placeholders:
      app_role: app_rw
    lock_timeout: 3s

- name: Switch from dbmate in one run (import its history, then apply newer files)
  dbdevops.postgresql.migrate:
    db: app
    path: /srv/app/migrations
    adopt_from: dbmate

- name: Roll back to version 20240101120000
  dbdevops.postgresql.migrate:
    db: app
    path: /srv/app/migrations
    target: "20240101120000"
    allow_downgrade: true
'''

RETURN = r'''
changed:
  description: Whether any migration ran (or would run, in check mode).
  returned: always
  type: bool
  sample: true
applied:
  description:
    - What ran, in the order it ran, with direction and duration. Empty in check mode.
    - When the task fails, the ones that ran before the failure (they stay applied).
  returned: always
  type: list
  elements: dict
  contains:
    version:
      description: Version of the migration; null for a repeatable.
      type: str
    description:
      description: Description from the file name.
      type: str
    script:
      description: File name.
      type: str
    kind:
      description: C(versioned), C(undo), C(repeatable), C(baseline) or C(repair).
      type: str
    direction:
      description: C(up), C(down) (an undo file), or C(none) (baseline, repair).
      type: str
    ms:
      description: Duration in milliseconds.
      type: int
  sample: [{version: "2", description: add users, script: V2__add_users.sql, kind: versioned,
            direction: up, ms: 12}]
current_version:
  description: Version of the database after the run (before it, in check mode); null when none.
  returned: always
  type: str
  sample: "2"
starting_version:
  description: Version before the run.
  returned: always
  type: str
  sample: "1"
target_version:
  description: The version aimed at.
  returned: always
  type: str
  sample: "2"
pending:
  description: Versions in O(path) not applied when the module finished (in check mode, not applied now).
  returned: always
  type: list
  elements: str
  sample: ["3"]
lint:
  description:
    - Lint findings of the planned files.
    - Each is also in the standard C(warnings) of the task, with the other warnings of the plan
      (applied versions whose file is missing, INVALID indexes).
  returned: always
  type: list
  elements: dict
  sample: [{rule: create-index-not-concurrently, severity: warning, script: V3__idx.sql, line: 1,
            message: CREATE INDEX without CONCURRENTLY ..., statement: CREATE INDEX ...}]
plan:
  description: The plan, with every step and the exact SQL.
  returned: always
  type: dict
  sample: {current_version: "1", target_version: "2", steps: [], sql: "-- up V2__x.sql\n..."}
queries:
  description: The SQL of the plan as one text per step.
  returned: always
  type: list
  elements: str
  sample: ["CREATE TABLE t (id int);"]
verify_rollback:
  description:
    - Result of O(verify_rollback) (checked versions, files with no undo, first failure).
    - Also in check mode, since it does not touch O(db).
  returned: when O(verify_rollback=true)
  type: dict
  sample: {verified: true, checked: ["1", "2"], not_reversible: [], failure: null}
adopt:
  description:
    - What O(adopt_from) imported (in check mode, would import); null when nothing was imported.
    - C(imported) versions with a local file, C(without_file) versions recorded without one,
      C(baseline), C(repeatables) (Flyway repeatables whose file is what Flyway last ran),
      C(newer) local versions above the other history (they run in this run),
      C(not_applied_older) local versions below its latest that it never applied (pending out of
      order), C(checksum_differences) (for Flyway, files changed since Flyway applied them), C(rows).
  returned: always
  type: dict
  sample: {tool: dbmate, table: public.schema_migrations, history_table: public.dbdevops_schema_history,
           imported: ["20240101000001"], without_file: [], baseline: null, repeatables: [],
           newer: ["20240101000003"], not_applied_older: [], checksum_differences: [], rows: 1}
history_table:
  description: The history table used, as C(schema.table).
  returned: always
  type: str
  sample: public.dbdevops_schema_history
history_created:
  description:
    - Whether this run created the history table (it is created on first use, even when
      nothing is pending).
    - In check mode, whether a run would create it; check mode creates nothing.
  returned: always
  type: bool
  sample: false
lock_wait_s:
  description:
    - Seconds this run waited for the migration lock held by another run (see O(lock_wait)).
    - V(0.0) in check mode, which takes no lock.
  returned: always
  type: float
  sample: 0.012
'''

from ansible_collections.dbdevops.postgresql.plugins.module_utils._module import (
    conn_params, new_module, run)
from ansible_collections.dbdevops.postgresql.plugins.module_utils._options import from_params
from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate.engine import MigrateEngine
from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate.options import MigrateOptions


def main():
    module = new_module(MigrateOptions)
    run(module, lambda p: MigrateEngine(conn_params(p), from_params(MigrateOptions, p)))


if __name__ == '__main__':
    main()
