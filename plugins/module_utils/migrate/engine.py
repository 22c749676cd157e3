# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The engines of migrate, migration_info and migration_new, in the shape of ``_contract``.

Plain Python, no Ansible imports::

    engine = MigrateEngine(ConnParams(...), MigrateOptions(path='migrations'))
    plan = engine.plan()            # reads only; plan.result() is the check-mode answer
    result = engine.apply(plan)     # lock, re-read the history under the lock, apply

The parts: ``options`` (what the modules take), ``history`` (the history
table), ``planner`` (which steps), ``lock`` (one run at a time, lock-timeout
retries), ``executor`` (running steps), ``verify`` (verified rollback).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import time

from ansible_collections.dbdevops.postgresql.plugins.module_utils import fingerprint as fpmod
from ansible_collections.dbdevops.postgresql.plugins.module_utils._contract import Plan, finish
from ansible_collections.dbdevops.postgresql.plugins.module_utils.errors import DbDevopsError
from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate import adopt as madopt
from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate import files as mfiles
from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate import lock
from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate import scaffold
from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate.executor import (
    Executor, actor, session_settings)
from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate.history import (
    History, HistoryTable, resolve_table, row_summary)
from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate.planner import (
    all_invalid_indexes, build_plan)
from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate.steps import (
    MigrationError, open_connection, vt)
from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate.verify import (
    describe_verify_failure, verify_rollback)


def make_diff(before_version, after_version, sql):
    return dict(before_header='version', after_header='version',
                before='version: %s\n' % (before_version or 'none'),
                after='version: %s\n%s' % (after_version or 'none', sql))


def _resolve_history(engine, conn):
    """Settle which history table the engine uses (``history.resolve_table``), once."""
    if engine._table_warnings is not None:
        return
    opts = engine.opts
    name, engine._table_warnings = resolve_table(conn, opts.history_schema, opts.history_table,
                                                 getattr(opts, 'history_table_given', True))
    if name != opts.history_table:
        opts.history_table = name
        engine.history = HistoryTable(opts.history_schema, name)


def _adoption_text(report):
    """The adoption as SQL comments at the head of the plan's SQL (diff, check mode)."""
    if not report:
        return ''
    lines = ['-- adopt %s history %s into %s' % (report['tool'], report['table'], report['history_table'])]
    if report['baseline']:
        lines.append('--   baseline %s' % report['baseline'])
    if report['imported']:
        lines.append('--   applied: %s' % ', '.join(report['imported']))
    if report['without_file']:
        lines.append('--   applied, no local file: %s' % ', '.join(report['without_file']))
    if report['repeatables']:
        lines.append('--   repeatables as Flyway ran them: %s' % ', '.join(report['repeatables']))
    return '\n'.join(lines) + '\n\n'


def _masking(method):
    """Run an engine method with every secret placeholder value masked in what it returns or raises."""
    def wrapper(self, *args):
        try:
            out = method(self, *args)
        except DbDevopsError as exc:
            masker = self.masker()
            if not masker:
                raise
            raise exc.__class__(masker.text(str(exc)), **masker.value(exc.details))
        masker = self.masker()
        if not masker:
            return out
        if isinstance(out, Plan):
            return Plan(out.changed, masker.value(out.values), diff=masker.value(out.diff),
                        warnings=masker.value(out.warnings), work=out.work)
        return masker.value(out)
    wrapper.__doc__ = method.__doc__
    wrapper.__name__ = method.__name__
    return wrapper


