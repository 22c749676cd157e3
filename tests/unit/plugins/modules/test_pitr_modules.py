"""The PITR modules as Ansible runs them: check mode and real run return what RETURN documents,
bad input fails with a clear message, no secret in any result."""

import json
import os
import time

import pytest

from ansible_collections.dbdevops.postgresql.plugins.modules import (
    physical_backup, physical_backup_info, pitr_restore, restore_point)
from tests.harness.modules import run_module
from tests.harness.pgcluster import SUPERUSER_PASSWORD
from tests.harness.pitr import CIPHER_PASS, PitrLab, stop_data_dir
from tests.unit.plugins.modules.test_return_docs import assert_documented as documented_keys


@pytest.fixture(scope='module')
def lab():
    with PitrLab() as lab:
        lab.pgbackrest('backup', '--type=full', '--start-fast')
        yield lab


def args(lab, **extra):
    return dict(lab.conn(password=True), **dict(lab.repo_args(), **extra))


def secret_free(result):
    text = json.dumps(result)
    assert CIPHER_PASS not in text and SUPERUSER_PASSWORD not in text
    return result


def assert_documented(module, checked, real):
    """test_return_docs' check of RETURN (documented keys, same keys in check mode and a real run), no secret."""
    for label, result in (('check mode', checked), ('real run', real)):
        assert not result['failed'], (label, result.get('msg'))
        secret_free(result)
    documented_keys(module, checked, real)


def test_every_module_check_mode_and_real_run(lab, tmp_path):
    checked = run_module(physical_backup, args(lab), check=True)
    real = run_module(physical_backup, args(lab))
    assert_documented(physical_backup, checked, real)
    assert checked['changed'] and checked['backup'] is None and real['backup']['type'] == 'full'

    checked = run_module(physical_backup_info, args(lab), check=True)
    real = run_module(physical_backup_info, args(lab))
    assert_documented(physical_backup_info, checked, real)
    assert not real['changed'] and real['ok'] and real['backup_count'] == 2 and checked == real

    record = str(tmp_path / 'points.json')
    checked = run_module(restore_point, dict(lab.conn(password=True), name='rp-mod', record_file=record), check=True)
    assert not os.path.exists(record)
    real = run_module(restore_point, dict(lab.conn(password=True), name='rp-mod', record_file=record))
    assert_documented(restore_point, checked, real)
    assert real['changed'] and real['lsn'] and json.load(open(record))['restore_points'][0]['name'] == 'rp-mod'

    lab.switch_wal()
    scratch = os.path.join(lab.base, 'scratch-module')
    try:
        checked = run_module(pitr_restore, args(lab, latest=True, target_data_dir=scratch), check=True)
        assert not os.path.exists(scratch)
        real = run_module(pitr_restore, args(lab, latest=True, target_data_dir=scratch))
        assert_documented(pitr_restore, checked, real)
        assert real['changed'] and real['target']['type'] == 'default' and real['reached']['timeline'] == 2
        assert os.path.isfile(os.path.join(scratch, 'dbdevops_pitr_scratch.json'))
        checked = run_module(pitr_restore, args(lab, state='absent', target_data_dir=scratch), check=True)
        assert os.path.isdir(scratch)
        real = run_module(pitr_restore, args(lab, state='absent', target_data_dir=scratch))
        assert_documented(pitr_restore, checked, real)
        assert real['changed'] and not os.path.exists(scratch)
    finally:
        stop_data_dir(scratch)


def test_bad_input_fails_clearly(lab, tmp_path):
    missing = run_module(physical_backup_info, args(lab, config=str(tmp_path / 'nope.conf')))
    assert missing['failed'] and 'nope.conf not found' in missing['msg']

    nostanza = run_module(physical_backup_info, args(lab, stanza='other'))
    assert nostanza['failed'] and 'no stanza other' in nostanza['msg'] and 'stanza-create' in nostanza['msg']
    empty = run_module(physical_backup_info, args(lab, stanza='other', allow_empty=True))
    assert not empty['failed'] and empty['backup_count'] == 0 and not empty['ok'] and empty['problems']

    both = run_module(pitr_restore, args(lab, latest=True, target_time='2026-01-01 00:00:00'))
    assert both['failed'] and 'mutually exclusive' in both['msg']
    none = run_module(pitr_restore, args(lab))
    assert none['failed'] and 'target_time' in none['msg']

    long_name = run_module(restore_point, dict(lab.conn(password=True), name='é' * 32,
                                               record_file=str(tmp_path / 'p.json')))
    assert long_name['failed'] and '64 bytes' in long_name['msg'] and 'at most 63' in long_name['msg']

    no_folder = run_module(restore_point, dict(lab.conn(password=True), name='rp-nowhere',
                                               record_file=str(tmp_path / 'missing' / 'p.json')))
    assert no_folder['failed'] and 'does not exist' in no_folder['msg']

    live = run_module(pitr_restore, args(lab, latest=True, target_data_dir=lab.pg.datadir))
    assert live['failed'] and 'live data directory' in live['msg']
    drop_live = run_module(pitr_restore, args(lab, state='absent', target_data_dir=lab.pg.datadir))
    assert drop_live['failed'] and 'not a scratch server' in drop_live['msg']
    assert lab.pg.sql('SELECT 1') == [(1,)]
    for result in (missing, nostanza, empty, both, none, long_name, no_folder, live, drop_live):
        secret_free(result)


def test_a_backup_with_archiving_off_is_refused(lab):
    lab.pg.sql("ALTER SYSTEM SET archive_mode = off")
    lab.pg.restart()
    try:
        t0 = time.monotonic()
        result = run_module(physical_backup, args(lab, login_port=lab.pg.port))
        assert result['failed'] and 'archive_mode is off' in result['msg'], result['msg']
        assert time.monotonic() - t0 < 10
        info = run_module(physical_backup_info, args(lab, login_port=lab.pg.port))
        assert info['archiver']['status'] == 'disabled' and not info['ok']
    finally:
        lab.pg.sql("ALTER SYSTEM RESET archive_mode")
        lab.pg.restart()
        lab.write_config()
