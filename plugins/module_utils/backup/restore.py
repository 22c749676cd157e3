# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Restore a backup and prove it: checksums while pg_restore runs, row counts
against the manifest afterwards, and for ``replace`` a restore into a scratch
database that takes the target's name only once everything passed.

    engine = RestoreEngine(conn_params, RestoreOptions(src='/backups', target_db='app', replace=True))
    plan = engine.plan()        # resolves the backup and the target; plan.result() is check mode
    result = engine.apply(plan)

With ``drill=True`` the engine restores into a scratch database, verifies it
and drops it.  The steps below the engine: ``plan_restore``, ``run_restore``,
``restore_drill``.
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
from ansible_collections.dbdevops.postgresql.plugins.module_utils.backup import _tools, catalog
from ansible_collections.dbdevops.postgresql.plugins.module_utils.backup._tools import BackupError

try:
    from psycopg2 import sql as pgsql
except ImportError:  # pragma: no cover - reported by connect()
    pgsql = None

SCHEMA_ENTRY = re.compile(r'^SCHEMA - (\S+) ')

USER_OBJECTS_SQL = """
SELECT (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
           AND n.nspname !~ '^pg_toast' AND n.nspname !~ '^pg_temp')
     + (SELECT count(*) FROM pg_namespace
         WHERE nspname NOT IN ('pg_catalog', 'information_schema', 'public')
           AND nspname !~ '^pg_toast' AND nspname !~ '^pg_temp')
"""


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
        if opts.drill:
            _path, manifest = catalog.find_backup(opts.src, opts.backup_id, database=opts.backup_db)
            drill = dict(passed=None, backup_id=manifest['id'], database=manifest['database'],
                         scratch_db='', verification={}, error=None, duration_ms=0)
            return Plan(False, _drill_values(drill, target_db=''))
        work = plan_restore(self.params, opts)
        selected = _selected_tables(work)
        values = dict(backup_id=work['backup_id'], target_db=work['target_db'], action=work['action'],
                      target_sessions=work['target_sessions'], verification={}, terminated_sessions=[],
                      tables=len(selected),
                      restored_tables=[_catalog.qualified(s, n) for s, n, _rows in selected],
                      skipped=table_subset(work, [])[1] if opts.tables else [],
                      globals_restored=bool(opts.globals_first), duration_ms=0)
        state = dict(create='absent', restore_into_empty='empty').get(work['action'], 'has data')
        diff = dict(before=dict(database=work['target_db'], state=state),
                    after=dict(database=work['target_db'], state='restored from %s' % work['backup_id']))
        return Plan(True, values, diff=diff, work=work)

    def apply(self, plan):
        opts = self.options
        if opts.drill:
            drill = restore_drill(self.params, opts.src, backup_id=plan.values['backup_id'],
                                  backup_db=opts.backup_db, jobs=opts.jobs, pg_bin_dir=opts.pg_bin_dir)
            values = _drill_values(drill, target_db=drill['scratch_db'])
            if not drill['passed']:
                raise BackupError('restore drill of backup %s failed: %s'
                                  % (drill['backup_id'], drill['error'] or drill['verification']), **values)
            return finish(values, changed=False)
        done = run_restore(self.params, plan.work)
        values = dict(plan.values)
        values.update((key, done[key]) for key in (
            'verification', 'terminated_sessions', 'tables', 'restored_tables', 'skipped',
            'globals_restored', 'duration_ms'))
        return finish(values, changed=True, diff=plan.diff)


def _drill_values(drill, target_db):
    return dict(backup_id=drill['backup_id'], target_db=target_db, action='drill', target_sessions=[],
                drill=drill, verification=drill['verification'], duration_ms=drill['duration_ms'])


def _db_state(cur, name):
    cur.execute('SELECT 1 FROM pg_database WHERE datname = %s', (name,))
    return cur.fetchone() is not None


