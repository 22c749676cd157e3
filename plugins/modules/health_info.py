#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: health_info
short_description: Tell whether a PostgreSQL server is healthy and, if not, what is wrong; advise on its tuning
version_added: 0.2.0
description:
  - Connects once, read-only (C(default_transaction_read_only), its own O(lock_timeout_ms) and
    O(statement_timeout_ms), application name C(dbdevops-health)), and runs the checks below. Each returns
    C(name), C(status) (V(ok), V(warning), V(critical) or V(skipped)), a one-sentence C(summary), structured
    C(details) and the C(thresholds) it used.
  - V(connection) - whether the server answers; a server that is down, a wrong password or an unknown database is
    this check V(critical) with the cause, every other check V(skipped), and no traceback.
  - V(connections) - client connections used against C(max_connections) minus C(superuser_reserved_connections).
  - V(sessions) - active and idle-in-transaction sessions; graded by the longest time a session has sat idle inside
    a transaction.
  - V(long_running) - queries running, and transactions open, longer than their limits.
  - V(blocking_locks) - lock chains from C(pg_blocking_pids()) - who waits, for how long, behind whom, with both
    queries and the blockers at the root of the chains.
  - V(sizes) - the size of every database (C(pg_database_size)), the largest tables and indexes of the connected
    database (from C(pg_class.relpages), so no user table is opened or locked); informational, always V(ok).
  - V(cache_hit) - the buffer cache hit ratio over all databases, judged only after O(cache_hit_min_reads)
    block accesses (V(skipped) before).
  - V(unused_indexes) - indexes of the connected database never scanned since the statistics were reset that are
    neither unique, primary key nor backing a constraint, largest first.
  - V(invalid_indexes) - indexes left invalid by a failed C(CREATE INDEX CONCURRENTLY) or C(REINDEX).
  - V(dead_tuples) - tables of the connected database by share of dead rows, with the time since their last
    (auto)vacuum and (auto)analyze and whether autovacuum is off on them.
  - V(wraparound) - transaction ID and multixact age of every database (C(datfrozenxid), C(datminmxid)) as a share
    of the 2^31 limit.
  - V(replication) - on a primary, the replay lag of each standby (C(pg_stat_replication)) in bytes and seconds;
    on a standby, whether its WAL receiver streams and its replay lag.
  - V(replication_slots) - slots nobody reads that hold back WAL (C(pg_replication_slots), C(pg_wal_lsn_diff));
    a slot whose WAL is already lost is V(critical).
  - V(statements) - the top statements by total and by mean execution time from C(pg_stat_statements) when the
    extension is installed in the connected database; V(skipped) with the reason otherwise.
  - V(pending_restart) - settings changed in the configuration that take effect only after a restart.
  - RV(status) is the worst status of all checks, and is never V(ok) when no check ran.
  - The checks read catalog and statistics views only and take no lock on a user table, so a health run is not
    queued behind an application's C(ACCESS EXCLUSIVE) lock. Table and index sizes are therefore estimates as of
    the last C(VACUUM), C(ANALYZE) or C(CREATE INDEX).
  - RV(advice) compares the live settings with what the C(server) role computes for this host's memory and CPUs
    (the same code, the C(dbdevops.postgresql.server_tuning) filter), and adds what the statistics say (cache hit
    ratio, connection usage, temporary files, checkpoints requested rather than timed).
  - With O(apply=true), the low-risk recommendations that need no restart are set with C(ALTER SYSTEM) and
    C(pg_reload_conf()) - the only writes this module makes, and the only time it reports C(changed). A module
    named C(_info) normally changes nothing; O(apply) is off by default and kept here so that one task can
    read the advice and, when asked, act on it with the same numbers.
  - The tuning reads the memory and CPUs of the host the module runs on (C(/proc/meminfo), the CPU count); run it
    on the database host, or set O(memory_mb) and O(cpus).
author:
  - dbdevops maintainers (@dbdevops)
extends_documentation_fragment:
  - dbdevops.postgresql.connection
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Check mode runs every check and reports the settings O(apply) would change, changing nothing.
  diff_mode:
    support: full
    details: With O(apply=true), the settings to change before and after.
  platform:
    platforms: posix
