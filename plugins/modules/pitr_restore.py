#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: pitr_restore
short_description: Restore a pgBackRest stanza to a point in time, into a new server or in place
version_added: 0.2.0
description:
  - Restores the stanza O(stanza) to O(target_time), O(target_lsn), the restore point O(target_name), or the end of
    the archived WAL (O(latest)), with C(pgbackrest restore --type=time|lsn|name|default --target-action=promote),
    starts the restored server with C(pg_ctl) as O(os_user), waits until recovery has reached the target and the
    server is promoted (C(pg_is_in_recovery()) false; C(pg_ctl -w) returns before that), and checks it accepts writes.
  - The target is checked against the recoverable window (see M(dbdevops.postgresql.physical_backup_info)) B(before
    anything is touched) - a target before the end of the oldest backup, or after the newest archived WAL, is refused
    naming the window. (pgBackRest itself silently restores the latest backup for a time no backup precedes.)
  - The backup restored (C(--set)) is the newest one that ended before the target, unless O(backup_set) names one.
    For O(target_name) the LSN of the restore point comes from O(record_file) (written by
    M(dbdevops.postgresql.restore_point)); a name not recorded there uses the newest backup, with a warning.
  - B(Scratch restore) (default) - into O(target_data_dir), which must be missing or empty, on port O(target_port),
    listening on localhost and a Unix socket in O(target_socket_dir), logging to O(target_log_file). The restored
    server runs with C(archive_mode=off), so it never pushes WAL into the live stanza's repository. Its settings are
    given on the C(pg_ctl) command line (C(-c)), over those of the restored configuration files; O(target_settings)
    adds more. A C(postgresql.conf), C(pg_hba.conf) and C(pg_ident.conf) are written when the data directory has none
    (Debian keeps them in C(/etc/postgresql)). A file C(dbdevops_pitr_scratch.json) marks the directory as a scratch
    server this module made; only such a directory can be dropped with O(state=absent).
  - B(In place) (O(replace=true)) - stops the live server (C(pg1-path) of the config file, or the Debian cluster
    O(cluster)), moves its data directory aside, restores into an empty directory of the same path, starts it as it
    was started before, and waits for recovery and promotion. The old data directory is kept until the new server
    reached the target and accepts writes; then it is removed (unless O(keep_old_data_dir)). If anything fails,
    the new directory is removed, the old one is moved back and the server is started again as before, and the
    task fails saying so. C(pgbackrest restore) runs in a process group of its own that dies with the module, even
    when the module is killed with SIGKILL.
  - B(Interrupted in-place restore) - every step of an in-place restore is recorded first in a journal next to the
    data directory, C(<pg1-path>.pitr-inplace.json) (mode C(0600), owned like the data directory). A run killed
    with SIGKILL, or cut by a host crash, leaves it behind; the next C(pitr_restore) task for the same stanza, in
    any mode (in place, scratch, O(state=absent)), deals with it before doing what it was asked, and reports it in
    RV(interrupted_restore). When the journal says the restored server was verified (promoted, accepting writes),
    the run is completed (the old data directory removed unless O(keep_old_data_dir), the restored server started
    if it is down). Otherwise it is rolled back - a server running in the half-restored directory is stopped
    (C(pg_ctl stop -m immediate)), that directory is moved to C(<pg1-path>.pitr-failed-<stamp>) and removed, the
    original is moved back from C(<pg1-path>.pitr-old-<stamp>) and started again if it was running. In check mode
    the task reports what would be done and changes nothing. A journal that does not match the directories (the
    moved-aside original missing, for example) or whose run is still alive fails the task naming the paths and
    what to do; nothing is guessed and no data directory is removed.
  - O(state=absent) stops the scratch server in O(target_data_dir) (C(pg_ctl stop -m immediate)) and removes the
    directory. Missing already - no change.
  - A restore always reports C(changed=true); so does any run that rolled back or completed an interrupted
    in-place restore.
author:
  - dbdevops maintainers (@dbdevops)
