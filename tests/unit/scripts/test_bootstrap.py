"""scripts/bootstrap.sh, sourced as the README and DEVELOPERS.md say, leaves the caller's shell as it was."""

import os
import subprocess

from tests.harness import REPO_ROOT

BOOTSTRAP = os.path.join(REPO_ROOT, 'scripts', 'bootstrap.sh')


def test_sourcing_keeps_the_callers_shell_options_and_exports_the_tools():
    script = ('set +e +u; source %s dev >/dev/null 2>&1; echo "rc=$? opts=$-"; '
              'false; echo "still here"; command -v ansible-playbook; echo "$ANSIBLE_COLLECTIONS_PATH"' % BOOTSTRAP)
    done = subprocess.run(['bash', '-c', script], capture_output=True, text=True, check=False, timeout=600)
    lines = done.stdout.splitlines()
    rc, opts = lines[0].split()
    assert rc == 'rc=0', done.stdout + done.stderr
    assert 'e' not in opts.split('=', 1)[1] and 'u' not in opts.split('=', 1)[1]   # no set -e / -u leaked
    assert lines[1] == 'still here'                                                  # a failing command does not end it
    assert lines[2].endswith('/.venv/bin/ansible-playbook') and lines[3].endswith('/.venv/collections')


def test_a_failed_installation_returns_non_zero_without_closing_the_shell(tmp_path):
    # a profile whose virtualenv cannot be created: the install step fails, the caller carries on
    script = ('source %s dev >/dev/null 2>&1; echo "rc=$?"; echo alive' % BOOTSTRAP)
    env = dict(os.environ, DBDEVOPS_VENV=str(tmp_path / 'venv'), DBDEVOPS_PYTHON=str(tmp_path / 'no-python'))
    done = subprocess.run(['bash', '-c', script], capture_output=True, text=True, check=False, env=env, timeout=600)
    assert done.stdout.splitlines() == ['rc=1', 'alive'], done.stdout + done.stderr
