# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Named restore points: ``pg_create_restore_point(name)``, recorded in a JSON file.

The record (name, LSN, time, timeline, system identifier, stanza) lets a
restore to the name pick a backup taken before the point and check the point
is archived.  ``pg_create_restore_point`` is not idempotent: every run writes
a new point.  No Ansible imports.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os
import pwd
import tempfile

from ansible_collections.dbdevops.postgresql.plugins.module_utils._contract import Plan, finish
from ansible_collections.dbdevops.postgresql.plugins.module_utils.connection import connect
from ansible_collections.dbdevops.postgresql.plugins.module_utils.errors import DbDevopsError

MAX_NAME_BYTES = 63

CHECK_SQL = """
SELECT pg_is_in_recovery(), current_setting('wal_level'),
       (SELECT system_identifier::text FROM pg_control_system())
"""
CREATE_SQL = """
SELECT p::text, to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
       ('x' || substr(pg_walfile_name(p), 1, 8))::bit(32)::int
  FROM pg_create_restore_point(%s) AS p
"""


def validate_name(name):
    if not name or not name.strip():
        raise DbDevopsError('restore point name is empty: give a name such as "before-release-42"')
    size = len(name.encode('utf-8'))
    if size > MAX_NAME_BYTES:
        raise DbDevopsError('restore point name %r is %d bytes; PostgreSQL allows at most %d: choose a shorter name'
                            % (name, size, MAX_NAME_BYTES))


def read_records(path):
    """The recorded restore points (a list), [] when the file is missing; a broken file is an error."""
    try:
        with open(path) as handle:
            data = json.load(handle)
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        raise DbDevopsError('cannot read the restore point record %s: %s; fix or remove it' % (path, exc))
    if not isinstance(data, dict) or not isinstance(data.get('restore_points'), list):
        raise DbDevopsError('%s is not a restore point record (no "restore_points" list); fix or remove it' % path)
    return data['restore_points']


def find_record(path, name, stanza=None):
    """(record, count): the newest record of ``name`` (for ``stanza`` when recorded with one), and how many."""
    found = [r for r in read_records(path) if r.get('name') == name
             and (stanza is None or r.get('stanza') in (None, stanza))]
    return (found[-1] if found else None), len(found)


def append_record(path, record):
    records = read_records(path) + [record]
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix='.restore-points-', dir=folder)
    try:
        with os.fdopen(fd, 'w') as handle:
            json.dump(dict(restore_points=records), handle, indent=1, sort_keys=True)
            handle.write('\n')
        os.chmod(tmp, 0o640)
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam('postgres')
                os.chown(tmp, owner.pw_uid, owner.pw_gid)
            except KeyError:
                pass
        os.rename(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class RestorePointEngine(object):
    def __init__(self, conn_params, options):
        self.params = conn_params
        self.options = options
        validate_name(options.name)

    def plan(self):
        conn = connect(self.params, autocommit=True, application_name='dbdevops-restore-point')
        try:
            with conn.cursor() as cur:
                cur.execute(CHECK_SQL)
                in_recovery, wal_level, system_id = cur.fetchone()
        finally:
            conn.close()
        if in_recovery:
            raise DbDevopsError('cannot create restore point %r on %s: the server is a standby (in recovery); '
                                'run it on the primary' % (self.options.name, self.params.where()))
        if wal_level == 'minimal':
            raise DbDevopsError('cannot create restore point %r on %s: wal_level is minimal; set it to replica'
                                % (self.options.name, self.params.where()))
        if self.options.record:
            # a broken record or a missing folder fails before the point is made
            read_records(self.options.record_file)
            folder = os.path.dirname(os.path.abspath(self.options.record_file))
            if not os.path.isdir(folder):
                raise DbDevopsError('cannot record restore point %r: folder %s of record_file does not exist; '
                                    'set record_file (or record: false)' % (self.options.name, folder))
        values = dict(name=self.options.name, lsn=None, time=None, timeline=None,
                      recorded_in=self.options.record_file if self.options.record else None)
        return Plan(True, values, work=dict(system_identifier=system_id))

    def apply(self, plan):
        values = dict(plan.values)
        conn = connect(self.params, autocommit=True, application_name='dbdevops-restore-point')
        try:
            with conn.cursor() as cur:
                cur.execute(CREATE_SQL, (self.options.name,))
                values['lsn'], values['time'], values['timeline'] = cur.fetchone()
        except Exception as exc:  # psycopg2.Error: permission denied and friends
            if isinstance(exc, DbDevopsError):
                raise
            raise DbDevopsError('pg_create_restore_point(%r) failed on %s: %s'
                                % (self.options.name, self.params.where(), str(exc).strip()))
        finally:
            conn.close()
        if self.options.record:
            append_record(self.options.record_file, dict(
                name=values['name'], lsn=values['lsn'], time=values['time'], timeline=values['timeline'],
                system_identifier=plan.work['system_identifier'], stanza=self.options.stanza))
        return finish(values, changed=True)
