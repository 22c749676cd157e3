# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The values the planner makes and the executor runs: Step, MigrationPlan, MigrationError.

Also the small helpers every part shares: version text of a key, and the
one-line text of a PostgreSQL error.  No Ansible imports.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.dbdevops.postgresql.plugins.module_utils.connection import (
    PgConnectionError, connect)
from ansible_collections.dbdevops.postgresql.plugins.module_utils.errors import DbDevopsError
from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate import files as mfiles


try:
    import psycopg2
except ImportError:  # pragma: no cover - connection.require_psycopg2 explains it
    psycopg2 = None


class MigrationError(DbDevopsError):
    """A user-facing migration problem (validation, plan, lock, failed file)."""


def open_connection(params, application_name, autocommit=True):
    """``connection.connect`` whose errors about ``connect_params`` say so (one line each)."""
    hint = ('; check connect_params (%s)' % ', '.join('%s=%s' % kv for kv in sorted(params.connect_params.items()))
            if params.connect_params else '')
    try:
        return connect(params, autocommit=autocommit, application_name=application_name)
    except PgConnectionError as exc:
        if hint:
            raise PgConnectionError(str(exc) + hint, **exc.details)
        raise
    except psycopg2.Error as exc:     # libpq refuses the options before connecting
        text = ' '.join(str(exc).split()).replace('invalid dsn: ', '')
        raise PgConnectionError('cannot connect to PostgreSQL at %s: %s%s' % (params.where(), text, hint),
                                host=params.host, port=params.login_port, database=params.dbname)


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
        self._sql = None

    @property
    def transactional(self):
        return self.file.transactional if self.file else True

    @property
    def sql(self):
        """The file as shown (secrets masked), inline COPY data summarised."""
        if not self.file or self.kind == 'repair':
            return ''
        if self._sql is None:
            self._sql = shown_sql(self.file)
        return self._sql

    def label(self):
        return '%s %s (%s)' % (self.kind, self.version or self.description, self.script)

    def to_dict(self):
        return dict(kind=self.kind, direction=self.direction, version=self.version,
                    description=self.description, script=self.script, checksum=self.checksum,
                    transactional=self.transactional, sql=self.sql, note=self.note)


def shown_sql(mfile):
    """``mfile.shown`` with the rows of each ``COPY ... FROM stdin`` replaced by one comment line
    saying how many rows and bytes they are and where they are (a seed file may hold megabytes)."""
    text = mfile.shown
    if '\\.' not in text:
        return text
    try:
        blocks = [s for s in mfile.statements if s.data is not None]
    except DbDevopsError:       # the plan refuses the file; show it as written
        return text
    if not blocks:
        return text
    lines = text.split('\n')
    shown, at = [], 0
    for stmt in blocks:
        first, end = stmt.data_line - 1, stmt.data_end_line - 1
        shown.extend(lines[at:first])
        if end > first:
            where = 'lines %d-%d' % (first + 1, end) if end - first > 1 else 'line %d' % end
            shown.append('-- COPY data: %s (%s of %s, not shown)' % (stmt.data_summary(), where, mfile.script))
        else:
            shown.append('-- COPY data: none')
        at = end
    shown.extend(lines[at:])
    return '\n'.join(shown)


class MigrationPlan(object):
    """The steps of one run, in order, and what the planner found on the way."""

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

    def queries(self):
        """The SQL of the plan as one text per step (steps without SQL left out)."""
        return [step.sql for step in self.steps if step.sql]

    def to_dict(self):
        return dict(current_version=self.current_version, target_version=self.target_version,
                    steps=[s.to_dict() for s in self.steps], pending=list(self.pending),
                    warnings=list(self.warnings), lint=[f.to_dict() for f in self.lint],
                    checksum_mismatches=list(self.mismatches), sql=self.sql_text())


def vt(key):
    """The text of a version key, or None."""
    return mfiles.version_text(key) if key is not None else None


def sqlstate(exc):
    return getattr(exc, 'pgcode', None)


def pg_error_text(exc):
    """``primary message (detail) [SQLSTATE xxxxx]`` of a psycopg2 error, on one line."""
    diag = getattr(exc, 'diag', None)
    primary = getattr(diag, 'message_primary', None) if diag else None
    text = primary or (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
    code = sqlstate(exc)
    if getattr(diag, 'message_detail', None):
        text += ' (%s)' % diag.message_detail
    return '%s%s' % (text, ' [SQLSTATE %s]' % code if code else '')
