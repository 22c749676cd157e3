# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Host-side command over the backup engine (what the ``backup`` role's cron runs).

    dbdevops-backup --config /etc/dbdevops-backup/backup.json backup
    dbdevops-backup --config /etc/dbdevops-backup/backup.json list [--verify]

The config is JSON: connection options named as the modules name them
(login_user, login_host, login_port, login_unix_socket, db, login_password_file),
plus dest, databases, all_databases, format, jobs, compression,
compression_level, globals, count_rows, skip_on_standby, retention
(keep_last, keep_days, keep_daily, keep_weekly, keep_monthly) and retention_verify.
One line per event on stdout; exit status 0 when everything asked for worked.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import argparse
import json
import sys

from ansible_collections.dbdevops.postgresql.plugins.module_utils.connection import ConnParams, connect
from ansible_collections.dbdevops.postgresql.plugins.module_utils.errors import DbDevopsError
from ansible_collections.dbdevops.postgresql.plugins.module_utils.backup import _tools, catalog, engine


def log(message):
    sys.stdout.write('%s %s\n' % (_tools.utcnow().strftime('%Y-%m-%dT%H:%M:%SZ'), message))
    sys.stdout.flush()


def load_config(path):
    try:
        with open(path) as f:
            config = json.load(f)
    except (OSError, ValueError) as exc:
        raise DbDevopsError('cannot read config %s: %s' % (path, exc))
    password_file = config.get('login_password_file')
    if password_file:
        try:
            with open(password_file) as f:
                config['login_password'] = f.read().rstrip('\n')
        except OSError as exc:
            raise DbDevopsError('cannot read login_password_file %s: %s' % (password_file, exc))
    return config


def _policy(config):
    retention = config.get('retention') or {}
    return catalog.RetentionPolicy(**dict((k, retention.get(k)) for k in (
        'keep_last', 'keep_days', 'keep_daily', 'keep_weekly', 'keep_monthly')))


def cmd_backup(config):
    params = ConnParams.from_params(config)
    if config.get('skip_on_standby', True):
        conn = connect(params, autocommit=True, application_name='dbdevops-backup')
        try:
            with conn.cursor() as cur:
                cur.execute('SELECT pg_is_in_recovery()')
                standby = cur.fetchone()[0]
        finally:
            conn.close()
        if standby:
            log('skipped: %s is a standby (pg_is_in_recovery() is true); backups run on the primary'
                % params.where())
            return 0
    opts = engine.BackupOptions(
        dest=config['dest'], databases=config.get('databases'),
        all_databases=config.get('all_databases', False), format=config.get('format', 'custom'),
        jobs=config.get('jobs', 1), compression=config.get('compression', 'gzip'),
        compression_level=config.get('compression_level'), globals_dump=config.get('globals', False),
        count_rows=config.get('count_rows', True), os_owner=config.get('os_owner'),
        pg_bin_dir=config.get('pg_bin_dir'))
    plan = engine.plan_backup(params, opts)
    log('backup starting: databases %s into %s (%s, %s)' % (
        ', '.join(plan['databases']), plan['dest'], plan['format'], plan['compression']))
    for result in engine.run_backup(params, plan):
        log('backup ok: %s database %s, %d bytes, %d ms, %d tables counted' % (
            result['backup_id'], result['database'], result['bytes'], result['duration_ms'],
            len(result['manifest']['tables'])))
    outcome = catalog.apply_retention(plan['dest'], _policy(config),
                                      verify=config.get('retention_verify', True))
    for item in outcome['corrupt']:
        log('WARNING: retention found a damaged backup (kept, not counted): %s: %s'
            % (item['backup_id'], '; '.join(item['problems'])))
    for item in outcome['deleted']:
        log('retention deleted: %s (%s)' % (item['backup_id'], item['reason']))
    for name in outcome['partial_removed']:
        log('removed interrupted backup folder: %s' % name)
    return 0


def cmd_list(config, verify):
    backups, partial = catalog.list_backups(config['dest'], verify=verify)
    bad = 0
    for b in backups:
        bad += b['status'] == 'corrupt'
        log('%s %s %s %s bytes %s' % (
            b['status'], b['backup_id'], b.get('database'), b.get('bytes'), '; '.join(b['problems'])))
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
        if args.command == 'list':
            return cmd_list(config, args.verify)
        return cmd_backup(config)
    except DbDevopsError as exc:
        log('FAILED: %s' % exc)
        return 1
    except KeyboardInterrupt:
        log('FAILED: interrupted; no partial backup is recorded')
        return 130
