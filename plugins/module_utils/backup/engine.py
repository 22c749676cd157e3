# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Take backups you can prove: pg_dump in one exported snapshot, row counts in
that same snapshot, SHA-256 of every file, a manifest, and an atomic rename
only after the archive reads back; then retention.

    engine = BackupEngine(conn_params, BackupOptions(dest='/backups', databases=['app']))
    plan = engine.plan()        # checks everything, writes nothing; plan.result() is check mode
    result = engine.apply(plan) # the backups, then retention

``take(plan)`` and ``retain(plan)`` are the two steps of ``apply`` (the host
CLI logs each); ``plan_backup``/``run_backup`` are the steps below them.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import concurrent.futures
import dataclasses
import errno
import json
import os
import shutil
import socket
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
    import psycopg2.extensions as pgext
    from psycopg2 import sql as pgsql
except ImportError:  # pragma: no cover - reported by connect()
    pgext = pgsql = None

FORMATS = ('custom', 'directory')
COMPRESSIONS = ('gzip', 'none', 'lz4', 'zstd')

# What belongs to each table, read in the dump's snapshot, so that restoring a
# table subset can bring its indexes, constraints, defaults, owned sequences,
# triggers and policies too (pg_restore --table alone brings none of them).
# Each catalog is read once and grouped by table (a subquery per table and
# kind cost 1.5x as much on 600 tables).
TABLE_OBJECTS_SQL = """
WITH rel AS (
  SELECT c.oid, n.nspname, c.relname
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE c.relkind = 'r'
     AND n.nspname NOT IN ('pg_catalog', 'information_schema')
     AND n.nspname !~ '^pg_toast' AND n.nspname !~ '^pg_temp'
), idx AS (
  SELECT x.indrelid AS oid, array_agg(i.relname ORDER BY i.relname) AS names
    FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
   WHERE x.indrelid IN (SELECT oid FROM rel) GROUP BY 1
), con AS (
  SELECT k.conrelid AS oid,
         array_agg(k.conname ORDER BY k.conname) FILTER (WHERE k.contype <> 'f') AS names,
         array_agg(json_build_object('name', k.conname, 'schema', rn.nspname, 'table', r.relname)::text
                   ORDER BY k.conname) FILTER (WHERE k.contype = 'f') AS fks
    FROM pg_constraint k LEFT JOIN pg_class r ON r.oid = k.confrelid
    LEFT JOIN pg_namespace rn ON rn.oid = r.relnamespace
   WHERE k.conrelid IN (SELECT oid FROM rel) GROUP BY 1
), def AS (
  SELECT d.adrelid AS oid, array_agg(a.attname ORDER BY a.attname) AS names
    FROM pg_attrdef d JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum
   WHERE d.adrelid IN (SELECT oid FROM rel) GROUP BY 1
), seq AS (
  SELECT dep.refobjid AS oid, array_agg(s.relname ORDER BY s.relname) AS names
    FROM pg_depend dep JOIN pg_class s ON s.oid = dep.objid
   WHERE dep.classid = 'pg_class'::regclass AND dep.refclassid = 'pg_class'::regclass
     AND dep.deptype IN ('a', 'i') AND s.relkind = 'S' GROUP BY 1
), trg AS (
  SELECT t.tgrelid AS oid, array_agg(t.tgname ORDER BY t.tgname) AS names
    FROM pg_trigger t WHERE NOT t.tgisinternal GROUP BY 1
), pol AS (
  SELECT p.polrelid AS oid, array_agg(p.polname ORDER BY p.polname) AS names FROM pg_policy p GROUP BY 1
)
SELECT rel.nspname, rel.relname, coalesce(idx.names, '{}'), coalesce(con.names, '{}'),
       coalesce(con.fks, '{}'), coalesce(def.names, '{}'), coalesce(seq.names, '{}'),
       coalesce(trg.names, '{}'), coalesce(pol.names, '{}')
  FROM rel LEFT JOIN idx ON idx.oid = rel.oid LEFT JOIN con ON con.oid = rel.oid
  LEFT JOIN def ON def.oid = rel.oid LEFT JOIN seq ON seq.oid = rel.oid
  LEFT JOIN trg ON trg.oid = rel.oid LEFT JOIN pol ON pol.oid = rel.oid
"""

