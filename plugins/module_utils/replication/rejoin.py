# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Internal: ``failover_drill`` with ``mode: rejoin``, run on the old primary's host after a failover.

The connection blocks keep the names they had in the drill: ``primary`` is
the old primary (on this host, controlled through ``primary_data_dir`` or
``primary_cluster``), ``standby`` the node that was promoted (the new
primary, reached over the network).  After a ``fault: partition`` drill the
old primary may still run as a primary on the old timeline: it is stopped
first (fenced: fast, then immediate), then rewound from the new primary
(``CHECKPOINT`` there, ``pg_rewind``, the password through an in-memory
passfile), given ``standby.signal`` and a ``primary_conninfo`` pointing at the
new primary, started, and must stream from it on the new timeline.  A node
that already streams from the new primary on its timeline is left alone
(``changed: false``).  ``plan()`` refuses, touching nothing, when the "new
primary" is not a primary on a newer timeline, when the data directory is
not on this host or belongs to another cluster, or when pg_rewind could not
work (no ``wal_log_hints`` or data checksums, ``full_page_writes`` off on the
new primary).  No Ansible imports.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import time

from ansible_collections.dbdevops.postgresql.plugins.module_utils import datacompare
from ansible_collections.dbdevops.postgresql.plugins.module_utils._contract import Plan, finish
from ansible_collections.dbdevops.postgresql.plugins.module_utils.errors import DbDevopsError
from ansible_collections.dbdevops.postgresql.plugins.module_utils.replication import info, report
from ansible_collections.dbdevops.postgresql.plugins.module_utils.replication.drill import (
    DrillInterrupted, DrillRefused, FailoverDrillEngine, _round, validate)

try:
    from psycopg2.extensions import make_dsn, parse_dsn
except ImportError:  # pragma: no cover - reported by connect()
    make_dsn = parse_dsn = None


