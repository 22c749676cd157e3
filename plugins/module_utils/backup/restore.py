# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Restore a backup and prove it: checksums while pg_restore runs, row counts,
sequence values and large objects against the manifest afterwards, and for
``replace`` a restore into a scratch database that takes the target's name
only once everything passed.

    engine = RestoreEngine(conn_params, RestoreOptions(src='/backups', target_db='app', replace=True))
    plan = engine.plan()        # resolves the backup and the target; plan.result() is check mode
    result = engine.apply(plan)

A ``tables``/``schemas`` selection with ``replace`` replaces just the
selection inside the target, in one transaction (``_selection``); nothing
outside it is removed.  With ``drill=True`` the engine restores into a
scratch database, verifies it and drops it.  Every run first drops the
scratch databases killed runs left behind (``_swap.drop_stale``).  The steps
below the engine: ``plan_restore``, ``run_restore``, ``restore_drill``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import concurrent.futures
import dataclasses
import os
import queue
import re
import subprocess
import threading
import time

from ansible_collections.dbdevops.postgresql.plugins.module_utils import _catalog, _pgclient
from ansible_collections.dbdevops.postgresql.plugins.module_utils._contract import Plan, finish
from ansible_collections.dbdevops.postgresql.plugins.module_utils._options import option
from ansible_collections.dbdevops.postgresql.plugins.module_utils.connection import connect
from ansible_collections.dbdevops.postgresql.plugins.module_utils.errors import DbDevopsError
from ansible_collections.dbdevops.postgresql.plugins.module_utils.backup import (
    _selection, _swap, _tools, catalog)
from ansible_collections.dbdevops.postgresql.plugins.module_utils.backup._tools import BackupError

try:
    from psycopg2 import sql as pgsql
except ImportError:  # pragma: no cover - reported by connect()
    pgsql = None

USER_OBJECTS_SQL = """
SELECT (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
           AND n.nspname !~ '^pg_toast' AND n.nspname !~ '^pg_temp')
     + (SELECT count(*) FROM pg_namespace
         WHERE nspname NOT IN ('pg_catalog', 'information_schema', 'public')
           AND nspname !~ '^pg_toast' AND nspname !~ '^pg_temp')
"""
NOT_IN_MANIFEST = 'not checked: the backup predates recording them in its manifest'
LO_SELECTION = 'not checked: a tables/schemas selection restores no large objects'
SCRATCH_KIND = dict(replace='restore', drill='drill')


@dataclasses.dataclass
class RestoreOptions(object):
    """What to restore, where and how: the ``restore`` module's options."""

    src: str = option(type='path', required=True)
    backup_id: str = option('latest')
    backup_db: str = option()
    target_db: str = option()
    replace: bool = option(False, type='bool')
    terminate_connections: bool = option(False, type='bool')
    schemas: list = option([], type='list', elements='str')
    tables: list = option([], type='list', elements='str')
    jobs: int = option(1, type='int')
    globals_first: bool = option(False, type='bool')
    analyze: bool = option(True, type='bool')
    verify: bool = option(True, type='bool')
    no_owner: bool = option(False, type='bool')
    drill: bool = option(False, type='bool')
    allow_older: bool = option(False, type='bool')
    lock_timeout: str = option('5s')
    pg_bin_dir: str = option(type='path')


