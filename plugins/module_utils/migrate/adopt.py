# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Other tools' history tables: recognised, read, and adopted into ours.

``find(conn)`` lists the history tables of other migration tools in every
schema (dbmate, golang-migrate, Flyway, Diesel, Rails, sqitch, Liquibase,
Alembic, goose, Prisma, ...), recognised by name and columns.  Those of
dbmate, golang-migrate, Flyway and Diesel can be adopted: ``Foreign.read``
folds them into the versions they say are applied, and ``adoption_rows``
turns those into rows of our history table, matched to the local files and
carrying our checksums of them.  Reads only; the rows are written by
``HistoryTable.ensure`` in the transaction that creates the table.
No Ansible imports.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re
import zlib

from ansible_collections.dbdevops.postgresql.plugins.module_utils import _catalog
from ansible_collections.dbdevops.postgresql.plugins.module_utils.errors import DbDevopsError
from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate import files as mfiles
from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate.steps import MigrationError

try:
    import psycopg2
    from psycopg2 import sql as pgsql
except ImportError:  # pragma: no cover - connection.require_psycopg2 explains it
    psycopg2 = None
    pgsql = None

ADOPTABLE = ('dbmate', 'golang-migrate', 'flyway', 'diesel')

# names other tools give their history tables by default (columns decide in the end)
_NAMES = ('schema_migrations', 'flyway_schema_history', 'schema_version', '__diesel_schema_migrations',
          'ar_internal_metadata', 'databasechangelog', 'alembic_version', 'goose_db_version',
          'knex_migrations', '_prisma_migrations', 'django_migrations', 'SequelizeMeta', 'changes',
          '_sqlx_migrations')

_CANDIDATES_SQL = """
SELECT n.nspname, c.relname, array_agg(a.attname::text ORDER BY a.attnum)
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
 WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
   AND n.nspname !~ '^pg_(toast|temp)' AND {where}
 GROUP BY 1, 2 ORDER BY 1, 2
"""
_ANY_CANDIDATE = ("(c.relname = ANY(%s) OR EXISTS (SELECT 1 FROM pg_catalog.pg_attribute x "
                  "WHERE x.attrelid = c.oid AND NOT x.attisdropped AND x.attname IN ('installed_on', 'dirty')))")

_OURS = {'installed_rank', 'version', 'script', 'checksum', 'success', 'applied_at'}
_FLYWAY = {'installed_rank', 'version', 'description', 'type', 'script', 'checksum', 'installed_by',
           'installed_on', 'execution_time', 'success'}

# what each tool calls its history, for messages
_SHAPES = {
    'dbmate': 'schema_migrations(version)',
    'golang-migrate': 'schema_migrations(version bigint, dirty boolean)',
    'flyway': 'flyway_schema_history(installed_rank, version, ..., installed_on, success)',
    'diesel': '__diesel_schema_migrations(version, run_on)',
}


def classify(schema, name, columns, siblings=(), explicit=False):
    """The tool whose history table ``schema.name`` (with ``columns``) is: a name, or None.

    ``dbdevops`` is this collection's own layout.  A table of a single ``version``
    column is dbmate's (Rails' when ``ar_internal_metadata`` is next to it) only
    when named ``schema_migrations`` or named by the user (``explicit``).
    """
    cols = set(columns)
    if _OURS <= cols:
        return 'dbdevops'
    if _FLYWAY <= cols:
        return 'flyway'
    if cols == {'version', 'dirty'}:
        return 'golang-migrate'
    if name == '__diesel_schema_migrations' and {'version', 'run_on'} <= cols:
        return 'diesel'
    if cols == {'version'} and (name == 'schema_migrations' or explicit):
        return 'rails' if 'ar_internal_metadata' in siblings else 'dbmate'
    others = (('_sqlx_migrations', {'version', 'checksum'}, 'sqlx'),
              ('goose_db_version', {'version_id', 'is_applied'}, 'goose'),
              ('databasechangelog', {'id', 'author', 'filename'}, 'liquibase'),
              ('alembic_version', {'version_num'}, 'alembic'),
              ('knex_migrations', {'name', 'batch'}, 'knex'),
              ('_prisma_migrations', {'migration_name', 'checksum'}, 'prisma'),
              ('django_migrations', {'app', 'name', 'applied'}, 'django'),
              ('SequelizeMeta', {'name'}, 'sequelize'))
    for table, needed, tool in others:
        if name == table and needed <= cols:
            return tool
    if schema == 'sqitch' and name == 'changes' and 'change_id' in cols:
        return 'sqitch'
    return None


