"""The health CLI as cron runs it: from the engine zip the roles build, under /usr/bin/python3 -I.

The command line is exactly the one the ``monitoring`` role's wrapper uses::

    /usr/bin/python3 -c 'import sys; sys.path.insert(0, ZIP); from ...health.cli import main; sys.exit(main())' \
        --config FILE

Exit status 0 ok, 1 warning, 2 critical, 3 usage or config error.
"""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from tests.harness import REPO_ROOT
from tests.harness.pgcluster import SUPERUSER_PASSWORD, free_port

from .conftest import session

SYSTEM_PYTHON = '/usr/bin/python3'
BUILD = os.path.join(REPO_ROOT, 'roles', 'backup', 'files', 'build_engine_zip.py')
WRAPPER = ('import sys; sys.path.insert(0, %r); '
           'from ansible_collections.dbdevops.postgresql.plugins.module_utils.health.cli import main; sys.exit(main())')
FIRST_LINE = re.compile(r'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ (\S+) status=(ok|warning|critical) ok=(\d+) warning=(\d+) '
                        r'critical=(\d+)$')


@pytest.fixture(scope='module')
def engine_zip():
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        pytest.skip('no %s on this machine' % SYSTEM_PYTHON)
    built = json.loads(subprocess.run(
        [sys.executable, BUILD, os.path.join(REPO_ROOT, 'plugins', 'module_utils'), '_module.py'],
        check=True, stdout=subprocess.PIPE, universal_newlines=True).stdout)
    os.chmod(built['dir'], 0o755)
    assert 'health/cli.py' in built['files'] and 'health/engine.py' in built['files']
    yield built['path']
    shutil.rmtree(built['dir'], ignore_errors=True)


def run_cli(engine_zip, tmp_path, config, *extra):
    path = tmp_path / ('config-%d.json' % len(os.listdir(str(tmp_path))))
    path.write_text(config if isinstance(config, str) else json.dumps(config))
    env = dict((k, v) for k, v in os.environ.items() if not k.startswith('PYTHON'))
    return subprocess.run([SYSTEM_PYTHON, '-I', '-c', WRAPPER % engine_zip, '--config', str(path)] + list(extra),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, env=env,
                          check=False, timeout=120)


def _config(cluster, **extra):
    conn = cluster.conn_params()
    return dict(dict(login_unix_socket=conn['login_host'], login_port=conn['login_port'], login_user='postgres',
                     memory_mb=1024, cpus=2), **extra)


def test_healthy_cluster_exits_0_with_one_line(fresh, engine_zip, tmp_path):
    done = run_cli(engine_zip, tmp_path, dict(_config(fresh), _comment='managed by a test'))
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    match = FIRST_LINE.match(lines[0])
    assert match, lines
    assert match.group(1) == 'localhost:%d/postgres' % fresh.port and match.group(2) == 'ok'
    assert int(match.group(3)) >= 13 and match.group(4) == '0' and match.group(5) == '0'
    assert all(line.startswith('skipped ') for line in lines[1:]), lines


def test_warning_exits_1_and_lists_the_check(pg_db, engine_zip, tmp_path):
    cluster, name = pg_db
    cluster.sql('CREATE TABLE t (id int PRIMARY KEY, v int); CREATE INDEX t_v ON t (v)', dbname=name)
    done = run_cli(engine_zip, tmp_path, _config(cluster, db=name, unused_index_min_bytes=0,
                                                 skip_checks=['cache_hit']))
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert FIRST_LINE.match(lines[0]).group(2) == 'warning'
    assert [ln for ln in lines if ln.startswith('warning unused_indexes: ')], lines
    as_json = run_cli(engine_zip, tmp_path, _config(cluster, db=name, unused_index_min_bytes=0,
                                                    skip_checks=['cache_hit']), '--json')
    assert as_json.returncode == 1
    result = json.loads(as_json.stdout)
    assert result['status'] == 'warning' and result['changed'] is False
    assert [c['status'] for c in result['checks'] if c['name'] == 'unused_indexes'] == ['warning']


def test_idle_in_transaction_over_the_critical_limit_exits_2(pg_db, engine_zip, tmp_path):
    cluster, name = pg_db
    with session(cluster, name) as idle:
        idle.cursor().execute('SELECT 1')
        done = run_cli(engine_zip, tmp_path, _config(cluster, db=name, idle_in_transaction_warning_seconds=0,
                                                     idle_in_transaction_critical_seconds=0))
    assert done.returncode == 2, done.stdout + done.stderr
    assert [ln for ln in done.stdout.splitlines() if ln.startswith('critical sessions: ')], done.stdout


def test_server_down_and_wrong_password_exit_2_without_traceback(pg, engine_zip, tmp_path):
    down = run_cli(engine_zip, tmp_path, dict(login_host='127.0.0.1', login_port=free_port()))
    assert down.returncode == 2, down.stdout + down.stderr
    assert 'status=critical' in down.stdout.splitlines()[0]
    assert 'critical connection: cannot connect' in down.stdout and 'refused' in down.stdout
    password_file = tmp_path / 'password'
    password_file.write_text('wrong-one\n')
    bad = run_cli(engine_zip, tmp_path, dict(login_host='127.0.0.1', login_port=pg.port,
                                             login_password_file=str(password_file)))
    assert bad.returncode == 2 and 'password authentication failed' in bad.stdout, bad.stdout + bad.stderr
    for done in (down, bad):
        assert 'Traceback' not in done.stdout + done.stderr and 'wrong-one' not in done.stdout + done.stderr
    assert SUPERUSER_PASSWORD not in bad.stdout


@pytest.mark.parametrize('config, expected', [
    ({'lock_wait_warning_secs': 3}, 'unknown option(s) lock_wait_warning_secs'),
    ({'top_n': 'many'}, 'option top_n must be a int'),
    ({'tuning_workload': 'batch'}, 'option tuning_workload is '),
    ({'skip_checks': ['nope']}, 'skip_checks names unknown check(s) nope'),
    ({'fail_on': 'never'}, 'unknown option(s) fail_on'),
    ('{not json', 'cannot read config'),
])
def test_config_errors_exit_3_naming_the_problem(engine_zip, tmp_path, config, expected):
    done = run_cli(engine_zip, tmp_path, config)
    assert done.returncode == 3, done.stdout + done.stderr
    assert expected in done.stderr and 'FAILED: ' in done.stderr and 'Traceback' not in done.stderr


def test_missing_config_and_bad_arguments_exit_3(engine_zip, tmp_path):
    env = dict((k, v) for k, v in os.environ.items() if not k.startswith('PYTHON'))

    def run(*argv):
        return subprocess.run([SYSTEM_PYTHON, '-I', '-c', WRAPPER % engine_zip] + list(argv), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, universal_newlines=True, env=env, check=False)

    missing = run('--config', str(tmp_path / 'none.json'))
    assert missing.returncode == 3 and 'cannot read config' in missing.stderr
    wrong = run('--frobnicate')
    assert wrong.returncode == 3 and 'unrecognized arguments' in wrong.stderr
