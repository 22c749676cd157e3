# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Internal: running ``pgbackrest`` for one stanza, as the data directory's owner.

Every call carries ``--config=<the stanza's private file>`` and ``--stanza``;
as root it runs through ``runuser -u <os_user> --`` (pgBackRest must own its
repository, lock and log files like the server owns its data directory).  The
repository passphrase stays in the config file: nothing here puts a secret on
a command line.  A failure becomes ``PgBackRestError`` whose message is a
sentence (what the exit code means, what to do) followed by pgBackRest's own
error line; ``details`` carry ``exit_code`` and ``command``.  No Ansible imports.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import configparser
import json
import os
import pwd
import re
import shlex
import time

from ansible_collections.dbdevops.postgresql.plugins.module_utils import _pgclient
from ansible_collections.dbdevops.postgresql.plugins.module_utils.errors import DbDevopsError

ERROR_RE = re.compile(r'ERROR: \[(\d+)\]: (.*)')

# pgBackRest's error codes (build/error.yaml) that users meet, as sentences.
CODE_SENTENCES = {
    38: 'a PostgreSQL server is running in the target data directory (postmaster.pid exists); stop it first',
    40: 'the target data directory is not empty',
    44: 'the WAL archive does not belong to this server (system identifier or version differs)',
    45: 'a different copy of this WAL segment is already in the archive',
    49: 'cannot connect to the repository host',
    50: 'another pgBackRest command holds the stanza lock',
    51: 'the backup does not match the database',
    55: 'a pgBackRest file is missing: is the stanza created (pgbackrest stanza-create) and repo1-path right?',
    56: 'pgBackRest cannot connect to PostgreSQL: check pg1-port and pg1-socket-path in the config file',
    58: 'the database does not match the stanza (system identifier or version differs)',
    73: 'a path is missing',
    75: 'the backup set is not valid for this restore',
    82: 'WAL archiving does not work: the WAL segment switched did not reach the repository in time '
        '(check archive_command and pg_stat_archiver.last_failed_wal)',
    87: 'archive_mode is off on the server, so nothing is archived',
    95: 'the repository cannot be decrypted: check repo1-cipher-pass in the config file',
    103: 'the repository is not valid',
}


class PgBackRestError(DbDevopsError):
    """pgbackrest failed: the message says what the exit code means and quotes pgBackRest."""


def pgbackrest_error(done):
    """(code, message) of the first ``ERROR: [NNN]: ...`` of a run (with its continuation lines)."""
    lines = (done.stderr + '\n' + done.stdout).splitlines()
    for index, line in enumerate(lines):
        match = ERROR_RE.search(line)
        if match:
            text = [match.group(2).strip()]
            for more in lines[index + 1:]:
                if more.startswith('       ') and not ERROR_RE.search(more):
                    text.append(more.strip())
                else:
                    break
            return int(match.group(1)), ' '.join(text)
    return None, _pgclient.first_error(done.stderr, 'exit status %s' % done.returncode)


def iso(epoch):
    """Epoch seconds as ISO 8601 UTC (None stays None)."""
    if epoch is None:
        return None
    return time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(int(epoch)))


class PgBackRest(object):
    """One stanza's pgbackrest: ``run``, ``json``, ``info``, ``settings``."""

    def __init__(self, options):
        if not options.stanza or not re.match(r'^[A-Za-z0-9_.-]+$', options.stanza):
            raise DbDevopsError('stanza %r is not a valid pgBackRest stanza name (letters, digits, _ . -)'
                                % options.stanza)
        self.stanza = options.stanza
        self.config = options.config or '/etc/pgbackrest/%s.conf' % options.stanza
        self.binary = options.pgbackrest or 'pgbackrest'
        self.os_user = options.os_user or 'postgres'
        self.timeout = options.command_timeout or 3600
        self._settings = None

    def check_config(self):
        if not os.path.isfile(self.config):
            raise DbDevopsError('pgBackRest config file %s not found: write it (the pitr role does) or set '
                                'config to the stanza\'s file' % self.config, config=self.config)

    def as_owner(self, argv):
        if os.geteuid() == 0 and self.os_user != 'root':
            try:
                pwd.getpwnam(self.os_user)
            except KeyError:
                raise DbDevopsError('os_user %s does not exist on this host: set os_user to the owner of the '
                                    'data directory' % self.os_user)
            return ['runuser', '-u', self.os_user, '--'] + list(argv)
        return list(argv)

    def argv(self, command, *args):
        return self.as_owner([self.binary, '--config=%s' % self.config, '--stanza=%s' % self.stanza, command]
                             + list(args))

    @staticmethod
    def display(argv):
        return ' '.join(shlex.quote(w) for w in argv)

    def run(self, command, *args, **kwargs):
        """Run a command; raise PgBackRestError unless it exits 0 (``check=False`` returns it anyway)."""
        check = kwargs.pop('check', True)
        timeout = kwargs.pop('timeout', None) or self.timeout
        self.check_config()
        argv = self.argv(command, *args)
        try:
            done = _pgclient.run(argv, timeout=timeout)
        except _pgclient.ClientError as exc:
            raise PgBackRestError('cannot run pgbackrest (%s): install it (Debian package "pgbackrest") or set '
                                  'the pgbackrest option' % exc, command=self.display(argv))
        except Exception as exc:  # subprocess.TimeoutExpired
            if exc.__class__.__name__ == 'TimeoutExpired':
                raise PgBackRestError('pgbackrest %s did not finish within %s s (command_timeout); it was killed'
                                      % (command, timeout), command=self.display(argv))
            raise
        if check and done.returncode != 0:
            raise self.error(command, done, argv)
        return done

    def error(self, command, done, argv=None):
        code, message = pgbackrest_error(done)
        sentence = CODE_SENTENCES.get(code)
        text = 'pgbackrest %s failed for stanza %s (exit code %s)' % (command, self.stanza, done.returncode)
        if sentence:
            text += ': %s' % sentence
        text += '. pgBackRest said: %s' % message
        return PgBackRestError(text, exit_code=done.returncode, error_code=code,
                               command=self.display(argv or done.argv))

    def json(self, command, *args, **kwargs):
        done = self.run(command, *(args + ('--output=json',)), **kwargs)
        try:
            return json.loads(done.stdout or 'null')
        except ValueError:
            raise PgBackRestError('pgbackrest %s --output=json printed something that is not JSON: %s'
                                  % (command, (done.stdout or '')[:200]))

    def info(self):
        """The info JSON of this stanza (a dict), or None when pgBackRest knows no such stanza."""
        data = self.json('info') or []
        for entry in data:
            if entry.get('name') == self.stanza:
                return entry
        return None

    def settings(self):
        """The config file's options for this stanza ([global] then [stanza] over it); {} if unreadable."""
        if self._settings is None:
            parser = configparser.ConfigParser(interpolation=None, strict=False)
            parser.optionxform = str
            try:
                with open(self.config) as handle:
                    parser.read_file(handle)
            except (OSError, configparser.Error):
                self._settings = {}
                return self._settings
            merged = {}
            for section in ('global', '%s' % self.stanza):
                if parser.has_section(section):
                    merged.update(parser.items(section))
            # never keep a secret around longer than needed
            self._settings = dict((k, v) for k, v in merged.items() if 'cipher-pass' not in k and 'key' not in k)
        return self._settings