class MigrateEngine(object):
    """migrate: plan() is the exact plan (and verified rollback); apply() runs it under the lock."""

    def __init__(self, params, options, sleep=time.sleep):
        self.params = params
        self.opts = options
        self.sleep = sleep
        self.history = HistoryTable(options.history_schema, options.history_table)
        self._files = None
        self._table_warnings = None     # set once the history table is settled (_resolve_history)

    def files(self):
        if self._files is None:
            self._files = mfiles.discover(self.opts.path, self.opts.placeholders,
                                          self.opts.secret_placeholders)
        return self._files

    def masker(self):
        return mfiles.Masker(self.opts.secret_placeholders)

    @_masking
    def plan(self):
        """What a run would do against the database as it is now; creates nothing."""
        self.files()        # a bad folder fails before anything touches the database
        report = self._verify_rollback()
        conn = open_connection(self.params, application_name='dbdevops-migrate')
        try:
            session_settings(conn, self.opts)       # a bad timeout value fails here, in check mode too
            _resolve_history(self, conn)
            history, exists = self.history.read(conn)
            adopted, notes = None, []
            if not exists:
                history, adopted, notes = self._adopt_or_refuse(conn)
            migration = build_plan(history, self.files(), self.opts, catalog_conn=conn)
            if exists and self.opts.adopt_from:
                self._refuse_adopted_pending(conn, migration)
        finally:
            conn.close()
        migration.history_exists = exists
        migration.warnings[:0] = self._table_warnings + notes
        values = self._values(migration, [], migration.current_version, migration.pending, report)
        values.update(history_created=not exists, lock_wait_s=0.0, adopt=adopted,
                      history_table=self.history.where)
        changed = migration.changed or bool(adopted and history.rows)
        return Plan(changed, values, warnings=migration.warnings,
                    diff=self._diff(migration, migration.target_version, adopted),
                    work=dict(migration=migration, rows=None if adopted else history.rows,
                              verify_rollback=report))

    def _adopt_or_refuse(self, conn):
        """With no history table: ``(History, adoption report or None, warnings)``.

        ``adopt_from`` imports another tool's history (``adopt``); else a database
        with objects is refused unless baseline_version is set, naming any other
        tool's history found.
        """
        found = madopt.find(conn)
        chosen = None
        if self.opts.adopt_from:
            chosen = madopt.choose(conn, self.opts.adopt_from, self.opts.adopt_table, found)
        if chosen is None:
            if self.opts.baseline_version is None:
                self.history.refuse_lost_history(conn, found)
            notes = ['%s; baseline_version is set, so it is not imported' % madopt.describe(found)] if found else []
            return History([]), None, notes
        rows, adopted = madopt.adoption(chosen, self.files(), actor(self.params, self.opts))
        adopted.update(history_table=self.history.where, rows=len(rows))
        return History(rows, self.history.where), adopted, madopt.warnings_of(adopted)

    def _refuse_adopted_pending(self, conn, migration):
        """After an adoption: refuse to run a version the other tool's history says it applied since."""
        try:
            chosen = madopt.choose(conn, self.opts.adopt_from, self.opts.adopt_table, madopt.find(conn))
        except MigrationError:
            return      # the other history is gone or unusable now: nothing to compare with
        if chosen is None:
            return
        theirs = chosen.applied_keys(self.files())
        clash = [s.script for s in migration.steps if s.kind == 'versioned' and s.file.key in theirs]
        if clash:
            raise MigrationError(
                '%s would run %s, but %s says %s applied (was %s run after the adoption?); running '
                'them again could apply them twice. Record them by hand or remove adopt_from after '
                'checking; nothing was applied' % (
                    self.history.where, ', '.join(clash), chosen.text(),
                    'it is' if len(clash) == 1 else 'they are', chosen.tool),
                adopted_pending=clash)

    @_masking
    def apply(self, plan):
        """Take the lock, plan again unless the history moved meanwhile, apply; a result dict."""
        if self._table_warnings is None:
            conn = open_connection(self.params, application_name='dbdevops-migrate')
            try:
                _resolve_history(self, conn)
            finally:
                conn.close()
        lock_conn = lock.connect_lock_session(self.params)
        try:
            waited = lock.acquire(lock_conn, self.opts.history_schema, self.opts.history_table,
                                  self.opts.lock_wait, self.sleep)
            guard = lock.LockGuard(lock_conn, self.opts.history_schema, self.opts.history_table)
            conn = open_connection(self.params, application_name='dbdevops-migrate')
            try:
                session_settings(conn, self.opts)
                history, created, adopted = self._history_under_lock(conn)
                migration = plan.work.get('migration')
                if migration is None or history.rows != plan.work.get('rows'):
                    migration = build_plan(history, self.files(), self.opts, catalog_conn=conn)
                extra = self._table_warnings + (madopt.warnings_of(adopted) if adopted else [])
                migration.warnings[:0] = [w for w in extra if w not in migration.warnings]
                self._finish_killed_run(conn, history, migration)
                executor = Executor(conn, self.opts, self.history, actor(self.params, self.opts),
                                    self.sleep, guard=guard)
                applied = executor.run(migration)
                if applied:
                    history = self.history.read(conn)[0]
            finally:
                conn.close()
        finally:
            lock_conn.close()   # closing the session releases the advisory lock
        current = vt(history.current())
        values = self._values(migration, applied, current,
                              [mfiles.version_text(k) for k in history.pending(self.files())],
                              plan.work.get('verify_rollback'))
        imported = bool(adopted and adopted['rows'])
        values.update(history_created=created, lock_wait_s=round(waited, 3), adopt=adopted,
                      history_table=self.history.where)
        return finish(values, changed=bool(applied) or imported, warnings=migration.warnings,
                      diff=self._diff(migration, current, adopted) if applied or imported else None)

    def _history_under_lock(self, conn):
        """(History, created, adoption): the history read under the lock; a lost history
        refused or another tool's history adopted (in the transaction creating ours) first."""
        history, exists = self.history.read(conn)
        if exists:
            return history, False, None
        adopted_history, adopted, _notes = self._adopt_or_refuse(conn)
        rows = adopted_history.rows
        self.history.ensure(conn, rows=rows)
        if rows and self.opts.record_fingerprint:
            self.history.store_fingerprint(conn, rows[-1]['installed_rank'])
        if adopted is not None:
            adopted['rows'] = len(rows)
        return self.history.read(conn)[0], True, adopted

    def _finish_killed_run(self, conn, history, migration):
        """A run killed half way stored no fingerprint: record the live schema's on its last row."""
        unfinished = history.unfinished()
        if not unfinished or not self.opts.record_fingerprint:
            return
        self.history.store_fingerprint(conn, unfinished[-1]['installed_rank'])
        migration.warnings.append(
            'the run that applied %s did not finish (killed?): the schema fingerprint of version %s '
            'was recorded from the live schema now' % (', '.join(r['script'] for r in unfinished),
                                                       unfinished[-1]['version'] or unfinished[-1]['script']))

    def _verify_rollback(self):
        """The verified-rollback report when the option is on (it does not touch the database)."""
        if not self.opts.verify_rollback:
            return None
        report = verify_rollback(self.params, self.opts, files=self.files())
        if not report['verified']:
            raise MigrationError(describe_verify_failure(report) + '; nothing was applied',
                                 verify_rollback=report)
        return report

    @staticmethod
    def _values(migration, applied, current, pending, report):
        values = dict(applied=applied, current_version=current,
                      starting_version=migration.current_version,
                      target_version=migration.target_version, pending=pending,
                      lint=[f.to_dict() for f in migration.lint], plan=migration.to_dict(),
                      queries=migration.queries())
        if report is not None:
            values['verify_rollback'] = report
        return values

    @staticmethod
    def _diff(migration, after_version, adopted=None):
        if not migration.changed and not (adopted and adopted['rows']):
            return None
        before = None if adopted else migration.current_version
        return make_diff(before, after_version, _adoption_text(adopted) + migration.sql_text())