class RejoinEngine(FailoverDrillEngine):
    """Rewind the old primary (``primary`` block, this host) and make it a standby of ``standby``."""

    def _refuse(self, reasons, checks, nodes):
        raise DrillRefused('refusing to rejoin %s, nothing was touched: %s'
                           % (self.labels['primary'], '; '.join(reasons)), pre_checks=checks, nodes=nodes)

    def prechecks(self):
        """Read both nodes and the local control file; returns the facts ``apply`` needs."""
        opts = self.options
        old = info.read_node(self.params['primary'], self.labels['primary'], 2)
        new = info.read_node(self.params['standby'], self.labels['standby'], 5)
        nodes = [old, new]
        reasons, checks = [], []

        def check(name, ok, detail):
            checks.append(dict(check=name, ok=bool(ok), detail=detail))
            if not ok:
                reasons.append(detail)

        check('new primary reachable', new['reachable'],
              new['error'] or '%s answers' % self.labels['standby'])
        if reasons:
            self._refuse(reasons, checks, nodes)
        check('new primary is a primary', new['role'] == 'primary',
              '%s is a %s' % (self.labels['standby'], new['role']) if new['role'] == 'primary' else
              '%s is in recovery (a standby), not a primary: there is no new primary to rejoin (in mode rejoin the '
              'standby option names the node that was promoted)' % self.labels['standby'])
        if reasons:
            self._refuse(reasons, checks, nodes)
        settings_new = self._settings('standby')
        settings_old = self._settings('primary') if old['reachable'] else {}
        major = new['server_version_num'] // 10000
        control = self._control('primary', settings_old, major)
        self.controls['primary'] = control
        here = False
        try:
            if not control.data_dir and not control.cluster:
                raise DbDevopsError('%s does not answer and neither primary_data_dir nor primary_cluster is set: '
                                    'name the data directory to rewind' % self.labels['primary'])
            control.resolve_data_dir()
            here = os.path.isfile(os.path.join(control.data_dir, 'PG_VERSION'))
            detail = ('%s: %s is here' % (self.labels['primary'], control.describe()) if here else
                      '%s: data directory %s is not on this host: run mode rejoin on the old primary\'s host '
                      '(set primary_data_dir or primary_cluster)' % (self.labels['primary'], control.data_dir))
        except DbDevopsError as exc:
            detail = str(exc)
        check('old primary on this host', here, detail)
        if reasons:
            self._refuse(reasons, checks, nodes)
        try:
            controldata = control.controldata()
            running = control.running()
        except DbDevopsError as exc:
            check('old primary readable', False, str(exc))
            self._refuse(reasons, checks, nodes)
        sysid = controldata.get('Database system identifier')
        check('same cluster', sysid == new['system_identifier'],
              'system identifiers: %s %s, %s %s'
              % (self.labels['primary'], sysid, self.labels['standby'], new['system_identifier']))
        old_timeline = old['timeline'] if old['reachable'] else _int(controldata.get("Latest checkpoint's TimeLineID"))
        receiver = old.get('receiver') or {}
        already = bool(old['role'] == 'standby' and info.streaming(old)
                       and receiver.get('received_tli') == new['timeline']
                       and receiver.get('sender_port') in (None, new['port']))
        if already:
            state = 'standby'
        elif old['role'] == 'primary':
            state = 'primary'
        elif old['role'] == 'standby':
            state = 'standby (not streaming from %s)' % self.labels['standby']
        else:
            state = 'running (unreachable)' if running else 'stopped'
        if not already:
            newer = old_timeline is not None and new['timeline'] is not None and new['timeline'] > old_timeline
            check('new primary on a newer timeline', newer,
                  '%s is on timeline %s, %s on %s' % (self.labels['standby'], new['timeline'], self.labels['primary'],
                                                      old_timeline) if newer else
                  '%s is on timeline %s and %s on %s: the node to rejoin must be behind the promoted one (if both '
                  'are primaries, decide which one keeps the data before rewinding either)'
                  % (self.labels['standby'], new['timeline'], self.labels['primary'], old_timeline))
            hints = controldata.get('wal_log_hints setting') == 'on' or \
                controldata.get('Data page checksum version', '0') != '0'
            check('old primary rewindable', hints, '%s: wal_log_hints or data checksums %s' % (
                self.labels['primary'], 'on' if hints else 'are both off: pg_rewind cannot rejoin it; rebuild it '
                'as a standby (pg_basebackup, the replica role) instead'))
            fpw = settings_new['full_page_writes']
            check('new primary full_page_writes', fpw, '%s: full_page_writes is %s%s' % (
                self.labels['standby'], 'on' if fpw else 'off', '' if fpw else
                ': pg_rewind needs it on the server it rewinds from; set full_page_writes = on (reload)'))
        if reasons:
            self._refuse(reasons, checks, nodes)
        return dict(checks=checks, nodes=nodes, already=already, state=state, running=running,
                    old_timeline=old_timeline, new_timeline=new['timeline'], settings_new=settings_new)

    def planned_steps(self, facts=None):
        facts = facts or {}
        if facts.get('already'):
            return []
        steps = []
        if facts.get('running'):
            steps.append('fence %s: stop it (fast, then immediate)' % self.labels['primary'])
        steps += ['CHECKPOINT on %s' % self.labels['standby'],
                  'pg_rewind %s from %s' % (self.labels['primary'], self.labels['standby']),
                  'write standby.signal and primary_conninfo (pointing at %s)' % self.labels['standby'],
                  'start %s as a standby; wait until it streams on timeline %s'
                  % (self.labels['primary'], facts.get('new_timeline')),
                  'compare the probe table %s (when %s has one)' % (self.options.probe_table, self.labels['standby'])]
        if self.options.report_path:
            steps.append('write the HTML report to %s' % self.options.report_path)
        return steps

    def plan(self):
        validate(self.options)
        facts = self.prechecks()
        already = facts['already']
        values = self._values(pre_checks=facts['checks'], nodes=facts['nodes'], fault=None,
                              steps=[dict(step=s, planned=True) for s in self.planned_steps(facts)],
                              primary_before=self.labels['standby'], old_primary_state=facts['state'],
                              timeline_before=facts['old_timeline'], timeline_after=facts['new_timeline'],
                              verdict='passed' if already else 'planned', passed=already,
                              rejoined=already, streaming=already,
                              primary_after=self.labels['standby'] if already else None)
        return Plan(not already, values=values, work=facts)

    def _rejoin_conninfo(self, settings_new):
        """rejoin_primary_conninfo, else the new primary's own former primary_conninfo (its authentication
        settings) with host and port of the standby block and no application_name (cluster_name applies)."""
        if self.options.rejoin_primary_conninfo:
            return self.options.rejoin_primary_conninfo
        base = settings_new['primary_conninfo'] or ''
        try:
            parts = parse_dsn(base) if base else {}
        except Exception:  # noqa: BLE001 - rebuilt below
            parts = {}
        parts.pop('application_name', None)
        target = self.params['standby']
        parts['host'] = target.host or 'localhost'
        parts['port'] = str(target.login_port)
        parts.setdefault('user', target.login_user)
        return make_dsn(**parts)

    def _fence(self):
        control = self.controls['primary']
        try:
            control.stop('fast')
            how = 'fast'
        except DbDevopsError as exc:
            control.stop('immediate')
            how = 'immediate (fast failed: %s)' % str(exc).strip()
        if control.running():
            raise DbDevopsError('%s still runs after pg_ctl stop' % self.labels['primary'])
        return 'stopped %s' % how

    def _streams_from_new(self, timeline):
        node = info.read_node(self.params['primary'], 'primary', 2)
        return info.streaming(node) and (node.get('receiver') or {}).get('received_tli') == timeline

    def _probe_check(self):
        """The probe table of the drill, compared between the new primary and the rejoined node."""
        opts = self.options
        exists = self._query('standby', 'SELECT to_regclass(%s) IS NOT NULL', (opts.probe_table,),
                             dbname=opts.probe_db)[0] if self._has_db('standby', opts.probe_db) else False
        if not exists:
            return None
        lsn = self._query('standby', 'SELECT pg_current_wal_lsn()::text')[0]
        self._wait('%s replayed %s' % (self.labels['primary'], lsn), lambda: self._replayed_past('primary', lsn),
                   opts.catchup_timeout)
        tables = [opts.probe_table] + list(opts.compare_tables)
        found = datacompare.compare(self.params['standby'].replace(db=opts.probe_db),
                                    self.params['primary'].replace(db=opts.probe_db),
                                    tables=tables, sequences=False, large_objects=False)
        return dict(equal=found['equal'], tables_compared=found['tables_compared'],
                    differences=found['differences'], between=[self.labels['standby'], self.labels['primary']])

    def _has_db(self, node, name):
        return bool(self._query(node, 'SELECT count(*) FROM pg_database WHERE datname = %s', (name,))[0])

    def apply(self, plan):
        opts = self.options
        if not plan.changed:
            return plan.result()
        facts = plan.work
        self.t0 = time.monotonic()
        values = dict(plan.values, steps=[], verdict='not run', passed=False, rejoined=False, streaming=False)
        error = None
        try:
            if facts['running']:
                self._step('fence %s: stop it' % self.labels['primary'], self._fence)
                self._event('old primary fenced (stopped)', time.monotonic())
            self._step('CHECKPOINT on %s' % self.labels['standby'], self._query, 'standby', 'CHECKPOINT')
            conninfo = self._rejoin_conninfo(facts['settings_new'])
            started = time.monotonic()
            self._step('pg_rewind %s from %s' % (self.labels['primary'], self.labels['standby']),
                       self.controls['primary'].rewind, self.params['standby'], conninfo)
            values['rewind_seconds'] = _round(time.monotonic() - started)
            self._step('start %s as a standby' % self.labels['primary'], self.controls['primary'].start)
            self._step('wait until %s streams from %s' % (self.labels['primary'], self.labels['standby']),
                       self._wait, '%s streams from %s on timeline %s' % (
                           self.labels['primary'], self.labels['standby'], facts['new_timeline']),
                       lambda: self._streams_from_new(facts['new_timeline']), opts.catchup_timeout, 0.05)
            self._event('primary rejoined as a standby', time.monotonic())
            values.update(rejoined=True, streaming=True)
            values['data_check'] = self._step('compare the probe table', self._probe_check)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a report with the way back
            error = exc
        values['steps'], values['events'] = self.steps, self.events
        values['nodes'] = [info.read_node(self.params[n], self.labels[n], 2) for n in ('primary', 'standby')]
        primaries = [n for n in values['nodes'] if n['role'] == 'primary']
        values['two_primaries'] = len(primaries) > 1
        values['primary_after'] = primaries[0]['name'] if len(primaries) == 1 else None
        reasons = values['verdict_reasons'] = []
        if error is not None:
            reasons.append('interrupted at step "%s": %s' % (self.current_step, str(error).strip()))
            values['recovery'] = self._rejoin_recovery(values['nodes'])
        if values['two_primaries']:
            reasons.append('two primaries were found')
        check = values.get('data_check')
        if check is not None and not check.get('equal'):
            reasons.append('the data check found differences: %s' % check.get('differences'))
        values['passed'] = not reasons and values['streaming']
        values['verdict'] = 'passed' if values['passed'] else ('interrupted' if error is not None else 'failed')
        if opts.report_path:
            report.write_report(opts.report_path, values)
        result = finish(values, changed=True)
        if error is not None:
            raise DrillInterrupted('rejoin of %s interrupted at step "%s": %s. To recover: %s' % (
                self.labels['primary'], self.current_step, str(error).strip() or repr(error),
                ' / '.join(values['recovery'])), **result)
        if opts.fail_on_verdict and not values['passed']:
            raise DbDevopsError('rejoin of %s failed: %s' % (self.labels['primary'], '; '.join(reasons)), **result)
        return result

    def _rejoin_recovery(self, nodes):
        old, new = nodes
        ctl = self.controls['primary']
        out = ['%s is %s, %s is %s' % (old['name'], old['role'], new['name'], new['role'])]
        if old['role'] == 'unreachable':
            out.append('%s is down (fenced): fix the cause above and run mode rejoin again, or start it as a '
                       'standby by hand (%s) once standby.signal and primary_conninfo point at %s; never start it '
                       'without standby.signal while %s is the primary'
                       % (old['name'], ctl.shell_command('start'), new['name'], new['name']))
        else:
            out.append('check both nodes with dbdevops.postgresql.replication_info')
        return out


def _int(text):
    try:
        return int(text)
    except (TypeError, ValueError):
        return None
