"""Runner subprocesses against one database: concurrent runs, and kill -9 mid-migration."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from tests.harness.migrate_samples import write

RUNNER = r'''
import json, sys
from ansible_collections.dbdevops.postgresql.plugins.module_utils.connection import ConnParams
from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate.engine import MigrateEngine
from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate.options import MigrateOptions
from ansible_collections.dbdevops.postgresql.plugins.module_utils.errors import DbDevopsError
params, path = json.loads(sys.argv[1]), sys.argv[2]
try:
    engine = MigrateEngine(ConnParams.from_params(params), MigrateOptions(path, lock_wait=60))
    result = engine.apply(engine.plan())
except DbDevopsError as exc:
    print(json.dumps({'failed': True, 'msg': str(exc)}))
    sys.exit(1)
print(json.dumps({'failed': False, 'applied': [a['version'] for a in result['applied']],
                  'current_version': result['current_version']}))
'''


def start_runner(pg, db, path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    return subprocess.Popen([sys.executable, '-c', RUNNER, json.dumps(pg.conn_params(db)), path],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            universal_newlines=True)


def test_four_runs_at_once_apply_each_migration_exactly_once(pg_db, tmp_path):
    pg, db = pg_db
    files = {}
    for v in range(1, 9):
        files['V%d__step.sql' % v] = ('CREATE TABLE t%d (id int);\nINSERT INTO t%d SELECT pg_sleep(0.05)::text::int'
                                      ' WHERE false;\nSELECT pg_sleep(0.05);\n' % (v, v))
    files['V9__index.sql'] = ('-- dbdevops:transaction=off\n'
                              'CREATE INDEX CONCURRENTLY t1_id_idx ON t1 (id);\n')
    path = write(tmp_path, files)
    procs = [start_runner(pg, db, path) for dummy in range(4)]
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, (out, err)
        outputs.append(json.loads(out))
    assert all(o['current_version'] == '9' for o in outputs)
    applied = sorted(v for o in outputs for v in o['applied'])
    assert applied == sorted(str(v) for v in range(1, 10))           # each exactly once overall
    assert sum(1 for o in outputs if o['applied']) >= 1
    hist = pg.sql('SELECT version, count(*) FROM schema_migrations GROUP BY version ORDER BY 1',
                  dbname=db)
    assert hist == [(str(v), 1) for v in range(1, 10)]


@pytest.mark.parametrize('tail', ['CREATE TABLE never (id int);\n', ''],
                         ids=['long statement in the middle', 'long statement last, sent with the history row'])
def test_kill_9_mid_migration_leaves_nothing_partial_and_rerun_finishes(pg_db, tmp_path, tail):
    pg, db = pg_db
    path = write(tmp_path, {
        'V1__users.sql': 'CREATE TABLE users (id int);',
        'V2__long.sql': 'CREATE TABLE half_done (id int);\nINSERT INTO users VALUES (1);\n'
                        'SELECT pg_sleep(30);\n' + tail,
    })
    proc = start_runner(pg, db, path)
    deadline = time.time() + 30
    while time.time() < deadline:
        busy = pg.sql("SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(30)%%' "
                      "AND state = 'active'", dbname=db)[0][0]
        if busy:
            break
        time.sleep(0.05)
    assert busy, 'the runner never reached the long statement'
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    # the server notices the dead client (client_connection_check_interval) and rolls back
    deadline = time.time() + 15
    while time.time() < deadline and pg.sql(
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(30)%%'",
            dbname=db)[0][0]:
        time.sleep(0.1)
    tables = sorted(r[0] for r in pg.sql("SELECT tablename FROM pg_tables WHERE schemaname = 'public'",
                                         dbname=db))
    assert tables == ['schema_migrations', 'users']                   # no half_done
    assert pg.sql('SELECT count(*) FROM users', dbname=db) == [(0,)]
    assert pg.sql('SELECT version, success FROM schema_migrations ORDER BY installed_rank',
                  dbname=db) == [('1', True)]

    write(tmp_path, {'V2__long.sql': 'CREATE TABLE half_done (id int);\nINSERT INTO users VALUES (1);\n'
                                     'SELECT pg_sleep(0.1);\n' + tail})
    proc = start_runner(pg, db, path)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, (out, err)
    assert json.loads(out)['applied'] == ['2']
    assert pg.sql('SELECT count(*) FROM users', dbname=db) == [(1,)]
