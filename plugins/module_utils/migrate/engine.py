# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The migration engine: history, plan, apply, lock, info, verified rollback.

Plain Python, no Ansible imports::

    engine = Migrator(ConnParams(...), MigrateOptions(path='migrations'))
    plan = engine.plan()            # read only: a plain value, printable
    result = engine.migrate()       # lock, re-plan under the lock, apply

The history table is append only: each run of a file adds one row (type
``versioned``, ``undo``, ``repeatable``, ``baseline`` or ``repair``; failed
attempts have ``success = false``).  A version is applied when its latest
successful row is not an undo.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import binascii
import getpass
import os
import hashlib
import re
import socket
import struct
import time

from ansible_collections.dbdevops.postgresql.plugins.module_utils.errors import DbDevopsError
from ansible_collections.dbdevops.postgresql.plugins.module_utils.connection import connect
from ansible_collections.dbdevops.postgresql.plugins.module_utils import fingerprint as fpmod
from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate import files as mfiles
from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate import lint as mlint

try:
    import psycopg2
    from psycopg2 import sql as pgsql
except ImportError:  # pragma: no cover - connection.require_psycopg2 explains it
    psycopg2 = None
    pgsql = None

LOCK_NOT_AVAILABLE = '55P03'


class MigrationError(DbDevopsError):
    """A user-facing migration problem (validation, plan, lock, failed file)."""


class MigrateOptions(object):
    """Everything the engine needs besides the connection; defaults as the module's."""

    def __init__(self, path, target=None, allow_downgrade=False, placeholders=None,
                 lock_timeout='5s', lock_retries=3, statement_timeout=None, lock_wait=300,
                 history_schema='public', history_table='schema_migrations', out_of_order=False,
                 baseline_version=None, repair=False, lint=True, fail_on_lint=False,
                 drop_invalid_indexes=False, applied_by=None, record_fingerprint=True):
        self.path = path
        self.target = None if target in (None, '', 'latest') else str(target)
        self.allow_downgrade = bool(allow_downgrade)
        self.placeholders = dict(placeholders or {})
        self.lock_timeout = lock_timeout or None
        self.lock_retries = int(lock_retries or 0)
        self.statement_timeout = statement_timeout or None
        self.lock_wait = float(lock_wait if lock_wait is not None else 300)
        self.history_schema = history_schema or 'public'
        self.history_table = history_table or 'schema_migrations'
        self.out_of_order = bool(out_of_order)
        self.baseline_version = str(baseline_version) if baseline_version not in (None, '') else None
        self.repair = bool(repair)
        self.lint = bool(lint)
        self.fail_on_lint = bool(fail_on_lint)
        self.drop_invalid_indexes = bool(drop_invalid_indexes)
        self.applied_by = applied_by
        self.record_fingerprint = bool(record_fingerprint)


class Step(object):
    """One thing the plan will do, with the exact SQL."""

    def __init__(self, kind, direction, mfile=None, version=None, description='', checksum=None,
                 note=None):
        self.kind = kind                      # versioned | undo | repeatable | baseline | repair
        self.direction = direction            # up | down | none
        self.file = mfile
        self.version = version if version is not None else (mfile.version if mfile else None)
        self.description = description or (mfile.description if mfile else '')
        self.script = mfile.script if mfile else '<%s>' % kind
        self.checksum = checksum or (mfile.checksum if mfile else None)
        self.note = note

    @property
    def transactional(self):
        return self.file.transactional if self.file else True

    @property
    def sql(self):
        return self.file.sql if self.file and self.kind != 'repair' else ''

    def label(self):
        return '%s %s (%s)' % (self.kind, self.version or self.description, self.script)

    def to_dict(self):
        return dict(kind=self.kind, direction=self.direction, version=self.version,
                    description=self.description, script=self.script, checksum=self.checksum,
                    transactional=self.transactional, sql=self.sql, note=self.note)


class Plan(object):
    def __init__(self):
        self.steps = []
        self.current_version = None
        self.target_version = None
        self.pending = []
        self.pending_after = []
        self.warnings = []
        self.lint = []
        self.mismatches = []
        self.missing_files = []
        self.failed = []
        self.invalid_indexes = []
        self.history_exists = False
        self.next_rank = 1

    @property
    def changed(self):
        return bool(self.steps)

    def sql_text(self):
        chunks = []
        for step in self.steps:
            if step.kind == 'repair':
                chunks.append('-- repair: accept checksum %s for %s' % (step.checksum, step.script))
            elif step.kind == 'baseline':
                chunks.append('-- baseline at version %s' % step.version)
            else:
                chunks.append('-- %s %s%s\n%s' % (step.direction, step.script,
                                                  '' if step.transactional else
                                                  ' (outside a transaction)', step.sql.rstrip()))
        return '\n\n'.join(chunks) + ('\n' if chunks else '')

    def to_dict(self):
        return dict(current_version=self.current_version, target_version=self.target_version,
                    steps=[s.to_dict() for s in self.steps], pending=list(self.pending),
                    warnings=list(self.warnings), lint=[f.to_dict() for f in self.lint],
                    checksum_mismatches=list(self.mismatches), sql=self.sql_text())