class RestoreEngine(object):
    """The ``restore`` module: plan() resolves the backup and the target, apply(plan) restores.

    A drill (``drill=True``) restores into a scratch database, verifies and
    drops it; it changes nothing (``changed`` is false) and fails when the
    verification fails.
    """

    def __init__(self, params, options):
        self.params = params
        self.options = options

    def plan(self):
        opts = self.options
        work = plan_restore(self.params, opts)
        if opts.drill:
            drill = dict(passed=None, backup_id=work['backup_id'], database=work['manifest']['database'],
                         scratch_db='', verification={}, error=None, scratch_dropped=[], duration_ms=0)
            return Plan(False, _drill_values(drill, target_db='', dropped=[]), warnings=work['warnings'],
                        work=work)
        selected = _selection.selected_tables(opts, work['manifest'])
        values = dict(backup_id=work['backup_id'], target_db=work['target_db'], action=work['action'],
                      target_sessions=work['target_sessions'], verification={}, terminated_sessions=[],
                      tables=len(selected),
                      restored_tables=[_catalog.qualified(s, n) for s, n, _rows in selected],
                      skipped=_selection.table_subset(opts, work['manifest'], [])[1] if opts.tables else [],
                      globals_restored=bool(opts.globals_first), globals_created=work['globals_created'],
                      scratch_dropped=[], duration_ms=0)
        state = dict(create='absent', restore_into_empty='empty').get(work['action'], 'has data')
        diff = dict(before=dict(database=work['target_db'], state=state),
                    after=dict(database=work['target_db'], state='restored from %s' % work['backup_id']))
        return Plan(True, values, diff=diff, warnings=work['warnings'], work=work)

    def apply(self, plan):
        if self.options.drill:
            drill = restore_drill(self.params, work=plan.work)
            values = _drill_values(drill, target_db=drill['scratch_db'], dropped=drill['scratch_dropped'])
            if not drill['passed']:
                raise BackupError('restore drill of backup %s failed: %s'
                                  % (drill['backup_id'], drill['error'] or drill['verification']), **values)
            return finish(values, changed=False, warnings=plan.warnings)
        done = run_restore(self.params, plan.work)
        values = dict(plan.values)
        values.update((key, done[key]) for key in (
            'verification', 'terminated_sessions', 'tables', 'restored_tables', 'skipped',
            'globals_restored', 'globals_created', 'scratch_dropped', 'duration_ms'))
        return finish(values, changed=True, diff=plan.diff, warnings=plan.warnings)


def _drill_values(drill, target_db, dropped):
    return dict(backup_id=drill['backup_id'], target_db=target_db, action='drill', target_sessions=[],
                drill=drill, verification=drill['verification'], scratch_dropped=dropped,
                duration_ms=drill['duration_ms'])


def _user_objects(params, dbname):
    conn = connect(params, dbname=dbname, autocommit=True, application_name=_swap.APPLICATION)
    try:
        with conn.cursor() as cur:
            cur.execute(USER_OBJECTS_SQL)
            count = cur.fetchone()[0]
            cur.execute("SELECT nspname FROM pg_namespace")
            return count, set(r[0] for r in cur.fetchall())
    finally:
        conn.close()


def _find_backup(opts):
    try:
        path, manifest = catalog.find_backup(opts.src, opts.backup_id, database=opts.backup_db,
                                             allow_older=opts.allow_older)
    except BackupError as exc:
        if exc.details.get('newest_good'):
            raise BackupError('%s; with restore, allow_older: true restores "%s" instead (with a warning)'
                              % (exc, exc.details['newest_good']), **exc.details)
        raise
    manifest = dict(manifest)
    return path, manifest, list(manifest.pop(catalog.WARNINGS, []) or [])


def plan_restore(params, opts):
    """Resolve the backup and decide how to restore it; no change made."""
    if opts.jobs < 1:
        raise BackupError('jobs must be at least 1')
    if opts.target_db:
        _check_name(opts.target_db, 'target_db')
    path, manifest, warnings = _find_backup(opts)
    target = manifest['database'] if opts.drill else (opts.target_db or manifest['database'])
    admin = _swap.admin_params(params, {target})
    try:
        conn = _swap.admin_connect(admin)
    except DbDevopsError as exc:
        raise BackupError('restore works on the server through database "%s" (it cannot stay logged into '
                          '"%s", which it restores): %s' % (admin.dbname, target, exc))
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT current_setting('server_version_num')::int")
            server_major = cur.fetchone()[0] // 10000
            cur.execute('SELECT 1 FROM pg_database WHERE datname = %s', (target,))
            exists = cur.fetchone() is not None and not opts.drill
            sessions = _swap.sessions(cur, target) if exists else []
            role = _swap.login_role(cur)
            tool = _pgclient.Tool('pg_restore', server_major, opts.pg_bin_dir)
            archive = os.path.join(path, manifest['archive'])
            toc = _read_toc(tool, archive)
            if opts.tables or opts.schemas:
                _selection.check_selection(opts, manifest, toc)
            objects, schemas = _user_objects(params, target) if exists else (0, set())
            action = _action(opts, target, exists, objects)
            if action == 'replace':
                _swap.blockers(cur, target, opts.terminate_connections)
            _check_privileges(cur, opts, manifest, toc, role, action)
            globals_created = _plan_globals(cur, opts, path, manifest)
    finally:
        conn.close()
    return dict(backup_id=manifest['id'], backup_path=path, manifest=manifest, target_db=target,
                action=action, target_sessions=sessions, server_major=server_major, options=opts,
                admin=admin, tool=tool, archive=archive, toc=toc, existing_schemas=schemas, role=role,
                globals_created=globals_created, warnings=warnings)


