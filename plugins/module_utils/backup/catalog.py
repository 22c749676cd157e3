# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What is under a backup root: status of each backup, verify, retention.

Status of a backup folder:
  complete    manifest present and unedited, every listed file present with
              its size
  verified    complete, and (verify requested) every SHA-256 and the archive's
              table of contents check out
  corrupt     manifest unreadable or edited (its ``manifest_sha256`` differs),
              a file missing, a size or checksum differs, or the archive no
              longer reads back
  incomplete  a backup folder (named like one, ``<UTC start>-<database>``)
              with no manifest: it was never finished or its manifest was
              deleted; it cannot be restored
Only complete and verified backups are good: restore picks, and retention
counts, nothing else.  Folders named ``.partial-*`` are backups still being
written or interrupted; they are never counted and are listed separately.

``BackupInfoEngine`` is the ``backup_info`` module: read-only, so its plan is
its answer.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import dataclasses
import hashlib
import json
import os
import re
import shutil

from ansible_collections.dbdevops.postgresql.plugins.module_utils import _pgclient
from ansible_collections.dbdevops.postgresql.plugins.module_utils._contract import Plan
from ansible_collections.dbdevops.postgresql.plugins.module_utils._options import option
from ansible_collections.dbdevops.postgresql.plugins.module_utils.backup import _tools
from ansible_collections.dbdevops.postgresql.plugins.module_utils.backup._tools import BackupError

GOOD = ('complete', 'verified')
MANIFEST_SHA256 = 'manifest_sha256'
WARNINGS = '_warnings'
# <UTC start>-<database>[.N]: the folder name new_backup_id gives a backup
BACKUP_ID = re.compile(r'^(?P<stamp>\d{8}T\d{6}Z)-(?P<rest>.+)$')
UNPROTECTED = ('manifest.json carries no manifest_sha256 (written before this check existed): '
               'edits to it cannot be detected')
RETENTION_KEYS = ('keep_last', 'keep_days', 'keep_daily', 'keep_weekly', 'keep_monthly')


class RetentionPolicy(object):
    """Keep a backup when ANY rule keeps it (restic-style ``--keep-*`` union).

    keep_last     the newest N good backups of each database
    keep_days     good backups younger than N days
    keep_daily/weekly/monthly  the newest good backup of each of the last N
                  days / ISO weeks / months that have one
    With no rule set, nothing is deleted.  The newest good backup of each
    database is always kept.  Corrupt and partial backups never count, and
    ``apply_retention`` verifies the backups it keeps before it deletes any.
    """

    def __init__(self, keep_last=None, keep_days=None, keep_daily=None, keep_weekly=None,
                 keep_monthly=None):
        self.keep_last = keep_last
        self.keep_days = keep_days
        self.keep_daily = keep_daily
        self.keep_weekly = keep_weekly
        self.keep_monthly = keep_monthly
        for name in ('keep_last', 'keep_days', 'keep_daily', 'keep_weekly', 'keep_monthly'):
            value = getattr(self, name)
            if value is not None and int(value) < 0:
                raise BackupError('retention %s must be 0 or more, not %s' % (name, value))

    def active(self):
        return any(v is not None for v in (self.keep_last, self.keep_days, self.keep_daily,
                                           self.keep_weekly, self.keep_monthly))

    def as_dict(self):
        return dict(keep_last=self.keep_last, keep_days=self.keep_days, keep_daily=self.keep_daily,
                    keep_weekly=self.keep_weekly, keep_monthly=self.keep_monthly)


def retention_policy(options):
    """The RetentionPolicy of options carrying ``retention_keep_last``... (BackupOptions)."""
    return RetentionPolicy(**dict((key, getattr(options, 'retention_' + key)) for key in RETENTION_KEYS))


def _pg_restore(verify, pg_restore):
    """The pg_restore to read tables of contents with when verifying (None: no TOC check)."""
    if verify and pg_restore is None:
        try:
            return _pgclient.find_tool('pg_restore')
        except _pgclient.ClientError:
            return None
    return pg_restore


