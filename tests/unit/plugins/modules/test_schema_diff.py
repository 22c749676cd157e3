"""The schema_diff module: fingerprints of two databases and a sync script."""

import os

from ansible_collections.dbdevops.postgresql.plugins.modules import schema_diff
from tests.harness.modules import run_module


def run(module, args, check=False, diff=False):
    result = run_module(module, args, check=check, diff=diff)
    return result, result['failed']


def test_schema_diff_writes_sync_script(pg, pg_db, tmp_path):
    _pg, db = pg_db
    other = pg.create_database(db + '_other')
    try:
        pg.sql('CREATE TABLE users (id int PRIMARY KEY, email text)', dbname=db)
        dest = str(tmp_path / 'sync.sql')
        args = dict(pg.conn_params(db), target_db=other, dest=dest)
        result, failed = run(schema_diff, args, check=True)
        assert not failed and result['changed'] and not os.path.exists(dest)
        assert result['identical'] is False and result['summary'][0].startswith('+ ')
        result, failed = run(schema_diff, args)
        assert result['changed'] and os.path.exists(dest)
        assert run(schema_diff, args)[0]['changed'] is False
        pg.sql(open(dest).read(), dbname=other)
        result, dummy = run(schema_diff, args)
        assert result['identical'] is True and result['changed'] is True   # new, empty script
    finally:
        pg.sql('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % other)
