"""Verify the backup role on localhost: cron entry, a real backup by hand, log rotation."""

import json
import os

import pytest
import yaml

VARS = yaml.safe_load(open(os.path.join(os.path.dirname(__file__), '..', 'vars', 'main.yml')))
CONFIG = '/etc/dbdevops-backup/%s.json' % VARS['backup_config_name']
COMMAND = '/usr/local/bin/dbdevops-backup'


@pytest.fixture(scope='module', autouse=True)
def scenario_cluster_online(host):
    """Fail clearly, not test by test, when prepare did not create the scenario's cluster."""
    cluster = '%s %s' % (VARS['backupmol_version'], VARS['backupmol_cluster'])
    if host.run('pg_ctlcluster %s status' % cluster).rc != 0:
        pytest.fail('cluster %s is not running: did prepare run? (molecule skips prepare while its '
                    'state says "prepared"; destroy resets that)' % cluster)


def test_cron_entry_runs_the_command_as_postgres(host):
    crontab = host.check_output('crontab -l -u postgres')
    lines = crontab.splitlines()
    marker = lines.index('#Ansible: dbdevops.postgresql backup (molecule)')
    # its own entry: other configs (the lab's, say) may sit in the same crontab
    line = lines[marker + 1]
    assert COMMAND in line
    assert line.startswith('0 2 * * * ')
    assert '--config %s backup >> %s 2>&1' % (CONFIG, VARS['backup_log_file']) in line


def test_cron_service_running(host):
    assert host.process.filter(comm='cron')


def test_files_and_modes(host):
    assert host.file(COMMAND).mode == 0o755
    config = host.file(CONFIG)
    assert config.mode == 0o640 and config.group == 'postgres'
    data = json.loads(config.content_string)
    assert data['databases'] == ['molapp'] and data['login_port'] == 5441
    assert 'login_password' not in data
    assert data['retention_keep_last'] == 3 and 'retention' not in data  # flat, as the module names them
    dest = host.file(VARS['backup_dest'])
    assert dest.user == 'postgres' and dest.mode == 0o700
    engine = host.file('/usr/local/lib/dbdevops/dbdevops_postgresql_engine.zip')
    assert engine.user == 'root' and engine.mode == 0o644
    # the engine is one zip of module_utils; the folder layout of older role versions is gone
    assert not host.file('/usr/local/lib/dbdevops/ansible_collections/dbdevops/postgresql').exists
    package = 'ansible_collections/dbdevops/postgresql/plugins/module_utils/'
    names = host.check_output("/usr/bin/python3 -c 'import sys, zipfile; print(*zipfile.ZipFile(sys.argv[1]).namelist())' "
                              + engine.path).split()
    assert {package + 'backup/engine.py', package + '_pgclient.py', package + '_options.py'} <= set(names)
    assert package + '_module.py' not in names  # the one file that imports Ansible


def test_command_by_hand_produces_a_verified_backup(host):
    before = set(host.check_output('ls -1 %s' % VARS['backup_dest']).split())
    # exactly what cron runs, as postgres (the redirect too)
    run = host.run("runuser -u postgres -- sh -c '%s --config %s backup >> %s 2>&1'"
                   % (COMMAND, CONFIG, VARS['backup_log_file']))
    assert run.rc == 0, host.file(VARS['backup_log_file']).content_string
    after = set(host.check_output('ls -1 %s' % VARS['backup_dest']).split())
    new = sorted(after - before)
    assert len(new) == 1 and new[0].endswith('-molapp')
    manifest = json.loads(host.file('%s/%s/manifest.json' % (VARS['backup_dest'], new[0])).content_string)
    assert manifest['database'] == 'molapp' and manifest['format'] == 'directory'
    assert {t['name']: t['rows'] for t in manifest['tables']} == {'items': 500}
    listing = host.run('runuser -u postgres -- %s --config %s list --verify' % (COMMAND, CONFIG))
    assert listing.rc == 0, listing.stdout + listing.stderr
    assert 'verified %s molapp' % new[0] in listing.stdout
    log = host.file(VARS['backup_log_file']).content_string
    assert 'backup ok: %s database molapp' % new[0] in log


def test_retention_keeps_three(host):
    for dummy in range(4):
        host.check_output('runuser -u postgres -- %s --config %s backup' % (COMMAND, CONFIG))
    names = host.check_output('ls -1 %s' % VARS['backup_dest']).split()
    assert len(names) == 3


def test_logrotate_rotates_the_log(host):
    policy = '/etc/logrotate.d/dbdevops-molecule'
    assert host.file(policy).exists
    host.check_output('echo "line for rotation" >> %s' % VARS['backup_log_file'])
    rotate = host.run('logrotate -f -s /var/tmp/dbdevops-molecule-backup/logrotate.state %s' % policy)
    assert rotate.rc == 0, rotate.stderr
    assert host.file(VARS['backup_log_file'] + '.1').exists
    assert host.file(VARS['backup_log_file']).size == 0
    assert host.file(VARS['backup_log_file']).user == 'postgres'