def read_manifest(folder):
    path = os.path.join(folder, _tools.MANIFEST)
    with open(path, 'rb') as f:
        manifest = json.loads(f.read().decode('utf-8'))
    if not isinstance(manifest, dict) or 'files' not in manifest or 'id' not in manifest:
        raise ValueError('not a dbdevops backup manifest')
    return manifest


def _canonical(manifest):
    """A manifest's canonical JSON text, without ``manifest_sha256`` and keys starting with ``_``."""
    body = dict((k, v) for k, v in manifest.items() if k != MANIFEST_SHA256 and not k.startswith('_'))
    return json.dumps(body, sort_keys=True, separators=(',', ':'), ensure_ascii=True)


def manifest_digest(manifest):
    """SHA-256 of a manifest's canonical JSON, leaving out ``manifest_sha256`` itself.

    Keys starting with ``_`` are left out too: they are never written to disk
    (callers may keep notes in the dict they hold, e.g. ``find_backup``'s
    ``_warnings``).
    """
    return hashlib.sha256(_canonical(manifest).encode('ascii')).hexdigest()


def seal_manifest(manifest):
    """The manifest with its ``manifest_sha256`` set."""
    manifest[MANIFEST_SHA256] = manifest_digest(manifest)
    return manifest


def sealed_manifest_bytes(manifest):
    """What the engine writes as manifest.json: the canonical JSON with ``manifest_sha256``
    first, encoded once (sets ``manifest_sha256`` in ``manifest`` too).

    ``python -m json.tool manifest.json`` shows it indented.
    """
    text = _canonical(manifest)
    digest = hashlib.sha256(text.encode('ascii')).hexdigest()
    manifest[MANIFEST_SHA256] = digest
    if text == '{}':
        return ('{"%s":"%s"}' % (MANIFEST_SHA256, digest)).encode('ascii')
    return ('{"%s":"%s",%s' % (MANIFEST_SHA256, digest, text[1:])).encode('ascii')


def manifest_notes(manifest):
    """Warnings about a readable manifest that do not make the backup corrupt."""
    return [] if manifest.get(MANIFEST_SHA256) else [UNPROTECTED]


def check_backup(folder, manifest, verify=False, pg_restore=None):
    """Problems found in one backup (empty list = good). ``verify`` re-hashes and reads the TOC.

    The manifest's own checksum (``manifest_sha256``) is always checked: a
    hand-edited manifest makes the backup corrupt.  A manifest without one
    (older backups) is not a problem here; see ``manifest_notes``.
    """
    problems = []
    sealed = manifest.get(MANIFEST_SHA256)
    if sealed and sealed != manifest_digest(manifest):
        problems.append('%s: edited or damaged after the backup was written (its content no longer '
                        'matches manifest_sha256); do not trust this backup, take a new one'
                        % _tools.MANIFEST)
    for rel, info in sorted(manifest.get('files', {}).items()):
        path = os.path.join(folder, rel)
        if not os.path.isfile(path):
            problems.append('%s: missing' % rel)
            continue
        size = os.path.getsize(path)
        if size != info.get('bytes'):
            problems.append('%s: size %d, manifest says %s' % (rel, size, info.get('bytes')))
            continue
        if verify:
            sha, _size = _tools.sha256_file(path)
            if sha != info.get('sha256'):
                problems.append('%s: SHA-256 mismatch (file changed or damaged: %s, manifest %s)'
                                % (rel, sha, info.get('sha256')))
    if verify and not problems and pg_restore and manifest.get('archive'):
        try:
            entries = len(_pgclient.read_toc(pg_restore, os.path.join(folder, manifest['archive'])))
        except _pgclient.ClientError as exc:
            problems.append('%s: table of contents unreadable (%s)'
                            % (manifest['archive'], _pgclient.first_error(exc.details.get('stderr', ''))))
        else:
            if manifest.get('toc_entries') is not None and entries != manifest['toc_entries']:
                problems.append('%s: %d table-of-contents entries, manifest says %d'
                                % (manifest['archive'], entries, manifest['toc_entries']))
    return problems


