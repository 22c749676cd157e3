# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Restore a backup and prove it: checksums while pg_restore runs, row counts
against the manifest afterwards, and for ``replace`` a restore into a scratch
database that takes the target's name only once everything passed.

    plan = plan_restore(conn_params, RestoreOptions(src='/backups', target_db='app', replace=True))
    result = run_restore(conn_params, plan)
    drill = restore_drill(conn_params, '/backups', backup_db='app')
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re
import subprocess
import tempfile
import threading
import time

from ansible_collections.dbdevops.postgresql.plugins.module_utils.connection import (
    LibpqEnv, connect)
from ansible_collections.dbdevops.postgresql.plugins.module_utils.backup import _tools, catalog
from ansible_collections.dbdevops.postgresql.plugins.module_utils.backup._tools import BackupError
from ansible_collections.dbdevops.postgresql.plugins.module_utils.backup.engine import table_key

try:
    from psycopg2 import sql as pgsql
except ImportError:  # pragma: no cover - reported by connect()
    pgsql = None

SCHEMA_ENTRY = re.compile(r'^\d+; \d+ \d+ SCHEMA - (\S+) ')

USER_OBJECTS_SQL = """
SELECT (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
           AND n.nspname !~ '^pg_toast' AND n.nspname !~ '^pg_temp')
     + (SELECT count(*) FROM pg_namespace
         WHERE nspname NOT IN ('pg_catalog', 'information_schema', 'public')
           AND nspname !~ '^pg_toast' AND nspname !~ '^pg_temp')
"""


class RestoreOptions(object):
    def __init__(self, src, backup_id='latest', backup_db=None, target_db=None, replace=False,
                 tables=None, schemas=None, jobs=1, globals_first=False, analyze=True,
                 verify=True, terminate_connections=False, no_owner=False, pg_bin_dir=None,
                 scratch=False):
        self.src = src
        self.backup_id = backup_id or 'latest'
        self.backup_db = backup_db
        self.target_db = target_db
        self.replace = replace
        self.tables = list(tables or [])
        self.schemas = list(schemas or [])
        self.jobs = int(jobs or 1)
        self.globals_first = globals_first
        self.analyze = analyze
        self.verify = verify
        self.terminate_connections = terminate_connections
        self.no_owner = no_owner
        self.pg_bin_dir = pg_bin_dir
        self.scratch = scratch


def _split_table(name):
    if '.' in name:
        schema, table = name.split('.', 1)
        return schema.strip('"'), table.strip('"')
    return None, name.strip('"')


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


def _pg_restore_args(plan, tool, dbname):
    opts = plan['options']
    manifest = plan['manifest']
    argv = [tool.path, '--exit-on-error', '--no-password',
            '--dbname=%s' % _conninfo_dbname(dbname)]
    if opts.jobs > 1:
        argv.append('--jobs=%d' % opts.jobs)
    if opts.no_owner:
        argv += ['--no-owner', '--no-acl']
    for schema in opts.schemas:
        argv.append('--schema=%s' % schema)
    for name in opts.tables:
        schema, table = _split_table(name)
        if schema and schema not in opts.schemas:
            argv.append('--schema=%s' % schema)
        argv.append('--table=%s' % table)
    argv.append(os.path.join(plan['backup_path'], manifest['archive']))
    return argv


def _restore_schema_entries(plan, tool, work_db, env):
    """For a schema/table subset, create the selected schemas first.

    ``pg_restore --schema`` restores the objects in a schema but not the schema
    itself, so the SCHEMA entries (with their owner) are restored in a first
    pass through a ``--use-list``.  Returns the failed process, or None.
    """
    opts = plan['options']
    wanted = set(opts.schemas)
    for name in opts.tables:
        schema, _table = _split_table(name)
        if schema:
            wanted.add(schema)
    wanted.discard('public')
    if not wanted:
        return None
    archive = os.path.join(plan['backup_path'], plan['manifest']['archive'])
    listing = subprocess.run([tool.path, '--list', archive], stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, check=False)
    lines = []
    for line in listing.stdout.splitlines():
        match = SCHEMA_ENTRY.match(line)
        if match and match.group(1) in wanted:
            lines.append(line)
    if not lines:
        return None
    fd, path = tempfile.mkstemp(prefix='dbdevops-restore-list-')
    try:
        with os.fdopen(fd, 'w') as f:
            f.write('\n'.join(lines) + '\n')
        argv = [tool.path, '--exit-on-error', '--no-password',
                '--dbname=%s' % _conninfo_dbname(work_db), '--use-list=%s' % path]
        if opts.no_owner:
            argv += ['--no-owner', '--no-acl']
        proc = subprocess.run(argv + [archive], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=env.environ, universal_newlines=True, check=False)
    finally:
        os.unlink(path)
    if proc.returncode != 0 or _tools.error_lines(proc.stderr):
        return proc
    return None


def _conninfo_dbname(name):
    return "dbname='%s'" % name.replace('\\', '\\\\').replace("'", "\\'")


def _selected_tables(plan):
    """Manifest tables the restore covers, as [(schema, name, rows)]."""
    opts = plan['options']
    out = []
    for t in plan['manifest'].get('tables') or []:
        if opts.schemas and not opts.tables and t['schema'] not in opts.schemas:
            continue
        if opts.tables:
            hit = False
            for name in opts.tables:
                schema, table = _split_table(name)
                if table == t['name'] and (schema is None or schema == t['schema']) and \
                        (not opts.schemas or t['schema'] in opts.schemas or schema == t['schema']):
                    hit = True
            if not hit:
                continue
        out.append((t['schema'], t['name'], t.get('rows')))
    return out


