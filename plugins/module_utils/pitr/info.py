# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a pgBackRest stanza holds and whether archiving works, read-only.

- backups, from ``pgbackrest info --output=json``, oldest first;
- the WAL archive of the current database (``archive[].min/max``);
- the recoverable window: ``earliest`` is the stop time of the oldest backup
  (a restore needs a whole backup before its target), ``latest`` is the time
  the newest archived WAL segment reached the repository (its file time,
  ``pgbackrest repo-ls``), ``latest_lsn`` the end of that segment.  A commit
  after the segment was closed is not archived, so the true bound can be
  earlier by the archiving delay;
- ``pg_stat_archiver`` of the live server (``archiver``);
- ``pgbackrest verify`` on request, naming the files that fail.

``PhysicalBackupInfoEngine(conn_params, options)``: ``plan()`` reads,
``apply()`` returns the same answer.  No Ansible imports.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.dbdevops.postgresql.plugins.module_utils._contract import Plan
from ansible_collections.dbdevops.postgresql.plugins.module_utils.connection import connect
from ansible_collections.dbdevops.postgresql.plugins.module_utils.errors import DbDevopsError
from ansible_collections.dbdevops.postgresql.plugins.module_utils.pitr.tool import PgBackRest, iso

WAL_SEGMENT_BYTES = 16 * 1024 * 1024

ARCHIVER_SQL = """
SELECT archived_count, last_archived_wal, last_archived_time, failed_count, last_failed_wal,
       last_failed_time, current_setting('archive_mode'),
       last_failed_time IS NOT NULL AND (last_archived_time IS NULL OR last_failed_time > last_archived_time)
  FROM pg_stat_archiver
"""
ARCHIVER_KEYS = ('archived_count', 'last_archived_wal', 'last_archived_time', 'failed_count', 'last_failed_wal',
                 'last_failed_time', 'archive_mode')

VERIFY_FILE = re.compile(r"P\d+\s+(?:INFO|WARN|ERROR|DETAIL): (?:((?:invalid|missing)[a-z ]*?) '([^']+)'"
                         r"|(invalid result|missing) ([^\s:']+):)")


def lsn_int(text):
    high, low = text.split('/')
    return (int(high, 16) << 32) + int(low, 16)


def lsn_text(value):
    return '%X/%X' % (value >> 32, value & 0xFFFFFFFF)


def segment_end_lsn(wal_name, segment_bytes=WAL_SEGMENT_BYTES):
    """The LSN just after the WAL segment ``wal_name`` (TTTTTTTTXXXXXXXXYYYYYYYY)."""
    log, seg = int(wal_name[8:16], 16), int(wal_name[16:24], 16)
    per_log = 0x100000000 // segment_bytes
    return lsn_text((log * per_log + seg + 1) * segment_bytes)


def backup_summary(entry):
    """One backup of the info JSON in the collection's words."""
    info = entry.get('info') or {}
    repo = info.get('repository') or {}
    stamp = entry.get('timestamp') or {}
    archive = entry.get('archive') or {}
    lsn = entry.get('lsn') or {}
    start, stop = stamp.get('start'), stamp.get('stop')
    return dict(label=entry.get('label'), type=entry.get('type'), prior=entry.get('prior'),
                database_bytes=info.get('size'), delta_bytes=info.get('delta'),
                repo_bytes=repo.get('size'), repo_delta_bytes=repo.get('delta'),
                wal_start=archive.get('start'), wal_stop=archive.get('stop'),
                lsn_start=lsn.get('start'), lsn_stop=lsn.get('stop'),
                start_time=iso(start), stop_time=iso(stop), start_epoch=start, stop_epoch=stop,
                duration_seconds=(stop - start) if start is not None and stop is not None else None,
                error=bool(entry.get('error')))


def public_backup(backup):
    return dict((k, v) for k, v in backup.items() if not k.endswith('_epoch'))


