# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Internal: the Ansible side of every module, the one place under module_utils that imports Ansible.

A module is a few lines over an engine::

    def main():
        module = new_module(BackupOptions)
        run(module, lambda p: BackupEngine(conn_params(p), from_params(BackupOptions, p)))

``new_module`` builds the argument spec from the engine's options dataclass
plus the shared connection options (with ``env_fallback`` for the libpq
variables); ``run`` calls ``plan()`` and, unless in check mode,
``apply(plan)``, and owns the single ``except DbDevopsError``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.module_utils.basic import AnsibleModule, env_fallback

from ansible_collections.dbdevops.postgresql.plugins.module_utils import _options
from ansible_collections.dbdevops.postgresql.plugins.module_utils.connection import ConnParams, SSL_MODES
from ansible_collections.dbdevops.postgresql.plugins.module_utils.errors import DbDevopsError

# libpq's own environment variables, read on the managed host when an option is not set.
ENV_FALLBACKS = dict(login_user='PGUSER', login_host='PGHOST', login_port='PGPORT',
                     db='PGDATABASE', ssl_mode='PGSSLMODE')


def connection_spec(defaults=True):
    """The shared connection options, named as community.postgresql names them.

    With ``defaults=False`` (the ``src``/``dst`` blocks) no option has a
    default or fallback: what a block leaves unset comes from the top level.
    """
    spec = dict(
        login_user=dict(type='str', default='postgres'),
        login_password=dict(type='str', default='', no_log=True),
        login_host=dict(type='str', default=''),
        login_unix_socket=dict(type='str', default=''),
        login_port=dict(type='int', default=5432, aliases=['port']),
        db=dict(type='str', default='', aliases=['login_db']),
        ssl_mode=dict(type='str', default='prefer', choices=SSL_MODES),
        ca_cert=dict(type='str', aliases=['ssl_rootcert']),
        ssl_cert=dict(type='path'),
        ssl_key=dict(type='path'),
        connect_params=dict(type='dict', default={}),
    )
    for name, variable in ENV_FALLBACKS.items():
        spec[name]['fallback'] = (env_fallback, [variable])
    if not defaults:
        for entry in spec.values():
            entry.pop('default', None)
            entry.pop('fallback', None)
    return spec


def block_spec(**extra):
    """A ``src``/``dst`` style block: the connection options with no defaults, plus ``extra``."""
    spec = connection_spec(defaults=False)
    spec.update(extra)
    return spec


def conn_params(params, block=None):
    """ConnParams from module params; a block's options (src, dst) win over the top level."""
    merged = dict((field, params.get(field)) for field in ConnParams.FIELDS)
    if block:
        merged.update((field, value) for field, value in block.items()
                      if field in ConnParams.FIELDS and value is not None)
    return ConnParams.from_params(merged)


def connection_blocks(options_cls, *names):
    """Spec entries for the ``src``/``dst`` style options ``names`` an options dataclass declares.

    The dataclass says what each block is (``type='dict'``, required or not);
    this adds the connection options as its suboptions (``block_spec()``).
    Pass the result as ``new_module(..., extra=...)``.
    """
    declared = _options.argument_spec(options_cls)
    return dict((name, dict(declared[name], options=block_spec())) for name in names)


def block_params(params, *blocks):
    """ConnParams of each block (a dict or None) in turn, each over the top-level options."""
    return tuple(conn_params(params, block) for block in blocks)


def argument_spec(options_cls=None, connection=True, extra=None):
    """Connection options (``connection=True``), then the engine's options, then ``extra``."""
    spec = connection_spec() if connection else {}
    if options_cls is not None:
        spec.update(_options.argument_spec(options_cls))
    spec.update(extra or {})
    return spec


def new_module(options_cls=None, connection=True, extra=None, **kwargs):
    """An AnsibleModule for an engine: spec and rules from its options dataclass, check mode on."""
    module_kwargs = _options.rules(options_cls) if options_cls is not None else {}
    module_kwargs.update(kwargs)
    module_kwargs.setdefault('supports_check_mode', True)
    return AnsibleModule(argument_spec=argument_spec(options_cls, connection, extra), **module_kwargs)


def run(module, make_engine):
    """plan(), then apply(plan) unless in check mode; exit_json or fail_json.

    ``make_engine(params)`` builds the engine (it may raise DbDevopsError too).
    Every engine error becomes ``fail_json(msg, **details)``; the result's
    ``warnings`` become Ansible warnings and ``diff`` is kept in diff mode only.
    """
    try:
        engine = make_engine(module.params)
        plan = engine.plan()
        result = plan.result() if module.check_mode else engine.apply(plan)
    except DbDevopsError as exc:
        details = dict(exc.details)
        for warning in details.pop('warnings', None) or []:
            module.warn(warning)
        details.pop('diff', None)
        module.fail_json(msg=str(exc), **details)
    return exit_with(module, result)


def exit_with(module, result):
    """exit_json with an engine result: warnings raised, diff only in diff mode."""
    result = dict(result)
    for warning in result.pop('warnings', None) or []:
        module.warn(warning)
    diff = result.pop('diff', None)
    if module._diff and diff is not None:
        result['diff'] = diff
    module.exit_json(**result)