class _Hasher(threading.Thread):
    """Re-hash the backup's files while pg_restore reads them."""

    def __init__(self, path, manifest):
        super(_Hasher, self).__init__(name='dbdevops-verify-hasher')
        self.daemon = True
        self.path = path
        self.manifest = manifest
        self.problems = None

    def run(self):
        self.problems = catalog.check_backup(self.path, self.manifest, verify=True)

    def result(self):
        self.join()
        return self.problems


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
    with LibpqEnv(params, dbname=params.dbname) as env:
        proc = subprocess.run([tool.path, '-X', '-q', '--no-password', '-f', path],
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=env.environ, universal_newlines=True, check=False)
    errors = [ln for ln in _tools.error_lines(proc.stderr) if 'already exists' not in ln]
    if proc.returncode != 0 or errors:
        raise BackupError('restoring globals (roles, tablespaces) from %s failed: %s'
                          % (path, errors[0] if errors else _tools.first_error(proc.stderr)))
    return len(_tools.error_lines(proc.stderr))


def verify_counts(params, dbname, tables, jobs=1):
    """Compare exact row counts in ``dbname`` with the manifest's; returns a report dict."""
    expected = [(s, n, rows) for s, n, rows in tables if rows is not None]
    results = {}
    lock = threading.Lock()
    queue = list(expected)
    errors = []

    def worker():
        conn = connect(params, dbname=dbname, autocommit=True, application_name='dbdevops-verify')
        try:
            with conn.cursor() as cur:
                while True:
                    with lock:
                        if not queue:
                            return
                        schema, name, rows = queue.pop(0)
                    try:
                        cur.execute(pgsql.SQL('SELECT count(*) FROM ONLY {}.{}').format(
                            pgsql.Identifier(schema), pgsql.Identifier(name)))
                        actual = cur.fetchone()[0]
                    except Exception as exc:  # noqa: BLE001 - reported per table
                        actual = None
                        with lock:
                            errors.append('%s: %s' % (table_key(schema, name), str(exc).strip()))
                    with lock:
                        results[table_key(schema, name)] = (rows, actual)
        finally:
            conn.close()

    threads = [threading.Thread(target=worker) for _index in range(max(1, min(jobs, len(expected))))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    mismatches = [dict(table=k, expected=v[0], actual=v[1]) for k, v in sorted(results.items())
                  if v[0] != v[1]]
    return dict(tables_checked=len(results), rows_expected=sum(r for _s, _n, r in expected),
                mismatches=mismatches, errors=errors, passed=not mismatches and not errors)


def run_restore(params, plan):
    """Restore as planned; returns what was restored and the verification."""
    opts = plan['options']
    manifest = plan['manifest']
    target = plan['target_db']
    t0 = time.monotonic()
    tool = _tools.Tool('pg_restore', plan['server_major'], opts.pg_bin_dir)
    if plan['action'] == 'replace':
        work_db = ('%s__restore_%d' % (target, os.getpid()))[-63:]
        _drop_database(params, work_db)
    else:
        work_db = target
    created = plan['action'] in ('create', 'replace')
    globals_restored = False
    if opts.globals_first:
        _restore_globals(params, plan, _tools.Tool('psql', plan['server_major'], opts.pg_bin_dir))
        globals_restored = True
    if created:
        _create_database(params, work_db, manifest)
    hasher = _Hasher(plan['backup_path'], manifest) if opts.verify else None
    try:
        if hasher:
            hasher.start()
        argv = _pg_restore_args(plan, tool, work_db)
        with LibpqEnv(params, dbname=work_db) as env:
            proc = _restore_schema_entries(plan, tool, work_db, env)
            if proc is None:
                proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, env=env.environ,
                                      universal_newlines=True, check=False)
        problems = hasher.result() if hasher else []
        if proc.returncode != 0 or _tools.error_lines(proc.stderr) or \
                'errors ignored on restore' in proc.stderr:
            raise BackupError('pg_restore of backup "%s" into database "%s" failed (exit %d): %s%s'
                              % (manifest['id'], work_db, proc.returncode,
                                 _tools.first_error(proc.stderr), _kept_note(plan, created)),
                              stderr=proc.stderr[-4000:], backup_id=manifest['id'])
        if problems:
            raise BackupError('backup "%s" failed verification, restore abandoned: %s%s'
                              % (manifest['id'], '; '.join(problems), _kept_note(plan, created)),
                              problems=problems)
        tables = _selected_tables(plan)
        verification = dict(checksums='passed' if opts.verify else 'skipped')
        if opts.verify and manifest.get('row_counts_exact'):
            counts = verify_counts(params, work_db, tables, jobs=max(opts.jobs, 2))
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
    return dict(backup_id=manifest['id'], database=manifest['database'], target_db=target,
                action=plan['action'], tables=len(_selected_tables(plan)),
                globals_restored=globals_restored, verification=verification,
                terminated_sessions=swapped or [], duration_ms=_tools.monotonic_ms(t0))


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
    except BackupError as exc:
        passed, details, error, result = False, exc.details.get('verification') or {}, str(exc), None
    finally:
        try:
            _drop_database(params, scratch)
        except Exception:  # noqa: BLE001 - best effort; reported below
            pass
    return dict(passed=passed, backup_id=manifest['id'], database=manifest['database'],
                scratch_db=scratch, verification=details, error=error,
                duration_ms=_tools.monotonic_ms(t0))