class History(object):
    """The rows of the history table, folded into the current state."""

    def __init__(self, rows):
        self.rows = rows
        self.applied = {}          # key -> row dict (latest successful versioned/repair)
        self.baseline = None       # key
        self.repeatables = {}      # description -> checksum
        self.repeatable_rank = {}  # description -> rank of its last successful run
        self.last_undo_rank = 0    # rank of the last successful undo
        self.failed = {}           # key or script -> failed row not followed by a success
        self.max_rank = 0
        for row in rows:
            self.max_rank = max(self.max_rank, row['installed_rank'])
            key = mfiles.version_key(row['version']) if row['version'] else None
            fail_key = key if key is not None else row['script']
            if not row['success']:
                self.failed[fail_key] = row
                continue
            self.failed.pop(fail_key, None)
            kind = row['type']
            if kind == 'baseline':
                self.baseline = key
            elif kind in ('versioned', 'repair'):
                self.applied[key] = row
            elif kind == 'undo':
                self.applied.pop(key, None)
                self.last_undo_rank = row['installed_rank']
            elif kind == 'repeatable':
                self.repeatables[row['description']] = row['checksum']
                self.repeatable_rank[row['description']] = row['installed_rank']

    def repeatable_due(self, mfile, upgrading):
        """Why a repeatable file runs in this plan, or None.

        It runs when it is new or its checksum changed, and also when the plan
        applies versioned migrations after an undo that came after its last run
        (a downgrade may have dropped what it created; the upgrade recreates it).
        """
        desc = mfile.description
        if self.repeatables.get(desc) != mfile.checksum:
            return 'new' if desc not in self.repeatables else 'checksum changed'
        if upgrading and self.last_undo_rank > self.repeatable_rank.get(desc, 0):
            return 're-applied after a downgrade (undo since it last ran)'
        return None

    def is_applied(self, key):
        return key in self.applied or (self.baseline is not None and key <= self.baseline)

    def current(self):
        keys = list(self.applied)
        if self.baseline is not None:
            keys.append(self.baseline)
        return max(keys) if keys else None

    def last_fingerprint(self):
        for row in reversed(self.rows):
            if row['success'] and row.get('has_fingerprint'):
                return row
        return None


_HISTORY_COLUMNS = ('installed_rank', 'version', 'description', 'type', 'script', 'checksum',
                    'applied_at', 'applied_by', 'execution_time_ms', 'success', 'error_message')


def lock_key(schema, table):
    digest = hashlib.sha256(('dbdevops.migrate:%s.%s' % (schema, table)).encode('utf-8')).digest()
    return struct.unpack('>q', digest[:8])[0]


