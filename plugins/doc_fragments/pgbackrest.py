# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # How the PITR modules (physical_backup, physical_backup_info, pitr_restore)
    # reach pgBackRest: the options of plugins/module_utils/pitr/options.py.
    DOCUMENTATION = r'''
options:
  stanza:
    description:
      - The pgBackRest stanza (C(--stanza)).
    type: str
    required: true
  config:
    description:
      - The stanza's private pgBackRest configuration file, passed as C(--config) on every C(pgbackrest) call.
      - Default C(/etc/pgbackrest/<stanza>.conf).
      - It may hold the repository passphrase (C(repo1-cipher-pass)); keep it C(0640 root:postgres) or
        C(0600 postgres). The passphrase is never put on a command line or in the module's output.
    type: path
  pgbackrest:
    description:
      - The C(pgbackrest) program (a name looked up in E(PATH), or a path).
    type: str
    default: pgbackrest
  os_user:
    description:
      - The OS user C(pgbackrest) runs as (the owner of the data directory). When the module runs as root,
        C(pgbackrest) runs through C(runuser -u <os_user> --); otherwise as the module's own user.
    type: str
    default: postgres
  command_timeout:
    description:
      - Seconds after which a C(pgbackrest) command is killed and the task fails.
    type: int
    default: 3600
'''
