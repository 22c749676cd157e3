#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
---
module: migration_new
short_description: Scaffold a new migration and its undo file from a template
version_added: 0.1.0
description:
  - Writes C(V<version>__<description>.sql) and C(U<version>__<description>.sql) (or the
    C(.up.sql)/C(.down.sql) pair, or a folder C(<version>_<name>/) with C(up.sql) and C(down.sql))
    into O(path), with a UTC timestamp version by default.
  - A style of the other layout than the folder already uses (flat files or folders per
    migration) is refused, since M(dbdevops.postgresql.migrate) does not read a folder mixing them.
  - The built-in templates are the collection's C(templates/migration/up.sql) and C(undo.sql);
    O(template_dir) takes your own.
  - Idempotent on the description; a migration with the same description already in
    O(path) means C(changed=false) and its files are returned.
author:
  - dbdevops maintainers (@dbdevops)
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: Returns the file names and content, writes nothing.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
options:
  path:
    description:
      - Migrations folder; it must exist.
    type: path
    required: true
  description:
    description:
      - What the migration does; becomes the file name (lower case, words joined by C(_)).
    type: str
    required: true
  version:
    description:
      - Version to use instead of the current UTC time as C(YYYYMMDDHHMMSS).
    type: str
  style:
    description:
      - C(flyway) writes C(V)/C(U) files, C(pair) writes C(.up.sql)/C(.down.sql), C(folder)
        writes C(<version>_<name>/up.sql) and C(down.sql) (Diesel and Sourcegraph layout).
    type: str
    default: flyway
    choices: [flyway, pair, folder]
  template_dir:
    description:
      - Folder with C(up.sql) and C(undo.sql) templates; C({description}), C({version}) and
        C({created}) are replaced.
    type: path
'''

EXAMPLES = r'''
- name: New migration adding a column
  dbdevops.postgresql.migration_new:
    path: "{{ playbook_dir }}/migrations"
    description: add users last_login
  delegate_to: localhost
'''

RETURN = r'''
changed:
  description: Whether the files are new (would be written, in check mode); false when a migration
    with the same description is already in O(path).
  returned: always
  type: bool
  sample: true
version:
  description: Version of the new (or already existing) migration.
  returned: always
  type: str
  sample: "20260101120000"
files:
  description: Paths of the migration and its undo file (with content, when new).
  returned: always
  type: list
  elements: dict
  sample: [{path: migrations/V20260101120000__add_users_last_login.sql, content: "-- add users last_login\n"}]
'''

from ansible_collections.dbdevops.postgresql.plugins.module_utils._module import new_module, run
from ansible_collections.dbdevops.postgresql.plugins.module_utils._options import from_params
from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate.engine import MigrationNewEngine
from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate.options import MigrationNewOptions


def main():
    module = new_module(MigrationNewOptions, connection=False)
    run(module, lambda p: MigrationNewEngine(from_params(MigrationNewOptions, p)))


if __name__ == '__main__':
    main()