def _stamp(backup_id):
    """The UTC start a backup id carries, as an ISO text (``None`` for another name)."""
    match = BACKUP_ID.match(backup_id)
    if not match:
        return None
    try:
        return _tools.iso(_tools.parse_compact(match.group('stamp')))
    except ValueError:
        return None


def _of_database(backup_id, database):
    """Whether a backup id (folder name) names ``database`` (for folders without a manifest)."""
    match = BACKUP_ID.match(backup_id)
    if not match:
        return False
    safe = _tools.safe_name(database)
    rest = match.group('rest')
    return rest == safe or re.match(re.escape(safe) + r'\.\d+$', rest) is not None


def _when(entry):
    """Sort key of a backup: the start second and ``.N`` its id carries (new_backup_id), then its times.

    Folders without a manifest have only their id to go by, so the id decides
    first: two backups started in the same second are ``X`` and ``X.2``.
    """
    backup_id = entry['backup_id']
    stamp = _stamp(backup_id)
    suffix = re.search(r'\.(\d+)$', backup_id) if stamp else None
    start = entry.get('start') or ''
    return ((stamp or start or entry.get('end') or '')[:19], int(suffix.group(1)) if suffix else 1,
            start, entry.get('end') or '', backup_id)


def _entry(dest, name, manifest, status, problems, now):
    path = os.path.join(dest, name)
    entry = dict(backup_id=name, path=path, status=status, problems=problems, notes=[])
    if manifest:
        end = _tools.parse_iso(manifest['end'])
        entry.update(database=manifest.get('database'), format=manifest.get('format'),
                     compression=manifest.get('compression'), bytes=manifest.get('bytes'),
                     start=manifest.get('start'), end=manifest.get('end'),
                     duration_ms=manifest.get('duration_ms'),
                     age_seconds=int((now - end).total_seconds()),
                     server_version=manifest.get('server_version'),
                     row_counts_exact=manifest.get('row_counts_exact'),
                     tables=len(manifest.get('tables') or []), notes=manifest_notes(manifest))
    else:
        entry.update(database=None, end=None, start=_stamp(name))
    return entry


def list_backups(dest, verify=False, database=None, pg_restore=None, now=None,
                 with_manifest=False):
    """Backups under ``dest``, newest first, plus the partial folders.

    Returns ``(backups, partial)``; each backup is a dict with backup_id, path,
    status, problems, database, bytes, start, end, age_seconds, ...
    """
    now = now or _tools.utcnow()
    if not os.path.isdir(dest):
        return [], []
    pg_restore = _pg_restore(verify, pg_restore)
    backups, partial = [], []
    for name in sorted(os.listdir(dest)):
        path = os.path.join(dest, name)
        if not os.path.isdir(path):
            continue
        if name.startswith(_tools.PARTIAL_PREFIX):
            match = re.search(r'-(\d+)$', name)
            pid = int(match.group(1)) if match else None
            partial.append(dict(path=path, name=name, pid=pid,
                                running=bool(pid and _tools.pid_alive(pid))))
            continue
        if name.startswith('.'):
            continue
        if not os.path.exists(os.path.join(path, _tools.MANIFEST)):
            if not BACKUP_ID.match(name):
                continue  # not a backup folder at all
            if database is not None and not _of_database(name, database):
                continue
            backups.append(_entry(dest, name, None, 'incomplete', [
                '%s is missing: the backup never finished or its manifest was deleted; it cannot be '
                'restored or verified' % _tools.MANIFEST], now))
            continue
        try:
            manifest = read_manifest(path)
        except (OSError, ValueError) as exc:
            if database is not None and not _of_database(name, database):
                continue
            backups.append(_entry(dest, name, None, 'corrupt',
                                  ['%s unreadable: %s' % (_tools.MANIFEST, exc)], now))
            continue
        if database is not None and manifest.get('database') != database:
            continue
        problems = check_backup(path, manifest, verify=verify, pg_restore=pg_restore)
        status = 'corrupt' if problems else ('verified' if verify else 'complete')
        entry = _entry(dest, name, manifest, status, problems, now)
        if with_manifest:
            entry['manifest'] = manifest
        backups.append(entry)
    backups.sort(key=_when, reverse=True)
    return backups, partial


