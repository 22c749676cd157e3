# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Internal: the contract every engine keeps, ``plan()`` then ``apply(plan)``.

    engine = SomeEngine(conn_params, options)
    plan = engine.plan()            # reads, never writes
    plan.result()                   # exactly the check-mode answer
    engine.apply(plan)              # does it; same keys as plan.result()

A result is a plain dict with at least ``changed``, ``diff`` (``None`` or
``{before, after}``) and ``warnings`` (a list of strings).  The module
adapter (``_module.run``) turns ``warnings`` into Ansible warnings and keeps
``diff`` only in diff mode; the host CLI prints them.  No Ansible imports.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

COMMON_KEYS = ('changed', 'diff', 'warnings')


class Plan(object):
    """What a run would do, computed without changing anything.

    ``values`` holds the result keys as check mode reports them; an engine's
    ``apply()`` returns the same keys with what really happened.  ``work``
    holds whatever ``apply()`` needs and is never returned.
    """

    def __init__(self, changed, values=None, diff=None, warnings=None, work=None):
        self.changed = bool(changed)
        self.values = dict(values or {})
        self.diff = diff
        self.warnings = list(warnings or [])
        self.work = work if work is not None else {}

    def result(self):
        """The check-mode answer: the planned values plus changed, diff and warnings."""
        return finish(self.values, changed=self.changed, diff=self.diff, warnings=self.warnings)


def finish(values, changed, diff=None, warnings=None):
    """A result dict in the one shape every engine returns."""
    out = dict(values)
    out['changed'] = bool(changed)
    out['diff'] = diff
    out['warnings'] = list(warnings or [])
    return out


def same_shape(planned, applied):
    """Keys present in one result and not the other (for tests): (only_planned, only_applied)."""
    return sorted(set(planned) - set(applied)), sorted(set(applied) - set(planned))