class MigrationInfoEngine(object):
    """migration_info: reads the history and the files; plan() computes, apply() returns it."""

    def __init__(self, params, options):
        self.params = params
        self.opts = options
        self.history = HistoryTable(options.history_schema, options.history_table)
        self._table_warnings = None

    def masker(self):
        return mfiles.Masker(self.opts.secret_placeholders)

    @_masking
    def plan(self):
        files = mfiles.discover(self.opts.path, self.opts.placeholders, self.opts.secret_placeholders)
        conn = open_connection(self.params, application_name='dbdevops-migration-info')
        try:
            _resolve_history(self, conn)
            history, exists = self.history.read(conn)
            info = self._state(history, files)
            info['history_exists'] = exists
            info['history_table'] = self.history.where
            found = madopt.find(conn)
            info['foreign_histories'] = [f.summary() for f in found]
            info['drift'] = self._drift(conn, history)
            info['invalid_indexes'] = all_invalid_indexes(conn)
        finally:
            conn.close()
        warnings = list(self._table_warnings)
        if found and not exists:
            warnings.append('no history table %s: %s' % (self.history.where, madopt.describe(found)))
        drift = info['drift']
        if self.opts.fail_on_drift and drift['drifted']:
            raise MigrationError('schema drift since version %s: %s' % (
                drift['since_version'], '; '.join(drift['summary'])), **info)
        return Plan(False, info, warnings=warnings)

    def apply(self, plan):
        return plan.result()

    @staticmethod
    def _state(history, files):
        mismatches, missing = history.check_files(files)
        current = history.current()
        pending = history.pending(files)
        return dict(
            current_version=vt(current),
            applied=[row_summary(r) for k, r in sorted(history.applied.items())],
            baseline=vt(history.baseline),
            pending=[mfiles.version_text(k) for k in pending],
            pending_repeatables=[f.script for d, f in sorted(files.repeatable.items())
                                 if history.repeatable_due(f, upgrading=bool(pending))],
            out_of_order=[mfiles.version_text(k) for k in pending if current is not None and k < current],
            failed_migrations=[row_summary(r) for r in history.failed.values()],
            checksum_mismatches=mismatches,
            missing_files=missing,
            history=[row_summary(r) for r in history.rows],
        )

    def _drift(self, conn, history):
        """The live schema against the fingerprint of the last run."""
        fp_row = history.last_fingerprint()
        if fp_row is None:
            return dict(checked=False, drifted=False, differences=[], summary=[], since_version=None)
        unfinished = history.unfinished()
        if unfinished:
            # what the killed run applied is in the live schema but in no fingerprint
            return dict(checked=False, drifted=False, differences=[], since_version=fp_row['version'],
                        summary=['not checked: the run that applied %s did not finish, so no fingerprint '
                                 'covers them; the next migrate run records one'
                                 % ', '.join(r['script'] for r in unfinished)],
                        unfinished=[r['script'] for r in unfinished])
        live = fpmod.take(conn, exclude_tables=[(self.history.schema, self.history.name)])
        diffs = fpmod.compare(self.history.fingerprint_of(conn, fp_row['installed_rank']), live)
        return dict(checked=True, drifted=bool(diffs), differences=diffs,
                    summary=fpmod.format_differences(diffs), since_version=fp_row['version'],
                    since_script=fp_row['script'], recorded_at=str(fp_row['applied_at']))


class MigrationNewEngine(object):
    """migration_new: plan() names the files and their text; apply() writes them (never overwrites)."""

    def __init__(self, options, now=None):
        self.opts = options
        self.now = now

    def plan(self):
        o = self.opts
        try:
            new = scaffold.plan_new(o.path, o.description, style=o.style, version=o.version,
                                    template_dir=o.template_dir, now=self.now)
        except OSError as exc:
            raise mfiles.MigrationFilesError(str(exc))
        return Plan(new['changed'], dict(version=new['version'], files=new['files']))

    def apply(self, plan):
        new = dict(plan.values, changed=plan.changed)
        try:
            scaffold.create_new(new)
        except OSError as exc:
            raise mfiles.MigrationFilesError(str(exc))
        return plan.result()
