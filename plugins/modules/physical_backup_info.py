#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: physical_backup_info
short_description: Read pgBackRest backups, the WAL archive and the recoverable window
version_added: 0.2.0
description:
  - Reads C(pgbackrest info --output=json) of the stanza O(stanza) (with its private configuration file O(config)) -
    the backups, the WAL archive range (oldest and newest segment), and the repository status (C(status.code)).
  - Computes the recoverable window RV(recoverable) - C(earliest) is the stop time of the oldest backup
    (a restore needs a whole backup before its target); C(latest) is the time the newest archived WAL segment
    reached the repository (its file time in the repository, from C(pgbackrest repo-ls)). Transactions committed
    after that segment was closed are not in the archive, so the true bound may be earlier by the archiving
    delay (usually seconds; C(archive_timeout) bounds it on an idle server).
  - With O(archiver=true) (default) reads C(pg_stat_archiver) on the server of the connection options - last archived
    and last failed WAL segment, the failure count - and says C(archiver.status) V(failing) when the last attempt
    failed. A server that cannot be reached gives V(unreachable) and a warning, not a failure.
  - With O(verify=true) runs C(pgbackrest verify), which reads every backup file and WAL segment of the repository
    and checks them against their checksums; C(verify.corrupt_files) names the files that fail.
  - A stanza with no backup (or no stanza at all) fails the task saying so, unless O(allow_empty=true).
  - Read-only; never reports a change.
author:
  - dbdevops maintainers (@dbdevops)
extends_documentation_fragment:
  - dbdevops.postgresql.connection
  - dbdevops.postgresql.pgbackrest
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Read-only; check mode reads the same state and returns the same keys.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  verify:
    description:
      - Also run C(pgbackrest verify) (reads the whole repository; slow on large ones) and report corrupt files.
      - RV(ok) is then false when any file is corrupt.
    type: bool
    default: false
  allow_empty:
    description:
      - Return an empty answer instead of failing when the stanza does not exist or has no backup.
    type: bool
    default: false
  archiver:
    description:
      - Read C(pg_stat_archiver) on the server of the connection options. V(false) reads the repository only
        (the server may be down); C(archiver.status) is then V(not_read).
    type: bool
    default: true
notes:
  - The times are ISO 8601 in UTC.
seealso:
  - module: dbdevops.postgresql.physical_backup
  - module: dbdevops.postgresql.pitr_restore
'''

EXAMPLES = r'''
- name: Read the main stanza
  dbdevops.postgresql.physical_backup_info:
    stanza: main
    config: /etc/pgbackrest/main.conf
  register: pitr

- name: Fail when archiving fails
  ansible.builtin.assert:
    that: pitr.archiver.status == 'ok'
    fail_msg: "archiving fails since {{ pitr.archiver.last_failed_time }} ({{ pitr.archiver.last_failed_wal }})"

- name: Check every file of the repository
  dbdevops.postgresql.physical_backup_info:
    stanza: main
    verify: true
  register: verified
  failed_when: not verified.ok
'''

RETURN = r'''
stanza:
  description: The stanza read.
  returned: always
  type: str
  sample: main
status:
  description: The repository status of C(pgbackrest info) - C(code) (0 ok; 1 missing stanza path, 2 no valid
    backups, 3 missing stanza data, ...) and C(message).
  returned: always
  type: dict
  sample: {"code": 0, "message": "ok"}
backups:
  description:
    - The backups, oldest first - C(label), C(type), C(prior), C(database_bytes), C(delta_bytes), C(repo_bytes),
      C(repo_delta_bytes), C(wal_start), C(wal_stop), C(lsn_start), C(lsn_stop), C(start_time), C(stop_time),
      C(duration_seconds), C(error).
  returned: always
  type: list
  elements: dict
backup_count:
  description: How many backups there are.
  returned: always
  type: int
  sample: 2
wal_archive:
  description: The WAL archive of the current database - C(archive_id), C(min) and C(max) (oldest and newest segment).
  returned: always
  type: dict
  sample: {"archive_id": "15-1", "min": "000000010000000000000003", "max": "00000001000000000000000A"}
recoverable:
  description:
    - The window a restore can reach - C(earliest) (stop time of the oldest backup), C(latest) (time the newest
      archived segment reached the repository), C(latest_lsn) (end of the newest archived segment), C(how) (the
      same in words). Null values when there is no backup or no archived WAL.
  returned: always
  type: dict
  sample: {"earliest": "2026-11-28T10:15:04Z", "latest": "2026-11-28T11:02:13Z", "latest_lsn": "0/B000000"}
archiver:
  description:
    - C(pg_stat_archiver) - C(archived_count), C(last_archived_wal), C(last_archived_time), C(failed_count),
      C(last_failed_wal), C(last_failed_time), C(archive_mode), C(status) (V(ok) last attempt succeeded,
      V(failing) last attempt failed, V(idle) nothing archived nor failed yet, V(disabled) archive_mode off,
      V(unreachable) with C(error), V(not_read) with O(archiver=false)).
  returned: always
  type: dict
  sample: {"status": "failing", "failed_count": 14, "last_failed_wal": "000000010000000000000007",
           "last_failed_time": "2026-11-28T11:03:00Z"}
verify:
  description:
    - With O(verify=true) - C(ok), C(corrupt_files) (repository paths of the files that fail their checksum or are
      missing), C(output) (the lines of C(pgbackrest verify) that report problems). Null otherwise.
  returned: always
  type: dict
  sample: {"ok": false, "corrupt_files": ["backup/main/20261128-101500F/pg_data/base/5/1259.gz"]}
ok:
  description: There is at least one backup, the repository status is ok, archiving is not failing and (with
    O(verify)) no file is corrupt.
  returned: always
  type: bool
  sample: true
problems:
  description: Why RV(ok) is false, in words.
  returned: always
  type: list
  elements: str
'''

from ansible_collections.dbdevops.postgresql.plugins.module_utils._module import conn_params, new_module, run
from ansible_collections.dbdevops.postgresql.plugins.module_utils._options import from_params
from ansible_collections.dbdevops.postgresql.plugins.module_utils.pitr.info import PhysicalBackupInfoEngine
from ansible_collections.dbdevops.postgresql.plugins.module_utils.pitr.options import PhysicalBackupInfoOptions


def main():
    module = new_module(PhysicalBackupInfoOptions)
    run(module, lambda p: PhysicalBackupInfoEngine(conn_params(p), from_params(PhysicalBackupInfoOptions, p)))


if __name__ == '__main__':
    main()
