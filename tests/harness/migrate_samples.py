"""Shared set-up for the migration tests: write a folder of files, build and run an engine; no tests here."""

import json
import os
import subprocess
import sys
import time

from ansible_collections.dbdevops.postgresql.plugins.module_utils.connection import ConnParams
from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate.engine import (
    MigrateEngine, MigrationInfoEngine)
from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate.options import (
    MigrateOptions, MigrationInfoOptions)


def write(folder, files):
    """Write {name: text} into folder exactly as given (no newline translation)."""
    os.makedirs(str(folder), exist_ok=True)
    for name, text in files.items():
        with open(os.path.join(str(folder), name), 'w', newline='') as handle:
            handle.write(text)
    return str(folder)


def params_of(pg_db):
    """ConnParams for the (cluster, dbname) of the pg_db fixture."""
    pg, db = pg_db
    return ConnParams.from_params(pg.conn_params(db))


def engine(pg_db, path, **opts):
    """A MigrateEngine for the (cluster, dbname) of the pg_db fixture."""
    return MigrateEngine(params_of(pg_db), MigrateOptions(path, **opts))


def migrate(eng):
    """What the module does on a real run: plan(), then apply(plan); the result dict."""
    return eng.apply(eng.plan())


def plan_of(eng):
    """The migration plan (steps, warnings, sql_text()) behind ``eng.plan()``: check mode."""
    return eng.plan().work['migration']


def info(pg_db, path, **opts):
    """migration_info's result for the pg_db fixture's database."""
    eng = MigrationInfoEngine(params_of(pg_db), MigrationInfoOptions(path, **opts))
    return eng.apply(eng.plan())


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
    """The engine's plan + apply in a child process (to run several at once, or kill -9 one)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    return subprocess.Popen([sys.executable, '-c', RUNNER, json.dumps(pg.conn_params(db)), path],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            universal_newlines=True)


def wait_for_query(pg, db, prefix, timeout=30):
    """Wait until a session of ``db`` is running a query starting with ``prefix``; True when seen."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pg.sql("SELECT count(*) FROM pg_stat_activity WHERE query LIKE %s AND state = 'active' "
                  "AND pid <> pg_backend_pid()", (prefix + '%',), dbname=db)[0][0]:
            return True
        time.sleep(0.05)
    return False
