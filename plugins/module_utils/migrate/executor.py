# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Running the steps of a plan on one connection, each with its history row.

A transactional file runs in one transaction together with its history row;
a file marked ``-- dbdevops:transaction=off`` runs one statement per round
trip.  A ``COPY ... FROM stdin`` sends the rows written after it in the file
(``copy_expert``), in either kind of file.  A failure is recorded as a ``success = false`` row and raised as a
MigrationError naming file, line and statement.  No Ansible imports.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import getpass
import io
import re
import socket
import time

from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate.files import Masker
from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate.lock import (
    LockGuard, with_lock_retries)
from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate.planner import (
    invalid_indexes, invalid_since, named_indexes)
from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate.steps import (
    MigrationError, pg_error_text, sqlstate)

try:
    import psycopg2
    from psycopg2 import sql as pgsql
except ImportError:  # pragma: no cover - connection.require_psycopg2 explains it
    psycopg2 = None
    pgsql = None


def session_settings(conn, opts):
    """lock_timeout and statement_timeout of the options on the migration session.

    A value PostgreSQL does not take is a MigrationError naming the option.
    """
    with conn.cursor() as cur:
        for name in ('lock_timeout', 'statement_timeout'):
            value = getattr(opts, name) or '0'
            try:
                cur.execute('SELECT set_config(%s, %s, false)', (name, value))
            except psycopg2.Error as exc:
                raise MigrationError(
                    '%s "%s" is not a valid duration: %s; give milliseconds or a number with a unit '
                    '(500ms, 5s, 1min; 0 turns it off); nothing was applied'
                    % (name, value, pg_error_text(exc)), option=name)
        cur.execute(reset_sql(conn, opts, reset=False))


def reset_sql(conn, opts, reset=True):
    """SQL giving a session what the engine sets and nothing a migration file set.

    ``RESET ALL`` brings back the database's and role's defaults, so the server
    timeouts ``connect()`` turned off are turned off again (by name: reading
    pg_settings would cost ten times as much, and this runs between every two files).
    """
    settings = [('idle_in_transaction_session_timeout', '0')]
    if conn.server_version >= 140000:
        # the backend notices a killed runner within a second and rolls back
        settings += [('idle_session_timeout', '0'), ('client_connection_check_interval', '1s')]
    if reset:
        settings += [('lock_timeout', opts.lock_timeout or '0'),
                     ('statement_timeout', opts.statement_timeout or '0')]
    parts = ['RESET ALL', 'SET SESSION AUTHORIZATION DEFAULT'] if reset else []
    parts.append('SELECT ' + ', '.join('pg_catalog.set_config(%s, %s, false)' % (_literal(n), _literal(v))
                                       for n, v in settings))
    return ';\n'.join(parts) + ';\n'


def _literal(text):
    return "'%s'" % text.replace("'", "''")


def actor(params, opts):
    """What the applied_by column says: the option, else login user with OS user and host."""
    if opts.applied_by:
        return opts.applied_by
    try:
        osuser = getpass.getuser()
    except (KeyError, OSError):
        osuser = 'unknown'
    return '%s (%s@%s)' % (params.login_user, osuser, socket.gethostname())


def execute(cur, stmt, prefix=''):
    """Run one statement; a ``COPY ... FROM stdin`` sends its inline rows (``stmt.data``).

    ``prefix`` (``BEGIN;`` ...) travels with an ordinary statement; before a COPY it is
    its own execute, since the COPY goes through ``copy_expert``.
    """
    if stmt.data is None:
        cur.execute(prefix + stmt.text)
        return
    if prefix:
        cur.execute(prefix)
    cur.copy_expert(stmt.text, io.StringIO(stmt.data))


_COPY_CONTEXT = re.compile(r'^COPY [^\n]*?, line (\d+)', re.M)


def copy_row(stmt, exc):
    """The row of the inline COPY data the server names in the error's context, or None."""
    if stmt is None or stmt.data is None or exc is None:
        return None
    diag = getattr(exc, 'diag', None)
    m = _COPY_CONTEXT.search(getattr(diag, 'context', None) or '') if diag else None
    return int(m.group(1)) if m else None


