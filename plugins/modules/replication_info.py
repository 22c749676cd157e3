#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
module: replication_info
short_description: Read the streaming-replication state of PostgreSQL nodes
version_added: 0.2.0
description:
  - For each node of O(nodes) (or, without O(nodes), the one server of the top-level connection options),
    reads its role (primary or standby), timeline, WAL positions, the WAL senders it serves, its WAL receiver,
    its replication slots and its replay lag, and sums them up in RV(summary).
  - The timeline of a primary is the one it writes (its current WAL file); of a standby, the one its WAL
    receiver receives (else the one of its last checkpoint).
  - The replay lag in seconds of a standby is C(now() - pg_last_xact_replay_timestamp()) while it has WAL left to
    replay, and 0 once replay has caught up with what it received, so an idle primary does not look like lag.
  - A node that cannot be reached is reported with C(role=unreachable) and its error, and raises a warning;
    the task fails only when no node answers.
  - Read-only; never reports a change.
author:
  - dbdevops maintainers (@dbdevops)
extends_documentation_fragment:
  - dbdevops.postgresql.connection
  - dbdevops.postgresql.connection.nodes
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
  connect_timeout:
    description: Seconds to wait for each node to answer before reporting it unreachable.
    type: int
    default: 5
seealso:
  - module: dbdevops.postgresql.failover_drill
'''

EXAMPLES = r'''
- name: Read a primary and its standby
  dbdevops.postgresql.replication_info:
    login_user: postgres
    login_password: "{{ vault_postgres_password }}"
    nodes:
      - {name: db1, login_host: db1.example.com}
      - {name: db2, login_host: db2.example.com}
  register: repl

- name: Fail when a standby does not stream
  ansible.builtin.assert:
    that: repl.summary.streaming_ok
    fail_msg: "{{ repl.summary.problems | join('; ') }}"

- name: The server of the connection options only
  dbdevops.postgresql.replication_info:
    login_unix_socket: /var/run/postgresql
'''

RETURN = r'''
nodes:
  description:
    - One entry per node, in the order given. C(name), C(role) (C(primary), C(standby) or C(unreachable)),
      C(reachable), C(error), C(in_recovery), C(server_version_num), C(system_identifier), C(port), C(timeline),
      C(current_lsn) and C(flush_lsn) (primary), C(receive_lsn) and C(replay_lsn) (standby),
      C(last_replay_timestamp), C(replay_lag_seconds), C(replay_paused).
    - C(senders) - one entry per row of C(pg_stat_replication) - C(pid), C(application_name), C(client_addr),
      C(state), C(sync_state), C(sent_lsn), C(write_lsn), C(flush_lsn), C(replay_lsn), C(write_lag_bytes),
      C(flush_lag_bytes), C(replay_lag_bytes) (behind the node's current or received LSN), C(write_lag_seconds),
      C(flush_lag_seconds), C(replay_lag_seconds).
    - C(receiver) (standby; else null) - C(status), C(received_tli), C(flushed_lsn), C(sender_host), C(sender_port),
      C(slot_name), C(latest_end_lsn), C(last_message_age_seconds).
    - C(slots) - C(slot_name), C(slot_type), C(active), C(restart_lsn), C(wal_status) and C(retained_bytes), the WAL the
      slot holds back (current LSN minus its C(restart_lsn)).
  returned: always
  type: list
  elements: dict
  sample: [{"name": "db1", "role": "primary", "reachable": true, "timeline": 1, "current_lsn": "0/3000148",
            "senders": [{"application_name": "db2", "state": "streaming", "sync_state": "async",
                         "replay_lag_bytes": 0, "replay_lag_seconds": 0.001}],
            "receiver": null, "slots": [{"slot_name": "db2", "active": true, "retained_bytes": 16777216}]},
           {"name": "db2", "role": "standby", "timeline": 1, "receive_lsn": "0/3000148", "replay_lsn": "0/3000148",
            "replay_lag_seconds": 0.0, "receiver": {"status": "streaming", "sender_host": "db1", "sender_port": 5432}}]
summary:
  description:
    - C(primaries), C(standbys) and C(unreachable) (counts), C(primary) (the name of the one primary, else null),
      C(streaming_ok) (one primary, every node reachable, every standby streaming and the primary serving as many
      streaming senders) and C(problems) (why not, in words).
  returned: always
  type: dict
  sample: {"primaries": 1, "standbys": 1, "unreachable": 0, "primary": "db1", "streaming_ok": true, "problems": []}
duration_ms:
  description: Wall time in milliseconds.
  returned: always
  type: int
  sample: 35
'''

from ansible_collections.dbdevops.postgresql.plugins.module_utils._module import (
    block_spec, conn_params, new_module, run)
from ansible_collections.dbdevops.postgresql.plugins.module_utils._options import from_params
from ansible_collections.dbdevops.postgresql.plugins.module_utils.replication.info import (
    ReplicationInfoEngine, ReplicationInfoOptions)


def main():
    module = new_module(ReplicationInfoOptions, extra=dict(nodes=dict(
        type='list', elements='dict', default=[], options=block_spec(name=dict(type='str')))))
    run(module, lambda p: ReplicationInfoEngine(
        [(conn_params(p, n), n.get('name')) for n in p['nodes']] or [(conn_params(p), None)],
        from_params(ReplicationInfoOptions, p)))


if __name__ == '__main__':
    main()
