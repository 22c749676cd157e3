"""Shared set-up for the migration tests: write a folder of files, build and run an engine; no tests here."""

import os

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
