"""playbooks/pitr.yml and playbooks/pitr_drill.yml with a pgBackRest repository host, over SSH, as AWX runs
them: two hosts in network namespaces (tests/harness/netns.py), each with its own sshd; the database host
``dba`` (cluster 15/dbdt_a) archives into the repository on ``repo`` (the other namespace), which takes the
backups.  The inventory holds only the connection settings and pitr_* host vars.

What the user relies on: one run of pitr.yml on the database host sets up both ends (the repository user and
its key, keys and known_hosts both ways, the repository's configuration naming the database host, the stanza,
WAL archiving over SSH proved from both sides, the backup cron entries on the repository host and none on the
database host); the cron line as written really takes a backup there; the drill restores from that repository
on the database host and finds the data as it was; a second run and a --check run change nothing; a repository host that is not
in the inventory, or one that cannot reach the database host, fails with a message that says so.

The two namespaces share this machine's files and users: the test uses its own repository user
(``dbdtbackrest``) and folders under /var/tmp/dbdt-pitr-*, keeps a copy of postgres's ~/.ssh and puts
everything back afterwards (also what a killed run left, at the start of the next).
"""

import glob
import os
import pwd
import shutil
import subprocess
import tarfile

import pytest

from tests.harness import netns

REPO_USER = 'dbdtbackrest'
BASE_PREFIX = '/var/tmp/dbdt-pitr-'
SSH_SNAPSHOT = '/var/tmp/dbdt-pitr-postgres-ssh.tar'
POSTGRES_SSH = os.path.join(pwd.getpwnam('postgres').pw_dir, '.ssh')
A = netns.HOSTS['a']
STANZA = 'dbdt_a'
PASSWORD = 'pitr-repo-host-Pw-1'
LOGROTATE = ('/etc/logrotate.d/dbdevops-pitr-%s' % STANZA, '/etc/logrotate.d/dbdevops-pitr-repo-%s' % STANZA)


def sh(argv, check=True, **kwargs):
    done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                          check=False, **kwargs)
    if check and done.returncode != 0:
        raise AssertionError('%s: %s' % (' '.join(argv), done.stderr or done.stdout))
    return done


def _user_exists(name):
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def cleanup():
    """Everything this test puts outside the netns harness, found by name; safe after a killed run."""
    if _user_exists(REPO_USER):
        sh(['crontab', '-r', '-u', REPO_USER], check=False)
        sh(['userdel', '-r', REPO_USER], check=False)
    sh(['groupdel', REPO_USER], check=False)
    for path in glob.glob(BASE_PREFIX + '*'):
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
    for path in LOGROTATE:
        if os.path.exists(path):
            os.remove(path)
    if os.path.exists(SSH_SNAPSHOT):                      # put postgres's ~/.ssh back as it was
        shutil.rmtree(POSTGRES_SSH, ignore_errors=True)
        with tarfile.open(SSH_SNAPSHOT) as tar:
            tar.extractall(os.path.dirname(POSTGRES_SSH))
        if os.path.exists(os.path.join(os.path.dirname(POSTGRES_SSH), '.no-ssh-dir')):
            os.remove(os.path.join(os.path.dirname(POSTGRES_SSH), '.no-ssh-dir'))
            shutil.rmtree(POSTGRES_SSH, ignore_errors=True)
        os.remove(SSH_SNAPSHOT)


def snapshot_postgres_ssh():
    with tarfile.open(SSH_SNAPSHOT + '.part', 'w') as tar:
        if os.path.isdir(POSTGRES_SSH):
            tar.add(POSTGRES_SSH, arcname='.ssh')
        else:
            marker = os.path.join(os.path.dirname(POSTGRES_SSH), '.no-ssh-dir')
            open(marker, 'w').close()
            tar.add(marker, arcname='.no-ssh-dir')
            os.remove(marker)
    os.rename(SSH_SNAPSHOT + '.part', SSH_SNAPSHOT)


