# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Internal to restore: the server-level steps.

Scratch databases (named by ``_catalog.scratch_name``, claimed and marked
while they live, dropped by the next run when a run was killed), what the
login role may do, sessions and prepared transactions on a target, the swap
of a verified copy into the target's name, and roles and tablespaces from a
backup's ``globals.sql`` (only those missing are created).  No Ansible imports.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re
import time

from ansible_collections.dbdevops.postgresql.plugins.module_utils import _catalog, _sqlsplit
from ansible_collections.dbdevops.postgresql.plugins.module_utils.connection import connect
from ansible_collections.dbdevops.postgresql.plugins.module_utils.backup._tools import BackupError

try:
    import psycopg2
    from psycopg2 import sql as pgsql
except ImportError:  # pragma: no cover - reported by connect()
    psycopg2 = None
    pgsql = None

APPLICATION = 'dbdevops-restore'
# what scratch_name gives: dbdevops_<kind>_<base>_<10 hex>
_SCRATCH_NAME = re.compile(r'^dbdevops_(restore|swap|drill)_.*_[0-9a-f]{10}$')

ROLE_SQL = """
SELECT r.rolsuper, r.rolcreatedb OR r.rolsuper, r.rolcreaterole OR r.rolsuper
  FROM pg_roles r WHERE r.rolname = current_user
"""

# sessions on a database that the login role cannot end with pg_terminate_backend (PostgreSQL 15
# rules: only a superuser ends a superuser's session; others need the privileges of the session's
# role or pg_signal_backend)
UNSIGNALABLE_SQL = """
SELECT a.pid, a.usename, a.application_name
  FROM pg_stat_activity a JOIN pg_roles r ON r.oid = a.usesysid
 WHERE a.datname = %s AND a.pid <> pg_backend_pid()
   AND NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
   AND (r.rolsuper OR NOT (pg_has_role(current_user, a.usesysid, 'USAGE')
                           OR pg_has_role(current_user, 'pg_signal_backend', 'USAGE')))
 ORDER BY a.pid
"""


def admin_params(params, avoid):
    """Connection parameters for server-level work: the login database, unless it is one of
    ``avoid`` (a database renamed or dropped cannot hold our session): then ``postgres``."""
    if params.dbname not in avoid:
        return params
    for name in ('postgres', 'template1'):
        if name not in avoid:
            return params.replace(db=name)
    return params  # pragma: no cover - avoid never holds both


def admin_connect(params):
    return connect(params, autocommit=True, application_name=APPLICATION)


def login_role(cur):
    """dict(user, superuser, createdb, createrole) of the login role."""
    cur.execute('SELECT current_user')
    user = cur.fetchone()[0]
    cur.execute(ROLE_SQL)
    superuser, createdb, createrole = cur.fetchone()
    return dict(user=user, superuser=superuser, createdb=createdb, createrole=createrole)


def missing_memberships(cur, owners):
    """Of ``owners`` (role names), those the login role is not a member of (or that do not exist)."""
    missing = []
    for owner in sorted(owners):
        cur.execute("SELECT pg_has_role(current_user, oid, 'MEMBER') FROM pg_roles WHERE rolname = %s",
                    (owner,))
        row = cur.fetchone()
        if not row or not row[0]:
            missing.append(owner)
    return missing


def sessions(cur, name):
    cur.execute('SELECT pg_stat_clear_snapshot()')
    cur.execute('SELECT pid, usename, application_name, client_addr::text, state FROM pg_stat_activity '
                'WHERE datname = %s AND pid <> pg_backend_pid() AND backend_type = %s', (name, 'client backend'))
    return [dict(pid=r[0], user=r[1], application_name=r[2], client_addr=r[3], state=r[4])
            for r in cur.fetchall()]


def describe_sessions(items):
    return ', '.join('pid %s user %s app "%s"' % (s['pid'], s['user'], s['application_name'])
                     for s in items[:5]) + (' and %d more' % (len(items) - 5) if len(items) > 5 else '')


