# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The options of the PITR modules, declared once (see ``_options``).  No Ansible imports."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import dataclasses

from ansible_collections.dbdevops.postgresql.plugins.module_utils._options import option

DEFAULT_RECORD_FILE = '/var/lib/postgresql/dbdevops-restore-points.json'


@dataclasses.dataclass
class RepoOptions(object):
    """Where pgBackRest is: the stanza, its private config file, the binary and the OS user running it."""
    stanza: str = option(required=True)
    config: str = option(type='path')
    pgbackrest: str = option('pgbackrest')
    os_user: str = option('postgres')
    command_timeout: int = option(3600, type='int')


@dataclasses.dataclass
class PhysicalBackupOptions(RepoOptions):
    type: str = option('full', choices=['full', 'diff', 'incr'])
    start_fast: bool = option(True, type='bool')
    archive_check_timeout: int = option(10, type='int')
    archive_check: str = option('auto', choices=['auto', 'always'])


@dataclasses.dataclass
class PhysicalBackupInfoOptions(RepoOptions):
    verify: bool = option(False, type='bool')
    allow_empty: bool = option(False, type='bool')
    archiver: bool = option(True, type='bool')


@dataclasses.dataclass
class PitrRestoreOptions(RepoOptions):
    state: str = option('present', choices=['present', 'absent'])
    target_time: str = option()
    target_lsn: str = option()
    target_name: str = option()
    latest: bool = option(type='bool')
    target_timeline: str = option('current')
    backup_set: str = option(aliases=['set'])
    target_data_dir: str = option(type='path')
    target_port: int = option(type='int')
    target_socket_dir: str = option(type='path')
    target_log_file: str = option(type='path')
    target_settings: dict = option({}, type='dict')
    replace: bool = option(False, type='bool')
    cluster: str = option()
    log_file: str = option(type='path')
    keep_old_data_dir: bool = option(False, type='bool')
    recovery_timeout: int = option(600, type='int')
    pg_bin_dir: str = option(type='path')
    record_file: str = option(DEFAULT_RECORD_FILE, type='path')
    RULES = dict(
        mutually_exclusive=[('target_time', 'target_lsn', 'target_name', 'latest')],
        required_if=[('state', 'present', ('target_time', 'target_lsn', 'target_name', 'latest'), True),
                     ('state', 'absent', ('target_data_dir',))],
    )


@dataclasses.dataclass
class RestorePointOptions(object):
    name: str = option(required=True)
    stanza: str = option()
    record_file: str = option(DEFAULT_RECORD_FILE, type='path')
    record: bool = option(True, type='bool')