def _check_name(name, what):
    try:
        _catalog.check_identifier(name, what)
    except DbDevopsError as exc:
        raise BackupError(str(exc), **exc.details)


def _action(opts, target, exists, objects):
    if opts.drill:
        return 'drill'
    if not exists:
        return 'create'
    if objects == 0:
        return 'restore_into_empty'
    if opts.replace:
        return 'replace_selection' if opts.tables or opts.schemas else 'replace'
    if opts.tables or opts.schemas:
        raise BackupError(
            'database "%s" is not empty (%d user objects): restoring a selection into it is refused. Set '
            'replace: true to replace the selected %s inside it (replace replaces only the selected tables '
            'or schemas, in one transaction; everything else in the database is kept, and anything outside '
            'the selection that depends on them makes it fail with nothing changed), or choose another '
            'target_db' % (target, objects, 'tables' if opts.tables else 'schemas'), target_db=target)
    raise BackupError(
        'database "%s" is not empty (%d user objects): restoring over it is refused. Set '
        'replace: true to restore into a new database and swap it in after success, or '
        'choose another target_db' % (target, objects), target_db=target)


def _check_privileges(cur, opts, manifest, toc, role, action):
    """What a non-superuser login cannot do, said at plan time."""
    if role['superuser']:
        return
    if action in ('create', 'replace', 'drill') and not role['createdb']:
        raise BackupError('login role %s cannot create databases (no CREATEDB), which %s needs: grant it '
                          'CREATEDB, restore into an existing empty database, or log in as a superuser'
                          % (role['user'], 'a drill' if action == 'drill' else 'this restore'))
    if opts.no_owner:
        return
    owners = set(e.rest.rsplit(' ', 1)[-1] for e in toc if ' ' in e.rest) - {'-', 'pg_database_owner'}
    if manifest.get('database_owner') and action in ('create', 'replace', 'drill'):
        owners.add(manifest['database_owner'])
    cur.execute('SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)', (sorted(owners),))
    foreign = _swap.missing_memberships(cur, set(r[0] for r in cur.fetchall()))
    if foreign:
        raise BackupError(
            'login role %s is not a superuser and not a member of %s, which own%s objects in backup "%s": '
            'restoring that ownership would fail ("must be member of role"). Set no_owner: true (the '
            'objects then belong to %s), or restore as a superuser'
            % (role['user'], ', '.join('role %s' % o for o in foreign), 's' if len(foreign) == 1 else '',
               manifest['id'], role['user']), roles=foreign)


def _plan_globals(cur, opts, path, manifest):
    if not opts.globals_first:
        return []
    if not manifest.get('globals'):
        raise BackupError('globals_first is set but backup "%s" has no globals (take it with '
                          'globals: true)' % manifest['id'])
    return _swap.plan_globals(cur, os.path.join(path, manifest['globals']))[1]


def _pg_restore_args(plan, dbname, use_list=None):
    opts = plan['options']
    argv = [plan['tool'].path, '--exit-on-error', '--no-password', '--dbname=%s' % _conninfo_dbname(dbname)]
    if opts.jobs > 1:
        argv.append('--jobs=%d' % opts.jobs)
    if opts.no_owner:
        argv += ['--no-owner', '--no-acl']
    if use_list:
        argv.append('--use-list=%s' % use_list)
    else:
        for schema in opts.schemas:
            argv.append('--schema=%s' % schema)
    argv.append(plan['archive'])
    return argv


