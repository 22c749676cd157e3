"""The module adapter (_module): connection options, libpq fallbacks, and plan/apply driving."""

import dataclasses
import types

import pytest

from ansible_collections.dbdevops.postgresql.plugins.module_utils import _module
from ansible_collections.dbdevops.postgresql.plugins.module_utils._contract import Plan, finish
from ansible_collections.dbdevops.postgresql.plugins.module_utils._options import from_params, option
from ansible_collections.dbdevops.postgresql.plugins.module_utils.connection import SSL_MODES
from ansible_collections.dbdevops.postgresql.plugins.module_utils.errors import DbDevopsError
from tests.harness.modules import run_module


def test_connection_options_are_named_as_community_postgresql_names_them():
    spec = _module.connection_spec()
    assert set(spec) == {'login_user', 'login_password', 'login_host', 'login_unix_socket',
                         'login_port', 'db', 'ssl_mode', 'ca_cert', 'ssl_cert', 'ssl_key',
                         'connect_params'}
    assert spec['login_password']['no_log'] is True
    assert spec['db']['aliases'] == ['login_db']
    assert spec['login_port']['aliases'] == ['port']
    assert spec['ca_cert']['aliases'] == ['ssl_rootcert']
    assert spec['ssl_mode']['choices'] == SSL_MODES
    assert spec['login_user']['default'] == 'postgres'      # not read from $PGUSER at import time
    blocks = _module.connection_spec(defaults=False)
    assert all('default' not in v and 'fallback' not in v for v in blocks.values())


@dataclasses.dataclass
class EchoOptions(object):
    what: str = option('plan')
    fail: bool = option(False, type='bool')


class EchoEngine(object):
    """Reports what it was given; 'fails' on request after computing its result."""

    def __init__(self, conn, opts):
        self.conn, self.opts = conn, opts

    def plan(self):
        values = dict(port=self.conn.login_port, user=self.conn.login_user, db=self.conn.db,
                      ran='nothing')
        return Plan(True, values, diff=dict(before='a', after='b'), warnings=['planned'])

    def apply(self, plan):
        values = dict(plan.values, ran=self.opts.what)
        if self.opts.fail:
            raise DbDevopsError('it failed: see ran', **finish(values, True, warnings=['late']))
        return finish(values, changed=True, diff=plan.diff, warnings=plan.warnings)


def _main():
    module = _module.new_module(EchoOptions)
    _module.run(module, lambda p: EchoEngine(_module.conn_params(p), from_params(EchoOptions, p)))


ECHO = types.SimpleNamespace(main=_main, __name__='echo')


def test_libpq_environment_fills_what_the_task_leaves_unset(monkeypatch):
    monkeypatch.setenv('PGPORT', '6543')
    monkeypatch.setenv('PGUSER', 'app_owner')
    monkeypatch.setenv('PGDATABASE', 'app')
    result = run_module(ECHO, dict(what='real'))
    assert (result['port'], result['user'], result['db']) == (6543, 'app_owner', 'app')
    result = run_module(ECHO, dict(what='real', login_port=5433, login_user='u'))
    assert (result['port'], result['user']) == (5433, 'u')              # the task wins


def test_defaults_without_environment(monkeypatch):
    for name in ('PGPORT', 'PGUSER', 'PGDATABASE', 'PGHOST', 'PGSSLMODE'):
        monkeypatch.delenv(name, raising=False)
    result = run_module(ECHO, {})
    assert (result['port'], result['user'], result['db']) == (5432, 'postgres', '')


def test_check_mode_answers_with_the_plan_and_diff_only_in_diff_mode():
    checked = run_module(ECHO, dict(what='real'), check=True)
    assert checked['ran'] == 'nothing' and checked['changed'] is True
    assert 'diff' not in checked and checked['warnings'] == ['planned']
    real = run_module(ECHO, dict(what='real'), diff=True)
    assert real['ran'] == 'real' and real['diff'] == dict(before='a', after='b')
    assert set(checked) == set(real) - {'diff'}


def test_an_engine_error_is_one_message_with_its_details():
    result = run_module(ECHO, dict(what='real', fail=True))
    assert result['failed'] is True and result['msg'] == 'it failed: see ran'
    assert result['ran'] == 'real' and result['warnings'] == ['late']
    assert 'Traceback' not in repr(result)


def test_blocks_fall_back_to_the_top_level():
    params = dict(login_host='db1', login_port=5433, login_user='top', db='app', login_password='x',
                  login_unix_socket='', ssl_mode='prefer', ca_cert=None, ssl_cert=None, ssl_key=None,
                  connect_params={})
    side = _module.conn_params(params, dict(db='other', login_port=None, login_user='blk'))
    assert (side.login_host, side.login_port, side.login_user, side.db) == ('db1', 5433, 'blk', 'other')


@pytest.mark.parametrize('bad', [dict(login_port='x'), dict(ssl_mode='sometimes'), dict(nope=1)])
def test_bad_connection_options_fail_cleanly(bad):
    result = run_module(ECHO, bad)
    assert result['failed'] is True and 'Traceback' not in result['msg']
