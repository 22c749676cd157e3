"""Options declared once (_options): the argument spec and the host CLI reader come from one dataclass."""

import dataclasses

import pytest

from ansible_collections.dbdevops.postgresql.plugins.module_utils import _options
from ansible_collections.dbdevops.postgresql.plugins.module_utils._contract import Plan, finish, same_shape
from ansible_collections.dbdevops.postgresql.plugins.module_utils.errors import DbDevopsError
from ansible_collections.dbdevops.postgresql.plugins.module_utils._options import option


@dataclasses.dataclass
class Sample(object):
    dest: str = option(type='path', required=True)
    format: str = option('custom', choices=['custom', 'directory'])
    jobs: int = option(1, type='int')
    databases: list = option([], type='list', elements='str', aliases=['dbs'])
    secret: str = option('', no_log=True, cli=False)
    internal: int = option(7, type='int', module=False)
    RULES = dict(mutually_exclusive=[('databases', 'jobs')])


def test_argument_spec_from_the_dataclass():
    spec = _options.argument_spec(Sample)
    assert spec['dest'] == dict(type='path', required=True)
    assert spec['format'] == dict(type='str', choices=['custom', 'directory'], default='custom')
    assert spec['databases'] == dict(type='list', elements='str', aliases=['dbs'], default=[])
    assert spec['secret']['no_log'] is True
    assert 'internal' not in spec
    assert _options.rules(Sample) == dict(mutually_exclusive=[('databases', 'jobs')])


def test_mutable_defaults_are_not_shared():
    a, b = Sample(dest='/a'), Sample(dest='/b')
    a.databases.append('x')
    assert b.databases == []


def test_from_params_keeps_defaults_for_unset_options():
    opts = _options.from_params(Sample, dict(dest='/x', format=None, jobs=3, internal=99))
    assert (opts.dest, opts.format, opts.jobs, opts.internal) == ('/x', 'custom', 3, 7)


def test_from_mapping_coerces_and_accepts_aliases():
    opts = _options.from_mapping(Sample, dict(dest='/x', jobs='4', dbs='a, b'), where='backup.json')
    assert (opts.jobs, opts.databases) == (4, ['a', 'b'])


@pytest.mark.parametrize('config, message', [
    (dict(dest='/x', jbos=2), r'backup\.json: unknown option\(s\) jbos; known options are'),
    (dict(jobs=2), r'backup\.json: option dest is required'),
    (dict(dest='/x', jobs='two'), r"backup\.json: option jobs must be a int, got 'two'"),
    (dict(dest='/x', format='tar'), r"backup\.json: option format is 'tar'; choose one of custom, directory"),
    (dict(dest='/x', secret='s'), r'unknown option\(s\) secret'),
])
def test_from_mapping_errors_name_the_file_and_option(config, message):
    with pytest.raises(DbDevopsError, match=message):
        _options.from_mapping(Sample, config, where='backup.json')


def test_from_mapping_ignores_keys_that_belong_elsewhere():
    opts = _options.from_mapping(Sample, dict(dest='/x', login_port=5433), 'c', ignore=('login_port',))
    assert opts.dest == '/x'


def test_plan_result_and_a_real_result_have_one_shape():
    plan = Plan(True, dict(applied=[], version='1'), diff=dict(before='a', after='b'), warnings=['w'])
    planned = plan.result()
    assert planned == dict(applied=[], version='1', changed=True, diff=dict(before='a', after='b'),
                           warnings=['w'])
    applied = finish(dict(applied=['1'], version='2'), changed=True)
    assert same_shape(planned, applied) == ([], [])
    assert same_shape(planned, dict(applied, extra=1)) == ([], ['extra'])
