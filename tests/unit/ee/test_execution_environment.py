"""The AWX execution environment definition validates and builds a context (ansible-builder create)."""

import os
import shutil
import subprocess

import yaml

from tests.harness import REPO_ROOT

EE_FILE = os.path.join(REPO_ROOT, 'execution-environment', 'execution-environment.yml')


def _create(ee_file, context):
    builder = shutil.which('ansible-builder')
    assert builder, 'ansible-builder is not installed (requirements-dev.txt)'
    return subprocess.run([builder, 'create', '-f', ee_file, '-c', str(context), '--output-filename', 'Containerfile'],
                          capture_output=True, text=True, check=False)


def test_the_definition_builds_a_context_with_every_dependency(tmp_path):
    done = _create(EE_FILE, tmp_path / 'context')
    assert done.returncode == 0, done.stdout + done.stderr
    build = tmp_path / 'context' / '_build'
    containerfile = (tmp_path / 'context' / 'Containerfile').read_text()
    assert 'ansible-core==2.19.14' in containerfile and 'ansible-runner==2.4.3' in containerfile
    assert 'psycopg2-binary' in (build / 'requirements.txt').read_text()
    assert 'postgresql' in (build / 'bindep.txt').read_text()
    collections = yaml.safe_load((build / 'requirements.yml').read_text())['collections']
    assert {c['name'] for c in collections} == {'dbdevops.postgresql', 'community.postgresql'}


def test_the_collection_declares_its_own_ee_dependencies():
    meta = yaml.safe_load(open(os.path.join(REPO_ROOT, 'meta', 'execution-environment.yml')))
    for key in ('python', 'system'):
        assert os.path.exists(os.path.join(REPO_ROOT, meta['dependencies'][key]))


def test_a_broken_definition_is_refused(tmp_path):
    broken = tmp_path / 'ee.yml'
    broken.write_text('version: 3\ndependencies:\n  galaxy: 42\nnot_an_option: true\n')
    done = _create(str(broken), tmp_path / 'context')
    assert done.returncode != 0
