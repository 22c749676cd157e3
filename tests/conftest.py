"""Shared pytest set-up: the collection on sys.path and PostgreSQL fixtures.

Fixtures
  pg          one cluster for the whole session (fast; use a fresh database)
  pg_db       a fresh database in ``pg`` for one test: (cluster, dbname)
  pg_factory  start as many extra clusters as a test needs: pg_factory(settings={...})
All clusters are stopped and removed even when a test fails.
"""

import atexit
import itertools
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _collections_root():
    """A directory holding ansible_collections/dbdevops/postgresql -> this checkout."""
    marker = os.path.join('ansible_collections', 'dbdevops', 'postgresql')
    if ROOT.endswith(os.sep + marker):
        return ROOT[:-len(marker) - 1]
    venv = os.environ.get('DBDEVOPS_COLLECTIONS') or os.path.join(ROOT, '.venv', 'collections')
    link = os.path.join(venv, marker)
    if not os.path.exists(link):
        os.makedirs(os.path.dirname(link), exist_ok=True)
        os.symlink(ROOT, link)
    return venv


sys.path.insert(0, _collections_root())
sys.path.insert(0, ROOT)

from tests.harness import pgcluster  # noqa: E402

atexit.register(pgcluster.destroy_all)
_db_counter = itertools.count(1)


@pytest.fixture(scope='session')
def pg():
    cluster = pgcluster.PgCluster().start()
    yield cluster
    cluster.destroy()


@pytest.fixture
def pg_db(pg):
    name = 'test_%d_%d' % (os.getpid(), next(_db_counter))
    pg.create_database(name)
    yield pg, name
    try:
        pg.sql('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % name)
    except Exception:  # noqa: BLE001 - cluster may have been stopped by the test
        pass


@pytest.fixture
def pg_factory():
    started = []

    def factory(**kwargs):
        cluster = pgcluster.PgCluster(**kwargs).start()
        started.append(cluster)
        return cluster

    yield factory
    for cluster in started:
        cluster.destroy()


@pytest.fixture
def dest():
    """An empty backup root (0700, owned by the cluster's OS user), removed afterwards."""
    from tests.harness.backup_samples import make_dest, rm
    path = make_dest()
    yield path
    rm(path)


@pytest.fixture
def sample_db(pg_db):
    """A fresh database in ``pg`` loaded with the backup tests' sample schema and rows."""
    from tests.harness.backup_samples import load_sample
    cluster, name = pg_db
    load_sample(cluster, name)
    return cluster, name