# Every user sequence (as _catalog.SEQUENCES_SQL) with its last value when it
# has been called: pg_sequence_last_value reads all of them in one statement
# (a UNION of one SELECT per sequence plans and opens each as a relation, 30x
# slower on 600 sequences); it is NULL for a sequence not called yet, whose
# last_value is then read from the sequence itself.
SEQUENCE_VALUES_SQL = """
SELECT n.nspname, c.relname, pg_sequence_last_value(c.oid)
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind = 'S'
   AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_temp'
   AND NOT EXISTS (SELECT 1 FROM pg_depend d
                    WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
 ORDER BY 1, 2
"""

META_SQL = """
SELECT current_setting('server_version'), current_setting('server_version_num')::int,
       current_setting('cluster_name'), pg_is_in_recovery(),
       pg_encoding_to_char(d.encoding), d.datcollate, d.datctype, pg_get_userbyid(d.datdba),
       CASE WHEN has_function_privilege('pg_control_system()', 'EXECUTE')
            THEN (SELECT system_identifier::text FROM pg_control_system()) END,
       pg_export_snapshot()
  FROM pg_database d WHERE d.datname = current_database()
"""


@dataclasses.dataclass
class BackupOptions(object):
    """What to back up and how: the ``backup`` module's options and the host CLI's config keys."""

    dest: str = option(type='path', required=True)
    databases: list = option([], type='list', elements='str')
    all_databases: bool = option(False, type='bool')
    format: str = option('custom', choices=list(FORMATS))
    jobs: int = option(1, type='int')
    compression: str = option('gzip', choices=list(COMPRESSIONS))
    compression_level: int = option(type='int')
    globals: bool = option(False, type='bool')
    count_rows: bool = option(True, type='bool')
    os_owner: str = option()
    pg_bin_dir: str = option(type='path')
    lock_wait_timeout: str = option()
    retention_keep_last: int = option(type='int')
    retention_keep_days: int = option(type='int')
    retention_keep_daily: int = option(type='int')
    retention_keep_weekly: int = option(type='int')
    retention_keep_monthly: int = option(type='int')
    retention_verify: bool = option(True, type='bool')
    # the host CLI only: the role sits on every node and backs up the primary
    skip_on_standby: bool = option(True, type='bool', module=False)

    RULES = dict(mutually_exclusive=[('databases', 'all_databases')])


class BackupEngine(object):
    """The ``backup`` module and the host CLI: plan(), then apply(plan)."""

    def __init__(self, params, options):
        self.params = params
        self.options = options

    def plan(self):
        """Check everything a backup needs and name the backups it would take; writes nothing."""
        policy = catalog.retention_policy(self.options)  # a bad policy fails before connecting
        work = plan_backup(self.params, self.options)
        now = _tools.utcnow()
        would = [dict(backup_id=new_backup_id(work['dest'], db, now), database=db, path=None,
                      bytes=0, duration_ms=0) for db in work['databases']]
        work.update(policy=policy, now=now, would=would,
                    before=[b['backup_id'] for b in catalog.list_backups(work['dest'])[0]])
        first = would[0] if would else {}
        values = dict(backup_id=first.get('backup_id', ''), path='', bytes=0, duration_ms=0,
                      manifest={}, backups=would, compression_supported=work['supported_compression'])
        return _BackupPlan(self, values, work)

    def take(self, plan):
        """The backups of every planned database: [{backup_id, database, path, bytes, duration_ms, manifest}]."""
        return run_backup(self.params, plan.work)

    def retain(self, plan, check_mode=False):
        """Retention over ``dest`` (see catalog.apply_retention); in check mode counting the planned backups."""
        work = plan.work
        extra = None
        if check_mode:
            extra = [dict(backup_id='(new) ' + w['backup_id'], database=w['database'], status='complete',
                          end=_tools.iso(work['now']), path=None, virtual=True) for w in work['would']]
        return catalog.apply_retention(work['dest'], work['policy'], check_mode=check_mode, extra=extra,
                                       verify=self.options.retention_verify)

    def apply(self, plan):
        taken = self.take(plan)
        outcome = self.retain(plan)
        first = taken[0]
        values = dict(backup_id=first['backup_id'], path=first['path'],
                      bytes=sum(r['bytes'] for r in taken),
                      duration_ms=sum(r['duration_ms'] for r in taken), manifest=first['manifest'],
                      backups=[dict((k, r[k]) for k in ('backup_id', 'database', 'path', 'bytes', 'duration_ms'))
                               for r in taken],
                      compression_supported=plan.work['supported_compression'])
        values.update(_retention_values(outcome))
        return finish(values, changed=True, diff=_diff(plan.work['before'], values))


