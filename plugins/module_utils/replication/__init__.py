# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Streaming replication: what each node is (``info``) and the failover drill (``drill``).

``info`` reads roles, timelines, LSNs, senders, receivers and slots; ``drill``
switches or fails a primary over to its standby while a probe writer
(``probe``) measures RTO and RPO, acting on the servers through ``control``;
``report`` renders a drill as a self-contained HTML page.  No Ansible imports.
"""
