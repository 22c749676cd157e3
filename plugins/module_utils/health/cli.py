# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Host-side health check over the health engine (what the ``monitoring`` role's cron runs).

    dbdevops-health --config /etc/dbdevops-health/health.json [--json]

The config is JSON: connection options named as the modules name them
(login_user, login_host, login_port, login_unix_socket, db, ssl_mode, ...,
and login_password_file), plus the options of the ``health_info`` module, read
through the one declaration ``engine.HealthOptions`` (thresholds, skip_checks,
timeouts, memory_mb, cpus, tuning_workload, tuning_storage, advice); ``fail_on``
and ``apply`` are module-only (the exit status says the verdict; the CLI never
writes).  Unknown keys are refused; keys starting with ``_`` are comments.

Output: a first line ``<ISO time> <host:port/db> status=<overall> ok=N warning=N critical=N``,
then one line per check that is not ok; ``--json`` prints the whole result instead.
Exit status: 0 ok, 1 warning, 2 critical (a server that cannot be reached is
critical), 3 usage or config error.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import argparse
import json
import sys

from ansible_collections.dbdevops.postgresql.plugins.module_utils import _options
from ansible_collections.dbdevops.postgresql.plugins.module_utils.connection import ConnParams
from ansible_collections.dbdevops.postgresql.plugins.module_utils.errors import DbDevopsError
from ansible_collections.dbdevops.postgresql.plugins.module_utils.health import engine

CONNECTION_KEYS = tuple(ConnParams.FIELDS) + ('login_password_file',)
EXIT = dict(ok=0, warning=1, critical=2)
EXIT_USAGE = 3


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, '%s: error: %s\n' % (self.prog, message))


def load_config(path):
    """The config file as a dict, with ``login_password`` read from ``login_password_file``."""
    try:
        with open(path) as handle:
            config = json.load(handle)
    except (OSError, ValueError) as exc:
        raise DbDevopsError('cannot read config %s: %s' % (path, exc))
    if not isinstance(config, dict):
        raise DbDevopsError('config %s: expected a JSON object' % path)
    config = dict((k, v) for k, v in config.items() if not k.startswith('_'))
    password_file = config.get('login_password_file')
    if password_file:
        try:
            with open(password_file) as handle:
                config['login_password'] = handle.read().rstrip('\n')
        except OSError as exc:
            raise DbDevopsError('cannot read login_password_file %s: %s' % (password_file, exc))
    return config


def health_options(config, where):
    """engine.HealthOptions from a config; never fails on a status (fail_on=never), never applies."""
    opts = _options.from_mapping(engine.HealthOptions, config, where, ignore=CONNECTION_KEYS)
    opts.fail_on = 'never'
    opts.apply = False
    return opts


def report_lines(result):
    counts = result['counts']
    lines = ['%s %s status=%s ok=%d warning=%d critical=%d' % (
        result['checked_at'], result['target'], result['status'], counts['ok'], counts['warning'],
        counts['critical'])]
    lines.extend(result['summary'].splitlines()[1:])
    return lines


def main(argv=None):
    parser = _Parser(prog='dbdevops-health', description=__doc__.split('\n', maxsplit=1)[0])
    parser.add_argument('--config', default='/etc/dbdevops-health/health.json')
    parser.add_argument('--json', action='store_true', help='print the whole result as JSON')
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
        opts = health_options(config, 'config %s' % args.config)
        health = engine.HealthEngine(ConnParams.from_params(config), opts)
        result = health.plan().report()
    except DbDevopsError as exc:
        sys.stderr.write('%s FAILED: %s\n' % (engine.utc_now(), exc))
        return EXIT_USAGE
    except KeyboardInterrupt:
        sys.stderr.write('%s FAILED: interrupted\n' % engine.utc_now())
        return EXIT_USAGE
    if args.json:
        result.pop('diff', None)
        sys.stdout.write(json.dumps(result, indent=2, sort_keys=True, default=str) + '\n')
    else:
        sys.stdout.write('\n'.join(report_lines(result)) + '\n')
    for warning in result.get('warnings') or []:
        sys.stderr.write('WARNING: %s\n' % warning)
    sys.stdout.flush()
    return EXIT[result['status']]
