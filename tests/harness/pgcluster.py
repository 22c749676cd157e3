"""Throwaway PostgreSQL clusters: initdb + pg_ctl in a temp dir on a free port.

Run as root, the server runs as the ``postgres`` OS user (PostgreSQL refuses
root).  Each cluster listens on 127.0.0.1 and on a Unix socket in its own
directory; local socket logins are trusted, TCP logins use scram-sha-256, and
the superuser ``postgres`` has the password ``SUPERUSER_PASSWORD``.

    with PgCluster() as pg:
        conn = pg.connect()            # psycopg2 over the socket
        pg.sql("CREATE TABLE t()")     # quick one-off statement
        pg.conn_params(password=True)  # dict for the engine / modules
"""

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import psycopg2

SUPERUSER_PASSWORD = 'harness-superuser-secret'
_LIVE = set()


def find_bindir():
    env = os.environ.get('PG_BINDIR')
    if env:
        return env
    found = sorted(glob.glob('/usr/lib/postgresql/*/bin/initdb'),
                   key=lambda p: int(p.split('/')[4]) if p.split('/')[4].isdigit() else 0)
    if found:
        return os.path.dirname(found[-1])
    initdb = shutil.which('initdb')
    if initdb:
        return os.path.dirname(initdb)
    raise RuntimeError('no PostgreSQL server binaries found: install the "postgresql" package '
                       'or set PG_BINDIR')


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


