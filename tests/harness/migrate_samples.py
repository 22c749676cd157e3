"""Shared set-up for the migration tests: write a folder of files, build an engine; no tests here."""

import os

from ansible_collections.dbdevops.postgresql.plugins.module_utils.connection import ConnParams
from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate.engine import (
    MigrateOptions, Migrator)


def write(folder, files):
    """Write {name: text} into folder exactly as given (no newline translation)."""
    os.makedirs(str(folder), exist_ok=True)
    for name, text in files.items():
        with open(os.path.join(str(folder), name), 'w', newline='') as handle:
            handle.write(text)
    return str(folder)


def engine(pg_db, path, **opts):
    """A Migrator for the (cluster, dbname) of the pg_db fixture."""
    pg, db = pg_db
    return Migrator(ConnParams.from_params(pg.conn_params(db)), MigrateOptions(path, **opts))
