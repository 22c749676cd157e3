# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The shared connection layer: options, psycopg2 connections, libpq env.

Option names match community.postgresql so playbooks can switch modules with
no surprise.  Nothing here imports Ansible: modules pass ``module.params``.
The argument spec (with the libpq environment fallbacks) is in ``_module.py``;
client programs get the password through ``_pgclient.LibpqEnv``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.dbdevops.postgresql.plugins.module_utils._pgclient import timeouts_off
from ansible_collections.dbdevops.postgresql.plugins.module_utils.errors import DbDevopsError

try:
    import psycopg2
    import psycopg2.extensions
    HAS_PSYCOPG2 = True
    PSYCOPG2_IMPORT_ERROR = None
except ImportError as exc:  # pragma: no cover - depends on the target host
    psycopg2 = None
    HAS_PSYCOPG2 = False
    PSYCOPG2_IMPORT_ERROR = exc

SSL_MODES = ['allow', 'disable', 'prefer', 'require', 'verify-ca', 'verify-full']


class PgConnectionError(DbDevopsError):
    """Could not connect: the message names host, port, database and cause."""


class ConnParams(object):
    """Where and how to connect; built from module params or plain keywords."""

    FIELDS = ('login_user', 'login_password', 'login_host', 'login_unix_socket',
              'login_port', 'db', 'ssl_mode', 'ca_cert', 'ssl_cert', 'ssl_key',
              'connect_params')

    def __init__(self, login_user='postgres', login_password='', login_host='',
                 login_unix_socket='', login_port=5432, db='', ssl_mode='prefer',
                 ca_cert=None, ssl_cert=None, ssl_key=None, connect_params=None,
                 host_label=None):
        self.login_user = login_user or 'postgres'
        self.login_password = login_password or ''
        self.login_host = login_host or ''
        self.login_unix_socket = login_unix_socket or ''
        self.login_port = int(login_port or 5432)
        self.db = db or ''
        self.ssl_mode = ssl_mode or 'prefer'
        self.ca_cert = ca_cert
        self.ssl_cert = ssl_cert
        self.ssl_key = ssl_key
        self.connect_params = dict(connect_params or {})
        self.host_label = host_label

    @classmethod
    def from_params(cls, params):
        """Build from a dict such as ``module.params`` or a host CLI config (unset keys: defaults)."""
        return cls(**dict((f, params[f]) for f in cls.FIELDS if params.get(f) is not None))

    def replace(self, **changes):
        kwargs = dict((f, getattr(self, f)) for f in self.FIELDS)
        kwargs['host_label'] = self.host_label
        kwargs.update(changes)
        return ConnParams(**kwargs)

    @property
    def dbname(self):
        return self.db or 'postgres'

    @property
    def host(self):
        """What libpq will connect to: a host name, or a socket directory."""
        return self.login_host or self.login_unix_socket or ''

    def where(self, dbname=None):
        """Human label: host:port, database and user, for error messages."""
        host = self.host or 'the default Unix socket'
        if self.host_label and self.host_label != host:
            host = '%s (%s)' % (self.host_label, host)
        return '%s port %s, database "%s", user "%s"' % (
            host, self.login_port, dbname or self.dbname, self.login_user)

    def libpq_kwargs(self, dbname=None):
        """Keyword arguments for ``psycopg2.connect`` (password included)."""
        kw = dict(dbname=dbname or self.dbname, user=self.login_user, port=self.login_port)
        if self.host:
            kw['host'] = self.host
        if self.login_password:
            kw['password'] = self.login_password
        if self.ssl_mode:
            kw['sslmode'] = self.ssl_mode
        if self.ca_cert:
            kw['sslrootcert'] = self.ca_cert
        if self.ssl_cert:
            kw['sslcert'] = self.ssl_cert
        if self.ssl_key:
            kw['sslkey'] = self.ssl_key
        kw.setdefault('connect_timeout', 10)
        kw.update(self.connect_params)
        return kw


_CAUSES = (
    (re.compile(r'password authentication failed', re.I),
     'password authentication failed; check login_user and login_password'),
    (re.compile(r'no password supplied|fe_sendauth', re.I),
     'the server asks for a password and none was given; set login_password'),
    (re.compile(r'database "[^"]*" does not exist', re.I),
     'the database does not exist; check db (login_db) or create it first'),
    (re.compile(r'role "[^"]*" does not exist', re.I),
     'the login role does not exist; check login_user'),
    (re.compile(r'no pg_hba\.conf entry', re.I),
     'pg_hba.conf has no entry for this client; add one or connect another way'),
    (re.compile(r'Connection refused|No such file or directory|could not connect to server', re.I),
     'the server refused the connection (not running, or not listening there); '
     'check login_host, login_port and that PostgreSQL is started'),
    (re.compile(r'timeout expired', re.I),
     'the connection timed out; check the address and any firewall'),
    (re.compile(r'could not translate host name', re.I),
     'the host name does not resolve; check login_host'),
    (re.compile(r'the database system is (starting up|shutting down|in recovery mode)', re.I),
     'the server is not accepting connections yet; retry in a moment'),
    (re.compile(r'too many connections|remaining connection slots', re.I),
     'the server has no free connection slots'),
    (re.compile(r'SSL', re.I),
     'the SSL negotiation failed; check ssl_mode and the certificates'),
)


def describe_connect_error(exc):
    """One line naming the cause of a libpq connect failure (no traceback)."""
    text = str(exc).strip()
    for pattern, cause in _CAUSES:
        if pattern.search(text):
            return cause
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    detail = lines[-1] if lines else exc.__class__.__name__
    return re.sub(r'^(FATAL|ERROR):\s*', '', detail)


def require_psycopg2():
    if not HAS_PSYCOPG2:
        import sys
        raise DbDevopsError(
            'psycopg2 is not installed for %s on this host (%s): install it, for example '
            '"apt-get install python3-psycopg2" on Debian/Ubuntu or "dnf install python3-psycopg2" '
            'on RHEL, or set ansible_python_interpreter to a Python that has it'
            % (sys.executable, PSYCOPG2_IMPORT_ERROR))


# Server-side timeouts a database or role may carry (ALTER DATABASE/ROLE ... SET)
# would end our own sessions half-way, even before their first query: every
# session we open turns them off in its startup packet (libpq ``options``, which
# wins over database and role settings; see _pgclient.timeouts_off), and sets
# what its work needs afterwards.


def connect(params, dbname=None, autocommit=False, application_name='dbdevops', server_major=None):
    """Open a psycopg2 connection or raise PgConnectionError with a one-line cause.

    The session starts with statement, lock and idle timeouts off, whatever
    the database or role says.  ``idle_session_timeout`` exists from 14 on: with
    ``server_major`` unknown it is named first and left out when the server
    refuses it.
    """
    require_psycopg2()
    kwargs = params.libpq_kwargs(dbname)
    kwargs.setdefault('application_name', application_name)
    given = kwargs.get('options') or ''
    attempts = [server_major] if server_major else [14, None]
    for attempt, major in enumerate(attempts, 1):
        kwargs['options'] = timeouts_off(major, given)
        try:
            conn = psycopg2.connect(**kwargs)
            break
        except (psycopg2.OperationalError, psycopg2.ProgrammingError) as exc:  # ProgrammingError: a bad connect_params
            if attempt < len(attempts) and 'idle_session_timeout' in str(exc):
                continue
            raise PgConnectionError(
                'cannot connect to PostgreSQL at %s: %s' % (params.where(dbname), describe_connect_error(exc)),
                host=params.host, port=params.login_port, database=dbname or params.dbname)
    if autocommit:
        conn.autocommit = True
    return conn
