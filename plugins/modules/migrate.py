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
      - Name of the history table; created on first use.
    type: str
    default: schema_migrations
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
    type: bool
    default: false
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
  sample: [{rule: create-index-not-concurrently, script: V3__idx.sql, line: 1,
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