class _BackupPlan(Plan):
    """A backup's plan; the retention part of the check-mode answer is worked out when asked for.

    Retention verifies every backup it keeps before deleting any (re-reading
    them all), so a real run, which applies retention after the backup, does
    not pay for it twice: ``result()`` computes it, ``apply()`` never needs it.
    """

    def __init__(self, engine, values, work):
        super(_BackupPlan, self).__init__(True, values, work=work)
        self.engine = engine

    def result(self):
        if 'deleted' not in self.values:
            self.values.update(_retention_values(self.engine.retain(self, check_mode=True)))
            self.diff = _diff(self.work['before'], self.values)
        return super(_BackupPlan, self).result()


def _retention_values(outcome):
    return dict(deleted=[d['backup_id'] for d in outcome['deleted']],
                partial_removed=outcome['partial_removed'], retention_corrupt=outcome['corrupt'])


def _diff(before, values):
    """The backup ids under dest before and after: the new ones added, those retention deletes gone."""
    taken = [b['backup_id'] for b in values['backups']]
    after = sorted((set(before) | set(taken)) - set(values['deleted']))
    return dict(before=dict(backups=sorted(before)), after=dict(backups=after))


def table_objects(cur):
    """{(schema, table): {indexes, constraints, foreign_keys, defaults, sequences, triggers, policies}}."""
    cur.execute(TABLE_OBJECTS_SQL)
    out = {}
    for schema, name, indexes, constraints, fks, defaults, sequences, triggers, policies in cur.fetchall():
        out[(schema, name)] = dict(
            indexes=list(indexes), constraints=list(constraints),
            foreign_keys=[json.loads(fk) for fk in fks], defaults=list(defaults),
            sequences=list(sequences), triggers=list(triggers), policies=list(policies))
    return out


_COMPRESSION_METHODS = {}


def compression_methods(tool):
    """``tool.compression_methods()``, asked once per binary (it runs ``pg_dump --help``)."""
    try:
        info = os.stat(tool.path)
        key = (tool.path, info.st_size, info.st_mtime_ns)
    except OSError:
        return tool.compression_methods()
    if key not in _COMPRESSION_METHODS:
        _COMPRESSION_METHODS[key] = tool.compression_methods()
    return list(_COMPRESSION_METHODS[key])


def compression_args(tool, method, level):
    """pg_dump arguments for a compression choice, or a clear error."""
    if method not in COMPRESSIONS:
        raise BackupError('compression must be one of %s, not "%s"' % (', '.join(COMPRESSIONS), method))
    supported = compression_methods(tool)
    if method not in supported:
        raise BackupError(
            'compression "%s" needs pg_dump 16 or later; %s is %s and supports only %s. '
            'Use compression: gzip, or install a PostgreSQL 16+ client and set pg_bin_dir'
            % (method, tool.path, tool.version, ', '.join(supported)))
    if level is not None and not 0 <= int(level) <= (22 if method == 'zstd' else 9):
        raise BackupError('compression_level %s is out of range for %s' % (level, method))
    if method == 'none':
        return ['-Z', '0']
    if tool.major >= 16:
        return ['--compress=%s' % method + ('' if level is None else ':%d' % int(level))]
    if level is None:
        return []
    return ['-Z', str(int(level))]


def open_session(params, server_major=None, **kwargs):
    """``connect()`` as ``dbdevops-backup`` (server timeouts are off from the session's start)."""
    kwargs.setdefault('application_name', 'dbdevops-backup')
    return connect(params, server_major=server_major, **kwargs)


