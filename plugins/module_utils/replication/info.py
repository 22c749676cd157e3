# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What each node of a streaming-replication setup is, read-only.

For every node: its role (primary or standby), timeline, LSNs (current on a
primary; receive and replay on a standby), the WAL senders it serves
(``pg_stat_replication``, lag in bytes and seconds), its WAL receiver
(``pg_stat_wal_receiver``), its replication slots with the WAL each one holds
back, and the replay lag in seconds.  A summary says how many primaries and
standbys answered and whether every standby streams.

    nodes = [read_node(ConnParams(...), 'db1'), read_node(ConnParams(...), 'db2')]
    summary(nodes)['streaming_ok']

The module runs it as ``ReplicationInfoEngine(params_list, options)``:
``plan()`` reads, ``apply()`` returns the same answer.  No Ansible imports.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import concurrent.futures
import dataclasses
import time

from ansible_collections.dbdevops.postgresql.plugins.module_utils._contract import Plan
from ansible_collections.dbdevops.postgresql.plugins.module_utils._options import option
from ansible_collections.dbdevops.postgresql.plugins.module_utils.connection import connect
from ansible_collections.dbdevops.postgresql.plugins.module_utils.errors import DbDevopsError

# On a standby with nothing left to replay, "now() - last replayed commit" grows
# while the primary is idle: the lag is 0 when replay has caught up with receive.
NODE_SQL = """
SELECT pg_is_in_recovery(),
       current_setting('server_version_num')::int,
       (SELECT system_identifier::text FROM pg_control_system()),
       current_setting('port')::int,
       CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END,
       CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_flush_lsn()::text END,
       pg_last_wal_receive_lsn()::text,
       pg_last_wal_replay_lsn()::text,
       CASE WHEN pg_is_in_recovery() THEN NULL
            ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END,
       (SELECT timeline_id FROM pg_control_checkpoint()),
       pg_last_xact_replay_timestamp()::text,
       CASE WHEN NOT pg_is_in_recovery() THEN NULL
            WHEN pg_last_wal_receive_lsn() IS NOT NULL
                 AND pg_last_wal_replay_lsn() >= pg_last_wal_receive_lsn() THEN 0.0
            ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8 END,
       CASE WHEN pg_is_in_recovery() THEN pg_is_wal_replay_paused() ELSE false END
"""

SENDERS_SQL = """
SELECT pid, application_name, client_addr::text, state, sync_state,
       sent_lsn::text, write_lsn::text, flush_lsn::text, replay_lsn::text,
       pg_wal_lsn_diff(w.lsn, write_lsn)::bigint, pg_wal_lsn_diff(w.lsn, flush_lsn)::bigint,
       pg_wal_lsn_diff(w.lsn, replay_lsn)::bigint,
       extract(epoch FROM write_lag)::float8, extract(epoch FROM flush_lag)::float8,
       extract(epoch FROM replay_lag)::float8
  FROM pg_stat_replication,
       LATERAL (SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn()
                            ELSE pg_current_wal_lsn() END AS lsn) w
 ORDER BY application_name, pid
"""

RECEIVER_SQL = """
SELECT status, received_tli, flushed_lsn::text, sender_host, sender_port, slot_name,
       latest_end_lsn::text, extract(epoch FROM now() - last_msg_receipt_time)::float8
  FROM pg_stat_wal_receiver
"""

SLOTS_SQL = """
SELECT slot_name, slot_type, active, restart_lsn::text, wal_status,
       pg_wal_lsn_diff(w.lsn, restart_lsn)::bigint
  FROM pg_replication_slots,
       LATERAL (SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()
                            ELSE pg_current_wal_lsn() END AS lsn) w
 ORDER BY slot_name
"""

SENDER_KEYS = ('pid', 'application_name', 'client_addr', 'state', 'sync_state', 'sent_lsn', 'write_lsn',
               'flush_lsn', 'replay_lsn', 'write_lag_bytes', 'flush_lag_bytes', 'replay_lag_bytes',
               'write_lag_seconds', 'flush_lag_seconds', 'replay_lag_seconds')
RECEIVER_KEYS = ('status', 'received_tli', 'flushed_lsn', 'sender_host', 'sender_port', 'slot_name',
                 'latest_end_lsn', 'last_message_age_seconds')
SLOT_KEYS = ('slot_name', 'slot_type', 'active', 'restart_lsn', 'wal_status', 'retained_bytes')


@dataclasses.dataclass
class ReplicationInfoOptions(object):
    """The options of replication_info: the nodes (connection blocks) to read."""
    nodes: list = option([], type='list', elements='dict', cli=False)
    connect_timeout: int = option(5, type='int')


def node_label(params, name=None):
    """How a node is named in results: its ``name``, else host:port."""
    if name:
        return name
    return '%s:%s' % (params.host or 'localhost', params.login_port)


def lsn_int(text):
    """An LSN ``X/Y`` as an integer (None stays None)."""
    if not text:
        return None
    high, low = text.split('/')
    return (int(high, 16) << 32) + int(low, 16)


