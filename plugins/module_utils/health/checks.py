# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The health checks: each one a function over one read-only session.

    result = check_connections(session, options)
    # {'name': 'connections', 'status': 'ok', 'summary': '3 of 37 connections used (8%).',
    #  'details': {...}, 'thresholds': {'warning_pct': 80, 'critical_pct': 95}}

A check reads catalog and statistics views only (``pg_stat_*``, ``pg_class``,
``pg_index``, ``pg_database``, ``pg_settings``, ``pg_locks``,
``pg_replication_slots``; ``pg_stat_statements`` when installed) and never
opens a user relation: sizes come from ``pg_class.relpages`` (kept by VACUUM,
ANALYZE and CREATE INDEX), not from ``pg_relation_size()``, which opens the
relation with an AccessShareLock (``try_relation_open`` in dbsize.c) and so
would queue behind an ACCESS EXCLUSIVE lock an application holds.  Database
sizes use ``pg_database_size()``, which adds up the files of the database's
folder and takes no relation lock.  No Ansible imports.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.dbdevops.postgresql.plugins.module_utils.replication import info

STATUSES = ('ok', 'warning', 'critical', 'skipped')
SEVERITY = dict(skipped=-1, ok=0, warning=1, critical=2)
XID_LIMIT = 2 ** 31
QUERY_TEXT_MAX = 1000


def result(name, status, summary, details=None, thresholds=None):
    """One check's answer, in the one shape every check returns."""
    if status not in STATUSES:
        raise ValueError('unknown check status %r' % status)
    return dict(name=name, status=status, summary=summary, details=details or {}, thresholds=thresholds or {})


def worst(statuses):
    """The most severe of ``statuses`` (skipped counts below ok); ``ok`` for none."""
    statuses = list(statuses)
    return max(statuses, key=SEVERITY.get) if statuses else 'ok'


def grade(value, warning, critical, lower_is_worse=False):
    """ok, warning or critical for ``value`` against two thresholds (None: that level is off)."""
    if value is None:
        return 'ok'
    if lower_is_worse:
        if critical is not None and value < critical:
            return 'critical'
        if warning is not None and value < warning:
            return 'warning'
        return 'ok'
    if critical is not None and value >= critical:
        return 'critical'
    if warning is not None and value >= warning:
        return 'warning'
    return 'ok'


def human_bytes(count):
    """1536 -> '1.5 kB': sizes in summaries."""
    if count is None:
        return 'unknown'
    value = float(count)
    for unit in ('bytes', 'kB', 'MB', 'GB', 'TB'):
        if abs(value) < 1024 or unit == 'TB':
            return ('%d %s' % (value, unit)) if unit == 'bytes' else ('%.1f %s' % (value, unit))
        value /= 1024.0
    return '%d bytes' % count  # pragma: no cover