def plan_backup(params, opts):
    """Check everything that can be checked before writing a byte; return the plan (a dict)."""
    if opts.format not in FORMATS:
        raise BackupError('format must be one of %s, not "%s"' % (', '.join(FORMATS), opts.format))
    if opts.jobs < 1:
        raise BackupError('jobs must be at least 1')
    if opts.jobs > 1 and opts.format != 'directory':
        raise BackupError('jobs > 1 needs format: directory (pg_dump dumps in parallel only '
                          'into a directory archive)')
    if not opts.dest:
        raise BackupError('dest (the backup root folder) is required')
    conn = open_session(params, autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT current_setting('server_version_num')::int, pg_is_in_recovery()")
            version_num, in_recovery = cur.fetchone()
            cur.execute('SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate '
                        'ORDER BY datname')
            existing = [row[0] for row in cur.fetchall()]
    finally:
        conn.close()
    if opts.all_databases:
        databases = existing
    else:
        databases = opts.databases or [params.dbname]
        missing = [db for db in databases if db not in existing]
        if missing:
            raise BackupError('database %s does not exist on %s: existing databases are %s'
                              % (', '.join('"%s"' % db for db in missing), params.where(),
                                 ', '.join(existing)), missing=missing)
    server_major = version_num // 10000
    pg_dump = _pgclient.Tool('pg_dump', server_major, opts.pg_bin_dir)
    compress = compression_args(pg_dump, opts.compression, opts.compression_level)
    return dict(dest=os.path.abspath(opts.dest), databases=databases, format=opts.format,
                jobs=opts.jobs, compression=opts.compression,
                compression_level=opts.compression_level, compress_args=compress,
                globals=bool(opts.globals), count_rows=bool(opts.count_rows),
                server_major=server_major, in_recovery=in_recovery,
                pg_dump=pg_dump.path, pg_dump_version=pg_dump.version,
                supported_compression=compression_methods(pg_dump), options=opts)


def run_backup(params, plan, now=None):
    """Back up every planned database; returns one result dict per database."""
    opts = plan['options']
    owner = _tools.resolve_owner(opts.os_owner)
    _tools.ensure_dir(plan['dest'], owner)
    tools = dict(pg_dump=_pgclient.Tool('pg_dump', plan['server_major'], opts.pg_bin_dir),
                 pg_restore=_pgclient.Tool('pg_restore', plan['server_major'], opts.pg_bin_dir))
    if plan['globals']:
        tools['pg_dumpall'] = _pgclient.Tool('pg_dumpall', plan['server_major'], opts.pg_bin_dir)
    return [_backup_one(params, db, plan, tools, owner, now) for db in plan['databases']]


def new_backup_id(dest, db, start):
    """``<UTC start>-<database>``, with ``.2``, ``.3``... when that folder exists already."""
    base = '%s-%s' % (start.strftime('%Y%m%dT%H%M%SZ'), _tools.safe_name(db))
    backup_id, n = base, 1
    while os.path.exists(os.path.join(dest, backup_id)):
        n += 1
        backup_id = '%s.%d' % (base, n)
    return backup_id


def _backup_one(params, db, plan, tools, owner, now=None):
    start = now or _tools.utcnow()
    t0 = time.monotonic()
    dest = plan['dest']
    backup_id = new_backup_id(dest, db, start)
    tmp = os.path.join(dest, '%s%s-%d' % (_tools.PARTIAL_PREFIX, backup_id, os.getpid()))
    try:
        os.mkdir(tmp, 0o700)
    except OSError as exc:
        raise BackupError('cannot write into backup folder %s: %s' % (dest, exc.strerror or exc))
    conn = None
    counting = None
    started = []  # the read-back, forked once pg_dump runs (two forks at once wait on each other)
    read_back = _ReadBack(tools['pg_restore'], os.path.join(tmp, _archive_name(db, plan['format'])), db)
    # one thread reads the snapshot (row counts...), one syncs and one hashes the archive, one
    # reads it back; pg_dump itself is started from this thread, which waits for it
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix='dbdevops-backup')
    try:
        conn = open_session(params, plan['server_major'], dbname=db)
        conn.set_session(isolation_level=pgext.ISOLATION_LEVEL_REPEATABLE_READ, readonly=True)
        cur = conn.cursor()
        cur.execute(META_SQL)  # the transaction's first statement: it takes and exports the snapshot
        (server_version, _vnum, cluster_name, in_recovery, encoding, collate, ctype,
         db_owner, system_id, snapshot) = cur.fetchone()
        # One thread reads the catalog, row counts, sequences and large
        # objects in the snapshot while pg_dump runs (started right after the
        # export); what is read is only needed when pg_dump is done.
        counting = pool.submit(_read_snapshot, cur, plan['count_rows'])
        archive, files = _run_pg_dump(params, db, plan, tools['pg_dump'], snapshot, tmp, pool, owner,
                                      on_start=lambda: started.append(pool.submit(read_back.run)))
        # pg_restore reads the archive back while the snapshot reads finish and the manifest is made
        read_back.go(True)
        try:
            tables, objects, sequences, large_objects, counts = counting.result()
        except Exception as exc:  # noqa: BLE001 - any failure of the reads is reported as such
            raise BackupError('reading the tables, row counts, sequences and large objects in the backup '
                              'snapshot failed: %s' % exc, database=db)
        conn.rollback()
        conn.close()
        conn = None

        globals_files = _run_pg_dumpall(params, tools['pg_dumpall'], tmp, plan['server_major']) if plan['globals'] else {}
        manifest = dict(
            format_version=_tools.FORMAT_VERSION, id=backup_id, status='complete',
            host=socket.gethostname(), login_host=params.host or 'local socket',
            port=params.login_port, cluster=dict(name=cluster_name or '', system_identifier=system_id),
            database=db, database_owner=db_owner, encoding=encoding, lc_collate=collate,
            lc_ctype=ctype, in_recovery=in_recovery,
            server_version=server_version, pg_dump_version=tools['pg_dump'].version,
            format=plan['format'], jobs=plan['jobs'],
            compression=dict(method=plan['compression'], level=plan['compression_level']),
            archive=archive, globals='globals.sql' if plan['globals'] else None,
            snapshot=snapshot, start=_tools.iso(start),
            row_counts_exact=counts is not None,
            sequences=sequences, large_objects=large_objects,
            tables=[dict(schema=s, name=n, rows=(counts or {}).get(_catalog.qualified(s, n)),
                         objects=objects.get((s, n), {}))
                    for s, n in tables],
        )
        manifest['toc_entries'] = started[0].result()
        if isinstance(files, concurrent.futures.Future):
            files = files.result()  # a directory archive, fsync'd
        files = dict(_hashed(files), **globals_files)
        manifest.update(
            end=_tools.iso(_tools.utcnow()), duration_ms=_tools.monotonic_ms(t0),
            bytes=sum(size for _sha, size in files.values()),
            files=dict((rel, dict(sha256=sha, bytes=size)) for rel, (sha, size) in sorted(files.items())))
        _write_manifest(tmp, manifest, owner)
        _tools.secure_tree(tmp, owner)
        _tools.fsync_tree(tmp)
        final = os.path.join(dest, backup_id)
        os.rename(tmp, final)
        _tools.fsync_path(dest)
    except BaseException as exc:
        read_back.go(False)
        if conn is not None:
            try:
                if counting is not None and not counting.done():
                    conn.cancel()  # the counting query may wait on the same locks as pg_dump
                    concurrent.futures.wait([counting], timeout=10)
                conn.close()
            except Exception:  # noqa: BLE001 - already failing
                pass
        concurrent.futures.wait(started, timeout=10)  # pg_restore --list: a second or less, or nothing
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            raise BackupError('backup of database "%s" failed: the destination %s is full (No space '
                              'left on device); nothing was recorded and the partial files were '
                              'removed; free space or choose another dest' % (db, dest),
                              database=db, dest=dest)
        if isinstance(exc, OSError) and not isinstance(exc, BackupError):
            raise BackupError('backup of database "%s" failed writing under %s: %s; nothing was '
                              'recorded' % (db, dest, exc), database=db, dest=dest)
        raise
    finally:
        pool.shutdown(wait=False)
    return dict(backup_id=backup_id, database=db, path=final, bytes=manifest['bytes'],
                duration_ms=manifest['duration_ms'], manifest=manifest)