extends_documentation_fragment:
  - dbdevops.postgresql.connection
  - dbdevops.postgresql.pgbackrest
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Reads the stanza, checks the target against the window, chooses the backup, port and directories,
      and returns the C(pgbackrest restore) command that would run; nothing is written or stopped.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  state:
    description:
      - V(present) restores; V(absent) stops and removes the scratch server in O(target_data_dir).
    type: str
    choices: [ present, absent ]
    default: present
  target_time:
    description:
      - Restore up to this time (C(--type=time)), for example V(2026-11-28 10:42:00+00). Without a time zone the
        time is UTC. Transactions committed at or after it are not restored.
    type: str
  target_lsn:
    description:
      - Restore up to this WAL position (C(--type=lsn)), for example V(0/5000100).
    type: str
  target_name:
    description:
      - Restore up to the restore point of this name (C(--type=name)), made by
        M(dbdevops.postgresql.restore_point) or C(pg_create_restore_point()).
    type: str
  latest:
    description:
      - Restore to the end of the archived WAL (C(--type=default)).
    type: bool
  target_timeline:
    description:
      - The timeline to recover along (C(--target-timeline)) - V(current) (the backup's), V(latest), or a number.
    type: str
    default: current
  backup_set:
    description:
      - The backup to restore (C(--set)), a label of RV(dbdevops.postgresql.physical_backup_info#module:backups).
        Default - the newest backup that ended before the target. A backup that ended after the target is refused.
    type: str
    aliases: [ set ]
  target_data_dir:
    description:
      - The data directory of the scratch server. Must be missing or empty (created C(0700), owned by O(os_user)).
      - Default C(pitr-<stanza>) next to the live data directory (C(pg1-path) of the config file).
      - Required with O(state=absent).
    type: path
  target_port:
    description:
      - The port of the scratch server. Default - the first free port above the live server's (C(pg1-port), 5432).
    type: int
  target_socket_dir:
    description:
      - Directory of the scratch server's Unix socket. Default O(target_data_dir), or C(/tmp) when that path is
        too long for a socket name.
    type: path
  target_log_file:
    description:
      - The scratch server's log file (C(pg_ctl -l)). Default C(<target_data_dir>/log/pitr_restore.log).
    type: path
  target_settings:
    description:
      - More server settings for the scratch server, given as C(-c name=value) at start (for example
        C(shared_buffers)). They cannot turn C(archive_mode) on.
    type: dict
    default: {}
  replace:
    description:
      - Restore in place of the live server (see the description). Needs the live data directory (C(pg1-path)).
    type: bool
    default: false
  cluster:
    description:
      - With O(replace=true), the Debian cluster (V(15/main)) to stop and start with C(pg_ctlcluster). Default - the
        data directory with C(pg_ctl), started with the options of its last start (C(postmaster.opts)).
    type: str
  log_file:
    description:
      - With O(replace=true) and no O(cluster), the server log for C(pg_ctl start -l).
        Default C(<data directory>/log/pitr_restore.log).
      - With O(cluster), where the cluster logs (its errors are quoted when the restored server fails).
        Default the C(log) link in C(/etc/postgresql/VERSION/NAME), else
        C(/var/log/postgresql/postgresql-VERSION-NAME.log).
    type: path
  keep_old_data_dir:
    description:
      - With O(replace=true), keep the old data directory (RV(old_data_dir)) after a successful restore.
    type: bool
    default: false
  recovery_timeout:
    description:
      - Seconds to wait for the restored server to reach the target and promote.
    type: int
    default: 600
  pg_bin_dir:
    description:
      - Folder holding C(pg_ctl). Default - the PostgreSQL installation matching the backup's version.
    type: path
  record_file:
    description:
      - The restore points recorded by M(dbdevops.postgresql.restore_point) (name, LSN, time), used to choose the
        backup for O(target_name) and to check it is in the window.
    type: path
    default: /var/lib/postgresql/dbdevops-restore-points.json
notes:
  - The connection options are not used to restore (the live server may be down); with O(replace=true) they are not
    needed either, the restored server is reached through its own socket.
  - Tablespaces of a scratch restore go under C(<target_data_dir>.tablespaces) (C(--tablespace-map-all)); links
    (C(pg_wal) elsewhere) are restored as directories.
seealso:
  - module: dbdevops.postgresql.physical_backup_info
  - module: dbdevops.postgresql.physical_backup
  - module: dbdevops.postgresql.restore_point
'''

EXAMPLES = r'''
- name: Restore main as it was at 10:42 into a scratch server
  dbdevops.postgresql.pitr_restore:
    stanza: main
    target_time: "2026-11-28 10:42:00+00"
    target_data_dir: /var/lib/postgresql/15/pitr-main
    target_port: 5499
  register: restored

- name: Read from it
  community.postgresql.postgresql_query:
    login_unix_socket: "{{ restored.socket_dir }}"
    login_port: "{{ restored.port }}"
    query: SELECT count(*) FROM orders

- name: Drop the scratch server
  dbdevops.postgresql.pitr_restore:
    stanza: main
    state: absent
    target_data_dir: /var/lib/postgresql/15/pitr-main

- name: Roll the live server back to a restore point
  dbdevops.postgresql.pitr_restore:
    stanza: main
    target_name: before-release-42
    replace: true
    cluster: 15/main
'''

RETURN = r'''
state:
  description: V(present) or V(absent), as asked.
  returned: always
  type: str
  sample: present
target:
  description: The target - C(type) (V(time), V(lsn), V(name), V(default)), C(value), C(timeline).
  returned: always
  type: dict
  sample: {"type": "time", "value": "2026-11-28 10:42:00+00", "timeline": "current"}
backup_set:
  description: The backup restored (null with O(state=absent)).
  returned: always
  type: str
  sample: 20261128-101500F
window:
  description: The recoverable window checked - C(earliest), C(latest), C(latest_lsn)
    (see M(dbdevops.postgresql.physical_backup_info)).
  returned: always
  type: dict
data_dir:
  description: The data directory of the restored server.
  returned: always
  type: str
  sample: /var/lib/postgresql/15/pitr-main
port:
  description: The port of the restored server (null with O(state=absent)).
  returned: always
  type: int
  sample: 5499
socket_dir:
  description: The directory of its Unix socket (null with O(state=absent)).
  returned: always
  type: str
log_file:
  description: Its server log (null with O(state=absent)); with O(cluster), the cluster's log.
  returned: always
  type: str
command:
  description: The C(pgbackrest restore) command line (or that would run), without any secret.
  returned: always
  type: str
reached:
  description:
    - Where recovery stopped - C(time) (the time in the log line C(recovery stopping before/after/at ...), else the
      last replayed commit, C(pg_last_xact_replay_timestamp())), C(lsn) (the WAL position at promotion, end of
      recovery), C(timeline) (the new timeline), C(log_line) (the recovery log line). Null in check mode.
  returned: always
  type: dict
  sample: {"time": "2026-11-28T10:41:59.871Z", "lsn": "0/9000140", "timeline": 2,
           "log_line": "recovery stopping before commit of transaction 1012, time 2026-11-28 10:42:00.103+00"}
restore_seconds:
  description: Wall time of C(pgbackrest restore).
  returned: always
  type: float
replay_seconds:
  description: From the start of the restored server until it was promoted and accepted a write.
  returned: always
  type: float
old_data_dir:
  description: With O(replace=true) and O(keep_old_data_dir=true), where the old data directory was kept; else null.
  returned: always
  type: str
interrupted_restore:
  description:
    - An in-place restore of this stanza's data directory that was killed before it ended, found by its journal and
      dealt with before this task's own work (in check mode - what would be done); null when there was none.
    - C(phase) - how far it got (V(stopping), V(stopped), V(moved-aside), V(restoring), V(started), V(verified),
      V(rolling-back)); C(stamp) - the UTC time in the names of its directories; C(action) - V(completed) (the
      restored server had been verified) or V(rolled_back) (the original data directory is back, and running if it
      was running); C(journal) - the journal file; C(old_data_dir) - where the original data directory had been
      moved (C(<pg1-path>.pitr-old-<stamp>)); C(steps) - what was done (in check mode, what would be done).
  returned: always
  type: dict
  sample: {"phase": "restoring", "stamp": "20261128T104500", "action": "rolled_back",
           "journal": "/var/lib/postgresql/15/main.pitr-inplace.json",
           "old_data_dir": "/var/lib/postgresql/15/main.pitr-old-20261128T104500",
           "steps": ["moved the original data directory back", "removed the half-restored copy",
                     "started the server again", "removed the journal /var/lib/postgresql/15/main.pitr-inplace.json"]}
'''

from ansible_collections.dbdevops.postgresql.plugins.module_utils._module import conn_params, new_module, run
from ansible_collections.dbdevops.postgresql.plugins.module_utils._options import from_params
from ansible_collections.dbdevops.postgresql.plugins.module_utils.pitr.options import PitrRestoreOptions
from ansible_collections.dbdevops.postgresql.plugins.module_utils.pitr.restore import PitrRestoreEngine


def main():
    module = new_module(PitrRestoreOptions)
    run(module, lambda p: PitrRestoreEngine(conn_params(p), from_params(PitrRestoreOptions, p)))


if __name__ == '__main__':
    main()
