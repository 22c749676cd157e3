"""playbooks/pitr_drill.yml as AWX runs it: ansible-runner, the connection and the
drill's settings in inventory host vars, against a real cluster archiving into a
real pgBackRest repository (tests/harness/pitr.py).

Success: the drill marks, damages, restores to the mark into a scratch server,
finds every compared table as it was at the mark and the marker rows back, drops
the scratch server and publishes it. Failures: no backup yet, archiving broken -
both fail before the live database is touched, and say why in the stats.
"""

import os
import shutil
import tempfile
import time

import pytest

from tests.harness.pgcluster import SUPERUSER_PASSWORD
from tests.harness.pitr import CIPHER_PASS, PitrLab, stop_data_dir
from tests.harness.runner import run_playbook


@pytest.fixture
def lab():
    with PitrLab() as started:
        started.pg.sql('CREATE TABLE public.accounts (id int PRIMARY KEY, owner text, balance numeric)')
        started.pg.sql("INSERT INTO public.accounts SELECT g, 'owner ' || g, g * 1.5 FROM generate_series(1, 300) g")
        yield started


@pytest.fixture
def scratch():
    """Where the drill may put its scratch server: a folder the postgres user can write in."""
    base = tempfile.mkdtemp(prefix='dbdevops-pitr-drill-')
    os.chmod(base, 0o755)
    path = os.path.join(base, 'scratch')
    yield path
    stop_data_dir(path)
    shutil.rmtree(base, ignore_errors=True)


def hostvars(lab, scratch, **extra):
    conn = lab.conn()
    return dict(dict(dbdevops_login_host=conn['login_host'], dbdevops_login_port=conn['login_port'],
                     dbdevops_login_user=conn['login_user'], dbdevops_login_password=conn['login_password'],
                     dbdevops_become=False, pitr_stanza=lab.stanza, pitr_config_file=lab.config,
                     pitr_drill_data_dir=scratch, pitr_drill_compare_tables=['public.accounts'], pitr_drill_rows=25),
                **extra)


def _published(done):
    return done.stats['dbdevops_pitr_drill']['localhost']


def test_drill_restores_the_mark_and_proves_it(lab, scratch, tmp_path):
    lab.pgbackrest('backup', '--type=full', '--start-fast')
    started = time.monotonic()
    done = run_playbook('pitr_drill.yml', hostvars(lab, scratch), tmp_path)
    assert done.status == 'successful' and done.rc == 0, done
    drill = _published(done)
    assert drill['failed'] is False and drill['passed'] is True and drill['error'] == ''
    tables = {t['table']: t for t in drill['tables']}
    assert set(tables) == {'dbdevops_pitr_drill', 'accounts'}
    assert tables['accounts']['marked_rows'] == tables['accounts']['restored_rows'] == 300
    assert all(t['match'] and t['marked_checksum'] == t['restored_checksum'] for t in tables.values())
    # the damage deleted the marker rows on the live server; the restore to the mark has them all
    assert drill['live_marker_rows_after_damage'] == 0
    assert drill['marker_rows'] == drill['restored_marker_rows'] == 25
    assert drill['mark']['by'] == 'lsn'
    assert drill['target'] == dict(type='lsn', value=drill['mark']['lsn'], timeline='current')
    assert drill['restore_seconds'] > 0 and drill['replay_seconds'] > 0
    assert drill['restore_seconds'] + drill['replay_seconds'] < time.monotonic() - started
    # the scratch server is gone, the live server is left as the drill found it (marker rows removed)
    assert drill['scratch_dropped'] is True and not os.path.exists(scratch)
    assert lab.pg.sql('SELECT count(*) FROM public.dbdevops_pitr_drill') == [(0,)]
    assert lab.pg.sql('SELECT count(*) FROM public.accounts') == [(300,)]
    events = repr(done.events)
    assert SUPERUSER_PASSWORD not in events and CIPHER_PASS not in events