def _read_snapshot(cur, count_rows):
    """(tables, objects, sequences, large objects, row counts) read through the session that
    exported the snapshot; the last three are None without ``count_rows``.

    Catalog, large objects and rows are read in the dump's snapshot, so they
    are exactly what the archive holds.  Sequences are not transactional:
    their values are read early, at about the moment pg_dump reads them.
    No parallel workers and no JIT (pure overhead for ``count(*)`` of small
    tables): pg_dump needs the CPU more.
    """
    cur.execute('SET LOCAL max_parallel_workers_per_gather = 0; SET LOCAL jit = off')
    tables = _catalog.list_user_tables(cur)
    if not count_rows:
        return tables, table_objects(cur), None, None, None
    sequences = sequence_values(cur)
    objects = table_objects(cur)
    large_objects = _catalog.large_object_digests(cur)
    return tables, objects, sequences, large_objects, _catalog.count_rows_batched(cur, tables)


def sequence_values(cur, chunk=100):
    """``_catalog.sequence_values`` (``{qualified: [last_value, is_called]}``) in one statement
    for the sequences that have been called, and ``chunk`` per statement for the others."""
    cur.execute(SEQUENCE_VALUES_SQL)
    out, uncalled = {}, []
    for schema, name, last_value in cur.fetchall():
        if last_value is None:
            uncalled.append((schema, name))
        else:
            out[_catalog.qualified(schema, name)] = [int(last_value), True]
    for start in range(0, len(uncalled), chunk):
        part = uncalled[start:start + chunk]
        cur.execute(pgsql.SQL(' UNION ALL ').join(
            pgsql.SQL('SELECT {}::int, last_value, is_called FROM {}.{}').format(
                pgsql.Literal(index), pgsql.Identifier(schema), pgsql.Identifier(name))
            for index, (schema, name) in enumerate(part)))
        for index, last_value, is_called in cur.fetchall():
            out[_catalog.qualified(*part[index])] = [int(last_value), bool(is_called)]
    return out


