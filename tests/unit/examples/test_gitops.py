"""The GitOps example's pipeline steps (examples/gitops/ci/migrations.sh), run locally against a real cluster."""

import json
import os
import shutil
import subprocess

import pytest

from tests.harness import REPO_ROOT
from tests.harness.pgcluster import SUPERUSER_PASSWORD


@pytest.fixture
def repo(pg_db, tmp_path):
    """A migrations repository made from the example: its pipeline files, examples/migrations, an inventory."""
    cluster, db = pg_db
    root = tmp_path / 'repo'
    shutil.copytree(os.path.join(REPO_ROOT, 'examples', 'gitops'), str(root))
    shutil.copytree(os.path.join(REPO_ROOT, 'examples', 'migrations'), str(root / 'migrations'))
    conn = cluster.conn_params(dbname=db, password=True)
    inventory = {'all': {'children': {'postgresql': {'hosts': {'app-db': dict(
        ansible_connection='local', ansible_python_interpreter='/usr/bin/python3',
        dbdevops_login_host=conn['login_host'], dbdevops_login_port=conn['login_port'],
        dbdevops_login_user='postgres', dbdevops_become=False, migrate_db=db,
        migrate_path=str(root / 'migrations'), migrate_placeholders={'batch_size': 1000},
        migrate_backup_dest=str(tmp_path / 'backups'))}}}}}
    (root / 'inventories' / 'test.yml').write_text(json.dumps(inventory))
    return cluster, db, root


def step(root, name):
    env = dict(os.environ, INVENTORY='inventories/test.yml', DBDEVOPS_LOGIN_PASSWORD=SUPERUSER_PASSWORD,
               ANSIBLE_NOCOLOR='1')
    return subprocess.run(['bash', 'ci/migrations.sh', name], cwd=str(root), env=env, capture_output=True,
                          text=True, timeout=600, check=False)


def version(cluster, db):
    rows = cluster.sql("SELECT to_regclass('public.dbdevops_schema_history') IS NOT NULL", dbname=db)
    if not rows[0][0]:
        return None
    return cluster.sql("SELECT max(version::int) FROM dbdevops_schema_history WHERE success AND type = 'versioned'",
                       dbname=db)[0][0]


def test_pull_request_plans_merge_applies_broken_migration_is_stopped(repo, tmp_path):
    cluster, db, root = repo
    planned = step(root, 'plan')
    assert planned.returncode == 0, planned.stdout[-3000:] + planned.stderr
    assert 'V7__' in planned.stdout                        # --diff shows the pending SQL
    assert version(cluster, db) is None                    # a pull request changes nothing
    assert SUPERUSER_PASSWORD not in planned.stdout + planned.stderr

    applied = step(root, 'apply')
    assert applied.returncode == 0, applied.stdout[-3000:] + applied.stderr
    assert version(cluster, db) == 7
    assert len(os.listdir(str(tmp_path / 'backups'))) == 1   # backed up before migrating

    broken = 'ALTER TABLE users ADD COLUMN nickname text;\nALTER TABLE no_such_table ADD COLUMN x int;\n'
    (root / 'migrations' / 'V8__broken.sql').write_text(broken)
    (root / 'migrations' / 'U8__broken.sql').write_text('ALTER TABLE users DROP COLUMN nickname;\n')
    planned = step(root, 'plan')
    assert planned.returncode != 0                         # the verified rollback ran it on a scratch database
    assert 'no_such_table' in planned.stdout
    assert version(cluster, db) == 7

    applied = step(root, 'apply')
    assert applied.returncode != 0 and 'no_such_table' in applied.stdout
    assert version(cluster, db) == 7
    assert cluster.sql("SELECT count(*) FROM information_schema.columns WHERE column_name = 'nickname'",
                       dbname=db) == [(0,)]