class PgCluster(object):
    def __init__(self, settings=None, bindir=None, os_user='postgres', initdb_args=()):
        self.bindir = bindir or find_bindir()
        self.settings = dict(settings or {})
        self.initdb_args = list(initdb_args)
        self.as_root = os.geteuid() == 0
        self.os_user = os_user if self.as_root else pwd.getpwuid(os.geteuid()).pw_name
        self.base = None
        self.port = None
        self.running = False

    # -- paths
    @property
    def datadir(self):
        return os.path.join(self.base, 'data')

    @property
    def socket_dir(self):
        return os.path.join(self.base, 'sock')

    @property
    def logfile(self):
        return os.path.join(self.base, 'server.log')

    def bin(self, name):
        return os.path.join(self.bindir, name)

    def run_as_owner(self, argv, check=True, **kwargs):
        """Run a command as the cluster's OS user (via runuser when root)."""
        if self.as_root:
            argv = ['runuser', '-u', self.os_user, '--'] + list(argv)
        kwargs.setdefault('stdout', subprocess.PIPE)
        kwargs.setdefault('stderr', subprocess.PIPE)
        kwargs.setdefault('universal_newlines', True)
        proc = subprocess.run(argv, check=False, **kwargs)
        if check and proc.returncode != 0:
            raise RuntimeError('%s failed (%s):\n%s%s' % (' '.join(argv), proc.returncode,
                                                          proc.stdout, proc.stderr))
        return proc

    def chown(self, path):
        if self.as_root:
            pw = pwd.getpwnam(self.os_user)
            os.chown(path, pw.pw_uid, pw.pw_gid)

    # -- lifecycle
    def init(self):
        self.base = tempfile.mkdtemp(prefix='dbdevops-pg-')
        os.chmod(self.base, 0o755)
        self.chown(self.base)
        os.mkdir(self.socket_dir, 0o755)
        self.chown(self.socket_dir)
        pwfile = os.path.join(self.base, 'pwfile')
        with open(pwfile, 'w') as f:
            f.write(SUPERUSER_PASSWORD + '\n')
        os.chmod(pwfile, 0o600)
        self.chown(pwfile)
        self.run_as_owner([self.bin('initdb'), '-D', self.datadir, '-U', 'postgres',
                           '--pwfile', pwfile, '-E', 'UTF8', '--locale', 'C',
                           '--auth-local', 'trust', '--auth-host', 'scram-sha-256',
                           '--no-sync'] + self.initdb_args)
        os.unlink(pwfile)
        conf = {
            'listen_addresses': "'127.0.0.1'",
            'unix_socket_directories': "'%s'" % self.socket_dir,
            'fsync': 'off', 'synchronous_commit': 'off', 'full_page_writes': 'off',
            'shared_buffers': "'32MB'", 'max_connections': '40',
            'log_min_messages': 'warning', 'logging_collector': 'off',
        }
        for key, value in self.settings.items():
            conf[key] = value if isinstance(value, (int, float)) else "'%s'" % value \
                if not str(value).startswith("'") else value
        with open(os.path.join(self.datadir, 'postgresql.auto.conf'), 'a') as f:
            for key, value in conf.items():
                f.write('%s = %s\n' % (key, value))
        return self

    def start(self, attempts=5):
        if self.base is None:
            self.init()
        for attempt in range(attempts):
            self.port = self.port if (attempt == 0 and self.port) else free_port()
            proc = self.run_as_owner([self.bin('pg_ctl'), '-D', self.datadir, '-l', self.logfile,
                                      '-o', '-p %d' % self.port, '-w', '-t', '30', 'start'],
                                     check=False)
            if proc.returncode == 0:
                self.running = True
                _LIVE.add(self)
                return self
        raise RuntimeError('could not start PostgreSQL in %s:\n%s\n%s' % (
            self.datadir, proc.stderr, self.read_log()))

    def stop(self, mode='fast'):
        if self.running:
            self.run_as_owner([self.bin('pg_ctl'), '-D', self.datadir, '-m', mode, '-w', 'stop'],
                              check=False)
            self.running = False
        _LIVE.discard(self)

    def restart(self):
        self.stop()
        return self.start()

    def kill(self):
        """SIGKILL the postmaster (crash simulation); leaves the data dir in place."""
        pid = self.postmaster_pid()
        if pid:
            os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)
        self.running = False

    def postmaster_pid(self):
        try:
            with open(os.path.join(self.datadir, 'postmaster.pid')) as f:
                return int(f.readline().strip())
        except (OSError, ValueError):
            return None

    def destroy(self):
        try:
            self.stop('immediate')
        finally:
            if self.base and os.path.isdir(self.base):
                shutil.rmtree(self.base, ignore_errors=True)
            self.base = None

    def read_log(self):
        try:
            with open(self.logfile) as f:
                return f.read()
        except OSError:
            return ''

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.destroy()
        return False

    # -- access
    def conn_params(self, dbname='postgres', user='postgres', password=None, tcp=False):
        """Connection options as the collection's modules and engine take them."""
        tcp = tcp or password is not None
        params = dict(login_user=user, login_port=self.port, db=dbname,
                      login_host='127.0.0.1' if tcp else self.socket_dir)
        if password:
            params['login_password'] = SUPERUSER_PASSWORD if password is True else password
        return params

    def dsn(self, dbname='postgres', user='postgres'):
        return 'host=%s port=%d dbname=%s user=%s' % (self.socket_dir, self.port, dbname, user)

    def connect(self, dbname='postgres', user='postgres', autocommit=True):
        conn = psycopg2.connect(host=self.socket_dir, port=self.port, dbname=dbname, user=user)
        conn.autocommit = autocommit
        return conn

    def sql(self, statement, params=None, dbname='postgres'):
        """Run one statement in autocommit; return all rows (or None)."""
        conn = self.connect(dbname)
        try:
            with conn.cursor() as cur:
                cur.execute(statement, params)
                return cur.fetchall() if cur.description else None
        finally:
            conn.close()

    def create_database(self, name, owner='postgres', template='template0'):
        self.sql('CREATE DATABASE "%s" OWNER "%s" TEMPLATE %s' % (name, owner, template))
        return name

    def psql_env(self):
        env = dict(os.environ)
        env.update(PGHOST=self.socket_dir, PGPORT=str(self.port), PGUSER='postgres')
        return env


def destroy_all():
    for cluster in list(_LIVE):
        try:
            cluster.destroy()
        except Exception:  # noqa: BLE001 - teardown must go on
            pass