def _sessions(cur, name):
    cur.execute('SELECT pid, usename, application_name, client_addr::text, state FROM pg_stat_activity '
                'WHERE datname = %s AND pid <> pg_backend_pid()', (name,))
    return [dict(pid=r[0], user=r[1], application_name=r[2], client_addr=r[3], state=r[4])
            for r in cur.fetchall()]


def _user_objects(params, dbname):
    conn = connect(params, dbname=dbname, autocommit=True, application_name='dbdevops-restore')
    try:
        with conn.cursor() as cur:
            cur.execute(USER_OBJECTS_SQL)
            return cur.fetchone()[0]
    finally:
        conn.close()


def plan_restore(params, opts):
    """Resolve the backup and decide how to restore it; no change made."""
    if opts.jobs < 1:
        raise BackupError('jobs must be at least 1')
    path, manifest = catalog.find_backup(opts.src, opts.backup_id, database=opts.backup_db)
    target = opts.target_db or manifest['database']
    conn = connect(params, autocommit=True, application_name='dbdevops-restore')
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT current_setting('server_version_num')::int")
            server_major = cur.fetchone()[0] // 10000
            exists = _db_state(cur, target)
            sessions = _sessions(cur, target) if exists else []
    finally:
        conn.close()
    objects = _user_objects(params, target) if exists else 0
    if not exists:
        action = 'create'
    elif objects == 0:
        action = 'restore_into_empty'
    elif opts.replace:
        action = 'replace'
    else:
        raise BackupError(
            'database "%s" is not empty (%d user objects): restoring over it is refused. Set '
            'replace: true to restore into a new database and swap it in after success, or '
            'choose another target_db' % (target, objects), target_db=target)
    if manifest.get('format') == 'custom' and opts.jobs > 1:
        pass  # pg_restore -j works on custom archives too
    if opts.globals_first and not manifest.get('globals'):
        raise BackupError('globals_first is set but backup "%s" has no globals (take it with '
                          'globals: true)' % manifest['id'])
    return dict(backup_id=manifest['id'], backup_path=path, manifest=manifest, target_db=target,
                action=action, target_sessions=sessions, server_major=server_major, options=opts)


def _pg_restore_args(plan, tool, dbname, use_list=None):
    opts = plan['options']
    manifest = plan['manifest']
    argv = [tool.path, '--exit-on-error', '--no-password',
            '--dbname=%s' % _conninfo_dbname(dbname)]
    if opts.jobs > 1:
        argv.append('--jobs=%d' % opts.jobs)
    if opts.no_owner:
        argv += ['--no-owner', '--no-acl']
    if use_list:
        argv.append('--use-list=%s' % use_list)
    else:
        for schema in opts.schemas:
            argv.append('--schema=%s' % schema)
    argv.append(os.path.join(plan['backup_path'], manifest['archive']))
    return argv


def _toc_matches(rest, keys, prefixes):
    """Whether a TOC entry ("DESC schema tag owner") is one of ``keys`` (owner left out)."""
    for key in [rest] + [rest[:i] for i, ch in enumerate(rest) if ch == ' ']:
        if key in keys and (key == rest or ' ' not in rest[len(key) + 1:]):
            return True
    return any(rest.startswith(p) for p in prefixes)


