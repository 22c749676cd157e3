#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: failover_drill
short_description: Switch or fail a PostgreSQL primary over to its standby and measure RTO and RPO
version_added: 0.2.0
description:
  - Runs a switchover (planned) or a failover (unplanned) of a primary to its streaming standby while a probe
    writer commits numbered rows, and reports what was measured - RTO, the time from the fault to the promotion,
    the acknowledged writes lost (count and ids) and the WAL gap, and the timelines before and after.
  - Runs on the host of both servers - it stops, kills, starts and rewinds them locally, and connects to each
    through O(primary) and O(standby). Each server is named by its data directory (O(primary_data_dir),
    O(standby_data_dir); default the server's own C(data_directory)), controlled with C(pg_ctl) (a start reuses
    the options of the last start, C(postmaster.opts)), or by a Debian cluster (O(primary_cluster),
    O(standby_cluster), controlled with C(pg_ctlcluster)). Run as root, C(pg_ctl), C(pg_controldata) and
    C(pg_rewind) run as the owner of the data directory; otherwise the task must run as that owner
    (C(become_user=postgres)).
  - Pre-checks first - both nodes answer, exactly one primary (two primaries are refused loudly), the standby
    streams from it on the same timeline, its replay is not paused and is at most O(max_lag_bytes) behind,
    both servers can be controlled from here, O(probe_db) exists, and for a rejoin C(wal_log_hints) or data
    checksums and C(full_page_writes). A failed pre-check refuses the drill saying why, and nothing is touched.
    Check mode runs the pre-checks and returns the planned steps.
  - The probe writer uses its own connection (short connect timeout) and table (O(probe_table), created and emptied
    in O(probe_db)); it commits a numbered row every O(probe_interval_ms) and records which were acknowledged and
    when. It only ever writes to the node the drill calls the primary - it stops at the fault, and resumes on the new
    primary once its promotion is confirmed.
  - V(switchover) - stop the writes, C(CHECKPOINT), stop the primary (fast), wait until the standby has replayed
    the primary's shutdown checkpoint, promote; no acknowledged write may be lost.
  - V(failover) - the primary is stopped in C(immediate) mode (O(fault=stop_immediate)) or its postmaster is killed
    with SIGKILL (O(fault=kill)); the drill waits until its backends are gone and the standby has replayed what it
    received, then promotes it.
  - Before promoting, the old primary must be down (C(pg_ctl status) and connection refused); the promotion is
    C(pg_promote(wait => true)), and a false or failed answer is confirmed with C(pg_is_in_recovery()). Two primaries
    found at any point fail the task loudly.
  - With O(rejoin), the old primary is rewound (C(CHECKPOINT) on the new primary, then C(pg_rewind --source-server),
    the password through an in-memory passfile, never argv), keeps its own configuration files, gets
    C(standby.signal) and a C(primary_conninfo) pointing at the new primary, is started and must stream. With
    O(failback), a switchover back to the original roles follows and the original standby is rejoined in the same way.
    The probe table (and O(compare_tables)) are then compared between the two nodes with the collection's
    data comparison (M(dbdevops.postgresql.data_compare)).
  - A step that fails ends the drill with the state reached (which node is primary, which is down) and the commands
    to recover, in RV(recovery) and the message.
  - O(report_path) writes a self-contained HTML report (inline SVG timeline, no external files).
  - A run that changes something keeps a journal in O(state_dir) (one 0600 JSON file per pair of nodes, written
    atomically at every phase - started, fault, fault-injected, promoting, promoted, rejoining, rejoined - and
    removed when the run ends with one primary). If the process running a drill is killed (kill -9) half-way, the
    next C(failover_drill) run on the same nodes, in any mode, first puts things right - when no node is primary
    and the standby was not promoted, it starts the old primary again (it holds every transaction it committed) and
    waits until the standby streams from it; when the standby was already promoted, it keeps it and reports that the
    old primary needs a rejoin (O(mode=rejoin)). It reports what it found and did in RV(interrupted_drill), then
    carries on. A state it cannot decide on (two primaries, neither node answering, an old primary that is not
    intact) fails the task naming what to look at, and the journal stays. Check mode reports and changes nothing.
  - Across hosts, O(fault=partition) (with O(mode=failover)) controls neither server - it runs wherever it
    reaches both (the standby's host or a controller), cuts the primary off with O(fault_command) (a program
    and its arguments run here, for example C(ip link set eth1 down) or a firewall rule) or, without it, waits
    up to O(fault_wait_seconds) for an outside fault that the probe writer notices. It then requires every
    connection attempt to the old primary to fail for O(fence_confirm_seconds), lets the standby replay what it
    received, promotes it over SQL and measures RTO and RPO as always. The old primary is isolated, not stopped
    (RV(old_primary_state=isolated)) - it still runs and the task warns to fence it before its network returns.
    O(rejoin) and O(failback) are refused with this fault, and the data directory options are not needed.
  - O(mode=rejoin) runs on the old primary's host after a failover, with the same blocks as the drill -
    O(primary) is the old primary (on this host, O(primary_data_dir) or O(primary_cluster)), O(standby) the node
    that was promoted. It refuses, touching nothing, unless O(standby) is a primary on a newer timeline of the same
    cluster and pg_rewind can work. If the old primary still runs (a partition healed before it was fenced) it is
    stopped first (fast, then immediate); then C(CHECKPOINT) on the new primary, C(pg_rewind), C(standby.signal)
    and O(rejoin_primary_conninfo), start, and it must stream on the new timeline; the probe table is compared
    when there is one. A node that already streams from the new primary on its timeline is left alone
    (C(changed=false)).
