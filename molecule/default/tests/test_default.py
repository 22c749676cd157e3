"""Verify the server role on this machine (cluster 15/molecule on port 5440).

The SQL checks connect from this process over TCP, the way an application
would; the scenario runs on localhost, so the controller is the host.
"""

import json
import os
import re
import sys

import psycopg2
import psycopg2.errors
import pytest
import testinfra.utils.ansible_runner
import yaml

SCENARIO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
with open(os.path.join(SCENARIO, 'vars', 'scenario.yml')) as f:
    VARS = yaml.safe_load(f)

testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(
    os.environ['MOLECULE_INVENTORY_FILE']).get_hosts('all')

PORT = VARS['server_port']
CONF_DIR = '/etc/postgresql/%s/%s' % (VARS['server_version'], VARS['server_cluster_name'])
CONF_FILE = CONF_DIR + '/conf.d/dbdevops-server.conf'
HBA_FILE = CONF_DIR + '/pg_hba.conf'
PASSWORDS = VARS['molecule_passwords']
RECAP = re.compile(r'^molecule-localhost\s*:\s*ok=\d+\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)', re.M)


def _collections_paths():
    for path in os.environ.get('ANSIBLE_COLLECTIONS_PATH', '').split(os.pathsep):
        if path and path not in sys.path:
            sys.path.insert(0, path)


def connect(user, password=None, dbname='app', sslmode='require'):
    kwargs = dict(host='127.0.0.1', port=PORT, user=user, dbname=dbname, sslmode=sslmode,
                  connect_timeout=5)
    if password is not None:
        kwargs['password'] = password
    conn = psycopg2.connect(**kwargs)
    conn.autocommit = True
    return conn


def query(sql, user='app_rw', dbname='app'):
    conn = connect(user, PASSWORDS[user], dbname)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall() if cur.description else None
    finally:
        conn.close()


def show(name):
    return query('SHOW %s' % name)[0][0]


@pytest.fixture(scope='module')
def results():
    path = os.path.join(os.environ['MOLECULE_EPHEMERAL_DIRECTORY'], 'side_effect_results.json')
    if not os.path.exists(path):
        pytest.fail('%s is missing: side_effect.yml did not run (run "molecule test", not only "verify")' % path)
    with open(path) as f:
        return json.load(f)


def recap(run):
    found = RECAP.findall(run['stdout'])
    assert found, 'no PLAY RECAP in the output:\n' + run['stdout'][-2000:]
    changed, unreachable, failed = (int(n) for n in found[-1])
    return dict(changed=changed, unreachable=unreachable, failed=failed)


# --- the server ------------------------------------------------------------

def test_port_listens(host):
    assert host.socket('tcp://127.0.0.1:%d' % PORT).is_listening


def test_cluster_is_online_under_its_own_name(host):
    out = host.check_output('pg_lsclusters -h %s %s' % (VARS['server_version'], VARS['server_cluster_name']))
    assert ' online ' in out and str(PORT) in out


def test_show_returns_configured_settings():
    assert show('statement_timeout') == '30s'
    assert show('log_min_duration_statement') == '250ms'
    assert show('log_connections') == 'on'
    assert show('listen_addresses') == 'localhost'
    assert show('port') == str(PORT)
    assert show('password_encryption') == 'scram-sha-256'
    assert show('ssl') == 'on'


def test_superuser_only_settings(host):
    # shared_preload_libraries is visible to superusers only: ask as the postgres OS user
    out = host.check_output('runuser -u postgres -- psql -p %d -Atc "SHOW shared_preload_libraries"' % PORT)
    assert out.strip() == 'pg_stat_statements'


def test_show_returns_tuned_settings(host):
    _collections_paths()
    from ansible_collections.dbdevops.postgresql.plugins.module_utils._tuning import compute_tuning
    facts = host.ansible('setup', 'gather_subset=!all,hardware', check=False)['ansible_facts']
    expected = compute_tuning(facts['ansible_memtotal_mb'], facts['ansible_processor_vcpus'], storage='ssd')
    assert expected['random_page_cost'] == 1.1
    for name, value in sorted(expected.items()):
        assert show(name) == str(value), name