def test_drill_by_time_detects_a_restore_that_misses_the_mark(lab, scratch, tmp_path):
    """By time, with a change to a compared table made after the mark: the restored copy must not have it."""
    lab.pgbackrest('backup', '--type=full', '--start-fast')
    damage = 'UPDATE public.accounts SET balance = 0 WHERE id <= 10'
    done = run_playbook('pitr_drill.yml', hostvars(lab, scratch, pitr_drill_mark_by='time',
                                                   pitr_drill_damage_sql=damage), tmp_path)
    assert done.status == 'successful', done
    drill = _published(done)
    assert drill['passed'] is True and drill['target']['type'] == 'time'
    # the live table changed after the mark, the restored one holds the mark's rows
    assert lab.pg.sql('SELECT count(*) FROM public.accounts WHERE balance = 0') == [(10,)]
    assert {t['table']: t['match'] for t in drill['tables']} == {'dbdevops_pitr_drill': True, 'accounts': True}


def test_drill_without_a_backup_fails_before_touching_the_database(lab, scratch, tmp_path):
    done = run_playbook('pitr_drill.yml', hostvars(lab, scratch), tmp_path)
    assert done.status == 'failed' and done.rc != 0
    drill = _published(done)
    assert drill['failed'] is True and drill['passed'] is False
    assert 'backup' in drill['error'] and lab.stanza in drill['error'], drill['error']
    assert lab.pg.sql("SELECT to_regclass('public.dbdevops_pitr_drill')") == [(None,)]
    assert not os.path.exists(scratch)


def test_drill_refuses_while_archiving_fails(lab, scratch, tmp_path):
    lab.pgbackrest('backup', '--type=full', '--start-fast')
    lab.break_archiving()
    lab.pg.sql('CREATE TABLE public.after_the_backup (id int)')  # WAL to archive: the switch closes a segment
    lab.switch_wal(wait=False)
    deadline = time.monotonic() + 30
    while lab.pg.sql('SELECT failed_count FROM pg_stat_archiver') == [(0,)] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert lab.pg.sql('SELECT failed_count > 0 FROM pg_stat_archiver') == [(True,)]
    done = run_playbook('pitr_drill.yml', hostvars(lab, scratch), tmp_path)
    assert done.status == 'failed' and done.rc != 0
    drill = _published(done)
    assert drill['failed'] is True and 'archiving of stanza %s is failing' % lab.stanza in drill['error']
    assert lab.pg.sql("SELECT to_regclass('public.dbdevops_pitr_drill')") == [(None,)]


def test_drill_with_a_missing_table_fails_and_names_it(lab, scratch, tmp_path):
    lab.pgbackrest('backup', '--type=full', '--start-fast')
    done = run_playbook('pitr_drill.yml', hostvars(lab, scratch, pitr_drill_compare_tables=['public.acounts']), tmp_path)
    assert done.status == 'failed'
    drill = _published(done)
    assert 'no table public.acounts in database postgres' in drill['error'], drill['error']
    assert lab.pg.sql("SELECT to_regclass('public.dbdevops_pitr_drill')") == [(None,)]


def test_drill_to_a_given_time_restores_the_table_as_it_was_then(lab, scratch, tmp_path):
    lab.pgbackrest('backup', '--type=full', '--start-fast')
    lab.pg.sql("UPDATE public.accounts SET owner = 'before the target' WHERE id <= 5")
    time.sleep(1.1)
    target = lab.pg.sql("SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'")[0][0]
    time.sleep(1.1)
    lab.pg.sql('DELETE FROM public.accounts WHERE id > 200')
    lab.switch_wal()
    done = run_playbook('pitr_drill.yml', hostvars(lab, scratch), tmp_path, extravars=dict(pitr_drill_target_time=target))
    assert done.status == 'successful', done
    drill = _published(done)
    assert drill['passed'] is True and drill['target'] == dict(type='time', value=target, timeline='current')
    assert drill['mark'] == dict(time=target, by='target_time') and drill['marker_rows'] == 0
    # read from the restored server: the rows deleted after the target are there
    assert [(t['table'], t['restored_rows']) for t in drill['tables']] == [('accounts', 300)]
    assert lab.pg.sql('SELECT count(*) FROM public.accounts') == [(200,)]
    assert not os.path.exists(scratch)