def _restore_schema_entries(plan, work_db, env):
    """For a schema subset, create the selected schemas first.

    ``pg_restore --schema`` restores the objects in a schema but not the schema
    itself, so the SCHEMA entries (with their owner) are restored in a first
    pass through a ``--use-list``.  Returns the failed run (a
    ``_pgclient.Completed``), or None.
    """
    opts = plan['options']
    wanted = set(opts.schemas) - {'public'}
    if opts.tables or not wanted:
        return None  # the table subset's use-list holds its SCHEMA entries
    chosen = [e for e in plan['toc'] if _selection.SCHEMA_ENTRY.match(e.rest) and
              _selection.SCHEMA_ENTRY.match(e.rest).group(1) in wanted]
    if not chosen:
        return None
    with _pgclient.use_list(chosen) as path:
        done = _pgclient.run(_pg_restore_args(dict(plan, options=dataclasses.replace(opts, jobs=1, schemas=[])),
                                              work_db, use_list=path), env=env)
    return None if done.ok else done


def _conninfo_dbname(name):
    return "dbname='%s'" % name.replace('\\', '\\\\').replace("'", "\\'")


def _verify_files(path, manifest):
    """Re-hash the backup's files (while pg_restore reads them): the problems found."""
    try:
        # Linux: a thread can have its own nice value; hashing then takes
        # the CPU pg_restore leaves idle rather than slowing it down.
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
    except (AttributeError, OSError):
        pass
    return catalog.check_backup(path, manifest, verify=True)


class _EarlyCounter(object):
    """Count a table's rows as soon as pg_restore has committed its data.

    pg_restore goes on with indexes and constraints after a table's data is
    in, and those steps do not add or remove rows; counting then uses the time
    pg_restore spends building indexes instead of adding a pass at the end.
    The table's data is known to be committed when a parallel pg_restore logs
    "finished item N TABLE DATA <table>", or, restoring serially, when the
    next item starts.  Anything not counted here (ambiguous names, a lost
    connection) is counted after pg_restore by ``verify_counts``.

    ``start(pool)`` runs the counting on a pool thread; the thread reading
    pg_restore's log calls ``feed(line)``, then ``finish()``.
    """

    FINISHED = re.compile(r'finished item \d+ TABLE DATA (.+)$')
    PROCESSING = re.compile(r'processing data for table "(.+)"$')

    def __init__(self, params, dbname, tables, serial):
        self.params = params
        self.dbname = dbname
        self.serial = serial
        by_name, by_qualified = {}, {}
        for schema, name, rows in tables:
            if rows is not None:
                by_name.setdefault(name, []).append((schema, name))
                by_qualified['%s.%s' % (schema, name)] = (schema, name)
        self.by_name = dict((n, v[0]) for n, v in by_name.items() if len(v) == 1)
        self.by_qualified = by_qualified
        self.pending = None
        self.jobs = queue.Queue()
        self.cancelled = False
        self.counts = {}
        self.future = None

    def feed(self, line):
        """One line of pg_restore --verbose stderr."""
        table = None
        if self.serial:
            match = self.PROCESSING.search(line)
            if self.pending and line.startswith('pg_restore: '):
                table, self.pending = self.pending, None
            if match:
                self.pending = self.by_qualified.get(match.group(1))
        else:
            match = self.FINISHED.search(line)
            if match:
                table = self.by_name.get(match.group(1))
        if table:
            self.jobs.put(table)

    def start(self, pool):
        self.future = pool.submit(self._count)

    def _count(self):
        conn = None
        try:
            while True:
                table = self.jobs.get()
                if table is None or self.cancelled:
                    return
                if conn is None:
                    conn = connect(self.params, dbname=self.dbname, autocommit=True,
                                   application_name='dbdevops-verify')
                    with conn.cursor() as cur:
                        cur.execute('SET jit = off')  # compiling costs more than it saves for count(*)
                with conn.cursor() as cur:
                    self.counts.update(_catalog.count_rows(cur, [table]))
        except Exception:  # noqa: BLE001 - whatever is not counted here is counted afterwards
            return
        finally:
            if conn is not None:
                conn.close()

    def finish(self, succeeded):
        """Stop; returns the counts taken.  Counts of a failed restore are not used."""
        if self.future is None:
            return {}
        if not succeeded:
            self.cancelled = True
        self.jobs.put(None)
        self.future.result()
        return dict(self.counts) if succeeded else {}


