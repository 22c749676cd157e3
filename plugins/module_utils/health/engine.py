# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Is this database healthy, and if not, what is wrong: the health engine.

    engine = HealthEngine(ConnParams(...), HealthOptions(fail_on='never'))
    plan = engine.plan()          # connects read-only, runs every check, computes the advice
    plan.result()['status']       # 'ok', 'warning' or 'critical'
    engine.apply(plan)            # with apply=true: ALTER SYSTEM the low-risk advice, pg_reload_conf()

The session is read-only (``default_transaction_read_only``), carries its own
``lock_timeout`` and ``statement_timeout`` and the application name
``dbdevops-health``; the checks read catalog and statistics views only
(``checks.py``).  A server that cannot be reached is a result, not an
exception: the ``connection`` check is critical with the cause and every other
check is skipped.  The overall status is the worst of the checks, and never
``ok`` when no check ran.  ``fail_on`` turns a status at or above it into a
``DbDevopsError`` carrying the whole result (check mode included).  The only
writes are ``apply``'s ``ALTER SYSTEM`` and ``pg_reload_conf()``.  No Ansible imports.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import dataclasses
import datetime
import time

from ansible_collections.dbdevops.postgresql.plugins.module_utils import _tuning
from ansible_collections.dbdevops.postgresql.plugins.module_utils._contract import Plan, finish
from ansible_collections.dbdevops.postgresql.plugins.module_utils._options import option
from ansible_collections.dbdevops.postgresql.plugins.module_utils.connection import connect
from ansible_collections.dbdevops.postgresql.plugins.module_utils.errors import DbDevopsError
from ansible_collections.dbdevops.postgresql.plugins.module_utils.health import advice, checks

APPLICATION_NAME = 'dbdevops-health'
FAIL_ON = ('critical', 'warning', 'never')
GiB = 1024 ** 3
MiB = 1024 ** 2


@dataclasses.dataclass
class HealthOptions(object):
    """The options of health_info and of the health CLI's config file."""
    fail_on: str = option('critical', choices=list(FAIL_ON), cli=False)
    skip_checks: list = option([], type='list', elements='str')
    connect_timeout: int = option(5, type='int')
    statement_timeout_ms: int = option(10000, type='int')
    lock_timeout_ms: int = option(1000, type='int')
    top_n: int = option(10, type='int')
    connections_warning_pct: float = option(80.0, type='float')
    connections_critical_pct: float = option(95.0, type='float')
    idle_in_transaction_warning_seconds: float = option(60.0, type='float')
    idle_in_transaction_critical_seconds: float = option(600.0, type='float')
    long_query_warning_seconds: float = option(300.0, type='float')
    long_query_critical_seconds: float = option(1800.0, type='float')
    long_transaction_warning_seconds: float = option(600.0, type='float')
    long_transaction_critical_seconds: float = option(3600.0, type='float')
    lock_wait_warning_seconds: float = option(10.0, type='float')
    lock_wait_critical_seconds: float = option(60.0, type='float')
    cache_hit_warning_pct: float = option(95.0, type='float')
    cache_hit_critical_pct: float = option(90.0, type='float')
    cache_hit_min_reads: int = option(10000, type='int')
    unused_index_min_bytes: int = option(MiB, type='int')
    dead_tuples_warning_pct: float = option(20.0, type='float')
    dead_tuples_critical_pct: float = option(50.0, type='float')
    dead_tuples_min: int = option(1000, type='int')
    wraparound_warning_pct: float = option(50.0, type='float')
    wraparound_critical_pct: float = option(75.0, type='float')
    replication_lag_warning_bytes: int = option(100 * MiB, type='int')
    replication_lag_critical_bytes: int = option(GiB, type='int')
    replication_lag_warning_seconds: float = option(60.0, type='float')
    replication_lag_critical_seconds: float = option(300.0, type='float')
    slot_retained_warning_bytes: int = option(GiB, type='int')
    slot_retained_critical_bytes: int = option(10 * GiB, type='int')
    advice: bool = option(True, type='bool')
    apply: bool = option(False, type='bool', cli=False)
    memory_mb: int = option(None, type='int')
    cpus: int = option(None, type='int')
    tuning_workload: str = option('mixed', choices=list(_tuning.WORKLOADS))
    tuning_storage: str = option('ssd', choices=list(_tuning.STORAGE_TYPES))


def target_label(params):
    """host:port/db as reports name the server (``localhost`` over a Unix socket)."""
    return '%s:%s/%s' % (params.login_host or 'localhost', params.login_port, params.dbname)