@pytest.fixture
def two_hosts():
    cleanup()
    hosts = netns.TwoHosts()
    try:
        hosts.up()
        snapshot_postgres_ssh()
        base = BASE_PREFIX + 'run'
        os.makedirs(base, mode=0o755)
        os.chmod(base, 0o755)
        drill = os.path.join(base, 'drill')
        os.makedirs(drill)
        shutil.chown(drill, 'postgres', 'postgres')
        hosts.create_primary_cluster('a', PASSWORD, PASSWORD)
        hosts.psql('a', 'CREATE TABLE public.accounts (id int PRIMARY KEY, owner text)')
        hosts.psql('a', "INSERT INTO public.accounts SELECT g, 'owner ' || g FROM generate_series(1, 500) g")
        yield hosts, base
    finally:
        hosts.down()
        cleanup()


def inventory(hosts, base, **extra):
    pitr = dict(pitr_version=15, pitr_cluster_name=A['cluster'], pitr_port=A['port'], pitr_stanza=STANZA,
                pitr_config_file=base + '/db-etc/%s.conf' % STANZA, pitr_log_path=base + '/db-log',
                pitr_lock_path=base + '/db-lock', pitr_spool_path=base + '/db-spool',
                pitr_repo_host='repo', pitr_repo_host_user=REPO_USER, pitr_repo_host_config_dir=base + '/repo-etc',
                pitr_repo_path=base + '/repo', pitr_repo_host_log_path=base + '/repo-log',
                pitr_repo_host_lock_path=base + '/repo-lock', pitr_ssh_host_key_file=hosts.host_key_pub,
                pitr_manage_cron_service=False, pitr_check_archive_timeout=20,
                dbdevops_login_unix_socket='/var/run/postgresql', dbdevops_login_port=A['port'],
                pitr_drill_data_dir=base + '/drill/scratch', pitr_drill_compare_tables=['public.accounts'],
                pitr_drill_rows=20)
    pitr.update(extra)
    return {'all': {'children': {
        'postgresql': {'hosts': {'dba': dict(hosts.host_vars('a'), **pitr)}},
        'pgbackrest_repo': {'hosts': {'repo': hosts.host_vars('b')}}}}}


def repo_run(hosts, command):
    """A shell command as the repository user on the repository host (inside its namespace)."""
    return hosts.in_ns('b', ['runuser', '-u', REPO_USER, '--', 'sh', '-c', command], check=False)


