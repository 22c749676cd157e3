# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Take a pgBackRest backup now, only when WAL archiving works.

A backup whose WAL never reaches the repository cannot be restored, so
before ``pgbackrest backup`` the engine reads ``pg_stat_archiver`` (refusing
when the last archive attempt failed or archive_mode is off) and runs
``pgbackrest check`` with a short ``--archive-timeout`` (a broken
archive_command would otherwise make it wait 60 s), unless pg_stat_archiver
already shows this stanza's archive-push at work (``archive_check: auto``).  After the backup the
new backup is read back from ``pgbackrest info``.

``PhysicalBackupEngine(conn_params, options)``: ``plan()`` reads the archiver
and the stanza (check mode stops there: ``check`` switches WAL), ``apply()``
runs check and backup.  No Ansible imports.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import shlex
import time

from ansible_collections.dbdevops.postgresql.plugins.module_utils._contract import Plan, finish
from ansible_collections.dbdevops.postgresql.plugins.module_utils.connection import connect
from ansible_collections.dbdevops.postgresql.plugins.module_utils.errors import DbDevopsError
from ansible_collections.dbdevops.postgresql.plugins.module_utils.pitr import info as pitr_info
from ansible_collections.dbdevops.postgresql.plugins.module_utils.pitr.tool import PgBackRest, PgBackRestError


class ArchivingError(DbDevopsError):
    """Archiving does not work: a backup now could not be restored."""


class PhysicalBackupEngine(object):
    def __init__(self, conn_params, options):
        self.params = conn_params
        self.options = options
        self.tool = PgBackRest(options)

    def server_args(self):
        """--pg1-socket-path / --pg1-port from the connection options when the config file names none
        (pgBackRest's defaults are /var/run/postgresql and 5432)."""
        settings = self.tool.settings()
        args = []
        if 'pg1-socket-path' not in settings and self.params.host.startswith('/'):
            args.append('--pg1-socket-path=%s' % self.params.host)
        if 'pg1-port' not in settings and self.params.login_port != 5432:
            args.append('--pg1-port=%d' % self.params.login_port)
        return args

    def backup_args(self):
        args = ['--type=%s' % self.options.type] + self.server_args()
        if self.options.start_fast:
            args.append('--start-fast')
        return args

    def plan(self):
        archiver = pitr_info.read_archiver(self.params)
        refuse_unless_archiving(archiver, self.tool.stanza)
        entry, _backups = pitr_info.read_stanza(self.tool)
        values = dict(backup=None, archiver=archiver, archive_check='skipped',
                      command=self.tool.display(self.tool.argv('backup', *self.backup_args())),
                      duration_seconds=0.0)
        return Plan(True, values, work=dict(known=set(b.get('label') for b in entry.get('backup') or [])))

    def archiver_proves_archiving(self, archiver):
        """Whether pg_stat_archiver already shows this stanza's archiving at work: archive_command is
        ``pgbackrest --config=<this config> --stanza=<this stanza> archive-push``, it has archived since the
        statistics were reset and has not failed since.  Then ``pgbackrest check`` (a WAL switch and a wait,
        about a second) proves nothing more: the backup itself still waits until its own WAL is archived."""
        if self.options.archive_check != 'auto' or archiver.get('status') != 'ok':
            return False
        try:
            conn = connect(self.params, autocommit=True, application_name='dbdevops-pitr')
            try:
                with conn.cursor() as cur:
                    cur.execute("SELECT current_setting('archive_command')")
                    command = cur.fetchone()[0] or ''
            finally:
                conn.close()
            words = shlex.split(command)
        except Exception:  # noqa: BLE001 - archive_command unreadable (privileges) or unparsable: run the check
            return False
        return ('archive-push' in words and '--stanza=%s' % self.tool.stanza in words
                and '--config=%s' % self.tool.config in words)

    def apply(self, plan):
        values = dict(plan.values)
        if self.archiver_proves_archiving(values['archiver']):
            values['archive_check'] = 'archiver'
            return self._backup(plan, values)
        timeout = max(1, int(self.options.archive_check_timeout))
        try:
            self.tool.run('check', '--archive-timeout=%d' % timeout, *self.server_args(), timeout=timeout + 120)
        except PgBackRestError as exc:
            archiver = _archiver_now(self.params, values['archiver'])
            raise ArchivingError(
                'refusing to back up stanza %s: WAL archiving does not work, so the backup could not be restored '
                '(%s). Fix archive_command, then retry; pg_stat_archiver: %d failed, last failed WAL %s.'
                % (self.tool.stanza, exc, archiver.get('failed_count') or 0, archiver.get('last_failed_wal')),
                archiver=archiver, **exc.details)
        values['archive_check'] = 'passed'
        return self._backup(plan, values)

    def _backup(self, plan, values):
        t0 = time.monotonic()
        self.tool.run('backup', *self.backup_args())
        values['duration_seconds'] = round(time.monotonic() - t0, 3)
        entry, backups = pitr_info.read_stanza(self.tool)
        new = [b for b in backups if b['label'] not in plan.work['known']]
        if not new:
            raise DbDevopsError('pgbackrest backup of stanza %s exited 0 but pgbackrest info shows no new backup'
                                % self.tool.stanza)
        values['backup'] = pitr_info.public_backup(new[-1])
        return finish(values, changed=True)


def refuse_unless_archiving(archiver, stanza):
    if archiver['status'] == 'disabled':
        raise ArchivingError('refusing to back up stanza %s: archive_mode is off, so no WAL reaches the repository '
                             'and the backup could not be restored; set archive_mode = on (restart needed)'
                             % stanza, archiver=archiver)
    if archiver['status'] == 'failing':
        raise ArchivingError('refusing to back up stanza %s: WAL archiving fails (pg_stat_archiver: %d failures, '
                             'last failed WAL %s at %s, last archived %s), so the backup could not be restored; '
                             'fix archive_command (see the server log) and retry'
                             % (stanza, archiver['failed_count'], archiver['last_failed_wal'],
                                archiver['last_failed_time'], archiver['last_archived_wal']), archiver=archiver)


def _archiver_now(params, fallback):
    try:
        return pitr_info.read_archiver(params)
    except DbDevopsError:
        return fallback
