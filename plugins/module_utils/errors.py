# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one exception type the engine raises for user-facing errors.

Modules catch it once and turn it into ``fail_json(msg=str(e), **e.details)``;
the host-side CLI prints ``str(e)`` and exits non-zero.  No Ansible imports.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class DbDevopsError(Exception):
    """A user-facing error: ``str(e)`` says what, where and what to do next."""

    def __init__(self, message, **details):
        super(DbDevopsError, self).__init__(message)
        self.message = message
        self.details = details

    def __str__(self):
        return self.message
