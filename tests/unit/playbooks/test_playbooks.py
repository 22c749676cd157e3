"""Every playbook as AWX runs it: ansible-runner, the connection in inventory host vars, no -e.

Each playbook is run on its success path and on a failure path; the tests
assert the run's status and rc and what it published with set_stats.
"""

import os
import shutil
import socket
import subprocess
import tempfile

import pytest
import yaml

from tests.harness import REPO_ROOT
from tests.harness.pgcluster import SUPERUSER_PASSWORD, free_port
from tests.harness.runner import run_playbook

MIGRATIONS = {
    'V1__users.sql': 'CREATE TABLE users (id bigserial PRIMARY KEY, email text NOT NULL);\n',
    'U1__users.sql': 'DROP TABLE users;\n',
    'V2__seed.sql': "INSERT INTO users (email) SELECT 'u' || g || '@example.com' FROM generate_series(1, ${rows}) g;\n",
    'U2__seed.sql': 'DELETE FROM users;\n',
}


@pytest.fixture
def inventory(sample_db, tmp_path):
    """Host vars of a job template: the connection and the job's settings, nothing on the command line."""
    cluster, name = sample_db
    conn = cluster.conn_params(dbname=name, password=True)
    backups = tmp_path / 'backups'
    backups.mkdir()
    return cluster, name, dict(
        dbdevops_login_host=conn['login_host'], dbdevops_login_port=conn['login_port'],
        dbdevops_login_user=conn['login_user'], dbdevops_login_password=conn['login_password'],
        dbdevops_become=False, backup_dest=str(backups), backup_databases=[name],
        drill_databases=[name], backup_globals=False)


def _host(done, key):
    return done.stats[key]['localhost']