def _hashed(files):
    """``{relpath: (sha256, bytes)}`` from a dict of those or of futures giving them."""
    return dict((rel, value.result() if isinstance(value, concurrent.futures.Future) else value)
                for rel, value in files.items())


def _dump_failed(db, proc_rc, stderr, why=None):
    if why is None:
        if proc_rc is not None and proc_rc < 0:
            why = 'pg_dump was killed by signal %d' % -proc_rc
        elif proc_rc:
            why = 'pg_dump exited with status %d: %s' % (proc_rc, _pgclient.first_error(stderr))
        else:
            why = 'pg_dump reported an error: %s' % _pgclient.first_error(stderr)
    if 'No space left on device' in stderr:
        why += ' (the destination is full)'
    return BackupError('backup of database "%s" failed: %s; no backup was recorded and earlier '
                       'backups are untouched' % (db, why), database=db, stderr=stderr[-4000:])


def _archive_name(db, fmt):
    return _tools.safe_name(db) + ('.dir' if fmt == 'directory' else '.dump')


def _run_pg_dump(params, db, plan, tool, snapshot, tmp, pool, owner=None, on_start=None):
    """Run pg_dump; return (archive relpath, files).

    ``files`` is ``{relpath: (sha256, bytes)}``; for the custom format its
    value is a future of ``pool`` already hashing the archive (see ``_hashed``);
    for the directory format, ``files`` is a future giving that dict once
    every file is fsync'd.
    pg_dump writes the custom archive itself, into a seekable file: it then
    records where each table's data starts, which a parallel pg_restore needs
    to go straight to it (an archive written to a pipe has no such offsets,
    and ``pg_restore -j`` must then scan the archive for every table).  The
    file is rewritten at its start when pg_dump finishes, so it is hashed
    after pg_dump exits, while the archive is read back.  The directory
    format's files are hashed as pg_dump writes them (``TailHasher``).
    """
    fmt = plan['format']
    argv = [tool.path, '--format=%s' % fmt, '--snapshot=%s' % snapshot, '--no-password']
    if tool.major >= 10:
        # pg_dump would fsync its files before it exits; the engine fsyncs them itself (before the
        # manifest and the rename), overlapped with hashing and the read-back
        argv.append('--no-sync')
    argv += plan['compress_args']
    opts = plan['options']
    if opts.lock_wait_timeout:
        argv.append('--lock-wait-timeout=%s' % opts.lock_wait_timeout)
    archive = _archive_name(db, fmt)
    if fmt == 'directory':
        argv.append('--jobs=%d' % plan['jobs'])
    argv.append('--file=%s' % os.path.join(tmp, archive))
    stop = threading.Event()
    hashing = None
    with _pgclient.LibpqEnv(params, dbname=db, server_major=plan['server_major']) as env:
        # only the directory format forks workers (-j); a lone pg_dump dies with this thread
        proc = _pgclient.popen(argv, env=env, group=fmt == 'directory', stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
        try:
            if fmt == 'directory':
                hashing = pool.submit(_tools.TailHasher(os.path.join(tmp, archive)).poll, stop)
            if on_start is not None:
                on_start()
            stderr = proc.communicate()[1].decode('utf-8', 'replace')
            rc = proc.returncode
        except BaseException:
            _pgclient.kill(proc)
            raise
        finally:
            stop.set()
    if hashing is not None:
        files = dict((os.path.join(archive, rel), v) for rel, v in hashing.result().items())
    if rc != 0 or _pgclient.error_lines(stderr):
        raise _dump_failed(db, rc, stderr)
    if fmt == 'custom':
        path = os.path.join(tmp, archive)
        # flushing the file to disk (I/O) and hashing it (CPU) overlap
        syncing = pool.submit(_secured_fsync, path, owner)
        return archive, {archive: pool.submit(_synced_sha256, path, syncing)}
    # Everything pg_dump wrote must be accounted for, byte for byte.
    for rel, (_sha, size) in files.items():
        if os.path.getsize(os.path.join(tmp, rel)) != size:
            raise _dump_failed(db, rc, stderr, 'file %s changed after it was hashed' % rel)
    return archive, pool.submit(_synced_tree, os.path.join(tmp, archive), owner, files)


def _secured_fsync(path, owner):
    """Mode and owner first, then fsync: changing them later would dirty the file again."""
    _tools.secure_path(path, 0o600, owner)
    _tools.fsync_path(path)


def _synced_tree(root, owner, result):
    """``_secured_fsync`` of every file under ``root``, then of the folder; returns ``result``."""
    for rel in _tools.list_files(root):
        _secured_fsync(os.path.join(root, rel), owner)
    _tools.secure_path(root, 0o700, owner)
    _tools.fsync_path(root)
    return result


def _synced_sha256(path, syncing):
    digest = _tools.sha256_file(path)
    syncing.result()
    return digest


def _run_pg_dumpall(params, tool, tmp, server_major):
    path = os.path.join(tmp, 'globals.sql')
    argv = [tool.path, '--globals-only', '--no-password', '--file=%s' % path]
    with _pgclient.LibpqEnv(params, dbname=params.dbname, server_major=server_major) as env:
        done = _pgclient.run(argv, env=env)
    if not done.ok:
        raise BackupError('pg_dumpall --globals-only failed (exit %d): %s; no backup was recorded'
                          % (done.returncode, _pgclient.first_error(done.stderr)))
    return {'globals.sql': _tools.sha256_file(path)}


class _ReadBack(object):
    """``pg_restore --list`` of the archive, forked ahead and run when pg_dump is done.

    Forking this process (threads, a large heap) takes milliseconds; done
    while pg_dump works, it is off the backup's path.  The child is a shell
    that waits for a line on stdin, then execs pg_restore (which keeps the
    death signal: it dies with the thread that started the shell, as every
    client program); end of input without a line and it exits.  ``run`` is
    submitted to a pool, so that the thread that starts the child waits for
    it; ``go(True)`` once the archive is complete, ``go(False)`` when there
    is nothing to read back.
    """

    SCRIPT = 'IFS= read -r go || exit 0; exec "$@"'

    def __init__(self, tool, archive_path, db):
        self.argv = [tool.path, '--list', archive_path]
        self.db = db
        self._go = threading.Event()
        self._wanted = False

    def go(self, wanted):
        self._wanted = wanted
        self._go.set()

    def run(self):
        """The number of TOC entries (as ``_pgclient.read_toc`` counts them), or BackupError."""
        proc = _pgclient.popen(['/bin/sh', '-c', self.SCRIPT, 'dbdevops-read-back'] + self.argv,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            self._go.wait()
            out, err = proc.communicate(b'go\n' if self._wanted else b'')
        except BaseException:
            _pgclient.kill(proc)
            raise
        if not self._wanted:
            return None
        done = _pgclient.Completed(self.argv, proc.returncode, out.decode('utf-8', 'replace'),
                                   err.decode('utf-8', 'replace'))
        if not done.ok:
            raise BackupError('backup of database "%s" failed: the archive does not read back '
                              '(pg_restore --list: %s); no backup was recorded'
                              % (self.db, done.why()), database=self.db)
        return sum(1 for line in done.stdout.splitlines() if _pgclient.TOC_LINE.match(line))


def _write_manifest(folder, manifest, owner=None):
    """Write manifest.json, sealed with its own checksum (``manifest_sha256``), in one write."""
    path = os.path.join(folder, _tools.MANIFEST)
    # compact JSON, encoded once: the C encoder (indenting takes the pure-Python one, 10x slower
    # on thousands of tables)
    data = catalog.sealed_manifest_bytes(manifest)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        if owner:
            os.fchown(fd, owner[0], owner[1])
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