def utc_now():
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat().replace('+00:00', 'Z')


class Session(object):
    """The one read-only session the checks share."""

    def __init__(self, params, opts):
        self.params = params
        self.label = target_label(params)
        self.dbname = params.dbname
        self.cache = {}
        bounded = params.replace(connect_params=dict(params.connect_params, connect_timeout=opts.connect_timeout))
        self.conn = connect(bounded, autocommit=True, application_name=APPLICATION_NAME)
        try:
            with self.conn.cursor() as cur:
                cur.execute('SET default_transaction_read_only = on')
                cur.execute("SELECT set_config('lock_timeout', %s, false), "
                            "set_config('statement_timeout', %s, false)",
                            ('%dms' % opts.lock_timeout_ms, '%dms' % opts.statement_timeout_ms))
                cur.execute("""SELECT current_setting('server_version_num')::int, current_setting('server_version'),
                                      pg_is_in_recovery(), current_user::text, current_database()::text,
                                      (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)""")
                (self.server_version_num, self.server_version, self.in_recovery, self.user, self.dbname,
                 self.superuser) = cur.fetchone()
        except Exception:
            self.close()
            raise

    def close(self):
        try:
            self.conn.close()
        except Exception:  # noqa: BLE001 - closing a dead connection
            pass


def _not_run(name, why):
    return checks.result(name, 'skipped', why, {}, {})


def enforce(result, fail_on):
    """Raise DbDevopsError(whole result) when the status is at or above ``fail_on``."""
    if fail_on == 'never' or checks.SEVERITY[result['status']] < checks.SEVERITY[fail_on]:
        return result
    problems = [c for c in result['checks'] if c['status'] in ('warning', 'critical')]
    message = 'PostgreSQL at %s is %s (fail_on=%s): %s' % (
        result['target'], result['status'], fail_on,
        '; '.join('%s %s: %s' % (c['status'], c['name'], c['summary']) for c in problems) or 'no check ran')
    raise DbDevopsError(message, **result)


def summary_text(target, status, counts, results):
    lines = ['%s: %s (ok=%d warning=%d critical=%d skipped=%d)' % (
        target, status, counts['ok'], counts['warning'], counts['critical'], counts['skipped'])]
    for level in ('critical', 'warning'):
        lines.extend('%s %s: %s' % (c['status'], c['name'], c['summary']) for c in results if c['status'] == level)
    skipped = {}
    for c in results:
        if c['status'] == 'skipped':
            skipped.setdefault(c['summary'], []).append(c['name'])
    for why, names in skipped.items():
        lines.append('skipped %s: %s' % (', '.join(names), why))
    return '\n'.join(lines)


class HealthPlan(Plan):
    """A Plan whose check-mode answer honours ``fail_on``."""

    def __init__(self, fail_on, *args, **kwargs):
        super(HealthPlan, self).__init__(*args, **kwargs)
        self.fail_on = fail_on

    def report(self):
        """The result without ``fail_on`` (for callers that judge the status themselves)."""
        return super(HealthPlan, self).result()

    def result(self):
        return enforce(self.report(), self.fail_on)