def flyway_checksum(text):
    """Flyway's checksum of a file: CRC-32 of its lines without line breaks, as a signed int."""
    if text.startswith('\ufeff'):
        text = text[1:]
    crc = zlib.crc32(re.sub(r'\r\n|\r|\n', '', text).encode('utf-8')) & 0xFFFFFFFF
    return crc - (1 << 32) if crc >= (1 << 31) else crc


class Foreign(object):
    """One history table of another tool, and (after ``read``) what it says is applied."""

    def __init__(self, tool, schema, name):
        self.tool = tool
        self.schema = schema
        self.name = name
        self.where = '%s.%s' % (schema, name)
        self.applied = {}        # version key -> dict(version, script, description, applied_at, ms, checksum)
        self.baseline = None     # version key (Flyway BASELINE)
        self.current = None      # golang-migrate: the one version it stores
        self.repeatables = {}    # description -> Flyway checksum of its last successful run
        self.problem = None      # why it cannot be adopted as it is
        self.read_done = False

    @property
    def adoptable(self):
        return self.tool in ADOPTABLE

    def latest(self):
        keys = list(self.applied) + [k for k in (self.baseline, self.current) if k is not None]
        return max(keys) if keys else None

    def summary(self):
        latest = self.latest()
        return dict(tool=self.tool, table=self.where, adoptable=self.adoptable,
                    versions=len(self.applied) if self.tool != 'golang-migrate' else None,
                    latest=mfiles.version_text(latest) if latest is not None else None,
                    problem=self.problem)

    def text(self):
        """``dbmate history public.schema_migrations (3 versions, latest 20240101120000)``."""
        what = '%s history %s' % (self.tool, self.where)
        if not self.read_done:
            return what
        latest = self.latest()
        if self.tool == 'golang-migrate':
            return '%s (at version %s%s)' % (
                what, mfiles.version_text(latest) if latest else 'none', ', dirty' if self.problem else '')
        return '%s (%d version%s%s)' % (what, len(self.applied), '' if len(self.applied) == 1 else 's',
                                        ', latest %s' % mfiles.version_text(latest) if latest else '')

    def read(self, conn):
        """Fold the table into applied versions; ``problem`` says why it cannot be adopted."""
        if self.read_done or not self.adoptable and self.tool not in ('rails',):
            return self
        try:
            self._read(conn)
        except psycopg2.Error as exc:       # e.g. no SELECT privilege on the other tool's table
            if conn.status != psycopg2.extensions.STATUS_READY:
                conn.rollback()
            self.problem = 'cannot read it: %s' % ' '.join(str(exc).split())
        self.read_done = True
        return self

    def _read(self, conn):
        ident = pgsql.Identifier(self.schema, self.name)
        with conn.cursor() as cur:
            if self.tool == 'golang-migrate':
                cur.execute(pgsql.SQL('SELECT version, dirty FROM {} ORDER BY version DESC').format(ident))
                rows = cur.fetchall()
                if rows and rows[0][0] is not None and rows[0][0] >= 0:
                    self.current = mfiles.version_key(str(rows[0][0]))
                    if rows[0][1]:
                        self.problem = (
                            'it is dirty at version %s: that migration failed half way and golang-migrate '
                            'does not know what it left; repair the database by hand, then mark it clean '
                            '(migrate force %s, or UPDATE %s SET dirty = false) and run again'
                            % (rows[0][0], rows[0][0], self.where))
            elif self.tool == 'flyway':
                cur.execute(pgsql.SQL(
                    'SELECT version, description, type, script, checksum, installed_on::text, installed_by, '
                    'execution_time, success FROM {} ORDER BY installed_rank').format(ident))
                self._fold_flyway(cur.fetchall())
            else:
                extra = 'run_on::text' if self.tool == 'diesel' else 'NULL::text'
                cur.execute(pgsql.SQL('SELECT version::text, ' + extra + ' FROM {} ORDER BY 1').format(ident))
                bad = []
                for version, applied_at in cur.fetchall():
                    if version is None or not mfiles.is_version(version.strip()):
                        bad.append(str(version))
                        continue
                    self.applied[mfiles.version_key(version)] = dict(version=version.strip(), applied_at=applied_at)
                if bad:
                    self.problem = ('it holds versions that are not numbers: %s' % ', '.join(bad[:10]))

    def _fold_flyway(self, rows):
        failed = {}
        for version, description, kind, script, checksum, installed_on, installed_by, ms, success in rows:
            kind = (kind or '').upper()
            if kind == 'SCHEMA':
                continue
            if version is not None and not mfiles.is_version(version):
                self.problem = 'it holds a version that is not dotted numbers: %s (%s)' % (version, script)
                continue
            key = mfiles.version_key(version) if version is not None else None
            ident = key if key is not None else ('R', description)
            if not success:
                failed[ident] = script
                continue
            failed.pop(ident, None)
            if kind in ('BASELINE', 'SQL_BASELINE'):
                self.baseline = key
            elif kind.startswith('UNDO') or kind == 'DELETE':
                if key is not None:
                    self.applied.pop(key, None)
                else:
                    self.repeatables.pop(description, None)
            elif key is None:
                self.repeatables[description] = checksum
            else:
                self.applied[key] = dict(version=version, script=script, description=description,
                                         applied_at=installed_on, applied_by=installed_by, ms=ms or 0,
                                         checksum=checksum)
        if failed:
            self.problem = ('it records failed migrations not followed by a success: %s; fix the database '
                            'and run flyway repair (or delete those rows), then run again'
                            % ', '.join(sorted(failed.values())))

    def applied_keys(self, files):
        """The version keys this history says are applied (golang-migrate: every file up to its version)."""
        if self.tool == 'golang-migrate':
            if self.current is None:
                return set()
            return set(k for k in files.versions() if k <= self.current) | {self.current}
        return set(self.applied)