def _describe(backup):
    return '"%s" (%s: %s)' % (backup['backup_id'], backup['status'], '; '.join(backup['problems']))


def find_backup(dest, backup_id='latest', database=None, verify=True, pg_restore=None, allow_older=False):
    """One good backup by id, or the newest one (of ``database``); returns ``(path, manifest)``.

    ``backup_id='latest'`` looks at every backup of the database, damaged ones
    too (corrupt, or incomplete: a folder named like a backup with no
    manifest).  When the newest of them is damaged:

    - ``allow_older=False`` (the default): raises BackupError naming the
      damaged newest backup, its problems, and the newest good one, so that a
      restore never quietly goes back in time;
    - ``allow_older=True``: returns the newest good backup, and the manifest
      dict carries ``manifest['_warnings']`` (``catalog.WARNINGS``): a list of
      texts saying which newer backups were skipped and why, for the caller to
      surface.  The key is only in memory (``manifest_digest`` ignores keys
      starting with ``_``); pop it before handing the manifest on.

    Nothing found raises BackupError naming ``dest`` (and ``database``).  The
    check done here is the quick one (manifest readable and unedited, every
    file present with its size); ``verify`` and ``pg_restore`` are accepted
    for compatibility: re-hashing is the caller's (restore verifies while
    pg_restore reads).
    """
    if not os.path.isdir(dest):
        raise BackupError('backup root %s does not exist: check src/dest' % dest, dest=dest)
    warnings = []
    if backup_id and backup_id != 'latest':
        path = os.path.join(dest, backup_id)
        if os.path.sep in backup_id or backup_id.startswith('.') or \
                not os.path.isfile(os.path.join(path, _tools.MANIFEST)):
            known = [b['backup_id'] for b in list_backups(dest)[0]]
            if os.path.isdir(path) and not backup_id.startswith('.') and os.path.sep not in backup_id:
                raise BackupError('backup "%s" under %s is incomplete: %s is missing (the backup never '
                                  'finished or its manifest was deleted); choose another backup: %s'
                                  % (backup_id, dest, _tools.MANIFEST, ', '.join(known[:20]) or 'none'),
                                  backup_id=backup_id)
            raise BackupError('backup "%s" not found under %s; available: %s'
                              % (backup_id, dest, ', '.join(known[:20]) or 'none'),
                              backup_id=backup_id)
        try:
            manifest = read_manifest(path)
        except (OSError, ValueError) as exc:
            raise BackupError('backup "%s" is corrupt: manifest.json unreadable (%s)' % (backup_id, exc))
        if database is not None and manifest.get('database') != database:
            raise BackupError('backup "%s" is of database "%s", not "%s"'
                              % (backup_id, manifest.get('database'), database))
    else:
        backups, _partial = list_backups(dest, database=database, with_manifest=True)
        good = [b for b in backups if b['status'] in GOOD]
        of_db = ' of database "%s"' % database if database else ''
        if not good:
            damaged = ''.join('; found %s' % _describe(b) for b in backups[:5])
            raise BackupError('no complete backup%s under %s%s'
                              % (of_db, dest, damaged or ' (the folder holds no backup)'),
                              dest=dest, database=database)
        dbs = sorted(set(b['database'] for b in good))
        if database is None and len(dbs) > 1:
            raise BackupError('backups of several databases are under %s (%s): say which one '
                              'with backup_db (or give backup_id)' % (dest, ', '.join(dbs)))
        newer = backups[:backups.index(good[0])]
        if newer and not allow_older:
            raise BackupError(
                'the newest backup%s under %s is damaged: %s. The newest good backup is "%s" (ended %s); '
                'to restore it, give backup_id: %s (or allow older backups), or repair or remove the '
                'damaged one' % (of_db, dest, '; '.join(_describe(b) for b in newer), good[0]['backup_id'],
                                 good[0]['end'], good[0]['backup_id']),
                damaged=[dict(backup_id=b['backup_id'], status=b['status'], problems=b['problems'])
                         for b in newer], newest_good=good[0]['backup_id'])
        warnings = ['skipped the newer backup %s; using "%s" instead' % (_describe(b), good[0]['backup_id'])
                    for b in newer]
        path, manifest = good[0]['path'], good[0]['manifest']
    problems = check_backup(path, manifest, verify=False)
    if problems:
        raise BackupError('backup "%s" is corrupt: %s' % (manifest['id'], '; '.join(problems)),
                          problems=problems)
    if warnings:
        manifest = dict(manifest)
        manifest[WARNINGS] = warnings
    return path, manifest


