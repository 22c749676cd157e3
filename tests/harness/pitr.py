"""A throwaway PostgreSQL cluster archiving into a throwaway pgBackRest repository.

    with PitrLab() as lab:              # cluster + repo + stanza "t", archiving works
        lab.pg.sql('CREATE TABLE ...')
        lab.pgbackrest('backup', '--type=full', '--start-fast')
        lab.repo_args()                 # stanza/config/os_user for the modules

    with PitrLab(pg=cluster) as lab:    # an existing, running cluster instead of a new one

``pg`` is any object with PgCluster's interface (``datadir``, ``port``,
``socket_dir``, ``os_user``, ``chown``, ``run_as_owner``, ``sql``,
``restart``, ``read_log``, ``conn_params``), e.g. a Debian cluster driven with
pg_ctlcluster: the lab turns archiving on with ALTER SYSTEM and restarts it,
and leaves it running (its owner drops it) when the lab ends.

Everything lives in one temp dir owned by the cluster's OS user: the repository
(encrypted, with a passphrase in the private config file only), and pgBackRest's
log, lock and spool folders, created before the first pgbackrest run (a run as
root would leave a root-owned lock folder behind).
"""

import os
import shutil
import subprocess
import tempfile
import time

from tests.harness.pgcluster import PgCluster

STANZA = 't'
CIPHER_PASS = 'harness-repo-passphrase-7f3a'


class PitrLab(object):
    def __init__(self, stanza=STANZA, cipher=True, pg=None):
        self.stanza = stanza
        self.cipher = cipher
        self.base = None
        self.pg = pg
        self.own_pg = pg is None

    @property
    def config(self):
        return os.path.join(self.base, 'pgbackrest.conf')

    @property
    def repo(self):
        return os.path.join(self.base, 'repo')

    @property
    def log_dir(self):
        return os.path.join(self.base, 'log')

    def archive_command(self):
        return 'pgbackrest --config=%s --stanza=%s archive-push %%p' % (self.config, self.stanza)

    def archive_settings(self):
        return {'archive_mode': 'on', 'archive_command': self.archive_command(), 'wal_level': 'replica',
                'max_wal_senders': 3, 'log_min_messages': 'warning'}

    def start(self):
        self.base = tempfile.mkdtemp(prefix='dbdevops-pitr-')
        os.chmod(self.base, 0o755)
        if self.own_pg:
            self.pg = PgCluster(settings=self.archive_settings())
        self.pg.chown(self.base)
        for name in ('repo', 'log', 'lock', 'spool'):
            path = os.path.join(self.base, name)
            os.mkdir(path, 0o750)
            self.pg.chown(path)
        if self.own_pg:
            self.pg.start()
        else:
            for key, value in self.archive_settings().items():
                self.pg.sql('ALTER SYSTEM SET %s = %%s' % key, (str(value),))
            self.pg.restart()
        self.write_config()
        self.pgbackrest('stanza-create')
        return self

    def write_config(self, **extra):
        lines = ['[global]', 'repo1-path=%s' % self.repo, 'log-path=%s' % self.log_dir,
                 'lock-path=%s' % os.path.join(self.base, 'lock'),
                 'spool-path=%s' % os.path.join(self.base, 'spool'),
                 'log-level-console=warn', 'log-level-file=info', 'compress-type=lz4', 'process-max=1',
                 'repo1-retention-full=9999999']
        lines = [line for line in lines if line.split('=', 1)[0] not in extra]     # extra wins
        if self.cipher:
            lines += ['repo1-cipher-type=aes-256-cbc', 'repo1-cipher-pass=%s' % CIPHER_PASS]
        lines += ['%s=%s' % kv for kv in extra.items()]
        lines += ['', '[%s]' % self.stanza, 'pg1-path=%s' % self.pg.datadir, 'pg1-port=%d' % self.pg.port,
                  'pg1-socket-path=%s' % self.pg.socket_dir, '']
        with open(self.config, 'w') as handle:
            handle.write('\n'.join(lines))
        os.chmod(self.config, 0o600)
        self.pg.chown(self.config)

    def pgbackrest(self, *args, check=True, timeout=300):
        argv = ['pgbackrest', '--config=%s' % self.config, '--stanza=%s' % self.stanza] + list(args)
        return self.pg.run_as_owner(argv, check=check, timeout=timeout)

    def repo_args(self):
        return dict(stanza=self.stanza, config=self.config, os_user=self.pg.os_user)

    def conn(self, password=True):
        return self.pg.conn_params(password=password)

    def switch_wal(self, wait=True, timeout=30):
        """Close the current WAL segment and (``wait``) until the archiver has pushed it."""
        # the segment holding the switch record (synchronous_commit is off: pg_current_wal_lsn() may lag)
        lsn_wal = self.pg.sql('SELECT pg_walfile_name(pg_switch_wal())')[0][0]
        if not wait:
            return lsn_wal
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            last = self.pg.sql('SELECT last_archived_wal FROM pg_stat_archiver')[0][0]
            if last and last >= lsn_wal:
                return lsn_wal
            time.sleep(0.1)
        raise AssertionError('WAL %s not archived within %ss' % (lsn_wal, timeout))

    def break_archiving(self):
        self.pg.sql("ALTER SYSTEM SET archive_command = 'false'")
        self.pg.sql('SELECT pg_reload_conf()')

    def fix_archiving(self):
        self.pg.sql('ALTER SYSTEM RESET archive_command')
        self.pg.sql('SELECT pg_reload_conf()')

    def logs_text(self):
        """Everything pgBackRest and the server logged (to search for secrets)."""
        text = self.pg.read_log()
        for root, _dirs, files in os.walk(self.log_dir):
            for name in files:
                with open(os.path.join(root, name), errors='replace') as handle:
                    text += handle.read()
        return text

    def destroy(self):
        if self.pg is not None and self.own_pg:
            self.pg.destroy()
        if self.base:
            shutil.rmtree(self.base, ignore_errors=True)
            self.base = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.destroy()
        return False


def stop_data_dir(path, os_user='postgres', bindir=None):
    """Stop a server started in ``path`` (a restored scratch cluster), quietly."""
    from tests.harness.pgcluster import find_bindir
    if not os.path.exists(os.path.join(path, 'postmaster.pid')):
        return
    argv = [os.path.join(bindir or find_bindir(), 'pg_ctl'), '-D', path, '-m', 'immediate', '-w', 'stop']
    if os.geteuid() == 0:
        argv = ['runuser', '-u', os_user, '--'] + argv
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
