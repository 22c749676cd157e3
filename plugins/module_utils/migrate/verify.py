# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Verified rollback: every undo file must give back the schema it had before, on a scratch database.

The scratch database is a copy of ``template0``, or of ``verify_template``
(extensions and objects the migrations expect but do not create), then
``verify_setup`` (a SQL file) runs in it before the first migration.  The
comparison is the full schema fingerprint (``fingerprint.compare``): comments,
grants, policies, storage parameters and the rest, with a unified diff of
long definitions.  No Ansible imports.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.dbdevops.postgresql.plugins.module_utils import _catalog
from ansible_collections.dbdevops.postgresql.plugins.module_utils import fingerprint as fpmod
from ansible_collections.dbdevops.postgresql.plugins.module_utils.connection import connect
from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate import files as mfiles
from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate.executor import (
    Executor, session_settings)
from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate.history import HistoryTable
from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate.steps import (
    MigrationError, Step, pg_error_text)

try:
    import psycopg2
    from psycopg2 import sql as pgsql
except ImportError:  # pragma: no cover - connection.require_psycopg2 explains it
    psycopg2 = None
    pgsql = None

APPLICATION = 'dbdevops-verify-rollback'


def verify_rollback(params, options, keep_database=False, files=None):
    """Prove every undo file restores the schema, on a scratch database.

    On a database this creates (and drops afterwards) next to ``params.dbname``:
    for each versioned migration in order, take the fingerprint, apply it,
    fingerprint, run its undo and compare with the fingerprint before, then
    redo it and compare with the one after.  Returns a dict naming the first
    migration whose undo (or redo) does not give back the same schema.
    """
    files = files if files is not None else mfiles.discover(options.path, options.placeholders)
    template = getattr(options, 'verify_template', None) or 'template0'
    setup = _read_setup(getattr(options, 'verify_setup', None))
    scratch = _catalog.scratch_name('verify', params.dbname)
    admin = connect(params, autocommit=True, application_name=APPLICATION)
    try:
        _catalog.drop_stale_scratch(admin)          # left by killed runs
        # claimed before it exists and marked once it does: a killed run's copy is dropped by the next
        with _catalog.ScratchClaim(lambda: connect(params, autocommit=True, application_name=APPLICATION),
                                   scratch) as claim:
            with admin.cursor() as cur:
                try:
                    cur.execute(pgsql.SQL('CREATE DATABASE {} TEMPLATE {}').format(
                        pgsql.Identifier(scratch), pgsql.Identifier(template)))
                    claim.mark(cur)
                except psycopg2.Error as exc:
                    if template != 'template0':
                        raise MigrationError(
                            'verify_rollback could not create its scratch database on %s from the template '
                            'database %s (verify_template): %s; the template must exist and nobody may be '
                            'connected to it while the copy is made' % (params.where(), template, pg_error_text(exc)),
                            verify_template=template)
                    raise MigrationError(
                        'verify_rollback needs a scratch database and could not create one on %s: %s; '
                        'grant CREATEDB to %s or turn verify_rollback off'
                        % (params.where(), pg_error_text(exc), params.login_user))
            try:
                return _verify_on(params.replace(db=scratch), options, files, scratch, setup)
            finally:
                _keep_or_drop(admin, scratch, keep_database)
    finally:
        admin.close()


def _keep_or_drop(admin, scratch, keep):
    """Drop the scratch database, or keep it for a person to look at (no longer marked as scratch)."""
    with admin.cursor() as cur:
        if keep:
            cur.execute(pgsql.SQL('COMMENT ON DATABASE {} IS NULL').format(pgsql.Identifier(scratch)))
        else:
            cur.execute(pgsql.SQL('DROP DATABASE IF EXISTS {} WITH (FORCE)').format(pgsql.Identifier(scratch)))


def _read_setup(path):
    """(path, SQL text) of the verify_setup file, or None; read before anything is created."""
    if not path:
        return None
    try:
        with open(path) as handle:
            return path, handle.read()
    except (IOError, OSError, UnicodeDecodeError) as exc:
        raise MigrationError('cannot read the verify_setup file %s: %s; nothing was applied' % (path, exc),
                             verify_setup=path)


def _prepare(conn, table, setup, scratch, options):
    """Run the verify_setup file on the scratch database; refuse a template that holds migrations."""
    if setup is not None:
        path, text = setup
        try:
            with conn.cursor() as cur:
                cur.execute(text)
        except psycopg2.Error as exc:
            raise MigrationError('verify_setup %s failed on scratch database %s: %s; nothing was applied'
                                 % (path, scratch, pg_error_text(exc)), verify_setup=path,
                                 sqlstate=getattr(exc, 'pgcode', None))
    with conn.cursor() as cur:
        exists = table.exists(cur)
    if exists:
        raise MigrationError(
            'the scratch database of verify_rollback already has the history table %s.%s (copied from '
            'verify_template %s, or made by verify_setup): prepare it from a database without migrations '
            'applied; nothing was applied' % (options.history_schema, options.history_table,
                                              getattr(options, 'verify_template', None) or 'template0'))


def _verify_on(sparams, options, files, scratch, setup=None):
    exclude = [(options.history_schema, options.history_table)]
    table = HistoryTable(options.history_schema, options.history_table)
    conn = connect(sparams, autocommit=True, application_name=APPLICATION)
    executor = Executor(conn, options, table, 'verify_rollback')
    checked, not_reversible, failure = [], [], None
    rank = [1]

    def run(step):
        try:
            executor.run_step(step, rank[0], [])
        except MigrationError as exc:
            raise MigrationError('verify_rollback on scratch database %s: %s' % (scratch, exc),
                                 **exc.details)
        rank[0] += 1

    def differs(stage, expected, mfile, vfile):
        diffs = fpmod.compare(expected, fpmod.take(conn, exclude))
        return dict(version=vfile.version, script=mfile.script, stage=stage, differences=diffs,
                    summary=fpmod.format_differences(diffs)) if diffs else None

    try:
        session_settings(conn, options)
        _prepare(conn, table, setup, scratch, options)
        table.ensure(conn)
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
            failure = differs('undo', before, ufile, vfile)
            if failure is None:
                run(Step('versioned', 'up', vfile))
                failure = differs('redo', after, vfile, vfile)
            if failure is not None:
                break
            checked.append(vfile.version)
    finally:
        conn.close()
    return dict(verified=failure is None, checked=checked, not_reversible=not_reversible,
                failure=failure)


def describe_verify_failure(report):
    """The first migration whose undo (or redo) gave another schema, then its differences, one a line."""
    failure = report['failure']
    what = ('its undo does not restore the schema it had before (+ is there after the undo, - is missing)'
            if failure['stage'] == 'undo' else
            're-applying it after its undo gives another schema (+ is there only after the redo, - is missing)')
    return ('verified rollback failed at version %s (%s): %s:\n%s'
            % (failure['version'], failure['script'], what, '\n'.join(failure['summary'])))
