"""Verify the monitoring role on localhost against its own cluster 15/monmol (see ../vars/main.yml)."""

import os
import re
import uuid

import pytest
import yaml

VARS = yaml.safe_load(open(os.path.join(os.path.dirname(__file__), '..', 'vars', 'main.yml')))
VERSION, CLUSTER, PORT = str(VARS['monitoring_version']), VARS['monitoring_cluster_name'], VARS['monitoring_port']
LOG = '/var/log/postgresql/postgresql-%s-%s.log' % (VERSION, CLUSTER)
LOGROTATE = '/etc/logrotate.d/dbdevops-postgresql-%s-%s' % (VERSION, CLUSTER)
RULES = '/etc/prometheus/rules/dbdevops-postgresql.rules.yml'
RULES_TESTS = '/etc/prometheus/rules/dbdevops-postgresql.rules.test.yml'
METRICS_URL = 'http://127.0.0.1:9187/metrics'
HEALTH_CONFIG = '/etc/dbdevops-health/health-%s-%s.json' % (VERSION, CLUSTER)
PGBADGER = '/usr/local/bin/dbdevops-pgbadger-%s-%s' % (VERSION, CLUSTER)


def psql(host, sql, db='postgres'):
    """Run SQL as postgres over the socket; stdout, stripped."""
    return host.check_output("runuser -u postgres -- psql -X -At -v ON_ERROR_STOP=1 -p %d -d %s -c %s"
                             % (PORT, db, _quote(sql)))


def _quote(text):
    return "'" + text.replace("'", "'\"'\"'") + "'"


def log_text(host, *suffixes):
    return ''.join(host.file(LOG + s).content_string for s in suffixes if host.file(LOG + s).exists)


@pytest.fixture(scope='module', autouse=True)
def scenario_cluster_online(host):
    """Fail clearly, not test by test, when prepare did not create the scenario's cluster."""
    if host.run('pg_ctlcluster %s %s status' % (VERSION, CLUSTER)).rc != 0:
        pytest.fail('cluster %s/%s is not running: did prepare run? (destroy resets molecule state)' % (VERSION, CLUSTER))


def test_preload_kept_the_foreign_entry_first_and_added_ours(host):
    # prepare preloaded pg_prewarm from conf.d/other-role.conf, as another role would
    assert psql(host, 'SHOW shared_preload_libraries') == 'pg_prewarm, pg_stat_statements, auto_explain, pgaudit'
    assert psql(host, "SELECT count(*) FROM pg_settings WHERE pending_restart") == '0'
    # the libraries are really loaded: their views and settings work
    assert int(psql(host, 'SELECT count(*) FROM pg_stat_statements')) >= 0
    assert psql(host, 'SHOW auto_explain.log_min_duration') == '10s'
    assert psql(host, 'SHOW auto_explain.log_analyze') == 'off'


def test_extensions_present(host):
    names = set(psql(host, 'SELECT extname FROM pg_extension').split())
    assert {'pg_stat_statements', 'pg_buffercache', 'pg_prewarm', 'pgaudit'} <= names


def test_logging_settings(host):
    assert psql(host, 'SHOW log_line_prefix') == '%t [%p]: user=%u,db=%d,app=%a,client=%h '
    assert psql(host, 'SHOW log_min_duration_statement') == '200ms'
    for name in ('log_lock_waits', 'log_connections', 'log_disconnections'):
        assert psql(host, 'SHOW %s' % name) == 'on'
    assert psql(host, 'SHOW log_temp_files') == '0'
    assert psql(host, 'SHOW log_autovacuum_min_duration') == '10s'


def test_exporter_reports_pg_up_and_the_metrics_the_rules_use(host):
    metrics = host.check_output('curl -sf %s' % METRICS_URL)
    assert re.search(r'(?m)^pg_up 1$', metrics)
    exposed = set(re.findall(r'(?m)^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]', metrics))
    rules = yaml.safe_load(host.file(RULES).content_string)
    used = set()
    for group in rules['groups']:
        for rule in group['rules']:
            used.update(re.findall(r'\b(pg_[a-z0-9_]+)\b', rule['expr']))
    assert used, 'no pg_ metric found in the rules'
    assert used <= exposed, 'rules use metrics the exporter does not expose: %s' % sorted(used - exposed)


def test_exporter_least_privilege_and_secret_handling(host):
    row = psql(host, "SELECT rolsuper, rolcreaterole, rolcreatedb, pg_has_role(oid, 'pg_monitor', 'member'), "
                     "rolpassword LIKE 'SCRAM-SHA-256$%' FROM pg_authid WHERE rolname = 'dbdevops_exporter'")
    assert row == 'f|f|f|t|t'
    default = host.file('/etc/default/prometheus-postgres-exporter')
    assert default.user == 'root' and default.group == 'prometheus' and default.mode == 0o640
    password = VARS['monitoring_exporter_login_password']
    processes = host.check_output('ps -eww -o args')
    assert password not in processes
    assert '--web.listen-address=127.0.0.1:9187' in processes
    listening = host.check_output('ss -Hltn sport = :9187')
    assert '127.0.0.1:9187' in listening and '*:9187' not in listening