def _run_pg_restore(argv, env, counter):
    """Run pg_restore, feeding its --verbose log to ``counter``; returns (returncode, stderr)."""
    if counter is None:
        done = _pgclient.run(argv, env=env)
        return done.returncode, done.stderr
    proc = _pgclient.popen(argv[:-1] + ['--verbose', argv[-1]], env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, universal_newlines=True)
    lines = []
    try:
        for line in proc.stderr:
            lines.append(line)
            counter.feed(line.rstrip('\n'))
        returncode = proc.wait()
    except BaseException:
        _pgclient.kill(proc)
        raise
    # --verbose narrates every step; keep only what is not narration for the report
    stderr = ''.join(ln for ln in lines if not _NARRATION.match(ln) or _pgclient.ERROR_LINE.search(ln))
    return returncode, stderr


_NARRATION = re.compile(r'^pg_restore: (connecting|creating|processing|launching|finished|executing|'
                        r'setting|entering|implied|restoring|disabling|enabling|dropping|'
                        r'reducing|skipping)')


def verify_counts(params, dbname, tables, jobs=1, counted=None):
    """Compare exact row counts in ``dbname`` with the manifest's; returns a report dict.

    ``counted``: ``{table_key: rows}`` already counted in ``dbname`` (by the
    early counter while pg_restore built indexes); the others are counted now,
    by up to ``jobs`` sessions.
    """
    expected = [(s, n, rows) for s, n, rows in tables if rows is not None]
    counted = counted or {}
    results = dict((_catalog.qualified(s, n), (rows, counted[_catalog.qualified(s, n)]))
                   for s, n, rows in expected if _catalog.qualified(s, n) in counted)
    todo = queue.Queue()
    for t in expected:
        if _catalog.qualified(t[0], t[1]) not in counted:
            todo.put(t)
    lock = threading.Lock()
    errors = []

    def session():
        conn = connect(params, dbname=dbname, autocommit=True, application_name='dbdevops-verify')
        try:
            with conn.cursor() as cur:
                cur.execute('SET jit = off')  # compiling costs more than it saves for count(*)
                while True:
                    try:
                        schema, name, rows = todo.get_nowait()
                    except queue.Empty:
                        return
                    key = _catalog.qualified(schema, name)
                    try:
                        actual = _catalog.count_rows(cur, [(schema, name)])[key]
                    except Exception as exc:  # noqa: BLE001 - reported per table
                        actual = None
                        with lock:
                            errors.append('%s: %s' % (key, str(exc).strip()))
                    with lock:
                        results[key] = (rows, actual)
        finally:
            conn.close()

    sessions = min(max(1, jobs), todo.qsize())
    if sessions:
        with concurrent.futures.ThreadPoolExecutor(max_workers=sessions,
                                                   thread_name_prefix='dbdevops-verify') as pool:
            for future in [pool.submit(session) for _index in range(sessions)]:
                future.result()
    mismatches = [dict(table=k, expected=v[0], actual=v[1]) for k, v in sorted(results.items())
                  if v[0] != v[1]]
    return dict(tables_checked=len(results), rows_expected=sum(r for _s, _n, r in expected),
                counted_while_restoring=len(counted),
                mismatches=mismatches, errors=errors, passed=not mismatches and not errors)


def _create_parts(plan):
    """CREATE DATABASE options from the manifest; OWNER only when that role exists (and owners are kept)."""
    manifest, opts = plan['manifest'], plan['options']
    parts = [pgsql.SQL('TEMPLATE template0')]
    for key, word in (('encoding', 'ENCODING'), ('lc_collate', 'LC_COLLATE'), ('lc_ctype', 'LC_CTYPE')):
        if manifest.get(key):
            parts.append(pgsql.SQL(word + ' {}').format(pgsql.Literal(manifest[key])))
    owner = manifest.get('database_owner')
    if owner and not opts.no_owner and plan['action'] != 'drill':
        conn = _swap.admin_connect(plan['admin'])
        try:
            with conn.cursor() as cur:
                cur.execute('SELECT 1 FROM pg_roles WHERE rolname = %s', (owner,))
                if cur.fetchone():
                    parts.append(pgsql.SQL('OWNER {}').format(pgsql.Identifier(owner)))
        finally:
            conn.close()
    return parts