def test_no_setting_waits_for_a_restart():
    assert query('SELECT count(*) FROM pg_settings WHERE pending_restart', user='app_ro')[0][0] == 0


# --- authentication ----------------------------------------------------------

@pytest.mark.parametrize('user', ['app_rw', 'postgres'])
def test_passwordless_tcp_login_is_rejected(user):
    with pytest.raises(psycopg2.OperationalError, match='no password supplied|password authentication failed'):
        connect(user, password=None, sslmode='prefer')


def test_wrong_password_is_rejected():
    with pytest.raises(psycopg2.OperationalError, match='password authentication failed'):
        connect('app_rw', 'not-the-password')


def test_app_user_logs_in_with_its_password_over_tls():
    rows = query('SELECT current_user, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()')
    assert rows == [('app_rw', True)]


def test_passwords_are_stored_as_scram(host):
    # pg_authid is readable by superusers only: ask as the postgres OS user over the socket
    out = host.check_output(
        "runuser -u postgres -- psql -p %d -Atc \"SELECT rolname FROM pg_authid WHERE rolname LIKE 'app\\_%%' "
        "AND rolpassword LIKE 'SCRAM-SHA-256$%%' ORDER BY 1\"" % PORT)
    assert out.split() == ['app_owner', 'app_ro', 'app_rw']


# --- privileges --------------------------------------------------------------

def test_read_write_user_can_read_and_write_its_tables():
    query("INSERT INTO items (name) VALUES ('verify-rw') ON CONFLICT (name) DO NOTHING")
    assert ('verify-rw',) in query('SELECT name FROM items')
    query("UPDATE items SET name = 'verify-rw2' WHERE name = 'verify-rw'")
    query("DELETE FROM items WHERE name = 'verify-rw2'")
    assert ('verify-rw2',) not in query('SELECT name FROM items')


def test_read_write_user_cannot_create_roles_or_tables():
    with pytest.raises(psycopg2.errors.InsufficientPrivilege):
        query('CREATE ROLE verify_intruder')
    with pytest.raises(psycopg2.errors.InsufficientPrivilege):
        query('CREATE TABLE verify_not_mine (id int)')


def test_read_only_user_reads_but_cannot_write():
    assert ('alpha',) in query('SELECT name FROM items', user='app_ro')
    with pytest.raises(psycopg2.errors.InsufficientPrivilege):
        query("INSERT INTO items (name) VALUES ('verify-ro')", user='app_ro')
    with pytest.raises(psycopg2.errors.InsufficientPrivilege):
        query("DELETE FROM items", user='app_ro')


def test_owner_cannot_create_roles():
    with pytest.raises(psycopg2.errors.InsufficientPrivilege):
        query('CREATE ROLE verify_intruder', user='app_owner')


def test_default_privileges_cover_tables_created_later():
    query('CREATE TABLE verify_new (id int)', user='app_owner')
    try:
        query('INSERT INTO verify_new VALUES (1)', user='app_rw')
        assert query('SELECT id FROM verify_new', user='app_ro') == [(1,)]
        with pytest.raises(psycopg2.errors.InsufficientPrivilege):
            query('INSERT INTO verify_new VALUES (2)', user='app_ro')
    finally:
        query('DROP TABLE verify_new', user='app_owner')


def test_extension_is_installed():
    assert query("SELECT extname FROM pg_extension WHERE extname = 'pg_stat_statements'") == [('pg_stat_statements',)]


# --- managed files -------------------------------------------------------------

@pytest.mark.parametrize('path', [CONF_FILE, HBA_FILE])
def test_managed_files_carry_header_and_strict_mode(host, path):
    f = host.file(path)
    assert f.exists
    assert f.user == 'postgres'
    assert f.mode & 0o027 == 0, '%s has mode %o: want 0640 or stricter' % (path, f.mode)
    assert 'Ansible managed' in '\n'.join(f.content_string.splitlines()[:3])


