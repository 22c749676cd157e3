# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Host-side command over the backup engine (what the ``backup`` role's cron runs).

    dbdevops-backup --config /etc/dbdevops-backup/backup.json backup
    dbdevops-backup --config /etc/dbdevops-backup/backup.json list [--verify]

The config is JSON: connection options named as the modules name them
(login_user, login_host, login_port, login_unix_socket, db, ssl_mode, ...,
and login_password_file), plus the options of the ``backup`` module, read
through the one declaration ``engine.BackupOptions`` (dest, databases,
all_databases, format, jobs, compression, compression_level, globals,
count_rows, os_owner, pg_bin_dir, lock_wait_timeout, retention_keep_last,
retention_keep_days, retention_keep_daily, retention_keep_weekly,
retention_keep_monthly, retention_verify) and skip_on_standby.  Unknown keys
are refused.  Keys starting with ``_`` are comments.  The nested form
``retention: {keep_last: 7, ...}`` that earlier versions of the role wrote is
read too.  One line per event on stdout; exit status 0 when everything asked
for worked.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import argparse
import json
import os
import sys

from ansible_collections.dbdevops.postgresql.plugins.module_utils import _options
from ansible_collections.dbdevops.postgresql.plugins.module_utils.connection import ConnParams
from ansible_collections.dbdevops.postgresql.plugins.module_utils.errors import DbDevopsError
from ansible_collections.dbdevops.postgresql.plugins.module_utils.backup import _tools, catalog, engine

# Config keys that are not backup options: how to connect.
CONNECTION_KEYS = tuple(ConnParams.FIELDS) + ('login_password_file',)


def log(message):
    sys.stdout.write('%s %s\n' % (_tools.utcnow().strftime('%Y-%m-%dT%H:%M:%SZ'), message))
    sys.stdout.flush()


def load_config(path):
    """The config file as a dict, with ``login_password`` read from ``login_password_file``."""
    try:
        with open(path) as f:
            config = json.load(f)
    except (OSError, ValueError) as exc:
        raise DbDevopsError('cannot read config %s: %s' % (path, exc))
    if not isinstance(config, dict):
        raise DbDevopsError('config %s: expected a JSON object' % path)
    password_file = config.get('login_password_file')
    if password_file:
        try:
            with open(password_file) as f:
                config['login_password'] = f.read().rstrip('\n')
        except OSError as exc:
            raise DbDevopsError('cannot read login_password_file %s: %s' % (password_file, exc))
    return config


def backup_options(config, where):
    """engine.BackupOptions from a config; unknown keys, wrong types and bad choices are errors."""
    flat = dict((key, value) for key, value in config.items() if not key.startswith('_'))
    nested = flat.pop('retention', None)
    if nested is not None:
        if not isinstance(nested, dict):
            raise DbDevopsError('%s: option retention must be a mapping of %s'
                                % (where, ', '.join(catalog.RETENTION_KEYS)))
        unknown = sorted(set(nested) - set(catalog.RETENTION_KEYS))
        if unknown:
            raise DbDevopsError('%s: unknown option(s) retention.%s; known are %s'
                                % (where, ', retention.'.join(unknown), ', '.join(catalog.RETENTION_KEYS)))
        for key, value in nested.items():
            flat.setdefault('retention_' + key, value)
    return _options.from_mapping(engine.BackupOptions, flat, where, ignore=CONNECTION_KEYS)


def _standby(params):
    conn = engine.open_session(params, autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute('SELECT pg_is_in_recovery()')
            return cur.fetchone()[0]
    finally:
        conn.close()


def cmd_backup(config, opts):
    params = ConnParams.from_params(config)
    if opts.skip_on_standby and _standby(params):
        log('skipped: %s is a standby (pg_is_in_recovery() is true); backups run on the primary'
            % params.where())
        return 0
    backups = engine.BackupEngine(params, opts)
    plan = backups.plan()
    work = plan.work
    log('backup starting: databases %s into %s (%s, %s)' % (
        ', '.join(work['databases']), work['dest'], work['format'], work['compression']))
    for result in backups.take(plan):
        log('backup ok: %s database %s, %d bytes, %d ms, %d tables counted' % (
            result['backup_id'], result['database'], result['bytes'], result['duration_ms'],
            len(result['manifest']['tables'])))
    outcome = backups.retain(plan)
    for item in outcome['corrupt']:
        log('WARNING: retention found a damaged backup (kept, not counted): %s: %s'
            % (item['backup_id'], '; '.join(item['problems'])))
    for item in outcome['deleted']:
        log('retention deleted: %s (%s)' % (item['backup_id'], item['reason']))
    for name in outcome['partial_removed']:
        log('removed interrupted backup folder: %s' % name)
    return 0


def cmd_list(opts, verify):
    """One line per backup; exit 1 when one is corrupt or incomplete, or ``dest`` does not exist."""
    if not os.path.isdir(opts.dest):
        log('FAILED: backup folder %s does not exist: check dest' % opts.dest)
        return 1
    backups, partial = catalog.list_backups(opts.dest, verify=verify)
    bad = 0
    for b in backups:
        bad += b['status'] not in catalog.GOOD
        log('%s %s %s %s bytes %s' % (
            b['status'], b['backup_id'], b.get('database'), b.get('bytes'),
            '; '.join(b['problems'] + b.get('notes', []))))
    for p in partial:
        log('partial %s%s' % (p['name'], ' (running)' if p['running'] else ''))
    return 1 if bad else 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog='dbdevops-backup', description=__doc__.split('\n', maxsplit=1)[0])
    parser.add_argument('--config', default='/etc/dbdevops-backup/backup.json')
    sub = parser.add_subparsers(dest='command')
    sub.add_parser('backup', help='take the backups, then apply retention')
    lister = sub.add_parser('list', help='list backups and their status')
    lister.add_argument('--verify', action='store_true', help='re-hash files and read each archive TOC')
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
        opts = backup_options(config, 'config %s' % args.config)
        if args.command == 'list':
            return cmd_list(opts, args.verify)
        return cmd_backup(config, opts)
    except DbDevopsError as exc:
        log('FAILED: %s' % exc)
        return 1
    except KeyboardInterrupt:
        log('FAILED: interrupted; no partial backup is recorded')
        return 130
