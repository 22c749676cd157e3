#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: physical_backup
short_description: Take a pgBackRest physical backup now, only when WAL archiving works
version_added: 0.2.0
description:
  - Runs C(pgbackrest backup --type=full|diff|incr --start-fast) for the stanza O(stanza) with its private
    configuration file O(config), as the data directory's owner O(os_user), and returns the new backup as
    C(pgbackrest info --output=json) describes it after the run.
  - A backup without the WAL written during it cannot be restored. Before backing up, the module reads
    C(pg_stat_archiver) on the server of the connection options and runs C(pgbackrest check) with a short
    C(--archive-timeout) (O(archive_check_timeout)); when archiving fails it refuses, naming the last failed
    WAL file and pgBackRest's message, within seconds rather than after pgBackRest's default 60 s wait.
  - A backup always reports C(changed=true).
author:
  - dbdevops maintainers (@dbdevops)
extends_documentation_fragment:
  - dbdevops.postgresql.connection
  - dbdevops.postgresql.pgbackrest
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Reads C(pg_stat_archiver) and C(pgbackrest info) and fails as a real run would when archiving fails;
      it does not run C(pgbackrest check) (it switches WAL) nor the backup. RV(backup) is null.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  type:
    description:
      - V(full) copies everything; V(diff) what changed since the last full backup; V(incr) since the last backup.
      - pgBackRest takes a full backup instead of a V(diff) or V(incr) when there is none to build on (C(backup.type) says).
    type: str
    choices: [ full, diff, incr ]
    default: full
  start_fast:
    description:
      - Force a checkpoint at the start (C(--start-fast)) instead of waiting for the next scheduled one.
    type: bool
    default: true
  archive_check_timeout:
    description:
      - Seconds C(pgbackrest check) waits for the WAL segment it switches to reach the repository
        (C(--archive-timeout)) before the backup is refused.
    type: int
    default: 10
  archive_check:
    description:
      - V(auto) - run C(pgbackrest check) before the backup unless C(pg_stat_archiver) already shows this
        stanza's archiving at work - C(archive_command) is C(pgbackrest --config=<config> --stanza=<stanza>
        archive-push ...), it has archived since the statistics were reset and has not failed since. The check
        (a WAL switch and a wait until that segment is in the repository) costs about a second; the backup
        itself still waits until its own WAL is archived, so it never ends without the WAL it needs.
      - V(always) - always run the check first.
    type: str
    choices: [auto, always]
    default: auto
notes:
  - The server must run on this host (pgBackRest reads its data directory, C(pg1-path) of the config file).
  - The connection options reach the server for C(pg_stat_archiver); C(pgbackrest) itself connects as its config says.
    When the config file names no C(pg1-socket-path) (or C(pg1-port)), the socket directory of O(login_unix_socket)
    or O(login_host) (and O(login_port) when not 5432) are passed as C(--pg1-socket-path) (C(--pg1-port)).
seealso:
  - module: dbdevops.postgresql.physical_backup_info
  - module: dbdevops.postgresql.pitr_restore
  - module: dbdevops.postgresql.restore_point
'''

EXAMPLES = r'''
- name: Nightly full backup of the main stanza
  dbdevops.postgresql.physical_backup:
    stanza: main
    config: /etc/pgbackrest/main.conf
    login_unix_socket: /var/run/postgresql
  register: pb

- name: Show it
  ansible.builtin.debug:
    msg: "{{ pb.backup.label }}: {{ pb.backup.database_bytes }} bytes in {{ pb.backup.duration_seconds }} s"

- name: Incremental backup
  dbdevops.postgresql.physical_backup:
    stanza: main
    type: incr
'''

RETURN = r'''
backup:
  description:
    - The backup taken, from C(pgbackrest info --output=json) after the run (null in check mode).
    - C(label), C(type) (what pgBackRest really took), C(prior) (the backup it builds on, or null),
      C(database_bytes) (size of the database), C(delta_bytes) (what this backup copied),
      C(repo_bytes) and C(repo_delta_bytes) (in the repository, compressed), C(wal_start) and C(wal_stop)
      (first and last WAL segment it needs), C(lsn_start), C(lsn_stop), C(start_time) and C(stop_time)
      (ISO 8601 UTC), C(duration_seconds) (stop minus start), C(error) (pgBackRest found page checksum errors).
  returned: always
  type: dict
  sample: {"label": "20261128-101500F", "type": "full", "prior": null, "database_bytes": 31457280,
           "delta_bytes": 31457280, "repo_bytes": 4194304, "repo_delta_bytes": 4194304,
           "wal_start": "000000010000000000000005", "wal_stop": "000000010000000000000005",
           "lsn_start": "0/5000028", "lsn_stop": "0/5000100", "start_time": "2026-11-28T10:15:00Z",
           "stop_time": "2026-11-28T10:15:04Z", "duration_seconds": 4, "error": false}
archiver:
  description:
    - C(pg_stat_archiver) before the backup - C(archived_count), C(last_archived_wal), C(last_archived_time),
      C(failed_count), C(last_failed_wal), C(last_failed_time), C(archive_mode), C(status)
      (V(ok), V(failing), or V(idle) when nothing was archived nor failed yet).
  returned: always
  type: dict
  sample: {"status": "ok", "archived_count": 12, "last_archived_wal": "000000010000000000000004",
           "failed_count": 0, "last_failed_wal": null}
archive_check:
  description:
    - V(passed) - C(pgbackrest check) ran and passed.
    - V(archiver) - with O(archive_check=auto), not run because C(pg_stat_archiver) showed this stanza's
      C(archive-push) at work (see O(archive_check)).
    - V(skipped) - check mode.
  returned: always
  type: str
  sample: passed
command:
  description: The C(pgbackrest) command line run (or that would run), as the OS user, without any secret.
  returned: always
  type: str
  sample: runuser -u postgres -- pgbackrest --config=/etc/pgbackrest/main.conf --stanza=main backup --type=full --start-fast
duration_seconds:
  description: Wall time of the C(pgbackrest backup) command (0 in check mode).
  returned: always
  type: float
  sample: 4.2
'''

from ansible_collections.dbdevops.postgresql.plugins.module_utils._module import conn_params, new_module, run
from ansible_collections.dbdevops.postgresql.plugins.module_utils._options import from_params
from ansible_collections.dbdevops.postgresql.plugins.module_utils.pitr.backup import PhysicalBackupEngine
from ansible_collections.dbdevops.postgresql.plugins.module_utils.pitr.options import PhysicalBackupOptions


def main():
    module = new_module(PhysicalBackupOptions)
    run(module, lambda p: PhysicalBackupEngine(conn_params(p), from_params(PhysicalBackupOptions, p)))


if __name__ == '__main__':
    main()