def blockers(cur, target, terminate):
    """Refuse (BackupError) what no swap can get past: prepared transactions on ``target``, and
    with ``terminate`` the sessions the login role is not allowed to end."""
    cur.execute('SELECT gid, owner FROM pg_prepared_xacts WHERE database = %s ORDER BY prepared', (target,))
    prepared = cur.fetchall()
    if prepared:
        gids = ', '.join("'%s' (owner %s)" % (gid, owner) for gid, owner in prepared)
        raise BackupError(
            'database "%s" is held by %d prepared transaction(s): %s; no session can end them and the '
            'database cannot be replaced while they exist. Nothing was changed: connect to "%s" and run '
            "COMMIT PREPARED 'gid' or ROLLBACK PREPARED 'gid' for each, then retry"
            % (target, len(prepared), gids, target), target_db=target,
            prepared_transactions=[dict(gid=g, owner=o) for g, o in prepared])
    if not terminate:
        return
    cur.execute(UNSIGNALABLE_SQL, (target,))
    stuck = [dict(pid=r[0], user=r[1], application_name=r[2]) for r in cur.fetchall()]
    if stuck:
        raise BackupError(
            'terminate_connections cannot end %d session(s) on database "%s": %s (the login role is not a '
            'superuser: it may end only sessions of roles whose privileges it has, or of non-superusers '
            'with pg_signal_backend). Nothing was changed: ask them to disconnect, or run the restore as '
            'a superuser' % (len(stuck), target, describe_sessions(stuck)), target_db=target, sessions=stuck)


# -- scratch databases -------------------------------------------------------------

class Scratch(object):
    """A scratch database of this run: named, claimed (advisory lock) before it exists, marked
    as scratch once created, dropped (or given its final name) at the end."""

    def __init__(self, admin, kind, base):
        self.admin = admin
        self.name = _catalog.scratch_name(kind, base)
        self.claim = _catalog.ScratchClaim(lambda: admin_connect(admin), self.name)

    def create(self, parts):
        """CREATE DATABASE <name> <parts...> and mark it."""
        create_database(self.admin, self.name, parts, self.claim)

    def drop(self):
        """Drop it (if it still exists under its scratch name) and release the claim."""
        try:
            drop_database(self.admin, self.name)
        finally:
            self.claim.release()


def create_database(admin, name, parts, claim=None):
    """CREATE DATABASE ``name`` with ``parts`` (composed SQL); marked as scratch by ``claim``."""
    _catalog.check_identifier(name, 'database name')
    conn = admin_connect(admin)
    try:
        with conn.cursor() as cur:
            cur.execute(pgsql.SQL(' ').join([pgsql.SQL('CREATE DATABASE {}').format(pgsql.Identifier(name))] + parts))
            if claim is not None:
                claim.mark(cur)
    finally:
        conn.close()


def drop_database(admin, name):
    _catalog.check_identifier(name, 'database name')
    conn = admin_connect(admin)
    try:
        with conn.cursor() as cur:
            cur.execute(pgsql.SQL('DROP DATABASE IF EXISTS {} WITH (FORCE)').format(pgsql.Identifier(name)))
    finally:
        conn.close()


