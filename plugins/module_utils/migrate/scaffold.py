# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""New migration files from a template (no Ansible imports).

The built-in templates are the same text as ``templates/migration/up.sql`` and
``undo.sql`` at the top of the collection (a unit test keeps them equal);
``template_dir`` points at a folder with your own ``up.sql`` and ``undo.sql``.
Tokens ``{description}``, ``{version}`` and ``{created}`` are replaced.
Styles: ``flyway`` (``V``/``U`` files), ``pair`` (``.up.sql``/``.down.sql``),
``folder`` (``<version>_<name>/up.sql`` and ``down.sql``).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import os
import re

from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate import files as mfiles

UP_TEMPLATE = """-- {description}
-- version {version}, created {created} UTC by dbdevops.postgresql.migration_new
--
-- Runs in one transaction with its history row. For CREATE INDEX CONCURRENTLY
-- or other statements that cannot run in a transaction, put this line first:
--   -- dbdevops:transaction=off
-- Zero-downtime habits: add columns nullable and without a volatile default,
-- backfill in batches in a later migration, add constraints NOT VALID and
-- VALIDATE them in another migration.

"""

UNDO_TEMPLATE = """-- undo: {description}
-- version {version}, created {created} UTC by dbdevops.postgresql.migration_new
--
-- Must bring the schema back exactly as it was before version {version}
-- (verify_rollback checks this on a scratch database).

"""


def slug(description):
    text = re.sub(r'[^A-Za-z0-9]+', '_', description.strip().lower()).strip('_')
    if not text:
        raise mfiles.MigrationFilesError('description "%s" has no letters or digits to name the file'
                                         % description)
    return text


def _render(template, description, version, created):
    return (template.replace('{description}', description).replace('{version}', version)
            .replace('{created}', created))


def plan_new(path, description, style='flyway', version=None, template_dir=None, now=None):
    """What ``create_new`` would write: ``{changed, version, files: [{path, content}]}``."""
    if not os.path.isdir(path):
        raise mfiles.MigrationFilesError('migrations folder %s does not exist; create it first'
                                         % path, path=path)
    name = slug(description)
    existing = mfiles.discover(path, expand=False)
    for mfile in existing.versioned.values():
        if slug(mfile.description) == name:
            found = [mfile.path] + ([existing.undo[mfile.key].path] if mfile.key in existing.undo else [])
            return dict(changed=False, version=mfile.version, files=[dict(path=p) for p in found])
    layout = 'folder' if style == 'folder' else 'flat'
    if existing.layout not in (None, layout):
        raise mfiles.MigrationFilesError(
            '%s uses the %s layout (%s) and style %s would add the other one; give style: %s'
            % (path, 'folder-per-migration' if existing.layout == 'folder' else 'flat file',
               [f for f in existing.all_files() if f.kind != mfiles.KIND_REPEATABLE][0].script, style,
               'folder' if existing.layout == 'folder' else 'flyway or pair'), path=path)
    now = now or datetime.datetime.utcnow()
    if version is None:
        version = now.strftime('%Y%m%d%H%M%S')
        while mfiles.version_key(version) in existing.versioned:
            version = str(int(version) + 1)
    elif not mfiles.is_version(version):
        raise mfiles.MigrationFilesError('version "%s" is not dotted numbers or a timestamp' % version)
    elif mfiles.version_key(version) in existing.versioned:
        raise mfiles.MigrationFilesError('version %s already exists in %s (%s)' % (
            version, path, existing.versioned[mfiles.version_key(version)].script))
    up_t, undo_t = UP_TEMPLATE, UNDO_TEMPLATE
    if template_dir:
        try:
            with open(os.path.join(template_dir, 'up.sql')) as handle:
                up_t = handle.read()
            with open(os.path.join(template_dir, 'undo.sql')) as handle:
                undo_t = handle.read()
        except (IOError, OSError) as exc:
            raise mfiles.MigrationFilesError('cannot read templates in %s: %s' % (template_dir, exc))
    if style == 'folder':
        names = (os.path.join('%s_%s' % (version, name), 'up.sql'),
                 os.path.join('%s_%s' % (version, name), 'down.sql'))
    elif style == 'pair':
        names = ('%s_%s.up.sql' % (version, name), '%s_%s.down.sql' % (version, name))
    else:
        names = ('V%s__%s.sql' % (version, name), 'U%s__%s.sql' % (version, name))
    created = now.strftime('%Y-%m-%d %H:%M:%S')
    return dict(changed=True, version=version, files=[
        dict(path=os.path.join(path, names[0]), content=_render(up_t, description, version, created)),
        dict(path=os.path.join(path, names[1]), content=_render(undo_t, description, version, created)),
    ])


def create_new(plan):
    """Write the files of ``plan_new``; never overwrites."""
    for item in plan['files'] if plan['changed'] else []:
        folder = os.path.dirname(item['path'])
        if not os.path.isdir(folder):       # style folder: <version>_<name>/
            os.mkdir(folder, 0o755)
        fd = os.open(item['path'], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, 'w') as handle:
            handle.write(item['content'])
    return plan
