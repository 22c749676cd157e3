"""The four modules as Ansible runs them (argument parsing, check mode, results, failures)."""

import json
import os

from ansible_collections.dbdevops.postgresql.plugins.modules import backup, backup_info, data_compare
from ansible_collections.dbdevops.postgresql.plugins.modules import restore as restore_module
from tests.harness.modules import run_module
from tests.harness.pgcluster import SUPERUSER_PASSWORD, free_port


def test_backup_check_mode_then_real_then_info_restore_compare(sample_db, dest):
    cluster, name = sample_db
    conn = cluster.conn_params(dbname=name, password=True)
    args = dict(conn, dest=dest, retention_keep_last=1)

    first = run_module(backup, args)
    assert first['changed'] is True and first['failed'] is False
    checked = run_module(backup, args, check=True, diff=True)
    assert checked['changed'] is True
    assert checked['deleted'] == [first['backup_id']]  # the new one would push it out
    assert checked['diff'] == dict(before=dict(backups=[first['backup_id']]),
                                   after=dict(backups=[checked['backup_id']]))
    assert os.listdir(dest) == [first['backup_id']]  # check mode changed nothing
    assert SUPERUSER_PASSWORD not in json.dumps(checked)

    second = run_module(backup, dict(args, format='directory', jobs=2), diff=True)
    assert second['deleted'] == [first['backup_id']] and second['retention_corrupt'] == []
    assert second['diff'] == dict(before=dict(backups=[first['backup_id']]),
                                  after=dict(backups=[second['backup_id']]))
    assert os.listdir(dest) == [second['backup_id']]
    assert second['manifest']['format'] == 'directory' and second['bytes'] > 0
    assert second['compression_supported'] == ['none', 'gzip']
    assert SUPERUSER_PASSWORD not in json.dumps(second)

    info = run_module(backup_info, dict(dest=dest, verify=True))
    assert info['changed'] is False and info['count'] == 1
    assert info['backups'][0]['status'] == 'verified' and info['latest'] == {name: second['backup_id']}

    target = name + '_m'
    would = run_module(restore_module, dict(conn, src=dest, target_db=target),
                       check=True, diff=True)
    assert would['changed'] is True and would['action'] == 'create'
    assert would['diff']['before']['state'] == 'absent'
    assert target not in [r[0] for r in cluster.sql('SELECT datname FROM pg_database')]
    done = run_module(restore_module, dict(conn, src=dest, target_db=target, jobs=2))
    assert done['verification']['passed'] is True and done['tables'] == 4
    assert len(done['restored_tables']) == 4 and done['skipped'] == []

    cmp_args = dict(src=dict(db=name, login_unix_socket=cluster.socket_dir, login_port=cluster.port),
                    dst=dict(db=target, login_host='127.0.0.1', login_port=cluster.port,
                             login_password=SUPERUSER_PASSWORD))
    same = run_module(data_compare, cmp_args)
    assert same['equal'] is True and same['changed'] is False and same['tables_compared'] == 4
    # top-level connection options are the defaults of both blocks; a block's own value wins
    top = dict(login_host='127.0.0.1', login_port=cluster.port, login_password=SUPERUSER_PASSWORD)
    shared = run_module(data_compare, dict(top, src=dict(db=name), dst=dict(login_db=target)))
    assert shared['equal'] is True and shared['tables_compared'] == 4
    wrong = run_module(data_compare, dict(top, src=dict(db=name), dst=dict(db=target, port=free_port())))
    assert wrong['failed'] is True and 'reading the destination' in wrong['msg']
    assert SUPERUSER_PASSWORD not in json.dumps(shared) + json.dumps(wrong)
    cluster.sql("UPDATE public.customers SET name = 'changed' WHERE id = 3", dbname=target)
    differ = run_module(data_compare, dict(cmp_args, fail_on_difference=True))
    assert differ['failed'] is True
    assert differ['differences'] == [dict(table='"public"."customers"', status='content differs',
                                          src_rows=300, dst_rows=300)]
    assert 'the databases differ in 1 table(s)' in differ['msg']

    drill = run_module(restore_module, dict(conn, src=dest, drill=True))
    assert drill['drill']['passed'] is True and drill['changed'] is False
    cluster.sql('DROP DATABASE "%s"' % target)


def test_module_failures_are_one_clear_message(sample_db, dest):
    cluster, name = sample_db
    bad = run_module(backup, dict(cluster.conn_params(dbname=name, password='wrong'), dest=dest))
    assert bad['failed'] is True and 'password authentication failed' in bad['msg']
    assert 'wrong' not in bad['msg'].replace('wrong-', '')
    zstd = run_module(backup, dict(cluster.conn_params(dbname=name), dest=dest, compression='zstd'))
    assert zstd['failed'] is True and 'needs pg_dump 16 or later' in zstd['msg']
    missing = run_module(restore_module, dict(cluster.conn_params(), src=dest, backup_id='nope'))
    assert missing['failed'] is True and 'backup "nope" not found' in missing['msg']
    both = run_module(backup, dict(dest=dest, databases=['a'], all_databases=True))
    assert both['failed'] is True and 'mutually exclusive' in both['msg']
    assert os.listdir(dest) == []


def _same_keys(checked, real):
    assert not checked['failed'], checked.get('msg')
    assert not real['failed'], real.get('msg')
    assert sorted(checked) == sorted(real), (sorted(set(checked) ^ set(real)))


def test_check_mode_answers_with_the_keys_of_a_real_run(sample_db, dest):
    """One shape: backup (custom format, retention), restore (new database, drill), backup_info."""
    cluster, name = sample_db
    conn = cluster.conn_params(dbname=name, password=True)
    first = run_module(backup, dict(conn, dest=dest))
    args = dict(conn, dest=dest, format='custom', retention_keep_last=1)
    checked = run_module(backup, args, check=True, diff=True)
    real = run_module(backup, args, diff=True)
    _same_keys(checked, real)
    assert checked['deleted'] == real['deleted'] == [first['backup_id']]
    assert checked['backups'][0]['database'] == real['backups'][0]['database'] == name
    assert sorted(checked['backups'][0]) == sorted(real['backups'][0])
    assert checked['manifest'] == {} and real['manifest']['format'] == 'custom'

    for verify in (False, True):
        _same_keys(run_module(backup_info, dict(dest=dest, verify=verify), check=True),
                   run_module(backup_info, dict(dest=dest, verify=verify)))

    target = name + '_keys'
    try:
        restore_args = dict(conn, src=dest, target_db=target, tables=['customers', 'sales.orders'])
        checked = run_module(restore_module, restore_args, check=True, diff=True)
        real = run_module(restore_module, restore_args, diff=True)
        _same_keys(checked, real)
        for key in ('backup_id', 'target_db', 'action', 'tables', 'restored_tables', 'skipped',
                    'globals_restored', 'diff'):
            assert checked[key] == real[key], key
        assert checked['verification'] == {} and real['verification']['passed'] is True
    finally:
        cluster.sql('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % target)

    drill_args = dict(conn, src=dest, drill=True)
    checked = run_module(restore_module, drill_args, check=True)
    real = run_module(restore_module, drill_args)
    _same_keys(checked, real)
    assert sorted(checked['drill']) == sorted(real['drill'])
    assert checked['drill']['passed'] is None and real['drill']['passed'] is True
    assert checked['changed'] is False and real['changed'] is False