def table_subset(plan, toc):
    """TOC entries that restore the selected tables as usable tables.

    ``pg_restore --table`` restores a table's definition and data only: no
    primary key, index, default (so no ``serial``), owned sequence, trigger or
    policy.  This picks, from the manifest's record of what belongs to each
    table, those entries too.  A foreign key is included only when the table
    it references is restored as well; the others are returned as skipped.
    Returns ``(entries, skipped)``.
    """
    selected = [(s, n) for s, n, _rows in _selected_tables(plan)]
    chosen = set(selected)
    objects = dict(((t['schema'], t['name']), t.get('objects') or {})
                   for t in plan['manifest'].get('tables') or [])
    keys, prefixes, skipped = set(), [], []
    for schema in sorted(set(s for s, _n in selected) - {'public'}):
        keys.update(['SCHEMA - %s' % schema, 'COMMENT - SCHEMA %s' % schema, 'ACL - SCHEMA %s' % schema])
    for schema, name in selected:
        obj = objects.get((schema, name), {})
        keys.update('%s %s %s' % (desc, schema, name) for desc in ('TABLE', 'TABLE DATA', 'ROW SECURITY'))
        keys.update(['COMMENT %s TABLE %s' % (schema, name), 'ACL %s TABLE %s' % (schema, name)])
        prefixes += ['COMMENT %s COLUMN %s.' % (schema, name), 'ACL %s COLUMN %s.' % (schema, name)]
        for col in obj.get('defaults', []):
            keys.add('DEFAULT %s %s %s' % (schema, name, col))
        for con in obj.get('constraints', []):
            keys.update(['CONSTRAINT %s %s %s' % (schema, name, con),
                         'CHECK CONSTRAINT %s %s %s' % (schema, name, con),
                         'COMMENT %s CONSTRAINT %s ON %s' % (schema, con, name)])
        for index in obj.get('indexes', []):
            keys.update(['INDEX %s %s' % (schema, index), 'COMMENT %s INDEX %s' % (schema, index)])
        for seq in obj.get('sequences', []):
            keys.update('%s %s %s' % (desc, schema, seq) for desc in ('SEQUENCE', 'SEQUENCE OWNED BY', 'SEQUENCE SET'))
            keys.update(['ACL %s SEQUENCE %s' % (schema, seq), 'COMMENT %s SEQUENCE %s' % (schema, seq)])
        for trigger in obj.get('triggers', []):
            keys.update(['TRIGGER %s %s %s' % (schema, name, trigger),
                         'COMMENT %s TRIGGER %s ON %s' % (schema, trigger, name)])
        for policy in obj.get('policies', []):
            keys.update(['POLICY %s %s %s' % (schema, name, policy),
                         'COMMENT %s POLICY %s ON %s' % (schema, policy, name)])
        for fk in obj.get('foreign_keys', []):
            if (fk['schema'], fk['table']) in chosen:
                keys.add('FK CONSTRAINT %s %s %s' % (schema, name, fk['name']))
            else:
                skipped.append(dict(table=_catalog.qualified(schema, name), foreign_key=fk['name'],
                                    references=_catalog.qualified(fk['schema'], fk['table']),
                                    reason='the referenced table is not restored'))
    return [entry for entry in toc if _toc_matches(entry.rest, keys, prefixes)], skipped


def _restore_schema_entries(plan, tool, work_db, env, toc):
    """For a schema/table subset, create the selected schemas first.

    ``pg_restore --schema`` restores the objects in a schema but not the schema
    itself, so the SCHEMA entries (with their owner) are restored in a first
    pass through a ``--use-list``.  Returns the failed run (a
    ``_pgclient.Completed``), or None.
    """
    opts = plan['options']
    if opts.tables:
        return None  # the table subset's use-list holds its SCHEMA entries
    wanted = set(opts.schemas)
    wanted.discard('public')
    if not wanted:
        return None
    chosen = []
    for entry in toc:
        match = SCHEMA_ENTRY.match(entry.rest)
        if match and match.group(1) in wanted:
            chosen.append(entry)
    if not chosen:
        return None
    archive = os.path.join(plan['backup_path'], plan['manifest']['archive'])
    with _pgclient.use_list(chosen) as path:
        argv = [tool.path, '--exit-on-error', '--no-password',
                '--dbname=%s' % _conninfo_dbname(work_db), '--use-list=%s' % path]
        if opts.no_owner:
            argv += ['--no-owner', '--no-acl']
        done = _pgclient.run(argv + [archive], env=env)
    return None if done.ok else done


def _conninfo_dbname(name):
    return "dbname='%s'" % name.replace('\\', '\\\\').replace("'", "\\'")


