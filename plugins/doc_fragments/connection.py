# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # Connection options, named exactly as community.postgresql names them.
    DOCUMENTATION = r'''
options:
  login_user:
    description:
      - The role this module logs in as.
      - Defaults to the E(PGUSER) environment variable, else C(postgres).
    type: str
    default: postgres
  login_password:
    description:
      - The password of O(login_user).
      - It reaches libpq and client programs (C(pg_dump) and friends) through a
        C(0600) passfile, never through a command line or a log.
    type: str
    default: ''
  login_host:
    description:
      - Host running the database. Empty means the local Unix socket.
    type: str
    default: ''
  login_unix_socket:
    description:
      - Directory of the Unix domain socket for local connections.
    type: str
    default: ''
  login_port:
    description:
      - Database port to connect to.
    type: int
    default: 5432
    aliases: [ port ]
  db:
    description:
      - Name of the database to connect to.
      - Empty means C(postgres).
    type: str
    default: ''
    aliases: [ login_db ]
  ssl_mode:
    description:
      - Whether and with what priority an SSL connection is negotiated, as libpq's C(sslmode).
    type: str
    default: prefer
    choices: [ allow, disable, prefer, require, verify-ca, verify-full ]
  ca_cert:
    description:
      - File with the certificate authorities that signed the server certificate.
    type: str
    aliases: [ ssl_rootcert ]
  ssl_cert:
    description:
      - Client SSL certificate file.
    type: path
  ssl_key:
    description:
      - Client SSL private key file.
    type: path
  connect_params:
    description:
      - Further libpq connection parameters; they take precedence.
    type: dict
    default: {}
requirements:
  - psycopg2 >= 2.8 on the managed host (Debian package C(python3-psycopg2)).
notes:
  - Connection errors are one line naming host, port, database, user and the
    cause (refused, bad password, unknown database, missing psycopg2).
'''
