# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Verified rollback: every undo file must give back the schema it had before, on a scratch database.

No Ansible imports.
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
    scratch = _catalog.scratch_name('verify', params.dbname)
    admin = connect(params, autocommit=True, application_name=APPLICATION)
    try:
        _catalog.drop_stale_scratch(admin)          # left by killed runs
        # claimed before it exists and marked once it does: a killed run's copy is dropped by the next
        with _catalog.ScratchClaim(lambda: connect(params, autocommit=True, application_name=APPLICATION),
                                   scratch) as claim:
            with admin.cursor() as cur:
                try:
                    cur.execute(pgsql.SQL('CREATE DATABASE {} TEMPLATE template0').format(
                        pgsql.Identifier(scratch)))
                    claim.mark(cur)
                except psycopg2.Error as exc:
                    raise MigrationError(
                        'verify_rollback needs a scratch database and could not create one on %s: %s; '
                        'grant CREATEDB to %s or turn verify_rollback off'
                        % (params.where(), pg_error_text(exc), params.login_user))
            try:
                return _verify_on(params.replace(db=scratch), options, files, scratch)
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


def _verify_on(sparams, options, files, scratch):
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
    """One line naming the first migration whose undo (or redo) gave another schema."""
    failure = report['failure']
    what = ('its undo does not restore the schema it had before'
            if failure['stage'] == 'undo' else 're-applying it after its undo gives another schema')
    return ('verified rollback failed at version %s (%s): %s: %s'
            % (failure['version'], failure['script'], what, '; '.join(failure['summary'])))