@pytest.fixture
def debian_cluster(tmp_path):
    """A Debian cluster of the test's own (15/pitrpb<pid>, a free port) and private pgBackRest folders;
    the role's files (config, cron lines, logrotate) and the cluster are removed afterwards whatever happened."""
    import subprocess
    from tests.harness.pgcluster import free_port
    name, port = 'pitrpb%d' % os.getpid(), free_port()
    base = tempfile.mkdtemp(prefix='dbdevops-pitr-role-')
    os.chmod(base, 0o755)
    subprocess.run(['pg_createcluster', '15', name, '-p', str(port)], check=True, capture_output=True)
    hostvars = dict(pitr_version=15, pitr_cluster_name=name, pitr_port=port, pitr_config_dir=base + '/etc',
                    pitr_repo_path=base + '/repo', pitr_log_path=base + '/log', pitr_lock_path=base + '/lock',
                    pitr_spool_path=base + '/spool', pitr_check_archive_timeout=20)
    yield name, hostvars, base
    subprocess.run(['pg_dropcluster', '--stop', '15', name], check=False, capture_output=True)
    shutil.rmtree('/etc/postgresql/15/%s' % name, ignore_errors=True)
    crontab = subprocess.run(['crontab', '-u', 'postgres', '-l'], capture_output=True, universal_newlines=True,
                             check=False).stdout
    if name in crontab:
        kept = [line for line in crontab.splitlines(True) if name not in line]
        subprocess.run(['crontab', '-u', 'postgres', '-'], input=''.join(kept), universal_newlines=True, check=False)
    if os.path.exists('/etc/logrotate.d/dbdevops-pitr-%s' % name):
        os.remove('/etc/logrotate.d/dbdevops-pitr-%s' % name)
    shutil.rmtree(base, ignore_errors=True)


def test_pitr_playbook_sets_up_archiving_and_fails_clearly_on_a_stopped_cluster(debian_cluster, tmp_path):
    import subprocess
    name, hostvars, base = debian_cluster
    stopped = run_playbook('pitr.yml', hostvars, tmp_path)                  # the cluster is not started yet
    assert stopped.status == 'failed' and stopped.rc != 0
    published = stopped.stats['dbdevops_pitr']['localhost']
    assert published['failed'] is True and 'is not running' in published['error'], published
    assert not os.path.exists(base + '/etc/%s.conf' % name)                  # nothing written

    subprocess.run(['pg_ctlcluster', '15', name, 'start'], check=True, capture_output=True)
    done = run_playbook('pitr.yml', hostvars, tmp_path)
    assert done.status == 'successful', done
    published = done.stats['dbdevops_pitr']['localhost']
    config = base + '/etc/%s.conf' % name
    assert published == dict(failed=False, error='', stanza=name, config=config)
    settings = subprocess.run(['runuser', '-u', 'postgres', '--', 'psql', '-XAtq', '-p', str(hostvars['pitr_port']),
                               '-c', "SELECT current_setting('archive_mode'), current_setting('archive_command')"],
                              capture_output=True, universal_newlines=True, check=True).stdout
    assert settings.startswith('on|') and '--config=%s' % config in settings and '--stanza=%s' % name in settings
    info = subprocess.run(['runuser', '-u', 'postgres', '--', 'pgbackrest', '--config=%s' % config,
                           '--stanza=%s' % name, 'check'], capture_output=True, universal_newlines=True, check=False)
    assert info.returncode == 0, info.stderr                                 # archiving really works
    again = run_playbook('pitr.yml', hostvars, tmp_path)
    assert again.status == 'successful' and again.changed() == 0, again


def test_pitr_playbook_refuses_cron_on_the_database_host_with_an_unmanaged_repository_host(debian_cluster, tmp_path):
    """pgBackRest takes backups on the repository host only: cron entries here would fail every night (a managed
    repository host gets them: test_pitr_repo_host.py)."""
    name, hostvars, base = debian_cluster
    done = run_playbook('pitr.yml', dict(hostvars, pitr_repo_host='backup.example.com', pitr_repo_host_manage=False),
                        tmp_path)
    assert done.status == 'failed'
    error = done.stats['dbdevops_pitr']['localhost']['error']
    assert 'backups on the repository host only' in error and 'pitr_cron_enabled: false' in error, error
    assert not os.path.exists(base + '/etc/%s.conf' % name)
