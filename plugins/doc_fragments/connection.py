# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # Connection options, named exactly as community.postgresql names them.
    # The fallbacks are those of _module.connection_spec (libpq's own variables,
    # read on the managed host); the defaults here are the spec's defaults.
    DOCUMENTATION = r'''
options:
  login_user:
    description:
      - The role this module logs in as.
      - When unset, the E(PGUSER) environment variable of the managed host, else C(postgres).
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
      - When unset, the E(PGHOST) environment variable of the managed host, else empty.
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
      - When unset, the E(PGPORT) environment variable of the managed host, else C(5432).
    type: int
    default: 5432
    aliases: [ port ]
  db:
    description:
      - Name of the database to connect to.
      - When unset, the E(PGDATABASE) environment variable of the managed host, else empty.
      - Empty means C(postgres).
    type: str
    default: ''
    aliases: [ login_db ]
  ssl_mode:
    description:
      - Whether and with what priority an SSL connection is negotiated, as libpq's C(sslmode).
      - When unset, the E(PGSSLMODE) environment variable of the managed host, else C(prefer).
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

    # The connection blocks of modules that talk to several servers, documented once
    # (use with dbdevops.postgresql.connection): src/dst (data_compare, schema_diff),
    # primary/standby (failover_drill), nodes (replication_info). A module may add keys
    # to an option here (required: true) or replace its description. Each fragment
    # must be one string literal (ansible-test reads them without running Python), so
    # the block's suboptions are written out in each; keep them the same.
    BLOCKS = r'''
options:
  src:
    description:
      - Connection to the source database.
      - Every suboption not given here takes the value of the top-level option of the same name
        (which may come from the environment), so two databases on one server need only
        O(src.db) and O(dst.db).
    type: dict
    suboptions:
      login_user:
        description:
          - The role to log in as. Default O(login_user).
        type: str
      login_password:
        description:
          - The password of the block's login user. Default O(login_password).
          - It reaches libpq through a C(0600) passfile, never a command line or a log.
        type: str
      login_host:
        description:
          - Host running the database. Default O(login_host) (empty means the local Unix socket).
        type: str
      login_unix_socket:
        description:
          - Directory of the Unix domain socket. Default O(login_unix_socket).
        type: str
      login_port:
        description:
          - Database port. Default O(login_port).
        type: int
        aliases: [ port ]
      db:
        description:
          - Name of the database. Default O(db) (empty means C(postgres)).
        type: str
        aliases: [ login_db ]
      ssl_mode:
        description:
          - libpq C(sslmode). Default O(ssl_mode).
        type: str
        choices: [ allow, disable, prefer, require, verify-ca, verify-full ]
      ca_cert:
        description:
          - File with the certificate authorities that signed the server certificate. Default O(ca_cert).
        type: str
        aliases: [ ssl_rootcert ]
      ssl_cert:
        description:
          - Client SSL certificate file. Default O(ssl_cert).
        type: path
      ssl_key:
        description:
          - Client SSL private key file. Default O(ssl_key).
        type: path
      connect_params:
        description:
          - Further libpq connection parameters. Default O(connect_params).
        type: dict
  dst:
    description:
      - Connection to the destination database; same suboptions and defaults as O(src).
    type: dict
    suboptions:
      login_user:
        description:
          - The role to log in as. Default O(login_user).
        type: str
      login_password:
        description:
          - The password of the block's login user. Default O(login_password).
          - It reaches libpq through a C(0600) passfile, never a command line or a log.
        type: str
      login_host:
        description:
          - Host running the database. Default O(login_host) (empty means the local Unix socket).
        type: str
      login_unix_socket:
        description:
          - Directory of the Unix domain socket. Default O(login_unix_socket).
        type: str
      login_port:
        description:
          - Database port. Default O(login_port).
        type: int
        aliases: [ port ]
      db:
        description:
          - Name of the database. Default O(db) (empty means C(postgres)).
        type: str
        aliases: [ login_db ]
      ssl_mode:
        description:
          - libpq C(sslmode). Default O(ssl_mode).
        type: str
        choices: [ allow, disable, prefer, require, verify-ca, verify-full ]
      ca_cert:
        description:
          - File with the certificate authorities that signed the server certificate. Default O(ca_cert).
        type: str
        aliases: [ ssl_rootcert ]
      ssl_cert:
        description:
          - Client SSL certificate file. Default O(ssl_cert).
        type: path
      ssl_key:
        description:
          - Client SSL private key file. Default O(ssl_key).
        type: path
      connect_params:
        description:
          - Further libpq connection parameters. Default O(connect_params).
        type: dict
'''

    PAIR = r'''