author:
  - dbdevops maintainers (@dbdevops)
extends_documentation_fragment:
  - dbdevops.postgresql.connection
  - dbdevops.postgresql.connection.pair
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Check mode runs the pre-checks and returns the planned steps, with the same keys as a real run.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  mode:
    description:
      - V(switchover) (planned, no loss allowed) or V(failover) (the primary fails, see O(fault)).
      - V(rejoin) - on the old primary's host, after a failover, fence it if it runs, rewind it
        and make it a streaming standby of the promoted node (O(standby)).
    type: str
    choices: [switchover, failover, rejoin]
    default: switchover
  fault:
    description:
      - How the primary fails in V(failover) mode - C(pg_ctl stop -m immediate), SIGKILL of the postmaster, or
        V(partition) - the primary is cut off the network (O(fault_command)) and is not stopped.
      - Ignored in modes V(switchover) and V(rejoin), except that V(partition) requires V(failover).
    type: str
    choices: [stop_immediate, kill, partition]
    default: stop_immediate
  fault_command:
    description:
      - With O(fault=partition), the program and its arguments (no shell) that cut the primary off, run on this
        host at the fault; it must exit 0.
      - Unset - the drill waits up to O(fault_wait_seconds) for an outside fault (the probe writer fails to write).
    type: list
    elements: str
  fault_wait_seconds:
    description: With O(fault=partition) and no O(fault_command), seconds to wait for the primary to become unreachable.
    type: float
    default: 60.0
  fence_confirm_seconds:
    description:
      - With O(fault=partition), seconds during which every connection attempt to the old primary (2 s connect
        timeout each, at least one) must fail before the standby is promoted.
    type: float
    default: 3.0
  primary_data_dir:
    description: Data directory of the primary on this host. Default the server's C(data_directory).
    type: path
  primary_cluster:
    description: The primary as a Debian cluster, C(VERSION/NAME) (C(15/main)), controlled with C(pg_ctlcluster).
    type: str
  primary_log_file:
    description:
      - Server log file for a C(pg_ctl) start of the primary (after a rejoin or a failback).
      - Default C(<data_dir>/log/dbdevops-failover-drill.log).
    type: path
  standby_data_dir:
    description: Data directory of the standby on this host. Default the server's C(data_directory).
    type: path
  standby_cluster:
    description: The standby as a Debian cluster, C(VERSION/NAME).
    type: str
  standby_log_file:
    description: As O(primary_log_file), for the standby.
    type: path
  pg_bin_dir:
    description: Where C(pg_ctl), C(pg_controldata) and C(pg_rewind) are. Default those of the server's major version.
    type: path
  max_lag_bytes:
    description: Refuse the drill when the standby replays more than this many bytes behind the primary.
    type: int
    default: 16777216
  probe_db:
    description: Database of the probe table.
    type: str
    default: postgres
  probe_table:
    description: The probe table (created if missing, emptied at the start of every drill).
    type: str
    default: dbdevops_drill_probe
  probe_interval_ms:
    description: Milliseconds between two probe writes.
    type: int
    default: 50
  warmup_seconds:
    description: Seconds of probe writes on the primary before the fault.
    type: float
    default: 1.0
  promote_timeout:
    description: Seconds to wait for the promotion, and then for the first write on the new primary.
    type: int
    default: 60
  catchup_timeout:
    description: Seconds to wait for a standby to replay (switchover) or to stream (rejoin).
    type: int
    default: 60
  rejoin:
    description: Rewind the old primary and start it as a standby of the new primary.
    type: bool
    default: false
  failback:
    description:
      - After the rejoin, switch over back to the original roles and rejoin the original standby (implies O(rejoin)).
    type: bool
    default: false
  rejoin_primary_conninfo:
    description:
      - C(primary_conninfo) of the old primary once it rejoins (O(rejoin), O(failback), O(mode=rejoin)).
      - Default the standby's own C(primary_conninfo) (its authentication settings) with C(host) and C(port) of
        O(standby) (in O(mode=rejoin) without C(application_name), so the old primary's C(cluster_name) names it).
        A failback gives the original standby its own C(primary_conninfo) back.
      - Across hosts, the default names the standby's passfile, which is on the standby's host; give the old
        primary's own, for example C(host=db2 port=5432 user=replicator passfile=/etc/postgresql/15/main/rejoin.pgpass).
    type: str
  sync_standby_names_after_promotion:
    description:
      - With synchronous replication and two nodes, the new primary's commits wait for a synchronous standby
        that is not there until the old primary rejoins. Set this (for example to an empty string) to change
        C(synchronous_standby_names) on the new primary right after its promotion (ALTER SYSTEM and reload);
        the previous value is set back once a standby streams from it again.
      - Unset - the new primary keeps its setting.
    type: str
  compare_tables:
    description: Tables of O(probe_db) compared, besides the probe table, after a rejoin.
    type: list
    elements: str
    default: []
  max_lost_writes:
    description:
      - Acknowledged writes that may be lost for the drill to pass. Default 0 for a switchover, no limit for a failover.
    type: int
  max_rto_seconds:
    description: The drill fails when the RTO is above this.
    type: float
  report_path:
    description: Write the HTML report here (also when the drill fails).
    type: path
  fail_on_verdict:
    description: Fail the task when the drill did not pass (the result is still returned).
    type: bool
    default: true
  state_dir:
    description:
      - Where the journal of a run is kept (created 0700), so that the next run finds a drill that was killed
        half-way and puts a primary back. The file is C(drill-<key>.json), the key made of both nodes' host:port.
      - On the host where the drill runs; use the same O(state_dir) for every run on a pair.
      - Default C(~/.dbdevops/failover-drill) of the user the module runs as (its home from the password database),
        a folder no other user can have made first; a drill run as another user keeps its journal elsewhere.
    type: path
notes:
  - The drill really stops and promotes servers. Run it against a pair meant for drills, or in a maintenance window.
  - Only a primary with one standby is drilled; other standbys of the primary are not repointed.
  - With O(fault=partition) the drill only knows that the old primary is unreachable from where it runs; clients
    elsewhere may still reach it. Fence it before its network returns (docs/failover-drills.md).
  - The login roles must be superusers (C(pg_promote), C(CHECKPOINT), C(pg_rewind) from the new primary, and reading
    C(primary_conninfo)).
seealso:
  - module: dbdevops.postgresql.replication_info
  - module: dbdevops.postgresql.data_compare
'''

EXAMPLES = r'''
- name: Switch over and back, with an HTML report
  dbdevops.postgresql.failover_drill:
    login_unix_socket: /var/run/postgresql
    primary: {login_port: 5432}
    standby: {login_port: 5433}
    primary_cluster: 15/main
    standby_cluster: 15/replica
    failback: true
    report_path: /var/lib/postgresql/drills/switchover.html
  become: true
  become_user: postgres

- name: Kill -9 the primary under synchronous replication; no acknowledged write may be lost
  dbdevops.postgresql.failover_drill:
    primary: {login_unix_socket: /run/pg1, login_port: 5432}
    standby: {login_unix_socket: /run/pg2, login_port: 5433}
    primary_data_dir: /srv/pg1
    standby_data_dir: /srv/pg2
    mode: failover
    fault: kill
    max_lost_writes: 0
    sync_standby_names_after_promotion: ""
    rejoin: true
  register: drill

- name: Across hosts - cut the primary's link from the controller and promote the standby over SQL
  dbdevops.postgresql.failover_drill:
    login_user: postgres
    login_password: "{{ vault_postgres_password }}"
    primary: {login_host: 10.0.0.11}
    standby: {login_host: 10.0.0.12}
    mode: failover
    fault: partition
    fault_command: [ip, link, set, veth-db1, down]
  delegate_to: localhost

- name: Then, on the old primary's host - fence it, rewind it, make it a standby of the new primary
  dbdevops.postgresql.failover_drill:
    login_user: postgres
    login_password: "{{ vault_postgres_password }}"
    primary: {login_host: 10.0.0.11}
    standby: {login_host: 10.0.0.12}
    mode: rejoin
    primary_cluster: 15/main
    rejoin_primary_conninfo: host=10.0.0.12 port=5432 user=replicator passfile=/etc/postgresql/15/main/rejoin.pgpass
'''

RETURN = r'''
mode:
  description: The mode drilled (O(mode)).
  returned: always
  type: str
  sample: failover
fault:
  description: The fault of a failover (O(fault)); null for a switchover.
  returned: always
  type: str
  sample: kill
passed:
  description:
    - Whether the drill passed - it measured an RTO and an RPO, found no two primaries, lost no more than allowed,
      and the data check (after a rejoin) found the nodes equal.
  returned: always
  type: bool
  sample: true
verdict:
  description: C(passed), C(failed), C(interrupted) (a step failed), or C(planned) in check mode.
  returned: always
  type: str
  sample: passed
verdict_reasons:
  description: Why the drill did not pass (empty when it passed).
  returned: always
  type: list
  elements: str
  sample: ["3 acknowledged write(s) lost (allowed: 0): ids [812, 813, 814]"]
primary_before:
  description: The primary at the start (name and address).
  returned: always
  type: str
  sample: "primary (/var/run/postgresql:5432)"
primary_after:
  description: The node that is primary at the end (null in check mode, or when none or two are).
  returned: always
  type: str
  sample: "standby (/var/run/postgresql:5433)"
rto_seconds:
  description: Seconds from the last acknowledged write on the old primary to the first acknowledged write on the new one.
  returned: always
  type: float
  sample: 0.41
promotion_seconds:
  description: Seconds from the fault (stopping or killing the primary) to the standby confirmed out of recovery.
  returned: always
  type: float
  sample: 0.29
rpo_writes_lost:
  description: Writes the old primary acknowledged that the new primary does not hold.
  returned: always
  type: int
  sample: 0
lost_ids:
  description: The ids of those writes in the probe table.
  returned: always
  type: list
  elements: int
  sample: []
rpo_lsn_bytes:
  description:
    - Bytes of WAL between the last LSN the old primary was known to have flushed and what the standby had replayed
      at its promotion (0 when it had all of it).
  returned: always
  type: int
  sample: 0
timeline_before:
  description: Timeline of the primary before the drill.
  returned: always
  type: int
  sample: 1
timeline_after:
  description: Timeline of the new primary after its promotion.
  returned: always
  type: int
  sample: 2
writes_acknowledged:
  description: Probe writes acknowledged during the drill (all nodes).
  returned: always
  type: int
  sample: 57
writes_failed:
  description: Probe write attempts that failed (the fault makes some).
  returned: always
  type: int
  sample: 3
two_primaries:
  description: Whether two nodes were found accepting writes at once (the task fails when true).
  returned: always
  type: bool
  sample: false
steps:
  description:
    - The steps, each with C(step), C(started_at) (UTC), C(offset_seconds) (from the drill's start), C(duration_seconds),
      C(ok) and C(detail). In check mode, the planned steps (C(step), C(planned)).
  returned: always
  type: list
  elements: dict
  sample: [{"step": "promote standby (db2:5432)", "started_at": "2026-11-28T07:04:29.400+00:00", "offset_seconds": 1.22,
            "duration_seconds": 0.11, "ok": true, "detail": null}]
events:
  description:
    - The timeline - C(event) (fault, last acknowledged write, promotion, first write on the new primary, rejoin),
      C(offset_seconds), C(at).
  returned: always
  type: list
  elements: dict
  sample: [{"event": "fault: primary stopped (fast)", "offset_seconds": 1.05, "at": "2026-11-28T07:04:29.296+00:00"}]
pre_checks:
  description: The pre-checks, each with C(check), C(ok) and C(detail).
  returned: always
  type: list
  elements: dict
  sample: [{"check": "standby streams from the primary", "ok": true, "detail": "the standby streams from port 5432"}]
rejoined:
  description: Whether the old primary was rewound and streams from the new primary.
  returned: always
  type: bool
  sample: true
failback:
  description:
    - With O(failback), the switchover back - C(rto_seconds), C(promotion_seconds), C(writes_lost), C(lost_ids),
      C(lsn_gap_bytes), C(rejoined); else null.
  returned: always
  type: dict
  sample: {"rto_seconds": 0.33, "promotion_seconds": 0.27, "writes_lost": 0, "lost_ids": [], "lsn_gap_bytes": 0, "rejoined": true}
data_check:
  description:
    - After a rejoin, the comparison of the probe table (and O(compare_tables)) - C(equal), C(tables_compared),
      C(differences), C(between); else null.
  returned: always
  type: dict
  sample: {"equal": true, "tables_compared": 1, "differences": [], "between": ["primary (db1:5432)", "standby (db2:5432)"]}
nodes:
  description:
    - The state of both nodes at the end (before the drill in check mode), as M(dbdevops.postgresql.replication_info)
      returns it.
  returned: always
  type: list
  elements: dict
  sample: [{"name": "primary (db1:5432)", "role": "standby", "timeline": 2}]
recovery:
  description: When the drill was interrupted, what is primary now, what is down and the commands to recover; else empty.
  returned: always
  type: list
  elements: str
  sample: ["the primary is now standby (db2:5432): point clients at it"]
report_path:
  description: The HTML report written (O(report_path)), or null.
  returned: always
  type: str
  sample: /var/lib/postgresql/drills/switchover.html
old_primary_state:
  description:
    - What became of the old primary - C(stopped) (switchover), C(stopped (immediate)), C(killed), or C(isolated)
      (O(fault=partition) - unreachable from here, not stopped; fence it). In O(mode=rejoin), what was found before
      the rejoin - C(primary), C(stopped), C(standby), C(standby (not streaming from ...)), C(running (unreachable)).
    - Null in check mode of a drill.
  returned: always
  type: str
  sample: isolated
rewind_seconds:
  description: In O(mode=rejoin), seconds pg_rewind took; else null.
  returned: always
  type: float
  sample: 1.42
streaming:
  description: In O(mode=rejoin), whether the old primary streams from the new primary at the end; else null.
  returned: always
  type: bool
  sample: true
interrupted_drill:
  description:
    - When the journal of an earlier run that was killed half-way was found (O(state_dir)), what it found and did
      before this run; else null. In check mode, what it would do.
  returned: always
  type: dict
  contains:
    phase:
      description: The last phase the interrupted run recorded.
      type: str
      sample: fault-injected
    found:
      description: The interrupted run and the state of both nodes when this run started.
      type: str
      sample: "a drill (mode failover) was interrupted at phase fault-injected: primary (db1:5432) is unreachable, standby (db2:5432) is standby"
    action:
      description: What was done (in check mode, what would be done).
      type: str
      sample: "started primary (db1:5432) again as the primary (it holds every transaction it committed; standby (db2:5432) was not promoted)"
    steps:
      description: The steps taken (in check mode, planned).
      type: list
      elements: str
    journal:
      description: The journal file.
      type: str
      sample: /var/lib/postgresql/.dbdevops/failover-drill/drill-3f2a9c0d1e7b4a55.json
    started_at:
      description: When the interrupted run began (UTC).
      type: str
    mode:
      description: The mode of the interrupted run.
      type: str
    fault:
      description: The fault of the interrupted run.
      type: str
'''

from ansible_collections.dbdevops.postgresql.plugins.module_utils._module import (
    block_params, connection_blocks, new_module, run)
from ansible_collections.dbdevops.postgresql.plugins.module_utils._options import from_params
from ansible_collections.dbdevops.postgresql.plugins.module_utils.replication.drill import (
    FailoverDrillEngine, FailoverDrillOptions)


def main():
    module = new_module(FailoverDrillOptions, extra=connection_blocks(FailoverDrillOptions, 'primary', 'standby'))
    run(module, lambda p: FailoverDrillEngine(block_params(p, p['primary'], p['standby']),
                                              from_params(FailoverDrillOptions, p)))


if __name__ == '__main__':
    main()