class HealthEngine(object):
    """health_info as an engine: ``plan()`` reads everything, ``apply(plan)`` applies the low-risk advice."""

    def __init__(self, params, options):
        unknown = sorted(set(options.skip_checks) - set(checks.CHECK_NAMES))
        if unknown:
            raise DbDevopsError('skip_checks names unknown check(s) %s; the checks are %s'
                                % (', '.join(unknown), ', '.join(checks.CHECK_NAMES)))
        self.params = params
        self.options = options

    def plan(self):
        opts = self.options
        started = time.monotonic()
        checked_at = utc_now()
        target = target_label(self.params)
        warnings, recs, inputs = [], [], {}
        server = dict(version=None, in_recovery=None)
        t0 = time.monotonic()
        try:
            session = Session(self.params, opts)
        except DbDevopsError as exc:
            results = [checks.result('connection', 'critical', str(exc), dict(error=str(exc)), {})]
            results += [_not_run(name, 'not run: no connection') for name in checks.CHECK_NAMES]
            session = None
        if session is not None:
            try:
                server = dict(version=session.server_version, in_recovery=session.in_recovery)
                results = [checks.result(
                    'connection', 'ok', 'Connected to PostgreSQL %s (%s) as %s in %d ms.' % (
                        session.server_version, 'standby' if session.in_recovery else 'primary', session.user,
                        int((time.monotonic() - t0) * 1000)),
                    dict(server_version=session.server_version, server_version_num=session.server_version_num,
                         in_recovery=session.in_recovery, user=session.user, database=session.dbname,
                         superuser=session.superuser, application_name=APPLICATION_NAME),
                    dict(connect_timeout=opts.connect_timeout, statement_timeout_ms=opts.statement_timeout_ms,
                         lock_timeout_ms=opts.lock_timeout_ms))]
                for name, fn in checks.CHECKS:
                    if name in opts.skip_checks:
                        results.append(_not_run(name, 'skipped: listed in skip_checks'))
                    else:
                        results.append(checks.run_check(name, fn, session, opts))
                if opts.advice:
                    recs, inputs = self._advise(session, results, warnings)
            finally:
                session.close()
        to_apply = [r for r in recs if advice.appliable(r)] if opts.apply else []
        for rec in to_apply:
            rec['action'] = 'would apply'
        values = self._values(target, checked_at, server, results, recs, inputs, started)
        values['applied'] = [r['setting'] for r in to_apply]
        diff = None
        if to_apply:
            diff = dict(before=dict((r['setting'], r['current']) for r in to_apply),
                        after=dict((r['setting'], r['recommended']) for r in to_apply))
        return HealthPlan(opts.fail_on, bool(to_apply), values=values, diff=diff, warnings=warnings,
                          work=dict(to_apply=to_apply))

    def _advise(self, session, results, warnings):
        import psycopg2
        try:
            return advice.advise(session, self.options, dict((c['name'], c) for c in results))
        except (psycopg2.Error, DbDevopsError) as exc:
            warnings.append('no tuning advice: %s' % checks._first_line(exc))
            return [], {}

    def _values(self, target, checked_at, server, results, recs, inputs, started):
        counts = dict((s, 0) for s in checks.STATUSES)
        for c in results:
            counts[c['status']] += 1
        ran = [c for c in results if c['name'] != 'connection' and c['status'] != 'skipped']
        status = checks.worst(c['status'] for c in results)
        if not ran and status != 'critical':
            status = 'critical'
            results.append(checks.result('checks_run', 'critical', 'No check ran, so nothing says this server is '
                                         'healthy.', {}, {}))
            counts['critical'] += 1
        elif status == 'skipped':
            status = 'ok'
        return dict(status=status, target=target, checked_at=checked_at, server_version=server['version'],
                    in_recovery=server['in_recovery'], checks=results, counts=counts,
                    summary=summary_text(target, status, counts, results), advice=recs, tuning_inputs=inputs,
                    duration_ms=int(round((time.monotonic() - started) * 1000)))

    def apply(self, plan):
        to_apply = plan.work.get('to_apply') or []
        values = dict(plan.values)
        if to_apply:
            self._alter_system(to_apply)
            for rec in to_apply:
                rec['action'] = 'applied'
        return enforce(finish(values, changed=bool(to_apply), diff=plan.diff, warnings=plan.warnings),
                       self.options.fail_on)

    def _alter_system(self, recs):
        import psycopg2
        from psycopg2 import sql
        opts = self.options
        try:
            conn = connect(self.params, autocommit=True, application_name=APPLICATION_NAME)
        except DbDevopsError as exc:
            raise DbDevopsError('cannot apply the tuning advice: %s' % exc)
        current = None
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT set_config('lock_timeout', %s, false), set_config('statement_timeout', %s, false)",
                            ('%dms' % opts.lock_timeout_ms, '%dms' % opts.statement_timeout_ms))
                for rec in recs:
                    current = rec['setting']
                    cur.execute(sql.SQL('ALTER SYSTEM SET {} = %s').format(sql.Identifier(rec['setting'])),
                                (rec['recommended'],))
                current = None
                cur.execute('SELECT pg_reload_conf()')
            probe = _Probe(conn)
            deadline = time.monotonic() + 10
            while not advice.applied_now(probe, recs):
                if time.monotonic() > deadline:
                    raise DbDevopsError('ALTER SYSTEM set %s, but after pg_reload_conf() the server still shows '
                                        'other values: check postgresql.conf include files and the server log'
                                        % ', '.join(r['setting'] for r in recs))
                time.sleep(0.1)
        except psycopg2.Error as exc:
            raise DbDevopsError('cannot apply the tuning advice%s at %s: %s (ALTER SYSTEM needs a superuser or the '
                                'ALTER SYSTEM privilege on the parameter)' % (
                                    ' (setting %s)' % current if current else '', target_label(self.params),
                                    checks._first_line(exc)))
        finally:
            conn.close()


class _Probe(object):
    def __init__(self, conn):
        self.conn = conn
