"""Retention: expiring backups never leaves a kept backup without the WAL it needs.

A stanza with ``repo1-retention-full=2``: full, diff, full, full. The third full
backup expires the first full and the diff built on it, and the WAL only they
needed. Every kept backup must still have its WAL from start to stop in the
archive, ``pgbackrest verify`` must find nothing wrong, the recoverable window
must start at the oldest kept backup, and a restore to the earliest
recoverable time (the oldest kept backup plus the WAL after it) must work.
"""

import calendar
import os
import time

import pytest

from ansible_collections.dbdevops.postgresql.plugins.module_utils.errors import DbDevopsError
from ansible_collections.dbdevops.postgresql.plugins.module_utils.pitr import options as o
from ansible_collections.dbdevops.postgresql.plugins.module_utils.pitr.backup import PhysicalBackupEngine
from ansible_collections.dbdevops.postgresql.plugins.module_utils.pitr.info import PhysicalBackupInfoEngine
from ansible_collections.dbdevops.postgresql.plugins.module_utils.pitr.restore import PitrRestoreEngine
from tests.harness.pitr import PitrLab, stop_data_dir
from tests.unit.plugins.module_utils.pitr.test_pitr_engine import restored_sql, run


@pytest.fixture(scope='module')
def lab():
    with PitrLab(cipher=False) as lab:
        lab.write_config(**{'repo1-retention-full': '2'})
        lab.pg.sql('CREATE TABLE ticks (n int PRIMARY KEY, at timestamptz DEFAULT clock_timestamp())')
        yield lab


def _tick(lab, n):
    lab.pg.sql('INSERT INTO ticks (n) VALUES (%s)', (n,))
    lab.switch_wal()


def test_expired_backups_leave_every_kept_backup_with_its_wal(lab):
    labels = []
    for n, kind in enumerate(('full', 'diff', 'full', 'full'), 1):
        time.sleep(2 if n > 1 else 0)       # the next row is well after the previous backup's stop time
        _tick(lab, n)
        labels.append(run(PhysicalBackupEngine, lab, o.PhysicalBackupOptions, type=kind)['backup']['label'])
    _tick(lab, 99)

    info = run(PhysicalBackupInfoEngine, lab, o.PhysicalBackupInfoOptions, verify=True)
    kept = info['backups']
    assert [b['label'] for b in kept] == labels[2:], 'retention-full=2 keeps exactly the last two full backups'
    assert info['ok'], info['problems']
    assert not info.get('verify', {}).get('problems'), info.get('verify')
    archive = info['wal_archive']
    for b in kept:
        start, stop = labels_wal(info, b)
        assert archive['min'] <= start <= stop <= archive['max'], (b['label'], archive)
        # the segments themselves are in the repository (not only the range in the manifest)
        assert _segments_in_repo(lab, start, stop), (b['label'], start, stop)
    assert info['recoverable']['earliest'] == kept[0]['stop_time']

    # a time before the oldest kept backup is now outside the window, refused before anything is touched
    early = os.path.join(lab.base, 'early')
    with pytest.raises(DbDevopsError) as refused:
        run(PitrRestoreEngine, lab, o.PitrRestoreOptions, target_time='2000-01-01 00:00:00+00',
            target_data_dir=early)
    assert 'window' in str(refused.value) and not os.path.exists(early)

    # the earliest recoverable moment restores: the oldest kept backup and the WAL after it are all there
    scratch = os.path.join(lab.base, 'scratch')     # a folder the postgres user can reach
    earliest = info['recoverable']['earliest']
    try:
        done = run(PitrRestoreEngine, lab, o.PitrRestoreOptions, target_time=_plus_one_second(earliest),
                   target_data_dir=scratch)
        assert done['backup_set'] == kept[0]['label']
        rows = [r[0] for r in restored_sql(done, 'SELECT n FROM ticks ORDER BY n')]
        assert rows == [1, 2, 3], rows          # what was committed before the oldest kept backup ended
    finally:
        stop_data_dir(scratch)


def labels_wal(info, backup):
    return backup['wal_start'], backup['wal_stop']


def _segments_in_repo(lab, start, stop):
    """Every WAL segment from start to stop (same timeline) is a file in the repository's archive."""
    found = set()
    for _root, _dirs, files in os.walk(os.path.join(lab.repo, 'archive')):
        found.update(name[:24] for name in files if len(name) >= 24 and name[:24].isalnum())

    def segno(name):                    # TTTTTTTT LLLLLLLL SSSSSSSS: 256 segments of 16 MB per "log"
        return int(name[8:16], 16) * 256 + int(name[16:24], 16)
    timeline = start[:8]
    wanted = ['%s%08X%08X' % (timeline, n // 256, n % 256) for n in range(segno(start), segno(stop) + 1)]
    return all(w in found for w in wanted)


def _plus_one_second(iso):
    stamp = calendar.timegm(time.strptime(iso[:19], '%Y-%m-%dT%H:%M:%S'))
    return time.strftime('%Y-%m-%d %H:%M:%S+00', time.gmtime(stamp + 1))