def _selected_tables(plan):
    """Manifest tables the restore covers, as [(schema, name, rows)]."""
    opts = plan['options']
    wanted = [_catalog.parse_table(name) for name in opts.tables]
    out = []
    for t in plan['manifest'].get('tables') or []:
        if opts.schemas and not opts.tables and t['schema'] not in opts.schemas:
            continue
        if opts.tables and not any(
                table == t['name'] and (schema is None or schema == t['schema']) and
                (not opts.schemas or t['schema'] in opts.schemas or schema == t['schema'])
                for schema, table in wanted):
            continue
        out.append((t['schema'], t['name'], t.get('rows')))
    return out


def _verify_files(path, manifest):
    """Re-hash the backup's files (while pg_restore reads them): the problems found."""
    try:
        # Linux: a thread can have its own nice value; hashing then takes
        # the CPU pg_restore leaves idle rather than slowing it down.
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
    except (AttributeError, OSError):
        pass
    return catalog.check_backup(path, manifest, verify=True)


def _create_database(params, name, manifest, owner_ok=True):
    conn = connect(params, autocommit=True, application_name='dbdevops-restore')
    try:
        with conn.cursor() as cur:
            owner = manifest.get('database_owner')
            if owner:
                cur.execute('SELECT 1 FROM pg_roles WHERE rolname = %s', (owner,))
                if not cur.fetchone():
                    owner = None
            parts = [pgsql.SQL('CREATE DATABASE {} TEMPLATE template0').format(pgsql.Identifier(name))]
            if manifest.get('encoding'):
                parts.append(pgsql.SQL('ENCODING {}').format(pgsql.Literal(manifest['encoding'])))
            if manifest.get('lc_collate'):
                parts.append(pgsql.SQL('LC_COLLATE {}').format(pgsql.Literal(manifest['lc_collate'])))
            if manifest.get('lc_ctype'):
                parts.append(pgsql.SQL('LC_CTYPE {}').format(pgsql.Literal(manifest['lc_ctype'])))
            if owner and owner_ok:
                parts.append(pgsql.SQL('OWNER {}').format(pgsql.Identifier(owner)))
            cur.execute(pgsql.SQL(' ').join(parts))
    finally:
        conn.close()


def _drop_database(params, name):
    conn = connect(params, autocommit=True, application_name='dbdevops-restore')
    try:
        with conn.cursor() as cur:
            cur.execute(pgsql.SQL('DROP DATABASE IF EXISTS {} WITH (FORCE)').format(pgsql.Identifier(name)))
    finally:
        conn.close()


def _restore_globals(params, plan, tool):
    path = os.path.join(plan['backup_path'], plan['manifest']['globals'])
    with _pgclient.LibpqEnv(params, dbname=params.dbname) as env:
        done = _pgclient.run([tool.path, '-X', '-q', '--no-password', '-f', path], env=env)
    errors = [ln for ln in _pgclient.error_lines(done.stderr) if 'already exists' not in ln]
    if done.returncode != 0 or errors:
        raise BackupError('restoring globals (roles, tablespaces) from %s failed: %s'
                          % (path, errors[0] if errors else _pgclient.first_error(done.stderr)))
    return len(_pgclient.error_lines(done.stderr))


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