def run_restore(params, plan):
    """Restore as planned; returns what was restored and the verification."""
    opts = plan['options']
    t0 = time.monotonic()
    admin = plan['admin']
    dropped = [] if plan.get('stale_dropped') is not None else _swap.drop_stale(admin)
    globals_created = []
    if opts.globals_first:
        globals_created = _swap.restore_globals(admin, os.path.join(plan['backup_path'],
                                                                    plan['manifest']['globals']))
    if plan['action'] == 'replace_selection':
        out = _run_in_place(params, plan)
    else:
        out = _run_into_database(params, plan)
    restored = _selection.selected_tables(opts, plan['manifest'])
    out.update(backup_id=plan['backup_id'], database=plan['manifest']['database'], target_db=plan['target_db'],
               action=plan['action'], tables=len(restored),
               restored_tables=[_catalog.qualified(s, n) for s, n, _rows in restored],
               globals_restored=bool(opts.globals_first), globals_created=globals_created,
               scratch_dropped=dropped, duration_ms=_tools.monotonic_ms(t0))
    return out


def _run_into_database(params, plan):
    """Restore into the target, a new target, or a scratch database (replace, drill)."""
    opts, manifest, action = plan['options'], plan['manifest'], plan['action']
    scratch = None
    if action in SCRATCH_KIND:
        scratch = _swap.Scratch(plan['admin'], SCRATCH_KIND[action], plan['target_db'])
    work_db = scratch.name if scratch else plan['target_db']
    terminated = []
    try:
        if scratch:
            scratch.create(_create_parts(plan))
        elif action == 'create':
            _swap.create_database(plan['admin'], work_db, _create_parts(plan))
        skipped, verification = _restore_and_verify(params, plan, work_db)
        if opts.analyze and action != 'drill':
            _analyze(params, work_db, None)
        if action == 'replace':
            terminated = _swap.swap(plan['admin'], scratch, plan['target_db'], opts.terminate_connections)
            scratch = None
    except BaseException:
        _discard(plan, scratch, action)
        raise
    if scratch:
        scratch.drop()                       # a drill's scratch database
    return dict(skipped=skipped, verification=verification, terminated_sessions=terminated, scratch_db=work_db)


def _discard(plan, scratch, action):
    try:
        if scratch:
            scratch.drop()
        elif action == 'create':
            _swap.drop_database(plan['admin'], plan['target_db'])
    except Exception:  # noqa: BLE001 - the original error matters more
        pass


def _restore_and_verify(params, plan, work_db):
    opts, manifest = plan['options'], plan['manifest']
    # one thread re-hashes the backup, one counts rows early; pg_restore is
    # started from this thread, which reads its log and waits for it
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix='dbdevops-restore')
    try:
        hashing = pool.submit(_verify_files, plan['backup_path'], manifest) if opts.verify else None
        skipped, chosen = [], None
        if opts.tables:
            chosen, skipped = _selection.table_subset(opts, manifest, plan['toc'])
        counter = None
        selected = _selection.selected_tables(opts, manifest)
        if opts.verify and manifest.get('row_counts_exact'):
            counter = _EarlyCounter(params, work_db, selected, serial=opts.jobs == 1)
        try:
            with _pgclient.LibpqEnv(params, dbname=work_db) as env:
                failed = _restore_schema_entries(plan, work_db, env)
                if failed is not None:
                    returncode, stderr = failed.returncode, failed.stderr
                elif chosen is not None:
                    with _pgclient.use_list(chosen) as list_path:
                        returncode, stderr = _restore_archive(plan, work_db, env, counter, pool, list_path)
                else:
                    returncode, stderr = _restore_archive(plan, work_db, env, counter, pool)
        finally:
            counted = counter.finish(succeeded=True) if counter else {}
        problems = hashing.result() if hashing else []
    finally:
        pool.shutdown(wait=False)
    if problems:
        raise BackupError('backup "%s" failed verification, restore abandoned: %s%s'
                          % (manifest['id'], '; '.join(problems), _kept_note(plan)), problems=problems)
    if returncode != 0 or _pgclient.error_lines(stderr) or 'errors ignored on restore' in stderr:
        raise BackupError('pg_restore of backup "%s" into database "%s" failed (exit %d): %s%s'
                          % (manifest['id'], work_db, returncode, _pgclient.first_error(stderr), _kept_note(plan)),
                          stderr=stderr[-4000:], backup_id=manifest['id'])
    return skipped, _verify(params, plan, work_db, selected, counted)