# -- retention --------------------------------------------------------------

def plan_retention(backups, policy, now=None):
    """Which backups a policy deletes: a list of {backup_id, database, path, reason}.

    ``backups`` as from list_backups (newest first).  Pure: no I/O.
    """
    now = now or _tools.utcnow()
    if policy is None or not policy.active():
        return []
    by_db = {}
    for b in backups:
        if b.get('status') in GOOD and b.get('end'):
            by_db.setdefault(b.get('database'), []).append(b)
    delete = []
    for db, items in sorted(by_db.items(), key=lambda kv: str(kv[0])):
        items = sorted(items, key=lambda b: (b['end'], b['backup_id']), reverse=True)
        keep = {items[0]['backup_id']: 'newest good backup'}
        if policy.keep_last:
            for b in items[:int(policy.keep_last)]:
                keep.setdefault(b['backup_id'], 'keep_last')
        if policy.keep_days is not None:
            for b in items:
                age_days = (now - _tools.parse_iso(b['end'])).total_seconds() / 86400.0
                if age_days < float(policy.keep_days):
                    keep.setdefault(b['backup_id'], 'keep_days')
        for rule, bucket in (('keep_daily', lambda t: t.strftime('%Y-%m-%d')),
                             ('keep_weekly', lambda t: '%04d-W%02d' % t.isocalendar()[:2]),
                             ('keep_monthly', lambda t: t.strftime('%Y-%m'))):
            limit = getattr(policy, rule)
            if not limit:
                continue
            seen = []
            for b in items:
                key = bucket(_tools.parse_iso(b['end']))
                if key in seen:
                    continue
                seen.append(key)
                if len(seen) > int(limit):
                    break
                keep.setdefault(b['backup_id'], rule)
        for b in items:
            if b['backup_id'] not in keep:
                delete.append(dict(backup_id=b['backup_id'], database=db, path=b['path'],
                                   end=b['end'], reason='outside the retention policy'))
    return delete


def apply_retention(dest, policy, check_mode=False, now=None, extra=None, verify=True, pg_restore=None):
    """Delete what ``plan_retention`` says (nothing in check mode); returns the plan.

    ``extra``: entries to consider as if present (check mode of a backup that
    has not been taken yet).  With ``verify`` (the default), before anything of
    a database is deleted, every backup of it that would be kept is verified
    (SHA-256 of every file and the archive's table of contents): a backup that
    fails is corrupt, does not count, and the plan is made again, so retention
    never deletes a good backup on the strength of a damaged one.  Corrupt
    backups are never deleted (they are left for a person to look at).  Stale
    ``.partial-*`` folders of dead processes are removed too and reported as
    ``partial_removed``.
    """
    backups, partial = list_backups(dest, now=now, with_manifest=True)
    pg_restore = _pg_restore(verify, pg_restore)
    corrupt = []
    while True:
        planned = plan_retention(list(extra or []) + backups, policy, now=now)
        planned = [p for p in planned if not p.get('virtual')]
        if not verify or not planned:
            break
        databases = set(p['database'] for p in planned)
        leaving = set(p['backup_id'] for p in planned)
        unchecked = [b for b in backups if b.get('database') in databases and b['status'] == 'complete'
                     and b['backup_id'] not in leaving]
        if not unchecked:
            break
        for b in unchecked:
            problems = check_backup(b['path'], b['manifest'], verify=True, pg_restore=pg_restore)
            b['status'] = 'corrupt' if problems else 'verified'
            b['problems'] = problems
            if problems:
                corrupt.append(dict(backup_id=b['backup_id'], database=b.get('database'), problems=problems))
    stale = [p for p in partial if not p['running']]
    if not check_mode:
        for item in planned:
            _remove(item['path'])
        for item in stale:
            _remove(item['path'])
    kept_verified = sorted(b['backup_id'] for b in backups if b['status'] == 'verified')
    return dict(deleted=planned, partial_removed=[p['name'] for p in stale], verified=kept_verified,
                corrupt=corrupt)