def current_archive(entry):
    """The archive entry of the stanza's current database (the last ``db`` entry), else {}."""
    dbs = entry.get('db') or []
    current = dbs[-1].get('id') if dbs else None
    for archive in entry.get('archive') or []:
        if (archive.get('database') or {}).get('id') == current:
            return archive
    return {}


def read_stanza(tool, allow_missing=False):
    """(entry, backups) of the stanza; a missing stanza raises unless ``allow_missing``."""
    entry = tool.info()
    status = (entry or {}).get('status') or {}
    if entry is None or status.get('code') in (1, 3, 4):
        if allow_missing:
            return entry, []
        raise DbDevopsError('pgBackRest has no stanza %s in the repository of %s (%s): create it with '
                            '"pgbackrest --config=%s --stanza=%s stanza-create" (the pitr role does)'
                            % (tool.stanza, tool.config, status.get('message') or 'not found', tool.config,
                               tool.stanza), status=status)
    dbs = entry.get('db') or []
    current = dbs[-1].get('id') if dbs else None
    backups = [backup_summary(b) for b in entry.get('backup') or []
               if current is None or (b.get('database') or {}).get('id') == current]
    backups.sort(key=lambda b: (b['stop_epoch'] or 0, b['label']))
    return entry, backups


def latest_archived(tool, archive):
    """(epoch, wal name) of the newest archived segment: its file time in the repository."""
    wal = archive.get('max')
    if not wal or not archive.get('id'):
        return None, None
    listing = tool.json('repo-ls', 'archive/%s/%s/%s' % (tool.stanza, archive['id'], wal[:16])) or {}
    times = [meta.get('time') for name, meta in listing.items()
             if name.startswith(wal + '-') and meta.get('type') == 'file']
    return (max(times) if times else None), wal


def window(tool, entry, backups):
    """The recoverable window: earliest/latest (ISO), their epochs, latest_lsn, and how it is computed."""
    archive = current_archive(entry or {})
    earliest = backups[0]['stop_epoch'] if backups else None
    latest, wal = latest_archived(tool, archive) if backups else (None, archive.get('max'))
    return dict(earliest=iso(earliest), latest=iso(latest), earliest_epoch=earliest, latest_epoch=latest,
                earliest_lsn=backups[0]['lsn_stop'] if backups else None,
                latest_lsn=segment_end_lsn(wal) if wal else None, latest_wal=wal,
                how='earliest: stop time of the oldest backup; latest: time the newest archived WAL segment '
                    '(%s) reached the repository' % (wal or 'none'))


def public_window(win):
    return dict((k, v) for k, v in win.items() if not k.endswith('_epoch'))


def read_archiver(params):
    """pg_stat_archiver with a status: ok, failing, idle, disabled (raises PgConnectionError)."""
    conn = connect(params, autocommit=True, application_name='dbdevops-pitr')
    try:
        with conn.cursor() as cur:
            cur.execute(ARCHIVER_SQL)
            row = cur.fetchone()
    finally:
        conn.close()
    out = dict(zip(ARCHIVER_KEYS, row[:7]))
    for key in ('last_archived_time', 'last_failed_time'):
        if out[key] is not None:
            out[key] = out[key].astimezone(_utc()).strftime('%Y-%m-%dT%H:%M:%S.%fZ')
    if out['archive_mode'] == 'off':
        status = 'disabled'
    elif row[7]:
        status = 'failing'
    elif out['archived_count']:
        status = 'ok'
    else:
        status = 'idle'
    out['status'] = status
    out['error'] = None
    return out


def _utc():
    import datetime
    return datetime.timezone.utc


