"""Every filter plugin file documents and registers exactly the filter it is named after."""

import glob
import importlib
import os

import pytest
import yaml

from tests.harness import REPO_ROOT

FILTER_DIR = os.path.join(REPO_ROOT, 'plugins', 'filter')
NAMES = sorted(os.path.splitext(os.path.basename(p))[0]
               for p in glob.glob(os.path.join(FILTER_DIR, '*.py')) if not p.endswith('__init__.py'))


def load(name):
    return importlib.import_module('ansible_collections.dbdevops.postgresql.plugins.filter.%s' % name)


def test_the_server_role_filters_are_all_there():
    assert NAMES == ['server_conf_value', 'server_group_privileges', 'server_hba_problems',
                     'server_hba_rules', 'server_tuning']


@pytest.mark.parametrize('name', NAMES)
def test_file_registers_only_its_own_filter(name):
    module = load(name)
    filters = module.FilterModule().filters()
    assert list(filters) == [name]
    assert filters[name] is getattr(module, name)


@pytest.mark.parametrize('name', NAMES)
def test_file_has_its_own_documentation(name):
    module = load(name)
    doc = yaml.safe_load(module.DOCUMENTATION)
    assert doc['name'] == name
    assert doc['short_description'] and doc['description'] and doc['options']['_input']['required']
    assert yaml.safe_load(module.RETURN)['_value']['description']
    examples = yaml.safe_load(module.EXAMPLES)
    assert any('dbdevops.postgresql.%s' % name in yaml.safe_dump(task) for task in examples)