def _remove(path):
    try:
        shutil.rmtree(path)
    except OSError as exc:
        raise BackupError('retention could not delete %s: %s' % (path, exc.strerror or exc))


# -- backup_info ------------------------------------------------------------

@dataclasses.dataclass
class BackupInfoOptions(object):
    """The ``backup_info`` module's options."""

    dest: str = option(type='path', required=True)
    database: str = option()
    verify: bool = option(False, type='bool')
    fail_on_corrupt: bool = option(False, type='bool')
    allow_empty: bool = option(False, type='bool')
    pg_bin_dir: str = option(type='path')


class BackupInfoEngine(object):
    """Backups under a root with status, sizes and ages; never changes anything.

    ``params`` is unused (no database connection) and may be None.  With
    ``fail_on_corrupt`` the plan itself fails, so check mode fails alike.
    Nothing found fails too: ``dest`` missing always, no backup (of
    ``database``) unless ``allow_empty``; a drill or a monitoring check that
    looks in the wrong place must not pass.
    """

    def __init__(self, params, options):
        self.params = params
        self.options = options

    def plan(self):
        opts = self.options
        if not os.path.isdir(opts.dest):
            raise BackupError('backup folder %s does not exist: check dest (a typo, or the backup volume '
                              'is not mounted)' % opts.dest, dest=opts.dest)
        pg_restore = os.path.join(opts.pg_bin_dir, 'pg_restore') if opts.pg_bin_dir else None
        backups, partial = list_backups(opts.dest, verify=opts.verify, database=opts.database,
                                        pg_restore=pg_restore)
        latest = {}
        for b in backups:
            if b['status'] in GOOD and b.get('database') not in latest:
                latest[b['database']] = b['backup_id']
        values = dict(backups=backups, partial=partial, count=len(backups),
                      corrupt=[b['backup_id'] for b in backups if b['status'] == 'corrupt'],
                      incomplete=[b['backup_id'] for b in backups if b['status'] == 'incomplete'],
                      total_bytes=sum(b.get('bytes') or 0 for b in backups), latest=latest)
        if not backups and not opts.allow_empty:
            raise BackupError(self._nothing_found(), **values)
        if opts.fail_on_corrupt and values['corrupt']:
            damaged = ['%s (%s)' % (b['backup_id'], '; '.join(b['problems']))
                       for b in backups if b['status'] == 'corrupt']
            raise BackupError('corrupt backups under %s: %s' % (opts.dest, '; '.join(damaged)), **values)
        return Plan(False, values)

    def _nothing_found(self):
        opts = self.options
        if opts.database is None:
            return ('no backup found under %s: set allow_empty: true when an empty backup folder is '
                    'expected' % opts.dest)
        others = sorted(set(b['database'] for b in list_backups(opts.dest)[0] if b.get('database')))
        return ('no backup of database "%s" found under %s (it holds backups of: %s): set allow_empty: '
                'true when that is expected' % (opts.database, opts.dest, ', '.join(others) or 'none'))

    def apply(self, plan):
        return plan.result()
