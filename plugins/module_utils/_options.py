# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Internal: one declaration per engine option, read by the module and the host CLI.

An engine declares its options once, as a dataclass whose fields are made by
``option()``.  From that one declaration come the module's argument spec
(``argument_spec(cls)``, used by ``_module.py``) and the host CLI's config
reader (``from_mapping(cls, config, where)``), so an option cannot exist in
one place and not the other.  No Ansible imports.

    @dataclasses.dataclass
    class BackupOptions(object):
        dest: str = option(type='path', required=True)
        jobs: int = option(1, type='int')
        RULES = dict(mutually_exclusive=[('databases', 'all_databases')])
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import copy
import dataclasses

from ansible_collections.dbdevops.postgresql.plugins.module_utils.errors import DbDevopsError

# Keys of an option's metadata that go into an Ansible argument spec as they are.
_SPEC_KEYS = ('type', 'required', 'choices', 'aliases', 'no_log', 'elements', 'options',
              'deprecated_aliases', 'removed_in_version', 'removed_from_collection')

_TYPES = {
    'str': str, 'path': str, 'int': int, 'float': float, 'bool': bool,
    'list': list, 'dict': dict, 'raw': object,
}


def option(default=None, type='str', required=False, choices=None, aliases=None, no_log=False,
           elements=None, options=None, module=True, cli=True, **extra):
    """A dataclass field carrying its argument-spec metadata.

    ``module=False`` keeps an option out of the module (engine- or CLI-only);
    ``cli=False`` keeps it out of the host CLI's config file.  Mutable
    defaults (lists, dicts) are copied for every instance.
    """
    meta = dict(type=type, required=required, module=module, cli=cli)
    for key, value in (('choices', choices), ('aliases', aliases), ('elements', elements),
                       ('options', options)):
        if value is not None:
            meta[key] = value
    if no_log:
        meta['no_log'] = True
    meta.update(extra)
    # option() is what a dataclass body calls, so field() is in effect called there.
    if isinstance(default, (list, dict)):
        return dataclasses.field(  # pylint: disable=invalid-field-call
            default_factory=lambda d=default: copy.deepcopy(d), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)  # pylint: disable=invalid-field-call


def declared(cls):
    """[(name, default, metadata)] for every option of an options dataclass."""
    out = []
    for f in dataclasses.fields(cls):
        if 'type' not in f.metadata:
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = None
        out.append((f.name, default, f.metadata))
    return out


def argument_spec(cls):
    """The Ansible argument spec (plain dicts) of an options dataclass."""
    spec = {}
    for name, default, meta in declared(cls):
        if not meta.get('module', True):
            continue
        entry = dict((k, copy.deepcopy(meta[k])) for k in _SPEC_KEYS if k in meta)
        if not entry.get('required'):
            entry.pop('required', None)
            if default is not None:
                entry['default'] = default
        spec[name] = entry
    return spec


def rules(cls):
    """AnsibleModule keyword arguments (mutually_exclusive, required_if, ...) of a dataclass."""
    return copy.deepcopy(getattr(cls, 'RULES', None) or {})


def from_params(cls, params):
    """An options instance from ``module.params`` (already validated by Ansible)."""
    kwargs = {}
    for name, _default, meta in declared(cls):
        if meta.get('module', True) and name in params and params[name] is not None:
            kwargs[name] = params[name]
    return cls(**kwargs)


def _coerce(name, value, meta, where):
    kind = meta.get('type', 'str')
    if value is None:
        return None
    if kind == 'bool':
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ('yes', 'true', 'on', '1'):
            return True
        if text in ('no', 'false', 'off', '0'):
            return False
    elif kind == 'int':
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        try:
            return int(str(value).strip())
        except ValueError:
            pass
    elif kind in ('str', 'path'):
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    elif kind == 'list':
        if isinstance(value, list):
            return value
        if isinstance(value, str):
            return [v.strip() for v in value.split(',') if v.strip()]
    elif kind == 'dict':
        if isinstance(value, dict):
            return value
    else:
        return value
    raise DbDevopsError('%s: option %s must be a %s, got %r' % (where, name, kind, value))


def from_mapping(cls, mapping, where, ignore=()):
    """An options instance from a plain mapping (the host CLI's JSON config).

    Unknown keys, missing required options, wrong types and values outside
    ``choices`` are errors naming ``where`` and the option, never a traceback.
    ``ignore`` names keys that belong to something else (connection options).
    """
    known = {}
    for name, default, meta in declared(cls):
        if not meta.get('cli', True):
            continue
        known[name] = (default, meta)
        for alias in meta.get('aliases') or ():
            known.setdefault(alias, (default, dict(meta, canonical=name)))
    unknown = sorted(k for k in mapping if k not in known and k not in ignore)
    if unknown:
        raise DbDevopsError('%s: unknown option(s) %s; known options are %s'
                            % (where, ', '.join(unknown), ', '.join(sorted(known))))
    kwargs = {}
    for key, value in mapping.items():
        if key not in known:
            continue
        _default, meta = known[key]
        name = meta.get('canonical', key)
        value = _coerce(key, value, meta, where)
        choices = meta.get('choices')
        if choices and value is not None and value not in choices:
            raise DbDevopsError('%s: option %s is %r; choose one of %s'
                                % (where, key, value, ', '.join(map(str, choices))))
        if value is not None:
            kwargs[name] = value
    for name, (_default, meta) in known.items():
        if meta.get('required') and meta.get('canonical') is None and name not in kwargs:
            raise DbDevopsError('%s: option %s is required' % (where, name))
    return cls(**kwargs)
