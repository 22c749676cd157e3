# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""schema_diff as an engine: fingerprint two databases, list the differences,
and write SQL turning the ``dst`` schema into the ``src`` schema.

    engine = SchemaDiffEngine((src_params, dst_params), options)
    plan = engine.plan()        # both fingerprints, the script, would dest change
    engine.apply(plan)          # writes dest (atomically) when it would change

Reads both databases only; the only change is writing ``dest``.  No Ansible imports.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import dataclasses
import os
import tempfile

from ansible_collections.dbdevops.postgresql.plugins.module_utils import fingerprint
from ansible_collections.dbdevops.postgresql.plugins.module_utils._catalog import parse_table
from ansible_collections.dbdevops.postgresql.plugins.module_utils._contract import Plan
from ansible_collections.dbdevops.postgresql.plugins.module_utils._options import option
from ansible_collections.dbdevops.postgresql.plugins.module_utils.connection import connect
from ansible_collections.dbdevops.postgresql.plugins.module_utils.errors import DbDevopsError

# The flat options naming the destination before the dst block, and the dst
# suboption each one maps onto.  Deprecated: removed in 2.0.0.
DEPRECATED_TARGET = (('target_db', 'db'), ('target_login_host', 'login_host'),
                     ('target_login_port', 'login_port'), ('target_login_user', 'login_user'),
                     ('target_login_password', 'login_password'),
                     ('target_login_unix_socket', 'login_unix_socket'))


def _deprecated(kind='str', no_log=False):
    return option(type=kind, no_log=no_log, cli=False, removed_in_version='2.0.0',
                  removed_from_collection='dbdevops.postgresql')


@dataclasses.dataclass
class SchemaDiffOptions(object):
    """The options of schema_diff (the connection blocks' suboptions come from ``_module``)."""
    src: dict = option(type='dict', cli=False)
    dst: dict = option(type='dict', cli=False)
    dest: str = option(type='path')
    exclude_tables: list = option(['public.dbdevops_schema_history', 'public.schema_migrations'], type='list', elements='str')
    target_db: str = _deprecated()
    target_login_host: str = _deprecated()
    target_login_port: int = _deprecated('int')
    target_login_user: str = _deprecated()
    target_login_password: str = _deprecated(no_log=True)
    target_login_unix_socket: str = _deprecated()
    RULES = dict(required_one_of=[('dst', 'target_db')],
                 mutually_exclusive=[('dst', flat) for flat, _field in DEPRECATED_TARGET])

    def dst_block(self):
        """The destination block: ``dst``, or the deprecated flat ``target_*`` options mapped onto it."""
        if self.dst is not None:
            return self.dst
        return dict((field, getattr(self, flat)) for flat, field in DEPRECATED_TARGET
                    if getattr(self, flat) is not None)


def _take(params, exclude):
    conn = connect(params, autocommit=True, application_name='dbdevops-schema-diff')
    try:
        return fingerprint.take(conn, exclude_tables=exclude)
    finally:
        conn.close()


def _read(path):
    if not os.path.exists(path):
        return None
    try:
        with open(path) as handle:
            return handle.read()
    except (IOError, OSError) as exc:
        raise DbDevopsError('cannot read %s: %s' % (path, exc), dest=path)


def write_atomic(path, text):
    """Write ``text`` to ``path`` through a temporary file in the same directory and a rename.

    An existing file keeps its mode (and owner, where allowed); a new one gets
    the umask's mode, as a plain ``open()`` would give it.
    """
    directory = os.path.dirname(os.path.abspath(path))
    try:
        old = os.stat(path)
    except OSError:
        old = None
    fd, tmp = tempfile.mkstemp(prefix='.%s.' % os.path.basename(path), dir=directory)
    try:
        with os.fdopen(fd, 'w') as handle:
            handle.write(text)
        if old is not None:
            os.chmod(tmp, old.st_mode & 0o7777)
            try:
                os.chown(tmp, old.st_uid, old.st_gid)
            except OSError:
                pass
        else:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except (IOError, OSError) as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise DbDevopsError('cannot write %s: %s' % (path, exc), dest=path)


class SchemaDiffEngine(object):
    """schema_diff: ``sides`` is ``(src ConnParams, dst ConnParams)``; src holds the desired schema.

    ``plan()`` takes both fingerprints, compares them, builds the sync script
    and reads ``dest``: it would change when the script differs from the
    file (diff: the old and new file).  ``apply(plan)`` writes ``dest``
    atomically when it would change; without ``dest`` nothing ever changes.
    """

    def __init__(self, sides, options):
        self.src, self.dst = sides
        self.options = options
        self.exclude = [parse_table(text) for text in options.exclude_tables]

    def plan(self):
        src_fp, dst_fp = _take(self.src, self.exclude), _take(self.dst, self.exclude)
        diffs = fingerprint.compare(dst_fp, src_fp)
        script, _has = fingerprint.sync_script(dst_fp, src_fp)
        values = dict(identical=not diffs, differences=diffs,
                      summary=fingerprint.format_differences(diffs, 500), sync_script=script,
                      source_fingerprint=fingerprint.digest(src_fp),
                      target_fingerprint=fingerprint.digest(dst_fp))
        dest, changed, diff = self.options.dest, False, None
        if dest:
            old = _read(dest)
            changed = old != script
            if changed:
                diff = dict(before=old or '', after=script, before_header=dest, after_header=dest)
        return Plan(changed, values=values, diff=diff)

    def apply(self, plan):
        if plan.changed:
            write_atomic(self.options.dest, plan.values['sync_script'])
        return plan.result()