def test_alert_rules_unit_tests_pass_and_catch_a_broken_rule(host):
    run = host.run('promtool test rules %s' % RULES_TESTS)
    assert run.rc == 0 and 'SUCCESS' in run.stdout, run.stdout + run.stderr
    # the same tests against a rule that can never fire must fail
    work = host.check_output('mktemp -d')
    try:
        host.check_output('cp %s %s %s/' % (RULES, RULES_TESTS, work))
        host.check_output("sed -i 's/pg_replication_lag > [0-9]*/pg_replication_lag > 1e12/' %s/%s"
                          % (work, os.path.basename(RULES)))
        broken = host.run('promtool test rules %s/%s' % (work, os.path.basename(RULES_TESTS)))
        assert broken.rc != 0 and 'PostgresqlReplicationLag' in broken.stdout + broken.stderr
    finally:
        host.run('rm -rf %s' % work)


def test_audit_line_for_a_statement(host):
    table = 'audit_probe_%s' % uuid.uuid4().hex[:8]
    psql(host, 'CREATE TABLE %s (id int)' % table)
    psql(host, 'DROP TABLE %s' % table)
    text = log_text(host, '.1', '')
    assert re.search(r'AUDIT: SESSION,\d+,\d+,DDL,CREATE TABLE,TABLE,public\.%s,' % table, text), text[-2000:]


def test_logrotate_keeps_every_line(host):
    marker = uuid.uuid4().hex[:10]
    psql(host, "DO $$BEGIN RAISE LOG 'rotate-before-%s'; END$$" % marker)
    run = host.run('logrotate --force --state /var/tmp/dbdevops-molecule-monitoring/logrotate.state %s' % LOGROTATE)
    assert run.rc == 0, run.stderr
    psql(host, "DO $$BEGIN RAISE LOG 'rotate-after-%s'; END$$" % marker)
    rotated, current = log_text(host, '.1'), log_text(host, '')
    assert 'rotate-before-%s' % marker in rotated
    assert 'rotate-after-%s' % marker in current
    # the server kept appending at the start of the truncated file (O_APPEND), no hole of NUL bytes
    assert '\x00' not in current
    # Debian's own policy no longer claims this file (no duplicate-entry error)
    debug = host.run('logrotate --debug /etc/logrotate.conf')
    said = debug.stdout + debug.stderr
    assert 'error: postgresql-common:1 duplicate log entry for %s' % LOG not in said
    assert 'ignore duplicate log entry for %s' % LOG in said


def test_cron_entries(host):
    lines = host.check_output('crontab -l -u postgres').splitlines()
    for name, command in (('pgbadger', PGBADGER), ('health', '/usr/local/bin/dbdevops-health')):
        marker = lines.index('#Ansible: dbdevops.postgresql %s (%s/%s)' % (name, VERSION, CLUSTER))
        assert command in lines[marker + 1]


def test_pgbadger_report_names_a_slow_query(host):
    psql(host, 'SELECT pg_sleep(0.3) AS monmol_slow_probe')
    command = host.check_output("crontab -l -u postgres | grep -A1 'dbdevops.postgresql pgbadger' | tail -1")
    job = command.split(None, 5)[5]
    run = host.run('runuser -u postgres -- sh -c %s' % _quote(job))
    assert run.rc == 0, run.stdout + run.stderr
    reports = host.check_output('ls -1 %s' % VARS['monitoring_pgbadger_dir']).split()
    assert len(reports) == 1 and reports[0].endswith('.html')
    html = host.file('%s/%s' % (VARS['monitoring_pgbadger_dir'], reports[0])).content_string
    assert 'monmol_slow_probe' in html


def test_health_cron_command_writes_its_report(host):
    config = host.file(HEALTH_CONFIG)
    assert config.user == 'postgres' and config.mode == 0o600
    command = host.check_output("crontab -l -u postgres | grep -A1 'dbdevops.postgresql health' | tail -1")
    job = command.split(None, 5)[5]
    log = VARS['monitoring_health_log_file']
    before = host.file(log).content_string
    run = host.run('runuser -u postgres -- sh -c %s' % _quote(job))
    assert run.rc in (0, 1, 2), run.stdout + run.stderr  # the exit status is the verdict
    added = host.file(log).content_string[len(before):]
    first = added.splitlines()[0]
    assert re.search(r'status=(ok|warning|critical) ok=\d+ warning=\d+ critical=\d+', first), added
    assert ':%d/' % PORT in first or str(PORT) in first