def find(conn, only=None):
    """Every history table of another tool in the database (``Foreign``, read), or the one ``only``
    names as ``(schema, name)``: then ``None`` when it does not exist."""
    with conn.cursor() as cur:
        if only is None:
            cur.execute(_CANDIDATES_SQL.format(where=_ANY_CANDIDATE), (list(_NAMES),))
        else:
            schema, name = only
            cur.execute(_CANDIDATES_SQL.format(where='c.relname = %s' + (' AND n.nspname = %s' if schema else '')),
                        (name, schema) if schema else (name,))
        tables = cur.fetchall()
        if only is not None and not tables:
            return None
        cur.execute("SELECT n.nspname, c.relname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
                    "ON n.oid = c.relnamespace WHERE c.relname = 'ar_internal_metadata'")
        rails_meta = set(r[0] for r in cur.fetchall())
    found = []
    for schema, name, columns in tables:
        tool = classify(schema, name, columns, ['ar_internal_metadata'] if schema in rails_meta else [],
                        explicit=only is not None)
        if tool is None and only is not None:
            tool = 'unknown'
        if tool and tool != 'dbdevops':
            foreign = Foreign(tool, schema, name)
            foreign.columns = list(columns)
            found.append(foreign.read(conn))
    return found


def choose(conn, adopt_from, adopt_table, found):
    """The Foreign to adopt (read), or None; raises MigrationError when the choice cannot be made."""
    if adopt_table:
        try:
            schema, name = _catalog.parse_table(adopt_table)
        except DbDevopsError as exc:
            raise MigrationError('adopt_table: %s' % exc)
        tables = find(conn, only=(schema, name))
        if not tables:
            raise MigrationError('adopt_table %s: no such table; nothing was applied' % adopt_table)
        if len(tables) > 1:
            raise MigrationError('adopt_table %s: tables of that name in several schemas (%s); write '
                                 'schema.table; nothing was applied'
                                 % (adopt_table, ', '.join(t.where for t in tables)))
        chosen = tables[0]
        if chosen.tool == 'unknown' or (adopt_from != 'auto' and chosen.tool != adopt_from):
            raise MigrationError(
                'adopt_table %s is not a %s history table: its columns are %s (expected %s); '
                'nothing was applied' % (chosen.where, adopt_from if adopt_from != 'auto' else 'known',
                                         ', '.join(chosen.columns),
                                         _SHAPES.get(adopt_from, ' or '.join(_SHAPES.values()))))
        candidates = [chosen]
    else:
        candidates = [f for f in found if f.adoptable and adopt_from in ('auto', f.tool)]
        if not candidates:
            if adopt_from == 'auto':
                return None
            others = ['%s' % f.text() for f in found]
            raise MigrationError(
                'adopt_from %s: no %s history table in the database (looked for %s in every schema)%s; '
                'name it with adopt_table if it has another name; nothing was applied'
                % (adopt_from, adopt_from, _SHAPES[adopt_from],
                   '; found %s' % ', '.join(others) if others else ''))
        if len(candidates) > 1:
            raise MigrationError(
                'adopt_from %s: several history tables could be adopted: %s; name one with adopt_table; '
                'nothing was applied' % (adopt_from, ', '.join(f.text() for f in candidates)))
    chosen = candidates[0]
    if not chosen.adoptable:
        raise MigrationError('%s cannot be adopted (adoptable: %s); set baseline_version to the version '
                             'the database is at instead; nothing was applied'
                             % (chosen.text(), ', '.join(ADOPTABLE)))
    chosen.read(conn)
    if chosen.problem:
        raise MigrationError('cannot adopt %s: %s; nothing was applied' % (chosen.text(), chosen.problem),
                             adopt_table=chosen.where)
    return chosen