def run_restore(params, plan):
    """Restore as planned; returns what was restored and the verification."""
    opts = plan['options']
    manifest = plan['manifest']
    target = plan['target_db']
    t0 = time.monotonic()
    tool = _pgclient.Tool('pg_restore', plan['server_major'], opts.pg_bin_dir)
    if plan['action'] == 'replace':
        work_db = ('%s__restore_%d' % (target, os.getpid()))[-63:]
        _drop_database(params, work_db)
    else:
        work_db = target
    created = plan['action'] in ('create', 'replace')
    globals_restored = False
    if opts.globals_first:
        _restore_globals(params, plan, _pgclient.Tool('psql', plan['server_major'], opts.pg_bin_dir))
        globals_restored = True
    if created:
        _create_database(params, work_db, manifest)
    # one thread re-hashes the backup, one counts rows early; pg_restore is
    # started from this thread, which reads its log and waits for it
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix='dbdevops-restore')
    try:
        hashing = pool.submit(_verify_files, plan['backup_path'], manifest) if opts.verify else None
        archive = os.path.join(plan['backup_path'], manifest['archive'])
        # the table of contents, read once, when a subset needs it
        toc = _read_toc(tool, archive) if opts.tables or set(opts.schemas) - {'public'} else []
        skipped = []
        chosen = None
        if opts.tables:
            chosen, skipped = table_subset(plan, toc)
        counter = None
        if opts.verify and manifest.get('row_counts_exact'):
            counter = _EarlyCounter(params, work_db, _selected_tables(plan), serial=opts.jobs == 1)
        try:
            with _pgclient.LibpqEnv(params, dbname=work_db) as env:
                failed = _restore_schema_entries(plan, tool, work_db, env, toc)
                if failed is not None:
                    returncode, stderr = failed.returncode, failed.stderr
                elif chosen is not None:
                    with _pgclient.use_list(chosen) as list_path:
                        returncode, stderr = _restore_archive(plan, tool, work_db, env, counter, pool,
                                                              list_path)
                else:
                    returncode, stderr = _restore_archive(plan, tool, work_db, env, counter, pool)
        finally:
            counted = counter.finish(succeeded=True) if counter else {}
        problems = hashing.result() if hashing else []
        if problems:
            raise BackupError('backup "%s" failed verification, restore abandoned: %s%s'
                              % (manifest['id'], '; '.join(problems), _kept_note(plan, created)),
                              problems=problems)
        if returncode != 0 or _pgclient.error_lines(stderr) or 'errors ignored on restore' in stderr:
            raise BackupError('pg_restore of backup "%s" into database "%s" failed (exit %d): %s%s'
                              % (manifest['id'], work_db, returncode,
                                 _pgclient.first_error(stderr), _kept_note(plan, created)),
                              stderr=stderr[-4000:], backup_id=manifest['id'])
        tables = _selected_tables(plan)
        verification = dict(checksums='passed' if opts.verify else 'skipped')
        if opts.verify and manifest.get('row_counts_exact'):
            counts = verify_counts(params, work_db, tables, jobs=max(opts.jobs, 2), counted=counted)
            verification.update(counts)
            if not counts['passed']:
                raise BackupError('restored database "%s" does not match backup "%s": %s%s'
                                  % (work_db, manifest['id'], _describe_mismatch(counts),
                                     _kept_note(plan, created)), verification=counts)
        else:
            verification['passed'] = True
            verification['row_counts'] = 'not in the manifest' if opts.verify else 'skipped'
        if opts.analyze:
            conn = connect(params, dbname=work_db, autocommit=True, application_name='dbdevops-restore')
            try:
                with conn.cursor() as cur:
                    cur.execute('ANALYZE')
            finally:
                conn.close()
        swapped = None
        if plan['action'] == 'replace':
            swapped = _swap(params, work_db, target, opts.terminate_connections)
    except BaseException:
        if created:
            try:
                _drop_database(params, work_db)
            except Exception:  # noqa: BLE001 - the original error matters more
                pass
        raise
    finally:
        pool.shutdown(wait=False)
    restored = _selected_tables(plan)
    return dict(backup_id=manifest['id'], database=manifest['database'], target_db=target,
                action=plan['action'], tables=len(restored),
                restored_tables=[_catalog.qualified(s, n) for s, n, _rows in restored], skipped=skipped,
                globals_restored=globals_restored, verification=verification,
                terminated_sessions=swapped or [], duration_ms=_tools.monotonic_ms(t0))


def _read_toc(tool, archive):
    try:
        return _pgclient.read_toc(tool.path, archive)
    except _pgclient.ClientError as exc:
        raise BackupError('cannot read the table of contents of %s: %s'
                          % (archive, _pgclient.first_error(exc.details.get('stderr', ''))))


def _restore_archive(plan, tool, work_db, env, counter, pool, list_path=None):
    """pg_restore of the archive (or of the entries in ``list_path``), counting rows early."""
    if counter:
        counter.start(pool)
    return _run_pg_restore(_pg_restore_args(plan, tool, work_db, use_list=list_path), env, counter)