options:
  fail_on:
    description:
      - Fail the task when RV(status) is at or above this level; the failed task still carries the whole result.
      - V(never) always returns the result (for example to publish it first, as C(playbooks/health.yml) does).
    type: str
    default: critical
    choices: [critical, warning, never]
  skip_checks:
    description:
      - Names of checks not to run (they are reported V(skipped)), from V(connections), V(sessions),
        V(long_running), V(blocking_locks), V(sizes), V(cache_hit), V(unused_indexes), V(invalid_indexes),
        V(dead_tuples), V(wraparound), V(replication), V(replication_slots), V(statements), V(pending_restart).
    type: list
    elements: str
    default: []
  connect_timeout:
    description: Seconds to wait for the server to answer.
    type: int
    default: 5
  statement_timeout_ms:
    description: The C(statement_timeout) of the health session; a check that takes longer is a V(warning) saying so.
    type: int
    default: 10000
  lock_timeout_ms:
    description: The C(lock_timeout) of the health session.
    type: int
    default: 1000
  top_n:
    description: How many of the largest tables and indexes, top statements and listed rows to return.
    type: int
    default: 10
  connections_warning_pct:
    description: V(connections) is a warning from this share of the available connections in use.
    type: float
    default: 80.0
  connections_critical_pct:
    description: V(connections) is critical from this share.
    type: float
    default: 95.0
  idle_in_transaction_warning_seconds:
    description: V(sessions) is a warning when a session has been idle in a transaction this long.
    type: float
    default: 60.0
  idle_in_transaction_critical_seconds:
    description: V(sessions) is critical from this long.
    type: float
    default: 600.0
  long_query_warning_seconds:
    description: V(long_running) is a warning for a query running this long.
    type: float
    default: 300.0
  long_query_critical_seconds:
    description: V(long_running) is critical for a query running this long.
    type: float
    default: 1800.0
  long_transaction_warning_seconds:
    description: V(long_running) is a warning for a transaction open this long (active or idle).
    type: float
    default: 600.0
  long_transaction_critical_seconds:
    description: V(long_running) is critical for a transaction open this long.
    type: float
    default: 3600.0
  lock_wait_warning_seconds:
    description: V(blocking_locks) is a warning when a session has waited this long for a lock.
    type: float
    default: 10.0
  lock_wait_critical_seconds:
    description: V(blocking_locks) is critical from this long.
    type: float
    default: 60.0
  cache_hit_warning_pct:
    description: V(cache_hit) is a warning below this hit ratio.
    type: float
    default: 95.0
  cache_hit_critical_pct:
    description: V(cache_hit) is critical below this hit ratio.
    type: float
    default: 90.0
  cache_hit_min_reads:
    description: Block accesses (hits plus reads) since the statistics were reset before the ratio is judged.
    type: int
    default: 10000
  unused_index_min_bytes:
    description: Unused indexes smaller than this are not reported as a warning.
    type: int
    default: 1048576
  dead_tuples_warning_pct:
    description: V(dead_tuples) is a warning when this share of a table's rows is dead.
    type: float
    default: 20.0
  dead_tuples_critical_pct:
    description: V(dead_tuples) is critical from this share.
    type: float
    default: 50.0
  dead_tuples_min:
    description: Tables with fewer dead rows than this are not judged.
    type: int
    default: 1000
  wraparound_warning_pct:
    description: V(wraparound) is a warning when a database's transaction ID or multixact age reaches this share of 2^31.
    type: float
    default: 50.0
  wraparound_critical_pct:
    description: V(wraparound) is critical from this share.
    type: float
    default: 75.0
  replication_lag_warning_bytes:
    description: V(replication) is a warning when a standby's replay lags this many bytes behind.
    type: int
    default: 104857600
  replication_lag_critical_bytes:
    description: V(replication) is critical from this many bytes.
    type: int
    default: 1073741824
  replication_lag_warning_seconds:
    description: V(replication) is a warning when the replay lag is this many seconds.
    type: float
    default: 60.0
  replication_lag_critical_seconds:
    description: V(replication) is critical from this many seconds.
    type: float
    default: 300.0
  slot_retained_warning_bytes:
    description: V(replication_slots) is a warning when an inactive slot holds back this much WAL.
    type: int
    default: 1073741824
  slot_retained_critical_bytes:
    description: V(replication_slots) is critical from this much WAL.
    type: int
    default: 10737418240
  advice:
    description: Compute the tuning advice RV(advice).
    type: bool
    default: true
  apply:
    description:
      - Set the low-risk recommendations that need no restart with C(ALTER SYSTEM) and reload the configuration.
      - Needs a superuser or the C(ALTER SYSTEM) privilege on those settings.
      - In check mode, reports them as would-change (with a diff) and changes nothing.
    type: bool
    default: false
  memory_mb:
    description: Memory in MB the tuning is computed for. Default the MemTotal of the host the module runs on.
    type: int
  cpus:
    description: CPUs the tuning is computed for. Default the CPU count of the host the module runs on.
    type: int
  tuning_workload:
    description: The workload the tuning is computed for, as the C(server) role's C(server_tuning_workload).
    type: str
    default: mixed
    choices: [web, oltp, dw, mixed, desktop]
  tuning_storage:
    description: The storage the tuning is computed for, as the C(server) role's C(server_tuning_storage).
    type: str
    default: ssd
    choices: [ssd, hdd, san]
notes:
  - The per-database checks (V(sizes) tables and indexes, V(unused_indexes), V(invalid_indexes), V(dead_tuples),
    V(statements)) look at the database of O(db); the others at the whole server.
  - A check that cannot run (a statement timeout, a missing privilege) is a V(warning) naming the error; the other
    checks still run. A non-superuser login should be a member of C(pg_monitor).