def _verify(params, plan, work_db, selected, counted):
    opts, manifest = plan['options'], plan['manifest']
    verification = dict(checksums='passed' if opts.verify else 'skipped')
    if not opts.verify:
        verification.update(passed=True, row_counts='skipped')
        return verification
    problems = []
    if manifest.get('row_counts_exact'):
        counts = verify_counts(params, work_db, selected, jobs=max(opts.jobs, 2), counted=counted)
        verification.update(counts)
        if not counts['passed']:
            problems.append(_describe_mismatch(counts))
    else:
        verification['row_counts'] = 'not in the manifest'
    problems += _verify_extras(params, work_db, opts, manifest, verification)
    verification['passed'] = not problems
    if problems:
        raise BackupError('restored database "%s" does not match backup "%s": %s%s'
                          % (work_db, manifest['id'], '; '.join(problems), _kept_note(plan)),
                          verification=verification)
    return verification


def _verify_extras(params, dbname, opts, manifest, verification):
    """Sequences and large objects against the manifest; fills ``verification``, returns problems."""
    partial = bool(opts.tables or opts.schemas)
    want_seq = manifest.get('sequences') is not None
    want_lo = manifest.get('large_objects') is not None and not partial
    conn = connect(params, dbname=dbname, autocommit=True, application_name='dbdevops-verify') \
        if want_seq or want_lo else None
    problems = []
    try:
        if want_seq:
            names = _selection.selected_sequences(opts, manifest)
            with conn.cursor() as cur:
                wrong = _sequence_mismatches(cur, names, manifest['sequences'])
            verification['sequences'] = dict(checked=len(names), mismatches=wrong)
            problems += ['sequence %s is at %s, behind the backup\'s %s' % (w['sequence'], w['actual'], w['expected'])
                         for w in wrong[:10]]
        else:
            verification['sequences'] = NOT_IN_MANIFEST
        if want_lo:
            with conn.cursor() as cur:
                actual = _catalog.large_object_digests(cur)
            expected = manifest['large_objects']
            wrong = [dict(oid=o, expected=expected.get(o), actual=actual.get(o))
                     for o in sorted(set(expected) | set(actual), key=int) if expected.get(o) != actual.get(o)]
            verification['large_objects'] = dict(checked=len(expected), mismatches=wrong)
            problems += ['large object %s has md5 %s, backup had %s' % (w['oid'], w['actual'], w['expected'])
                         for w in wrong[:10]]
        else:
            verification['large_objects'] = LO_SELECTION if partial else NOT_IN_MANIFEST
    finally:
        if conn is not None:
            conn.close()
    return problems


def _sequence_mismatches(cur, names, recorded):
    """Sequences of ``names`` behind their recorded value (or missing).

    A sequence is not transactional: pg_dump may read it after the snapshot
    the manifest's value was read in, so a restored value further along
    (in the direction of its increment) is correct; one behind would hand out
    numbers already used.
    """
    actual = _catalog.sequence_values(cur)
    wrong = []
    for name in names:
        got, want = actual.get(name), list(recorded[name])
        if got == want:
            continue
        if got is not None:
            cur.execute('SELECT seqincrement FROM pg_sequence WHERE seqrelid = %s::regclass', (name,))
            step = cur.fetchone()[0]
            if _next_value(got, step) * (1 if step > 0 else -1) >= _next_value(want, step) * (1 if step > 0 else -1):
                continue
        wrong.append(dict(sequence=name, expected=want, actual=got))
    return wrong


def _next_value(value, step):
    last_value, is_called = value
    return int(last_value) + (step if is_called else 0)