def failed_line(stmt, exc):
    """The file line of a failure: the bad row of inline COPY data, else the statement's first line."""
    row = copy_row(stmt, exc)
    return stmt.data_line + row - 1 if row and stmt.data_line else stmt.line


def _rollback(conn):
    try:
        if not conn.closed:
            conn.cursor().execute('ROLLBACK')
    except psycopg2.Error:
        pass


class LockLost(MigrationError):
    """The run lock went away mid-run: nothing further may be applied or recorded."""


class Executor(object):
    """Runs steps on ``conn`` and appends their rows to ``table`` (a HistoryTable).

    With a ``guard`` (``lock.LockGuard``) every step checks that the run lock is
    still held: a transactional file inside its transaction before the COMMIT, a
    non-transactional one before each statement and before its history row.
    A file after one that may have changed session settings (``MigrationFile.changes_session``)
    starts from a clean session (``reset_sql``), as does the fingerprint at the end.
    """

    def __init__(self, conn, opts, table, actor, sleep=time.sleep, guard=None):
        self.conn = conn
        self.opts = opts
        self.table = table
        self.actor = actor
        self.sleep = sleep
        self.guard = guard
        self.masker = Masker(getattr(opts, 'secret_placeholders', None))
        self._dirty = False         # a file that may SET things ran since the session was last reset
        self._reset = None

    def run(self, plan):
        """Run every step of ``plan`` in order; returns what was applied.

        The schema fingerprint goes on the last row written, also after a
        failure: what did apply is what drift detection starts from.
        """
        applied = []
        rank = plan.next_rank
        last_rank = None
        finished = False
        lost = False
        try:
            for step in plan.steps:
                started = time.time()
                self.run_step(step, rank, applied)
                ms = int((time.time() - started) * 1000)
                last_rank = rank
                rank += 1
                applied.append(dict(version=step.version, description=step.description,
                                    script=step.script, kind=step.kind, direction=step.direction,
                                    ms=ms))
            finished = True
        except LockLost:
            lost = True     # another run may be in: write nothing more
            raise
        finally:
            if last_rank is not None and self.opts.record_fingerprint and not lost:
                try:
                    self.clean_session()
                    self.table.store_fingerprint(self.conn, last_rank)
                except psycopg2.Error:
                    if finished:
                        raise
        return applied

    def reset_text(self):
        if self._reset is None:
            self._reset = reset_sql(self.conn, self.opts)
        return self._reset

    def clean_session(self):
        """Undo what the files ran so far set in the session (search_path, role, timeouts...)."""
        if not self._dirty:
            return
        if self.conn.status != psycopg2.extensions.STATUS_READY:
            self.conn.rollback()
        with self.conn.cursor() as cur:
            cur.execute(self.reset_text())
        self._dirty = False

    def _ensure_lock(self, step, ran=None, total=None, applied=()):
        """Raise LockLost unless the run lock is still held (no guard: nothing to check)."""
        if self.guard is None or self.guard.check():
            return
        raise self._lock_lost(step, ran, total, applied)

    def _lock_lost(self, step, ran, total, applied):
        if ran:
            what = ('%d of %d statements of it ran outside a transaction and stay applied, but it is '
                    'not recorded as applied' % (ran, total))
        else:
            what = 'it was not applied'
        return LockLost(
            'the migration lock on %s was lost before %s finished: its session (pid %s) ended '
            '(terminated by an administrator, a server timeout, or a broken connection); %s; nothing '
            'further was applied. Make sure no other run is going on, then run again'
            % (self.guard.where, step.label(), self.guard.pid, what),
            applied=list(applied), changed=bool(applied), file=step.script)

    def run_step(self, step, rank, applied):
        """One step with history row ``rank``; ``applied`` is what ran before (for errors)."""
        if step.kind in ('baseline', 'repair'):
            self._ensure_lock(step, applied=applied)
            with self.conn.cursor() as cur:
                self.table.insert(cur, rank, step, self.actor, 0, True, step.note)
            return
        dirty = self._dirty
        self._dirty = step.file.changes_session
        if step.transactional:
            self._run_transactional(step, rank, applied, dirty)
        else:
            if dirty:
                with self.conn.cursor() as cur:
                    cur.execute(self.reset_text())
            self._run_autocommit(step, rank, applied)

    def _run_transactional(self, step, rank, applied, dirty=False):
        """One transaction: the file's statements, then its history row, then COMMIT.

        Every statement but the last is its own execute (BEGIN rides along with the
        first), so a failure there names its statement for certain.  The last one is
        sent together with the history INSERT and the COMMIT: a one-statement file
        costs one round trip.  A failure in that last execute is placed by the
        error's position when the server gives one, else it is the statement's
        unless the error is about the history table (then it is the history write).
        """
        statements = step.file.statements
        with self.conn.cursor() as cur:
            record = self.table.record_sql(cur, rank, step, self.actor)
        if self.guard is not None:
            record = self.guard.commit_check_sql + ';\n' + record
        # the reset commits on its own before BEGIN: a failed file cannot roll it back
        opening = (self.reset_text() + 'COMMIT;\n' if dirty else '') + 'BEGIN;\n'
        progress = {}

        def attempt():
            progress.update(stmt=None, ran=0, started=time.time())
            with self.conn.cursor() as cur:
                begin = opening
                last = statements[-1] if statements else None
                # a COPY with inline rows cannot ride along with the history row
                alone = statements if last is None or last.data is not None else statements[:-1]
                for stmt in alone:
                    progress['stmt'] = stmt
                    execute(cur, stmt, begin)
                    begin = ''
                    progress['ran'] += 1
                stmt = progress['stmt'] = last if len(alone) < len(statements) else None
                head = begin + (stmt.text + '\n;\n' if stmt is not None else '')
                try:
                    cur.execute(head + record + ';\nCOMMIT')
                except psycopg2.Error as exc:
                    progress['stmt'] = self._locate_last(exc, stmt, len(begin), len(head))
                    raise

        error, attempts = with_lock_retries(attempt, self.opts.lock_retries, self.sleep,
                                            after_error=lambda: _rollback(self.conn))
        if error is None:
            return
        if LockGuard.is_lock_lost(error):
            raise self._lock_lost(step, 0, len(statements), applied)
        stmt, ran = progress['stmt'], progress['ran']
        message = self.masker.text(self._failure_message(step, stmt, error, ran, len(statements),
                                                         transactional=True, attempts=attempts))
        self._record_failure(rank, step, progress['started'], message)
        raise MigrationError(message, **self.masker.value(self._failure_details(step, stmt, error, applied, ran)))

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
        if getattr(diag, 'table_name', None) == self.table.name and \
                getattr(diag, 'schema_name', None) in (None, self.table.schema):
            return None
        primary = getattr(diag, 'message_primary', None) or ''
        if re.search(r'(^|[^A-Za-z0-9_$])%s($|[^A-Za-z0-9_$])' % re.escape(self.table.name), primary):
            return None
        return stmt

    def _run_autocommit(self, step, rank, applied):
        """One statement per round trip, each retried on lock timeouts; the row at the end."""
        statements = step.file.statements
        started = time.time()
        self._ensure_lock(step, applied=applied)
        if self.opts.drop_invalid_indexes:
            self._drop_invalid(step)
        before = invalid_since(self.conn)
        with self.conn.cursor() as cur:
            for ran, stmt in enumerate(statements):
                if ran:
                    self._ensure_lock(step, ran, len(statements), applied)
                error, attempts = with_lock_retries(lambda s=stmt: execute(cur, s),
                                                    self.opts.lock_retries, self.sleep)
                if error is not None:
                    self._fail_autocommit(step, rank, started, applied, (stmt, error, ran, attempts))
                left = invalid_since(self.conn, before, named_indexes(stmt.text))
                if left:
                    self._fail_invalid(step, rank, started, applied, (stmt, left, ran + 1))
            self._ensure_lock(step, len(statements), len(statements), applied)
            ms = int((time.time() - started) * 1000)
            self.table.insert(cur, rank, step, self.actor, ms, True, None)

    def _fail_invalid(self, step, rank, started, applied, failure):
        """Record and raise: ``stmt`` left the INVALID indexes ``left`` (``ran`` statements ran)."""
        stmt, left, ran = failure
        names = [i['index'] for i in left]
        message = self.masker.text(
            '%s failed at %s line %d: index %s %s INVALID after this statement (a CREATE INDEX '
            'CONCURRENTLY that failed, timed out, or was skipped by IF NOT EXISTS because a half-built '
            'index of that name exists); statement: %s; the file runs outside a transaction: %d of %d '
            'statements ran (they stay applied) and it is not recorded as applied; set '
            'drop_invalid_indexes: true to drop the INVALID index before the next run, or drop it by hand'
            % (step.label(), step.script, stmt.line, ', '.join(names), 'is' if len(names) == 1 else 'are',
               stmt.short(), ran, len(step.file.statements)))
        self._record_failure(rank, step, started, message)
        details = self._failure_details(step, stmt, None, applied, ran)
        details.update(invalid_indexes=names, statements_ran=[s.short() for s in step.file.statements[:ran]])
        raise MigrationError(message, **self.masker.value(details))

    def _fail_autocommit(self, step, rank, started, applied, failure):
        """Record and raise the failure of statement ``stmt`` (``ran`` statements ran before it)."""
        stmt, error, ran, attempts = failure
        statements = step.file.statements
        message = self._failure_message(step, stmt, error, ran, len(statements),
                                        transactional=False, attempts=attempts)
        if self.conn.status != psycopg2.extensions.STATUS_READY:
            self.conn.rollback()
        invalid = invalid_indexes(self.conn, [step])
        if invalid:
            message += ('; INVALID index left behind: %s (set drop_invalid_indexes: '
                        'true to drop it before the retry)' % ', '.join(i['index'] for i in invalid))
        message = self.masker.text(message)
        self._record_failure(rank, step, started, message)
        details = self._failure_details(step, stmt, error, applied, ran)
        details['invalid_indexes'] = [i['index'] for i in invalid]
        details['statements_ran'] = [s.short() for s in statements[:ran]]
        raise MigrationError(message, **self.masker.value(details))

    def _drop_invalid(self, step):
        with self.conn.cursor() as cur:
            for idx in invalid_indexes(self.conn, [step]):
                cur.execute(pgsql.SQL('DROP INDEX CONCURRENTLY IF EXISTS {}').format(
                    pgsql.Identifier(idx['schema'], idx['name'])))

    @staticmethod
    def _failure_message(step, stmt, exc, ran, total, transactional, attempts):
        where = ('%s line %d' % (step.script, failed_line(stmt, exc))) if stmt else step.script
        row = copy_row(stmt, exc)
        if row:
            where += ' (row %d of the COPY data of line %d)' % (row, stmt.line)
        text = '%s failed at %s: %s' % (step.label(), where, pg_error_text(exc))
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

    @staticmethod
    def _failure_details(step, stmt, exc, applied, ran):
        return dict(file=step.script, line=failed_line(stmt, exc) if stmt else None,
                    statement=stmt.text if stmt else None, sqlstate=sqlstate(exc) if exc else None,
                    applied=list(applied), changed=bool(applied), statements_ran_count=ran)

    def _record_failure(self, rank, step, started, message):
        ms = int((time.time() - started) * 1000)
        try:
            if self.conn.status != psycopg2.extensions.STATUS_READY:
                self.conn.rollback()
            with self.conn.cursor() as cur:
                self.table.insert(cur, rank, step, self.actor, ms, False, message)
        except psycopg2.Error:
            pass    # the server may be gone; the error below still tells the user
