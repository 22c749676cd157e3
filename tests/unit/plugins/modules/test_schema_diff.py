"""The schema_diff module: fingerprints of src and dst, a sync script written to dest."""

import os

import pytest
from ansible.module_utils.common import warnings as ansible_warnings

from ansible_collections.dbdevops.postgresql.plugins.modules import schema_diff
from tests.harness.modules import run_module
from tests.harness.pgcluster import free_port


@pytest.fixture
def two_dbs(pg_db):
    """(cluster, source database, destination database): the second one empty."""
    pg, db = pg_db
    other = pg.create_database(db + '_other')
    yield pg, db, other
    pg.sql('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % other)


def test_writes_sync_script_check_mode_writes_nothing(two_dbs, tmp_path):
    pg, db, other = two_dbs
    pg.sql('CREATE TABLE users (id int PRIMARY KEY, email text)', dbname=db)
    dest = str(tmp_path / 'sync.sql')
    args = dict(pg.conn_params(db), dst=dict(db=other), dest=dest)

    checked = run_module(schema_diff, args, check=True, diff=True)
    assert not checked['failed'] and checked['changed'] and not os.path.exists(dest)
    assert checked['identical'] is False and checked['summary'][0].startswith('+ ')
    assert checked['diff']['before'] == '' and checked['diff']['after'] == checked['sync_script']

    real = run_module(schema_diff, args, diff=True)
    assert real['changed'] and open(dest).read() == real['sync_script'] == checked['sync_script']
    assert sorted(real) == sorted(checked)                     # check mode answers with the same keys
    assert real['warnings'] == []
    assert os.listdir(str(tmp_path)) == ['sync.sql']   # no temporary file left

    again = run_module(schema_diff, args, check=True, diff=True)
    assert again['changed'] is False and 'diff' not in again
    assert run_module(schema_diff, args)['changed'] is False
    pg.sql(open(dest).read(), dbname=other)
    result = run_module(schema_diff, args)
    assert result['identical'] is True and result['changed'] is True   # new, empty script
    assert result['source_fingerprint'] == result['target_fingerprint']


def test_blocks_over_top_level_and_no_dest_means_no_change(two_dbs):
    pg, db, other = two_dbs
    pg.sql('CREATE TABLE only_src (id int)', dbname=db)
    # the top level points at the destination database and a closed port; each block fixes what it needs
    top = dict(pg.conn_params(other), login_port=free_port())
    result = run_module(schema_diff, dict(top, src=dict(db=db, port=pg.port), dst=dict(login_port=pg.port)))
    assert not result['failed'], result.get('msg')
    assert result['changed'] is False and result['identical'] is False
    assert sorted(result['summary']) == ['+ column public.only_src.id (integer)', '+ table public.only_src']
    # src unset: the source is the top-level connection
    same = run_module(schema_diff, dict(pg.conn_params(db), dst=dict(db=db)))
    assert same['identical'] is True and same['changed'] is False
    wrong = run_module(schema_diff, dict(top, src=dict(db=db, port=pg.port), dst=dict(db=other)))
    assert wrong['failed'] and 'cannot connect' in wrong['msg'] and '"%s"' % other in wrong['msg']


def test_exclude_tables_bare_name_in_any_schema_and_quoted_names(two_dbs):
    pg, db, other = two_dbs
    pg.sql('CREATE SCHEMA app; CREATE TABLE app.audit (id serial); CREATE TABLE public.audit (x int); '
           'CREATE SCHEMA "odd.schema"; CREATE TABLE "odd.schema"."T" (y int); CREATE TABLE public.kept (z int)',
           dbname=db)
    args = dict(pg.conn_params(db), dst=dict(db=other))
    result = run_module(schema_diff, dict(args, exclude_tables=['audit', '"odd.schema"."T"']))
    objects = set(d['object'] for d in result['differences'])
    assert not any('audit' in o or '"T"' in o for o in objects), objects
    assert 'table public.kept' in objects and 'schema "odd.schema"' in objects
    only_app = run_module(schema_diff, dict(args, exclude_tables=['app.audit']))
    objects = set(d['object'] for d in only_app['differences'])
    assert 'table public.audit' in objects and 'table app.audit' not in objects
    assert not any('audit_id_seq' in o for o in objects)           # the table's own sequence goes with it
    bad = run_module(schema_diff, dict(args, exclude_tables=['a.b.c']))
    assert bad['failed'] and 'cannot read the table name' in bad['msg']


def test_deprecated_flat_target_options_still_work_and_warn(two_dbs, tmp_path):
    pg, db, other = two_dbs
    pg.sql('CREATE TABLE users (id int PRIMARY KEY)', dbname=db)
    dest = str(tmp_path / 'sync.sql')
    conn = pg.conn_params(db)
    new = run_module(schema_diff, dict(conn, dst=dict(db=other), dest=dest), check=True)
    ansible_warnings._global_deprecations.clear()
    old = run_module(schema_diff, dict(conn, target_db=other, target_login_port=pg.port,
                                       target_login_unix_socket=pg.socket_dir, dest=dest), check=True)
    deprecations = [d['msg'] for d in ansible_warnings.get_deprecation_messages()]
    ansible_warnings._global_deprecations.clear()
    assert not old['failed'] and old['changed'] is True
    assert old['sync_script'] == new['sync_script'] and old['target_fingerprint'] == new['target_fingerprint']
    for flat in ('target_db', 'target_login_port', 'target_login_unix_socket'):
        assert "Param '%s' is deprecated" % flat in ' '.join(deprecations)

    # the flat options still reach the destination: a wrong one fails there
    wrong = run_module(schema_diff, dict(conn, target_db=other, target_login_port=free_port()))
    assert wrong['failed'] and 'cannot connect' in wrong['msg'] and '"%s"' % other in wrong['msg']
    both = run_module(schema_diff, dict(conn, dst=dict(db=other), target_db=other))
    assert both['failed'] and 'mutually exclusive' in both['msg']
    neither = run_module(schema_diff, dict(conn))
    assert neither['failed'] and 'one of the following is required: dst, target_db' in neither['msg']


def test_whole_schema_compared_and_synced_with_a_real_diff(two_dbs, tmp_path):
    """Comments, grants, RLS and policies, storage parameters, domains: listed, diffed and synced."""
    pg, db, other = two_dbs
    body = '\n'.join('    PERFORM %d;  -- a line of a long body' % i for i in range(30))
    common = ('CREATE DOMAIN positive AS int CHECK (VALUE > 0); '
              'CREATE TABLE accounts (id positive PRIMARY KEY, email text); '
              'CREATE FUNCTION work() RETURNS void LANGUAGE plpgsql AS $$BEGIN\n%s\nEND$$;')
    pg.sql(common % body, dbname=other)
    pg.sql(common % body.replace('PERFORM 17;', 'PERFORM 1700;') + """
        COMMENT ON COLUMN accounts.email IS 'login';
        GRANT SELECT ON accounts TO PUBLIC;
        ALTER TABLE accounts ENABLE ROW LEVEL SECURITY, SET (fillfactor = 70);
        CREATE POLICY mine ON accounts USING (email = current_user);
        ALTER DOMAIN positive ADD CONSTRAINT small CHECK (VALUE < 100);
        """, dbname=db)
    dest = str(tmp_path / 'sync.sql')
    args = dict(pg.conn_params(db), dst=dict(db=other), dest=dest)
    result = run_module(schema_diff, args)
    assert not result['failed'] and result['identical'] is False
    summary = result['summary']
    assert '~ column public.accounts.email (comment: null -> login)' in summary
    assert '~ table public.accounts (acl: +PUBLIC: SELECT; options: +fillfactor=70; rls: false -> true)' in summary
    assert '+ policy public.accounts.mine (PERMISSIVE FOR ALL TO PUBLIC USING (email = CURRENT_USER))' in summary
    assert any(s.startswith('~ type public.positive (constraints differs)') for s in summary)
    function = [s for s in summary if s.startswith('~ function public.work()')][0]
    assert '\n    -    PERFORM 17;  -- a line of a long body' in function
    assert '\n    +    PERFORM 1700;  -- a line of a long body' in function
    pg.sql(open(dest).read(), dbname=other)
    again = run_module(schema_diff, args)
    assert again['identical'] is True, again['summary']