def test_repository_host_over_ssh_archives_backs_up_and_restores(two_hosts, tmp_path):
    hosts, base = two_hosts
    done = netns.run_playbook_over_ssh('pitr.yml', inventory(hosts, base), tmp_path)
    assert done.status == 'successful' and done.rc == 0, done
    db_config = base + '/db-etc/%s.conf' % STANZA
    repo_config = base + '/repo-etc/%s.conf' % STANZA
    assert done.stats['dbdevops_pitr']['dba'] == dict(failed=False, error='', stanza=STANZA, config=db_config)

    # the database host's configuration names the repository host, and no repository here
    with open(db_config) as handle:
        db_text = handle.read()
    assert 'repo1-host=%s\n' % netns.HOSTS['b']['addr'] in db_text and 'repo1-host-user=%s\n' % REPO_USER in db_text
    assert 'repo1-host-config=%s\n' % repo_config in db_text and 'repo1-path' not in db_text
    # the repository host's configuration names the database host as pg1, reached over SSH as postgres
    with open(repo_config) as handle:
        repo_text = handle.read()
    for line in ('pg1-host=%s' % A['addr'], 'pg1-host-user=postgres', 'pg1-host-config=%s' % db_config,
                 'pg1-port=%d' % A['port'], 'repo1-path=%s/repo' % base):
        assert line + '\n' in repo_text, repo_text
    assert oct(os.stat(repo_config).st_mode & 0o777) == '0o640'
    # keys both ways, restricted; known_hosts from the hosts' own key, not learnt on first use
    repo_home = pwd.getpwnam(REPO_USER).pw_dir
    with open(os.path.join(POSTGRES_SSH, 'authorized_keys')) as handle:
        assert any(line.startswith('no-agent-forwarding') and '%s@repo' % REPO_USER in line for line in handle)
    with open(os.path.join(repo_home, '.ssh', 'authorized_keys')) as handle:
        assert any(line.startswith('no-agent-forwarding') and 'postgres@dba' in line for line in handle)
    with open(hosts.host_key_pub) as handle:
        host_key = handle.read().split()[1]
    with open(os.path.join(repo_home, '.ssh', 'known_hosts')) as handle:
        assert '%s ssh-ed25519 %s' % (A['addr'], host_key) in handle.read()

    # WAL archiving goes over SSH into the repository on the other host
    assert hosts.psql('a', "SELECT current_setting('archive_command')").find('--config=%s' % db_config) >= 0
    assert glob.glob(base + '/repo/archive/%s/15-1/*/*' % STANZA), 'no WAL segment in the repository'

    # backups are scheduled on the repository host only; the cron line as written takes a real backup there
    crontab = sh(['crontab', '-l', '-u', REPO_USER]).stdout
    jobs = [line for line in crontab.splitlines() if line and not line.startswith('#')]
    assert len(jobs) == 2 and all('--config=%s' % repo_config in job for job in jobs), crontab
    assert STANZA not in sh(['crontab', '-l', '-u', 'postgres'], check=False).stdout
    full_job = next(job for job in jobs if '--type=full' in job)
    backup = repo_run(hosts, full_job.split(None, 5)[5])
    assert backup.returncode == 0, backup.stderr
    info = hosts.in_ns('a', ['runuser', '-u', 'postgres', '--', 'pgbackrest', '--config=' + db_config,
                             '--stanza=' + STANZA, '--output=json', 'info'])
    assert '"type":"full"' in info.stdout.replace(' ', ''), info.stdout   # seen from the database host too

    # the drill on the database host restores from the repository host and proves the data
    drill = netns.run_playbook_over_ssh('pitr_drill.yml', inventory(hosts, base), tmp_path)
    assert drill.status == 'successful', drill
    published = drill.stats['dbdevops_pitr_drill']['dba']
    assert published['passed'] is True, published
    assert [(t['table'], t['restored_rows']) for t in published['tables'] if t['table'] == 'accounts'] == \
        [('accounts', 500)], published

    # a second run and --check change nothing, on either host
    again = netns.run_playbook_over_ssh('pitr.yml', inventory(hosts, base), tmp_path)
    assert again.status == 'successful' and again.changed('dba') == 0, again
    checked = netns.run_playbook_over_ssh('pitr.yml', inventory(hosts, base), tmp_path, cmdline='--check --diff')
    assert checked.status == 'successful' and checked.changed('dba') == 0, checked

    # the repository host cannot reach the database host (wrong address): the check from there fails and says so
    # (only the repository host's and the stanza's tasks, as an AWX job with tags, to keep the test short)
    wrong = netns.run_playbook_over_ssh('pitr.yml', inventory(hosts, base, pitr_pg_host_address='10.78.0.99'),
                                        tmp_path, tags='pitr_repo_host,pitr_stanza')
    assert wrong.status == 'failed'
    error = wrong.stats['dbdevops_pitr']['dba']['error']
    assert 'pgbackrest check on the repository host repo' in error and '10.78.0.99' in error, error


def test_repository_host_outside_the_inventory_is_refused_before_anything_changes(two_hosts, tmp_path):
    hosts, base = two_hosts
    done = netns.run_playbook_over_ssh('pitr.yml', inventory(hosts, base, pitr_repo_host='backup.example.com'),
                                       tmp_path)
    assert done.status == 'failed'
    error = done.stats['dbdevops_pitr']['dba']['error']
    assert 'backup.example.com is not a host of the inventory' in error and 'pitr_repo_host_manage' in error, error
    assert not os.path.exists(base + '/db-etc') and not _user_exists(REPO_USER)
    assert hosts.psql('a', "SELECT current_setting('archive_mode')") == 'off'
