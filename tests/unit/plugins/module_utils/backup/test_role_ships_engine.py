"""The backup role ships an engine the host command can run: what the role copies, imported by the system Python.

The role's install tasks run for real (``--tags backup_install``) into a
temporary folder; then ``/usr/bin/python3 -I`` (no Ansible, no PYTHONPATH,
only what the role installed: the engine zip and the command) runs the
installed command.  A module_utils file the CLI needs and the role does not
ship, or a shipped file that needs Ansible, fails here rather than in cron.
The install runs twice (the second changes nothing), over engine files of an
older role version, which it removes.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile

import pytest

from ansible_collections.dbdevops.postgresql.plugins.module_utils.backup import cli

SYSTEM_PYTHON = '/usr/bin/python3'
PACKAGE = 'ansible_collections/dbdevops/postgresql/plugins/module_utils'
ZIP_NAME = 'dbdevops_postgresql_engine.zip'
RECAP_RE = re.compile(r'^localhost\s*:\s*ok=\d+\s+changed=(\d+)\s+unreachable=0\s+failed=0', re.M)
ENGINE_MODULES = ('cli', 'engine', 'restore', 'catalog', '_tools')
PLAYBOOK = '''
- name: Install the backup engine only
  hosts: all
  gather_facts: false
  roles:
    - role: dbdevops.postgresql.backup
'''


def _collection_dir():
    marker = os.sep + os.path.join('ansible_collections', 'dbdevops', 'postgresql') + os.sep
    path = os.path.abspath(cli.__file__)
    return path[:path.index(marker) + len(marker) - 1]


def _snapshot(base):
    """This checkout's collection, as far as the role needs it, copied once: the runs
    below compare like with like even while someone edits module_utils. Collections
    (community.*) come from the real path, after the snapshot."""
    root = base / 'collections'
    target = root / 'ansible_collections' / 'dbdevops' / 'postgresql'
    source = _collection_dir()
    ignore = shutil.ignore_patterns('__pycache__', '*.pyc')
    for part in ('meta', 'roles', 'plugins'):
        shutil.copytree(os.path.join(source, part), str(target / part), ignore=ignore)
    shutil.copy(os.path.join(source, 'galaxy.yml'), str(target / 'galaxy.yml'))
    return str(root), str(target / 'plugins' / 'module_utils')


def _install(play, collections, install_dir, command, *extra):
    # the controller's temporary folder, to see that the role removes its archive
    env = dict(os.environ, ANSIBLE_NOCOWS='1', TMPDIR=os.path.join(os.path.dirname(install_dir), 'controller-tmp'),
               ANSIBLE_COLLECTIONS_PATH=os.pathsep.join(
                   [collections, os.path.dirname(os.path.dirname(os.path.dirname(_collection_dir())))]))
    done = subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), 'ansible-playbook'), '-i', 'localhost,', '-c', 'local',
         '--tags', 'backup_install', '-e', 'ansible_python_interpreter=%s' % sys.executable,
         '-e', 'backup_install_dir=%s' % install_dir, '-e', 'backup_command=%s' % command, str(play)] + list(extra),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, env=env, check=False)
    assert done.returncode == 0, done.stdout
    recap = RECAP_RE.search(done.stdout)
    assert recap, done.stdout
    return int(recap.group(1)), done.stdout


@pytest.fixture(scope='module')
def installed(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip('the role installs files owned by root')
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        pytest.skip('no %s on this machine' % SYSTEM_PYTHON)
    base = tmp_path_factory.mktemp('role-install')
    collections, module_utils = _snapshot(base)
    play = base / 'play.yml'
    play.write_text(PLAYBOOK)
    install_dir, command = str(base / 'lib'), str(base / 'bin' / 'dbdevops-backup')
    os.makedirs(os.path.dirname(command))
    os.makedirs(str(base / 'controller-tmp'))
    # what an older role version left: the engine copied file by file, with a module
    # the current engine no longer has
    legacy = os.path.join(install_dir, PACKAGE)
    os.makedirs(os.path.join(legacy, 'backup'))
    for rel in ('errors.py', 'backup/cli.py', 'backup/retired_module.py'):
        with open(os.path.join(legacy, rel), 'w') as handle:
            handle.write('raise ImportError("stale engine file %s imported")\n' % rel)
    check_changed, check_out = _install(play, collections, install_dir, command, '--check')
    assert check_changed > 0, check_out
    assert not os.path.exists(os.path.join(install_dir, ZIP_NAME)), 'check mode installed the engine'
    first_changed, first_out = _install(play, collections, install_dir, command)
    second_changed, second_out = _install(play, collections, install_dir, command)
    second_check, second_check_out = _install(play, collections, install_dir, command, '--check')
    return dict(base=str(base), module_utils=module_utils, install_dir=install_dir, command=command, zip=os.path.join(install_dir, ZIP_NAME),
                runs=dict(check=check_changed, first=first_changed, second=second_changed,
                          second_check=second_check),
                outputs=dict(first=first_out, second=second_out, second_check=second_check_out))


def test_install_is_idempotent_and_check_mode_clean(installed):
    assert installed['runs']['first'] > 0, installed['outputs']['first']
    assert installed['runs']['second'] == 0, installed['outputs']['second']
    assert installed['runs']['second_check'] == 0, installed['outputs']['second_check']


def test_engine_files_of_an_older_role_version_are_gone(installed):
    left = [os.path.relpath(os.path.join(dirpath, name), installed['install_dir'])
            for dirpath, _dirs, files in os.walk(installed['install_dir']) for name in files]
    assert left == [ZIP_NAME]
    assert not os.path.exists(os.path.join(installed['install_dir'], 'ansible_collections', 'dbdevops', 'postgresql'))
    assert os.listdir(os.path.join(installed['base'], 'controller-tmp')) == [], 'the controller copy was left'


def _system_python(*args, **kwargs):
    env = dict((k, v) for k, v in os.environ.items() if not k.startswith('PYTHON'))
    return subprocess.run([SYSTEM_PYTHON, '-I'] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, env=env, check=False, **kwargs)


def test_shipped_files_need_no_ansible(installed):
    with zipfile.ZipFile(installed['zip']) as archive:
        members = archive.namelist()
        shipped = dict((name[len(PACKAGE) + 1:], archive.read(name).decode()) for name in members
                       if name.startswith(PACKAGE + '/') and not name.endswith('/'))
    assert all(name.startswith(PACKAGE + '/') or PACKAGE.startswith(name.rstrip('/')) for name in members), members
    names = set(shipped)
    assert {'errors.py', 'connection.py', '_pgclient.py', '_options.py', 'backup/cli.py'} <= names
    assert '_module.py' not in names and not [n for n in names if not n.endswith('.py')]
    for name, text in shipped.items():
        assert not re.search(r'^\s*(from|import) ansible(\.|\s|$)', text, re.M), name


def test_zip_is_the_whole_module_utils_tree_less_module(installed):
    root = installed['module_utils']
    expected = set()
    for dirpath, dirnames, files in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != '__pycache__']
        expected.update(os.path.relpath(os.path.join(dirpath, f), root) for f in files
                        if f.endswith('.py') and f != '_module.py')
    with zipfile.ZipFile(installed['zip']) as archive:
        shipped = set(n[len(PACKAGE) + 1:] for n in archive.namelist() if not n.endswith('/'))
    assert shipped == expected


def test_system_python_imports_the_engine_and_runs_the_command(installed):
    imports = '; '.join('import ansible_collections.dbdevops.postgresql.plugins.module_utils.backup.%s' % name
                        for name in ENGINE_MODULES)
    done = _system_python('-c', 'import sys; sys.path.insert(0, %r); %s; print(%s.__file__)' % (
        installed['zip'], imports, 'ansible_collections.dbdevops.postgresql.plugins.module_utils.backup.cli'))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == os.path.join(installed['zip'], PACKAGE, 'backup', 'cli.py')
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
