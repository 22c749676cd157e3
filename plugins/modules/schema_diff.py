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
  - Fingerprints the source database O(src) (the desired schema) and the destination database
    O(dst) (the database to bring in line) with the same catalog code as drift detection, lists
    the differences, and writes SQL that turns the destination schema into the source schema.
  - The top-level connection options are the defaults of both O(src) and O(dst); what a block
    sets wins. Without O(src) the source is the top-level connection.
  - The comparison covers the whole schema, that is schemas, tables, columns (with statistics targets,
    storage, compression, column grants), constraints, indexes, views, functions and procedures,
    triggers, rules, row-level security and policies, extended statistics, sequences (options,
    C(OWNED BY)), enum, composite, domain and range types, comments, owners, grants and default
    privileges, storage parameters, replica identity, publications and extensions. Owners and
    grantees are compared by role name.
  - Function bodies in SQL and PL/pgSQL are compared without whitespace between tokens (string
    literals and comments keep theirs); a long value that differs comes with a unified diff.
  - The script is for review, not for blind use; a rename shows up as a drop plus a create.
  - Reads both databases only; the only change it makes is writing O(dest).
author:
  - dbdevops maintainers (@dbdevops)
extends_documentation_fragment:
  - dbdevops.postgresql.connection
  - dbdevops.postgresql.connection.blocks
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
  src:
    description:
      - Connection to the source database, the one with the desired schema.
      - Every suboption not given here takes the value of the top-level option of the same name,
        so two databases on one server need only O(src.db) (or the top-level O(db)) and O(dst.db).
  dst:
    description:
      - Connection to the destination database, the one the sync script is for; same suboptions
        and defaults as O(src).
      - Required unless the deprecated O(target_db) is given; cannot be combined with the
        deprecated C(target_*) options.
  dest:
    description:
      - File to write the sync script to. Nothing is written when unset.
      - Written atomically (a temporary file in the same directory, then a rename).
    type: path
  exclude_tables:
    description:
      - Tables left out of the comparison with everything on them, as C(schema.table) or
        C(table) (for example the migration history).
      - A bare C(table) matches that table in any schema. Names are taken as written (no case
        folding); double-quote a part holding a dot or a quote, as in C("my.schema"."My Table").
      - The default leaves out the migration history table of M(dbdevops.postgresql.migrate), under
        its name since 0.2.0 and its older name.
    type: list
    elements: str
    default: [public.dbdevops_schema_history, public.schema_migrations]
  target_db:
    description:
      - Deprecated, use O(dst.db); removed in version 2.0.0 (see the notes).
      - Database to compare with the source database; mapped onto O(dst), like the other C(target_*) options
        mapped onto the O(dst) suboption of the same name (each defaults to the top-level option).
    type: str
  target_login_host: {type: str, description: 'Deprecated, use O(dst.login_host); removed in version 2.0.0.'}
  target_login_port: {type: int, description: 'Deprecated, use O(dst.login_port); removed in version 2.0.0.'}
  target_login_user: {type: str, description: 'Deprecated, use O(dst.login_user); removed in version 2.0.0.'}
  target_login_password: {type: str, description: 'Deprecated, use O(dst.login_password); removed in version 2.0.0.'}
  target_login_unix_socket: {type: str, description: 'Deprecated, use O(dst.login_unix_socket); removed in version 2.0.0.'}
notes:
  - The flat options O(target_db), O(target_login_host), O(target_login_port), O(target_login_user),
    O(target_login_password) and O(target_login_unix_socket) are deprecated and will be removed in
    version 2.0.0 of dbdevops.postgresql; they are mapped onto O(dst) and give a deprecation
    warning. Write O(dst) instead.
seealso:
  - module: dbdevops.postgresql.migration_info
  - module: dbdevops.postgresql.data_compare
'''

EXAMPLES = r'''
- name: What differs between staging and production, as SQL for production
  dbdevops.postgresql.schema_diff:
    src: {db: app_staging}
    dst: {db: app}
    dest: /tmp/sync-app.sql
  register: schema_diff

- name: Two servers; the top-level options are the defaults of both blocks
  dbdevops.postgresql.schema_diff:
    login_user: postgres
    login_password: "{{ vault_postgres_password }}"
    dest: /tmp/sync-prod.sql
    exclude_tables: [public.dbdevops_schema_history, audit_log]
    src: {login_host: staging-db.example.com, db: app}
    dst: {login_host: prod-db.example.com, db: app}
'''

RETURN = r'''
identical:
  description:
    - Whether both schemas have the same fingerprint.
    - Objects of O(exclude_tables) are not part of either fingerprint.
  returned: always
  type: bool
  sample: false
differences:
  description:
    - What the destination lacks (C(added)), has extra (C(removed)), or has differently (C(changed)),
      relative to the source; C(detail) names each changed attribute with its old and new value.
    - C(diff), when present, is a unified diff (list of lines) of the long values that differ
      (a function or view definition), from the destination to the source, never cut.
  returned: always
  type: list
  elements: dict
  sample: [{change: added, object: index public.users_email_idx, detail: CREATE INDEX ...},
           {change: changed, object: table public.users, detail: "acl: +reporting: SELECT; rls: false -> true"}]
summary:
  description:
    - The differences as one text each (at most 500, then a count of the rest); a difference with
      a unified diff has it on the following lines, indented, at most 300 diff lines in all
      (then C(... N more lines)).
  returned: always
  type: list
  elements: str
  sample: ["+ index public.users_email_idx (CREATE INDEX users_email_idx ON public.users ...)",
           "~ column public.users.email (comment: null -> login address)"]
sync_script:
  description: SQL turning the destination schema into the source schema.
  returned: always
  type: str
  sample: "BEGIN;\nCREATE INDEX users_email_idx ON public.users USING btree (email);\nCOMMIT;\n"
source_fingerprint:
  description: SHA-256 digest of the source (O(src)) fingerprint.
  returned: always
  type: str
  sample: 3f1c...
target_fingerprint:
  description: SHA-256 digest of the destination (O(dst)) fingerprint.
  returned: always
  type: str
  sample: 9ab2...
diff:
  description: The old and new content of O(dest), when it changes (or would, in check mode).
  returned: changed and diff mode
  type: dict
  sample: {"before": "", "after": "BEGIN;\n...", "before_header": "/tmp/sync.sql", "after_header": "/tmp/sync.sql"}
'''

from ansible_collections.dbdevops.postgresql.plugins.module_utils._module import (
    block_params, connection_blocks, new_module, run)
from ansible_collections.dbdevops.postgresql.plugins.module_utils._options import from_params
from ansible_collections.dbdevops.postgresql.plugins.module_utils.schemadiff import (
    SchemaDiffEngine, SchemaDiffOptions)


def engine(params):
    options = from_params(SchemaDiffOptions, params)
    return SchemaDiffEngine(block_params(params, params['src'], options.dst_block()), options)


def main():
    module = new_module(SchemaDiffOptions, extra=connection_blocks(SchemaDiffOptions, 'src', 'dst'))
    run(module, engine)


if __name__ == '__main__':
    main()