def _kept_note(plan, created):
    if plan['action'] == 'replace':
        return '; the original database "%s" is unchanged' % plan['target_db']
    if created:
        return '; the partly restored database was dropped'
    return '; database "%s" may hold a partial restore' % plan['target_db']


def _describe_mismatch(counts):
    parts = ['%s has %s rows, backup had %s' % (m['table'], m['actual'], m['expected'])
             for m in counts['mismatches'][:10]]
    return '; '.join(parts + counts['errors'][:5])


def _swap(params, work_db, target, terminate):
    conn = connect(params, autocommit=True, application_name='dbdevops-restore')
    old = ('%s__old_%d' % (target, os.getpid()))[-63:]
    try:
        with conn.cursor() as cur:
            sessions = _sessions(cur, target)
            if sessions and not terminate:
                raise BackupError(
                    'database "%s" has %d active connection(s) (%s): the restored copy was '
                    'discarded and the original is unchanged; close them or set '
                    'terminate_connections: true' % (
                        target, len(sessions),
                        ', '.join('pid %s user %s app "%s"' % (s['pid'], s['user'], s['application_name'])
                                  for s in sessions[:5])), sessions=sessions)
            if sessions:
                cur.execute(pgsql.SQL('ALTER DATABASE {} WITH ALLOW_CONNECTIONS false').format(
                    pgsql.Identifier(target)))
                cur.execute('SELECT pg_terminate_backend(pid) FROM pg_stat_activity '
                            'WHERE datname = %s AND pid <> pg_backend_pid()', (target,))
                for _attempt in range(50):
                    if not _sessions(cur, target):
                        break
                    time.sleep(0.1)
            cur.execute(pgsql.SQL('ALTER DATABASE {} RENAME TO {}').format(
                pgsql.Identifier(target), pgsql.Identifier(old)))
            try:
                cur.execute(pgsql.SQL('ALTER DATABASE {} RENAME TO {}').format(
                    pgsql.Identifier(work_db), pgsql.Identifier(target)))
            except Exception:
                cur.execute(pgsql.SQL('ALTER DATABASE {} RENAME TO {}').format(
                    pgsql.Identifier(old), pgsql.Identifier(target)))
                raise
            if sessions:
                cur.execute(pgsql.SQL('ALTER DATABASE {} WITH ALLOW_CONNECTIONS true').format(
                    pgsql.Identifier(target)))
            cur.execute(pgsql.SQL('DROP DATABASE {} WITH (FORCE)').format(pgsql.Identifier(old)))
    finally:
        conn.close()
    return sessions


def restore_drill(params, src, backup_id='latest', backup_db=None, jobs=1, pg_bin_dir=None):
    """Restore into a scratch database, compare counts with the manifest, drop it.

    Never raises for a failed drill: returns {passed, details, ...}.  Raises only
    when the drill cannot start (no backup, cannot connect).
    """
    path, manifest = catalog.find_backup(src, backup_id, database=backup_db)
    scratch = ('drill_%s_%d' % (_tools.safe_name(manifest['database']), os.getpid()))[:63]
    opts = RestoreOptions(src=src, backup_id=manifest['id'], target_db=scratch, jobs=jobs,
                          analyze=False, verify=True, pg_bin_dir=pg_bin_dir, no_owner=False)
    t0 = time.monotonic()
    try:
        _drop_database(params, scratch)
        plan = plan_restore(params, opts)
        result = run_restore(params, plan)
        passed = result['verification'].get('passed', False)
        details = result['verification']
        error = None
    except (BackupError, _pgclient.ClientError) as exc:
        passed, details, error, result = False, exc.details.get('verification') or {}, str(exc), None
    finally:
        try:
            _drop_database(params, scratch)
        except Exception:  # noqa: BLE001 - best effort; reported below
            pass
    return dict(passed=passed, backup_id=manifest['id'], database=manifest['database'],
                scratch_db=scratch, verification=details, error=error,
                duration_ms=_tools.monotonic_ms(t0))
