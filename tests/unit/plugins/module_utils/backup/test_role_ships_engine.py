"""The backup role ships an engine the host command can run: what the role copies, imported by the system Python.

The role's install tasks run for real (``--tags backup_install``) into a
temporary folder; then ``/usr/bin/python3 -I`` (no Ansible, no PYTHONPATH,
only what the role copied) runs the installed command.  A module_utils file
the CLI needs and the role does not ship, or a shipped file that needs
Ansible, fails here rather than in cron.
"""

import json
import os
import re
import subprocess
import sys

import pytest

from ansible_collections.dbdevops.postgresql.plugins.module_utils.backup import cli

SYSTEM_PYTHON = '/usr/bin/python3'
ENGINE_MODULES = ('cli', 'engine', 'restore', 'catalog', '_tools')
PLAYBOOK = '''
- name: Install the backup engine only
  hosts: all
  gather_facts: false
  roles:
    - role: dbdevops.postgresql.backup
'''


def _collections_root():
    marker = os.sep + os.path.join('ansible_collections', 'dbdevops', 'postgresql') + os.sep
    path = os.path.abspath(cli.__file__)
    return path[:path.index(marker)]


@pytest.fixture(scope='module')
def installed(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip('the role installs files owned by root')
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        pytest.skip('no %s on this machine' % SYSTEM_PYTHON)
    base = tmp_path_factory.mktemp('role-install')
    play = base / 'play.yml'
    play.write_text(PLAYBOOK)
    install_dir, command = str(base / 'lib'), str(base / 'bin' / 'dbdevops-backup')
    os.makedirs(os.path.dirname(command))
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=_collections_root(), ANSIBLE_NOCOWS='1')
    done = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), 'ansible-playbook'), '-i', 'localhost,', '-c', 'local',
         '--tags', 'backup_install', '-e', 'ansible_python_interpreter=%s' % sys.executable,
         '-e', 'backup_install_dir=%s' % install_dir, '-e', 'backup_command=%s' % command, str(play)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, env=env, check=False)
    assert done.returncode == 0, done.stdout
    package = os.path.join(install_dir, 'ansible_collections', 'dbdevops', 'postgresql', 'plugins',
                           'module_utils')
    return dict(base=str(base), install_dir=install_dir, command=command, package=package)


def _system_python(*args, **kwargs):
    env = dict((k, v) for k, v in os.environ.items() if not k.startswith('PYTHON'))
    return subprocess.run([SYSTEM_PYTHON, '-I'] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, env=env, check=False, **kwargs)


def test_shipped_files_need_no_ansible(installed):
    shipped = []
    for dirpath, _dirs, files in os.walk(installed['package']):
        shipped += [os.path.join(dirpath, name) for name in files]
    names = set(os.path.relpath(p, installed['package']) for p in shipped)
    assert {'errors.py', 'connection.py', '_pgclient.py', '_options.py', 'backup/cli.py'} <= names
    assert '_module.py' not in names and not [n for n in names if not n.endswith('.py')]
    for path in shipped:
        with open(path) as handle:
            text = handle.read()
        assert not re.search(r'^\s*(from|import) ansible(\.|\s|$)', text, re.M), path


def test_system_python_imports_the_engine_and_runs_the_command(installed):
    imports = '; '.join('import ansible_collections.dbdevops.postgresql.plugins.module_utils.backup.%s' % name
                        for name in ENGINE_MODULES)
    done = _system_python('-c', 'import sys; sys.path.insert(0, %r); %s' % (installed['install_dir'], imports))
    assert done.returncode == 0, done.stderr
    done = _system_python(installed['command'], '--help')
    assert done.returncode == 0, done.stderr
    assert 'dbdevops-backup' in done.stdout and 'backup' in done.stdout and 'list' in done.stdout


def test_installed_command_reads_configs_old_and_new_and_refuses_unknown_keys(installed):
    dest = os.path.join(installed['base'], 'backups')
    os.makedirs(dest, exist_ok=True)
    configs = dict(
        flat=dict(_managed='by a test', dest=dest, login_port=5432, retention_keep_last=3, retention_verify=True),
        nested=dict(dest=dest, login_port=5432, retention=dict(keep_last=3, keep_days=None)),
        unknown=dict(dest=dest, retention_keep_lats=3),
        unknown_nested=dict(dest=dest, retention=dict(keep=3)),
        wrong_type=dict(dest=dest, jobs='many'),
    )
    runs = {}
    for label, config in configs.items():
        path = os.path.join(installed['base'], '%s.json' % label)
        with open(path, 'w') as handle:
            json.dump(config, handle)
        runs[label] = _system_python(installed['command'], '--config', path, 'list')
    assert runs['flat'].returncode == 0, runs['flat'].stdout + runs['flat'].stderr
    assert runs['nested'].returncode == 0, runs['nested'].stdout + runs['nested'].stderr
    for label, expected in (('unknown', 'unknown option(s) retention_keep_lats'),
                            ('unknown_nested', 'unknown option(s) retention.keep'),
                            ('wrong_type', 'option jobs must be a int')):
        assert runs[label].returncode == 1, runs[label].stdout
        assert 'FAILED: config ' in runs[label].stdout and expected in runs[label].stdout, runs[label].stdout
        assert 'Traceback' not in runs[label].stderr
