# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The migration engine (plain Python, no Ansible imports): options, files, history, plan, lock, apply, verify, lint."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type
