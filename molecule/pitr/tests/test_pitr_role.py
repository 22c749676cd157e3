"""Verify the pitr role on this machine: cluster 15/pitrmol (port 5471) archives its WAL
with pgBackRest; side_effect.yml's runs (a backup through the cron line, the drill,
a broken archive) are judged from the results it saved.

The SQL and pgbackrest run as the postgres OS user (peer over the Unix socket), as the
role and cron do.
"""

import json
import os
import re

import pytest
import yaml

SCENARIO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
with open(os.path.join(SCENARIO, 'vars', 'main.yml')) as f:
    VARS = yaml.safe_load(f)

STANZA = VARS['pitr_cluster_name']
CONFIG = '/etc/pgbackrest/%s.conf' % STANZA
PORT = VARS['pitr_port']
PGBACKREST = 'runuser -u postgres -- pgbackrest --config=%s --stanza=%s ' % (CONFIG, STANZA)


def sql(host, query):
    return host.check_output("runuser -u postgres -- psql -X -p %d -d postgres -Atc %s"
                             % (PORT, "'" + query.replace("'", "'\\''") + "'")).strip()


@pytest.fixture(scope='module')
def results():
    path = os.path.join(os.environ['MOLECULE_EPHEMERAL_DIRECTORY'], 'side_effect_results.json')
    if not os.path.exists(path):
        pytest.fail('%s is missing: did side_effect run?' % path)
    with open(path) as f:
        return json.load(f)


@pytest.fixture(scope='module', autouse=True)
def scenario_cluster_online(host):
    if host.run('pg_ctlcluster %s %s status' % (VARS['pitrmol_version'], VARS['pitrmol_cluster'])).rc != 0:
        pytest.fail('cluster 15/pitrmol is not running: did prepare run?')


def test_stanza_exists_with_the_cron_backup(host):
    info = json.loads(host.check_output(PGBACKREST + '--output=json info'))
    assert info[0]['name'] == STANZA and info[0]['status']['code'] == 0, info[0]['status']
    assert [b['type'] for b in info[0]['backup']] == ['full']
    assert info[0]['cipher'] == 'aes-256-cbc'  # pitr_cipher_pass set: the repository is encrypted


def test_check_passes(host):
    done = host.run(PGBACKREST + '--archive-timeout=30 check')
    assert done.rc == 0, done.stderr


def test_archive_settings_name_the_private_config(host):
    assert sql(host, 'SHOW archive_mode') == 'on'
    assert sql(host, 'SHOW archive_command') == (
        'pgbackrest --config=%s --stanza=%s archive-push %%p' % (CONFIG, STANZA))
    # written with ALTER SYSTEM, not into the server role's conf.d file
    assert sql(host, "SELECT sourcefile FROM pg_settings WHERE name = 'archive_command'").endswith('postgresql.auto.conf')


def test_config_file_is_private(host):
    config = host.file(CONFIG)
    assert config.user == 'root' and config.group == 'postgres' and config.mode == 0o640
    assert 'pg1-port=%d' % PORT in config.content_string
    for folder in ('pitr_log_path', 'pitr_lock_path', 'pitr_spool_path', 'pitr_repo_path'):
        assert host.file(VARS[folder]).user == 'postgres', folder


def test_cron_entries_full_on_sunday_diff_on_other_days(host):
    lines = host.check_output('crontab -l -u postgres').splitlines()
    full = lines[lines.index('#Ansible: dbdevops.postgresql pitr full backup (%s)' % STANZA) + 1]
    diff = lines[lines.index('#Ansible: dbdevops.postgresql pitr diff backup (%s)' % STANZA) + 1]
    assert full.startswith('0 1 * * 0 ') and '--type=full' in full and '--start-fast' in full
    assert diff.startswith('0 1 * * 1-6 ') and '--type=diff' in diff
    for line in (full, diff):
        assert 'pg_is_in_recovery()' in line and '--config=%s' % CONFIG in line
    assert host.file('/etc/logrotate.d/dbdevops-pitr-%s' % STANZA).contains('%s/%s-\\*.log' % (VARS['pitr_log_path'], STANZA))


def test_cron_line_took_a_backup(results):
    assert results['cron_backup']['rc'] == 0


def test_no_archive_failure_before_the_breakage(results):
    assert results['archiver']['failed_count'] == 0 and results['archiver']['archived_count'] > 0


def test_drill_restored_what_the_mark_held(results):
    drill = results['drill']
    assert drill['report']['passed'] is True
    tables = {t['table']: t for t in drill['report']['tables']}
    assert set(tables) == {'dbdevops_pitr_drill', 'items'}
    assert all(t['match'] for t in tables.values())
    assert tables['items']['restored_rows'] == 500
    assert tables['dbdevops_pitr_drill']['restored_rows'] >= VARS['pitr_drill_rows']
    # the damage removed the marker rows from the live server; the restore brought them all back
    assert drill['live_markers'] == 0
    assert drill['restored_markers'] == VARS['pitr_drill_rows']
    assert drill['restore']['target']['type'] == 'lsn'
    assert drill['restore']['restore_seconds'] > 0 and drill['restore']['replay_seconds'] > 0


def test_no_scratch_server_left(host, results):
    assert results['drill']['dropped']['state'] == 'absent'
    assert not host.file(VARS['pitr_drill_data_dir']).exists
    assert str(results['drill']['restore']['port']) not in host.check_output('ss -ltn')


def test_broken_archive_fails_the_role_with_pgbackrests_message(results):
    broken = results['broken']
    assert broken['rc'] != 0
    out = broken['stdout']
    assert 'WAL archiving of cluster 15/pitrmol does not work' in out
    assert 'Permission denied' in out  # archive-push's own error, not only check's timeout
    assert VARS['pitr_cipher_pass'] not in out


def test_check_mode_with_diff_on_the_converged_host_changes_nothing(results):
    check = results['check']
    recap = re.search(r'pitr-localhost\s*:\s*ok=\d+\s+changed=(\d+)\s+unreachable=0\s+failed=(\d+)', check['stdout'])
    assert recap, check['stdout'][-2000:]
    assert recap.groups() == ('0', '0'), check['stdout'][-3000:]
    assert VARS['pitr_cipher_pass'] not in check['stdout']