def drop_stale(admin):
    """Drop the scratch databases killed runs left behind; returns their names.

    Besides ``_catalog.drop_stale_scratch`` (our comment, no session, no live
    claim) this drops databases a run created but could not mark (killed
    during CREATE DATABASE): a scratch name of ours, no comment at all, no
    session, and no live claim.
    """
    conn = admin_connect(admin)
    try:
        dropped = _catalog.drop_stale_scratch(conn)
        with conn.cursor() as cur:
            cur.execute("SELECT d.datname FROM pg_database d WHERE d.datname LIKE 'dbdevops\\_%%' "
                        "AND shobj_description(d.oid, 'pg_database') IS NULL "
                        "AND NOT EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.datid = d.oid) ORDER BY 1")
            unmarked = [r[0] for r in cur.fetchall() if _SCRATCH_NAME.match(r[0])]
            for name in unmarked:
                # mark it: a live run holds its claim from before CREATE DATABASE, so the
                # drop below leaves a database that is still being set up alone
                cur.execute(pgsql.SQL('COMMENT ON DATABASE {} IS {}').format(
                    pgsql.Identifier(name), pgsql.Literal(_catalog.SCRATCH_COMMENT)))
        dropped += _catalog.drop_stale_scratch(conn) if unmarked else []
    finally:
        conn.close()
    return dropped


# -- the swap -----------------------------------------------------------------------

def swap(admin, scratch, target, terminate, attempts=5):
    """Give the verified copy ``scratch`` the name ``target``; the original is dropped.

    The two renames and the scratch comment's removal are one transaction,
    which also locks out new sessions of the target while it runs; nothing
    else about the original is changed (its ``datallowconn`` is never
    touched), so a failure, or kill -9, at any point leaves it as it was.
    Returns the sessions ended.
    """
    aside = Scratch(admin, 'swap', target)
    conn = admin_connect(admin)
    ended = []
    try:
        with conn.cursor() as cur:
            for attempt in range(attempts):
                try:
                    blockers(cur, target, terminate)
                except BackupError as exc:
                    raise BackupError('%s (the restored copy was discarded; the original database "%s" is '
                                      'unchanged)' % (exc, target), **exc.details)
                present = sessions(cur, target)
                if present and not terminate:
                    raise BackupError(
                        'database "%s" has %d active connection(s) (%s): the restored copy was discarded '
                        'and the original is unchanged; close them or set terminate_connections: true'
                        % (target, len(present), describe_sessions(present)), sessions=present)
                if present:
                    ended += present
                    _terminate(cur, target, present)
                if _rename(conn, cur, scratch, target, aside, last=attempt == attempts - 1):
                    break
    except psycopg2.Error as exc:
        aside.claim.release()
        raise BackupError('replacing database "%s" failed: %s; the original database "%s" is unchanged '
                          'and the restored copy was discarded' % (target, _pg_text(exc), target))
    except BaseException:
        aside.claim.release()
        raise
    finally:
        conn.close()
    scratch.claim.release()
    aside.drop()
    return ended


def _terminate(cur, target, present):
    cur.execute('SELECT pg_terminate_backend(pid) FROM pg_stat_activity '
                'WHERE datname = %s AND pid <> pg_backend_pid() AND backend_type = %s',
                (target, 'client backend'))
    for _attempt in range(50):
        if not sessions(cur, target):
            return
        time.sleep(0.1)
    raise BackupError('database "%s": %d session(s) did not end within 5 seconds of pg_terminate_backend '
                      '(%s); the original database is unchanged and the restored copy was discarded'
                      % (target, len(present), describe_sessions(present)), sessions=present)


def _rename(conn, cur, scratch, target, aside, last):
    """One transaction: target -> aside (marked scratch), scratch -> target (unmarked).
    False when a session came back in between (and ``last`` is false): try again."""
    for name in (target, aside.name, scratch.name):
        _catalog.check_identifier(name, 'database name')
    conn.autocommit = False
    try:
        rename_pair(cur, scratch.name, target, aside)
        conn.commit()
        return True
    except psycopg2.errors.ObjectInUse:
        conn.rollback()
        if last:
            raise
        return False
    except BaseException:
        conn.rollback()
        raise
    finally:
        conn.autocommit = True


def rename_pair(cur, scratch_name, target, aside):
    cur.execute(pgsql.SQL('ALTER DATABASE {} RENAME TO {}').format(
        pgsql.Identifier(target), pgsql.Identifier(aside.name)))
    aside.claim.mark(cur)
    cur.execute(pgsql.SQL('ALTER DATABASE {} RENAME TO {}').format(
        pgsql.Identifier(scratch_name), pgsql.Identifier(target)))
    cur.execute(pgsql.SQL('COMMENT ON DATABASE {} IS NULL').format(pgsql.Identifier(target)))