def verify(tool):
    """pgbackrest verify: ok, corrupt_files (repository paths), output (problem lines), checked counts."""
    done = tool.run('verify', '--output=text', '--verbose', '--log-level-console=info', check=False)
    if done.returncode != 0:
        raise tool.error('verify', done)
    text = done.stdout + '\n' + done.stderr
    corrupt, problems = [], []
    for line in text.splitlines():
        match = VERIFY_FILE.search(line)
        if match:
            path = match.group(2) or match.group(4)
            if re.match(r'^\d{8}-\d{6}[FDI]', path):
                path = 'backup/%s/%s' % (tool.stanza, path)
            elif re.match(r'^\d+-\d+/', path):
                path = 'archive/%s/%s' % (tool.stanza, path)
            if path not in corrupt:
                corrupt.append(path)
            problems.append(line.split(': ', 1)[-1].strip())
    status = re.search(r'^status: (\S+)', done.stdout, re.M)
    lines = []
    for line in done.stdout.splitlines():
        line = line.split(' INFO: ', 1)[-1].strip()
        if line and line not in lines:
            lines.append(line)
    checked = sum(int(n) for n in re.findall(r'total (?:files|WAL) checked: (\d+)', '\n'.join(lines)))
    ok = bool(status and status.group(1) == 'ok' and checked > 0 and not corrupt)
    summary = [ln for ln in lines
               if re.search(r'status: |checksum invalid: [1-9]|missing: [1-9]|other: [1-9]|size invalid: [1-9]',
                            ln)]
    return dict(ok=ok, corrupt_files=corrupt, checked=checked, output=problems + summary)


class PhysicalBackupInfoEngine(object):
    """Backups, WAL archive, window, archiver and (optionally) verify of one stanza."""

    def __init__(self, conn_params, options):
        self.params = conn_params
        self.options = options
        self.tool = PgBackRest(options)

    def read(self):
        warnings = []
        entry, backups = read_stanza(self.tool, allow_missing=self.options.allow_empty)
        status = (entry or {}).get('status') or {'code': None, 'message': 'no stanza'}
        if not backups and not self.options.allow_empty:
            raise DbDevopsError('stanza %s has no backup (%s): take one with dbdevops.postgresql.physical_backup, '
                                'or set allow_empty' % (self.tool.stanza, status.get('message')),
                                status=dict(code=status.get('code'), message=status.get('message')))
        archive = current_archive(entry or {})
        win = window(self.tool, entry, backups)
        if self.options.archiver:
            try:
                archiver = read_archiver(self.params)
            except DbDevopsError as exc:
                archiver = dict((k, None) for k in ARCHIVER_KEYS)
                archiver.update(status='unreachable', error=str(exc))
                warnings.append('pg_stat_archiver not read: %s' % exc)
        else:
            archiver = dict((k, None) for k in ARCHIVER_KEYS)
            archiver.update(status='not_read', error=None)
        verified = verify(self.tool) if self.options.verify and entry is not None else None
        problems = []
        if not backups:
            problems.append('no backup in stanza %s' % self.tool.stanza)
        if status.get('code') not in (0, None) or (entry is None):
            problems.append('repository status: %s' % status.get('message'))
        if archiver['status'] == 'failing':
            problems.append('WAL archiving fails: %d failures, last %s at %s' % (
                archiver['failed_count'], archiver['last_failed_wal'], archiver['last_failed_time']))
        elif archiver['status'] == 'disabled':
            problems.append('archive_mode is off: nothing is archived')
        if verified is not None and not verified['ok']:
            found = ', '.join(verified['corrupt_files']) or '; '.join(verified['output']) or 'not ok'
            problems.append('pgbackrest verify: %s' % found)
        if any(b['error'] for b in backups):
            problems.append('backups with page checksum errors: %s'
                            % ', '.join(b['label'] for b in backups if b['error']))
        values = dict(stanza=self.tool.stanza,
                      status=dict(code=status.get('code'), message=status.get('message')),
                      backups=[public_backup(b) for b in backups], backup_count=len(backups),
                      wal_archive=dict(archive_id=archive.get('id'), min=archive.get('min'), max=archive.get('max')),
                      recoverable=public_window(win), archiver=archiver, verify=verified,
                      ok=not problems, problems=problems)
        return Plan(False, values, warnings=warnings)

    def plan(self):
        return self.read()

    def apply(self, plan):
        return plan.result()