def seconds_text(seconds):
    """95.2 -> '1m35s'."""
    if seconds is None:
        return 'unknown'
    seconds = int(round(seconds))
    if seconds < 60:
        return '%ds' % seconds
    if seconds < 3600:
        return '%dm%02ds' % divmod(seconds, 60)
    hours, rest = divmod(seconds, 3600)
    if hours < 48:
        return '%dh%02dm' % (hours, rest // 60)
    return '%dd%02dh' % divmod(hours, 24)


def _query(text):
    if text is None:
        return None
    text = ' '.join(text.split())
    return text if len(text) <= QUERY_TEXT_MAX else text[:QUERY_TEXT_MAX] + '...'


def _rows(session, statement, params=None):
    with session.conn.cursor() as cur:
        cur.execute(statement, params)
        names = [c[0] for c in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]


def _one(session, statement, params=None):
    rows = _rows(session, statement, params)
    return rows[0] if rows else None


# Client sessions other than this one: walsenders, autovacuum and background workers
# are not the application's sessions.
_CLIENTS = "backend_type = 'client backend' AND pid <> pg_backend_pid()"


def check_connections(session, opts):
    row = _one(session, """
        SELECT count(*) FILTER (WHERE backend_type = 'client backend')::int AS used,
               current_setting('max_connections')::int AS max_connections,
               current_setting('superuser_reserved_connections')::int AS reserved
          FROM pg_stat_activity""")
    available = max(1, row['max_connections'] - row['reserved'])
    pct = round(100.0 * row['used'] / available, 1)
    by_database = _rows(session, """
        SELECT coalesce(datname, '') AS database, count(*)::int AS sessions
          FROM pg_stat_activity WHERE backend_type = 'client backend'
         GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT %s""", (opts.top_n,))
    thresholds = dict(warning_pct=opts.connections_warning_pct, critical_pct=opts.connections_critical_pct)
    status = grade(pct, opts.connections_warning_pct, opts.connections_critical_pct)
    summary = '%d of %d connections used (%s%%; max_connections %d minus %d reserved for superusers).' % (
        row['used'], available, pct, row['max_connections'], row['reserved'])
    details = dict(used=row['used'], available=available, max_connections=row['max_connections'],
                   superuser_reserved_connections=row['reserved'], used_pct=pct, by_database=by_database)
    return result('connections', status, summary, details, thresholds)


def check_sessions(session, opts):
    states = _rows(session, """
        SELECT coalesce(state, 'unknown') AS state, count(*)::int AS sessions
          FROM pg_stat_activity WHERE """ + _CLIENTS + """ GROUP BY 1 ORDER BY 1""")
    counts = dict((r['state'], r['sessions']) for r in states)
    idle_tx = _rows(session, """
        SELECT pid, usename AS user, datname AS database, application_name,
               client_addr::text AS client_addr, state,
               extract(epoch FROM now() - state_change)::float8 AS idle_seconds,
               extract(epoch FROM now() - xact_start)::float8 AS transaction_seconds,
               query AS last_query
          FROM pg_stat_activity
         WHERE """ + _CLIENTS + """ AND state IN ('idle in transaction', 'idle in transaction (aborted)')
         ORDER BY state_change""")
    for row in idle_tx:
        row['last_query'] = _query(row['last_query'])
    warn, crit = opts.idle_in_transaction_warning_seconds, opts.idle_in_transaction_critical_seconds
    longest = idle_tx[0]['idle_seconds'] if idle_tx else None
    status = grade(longest, warn, crit)
    active = counts.get('active', 0)
    if idle_tx:
        first = idle_tx[0]
        summary = ('%d active, %d idle in transaction; the longest (pid %d, user %s, database %s) has been idle in '
                   'its transaction for %s.' % (active, len(idle_tx), first['pid'], first['user'], first['database'],
                                                seconds_text(longest)))
    else:
        summary = '%d active session(s), none idle in a transaction.' % active
    details = dict(by_state=counts, active=active, idle_in_transaction=len(idle_tx),
                   longest_idle_in_transaction_seconds=longest,
                   idle_in_transaction_sessions=[r for r in idle_tx if grade(r['idle_seconds'], warn, crit) != 'ok']
                   or idle_tx[:opts.top_n])
    return result('sessions', status, summary, details, dict(idle_in_transaction_warning_seconds=warn,
                                                             idle_in_transaction_critical_seconds=crit))


def check_long_running(session, opts):
    lowest = min(x for x in (opts.long_query_warning_seconds, opts.long_query_critical_seconds,
                             opts.long_transaction_warning_seconds, opts.long_transaction_critical_seconds)
                 if x is not None)
    rows = _rows(session, """
        SELECT pid, usename AS user, datname AS database, application_name, state,
               extract(epoch FROM now() - query_start)::float8 AS query_seconds,
               extract(epoch FROM now() - xact_start)::float8 AS transaction_seconds,
               wait_event_type, wait_event, query
          FROM pg_stat_activity
         WHERE """ + _CLIENTS + """ AND xact_start IS NOT NULL AND now() - xact_start >= %s * interval '1 second'
         ORDER BY xact_start""", (lowest,))
    queries, transactions = [], []
    statuses = []
    for row in rows:
        row['query'] = _query(row['query'])
        if row['state'] == 'active':
            q = grade(row['query_seconds'], opts.long_query_warning_seconds, opts.long_query_critical_seconds)
            if q != 'ok':
                queries.append(dict(row, status=q))
                statuses.append(q)
        t = grade(row['transaction_seconds'], opts.long_transaction_warning_seconds,
                  opts.long_transaction_critical_seconds)
        if t != 'ok':
            transactions.append(dict(row, status=t))
            statuses.append(t)
    status = worst(statuses)
    parts = []
    if queries:
        q = max(queries, key=lambda r: r['query_seconds'])
        parts.append('%d quer%s running longer than %ss (longest: pid %d for %s: %s)' % (
            len(queries), 'y' if len(queries) == 1 else 'ies', opts.long_query_warning_seconds, q['pid'],
            seconds_text(q['query_seconds']), (q['query'] or '')[:120]))
    if transactions:
        t = transactions[0]
        parts.append('%d transaction(s) open longer than %ss (oldest: pid %d, %s, open for %s)' % (
            len(transactions), opts.long_transaction_warning_seconds, t['pid'], t['state'],
            seconds_text(t['transaction_seconds'])))
    summary = ('; '.join(parts) + '.') if parts else 'No query or transaction runs longer than its limit.'
    thresholds = dict(query_warning_seconds=opts.long_query_warning_seconds,
                      query_critical_seconds=opts.long_query_critical_seconds,
                      transaction_warning_seconds=opts.long_transaction_warning_seconds,
                      transaction_critical_seconds=opts.long_transaction_critical_seconds)
    return result('long_running', status, summary, dict(queries=queries, transactions=transactions), thresholds)


def check_blocking_locks(session, opts):
    # waitstart (PostgreSQL 14+) says how long a session has waited for its lock.
    waitstart = 'l.waitstart' if session.server_version_num >= 140000 else 'NULL::timestamptz'
    blocked = _rows(session, """
        SELECT a.pid, pg_blocking_pids(a.pid) AS blocked_by, a.usename AS user, a.datname AS database,
               a.application_name, a.wait_event_type, a.wait_event, a.query,
               extract(epoch FROM now() - coalesce(w.waitstart, a.state_change))::float8 AS wait_seconds,
               w.locktype, w.mode, w.relation
          FROM pg_stat_activity a
          LEFT JOIN LATERAL (SELECT """ + waitstart + """ AS waitstart, l.locktype, l.mode,
                                    l.relation::regclass::text AS relation
                               FROM pg_locks l WHERE l.pid = a.pid AND NOT l.granted LIMIT 1) w ON true
         WHERE a.wait_event_type = 'Lock' AND cardinality(pg_blocking_pids(a.pid)) > 0
         ORDER BY wait_seconds DESC""")
    blockers = {}
    pids = sorted(set(p for row in blocked for p in row['blocked_by']))
    if pids:
        for row in _rows(session, """
                SELECT pid, usename AS user, datname AS database, application_name, state, query,
                       extract(epoch FROM now() - xact_start)::float8 AS transaction_seconds,
                       extract(epoch FROM now() - state_change)::float8 AS state_seconds
                  FROM pg_stat_activity WHERE pid = ANY(%s)""", (pids,)):
            row['query'] = _query(row['query'])
            blockers[row['pid']] = row
    waiting = set(r['pid'] for r in blocked)
    chains = []
    for row in blocked:
        row['query'] = _query(row['query'])
        row['blockers'] = [blockers.get(pid, dict(pid=pid)) for pid in row['blocked_by']]
        chains.append(row)
    roots = [blockers[p] for p in pids if p not in waiting and p in blockers]
    warn, crit = opts.lock_wait_warning_seconds, opts.lock_wait_critical_seconds
    longest = chains[0]['wait_seconds'] if chains else None
    status = grade(longest, warn, crit)
    if chains:
        c = chains[0]
        b = c['blockers'][0]
        summary = ('%d session(s) wait for locks; the longest, pid %d (%s), has waited %s for pid %d (%s, %s: %s).'
                   % (len(chains), c['pid'], (c['query'] or '')[:100], seconds_text(longest), b['pid'],
                      b.get('state'), 'transaction open %s' % seconds_text(b.get('transaction_seconds')),
                      (b.get('query') or '')[:100]))
    else:
        summary = 'No session waits for a lock held by another.'
    details = dict(blocked=chains, root_blockers=roots, waiting_sessions=len(chains),
                   longest_wait_seconds=longest)
    return result('blocking_locks', status, summary, details, dict(warning_seconds=warn, critical_seconds=crit))


# The largest tables by heap + TOAST pages (what pg_table_size counts), then their indexes added for
# those only: one pass over pg_class, fast with tens of thousands of relations.
_SIZES_SQL = """
SELECT top.schema, top.name, top.bytes,
       top.bytes + coalesce((SELECT sum(i.relpages) FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
                              WHERE x.indrelid = top.oid), 0)::bigint * current_setting('block_size')::bigint
         AS total_bytes,
       top.estimated_rows
  FROM (SELECT c.oid, n.nspname AS schema, c.relname AS name,
               (c.relpages::bigint + coalesce((SELECT t.relpages FROM pg_class t WHERE t.oid = c.reltoastrelid), 0))
                 * current_setting('block_size')::bigint AS bytes,
               greatest(c.reltuples, 0)::bigint AS estimated_rows
          FROM pg_class c
          JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
           AND n.nspname !~ '^pg_toast'
         ORDER BY bytes DESC, 2, 3
         LIMIT %s) top
 ORDER BY top.bytes DESC, 1, 2
"""

_INDEX_SIZES_SQL = """
SELECT top.schema, top.name, (SELECT t.relname FROM pg_class t WHERE t.oid = top.indrelid) AS table, top.bytes
  FROM (SELECT n.nspname AS schema, c.relname AS name,
               (SELECT x.indrelid FROM pg_index x WHERE x.indexrelid = c.oid) AS indrelid,
               c.relpages::bigint * current_setting('block_size')::bigint AS bytes
          FROM pg_class c
          JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind = 'i' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
           AND n.nspname !~ '^pg_toast'
         ORDER BY c.relpages DESC, 1, 2
         LIMIT %s) top
 ORDER BY top.bytes DESC, 1, 2
"""


def check_sizes(session, opts):
    databases = _rows(session, """
        SELECT datname AS database,
               CASE WHEN has_database_privilege(datname, 'CONNECT') THEN pg_database_size(oid) END AS bytes
          FROM pg_database WHERE datallowconn ORDER BY 2 DESC NULLS LAST, 1""")
    tables = _rows(session, _SIZES_SQL, (opts.top_n,))
    indexes = _rows(session, _INDEX_SIZES_SQL, (opts.top_n,))
    total = sum(d['bytes'] or 0 for d in databases)
    parts = ['%d database(s), %s in all' % (len(databases), human_bytes(total))]
    if databases:
        parts.append('largest database %s (%s)' % (databases[0]['database'], human_bytes(databases[0]['bytes'])))
    if tables:
        parts.append('largest table in %s: %s.%s (%s with indexes and TOAST)' % (
            session.dbname, tables[0]['schema'], tables[0]['name'], human_bytes(tables[0]['total_bytes'])))
    details = dict(databases=databases, largest_tables=tables, largest_indexes=indexes, database=session.dbname,
                   note='table and index sizes are pg_class.relpages (as of the last VACUUM, ANALYZE or '
                        'CREATE INDEX), read without opening the relations')
    return result('sizes', 'ok', '; '.join(parts) + '.', details, dict(top_n=opts.top_n))


def check_cache_hit(session, opts):
    rows = _rows(session, """
        SELECT coalesce(datname, '(shared)') AS database, blks_hit::bigint AS hits, blks_read::bigint AS reads
          FROM pg_stat_database ORDER BY blks_hit + blks_read DESC""")
    hits = sum(r['hits'] for r in rows)
    reads = sum(r['reads'] for r in rows)
    for r in rows:
        total = r['hits'] + r['reads']
        r['hit_pct'] = round(100.0 * r['hits'] / total, 2) if total else None
    thresholds = dict(warning_pct=opts.cache_hit_warning_pct, critical_pct=opts.cache_hit_critical_pct,
                      min_reads=opts.cache_hit_min_reads)
    details = dict(hits=hits, reads=reads, by_database=rows[:opts.top_n])
    if hits + reads < opts.cache_hit_min_reads:
        details['hit_pct'] = None
        return result('cache_hit', 'skipped', 'Only %d block accesses since the statistics were reset; the cache '
                      'hit ratio is judged from %d (cache_hit_min_reads).' % (hits + reads, opts.cache_hit_min_reads),
                      details, thresholds)
    pct = round(100.0 * hits / (hits + reads), 2)
    details['hit_pct'] = pct
    status = grade(pct, opts.cache_hit_warning_pct, opts.cache_hit_critical_pct, lower_is_worse=True)
    return result('cache_hit', status, 'Cache hit ratio %s%% over %d block accesses (%d read from disk or the OS '
                  'cache).' % (pct, hits + reads, reads), details, thresholds)


def check_unused_indexes(session, opts):
    rows = _rows(session, """
        SELECT n.nspname AS schema, t.relname AS table, c.relname AS index,
               c.relpages::bigint * current_setting('block_size')::bigint AS bytes
          FROM pg_index x
          JOIN pg_class c ON c.oid = x.indexrelid
          JOIN pg_class t ON t.oid = x.indrelid
          JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE NOT x.indisunique AND NOT x.indisprimary AND x.indisvalid
           AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast'
           AND x.indexrelid NOT IN (SELECT k.conindid FROM pg_constraint k WHERE k.conindid <> 0)
           AND pg_stat_get_numscans(x.indexrelid) = 0
         ORDER BY bytes DESC, 1, 2, 3""")
    since = _one(session, 'SELECT stats_reset::text AS since FROM pg_stat_database WHERE datname = '
                          'current_database()')
    flagged = [r for r in rows if (r['bytes'] or 0) >= opts.unused_index_min_bytes]
    status = 'warning' if flagged else 'ok'
    if flagged:
        summary = ('%d index(es) in %s never scanned since the statistics were reset, %s in all (largest %s.%s, %s); '
                   'drop them if no query needs them.' % (
                       len(flagged), session.dbname, human_bytes(sum(r['bytes'] for r in flagged)),
                       flagged[0]['schema'], flagged[0]['index'], human_bytes(flagged[0]['bytes'])))
    else:
        summary = 'No unused index of %s or more in %s.' % (human_bytes(opts.unused_index_min_bytes), session.dbname)
    details = dict(unused=flagged[:max(opts.top_n, 1) * 5], unused_count=len(flagged), below_min_size=len(rows) -
                   len(flagged), stats_since=(since or {}).get('since'), database=session.dbname)
    return result('unused_indexes', status, summary, details, dict(min_bytes=opts.unused_index_min_bytes))


def check_invalid_indexes(session, opts):
    rows = _rows(session, """
        SELECT n.nspname AS schema, t.relname AS table, c.relname AS index, x.indisunique AS is_unique,
               x.indisready AS ready
          FROM pg_index x
          JOIN pg_class c ON c.oid = x.indexrelid
          JOIN pg_class t ON t.oid = x.indrelid
          JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE NOT x.indisvalid
         ORDER BY 1, 3""")
    for row in rows:
        row['fix'] = 'DROP INDEX CONCURRENTLY %s; then create it again (or REINDEX INDEX CONCURRENTLY %s)' % (
            _qualified(row['schema'], row['index']), _qualified(row['schema'], row['index']))
    if rows:
        summary = ('%d invalid index(es) in %s (a failed CREATE INDEX CONCURRENTLY or REINDEX): %s; they are '
                   'maintained on every write but never used.' % (
                       len(rows), session.dbname, ', '.join('%s.%s' % (r['schema'], r['index']) for r in rows[:5])))
    else:
        summary = 'No invalid index in %s.' % session.dbname
    return result('invalid_indexes', 'warning' if rows else 'ok', summary,
                  dict(invalid=rows, database=session.dbname), {})


def _qualified(schema, name):
    return '.'.join('"%s"' % part.replace('"', '""') for part in (schema, name))


def check_dead_tuples(session, opts):
    rows = _rows(session, """
        SELECT schema, "table", live_tuples, dead_tuples,
               round(100.0 * dead_tuples / greatest(live_tuples + dead_tuples, 1), 1)::float8 AS dead_pct,
               last_vacuum::text, last_autovacuum::text, last_analyze::text, last_autoanalyze::text,
               extract(epoch FROM now() - greatest(last_vacuum, last_autovacuum))::float8 AS seconds_since_vacuum,
               extract(epoch FROM now() - greatest(last_analyze, last_autoanalyze))::float8 AS seconds_since_analyze,
               autovacuum_enabled
          FROM (SELECT n.nspname AS schema, c.relname AS "table",
                       pg_stat_get_live_tuples(c.oid) AS live_tuples, pg_stat_get_dead_tuples(c.oid) AS dead_tuples,
                       pg_stat_get_last_vacuum_time(c.oid) AS last_vacuum,
                       pg_stat_get_last_autovacuum_time(c.oid) AS last_autovacuum,
                       pg_stat_get_last_analyze_time(c.oid) AS last_analyze,
                       pg_stat_get_last_autoanalyze_time(c.oid) AS last_autoanalyze,
                       coalesce((SELECT o.option_value::bool FROM pg_options_to_table(c.reloptions) o
                                  WHERE o.option_name = 'autovacuum_enabled'), true) AS autovacuum_enabled
                  FROM pg_class c
                  JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
                   AND n.nspname !~ '^pg_toast' AND pg_stat_get_dead_tuples(c.oid) >= %s) s
         ORDER BY dead_pct DESC, dead_tuples DESC, 1, 2""", (opts.dead_tuples_min,))
    warn, crit = opts.dead_tuples_warning_pct, opts.dead_tuples_critical_pct
    for row in rows:
        row['status'] = grade(row['dead_pct'], warn, crit)
    flagged = [r for r in rows if r['status'] != 'ok']
    status = worst(r['status'] for r in flagged)
    if flagged:
        t = flagged[0]
        summary = ('%d table(s) in %s with more than %s%% dead rows; worst %s.%s: %d dead of %d (%s%%), last vacuum '
                   '%s ago%s.' % (
                       len(flagged), session.dbname, warn, t['schema'], t['table'], t['dead_tuples'],
                       t['live_tuples'] + t['dead_tuples'], t['dead_pct'],
                       seconds_text(t['seconds_since_vacuum']) if t['seconds_since_vacuum'] is not None else 'never',
                       '' if t['autovacuum_enabled'] else ', autovacuum is off on it'))
        summary = summary.replace('last vacuum never ago', 'never vacuumed')
    else:
        summary = 'No table in %s has more than %s%% dead rows (of tables with %d dead rows or more).' % (
            session.dbname, warn, opts.dead_tuples_min)
    thresholds = dict(warning_pct=warn, critical_pct=crit, min_dead_tuples=opts.dead_tuples_min)
    return result('dead_tuples', status, summary, dict(tables=flagged[:opts.top_n * 5] or rows[:opts.top_n],
                                                       flagged=len(flagged), database=session.dbname), thresholds)


def check_wraparound(session, opts):
    rows = _rows(session, """
        SELECT datname AS database, age(datfrozenxid)::bigint AS xid_age, mxid_age(datminmxid)::bigint AS mxid_age
          FROM pg_database ORDER BY 2 DESC, 1""")
    warn, crit = opts.wraparound_warning_pct, opts.wraparound_critical_pct
    for row in rows:
        row['xid_pct'] = round(100.0 * row['xid_age'] / XID_LIMIT, 2)
        row['mxid_pct'] = round(100.0 * row['mxid_age'] / XID_LIMIT, 2)
        row['status'] = grade(max(row['xid_pct'], row['mxid_pct']), warn, crit)
    status = worst(r['status'] for r in rows)
    top = max(rows, key=lambda r: max(r['xid_pct'], r['mxid_pct']))
    summary = ('Oldest unfrozen transaction ID: database %s at age %d (%s%% of the 2^31 wraparound limit; '
               'multixact age %d).' % (top['database'], top['xid_age'], top['xid_pct'], top['mxid_age']))
    if status != 'ok':
        summary += ' VACUUM (FREEZE) the oldest tables of that database before it reaches the limit.'
    return result('wraparound', status, summary, dict(databases=rows, limit=XID_LIMIT),
                  dict(warning_pct=warn, critical_pct=crit))


# A standby's replay lag, 0 once replay has caught up with what it received (as replication_info reports it).
_REPLAY_LAG_SQL = """
SELECT CASE WHEN pg_last_wal_receive_lsn() IS NOT NULL AND pg_last_wal_replay_lsn() >= pg_last_wal_receive_lsn()
            THEN 0.0 ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8 END
"""


def _replication_state(session):
    """Senders, receiver and slots with replication_info's own queries (without its pg_control_* reads,
    which need a superuser), read once per run for both replication checks."""
    if 'replication' not in session.cache:
        import psycopg2
        node = dict(role='standby' if session.in_recovery else 'primary', error=None, senders=[], receiver=None,
                    slots=[], replay_lag_seconds=None)
        try:
            with session.conn.cursor() as cur:
                cur.execute(info.SENDERS_SQL)
                node['senders'] = [dict(zip(info.SENDER_KEYS, row)) for row in cur.fetchall()]
                cur.execute(info.SLOTS_SQL)
                node['slots'] = [dict(zip(info.SLOT_KEYS, row)) for row in cur.fetchall()]
                if session.in_recovery:
                    cur.execute(info.RECEIVER_SQL)
                    row = cur.fetchone()
                    node['receiver'] = dict(zip(info.RECEIVER_KEYS, row)) if row else None
                    cur.execute(_REPLAY_LAG_SQL)
                    node['replay_lag_seconds'] = cur.fetchone()[0]
        except psycopg2.Error as exc:
            node['error'] = _first_line(exc)
        session.cache['replication'] = node
    return session.cache['replication']


def check_replication(session, opts):
    node = _replication_state(session)
    thresholds = dict(warning_bytes=opts.replication_lag_warning_bytes,
                      critical_bytes=opts.replication_lag_critical_bytes,
                      warning_seconds=opts.replication_lag_warning_seconds,
                      critical_seconds=opts.replication_lag_critical_seconds)
    if node.get('error'):
        return result('replication', 'warning', 'Could not read the replication state: %s' % node['error'],
                      dict(error=node['error']), thresholds)
    senders = node['senders']
    for s in senders:
        s['status'] = worst([
            grade(s.get('replay_lag_bytes'), opts.replication_lag_warning_bytes, opts.replication_lag_critical_bytes),
            grade(s.get('replay_lag_seconds'), opts.replication_lag_warning_seconds,
                  opts.replication_lag_critical_seconds),
            'ok' if s.get('state') == 'streaming' else 'warning'])
    statuses = [s['status'] for s in senders]
    details = dict(role=node['role'], senders=senders, receiver=node.get('receiver'),
                   replay_lag_seconds=node.get('replay_lag_seconds'))
    if node['role'] == 'standby':
        streaming = (node.get('receiver') or {}).get('status') == 'streaming'
        statuses.append('ok' if streaming else 'warning')
        statuses.append(grade(node.get('replay_lag_seconds'), opts.replication_lag_warning_seconds,
                              opts.replication_lag_critical_seconds))
        summary = 'Standby %s from its primary, replay lag %s.' % (
            'streaming' if streaming else 'NOT streaming', seconds_text(node.get('replay_lag_seconds')))
    elif senders:
        lag = max(senders, key=lambda s: s.get('replay_lag_bytes') or 0)
        summary = '%d standby(s) connected; largest replay lag %s (%s, %s).' % (
            len(senders), human_bytes(lag.get('replay_lag_bytes')), lag.get('application_name'), lag.get('state'))
    else:
        summary = 'Primary with no standby connected.'
    return result('replication', worst(statuses), summary, details, thresholds)


def check_replication_slots(session, opts):
    node = _replication_state(session)
    thresholds = dict(warning_bytes=opts.slot_retained_warning_bytes, critical_bytes=opts.slot_retained_critical_bytes)
    if node.get('error'):
        return result('replication_slots', 'warning', 'Could not read the replication slots: %s' % node['error'],
                      dict(error=node['error']), thresholds)
    slots = node['slots']
    for s in slots:
        if s.get('wal_status') == 'lost':
            s['status'] = 'critical'
        elif s.get('active'):
            s['status'] = 'ok'
        else:
            s['status'] = grade(s.get('retained_bytes') or 0, opts.slot_retained_warning_bytes,
                                opts.slot_retained_critical_bytes)
    flagged = [s for s in slots if s['status'] != 'ok']
    if flagged:
        s = max(flagged, key=lambda x: (x.get('retained_bytes') or 0))
        summary = ('%d replication slot(s) nobody reads hold back WAL; %s (%s) retains %s%s: drop it with '
                   "pg_drop_replication_slot('%s') if its consumer is gone." % (
                       len(flagged), s['slot_name'], s['slot_type'], human_bytes(s.get('retained_bytes')),
                       ', its WAL is already lost' if s.get('wal_status') == 'lost' else '', s['slot_name']))
    elif slots:
        summary = '%d replication slot(s), none inactive and holding back WAL beyond the limit.' % len(slots)
    else:
        summary = 'No replication slot.'
    return result('replication_slots', worst(s['status'] for s in flagged), summary,
                  dict(slots=slots, inactive=[s['slot_name'] for s in slots if not s.get('active')]), thresholds)


def check_statements(session, opts):
    ext = _one(session, """
        SELECT n.nspname AS schema FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
         WHERE e.extname = 'pg_stat_statements'""")
    if not ext:
        return result('statements', 'skipped', 'pg_stat_statements is not installed in database %s (add it to '
                      'shared_preload_libraries and CREATE EXTENSION pg_stat_statements there).' % session.dbname,
                      dict(database=session.dbname), dict(top_n=opts.top_n))
    from psycopg2 import sql
    view = sql.SQL('{}.pg_stat_statements').format(sql.Identifier(ext['schema']))
    columns = sql.SQL("""SELECT s.queryid, r.rolname AS user, d.datname AS database, s.calls,
                                round(s.total_exec_time::numeric, 3)::float8 AS total_ms,
                                round(s.mean_exec_time::numeric, 3)::float8 AS mean_ms, s.rows, s.query
                           FROM {} s LEFT JOIN pg_roles r ON r.oid = s.userid
                           LEFT JOIN pg_database d ON d.oid = s.dbid
                          ORDER BY {} DESC LIMIT %s""")
    import psycopg2
    try:
        by_total = _rows(session, columns.format(view, sql.SQL('s.total_exec_time')), (opts.top_n,))
        by_mean = _rows(session, columns.format(view, sql.SQL('s.mean_exec_time')), (opts.top_n,))
    except psycopg2.Error as exc:
        return result('statements', 'skipped', 'pg_stat_statements is installed in %s but cannot be read: %s' % (
            session.dbname, _first_line(exc)), dict(database=session.dbname, error=_first_line(exc)),
            dict(top_n=opts.top_n))
    for row in by_total + by_mean:
        row['query'] = _query(row['query'])
    if by_total:
        summary = 'Top statement by total time: %.0f ms in %d call(s): %s' % (
            by_total[0]['total_ms'], by_total[0]['calls'], (by_total[0]['query'] or '')[:120])
    else:
        summary = 'pg_stat_statements has recorded no statement yet.'
    return result('statements', 'ok', summary, dict(by_total_time=by_total, by_mean_time=by_mean,
                                                    database=session.dbname), dict(top_n=opts.top_n))


def check_pending_restart(session, opts):
    rows = _rows(session, """
        SELECT name, current_setting(name) AS running_value, context
          FROM pg_settings WHERE pending_restart ORDER BY name""")
    if rows:
        summary = '%d setting(s) changed but only take effect after a restart: %s.' % (
            len(rows), ', '.join(r['name'] for r in rows))
    else:
        summary = 'No setting waits for a restart.'
    return result('pending_restart', 'warning' if rows else 'ok', summary, dict(settings=rows), {})


def _first_line(exc):
    text = (getattr(exc, 'pgerror', None) or str(exc) or exc.__class__.__name__).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    first = lines[0] if lines else exc.__class__.__name__
    return re.sub(r'^(ERROR|FATAL):\s*', '', first)


# The checks in the order they run and are reported.
CHECKS = (
    ('connections', check_connections),
    ('sessions', check_sessions),
    ('long_running', check_long_running),
    ('blocking_locks', check_blocking_locks),
    ('sizes', check_sizes),
    ('cache_hit', check_cache_hit),
    ('unused_indexes', check_unused_indexes),
    ('invalid_indexes', check_invalid_indexes),
    ('dead_tuples', check_dead_tuples),
    ('wraparound', check_wraparound),
    ('replication', check_replication),
    ('replication_slots', check_replication_slots),
    ('statements', check_statements),
    ('pending_restart', check_pending_restart),
)
CHECK_NAMES = tuple(name for name, _fn in CHECKS)


def run_check(name, fn, session, opts):
    """One check; an error while it runs (a timeout, a missing privilege) is its warning, not the run's end."""
    import psycopg2
    try:
        return fn(session, opts)
    except psycopg2.Error as exc:
        message = _first_line(exc)
        return result(name, 'warning', 'The check could not run: %s' % message, dict(error=message), {})
