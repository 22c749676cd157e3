"""The example migrations folder and playbooks/migrate.yml against a real cluster."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from ansible_collections.dbdevops.postgresql.plugins.module_utils.connection import ConnParams
from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate.engine import MigrateEngine
from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate.options import MigrateOptions
from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate.verify import verify_rollback
from tests.harness.migrate_samples import info, migrate

from tests.harness import REPO_ROOT as ROOT  # noqa: E402
EXAMPLES = os.path.join(ROOT, 'examples', 'migrations')
PLACEHOLDERS = {'batch_size': 2}


def test_examples_apply_verify_downgrade_and_reapply(pg_db):
    pg, db = pg_db
    params = ConnParams.from_params(pg.conn_params(db))
    report = verify_rollback(params, MigrateOptions(EXAMPLES, placeholders=PLACEHOLDERS))
    assert report['verified'] is True, report['failure']
    assert report['checked'] == [str(v) for v in range(1, 8)]

    options = dict(placeholders=PLACEHOLDERS)
    result = migrate(MigrateEngine(params, MigrateOptions(EXAMPLES, target='4', **options)))
    assert result['current_version'] == '4'
    pg.sql("INSERT INTO users (username, email) SELECT 'u' || g, 'u' || g || '@x' "
           "FROM generate_series(1, 7) g", dbname=db)
    result = migrate(MigrateEngine(params, MigrateOptions(EXAMPLES, **options)))
    assert [a['version'] for a in result['applied']] == ['5', '6', '7']
    assert result['lint'] == []                        # the zero-downtime steps lint clean
    assert pg.sql('SELECT count(*) FROM users WHERE display_name = username', dbname=db) == [(7,)]
    assert pg.sql("SELECT attnotnull FROM pg_attribute WHERE attrelid = 'users'::regclass "
                  "AND attname = 'display_name'", dbname=db) == [(True,)]
    assert migrate(MigrateEngine(params, MigrateOptions(EXAMPLES, **options)))['changed'] is False
    state = info(pg_db, EXAMPLES, **options)
    assert state['drift']['drifted'] is False and state['pending'] == []
    pg.sql('DELETE FROM users', dbname=db)
    result = migrate(MigrateEngine(params, MigrateOptions(EXAMPLES, target='0', allow_downgrade=True, **options)))
    assert [a['version'] for a in result['applied']] == ['7', '6', '5', '4', '3', '2', '1']
    assert pg.sql("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'", dbname=db) == [(1,)]


def run_playbook(pg, db, path, **extra):
    if not os.environ.get('ANSIBLE_COLLECTIONS_PATH'):
        pytest.skip('ANSIBLE_COLLECTIONS_PATH not set: source scripts/bootstrap.sh dev')
    variables = dict(migrate_hosts='localhost', migrate_db=db, migrate_path=path,
                     migrate_login_unix_socket=pg.socket_dir,
                     migrate_login_port=pg.port, migrate_placeholders=PLACEHOLDERS, **extra)
    env = dict(os.environ, ANSIBLE_PYTHON_INTERPRETER=sys.executable,
               ANSIBLE_SHOW_CUSTOM_STATS='1')
    return subprocess.run(['ansible-playbook', os.path.join(ROOT, 'playbooks', 'migrate.yml'),
                           '-e', json.dumps(variables)], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=300, check=False)


def custom_stats(out):
    for line in out.stdout.splitlines():
        if line.strip().startswith('RUN: '):
            return json.loads(line.strip()[len('RUN: '):])['dbdevops_migrate']['localhost']
    raise AssertionError('no custom stats in:\n' + out.stdout[-3000:])


def test_playbook_rolls_back_to_starting_version_on_failure(pg_db, tmp_path):
    pg, db = pg_db
    path = str(tmp_path / 'migrations')
    shutil.copytree(EXAMPLES, path)
    migrate(MigrateEngine(ConnParams.from_params(pg.conn_params(db)),
                          MigrateOptions(path, target='2', placeholders=PLACEHOLDERS)))
    with open(os.path.join(path, 'V8__broken.sql'), 'w') as handle:
        handle.write('ALTER TABLE users ADD COLUMN x int;\nALTER TABLE nope ADD COLUMN y int;\n')

    out = run_playbook(pg, db, path, migrate_rollback_on_failure=True)
    assert out.returncode != 0, out.stdout[-2000:]
    stats = custom_stats(out)
    assert stats['failed'] is True and stats['rolled_back'] is True and stats['current_version'] == '2'
    assert 'V8__broken.sql line 2' in stats['error']
    assert pg.sql('SELECT max(version::int) FROM dbdevops_schema_history WHERE success AND type = %s',
                  ('versioned',), dbname=db) == [(7,)]
    assert info(pg_db, path, placeholders=PLACEHOLDERS)['current_version'] == '2'

    os.unlink(os.path.join(path, 'V8__broken.sql'))
    backups = str(tmp_path / 'backups')
    out = run_playbook(pg, db, path, migrate_rollback_on_failure=True, migrate_backup_dest=backups)
    assert out.returncode == 0, out.stdout[-3000:]
    stats = custom_stats(out)
    assert stats['failed'] is False and stats['current_version'] == '7'
    assert [a['version'] for a in stats['applied']] == ['3', '4', '5', '6', '7']
    assert stats['backup_path'] and stats['backup_path'].startswith(backups)      # backup taken first
    assert os.path.exists(stats['backup_path'])
