"""The one way tests run a module: ``main()`` as Ansible would on a target.

    result = run_module(backup, dict(conn, dest=dest), check=True, diff=True)
    assert not result['failed'] and result['changed']

Arguments go through ``patch_module_args`` (argument parsing, aliases,
fallbacks, validation all run); ``exit_json`` / ``fail_json`` are captured
instead of printing, so the result is the dict the module returned, with
``failed`` (bool), ``warnings`` (list) and, on failure, ``msg``.  The JSON
round trip checks the result is serialisable as Ansible needs it.
"""

import json

from ansible.module_utils import _internal as ansible_internal
from ansible.module_utils import basic
from ansible.module_utils.common import warnings as ansible_warnings
from ansible.module_utils.testing import patch_module_args


class _Exit(Exception):
    def __init__(self, result):
        super(_Exit, self).__init__(result.get('msg'))
        self.result = result


def run_module(module, args, check=False, diff=False):
    """Run ``module.main()`` with ``args``; return its result dict (never raises on fail_json)."""
    args = dict(args, _ansible_check_mode=check, _ansible_diff=diff)

    def finish(kwargs, failed):
        kwargs['failed'] = failed
        kwargs['warnings'] = list(ansible_warnings.get_warning_messages())
        raise _Exit(json.loads(json.dumps(kwargs)))

    def exit_json(self, **kwargs):
        finish(kwargs, False)

    def fail_json(self, msg, **kwargs):
        kwargs['msg'] = msg
        finish(kwargs, True)

    ansible_warnings._global_warnings.clear()
    # Another test may have imported controller code (a filter plugin imports
    # ansible.errors), which routes module warnings to the controller's display;
    # a module runs on a target, where they go into the result.
    was_controller = ansible_internal.is_controller
    ansible_internal.is_controller = False
    orig = basic.AnsibleModule.exit_json, basic.AnsibleModule.fail_json
    basic.AnsibleModule.exit_json, basic.AnsibleModule.fail_json = exit_json, fail_json
    try:
        with patch_module_args(args):
            module.main()
    except _Exit as done:
        return done.result
    finally:
        basic.AnsibleModule.exit_json, basic.AnsibleModule.fail_json = orig
        ansible_internal.is_controller = was_controller
    raise AssertionError('%s returned without exit_json/fail_json' % module.__name__)
