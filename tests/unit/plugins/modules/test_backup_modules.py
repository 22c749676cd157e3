"""The four modules as Ansible runs them (argument parsing, check mode, results, failures)."""

import json
import os

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.dbdevops.postgresql.plugins.modules import backup, backup_info, data_compare
from ansible_collections.dbdevops.postgresql.plugins.modules import restore as restore_module
from tests.harness.pgcluster import SUPERUSER_PASSWORD, free_port


def run_module(module, args, capsys, check_mode=False, diff=False):
    args = dict(args)
    if check_mode:
        args['_ansible_check_mode'] = True
    if diff:
        args['_ansible_diff'] = True
    with patch_module_args(args):
        with pytest.raises(SystemExit) as exit_info:
            module.main()
    out = capsys.readouterr().out
    result = json.loads(out)
    result['_rc'] = exit_info.value.code
    return result


def test_backup_check_mode_then_real_then_info_restore_compare(sample_db, dest, capsys):
    cluster, name = sample_db
    conn = cluster.conn_params(dbname=name, password=True)
    args = dict(conn, dest=dest, retention_keep_last=1)

    first = run_module(backup, args, capsys)
    assert first['changed'] is True and first['_rc'] == 0
    checked = run_module(backup, args, capsys, check_mode=True, diff=True)
    assert checked['changed'] is True
    assert checked['deleted'] == [first['backup_id']]  # the new one would push it out
    assert checked['diff'] == dict(before=dict(backups=[first['backup_id']]),
                                   after=dict(backups=[checked['backup_id']]))
    assert os.listdir(dest) == [first['backup_id']]  # check mode changed nothing
    assert SUPERUSER_PASSWORD not in json.dumps(checked)

    second = run_module(backup, dict(args, format='directory', jobs=2), capsys, diff=True)
    assert second['deleted'] == [first['backup_id']] and second['retention_corrupt'] == []
    assert second['diff'] == dict(before=dict(backups=[first['backup_id']]),
                                  after=dict(backups=[second['backup_id']]))
    assert os.listdir(dest) == [second['backup_id']]
    assert second['manifest']['format'] == 'directory' and second['bytes'] > 0
    assert second['compression_supported'] == ['none', 'gzip']
    assert SUPERUSER_PASSWORD not in json.dumps(second)

    info = run_module(backup_info, dict(dest=dest, verify=True), capsys)
    assert info['changed'] is False and info['count'] == 1
    assert info['backups'][0]['status'] == 'verified' and info['latest'] == {name: second['backup_id']}

    target = name + '_m'
    would = run_module(restore_module, dict(conn, src=dest, target_db=target), capsys,
                       check_mode=True, diff=True)
    assert would['changed'] is True and would['action'] == 'create'
    assert would['diff']['before']['state'] == 'absent'
    assert target not in [r[0] for r in cluster.sql('SELECT datname FROM pg_database')]
    done = run_module(restore_module, dict(conn, src=dest, target_db=target, jobs=2), capsys)
    assert done['verification']['passed'] is True and done['tables'] == 4
    assert len(done['restored_tables']) == 4 and done['skipped'] == []

    cmp_args = dict(src=dict(db=name, login_unix_socket=cluster.socket_dir, login_port=cluster.port),
                    dst=dict(db=target, login_host='127.0.0.1', login_port=cluster.port,
                             login_password=SUPERUSER_PASSWORD))
    same = run_module(data_compare, cmp_args, capsys)
    assert same['equal'] is True and same['changed'] is False and same['tables_compared'] == 4
    # top-level connection options are the defaults of both blocks; a block's own value wins
    top = dict(login_host='127.0.0.1', login_port=cluster.port, login_password=SUPERUSER_PASSWORD)
    shared = run_module(data_compare, dict(top, src=dict(db=name), dst=dict(login_db=target)), capsys)
    assert shared['equal'] is True and shared['tables_compared'] == 4
    wrong = run_module(data_compare, dict(top, src=dict(db=name), dst=dict(db=target, port=free_port())), capsys)
    assert wrong['failed'] is True and 'reading the destination' in wrong['msg']
    assert SUPERUSER_PASSWORD not in json.dumps(shared) + json.dumps(wrong)
    cluster.sql("UPDATE public.customers SET name = 'changed' WHERE id = 3", dbname=target)
    differ = run_module(data_compare, dict(cmp_args, fail_on_difference=True), capsys)
    assert differ['_rc'] == 1 and differ['failed'] is True
    assert differ['differences'] == [dict(table='"public"."customers"', status='content differs',
                                          src_rows=300, dst_rows=300)]
    assert 'the databases differ in 1 table(s)' in differ['msg']

    drill = run_module(restore_module, dict(conn, src=dest, drill=True), capsys)
    assert drill['drill']['passed'] is True and drill['changed'] is False
    cluster.sql('DROP DATABASE "%s"' % target)


def test_module_failures_are_one_clear_message(sample_db, dest, capsys):
    cluster, name = sample_db
    bad = run_module(backup, dict(cluster.conn_params(dbname=name, password='wrong'), dest=dest), capsys)
    assert bad['failed'] is True and 'password authentication failed' in bad['msg']
    assert 'wrong' not in bad['msg'].replace('wrong-', '')
    zstd = run_module(backup, dict(cluster.conn_params(dbname=name), dest=dest, compression='zstd'), capsys)
    assert zstd['failed'] is True and 'needs pg_dump 16 or later' in zstd['msg']
    missing = run_module(restore_module, dict(cluster.conn_params(), src=dest, backup_id='nope'), capsys)
    assert missing['failed'] is True and 'backup "nope" not found' in missing['msg']
    both = run_module(backup, dict(dest=dest, databases=['a'], all_databases=True), capsys)
    assert both['failed'] is True and 'mutually exclusive' in both['msg']
    assert os.listdir(dest) == []