seealso:
  - module: dbdevops.postgresql.replication_info
'''

EXAMPLES = r'''
- name: Is the database healthy? Fail the task when something is critical
  dbdevops.postgresql.health_info:
    login_unix_socket: /var/run/postgresql
    db: app
  become: true
  become_user: postgres
  register: health

- name: Show what is wrong
  ansible.builtin.debug:
    msg: "{{ health.summary }}"

- name: Report only, with tighter limits, never failing the task
  dbdevops.postgresql.health_info:
    db: app
    fail_on: never
    long_query_warning_seconds: 30
    idle_in_transaction_warning_seconds: 10
    skip_checks: [statements]
  register: health

- name: Apply the low-risk tuning advice (check mode first shows the diff)
  dbdevops.postgresql.health_info:
    apply: true
    fail_on: never
    tuning_workload: oltp
'''

RETURN = r'''
status:
  description: The worst status of all checks - V(ok), V(warning) or V(critical); V(critical) when no check ran.
  returned: always
  type: str
  sample: warning
target:
  description: The server checked, as C(host:port/database).
  returned: always
  type: str
  sample: db1.example.com:5432/app
checked_at:
  description: When the run started (UTC, ISO 8601).
  returned: always
  type: str
  sample: "2026-11-28T02:00:00Z"
server_version:
  description: The server's version (C(server_version)); null when it could not be reached.
  returned: always
  type: str
  sample: 15.18 (Debian 15.18-0+deb12u1)
in_recovery:
  description: Whether the server is a standby; null when it could not be reached.
  returned: always
  type: bool
  sample: false
checks:
  description:
    - One entry per check, in the order of the description, C(connection) first - C(name), C(status),
      C(summary) (one sentence), C(details) (structured, per check) and C(thresholds) (the limits used).
  returned: always
  type: list
  elements: dict
  sample: [{"name": "blocking_locks", "status": "warning",
            "summary": "1 session(s) wait for locks; the longest, pid 4242 (UPDATE t SET v = 2), has waited 12s ...",
            "details": {"blocked": [{"pid": 4242, "blocked_by": [4240], "query": "UPDATE t SET v = 2",
                                     "wait_seconds": 12.3, "blockers": [{"pid": 4240, "state": "idle in transaction",
                                                                         "query": "UPDATE t SET v = 1"}]}],
                        "root_blockers": [{"pid": 4240}], "waiting_sessions": 1, "longest_wait_seconds": 12.3},
            "thresholds": {"warning_seconds": 10.0, "critical_seconds": 60.0}}]
counts:
  description: How many checks ended in each status (C(ok), C(warning), C(critical), C(skipped)).
  returned: always
  type: dict
  sample: {"ok": 12, "warning": 1, "critical": 0, "skipped": 2}
summary:
  description:
    - Readable text - a first line with the target, status and counts, then one line per check that is not ok.
  returned: always
  type: str
  sample: "db1:5432/app: warning (ok=12 warning=1 critical=0 skipped=2)\nwarning unused_indexes: 2 index(es) ..."
advice:
  description:
    - Tuning recommendations - C(setting), C(current), C(recommended), C(reason), C(risk) (V(low), V(medium),
      V(high)), C(needs_restart), C(source) (V(tuning), V(statistics) or both) and C(action) (V(advice),
      V(would apply) in check mode, V(applied)).
  returned: always
  type: list
  elements: dict
  sample: [{"setting": "random_page_cost", "current": "4", "recommended": "1.1", "risk": "low",
            "needs_restart": false, "source": "tuning", "action": "advice",
            "reason": "the server role computes 1.1 for 16384 MB of memory, 4 CPU(s), ssd storage and a mixed workload"}]
applied:
  description: The settings O(apply) changed (in check mode, would change); empty without O(apply).
  returned: always
  type: list
  elements: str
  sample: [effective_cache_size, random_page_cost]
tuning_inputs:
  description: What the advice was computed from - C(memory_mb), C(cpus), C(workload), C(storage) and the statistics
    read (C(temp_files), C(temp_bytes), C(checkpoints_timed), C(checkpoints_requested)); empty without advice.
  returned: always
  type: dict
  sample: {"memory_mb": 16384, "cpus": 4, "workload": "mixed", "storage": "ssd", "temp_files": 0, "temp_bytes": 0,
           "checkpoints_timed": 120, "checkpoints_requested": 2}
duration_ms:
  description: Wall time of the checks and advice in milliseconds.
  returned: always
  type: int
  sample: 85
'''

from ansible_collections.dbdevops.postgresql.plugins.module_utils._module import conn_params, new_module, run
from ansible_collections.dbdevops.postgresql.plugins.module_utils._options import from_params
from ansible_collections.dbdevops.postgresql.plugins.module_utils.health.engine import HealthEngine, HealthOptions


def main():
    module = new_module(HealthOptions)
    run(module, lambda p: HealthEngine(conn_params(p), from_params(HealthOptions, p)))


if __name__ == '__main__':
    main()
