"""A primary and a streaming standby from two throwaway clusters (pg_basebackup -R).

    with ReplPair(sync=False) as pair:
        pair.primary.sql('CREATE TABLE t (id int)')
        pair.wait_replayed()
        pair.drill_args()      # primary/standby blocks, data dirs and log files for the drill

The primary has wal_log_hints on (pg_rewind), wal_keep_size and
synchronous_commit on; ``sync=True`` sets synchronous_standby_names '*'.  The
standby is a pg_basebackup -R copy with its own socket directory and port.
Both are removed on exit, whatever state a drill left them in.
"""

import os
import time

from tests.harness.pgcluster import PgCluster

REPLICATION_SETTINGS = {
    'wal_level': 'replica', 'wal_log_hints': 'on', 'full_page_writes': 'on', 'wal_keep_size': '256MB', 'max_wal_senders': 5,
    'hot_standby': 'on', 'synchronous_commit': 'on', 'wal_receiver_status_interval': '1s',
    'wal_retrieve_retry_interval': '200ms',
}


class ReplPair(object):
    def __init__(self, sync=False, slot=None):
        self.sync = sync
        self.slot = slot
        settings = dict(REPLICATION_SETTINGS, cluster_name='drill_primary')
        if sync:
            settings['synchronous_standby_names'] = '*'
        self.primary = PgCluster(settings=settings)
        self.standby = PgCluster()

    def start(self):
        self.primary.start()
        if self.slot:
            self.primary.sql("SELECT pg_create_physical_replication_slot(%s)", (self.slot,))
        sb = self.standby
        import tempfile
        sb.base = tempfile.mkdtemp(prefix='dbdevops-pg-')
        os.chmod(sb.base, 0o755)
        sb.chown(sb.base)
        os.mkdir(sb.socket_dir, 0o755)
        sb.chown(sb.socket_dir)
        argv = [sb.bin('pg_basebackup'), '-D', sb.datadir, '-h', self.primary.socket_dir,
                '-p', str(self.primary.port), '-U', 'postgres', '-R', '-X', 'stream', '-c', 'fast']
        if self.slot:
            argv += ['-S', self.slot]
        sb.run_as_owner(argv)
        with open(os.path.join(sb.datadir, 'postgresql.auto.conf'), 'a') as f:
            f.write("unix_socket_directories = '%s'\ncluster_name = 'drill_standby'\n" % sb.socket_dir)
        sb.start()
        self.wait_streaming()
        return self

    def wait_streaming(self, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rows = self.standby.sql("SELECT status FROM pg_stat_wal_receiver")
            if rows and rows[0][0] == 'streaming':
                return
            time.sleep(0.1)
        raise AssertionError('the standby does not stream:\n%s' % self.standby.read_log()[-2000:])

    def wait_replayed(self, timeout=30):
        lsn = self.primary.sql('SELECT pg_current_wal_lsn()::text')[0][0]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.standby.sql('SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn', (lsn,))[0][0]:
                return
            time.sleep(0.05)
        raise AssertionError('the standby did not replay up to %s' % lsn)

    def block(self, cluster, tcp=False):
        return cluster.conn_params(password=True if tcp else None)

    def drill_args(self, tcp=False):
        """Options of the failover drill for this pair (connection blocks, data dirs, log files)."""
        return dict(primary=self.block(self.primary, tcp), standby=self.block(self.standby, tcp),
                    primary_data_dir=self.primary.datadir, standby_data_dir=self.standby.datadir,
                    primary_log_file=self.primary.logfile, standby_log_file=self.standby.logfile)

    def in_recovery(self, cluster):
        return cluster.sql('SELECT pg_is_in_recovery()')[0][0]

    def destroy(self):
        for cluster in (self.standby, self.primary):
            # a drill may have started or stopped a server behind the harness's back
            cluster.running = True
            try:
                cluster.destroy()
            except Exception:  # noqa: BLE001 - teardown goes on
                pass

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.destroy()
            raise

    def __exit__(self, *exc):
        self.destroy()
        return False