def read_node(params, name=None, connect_timeout=5, conn=None):
    """Everything about one node as a dict; an unreachable node is ``role: unreachable`` with ``error``.

    ``conn`` reuses an open connection (autocommit) instead of opening one.
    """
    label = node_label(params, name)
    node = dict(name=label, role='unreachable', reachable=False, error=None, in_recovery=None,
                server_version_num=None, system_identifier=None, port=None, timeline=None,
                current_lsn=None, flush_lsn=None, receive_lsn=None, replay_lsn=None,
                last_replay_timestamp=None, replay_lag_seconds=None, replay_paused=None,
                senders=[], receiver=None, slots=[])
    own = conn is None
    try:
        if own:
            conn = connect(params.replace(connect_params=dict(params.connect_params, connect_timeout=connect_timeout)),
                           autocommit=True, application_name='dbdevops_replication_info')
    except DbDevopsError as exc:
        node['error'] = str(exc)
        return node
    try:
        with conn.cursor() as cur:
            cur.execute(NODE_SQL)
            (in_recovery, version, sysid, port, current, flush, receive, replay, primary_tli, checkpoint_tli,
             replay_ts, replay_lag, paused) = cur.fetchone()
            cur.execute(SENDERS_SQL)
            senders = [dict(zip(SENDER_KEYS, row)) for row in cur.fetchall()]
            receiver = None
            if in_recovery:
                cur.execute(RECEIVER_SQL)
                row = cur.fetchone()
                receiver = dict(zip(RECEIVER_KEYS, row)) if row else None
            cur.execute(SLOTS_SQL)
            slots = [dict(zip(SLOT_KEYS, row)) for row in cur.fetchall()]
    except Exception as exc:  # noqa: BLE001 - a node that fails half-way is reported, not fatal
        node['error'] = 'cannot read replication state of %s: %s' % (label, str(exc).strip())
        return node
    finally:
        if own:
            conn.close()
    timeline = primary_tli
    if in_recovery:
        timeline = (receiver or {}).get('received_tli') or checkpoint_tli
    node.update(role='standby' if in_recovery else 'primary', reachable=True, in_recovery=bool(in_recovery),
                server_version_num=version, system_identifier=sysid, port=port, timeline=timeline,
                current_lsn=current, flush_lsn=flush, receive_lsn=receive if in_recovery else None,
                replay_lsn=replay if in_recovery else None, last_replay_timestamp=replay_ts,
                replay_lag_seconds=replay_lag, replay_paused=bool(paused), senders=senders,
                receiver=receiver, slots=slots)
    return node


def streaming(node):
    """Whether a standby's WAL receiver is streaming."""
    return bool(node.get('role') == 'standby' and node.get('receiver')
                and node['receiver'].get('status') == 'streaming')


def summary(nodes):
    """Counts of primaries, standbys and unreachable nodes; ``streaming_ok`` when every standby streams
    from the one primary (one primary, and it serves at least as many streaming senders)."""
    primaries = [n for n in nodes if n['role'] == 'primary']
    standbys = [n for n in nodes if n['role'] == 'standby']
    not_streaming = [n['name'] for n in standbys if not streaming(n)]
    problems = []
    if len(primaries) > 1:
        problems.append('%d primaries: %s' % (len(primaries), ', '.join(n['name'] for n in primaries)))
    if not_streaming:
        problems.append('standby not streaming: %s' % ', '.join(not_streaming))
    unreachable = [n['name'] for n in nodes if not n['reachable']]
    if unreachable:
        problems.append('unreachable: %s' % ', '.join(unreachable))
    ok = len(primaries) == 1 and not not_streaming and not unreachable
    if ok and standbys:
        serving = sum(1 for s in primaries[0]['senders'] if s.get('state') == 'streaming')
        if serving < len(standbys):
            ok = False
            problems.append('the primary %s streams to %d sender(s) for %d standby(s)'
                            % (primaries[0]['name'], serving, len(standbys)))
    return dict(primaries=len(primaries), standbys=len(standbys), unreachable=len(unreachable),
                primary=primaries[0]['name'] if len(primaries) == 1 else None,
                streaming_ok=bool(ok and standbys), problems=problems)


def read_nodes(targets, connect_timeout=5):
    """[(ConnParams, name)] read in parallel, in the order given."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(8, max(1, len(targets)))) as pool:
        futures = [pool.submit(read_node, params, name, connect_timeout) for params, name in targets]
    return [f.result() for f in futures]


class ReplicationInfoEngine(object):
    """replication_info as an engine: ``targets`` is ``[(ConnParams, name or None)]``.

    Read-only: ``plan()`` reads every node, ``apply(plan)`` returns the same
    answer; ``changed`` is always false.  Nothing reachable at all is an error.
    """

    def __init__(self, targets, options):
        self.targets = list(targets)
        self.options = options

    def plan(self):
        t0 = time.monotonic()
        nodes = read_nodes(self.targets, self.options.connect_timeout)
        if not any(n['reachable'] for n in nodes):
            raise DbDevopsError('no node answered: %s' % '; '.join(n['error'] or n['name'] for n in nodes),
                                nodes=nodes)
        warnings = [n['error'] for n in nodes if n['error']]
        values = dict(nodes=nodes, summary=summary(nodes), duration_ms=int(round((time.monotonic() - t0) * 1000)))
        return Plan(False, values=values, warnings=warnings)

    def apply(self, plan):
        return plan.result()
