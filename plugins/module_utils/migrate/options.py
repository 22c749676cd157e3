# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The options of migrate, migration_info and migration_new, each declared once.

The modules' argument specs come from these dataclasses (``_options``); the
engines read the same instances.  ``__post_init__`` normalises what a caller
may leave empty (``target: latest``, an empty ``lock_timeout``) so the
engines see one spelling.  No Ansible imports.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import dataclasses

from ansible_collections.dbdevops.postgresql.plugins.module_utils._options import option

# The history table's name when history_table is not given.  Before 0.2.0 it was
# schema_migrations, the name dbmate, golang-migrate and Rails use too; a table of
# that name with this collection's columns is still used when the new one is absent
# (history.resolve_table).
DEFAULT_HISTORY_TABLE = 'dbdevops_schema_history'
LEGACY_HISTORY_TABLE = 'schema_migrations'
ADOPT_FROM = ['auto', 'dbmate', 'golang-migrate', 'flyway', 'diesel']


@dataclasses.dataclass
class MigrateOptions(object):
    """Everything the migrate engine needs besides the connection."""

    path: str = option(type='path', required=True)
    target: str = option()
    allow_downgrade: bool = option(False, type='bool')
    placeholders: dict = option({}, type='dict')
    secret_placeholders: dict = option({}, type='dict', no_log=True)
    lock_timeout: str = option('5s')
    lock_retries: int = option(3, type='int')
    statement_timeout: str = option()
    lock_wait: int = option(300, type='int')
    history_schema: str = option('public')
    history_table: str = option()
    adopt_from: str = option(choices=ADOPT_FROM)
    adopt_table: str = option()
    out_of_order: bool = option(False, type='bool')
    baseline_version: str = option()
    repair: bool = option(False, type='bool')
    lint: bool = option(True, type='bool')
    fail_on_lint: bool = option(False, type='bool')
    lint_rules: dict = option({}, type='dict')
    drop_invalid_indexes: bool = option(False, type='bool')
    verify_rollback: bool = option(False, type='bool')
    verify_template: str = option()
    verify_setup: str = option(type='path')
    applied_by: str = option()
    record_fingerprint: bool = option(True, type='bool', module=False)

    RULES = dict(mutually_exclusive=[('adopt_from', 'baseline_version')],
                 required_by=dict(adopt_table=['adopt_from']))

    def __post_init__(self):
        self.target = None if self.target in (None, '', 'latest') else str(self.target)
        self.allow_downgrade = bool(self.allow_downgrade)
        self.placeholders = dict(self.placeholders or {})
        self.secret_placeholders = dict(self.secret_placeholders or {})
        self.lock_timeout = self.lock_timeout or None
        self.lock_retries = int(self.lock_retries or 0)
        self.statement_timeout = self.statement_timeout or None
        self.lock_wait = float(self.lock_wait if self.lock_wait is not None else 300)
        self.history_schema = self.history_schema or 'public'
        self.history_table_given = bool(self.history_table)
        self.history_table = self.history_table or DEFAULT_HISTORY_TABLE
        self.adopt_from = self.adopt_from or None
        self.adopt_table = self.adopt_table or None
        self.baseline_version = (str(self.baseline_version)
                                 if self.baseline_version not in (None, '') else None)
        for name in ('out_of_order', 'repair', 'lint', 'fail_on_lint', 'drop_invalid_indexes',
                     'verify_rollback', 'record_fingerprint'):
            setattr(self, name, bool(getattr(self, name)))


@dataclasses.dataclass
class MigrationInfoOptions(object):
    """What migration_info reads: the files (with their placeholders) and the history table."""

    path: str = option(type='path', required=True)
    placeholders: dict = option({}, type='dict')
    secret_placeholders: dict = option({}, type='dict', no_log=True)
    history_schema: str = option('public')
    history_table: str = option()
    fail_on_drift: bool = option(False, type='bool')

    def __post_init__(self):
        self.placeholders = dict(self.placeholders or {})
        self.secret_placeholders = dict(self.secret_placeholders or {})
        self.history_schema = self.history_schema or 'public'
        self.history_table_given = bool(self.history_table)
        self.history_table = self.history_table or DEFAULT_HISTORY_TABLE
        self.fail_on_drift = bool(self.fail_on_drift)


@dataclasses.dataclass
class MigrationNewOptions(object):
    """A new migration and its undo file from a template."""

    path: str = option(type='path', required=True)
    description: str = option(required=True)
    version: str = option()
    style: str = option('flyway', choices=['flyway', 'pair', 'folder'])
    template_dir: str = option(type='path')