def test_tls_key_is_private(host):
    key = host.file(CONF_DIR + '/server.key')
    assert key.user == 'postgres' and key.mode == 0o600


def test_hba_starts_with_postgres_peer_and_has_no_trust(host):
    rules = [line.split() for line in host.file(HBA_FILE).content_string.splitlines()
             if line.strip() and not line.startswith('#')]
    assert rules[0][:4] == ['local', 'all', 'postgres', 'peer']
    assert not any('trust' in rule for rule in rules)
    assert ['hostssl', 'app', '+app_read', '10.20.0.0/16', 'scram-sha-256'] in [r[:5] for r in rules]


# --- side effects (side_effect.yml) ------------------------------------------

def test_check_mode_on_converged_host_reports_no_change(results):
    run = results['check']
    assert run['rc'] == 0, run['stdout'][-3000:]
    assert recap(run) == dict(changed=0, unreachable=0, failed=0)
    assert run['before'] == run['after']


def unchanged(run):
    assert run['before']['conf_checksum'] == run['after']['conf_checksum'], 'the settings file changed'
    assert run['before']['hba_checksum'] == run['after']['hba_checksum'], 'pg_hba.conf changed'
    assert run['before']['server'] == run['after']['server'], 'the running server changed'


def test_bad_setting_name_fails_naming_it_and_changes_nothing(results):
    run = results['bad_name']
    out = run['stdout']
    assert run['rc'] != 0
    assert 'unrecognized configuration parameter \\"shared_bufers\\" in file \\"%s\\" line' % CONF_FILE in out
    assert '%s was left unchanged and the server keeps its running configuration' % CONF_FILE in out
    assert 'RUNNING HANDLER' not in out
    unchanged(run)


def test_bad_setting_value_fails_naming_it_and_changes_nothing(results):
    run = results['bad_value']
    assert run['rc'] != 0
    assert 'invalid value for parameter \\"work_mem\\": \\"lots\\"' in run['stdout']
    assert 'RUNNING HANDLER' not in run['stdout']
    unchanged(run)


def test_bad_hba_address_fails_naming_the_entry_before_any_change(results):
    run = results['bad_hba']
    assert run['rc'] != 0
    assert ('server_hba_entries[4] (host app app_rw 10.0.0.300/24 scram-sha-256): address '
            '\\"10.0.0.300/24\\" is not a valid IP network') in run['stdout']
    assert recap(run)['changed'] == 0
    unchanged(run)


def test_bad_hba_type_fails_in_the_argument_spec_before_any_change(results):
    run = results['bad_contype']
    assert run['rc'] != 0
    assert 'contype' in run['stdout'] and 'hots' in run['stdout']
    assert recap(run)['changed'] == 0
    unchanged(run)


def test_reload_only_setting_is_applied_without_restart(results):
    run = results['reload_only']
    assert run['rc'] == 0, run['stdout'][-3000:]
    assert run['after']['server']['work_mem'] == '12MB'
    assert run['after']['server']['started'] == run['before']['server']['started']
    assert run['after']['server']['pending_restart'] == 0


def test_restart_happens_when_the_server_asks_for_it(results):
    run = results['restart']
    assert run['rc'] == 0, run['stdout'][-3000:]
    assert run['after']['server']['max_connections'] == '150'
    assert run['after']['server']['started'] != run['before']['server']['started']
    assert run['after']['server']['pending_restart'] == 0


def test_converge_restores_the_scenario_state(results):
    run = results['restore']
    assert run['rc'] == 0, run['stdout'][-3000:]
    assert run['after']['conf_checksum'] == results['check']['before']['conf_checksum']
    assert run['after']['server']['max_connections'] == results['check']['before']['server']['max_connections']
