"""Runner subprocesses against one database: concurrent runs, and kill -9 mid-migration."""

import json
import os
import signal
import time

import pytest
from tests.harness.migrate_samples import start_runner, write


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
    hist = pg.sql('SELECT version, count(*) FROM dbdevops_schema_history GROUP BY version ORDER BY 1',
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
    assert tables == ['dbdevops_schema_history', 'users']                   # no half_done
    assert pg.sql('SELECT count(*) FROM users', dbname=db) == [(0,)]
    assert pg.sql('SELECT version, success FROM dbdevops_schema_history ORDER BY installed_rank',
                  dbname=db) == [('1', True)]

    write(tmp_path, {'V2__long.sql': 'CREATE TABLE half_done (id int);\nINSERT INTO users VALUES (1);\n'
                                     'SELECT pg_sleep(0.1);\n' + tail})
    proc = start_runner(pg, db, path)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, (out, err)
    assert json.loads(out)['applied'] == ['2']
    assert pg.sql('SELECT count(*) FROM users', dbname=db) == [(1,)]