class Migrator(object):
    def __init__(self, params, options, sleep=time.sleep):
        self.params = params
        self.opts = options
        self.sleep = sleep
        self.table = pgsql.Identifier(options.history_schema, options.history_table) if pgsql else None
        self._files = None
        self._insert = None
        self._record_head = None

    # -- files and history
    def files(self):
        if self._files is None:
            self._files = mfiles.discover(self.opts.path, self.opts.placeholders)
        return self._files

    def _history_exists(self, cur):
        cur.execute('SELECT to_regclass(%s) IS NOT NULL',
                    ('%s.%s' % (_qi(self.opts.history_schema), _qi(self.opts.history_table)),))
        return cur.fetchone()[0]

    def read_history(self, conn):
        with conn.cursor() as cur:
            if not self._history_exists(cur):
                return History([]), False
            # the fingerprints (large JSON, one per run) are not read here: only whether a row
            # has one; fingerprint_of() fetches the one drift detection needs
            # applied_at as text: reported as text anyway, and parsing 2000 timestamps is slow
            cur.execute(pgsql.SQL('SELECT {}, fingerprint IS NOT NULL FROM {} ORDER BY installed_rank').format(
                pgsql.SQL(', ').join(pgsql.SQL('{}::text').format(pgsql.Identifier(c)) if c == 'applied_at'
                                     else pgsql.Identifier(c) for c in _HISTORY_COLUMNS), self.table))
            rows = []
            for r in cur.fetchall():
                row = dict(zip(_HISTORY_COLUMNS, r))
                row['has_fingerprint'] = r[-1]
                rows.append(row)
        return History(rows), True

    def fingerprint_of(self, conn, rank):
        with conn.cursor() as cur:
            cur.execute(pgsql.SQL('SELECT fingerprint FROM {} WHERE installed_rank = %s').format(self.table),
                        (rank,))
            row = cur.fetchone()
        return fpmod.loads(row[0]) if row else None

    def ensure_history(self, conn):
        with conn.cursor() as cur:
            if self._history_exists(cur):
                return False
            cur.execute(pgsql.SQL('CREATE SCHEMA IF NOT EXISTS {}').format(
                pgsql.Identifier(self.opts.history_schema)))
            cur.execute(pgsql.SQL(
                'CREATE TABLE IF NOT EXISTS {} ('
                ' installed_rank integer PRIMARY KEY,'
                ' version text,'
                ' description text NOT NULL,'
                ' type text NOT NULL,'
                ' script text NOT NULL,'
                ' checksum text,'
                ' applied_at timestamptz NOT NULL DEFAULT clock_timestamp(),'
                ' applied_by text NOT NULL DEFAULT current_user,'
                ' execution_time_ms integer NOT NULL DEFAULT 0,'
                ' success boolean NOT NULL,'
                ' error_message text,'
                ' fingerprint text)').format(self.table))
            cur.execute(pgsql.SQL('CREATE INDEX IF NOT EXISTS {} ON {} (version)').format(
                pgsql.Identifier(self.opts.history_table + '_version_idx'), self.table))
        return True

    # -- plan
    def plan(self, conn=None):
        """The plan against the database as it is now; reads only."""
        self.files()
        own = conn is None
        if own:
            conn = connect(self.params, autocommit=True, application_name='dbdevops-migrate')
        try:
            history, exists = self.read_history(conn)
            plan = self.build_plan(history, catalog_conn=conn)
            plan.history_exists = exists
            return plan
        finally:
            if own:
                conn.close()

    def build_plan(self, history, catalog_conn=None):
        opts = self.opts
        files = self.files()
        plan = Plan()
        plan.warnings.extend(files.warnings)
        plan.next_rank = history.max_rank + 1
        plan.failed = [_row_summary(r) for r in history.failed.values()]

        # checksums of applied files, before anything runs
        for key, row in sorted(history.applied.items()):
            mfile = files.versioned.get(key)
            if mfile is None:
                plan.missing_files.append(row['script'])
                continue
            if row['checksum'] and row['checksum'] != mfile.checksum:
                plan.mismatches.append(dict(version=mfile.version, script=mfile.script,
                                            applied_checksum=row['checksum'],
                                            file_checksum=mfile.checksum))
        if plan.missing_files:
            plan.warnings.append('applied versions with no file in %s: %s'
                                 % (opts.path, ', '.join(plan.missing_files)))
        if plan.mismatches and not opts.repair:
            raise MigrationError(
                'checksum validation failed, nothing was applied: %s changed after it was applied; '
                'restore the file, or set repair: true to accept the new content'
                % '; '.join('%(script)s (applied %(applied_checksum)s, file now %(file_checksum)s)' % m
                            for m in plan.mismatches),
                checksum_mismatches=plan.mismatches)
        for m in plan.mismatches:
            plan.steps.append(Step('repair', 'none', files.versioned[mfiles.version_key(m['version'])],
                                   note='applied checksum was %s' % m['applied_checksum']))

        baseline = history.baseline
        if opts.baseline_version is not None:
            if not mfiles.is_version(opts.baseline_version):
                raise MigrationError('baseline_version "%s" is not a version (dotted numbers or a '
                                     'timestamp)' % opts.baseline_version)
            bkey = mfiles.version_key(opts.baseline_version)
            if baseline is None and not history.applied:
                plan.steps.append(Step('baseline', 'none', version=mfiles.version_text(bkey),
                                       description='baseline'))
                baseline = bkey
            elif baseline != bkey:
                raise MigrationError(
                    'cannot baseline at %s: %s.%s already has history (current version %s); '
                    'baseline only applies to a database with no applied migrations'
                    % (opts.baseline_version, opts.history_schema, opts.history_table,
                       _vt(history.current())))

        def applied(key):
            return key in history.applied or (baseline is not None and key <= baseline)

        current_keys = list(history.applied) + ([baseline] if baseline is not None else [])
        current = max(current_keys) if current_keys else None
        plan.current_version = _vt(current)
        versions = files.versions()
        pending_all = [k for k in versions if not applied(k)]
        plan.pending = [mfiles.version_text(k) for k in pending_all]

        if opts.target is None:
            target = max([k for k in [files.latest(), current] if k is not None]) \
                if (files.latest() or current) else None
        else:
            if not mfiles.is_version(opts.target):
                raise MigrationError('target "%s" is not a version: give dotted numbers, a timestamp, '
                                     'or "latest"' % opts.target)
            target = mfiles.version_key(opts.target)
        plan.target_version = _vt(target)

        out_of_order = [k for k in pending_all if current is not None and k < current
                        and (target is None or k <= target)]
        if out_of_order and not opts.out_of_order:
            raise MigrationError(
                'out-of-order migrations: %s are older than the current version %s and were never '
                'applied; nothing was applied. Renumber them above %s, or set out_of_order: true '
                'to apply them' % (', '.join(files.versioned[k].script for k in out_of_order),
                                   _vt(current), _vt(current)),
                out_of_order=[files.versioned[k].script for k in out_of_order])

        downs = sorted([k for k in history.applied if target is not None and k > target], reverse=True)
        if downs:
            if not opts.allow_downgrade:
                raise MigrationError(
                    'target %s is below the current version %s: that undoes %s; set '
                    'allow_downgrade: true to do it; nothing was applied'
                    % (_vt(target), _vt(current), ', '.join(_vt(k) for k in downs)))
            if baseline is not None and target < baseline:
                raise MigrationError('target %s is below the baseline %s; a baselined database '
                                     'cannot go below it' % (_vt(target), _vt(baseline)))
            missing = [k for k in downs if k not in files.undo]
            if missing:
                raise MigrationError(
                    'cannot downgrade to %s: no undo file for %s (expected %s); nothing was undone'
                    % (_vt(target), ', '.join(_vt(k) for k in missing),
                       ', '.join('U%s__<description>.sql or %s_<name>.down.sql'
                                 % (_vt(k), _vt(k)) for k in missing)),
                    missing_undo=[_vt(k) for k in missing])
            for k in downs:
                plan.steps.append(Step('undo', 'down', files.undo[k]))
        for k in pending_all:
            if target is None or k <= target:
                plan.steps.append(Step('versioned', 'up', files.versioned[k]))
        if not downs:
            # repeatables never run in a plan that undoes versions (they may use what the
            # undo removes); after a downgrade they run again with the next upgrade
            upgrading = any(s.kind == 'versioned' for s in plan.steps)
            for desc in sorted(files.repeatable):
                rfile = files.repeatable[desc]
                why = history.repeatable_due(rfile, upgrading)
                if why:
                    plan.steps.append(Step('repeatable', 'up', rfile, note=why))
        will_apply = set(s.file.key for s in plan.steps if s.kind == 'versioned')
        plan.pending_after = [mfiles.version_text(k) for k in pending_all if k not in will_apply]

        # statements are split here so a syntax problem stops the plan, not the run
        for step in plan.steps:
            if step.file is not None:
                step.file.statements  # noqa: B018 - splitting validates the file

        if catalog_conn is not None:
            plan.invalid_indexes = self._invalid_indexes(catalog_conn, plan.steps)
            for idx in plan.invalid_indexes:
                plan.warnings.append(
                    'index %s is INVALID (left by a failed CREATE INDEX CONCURRENTLY) and %s '
                    'builds it again; %s' % (idx['index'], idx['script'],
                                             'it will be dropped first' if opts.drop_invalid_indexes
                                             else 'set drop_invalid_indexes: true to drop it first'))
        if opts.lint and plan.steps:
            lintable = [s for s in plan.steps if s.kind in ('versioned', 'undo', 'repeatable')]
            findings = mlint.lint_steps(lintable, mlint.Catalog(catalog_conn),
                                        lock_timeout=opts.lock_timeout)
            if findings is None:
                plan.warnings.append(mlint.SKIPPED_MESSAGE)
            else:
                plan.lint = findings
                if findings and opts.fail_on_lint:
                    raise MigrationError(
                        'lint failed (fail_on_lint is set), nothing was applied: %s'
                        % '; '.join(f.text() for f in findings),
                        lint=[f.to_dict() for f in findings])
                plan.warnings.extend(f.text() for f in findings)
        return plan

    def _invalid_indexes(self, conn, steps):
        names = {}
        for step in steps:
            if step.file is None or step.file.transactional:
                continue
            for stmt in step.file.statements:
                name = _concurrent_index_name(stmt.text)
                if name:
                    names[name] = step.script
        if not names:
            return []
        with conn.cursor() as cur:
            cur.execute("SELECT n.nspname, c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                        "JOIN pg_namespace n ON n.oid = c.relnamespace "
                        "WHERE NOT i.indisvalid AND c.relname = ANY(%s)", (list(names),))
            return [dict(index='%s.%s' % (s, n), schema=s, name=n, script=names[n])
                    for s, n in cur.fetchall()]

    # -- apply
    def migrate(self):
        """Take the lock, plan under it, apply; returns a result dict."""
        self.files()        # a bad folder fails before anything touches the database
        lock_conn = connect(self.params, autocommit=True, application_name='dbdevops-migrate-lock')
        try:
            waited = self._acquire_lock(lock_conn)
            conn = connect(self.params, autocommit=True, application_name='dbdevops-migrate')
            try:
                self._session_settings(conn)
                created = self.ensure_history(conn)
                history = self.read_history(conn)[0]
                plan = self.build_plan(history, catalog_conn=conn)
                result = self.execute(conn, plan, history)
                result['history_created'] = created
                result['lock_wait_s'] = round(waited, 3)
                return result
            finally:
                conn.close()
        finally:
            lock_conn.close()   # closing the session releases the advisory lock

    def _acquire_lock(self, lock_conn):
        key = lock_key(self.opts.history_schema, self.opts.history_table)
        started = time.time()
        delay = 0.02
        with lock_conn.cursor() as cur:
            while True:
                cur.execute('SELECT pg_try_advisory_lock(%s)', (key,))
                if cur.fetchone()[0]:
                    return time.time() - started
                if time.time() - started >= self.opts.lock_wait:
                    cur.execute("SELECT a.pid, a.application_name, a.client_addr::text, "
                                "a.backend_start::text, a.usename FROM pg_locks l "
                                "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' "
                                "AND l.granted AND l.objsubid = 1 AND l.classid = %s::bigint::oid "
                                "AND l.objid = %s::bigint::oid "
                                "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
                                ((key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF))
                    holder = cur.fetchone()
                    who = ('pid %s (%s, user %s, from %s, connected %s)' % holder) if holder \
                        else 'another session'
                    raise MigrationError(
                        'another migration run holds the lock on %s.%s: %s; waited %.0f s (lock_wait). '
                        'Retry when it has finished, or raise lock_wait'
                        % (self.opts.history_schema, self.opts.history_table, who, self.opts.lock_wait),
                        lock_holder=holder[0] if holder else None)
                self.sleep(delay)
                delay = min(delay * 2, 0.5)

    def _session_settings(self, conn):
        with conn.cursor() as cur:
            cur.execute('SELECT set_config(%s, %s, false), set_config(%s, %s, false)',
                        ('lock_timeout', self.opts.lock_timeout or '0',
                         'statement_timeout', self.opts.statement_timeout or '0'))
            if conn.server_version >= 140000:
                # the backend notices a killed runner within a second and rolls back
                cur.execute("SET client_connection_check_interval = '1s'")

    def _actor(self, conn):
        if self.opts.applied_by:
            return self.opts.applied_by
        try:
            osuser = getpass.getuser()
        except (KeyError, OSError):
            osuser = 'unknown'
        return '%s (%s@%s)' % (self.params.login_user, osuser, socket.gethostname())

    def execute(self, conn, plan, history=None):
        """Run the steps of ``plan`` in order; ``history`` is what the plan was built from."""
        applied = []
        actor = self._actor(conn)
        rank = plan.next_rank
        last_rank = None
        finished = False
        try:
            for step in plan.steps:
                started = time.time()
                if step.kind in ('baseline', 'repair'):
                    with conn.cursor() as cur:
                        cur.execute(self._insert_sql(), self._row(rank, step, actor, 0, True,
                                                                  step.note))
                elif step.transactional:
                    self._run_transactional(conn, step, rank, actor, applied)
                else:
                    self._run_autocommit(conn, step, rank, actor, applied)
                ms = int((time.time() - started) * 1000)
                last_rank = rank
                rank += 1
                applied.append(dict(version=step.version, description=step.description,
                                    script=step.script, kind=step.kind, direction=step.direction,
                                    ms=ms))
            finished = True
        finally:
            # also after a failure: what did apply is the schema drift detection starts from
            if last_rank is not None and self.opts.record_fingerprint:
                try:
                    self._store_fingerprint(conn, last_rank)
                except psycopg2.Error:
                    if finished:
                        raise
        if applied or history is None:
            history = self.read_history(conn)[0]
        files = self.files()
        return dict(changed=bool(applied), applied=applied,
                    current_version=_vt(history.current()),
                    starting_version=plan.current_version,
                    target_version=plan.target_version,
                    pending=[mfiles.version_text(k) for k in files.versions()
                             if not history.is_applied(k)],
                    warnings=list(plan.warnings), lint=[f.to_dict() for f in plan.lint],
                    plan=plan.to_dict())

    def _store_fingerprint(self, conn, rank):
        if conn.status != psycopg2.extensions.STATUS_READY:
            conn.rollback()
        fp = fpmod.take(conn, exclude_tables=[(self.opts.history_schema, self.opts.history_table)])
        with conn.cursor() as cur:
            cur.execute(pgsql.SQL('UPDATE {} SET fingerprint = %s WHERE installed_rank = %s')
                        .format(self.table), (fpmod.dumps(fp), rank))

    def _insert_sql(self):
        if self._insert is None:
            self._insert = self._compose_insert()
        return self._insert

    def _compose_insert(self):
        return pgsql.SQL(
            'INSERT INTO {} (installed_rank, version, description, type, script, checksum, '
            'applied_by, execution_time_ms, success, error_message) '
            'VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)').format(self.table)

    def _row(self, rank, step, actor, ms, success, error):
        return (rank, step.version, step.description or step.script, step.kind, step.script,
                step.checksum, actor, ms, success, error)

    def _record_failure(self, conn, rank, step, actor, started, message):
        ms = int((time.time() - started) * 1000)
        try:
            if conn.status != psycopg2.extensions.STATUS_READY:
                conn.rollback()
            with conn.cursor() as cur:
                cur.execute(self._insert_sql(), self._row(rank, step, actor, ms, False, message))
        except psycopg2.Error:
            pass    # the server may be gone; the error below still tells the user

    def _record_sql(self, cur, rank, step, actor):
        """The history INSERT as text, its duration measured by the server since BEGIN."""
        if self._record_head is None:
            self._record_head = pgsql.SQL(
                'INSERT INTO {} (installed_rank, version, description, type, script, checksum, '
                'applied_by, execution_time_ms, success) VALUES (').format(self.table).as_string(cur)
        values = cur.mogrify('%s, %s, %s, %s, %s, %s, %s', (
            rank, step.version, step.description or step.script, step.kind, step.script,
            step.checksum, actor))
        if not isinstance(values, str):
            values = values.decode(psycopg2.extensions.encodings[cur.connection.encoding])
        return (self._record_head + values + ', (pg_catalog.date_part(\'epoch\', pg_catalog.clock_timestamp()'
                ' - pg_catalog.now()) * 1000)::integer, true)')

    def _run_transactional(self, conn, step, rank, actor, applied):
        """One transaction: the file's statements, then its history row, then COMMIT.

        Every statement but the last is its own execute (BEGIN rides along with the
        first), so a failure there names its statement for certain.  The last one is
        sent together with the history INSERT and the COMMIT: a one-statement file
        costs one round trip.  A failure in that last execute is placed by the
        error's position when the server gives one, else it is the statement's
        unless the error is about the history table (then it is the history write).
        """
        statements = step.file.statements
        attempt = 0
        with conn.cursor() as cur:
            record = self._record_sql(cur, rank, step, actor)
        while True:
            started = time.time()
            ran = 0
            stmt = None
            try:
                with conn.cursor() as cur:
                    # BEGIN rides along with the first statement: one round trip fewer
                    begin = 'BEGIN;\n'
                    for stmt in statements[:-1]:
                        cur.execute(begin + stmt.text)
                        begin = ''
                        ran += 1
                    stmt = statements[-1] if statements else None
                    head = begin + (stmt.text + '\n;\n' if stmt is not None else '')
                    try:
                        cur.execute(head + record + ';\nCOMMIT')
                    except psycopg2.Error as exc:
                        stmt = self._locate_last(exc, stmt, len(begin), len(head))
                        raise
                return
            except psycopg2.Error as exc:
                _rollback(conn)
                if _sqlstate(exc) == LOCK_NOT_AVAILABLE and attempt < self.opts.lock_retries:
                    attempt += 1
                    self.sleep(min(0.5 * 2 ** (attempt - 1), 8))
                    continue
                message = self._failure_message(step, stmt, exc, ran, len(statements),
                                                transactional=True, attempts=attempt + 1)
                self._record_failure(conn, rank, step, actor, started, message)
                raise MigrationError(message, **self._failure_details(step, stmt, exc, applied, ran))

    def _locate_last(self, exc, stmt, stmt_start, stmt_end):
        """The statement that failed in ``<last statement>; INSERT ...; COMMIT``, or None."""
        if stmt is None:
            return None
        diag = getattr(exc, 'diag', None)
        position = getattr(diag, 'statement_position', None) if diag else None
        if position:
            try:
                offset = int(position) - 1
            except ValueError:
                offset = None
            if offset is not None:
                return stmt if stmt_start <= offset < stmt_end else None
        if getattr(diag, 'table_name', None) == self.opts.history_table and \
                getattr(diag, 'schema_name', None) in (None, self.opts.history_schema):
            return None
        primary = getattr(diag, 'message_primary', None) or ''
        if re.search(r'(^|[^A-Za-z0-9_$])%s($|[^A-Za-z0-9_$])' % re.escape(self.opts.history_table), primary):
            return None
        return stmt

    def _run_autocommit(self, conn, step, rank, actor, applied):
        statements = step.file.statements
        started = time.time()
        if self.opts.drop_invalid_indexes:
            self._drop_invalid(conn, step)
        ran = 0
        with conn.cursor() as cur:
            for stmt in statements:
                attempt = 0
                while True:
                    try:
                        cur.execute(stmt.text)
                        break
                    except psycopg2.Error as exc:
                        if _sqlstate(exc) == LOCK_NOT_AVAILABLE and attempt < self.opts.lock_retries:
                            attempt += 1
                            self.sleep(min(0.5 * 2 ** (attempt - 1), 8))
                            continue
                        message = self._failure_message(step, stmt, exc, ran, len(statements),
                                                        transactional=False, attempts=attempt + 1)
                        invalid = self._invalid_indexes(conn, [step])
                        if invalid:
                            message += ('; INVALID index left behind: %s (set drop_invalid_indexes: '
                                        'true to drop it before the retry)'
                                        % ', '.join(i['index'] for i in invalid))
                        self._record_failure(conn, rank, step, actor, started, message)
                        details = self._failure_details(step, stmt, exc, applied, ran)
                        details['invalid_indexes'] = [i['index'] for i in invalid]
                        details['statements_ran'] = [s.short() for s in statements[:ran]]
                        raise MigrationError(message, **details)
                ran += 1
            ms = int((time.time() - started) * 1000)
            cur.execute(self._insert_sql(), self._row(rank, step, actor, ms, True, None))

    def _drop_invalid(self, conn, step):
        with conn.cursor() as cur:
            for idx in self._invalid_indexes(conn, [step]):
                cur.execute(pgsql.SQL('DROP INDEX CONCURRENTLY IF EXISTS {}').format(
                    pgsql.Identifier(idx['schema'], idx['name'])))

    def _failure_message(self, step, stmt, exc, ran, total, transactional, attempts):
        error = _pg_error_text(exc)
        where = ('%s line %d' % (step.script, stmt.line)) if stmt else step.script
        text = '%s failed at %s: %s' % (step.label(), where, error)
        if stmt is not None:
            text += '; statement: %s' % stmt.short()
        if attempts > 1:
            text += ' (after %d attempts on lock timeouts)' % attempts
        if transactional:
            text += '; the transaction was rolled back, the database stays at the last good version'
        else:
            text += ('; the file runs outside a transaction: %d of %d statements ran before it '
                     '(they stay applied); fix the file and run again' % (ran, total))
        return text

    def _failure_details(self, step, stmt, exc, applied, ran):
        return dict(file=step.script, line=stmt.line if stmt else None,
                    statement=stmt.text if stmt else None, sqlstate=_sqlstate(exc),
                    applied=list(applied), changed=bool(applied), statements_ran_count=ran)

    # -- info
    def info(self):
        self.files()
        conn = connect(self.params, autocommit=True, application_name='dbdevops-migration-info')
        try:
            history, exists = self.read_history(conn)
            files = self.files()
            mismatches, missing = [], []
            for key, row in sorted(history.applied.items()):
                mfile = files.versioned.get(key)
                if mfile is None:
                    missing.append(row['script'])
                elif row['checksum'] and row['checksum'] != mfile.checksum:
                    mismatches.append(dict(version=mfile.version, script=mfile.script,
                                           applied_checksum=row['checksum'],
                                           file_checksum=mfile.checksum))
            current = history.current()
            pending = [k for k in files.versions() if not history.is_applied(k)]
            out_of_order = [mfiles.version_text(k) for k in pending if current is not None and k < current]
            repeatable_pending = [f.script for d, f in sorted(files.repeatable.items())
                                  if history.repeatable_due(f, upgrading=bool(pending))]
            drift = dict(checked=False, drifted=False, differences=[], since_version=None)
            fp_row = history.last_fingerprint()
            if fp_row is not None:
                live = fpmod.take(conn, exclude_tables=[(self.opts.history_schema,
                                                         self.opts.history_table)])
                recorded = self.fingerprint_of(conn, fp_row['installed_rank'])
                diffs = fpmod.compare(recorded, live)
                drift = dict(checked=True, drifted=bool(diffs), differences=diffs,
                             summary=fpmod.format_differences(diffs),
                             since_version=fp_row['version'], since_script=fp_row['script'],
                             recorded_at=str(fp_row['applied_at']))
            return dict(
                history_exists=exists,
                current_version=_vt(current),
                applied=[_row_summary(r) for k, r in sorted(history.applied.items())],
                baseline=_vt(history.baseline),
                pending=[mfiles.version_text(k) for k in pending],
                pending_repeatables=repeatable_pending,
                out_of_order=out_of_order,
                failed_migrations=[_row_summary(r) for r in history.failed.values()],
                checksum_mismatches=mismatches,
                missing_files=missing,
                drift=drift,
                history=[_row_summary(r) for r in history.rows],
            )
        finally:
            conn.close()


def _row_summary(row):
    out = dict((k, row[k]) for k in _HISTORY_COLUMNS)
    out['applied_at'] = str(row['applied_at'])
    return out


def _vt(key):
    return mfiles.version_text(key) if key is not None else None


def _qi(name):
    return '"%s"' % name.replace('"', '""')


def _sqlstate(exc):
    return getattr(exc, 'pgcode', None)


def _rollback(conn):
    try:
        if not conn.closed:
            conn.cursor().execute('ROLLBACK')
    except psycopg2.Error:
        pass


def _pg_error_text(exc):
    diag = getattr(exc, 'diag', None)
    primary = getattr(diag, 'message_primary', None) if diag else None
    text = primary or (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
    code = _sqlstate(exc)
    if getattr(diag, 'message_detail', None):
        text += ' (%s)' % diag.message_detail
    return '%s%s' % (text, ' [SQLSTATE %s]' % code if code else '')


def _concurrent_index_name(text):
    m = re.match(r'\s*CREATE\s+(?:UNIQUE\s+)?INDEX\s+CONCURRENTLY\s+(?:IF\s+NOT\s+EXISTS\s+)?'
                 r'("(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)', text, re.I)
    if not m:
        return None
    name = m.group(1)
    return name[1:-1].replace('""', '"') if name.startswith('"') else name.lower()


def verify_rollback(params, options, keep_database=False):
    """Prove every undo file restores the schema, on a scratch database.

    On a database this creates (and drops afterwards) next to ``params.dbname``:
    for each versioned migration in order, take the fingerprint, apply it,
    fingerprint, run its undo and compare with the fingerprint before, then
    redo it and compare with the one after.  Returns a dict naming the first
    migration whose undo (or redo) does not give back the same schema.
    """
    files = mfiles.discover(options.path, options.placeholders)
    scratch = 'dbdevops_verify_%d_%s' % (os.getpid(), binascii.hexlify(os.urandom(4)).decode())
    admin = connect(params, autocommit=True, application_name='dbdevops-verify-rollback')
    try:
        with admin.cursor() as cur:
            try:
                cur.execute(pgsql.SQL('CREATE DATABASE {} TEMPLATE template0').format(
                    pgsql.Identifier(scratch)))
            except psycopg2.Error as exc:
                raise MigrationError(
                    'verify_rollback needs a scratch database and could not create one on %s: %s; '
                    'grant CREATEDB to %s or turn verify_rollback off'
                    % (params.where(), _pg_error_text(exc), params.login_user))
        try:
            return _verify_on(params.replace(db=scratch), options, files, scratch)
        finally:
            if not keep_database:
                with admin.cursor() as cur:
                    cur.execute(pgsql.SQL('DROP DATABASE IF EXISTS {} WITH (FORCE)').format(
                        pgsql.Identifier(scratch)))
    finally:
        admin.close()


def _verify_on(sparams, options, files, scratch):
    engine = Migrator(sparams, options)
    engine._files = files
    exclude = [(options.history_schema, options.history_table)]
    conn = connect(sparams, autocommit=True, application_name='dbdevops-verify-rollback')
    checked, not_reversible, failure = [], [], None
    rank = [1]

    def run(step):
        runner = engine._run_transactional if step.transactional else engine._run_autocommit
        try:
            runner(conn, step, rank[0], 'verify_rollback', [])
        except MigrationError as exc:
            raise MigrationError('verify_rollback on scratch database %s: %s' % (scratch, exc),
                                 **exc.details)
        rank[0] += 1

    try:
        engine._session_settings(conn)
        engine.ensure_history(conn)
        for key in files.versions():
            vfile = files.versioned[key]
            before = fpmod.take(conn, exclude)
            run(Step('versioned', 'up', vfile))
            after = fpmod.take(conn, exclude)
            ufile = files.undo.get(key)
            if ufile is None:
                not_reversible.append(vfile.script)
                continue
            run(Step('undo', 'down', ufile))
            diffs = fpmod.compare(before, fpmod.take(conn, exclude))
            if diffs:
                failure = dict(version=vfile.version, script=ufile.script, stage='undo',
                               differences=diffs, summary=fpmod.format_differences(diffs))
                break
            run(Step('versioned', 'up', vfile))
            diffs = fpmod.compare(after, fpmod.take(conn, exclude))
            if diffs:
                failure = dict(version=vfile.version, script=vfile.script, stage='redo',
                               differences=diffs, summary=fpmod.format_differences(diffs))
                break
            checked.append(vfile.version)
    finally:
        conn.close()
    return dict(verified=failure is None, checked=checked, not_reversible=not_reversible,
                failure=failure)


def describe_verify_failure(report):
    failure = report['failure']
    what = ('its undo does not restore the schema it had before'
            if failure['stage'] == 'undo' else 're-applying it after its undo gives another schema')
    return ('verified rollback failed at version %s (%s): %s: %s'
            % (failure['version'], failure['script'], what, '; '.join(failure['summary'])))