def adoption(foreign, files, actor):
    """``(rows, report)``: our history rows for what ``foreign`` says is applied, and what was found.

    Applied versions with a local file get that file's script, description and
    checksum (ours: SHA-256 of the local file); versions with no local file are
    imported as applied with no checksum, so they are never run; Flyway's
    repeatables are imported when the local file is what Flyway last ran.
    """
    applied = foreign.applied_keys(files)
    note = 'adopted from %s history %s' % (foreign.tool, foreign.where)
    rows, imported, without_file, checksum_differences, repeatables = [], [], [], [], []

    def add(version, description, kind, script, checksum, info):
        rows.append(dict(installed_rank=len(rows) + 1, version=version, description=description, type=kind,
                         script=script, checksum=checksum, applied_at=info.get('applied_at'),
                         applied_by=info.get('applied_by') or actor, execution_time_ms=info.get('ms') or 0,
                         success=True, error_message=note, has_fingerprint=False))

    if foreign.baseline is not None:
        add(mfiles.version_text(foreign.baseline), 'baseline', 'baseline', '<baseline>', None, {})
    for key in sorted(applied):
        info = foreign.applied.get(key, {})
        mfile = files.versioned.get(key)
        if mfile is None:
            without_file.append(mfiles.version_text(key))
            add(mfiles.version_text(key), info.get('description') or note, 'versioned',
                info.get('script') or '<%s version %s>' % (foreign.tool, info.get('version', mfiles.version_text(key))),
                None, info)
            continue
        imported.append(mfile.version)
        if foreign.tool == 'flyway' and info.get('checksum') is not None:
            theirs = flyway_checksum(_raw(mfile))
            if theirs != info['checksum']:
                checksum_differences.append(dict(version=mfile.version, script=mfile.script,
                                                 flyway_checksum=info['checksum'], file_flyway_checksum=theirs))
        add(mfile.version, mfile.description, 'versioned', mfile.script, mfile.checksum, info)
    for description, theirs in sorted(foreign.repeatables.items()):
        rfile = files.repeatable.get(description)
        if rfile is not None and theirs is not None and flyway_checksum(_raw(rfile)) == theirs:
            repeatables.append(rfile.script)
            add(None, description, 'repeatable', rfile.script, rfile.checksum, {})
    latest = foreign.latest()
    report = dict(
        tool=foreign.tool, table=foreign.where, imported=imported,
        baseline=mfiles.version_text(foreign.baseline) if foreign.baseline is not None else None,
        without_file=without_file, repeatables=repeatables,
        newer=[mfiles.version_text(k) for k in files.versions() if latest is None or k > latest],
        not_applied_older=[mfiles.version_text(k) for k in files.versions()
                           if latest is not None and k < latest and k not in applied
                           and not (foreign.baseline is not None and k <= foreign.baseline)],
        checksum_differences=checksum_differences)
    return rows, report


def warnings_of(report):
    """The task warnings an adoption gives."""
    out = []
    if report['without_file']:
        out.append('%s history %s: versions %s have no file in the migrations folder; they are recorded '
                   'as applied (with no checksum) and will never run' % (
                       report['tool'], report['table'], ', '.join(report['without_file'])))
    if report['not_applied_older']:
        out.append('%s history %s does not list %s, older than its latest version: they are pending '
                   'out of order' % (report['tool'], report['table'], ', '.join(report['not_applied_older'])))
    if report['tool'] == 'flyway':
        out.append("Flyway's checksums (CRC-32) are not this collection's: the SHA-256 checksums of the "
                   'local files are recorded for the adopted versions')
        for diff in report['checksum_differences']:
            out.append('%(script)s differs from what Flyway applied (Flyway checksum %(flyway_checksum)s, '
                       'the file now %(file_flyway_checksum)s); the checksum of the local file is '
                       'recorded' % diff)
    return out


def _raw(mfile):
    """The file as written (Flyway checksums the text before placeholders are replaced)."""
    try:
        return mfiles._read(mfile.path).decode('utf-8')
    except (IOError, OSError, UnicodeDecodeError):
        return mfile.sql


def describe(found):
    """One sentence naming the other tools' histories, for refusals and warnings; '' when none."""
    if not found:
        return ''
    adoptable = [f for f in found if f.adoptable]
    text = 'this database has the %s' % ', '.join(f.text() for f in found)
    if adoptable:
        text += ('; set adopt_from: %s to import the versions it applied into this collection\'s history '
                 '(newer files then run in the same run)' % adoptable[0].tool)
    else:
        text += ('; %s cannot be imported: set baseline_version to the version the database is at'
                 % ('its history' if len(found) == 1 else 'their histories'))
    return text