options:
  primary:
    description:
      - Connection to the primary; what it leaves unset comes from the top-level connection options.
    type: dict
    required: true
    suboptions:
      login_user:
        description:
          - The role to log in as. Default O(login_user).
        type: str
      login_password:
        description:
          - The password of the block's login user. Default O(login_password).
          - It reaches libpq through a C(0600) passfile, never a command line or a log.
        type: str
      login_host:
        description:
          - Host running the database. Default O(login_host) (empty means the local Unix socket).
        type: str
      login_unix_socket:
        description:
          - Directory of the Unix domain socket. Default O(login_unix_socket).
        type: str
      login_port:
        description:
          - Database port. Default O(login_port).
        type: int
        aliases: [ port ]
      db:
        description:
          - Name of the database. Default O(db) (empty means C(postgres)).
        type: str
        aliases: [ login_db ]
      ssl_mode:
        description:
          - libpq C(sslmode). Default O(ssl_mode).
        type: str
        choices: [ allow, disable, prefer, require, verify-ca, verify-full ]
      ca_cert:
        description:
          - File with the certificate authorities that signed the server certificate. Default O(ca_cert).
        type: str
        aliases: [ ssl_rootcert ]
      ssl_cert:
        description:
          - Client SSL certificate file. Default O(ssl_cert).
        type: path
      ssl_key:
        description:
          - Client SSL private key file. Default O(ssl_key).
        type: path
      connect_params:
        description:
          - Further libpq connection parameters. Default O(connect_params).
        type: dict
  standby:
    description: Connection to its standby; same suboptions and defaults as O(primary).
    type: dict
    required: true
    suboptions:
      login_user:
        description:
          - The role to log in as. Default O(login_user).
        type: str
      login_password:
        description:
          - The password of the block's login user. Default O(login_password).
          - It reaches libpq through a C(0600) passfile, never a command line or a log.
        type: str
      login_host:
        description:
          - Host running the database. Default O(login_host) (empty means the local Unix socket).
        type: str
      login_unix_socket:
        description:
          - Directory of the Unix domain socket. Default O(login_unix_socket).
        type: str
      login_port:
        description:
          - Database port. Default O(login_port).
        type: int
        aliases: [ port ]
      db:
        description:
          - Name of the database. Default O(db) (empty means C(postgres)).
        type: str
        aliases: [ login_db ]
      ssl_mode:
        description:
          - libpq C(sslmode). Default O(ssl_mode).
        type: str
        choices: [ allow, disable, prefer, require, verify-ca, verify-full ]
      ca_cert:
        description:
          - File with the certificate authorities that signed the server certificate. Default O(ca_cert).
        type: str
        aliases: [ ssl_rootcert ]
      ssl_cert:
        description:
          - Client SSL certificate file. Default O(ssl_cert).
        type: path
      ssl_key:
        description:
          - Client SSL private key file. Default O(ssl_key).
        type: path
      connect_params:
        description:
          - Further libpq connection parameters. Default O(connect_params).
        type: dict
'''

    NODES = r'''
options:
  nodes:
    description:
      - The nodes to read, each a connection block (the suboptions of the connection options, plus O(nodes[].name)).
        What a block leaves unset comes from the top-level connection options.
      - Empty - the one server of the top-level connection options.
    type: list
    elements: dict
    default: []
    suboptions:
      name:
        description: How the node is named in the results. Default C(host:port).
        type: str
      login_user:
        description:
          - The role to log in as. Default O(login_user).
        type: str
      login_password:
        description:
          - The password of the block's login user. Default O(login_password).
          - It reaches libpq through a C(0600) passfile, never a command line or a log.
        type: str
      login_host:
        description:
          - Host running the database. Default O(login_host) (empty means the local Unix socket).
        type: str
      login_unix_socket:
        description:
          - Directory of the Unix domain socket. Default O(login_unix_socket).
        type: str
      login_port:
        description:
          - Database port. Default O(login_port).
        type: int
        aliases: [ port ]
      db:
        description:
          - Name of the database. Default O(db) (empty means C(postgres)).
        type: str
        aliases: [ login_db ]
      ssl_mode:
        description:
          - libpq C(sslmode). Default O(ssl_mode).
        type: str
        choices: [ allow, disable, prefer, require, verify-ca, verify-full ]
      ca_cert:
        description:
          - File with the certificate authorities that signed the server certificate. Default O(ca_cert).
        type: str
        aliases: [ ssl_rootcert ]
      ssl_cert:
        description:
          - Client SSL certificate file. Default O(ssl_cert).
        type: path
      ssl_key:
        description:
          - Client SSL private key file. Default O(ssl_key).
        type: path
      connect_params:
        description:
          - Further libpq connection parameters. Default O(connect_params).
        type: dict
'''
