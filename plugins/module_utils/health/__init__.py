# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The health engine: checks, tuning advice and the host CLI over one read-only session.

Plain Python, no Ansible import: used by the ``health_info`` module, by the
host-side CLI that cron runs (``cli.py``) and by the tests, with the same
behaviour everywhere.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type