def _pg_text(exc):
    text = (getattr(exc, 'pgerror', None) or str(exc)).strip()
    return ' '.join(line.strip() for line in text.splitlines() if line.strip())


# -- roles and tablespaces (globals.sql) ------------------------------------------

_IDENT = r'("(?:[^"]|"")+"|[^\s;"]+)'
_ROLE = re.compile(r'^(?:CREATE|ALTER)\s+ROLE\s+' + _IDENT + r'|^COMMENT\s+ON\s+ROLE\s+' + _IDENT, re.I)
_TABLESPACE = re.compile(r'^(?:CREATE|ALTER)\s+TABLESPACE\s+' + _IDENT + r'|^COMMENT\s+ON\s+TABLESPACE\s+' + _IDENT,
                         re.I)
_GRANT = re.compile(r'^GRANT\s+.+?\s+TO\s+' + _IDENT, re.I | re.S)


def _ident(text):
    return text[1:-1].replace('""', '"') if text.startswith('"') else text


def plan_globals(cur, path):
    """What of ``globals.sql`` to run: (statements, created) where ``created`` names the roles
    and tablespaces that are missing.  Existing roles and tablespaces are never altered:
    their statements (ALTER ROLE ... PASSWORD, LOGIN ...) are left out, and so are grants
    to an existing role."""
    with open(path, 'rb') as handle:
        text = handle.read().decode('utf-8')
    # psql meta-commands (\restrict of newer pg_dumpall) are not SQL
    text = '\n'.join('' if line.startswith('\\') else line for line in text.splitlines())
    cur.execute('SELECT rolname FROM pg_roles')
    roles = set(r[0] for r in cur.fetchall())
    cur.execute('SELECT spcname FROM pg_tablespace')
    existing = dict(role=roles, tablespace=set(r[0] for r in cur.fetchall()))
    keep, created = [], []
    for statement in _sqlsplit.split(text, filename=path):
        sql = statement.text.strip()
        kind, match = next(((k, m) for k, m in (('role', _ROLE.match(sql)), ('tablespace', _TABLESPACE.match(sql)))
                            if m), (None, None))
        grant = _GRANT.match(sql)
        if kind:
            name = _ident(match.group(1) or match.group(2))
            if name in existing[kind]:
                continue
            if sql.upper().startswith('CREATE'):
                created.append('%s %s' % (kind, _catalog.quote_ident(name)))
        elif grant and _ident(grant.group(1)) in roles:
            continue
        elif not (grant or sql.upper().startswith('SET ')):
            continue  # nothing else belongs in a globals script
        keep.append(statement)
    return keep, created


def restore_globals(admin, path):
    """Create the roles and tablespaces of ``path`` that are missing, in one transaction
    (CREATE TABLESPACE cannot be in one: those run after).  Returns what was created."""
    conn = connect(admin, application_name=APPLICATION)
    try:
        with conn.cursor() as cur:
            statements, created = plan_globals(cur, path)
            later = [s for s in statements if _TABLESPACE.match(s.text.strip())]
            for statement in [s for s in statements if s not in later]:
                _run_global(cur, statement, path)
            conn.commit()
        conn.autocommit = True
        with conn.cursor() as cur:
            for statement in later:
                _run_global(cur, statement, path)
    except BaseException:
        if not conn.autocommit:
            conn.rollback()
        raise
    finally:
        conn.close()
    return created


def _run_global(cur, statement, path):
    try:
        cur.execute(statement.text)
    except psycopg2.Error as exc:
        raise BackupError('restoring globals (roles, tablespaces) from %s failed at line %d: %s; no role '
                          'was created' % (path, statement.line, _pg_text(exc)))