def test_backup_then_drill_then_restore_from_the_inventory_alone(inventory, tmp_path):
    cluster, name, hostvars = inventory
    done = run_playbook('backup.yml', hostvars, tmp_path)
    assert done.status == 'successful' and done.rc == 0, done
    published = _host(done, 'dbdevops_backup')
    assert published['failed'] is False and published['error'] == ''
    assert [b['database'] for b in published['backups']] == [name]
    assert os.listdir(hostvars['backup_dest']) == [published['backups'][0]['backup_id']]  # the inventory's folder
    assert SUPERUSER_PASSWORD not in repr(done.events)

    drill = run_playbook('restore_drill.yml', hostvars, tmp_path)
    assert drill.status == 'successful', drill
    drills = _host(drill, 'dbdevops_restore_drill')
    assert drills['failed'] is False and [d['passed'] for d in drills['drills']] == [True]

    target = name + '_restored'
    try:
        restored = run_playbook('restore.yml', dict(hostvars, backup_db=name), tmp_path,
                                extravars=dict(target_db=target))
        assert restored.status == 'successful', restored
        result = _host(restored, 'dbdevops_restore')
        assert result['failed'] is False and result['target_db'] == target
        assert result['verification']['passed'] is True
        assert cluster.sql('SELECT count(*) FROM public.customers', dbname=target) == [(300,)]
    finally:
        cluster.sql('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % target)


def test_backup_of_every_database_when_none_is_named(inventory, tmp_path):
    """backup_databases empty means all databases (it once failed: databases and all_databases both set)."""
    _cluster, name, hostvars = inventory
    hostvars.pop('backup_databases')
    done = run_playbook('backup.yml', hostvars, tmp_path)
    assert done.status == 'successful', done
    assert name in [b['database'] for b in _host(done, 'dbdevops_backup')['backups']]


def test_backup_failure_is_published_with_its_error(inventory, tmp_path):
    _cluster, _name, hostvars = inventory
    done = run_playbook('backup.yml', dict(hostvars, backup_databases=['no_such_db']), tmp_path)
    assert done.status == 'failed' and done.rc != 0
    published = _host(done, 'dbdevops_backup')
    assert published['failed'] is True and 'no_such_db' in published['error']
    assert os.listdir(hostvars['backup_dest']) == []


def test_wrong_password_in_the_inventory_fails_clearly(inventory, tmp_path):
    _cluster, _name, hostvars = inventory
    done = run_playbook('backup.yml', dict(hostvars, dbdevops_login_password='wrong'), tmp_path)
    assert done.status == 'failed'
    assert 'password authentication failed' in _host(done, 'dbdevops_backup')['error']


def test_drill_that_finds_no_backup_fails(inventory, tmp_path):
    _cluster, _name, hostvars = inventory
    empty = tmp_path / 'typo'
    empty.mkdir()
    done = run_playbook('restore_drill.yml', dict(hostvars, backup_dest=str(empty)), tmp_path)
    assert done.status == 'failed', done
    published = _host(done, 'dbdevops_restore_drill')
    assert published['failed'] is True and str(empty) in published['error']


def test_restore_without_a_target_fails_and_says_what_to_set(inventory, tmp_path):
    _cluster, _name, hostvars = inventory
    done = run_playbook('restore.yml', hostvars, tmp_path)
    assert done.status == 'failed'
    assert 'set target_db' in _host(done, 'dbdevops_restore')['error']


@pytest.fixture
def migrations(inventory, tmp_path):
    """An empty application database and a migrations folder using a placeholder (set in host vars)."""
    cluster, name, hostvars = inventory
    app = cluster.create_database(name + '_app')
    folder = tmp_path / 'migrations'
    folder.mkdir()
    for file_name, text in MIGRATIONS.items():
        (folder / file_name).write_text(text)
    hostvars = dict(hostvars, migrate_db=app, migrate_path=str(folder), migrate_placeholders=dict(rows=5),
                    migrate_backup_dest=hostvars['backup_dest'])
    yield cluster, app, hostvars
    cluster.sql('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % app)


def test_migrate_check_then_apply_then_nothing_pending(migrations, tmp_path):
    cluster, name, hostvars = migrations
    checked = run_playbook('migrate.yml', hostvars, tmp_path, check=True, diff=True)
    assert checked.status == 'successful', checked
    assert cluster.sql("SELECT to_regclass('public.users') IS NULL", dbname=name) == [(True,)]

    done = run_playbook('migrate.yml', hostvars, tmp_path)
    assert done.status == 'successful', done
    published = _host(done, 'dbdevops_migrate')
    assert published['failed'] is False and published['current_version'] == '2'
    assert published['backup_path']                                  # something was pending: backed up first
    assert cluster.sql('SELECT count(*) FROM public.users', dbname=name) == [(5,)]  # host-var placeholders used
    backups = os.listdir(hostvars['backup_dest'])

    again = run_playbook('migrate.yml', hostvars, tmp_path)
    assert again.status == 'successful', again
    assert again.changed() == 0                                      # nothing pending: no backup, no change
    assert _host(again, 'dbdevops_migrate')['backup_path'] is None
    assert os.listdir(hostvars['backup_dest']) == backups


def test_migrate_failure_is_published_and_rolled_back(migrations, tmp_path):
    cluster, name, hostvars = migrations
    folder = hostvars['migrate_path']
    with open(os.path.join(folder, 'V3__broken.sql'), 'w') as handle:
        handle.write('ALTER TABLE no_such_table ADD COLUMN x int;\n')
    done = run_playbook('migrate.yml', dict(hostvars, migrate_rollback_on_failure=True), tmp_path)
    assert done.status == 'failed'
    published = _host(done, 'dbdevops_migrate')
    assert published['failed'] is True and 'no_such_table' in published['error']
    assert published['rolled_back'] is True and published['starting_version'] is None
    assert cluster.sql("SELECT to_regclass('public.users') IS NULL", dbname=name) == [(True,)]


def test_migrate_marks_a_restore_point_and_offers_it_when_nothing_can_undo_the_run(migrations, tmp_path):
    """With migrate_restore_point, a run that changes something first marks a restore point (recorded);
    a failed run that no undo file can take back names that point and how to restore to it."""
    cluster, name, hostvars = migrations
    record = str(tmp_path / 'points.json')
    hostvars = dict(hostvars, migrate_restore_point=True, migrate_restore_point_record_file=record,
                    migrate_backup_dest='')
    os.remove(os.path.join(hostvars['migrate_path'], 'U2__seed.sql'))          # version 2 cannot be undone
    done = run_playbook('migrate.yml', dict(hostvars, migrate_target='1'), tmp_path)
    assert done.status == 'successful', done
    point = _host(done, 'dbdevops_migrate')['restore_point']
    assert point['name'].startswith('dbdevops-migrate-none-') and point['lsn'] and point['time']
    with open(record) as handle:
        assert point['name'] in handle.read()

    with open(os.path.join(hostvars['migrate_path'], 'V3__broken.sql'), 'w') as handle:
        handle.write('ALTER TABLE no_such_table ADD COLUMN x int;\n')
    failed = run_playbook('migrate.yml', dict(hostvars, migrate_rollback_on_failure=True), tmp_path)
    assert failed.status == 'failed'
    published = _host(failed, 'dbdevops_migrate')
    second = published['restore_point']
    assert second['name'].startswith('dbdevops-migrate-1-') and second['name'] != point['name']
    assert len(second['name'].encode()) <= 63
    assert published['rolled_back'] is False                                  # U2 is missing: no way down
    assert published['current_version'] is not None
    offer = published['restore_offer']
    assert 'pitr_restore target_name=%s' % second['name'] in offer and second['lsn'] in offer
    assert offer in published['error']
    lsn_now = cluster.sql('SELECT pg_current_wal_lsn()::text')[0][0]
    assert cluster.sql("SELECT %s::pg_lsn <= %s::pg_lsn", (second['lsn'], lsn_now)) == [(True,)]

    again = run_playbook('migrate.yml', dict(hostvars, migrate_target='2'), tmp_path)   # nothing pending
    assert again.status == 'successful', again
    assert _host(again, 'dbdevops_migrate')['restore_point'] is None


def test_migrate_adopting_dbmate_rolls_back_only_to_the_adopted_version(migrations, tmp_path):
    """A team switching from dbmate: its history is taken over in the run; a failing new file is
    undone back to where dbmate left the database, never below it (that would drop its tables)."""
    cluster, name, hostvars = migrations
    cluster.sql("CREATE TABLE schema_migrations (version varchar(128) PRIMARY KEY);"
                "INSERT INTO schema_migrations VALUES ('1'), ('2');"
                "CREATE TABLE users (id bigserial PRIMARY KEY, email text NOT NULL);"
                "INSERT INTO users (email) SELECT 'd' || g FROM generate_series(1, 3) g", dbname=name)
    with open(os.path.join(hostvars['migrate_path'], 'V3__broken.sql'), 'w') as handle:
        handle.write('ALTER TABLE no_such_table ADD COLUMN x int;\n')
    done = run_playbook('migrate.yml', dict(hostvars, migrate_adopt_from='dbmate', migrate_rollback_on_failure=True,
                                            migrate_backup_dest=''), tmp_path)
    assert done.status == 'failed'
    published = _host(done, 'dbdevops_migrate')
    assert published['failed'] is True and 'no_such_table' in published['error']
    assert published['starting_version'] == '2' and published['current_version'] == '2'
    assert cluster.sql('SELECT count(*) FROM users', dbname=name) == [(3,)]     # dbmate's data untouched
    assert cluster.sql('SELECT version, success FROM dbdevops_schema_history ORDER BY installed_rank',
                       dbname=name)[:2] == [('1', True), ('2', True)]


def test_migrate_without_a_folder_fails_and_says_what_to_set(inventory, tmp_path):
    _cluster, _name, hostvars = inventory
    done = run_playbook('migrate.yml', hostvars, tmp_path)
    assert done.status == 'failed'
    assert 'set migrate_path' in _host(done, 'dbdevops_migrate')['error']


@pytest.fixture
def replica_pair():
    """A Debian cluster to be the primary, and the names of a standby the playbook builds."""
    name = 'runrep%d' % os.getpid()
    port, standby_port = free_port(), free_port()
    subprocess.run(['pg_createcluster', '15', name, '--port', str(port), '--', '--auth-local', 'peer',
                    '--auth-host', 'scram-sha-256'], check=True, capture_output=True)
    subprocess.run(['pg_ctlcluster', '15', name, 'start'], check=True, capture_output=True)
    shared = dict(replica_version=15, replica_primary_cluster_name=name, replica_primary_host='127.0.0.1',
                  replica_primary_port=port, replica_cluster_name=name + 'sb', replica_port=standby_port,
                  replica_application_name=name + 'sb', replica_password='rep:Secret\\1', replica_wait_timeout=60,
                  replica_standbys=[dict(name=name + 'sb', address='127.0.0.1/32', slot=name + 'sb')])
    yield name, shared
    for cluster in (name + 'sb', name):
        subprocess.run(['pg_dropcluster', '--stop', '15', cluster], check=False, capture_output=True)
        shutil.rmtree('/etc/postgresql/15/%s' % cluster, ignore_errors=True)


def test_replica_builds_a_streaming_standby_and_refuses_a_broken_one(replica_pair, tmp_path):
    name, shared = replica_pair
    groups = {'standbys': {'standby-host': dict(shared, replica_role='standby')}}
    hosts = dict(replica_hosts='postgresql:standbys')
    done = run_playbook('replica.yml', dict(shared, replica_role='primary'), tmp_path, extravars=hosts, groups=groups)
    assert done.status == 'successful', done
    standby = done.stats['dbdevops_replica']['standby-host']
    assert standby['failed'] is False and standby['streaming'] is True and standby['built'] is True
    primary = done.stats['dbdevops_replica']['localhost']
    assert [(s['application_name'], s['state']) for s in primary['standbys']] == [(name + 'sb', 'streaming')]
    assert 'Secret' not in str(done.events)                          # the password is in no output

    # the standby promoted by hand is no standby any more: refused, published, nothing rebuilt
    subprocess.run(['pg_ctlcluster', '15', name + 'sb', 'promote'], check=True, capture_output=True)
    again = run_playbook('replica.yml', dict(shared, replica_role='primary'), tmp_path, extravars=hosts, groups=groups)
    assert again.status == 'failed'
    failed = again.stats['dbdevops_replica']['standby-host']
    assert failed['failed'] is True and 'replica_rebuild' in failed['error'], failed


def test_migration_new_in_a_folder_that_uses_placeholders(tmp_path):
    folder = tmp_path / 'migrations'
    folder.mkdir()
    for file_name, text in MIGRATIONS.items():
        (folder / file_name).write_text(text)
    done = run_playbook('migration_new.yml', {}, tmp_path,
                        extravars=dict(migration_path=str(folder), migration_description='add last login'))
    assert done.status == 'successful', done
    published = _host(done, 'dbdevops_migration_new')
    assert published['failed'] is False and len(published['files']) == 2
    assert all(os.path.exists(path) for path in published['files'])

    missing = run_playbook('migration_new.yml', {}, tmp_path,
                           extravars=dict(migration_path=str(tmp_path / 'nope'), migration_description='x'))
    assert missing.status == 'failed'
    assert 'does not exist' in _host(missing, 'dbdevops_migration_new')['error']


@pytest.fixture
def server_inventory():
    """A cluster of the test's own (15/runner<pid>), removed afterwards whatever happened."""
    name = 'runner%d' % os.getpid()
    hostvars = dict(server_cluster_name=name, server_port=free_port(), server_memory_mb=256, server_cpus=1,
                    server_listen_addresses=['localhost'], server_tls=False)
    yield name, hostvars
    subprocess.run(['pg_dropcluster', '--stop', '15', name], check=False, capture_output=True)
    shutil.rmtree('/etc/postgresql/15/%s' % name, ignore_errors=True)


def test_server_builds_a_cluster_from_the_inventory(server_inventory, tmp_path):
    name, hostvars = server_inventory
    done = run_playbook('server.yml', hostvars, tmp_path)
    assert done.status == 'successful', done
    published = _host(done, 'dbdevops_server')
    assert published == dict(failed=False, error='', cluster=name, port=hostvars['server_port'], version=15)
    status = subprocess.run(['pg_ctlcluster', '15', name, 'status'], check=False, capture_output=True)
    assert status.returncode == 0                                   # running
    shown = subprocess.run(['runuser', '-u', 'postgres', '--', 'psql', '-XAt', '-p', str(hostvars['server_port']),
                            '-c', 'SHOW shared_buffers'], check=False, capture_output=True, text=True)
    assert shown.stdout.strip() == '64MB'                            # sized from the inventory, not the host


def test_server_refuses_a_port_in_use_and_creates_nothing(server_inventory, tmp_path):
    name, hostvars = server_inventory
    with socket.socket() as busy:
        busy.bind(('127.0.0.1', hostvars['server_port']))
        busy.listen()
        done = run_playbook('server.yml', hostvars, tmp_path)
    assert done.status == 'failed'
    published = _host(done, 'dbdevops_server')
    assert published['failed'] is True
    assert 'port %d is already in use' % hostvars['server_port'] in published['error']
    assert not os.path.exists('/etc/postgresql/15/%s' % name)


@pytest.fixture
def lab_inventory():
    """The lab inventory, with its own cluster name, port and folders so it never meets a real lab."""
    with open(os.path.join(REPO_ROOT, 'inventories', 'lab', 'group_vars', 'all.yml')) as handle:
        hostvars = yaml.safe_load(handle)
    base = tempfile.mkdtemp(prefix='dbdevops-runlab-', dir='/var/tmp')
    os.chmod(base, 0o755)                      # the backup tasks run as postgres
    name = 'runlab%d' % os.getpid()
    hostvars.update(server_cluster_name=name, server_port=free_port(), server_tls=False, replica_role='primary',
                    lab_standby_cluster_name=name + 'sb', lab_standby_port=free_port(),
                    lab_reports_dir=os.path.join(base, 'reports'),
                    lab_credentials_file=os.path.join(base, 'credentials', 'credentials.yml'),
                    lab_migrations_dir=os.path.join(base, 'lab', 'migrations'),
                    lab_backup_dest=os.path.join(base, 'backups'),
                    lab_backup_log=os.path.join(base, 'log', 'backup.log'),
                    lab_backup_config_name=name)
    yield name, hostvars, base
    for cluster in (name + 'sb', name):
        subprocess.run(['pg_dropcluster', '--stop', '15', cluster], check=False, capture_output=True)
        shutil.rmtree('/etc/postgresql/15/%s' % cluster, ignore_errors=True)
    cron = subprocess.run(['crontab', '-l', '-u', 'postgres'], check=False, capture_output=True, text=True)
    if '(%s)' % name in cron.stdout:
        kept = ''.join(line + '\n' for line in cron.stdout.splitlines()
                       if '(%s)' % name not in line and name not in line)
        subprocess.run(['crontab', '-u', 'postgres', '-'], input=kept, check=False, capture_output=True, text=True)
    for path in ('/etc/dbdevops-backup/%s.json' % name, '/etc/logrotate.d/dbdevops-%s' % name):
        if os.path.exists(path):
            os.unlink(path)
    shutil.rmtree(base, ignore_errors=True)


def _lab_standby(hostvars):
    """The lab inventory's second host: this machine again, playing the standby."""
    return {'lab_standby': {'lab-standby': dict(hostvars, replica_role='standby')}}


def _psql(port, query, db='postgres'):
    return subprocess.run(['runuser', '-u', 'postgres', '--', 'psql', '-XAt', '-p', str(port), '-d', db, '-c', query],
                          check=False, capture_output=True, text=True).stdout.strip()


def test_lab_builds_runs_its_jobs_from_the_inventory_and_resets(lab_inventory, tmp_path):
    name, hostvars, base = lab_inventory
    built = run_playbook('lab.yml', hostvars, tmp_path, groups=_lab_standby(hostvars))
    assert built.status == 'successful', built
    assert built.stats['lab']['cluster'] == '15/%s' % name and built.stats['lab']['schema_version'] == '7'
    # the standby streams, and the smoke-test switchover went there and back without losing a write
    drill = built.stats['lab']['failover_drill']
    assert drill['passed'] is True and drill['rpo_writes_lost'] == 0 and float(drill['rto_seconds']) > 0, drill
    assert drill['primary_after'].startswith('primary ')             # back to the original roles
    with open(drill['report']) as handle:
        assert '<svg' in handle.read()
    assert _psql(hostvars['server_port'], "SELECT application_name || ':' || state FROM pg_stat_replication") \
        == '%ssb:streaming' % name
    assert _psql(hostvars['lab_standby_port'], 'SELECT pg_is_in_recovery()') == 't'
    assert _psql(hostvars['lab_standby_port'], 'SELECT count(*) FROM customers', 'app') == '3'   # the sample rows
    shown = subprocess.run(['runuser', '-u', 'postgres', '--', 'psql', '-XAt', '-p', str(hostvars['server_port']),
                            '-c', 'SHOW shared_buffers'], check=False, capture_output=True, text=True)
    assert shown.stdout.strip() == '128MB'                          # lab_memory_mb 512, not the host's RAM

    for playbook in ('backup.yml', 'restore_drill.yml'):
        done = run_playbook(playbook, hostvars, tmp_path)
        assert done.status == 'successful', done
    planned = run_playbook('migrate.yml', hostvars, tmp_path, check=True, diff=True)
    assert planned.status == 'successful', planned
    assert _host(planned, 'dbdevops_migrate')['current_version'] == '7'

    reset = run_playbook('lab_reset.yml', hostvars, tmp_path)
    assert reset.status == 'successful', reset
    assert not os.path.exists('/etc/postgresql/15/%s' % name)
    assert not os.path.exists('/etc/postgresql/15/%ssb' % name) and not os.path.exists(hostvars['lab_reports_dir'])
    assert not os.path.exists('/etc/dbdevops-backup/%s.json' % name)
    cron = subprocess.run(['crontab', '-l', '-u', 'postgres'], check=False, capture_output=True, text=True)
    assert '(%s)' % name not in cron.stdout
    assert not any(os.path.exists(hostvars[k]) for k in ('lab_backup_dest', 'lab_migrations_dir',
                                                         'lab_credentials_file', 'lab_backup_log'))


def test_lab_on_a_port_in_use_fails_fast_and_creates_no_cluster(lab_inventory, tmp_path):
    name, hostvars, _base = lab_inventory
    with socket.socket() as busy:
        busy.bind(('127.0.0.1', hostvars['server_port']))
        busy.listen()
        done = run_playbook('lab.yml', hostvars, tmp_path)
    assert done.status == 'failed'
    assert any('port %d is already in use' % hostvars['server_port'] in (m or '') for m in done.failures())
    assert not os.path.exists('/etc/postgresql/15/%s' % name)


def test_lab_reset_refuses_a_cluster_that_is_not_the_labs(tmp_path):
    done = run_playbook('lab_reset.yml', dict(server_cluster_name='main', server_version=15,
                                              lab_backup_dest=str(tmp_path / 'b'), lab_migrations_dir=str(tmp_path / 'm'),
                                              lab_credentials_file=str(tmp_path / 'c' / 'credentials.yml'),
                                              lab_backup_log=str(tmp_path / 'l.log'), lab_backup_config_name='lab'),
                        tmp_path)
    assert done.status == 'failed'
    published = done.stats['lab_reset']['localhost']
    assert published['failed'] is True and 'only removes the lab' in published['error']
    assert os.path.exists('/etc/postgresql/15/main/postgresql.conf')              # untouched