def _run_in_place(params, plan):
    """Replace just the selection inside the (non-empty) target, in one transaction."""
    opts, manifest, target = plan['options'], plan['manifest'], plan['target_db']
    if opts.verify:
        problems = _verify_files(plan['backup_path'], manifest)
        if problems:
            raise BackupError('backup "%s" failed verification, restore abandoned: %s; nothing was changed'
                              % (manifest['id'], '; '.join(problems)), problems=problems)
    entries, skipped = _selection.in_place_entries(opts, manifest, plan['tool'], plan['archive'],
                                                   plan['existing_schemas'])
    selected = _selection.selected_tables(opts, manifest)
    exact = opts.verify and manifest.get('row_counts_exact')
    sequences = _selection.selected_sequences(opts, manifest) if opts.verify else []
    check = _selection.check_sql(selected if exact else [], sequences, manifest.get('sequences') or {})
    work = dict(plan, psql=_pgclient.Tool('psql', plan['server_major'], opts.pg_bin_dir))
    with _pgclient.LibpqEnv(params, dbname=target) as env:
        returncode, stderr = _selection.replace_in_place(work, env, entries, check)
    if returncode != 0 or _pgclient.error_lines(stderr):
        raise BackupError(_selection.in_place_error(stderr, opts, target), stderr=stderr[-4000:],
                          backup_id=manifest['id'])
    rows = [r for _s, _n, r in selected if r is not None] if exact else []
    verification = dict(checksums='passed' if opts.verify else 'skipped', passed=True,
                        tables_checked=len(rows), rows_expected=sum(rows), counted_while_restoring=0,
                        mismatches=[], errors=[], checked_before_commit=True)
    if not exact:
        verification['row_counts'] = 'skipped' if not opts.verify else 'not in the manifest'
    verification['sequences'] = dict(checked=len(sequences), mismatches=[]) \
        if manifest.get('sequences') is not None else NOT_IN_MANIFEST
    verification['large_objects'] = LO_SELECTION
    if opts.analyze:
        _analyze(params, target, [(s, n) for s, n, _rows in selected])
    return dict(skipped=skipped, verification=verification, terminated_sessions=[], scratch_db='')


def _analyze(params, dbname, tables):
    conn = connect(params, dbname=dbname, autocommit=True, application_name=_swap.APPLICATION)
    try:
        with conn.cursor() as cur:
            if tables is None:
                cur.execute('ANALYZE')
            for schema, name in tables or []:
                cur.execute(pgsql.SQL('ANALYZE {}.{}').format(pgsql.Identifier(schema), pgsql.Identifier(name)))
    finally:
        conn.close()


def _read_toc(tool, archive):
    try:
        return _pgclient.read_toc(tool.path, archive)
    except _pgclient.ClientError as exc:
        raise BackupError('cannot read the table of contents of %s: %s'
                          % (archive, _pgclient.first_error(exc.details.get('stderr', ''))))


def _restore_archive(plan, work_db, env, counter, pool, list_path=None):
    """pg_restore of the archive (or of the entries in ``list_path``), counting rows early."""
    if counter:
        counter.start(pool)
    return _run_pg_restore(_pg_restore_args(plan, work_db, use_list=list_path), env, counter)


def _kept_note(plan):
    if plan['action'] == 'replace':
        return '; the original database "%s" is unchanged' % plan['target_db']
    if plan['action'] in ('create', 'drill'):
        return '; the partly restored database was dropped'
    return '; database "%s" may hold a partial restore' % plan['target_db']


def _describe_mismatch(counts):
    parts = ['%s has %s rows, backup had %s' % (m['table'], m['actual'], m['expected'])
             for m in counts['mismatches'][:10]]
    return '; '.join(parts + counts['errors'][:5])


def restore_drill(params, src=None, backup_id='latest', backup_db=None, jobs=1, pg_bin_dir=None, work=None):
    """Restore into a scratch database, compare with the manifest, drop it.

    Never raises for a failed drill: returns {passed, details, ...}.  Raises only
    when the drill cannot start (no backup, cannot connect).  ``work``: a plan
    from ``plan_restore`` of drill options (the engine passes its own).
    """
    if work is None:
        opts = RestoreOptions(src=src, backup_id=backup_id, backup_db=backup_db, jobs=jobs, analyze=False,
                              verify=True, pg_bin_dir=pg_bin_dir, drill=True)
        work = plan_restore(params, opts)
    t0 = time.monotonic()
    manifest = work['manifest']
    dropped = _swap.drop_stale(work['admin'])
    try:
        result = run_restore(params, dict(work, stale_dropped=dropped))
        passed, details, error = result['verification'].get('passed', False), result['verification'], None
        scratch = result['scratch_db']
    except (BackupError, _pgclient.ClientError) as exc:
        passed, details, error, scratch = False, exc.details.get('verification') or {}, str(exc), ''
    return dict(passed=passed, backup_id=manifest['id'], database=manifest['database'],
                scratch_db=scratch, verification=details, error=error, scratch_dropped=dropped,
                duration_ms=_tools.monotonic_ms(t0))
