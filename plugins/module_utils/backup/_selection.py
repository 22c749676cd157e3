# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Internal to restore: a ``tables``/``schemas`` selection.

What the selection matches in a backup (a name matching nothing is an error
naming the closest ones), the archive entries that restore it, and the
in-place replace of just the selection inside a non-empty target: one
transaction (``pg_restore --clean --if-exists`` of the selected entries piped
into ``psql --single-transaction``) that also checks the row counts and
sequence values against the manifest before it commits, with ``lock_timeout``
so it fails fast behind the application's locks.  Nothing outside the
selection is dropped: an object outside it that depends on what is replaced
makes the transaction fail and roll back.  No Ansible imports.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import concurrent.futures
import difflib
import os
import re
import shutil
import subprocess
import tempfile

from ansible_collections.dbdevops.postgresql.plugins.module_utils import _catalog, _pgclient
from ansible_collections.dbdevops.postgresql.plugins.module_utils.backup._tools import BackupError

SCHEMA_ENTRY = re.compile(r'^SCHEMA - (\S+) ')
_HEADER_LOCK = 'SET lock_timeout = 0;'


def selected_tables(opts, manifest):
    """Manifest tables the restore covers, as [(schema, name, rows)]."""
    wanted = [_catalog.parse_table(name) for name in opts.tables]
    out = []
    for t in manifest.get('tables') or []:
        if opts.schemas and not opts.tables and t['schema'] not in opts.schemas:
            continue
        if opts.tables and not any(
                table == t['name'] and (schema is None or schema == t['schema']) and
                (not opts.schemas or t['schema'] in opts.schemas or schema == t['schema'])
                for schema, table in wanted):
            continue
        out.append((t['schema'], t['name'], t.get('rows')))
    return out


def check_selection(opts, manifest, toc):
    """Raise BackupError for each ``tables``/``schemas`` entry that matches nothing in the backup,
    naming the closest names it holds."""
    tables = manifest.get('tables') or []
    schemas = set(t['schema'] for t in tables)
    schemas.update(m.group(1) for m in (SCHEMA_ENTRY.match(e.rest) for e in toc) if m)
    problems = []
    for name in opts.schemas:
        if name not in schemas:
            problems.append('schema "%s"%s' % (name, _closest(name, sorted(schemas))))
    for text in opts.tables:
        schema, name = _catalog.parse_table(text)
        if not [t for t in tables if t['name'] == name and schema in (None, t['schema'])]:
            names = sorted(set(t['name'] for t in tables) | set('%s.%s' % (t['schema'], t['name']) for t in tables))
            problems.append('table "%s"%s' % (text, _closest(text, names)))
    if problems:
        raise BackupError('backup "%s" has no %s: nothing to restore. Check the spelling (names are taken as '
                          'written, without case folding)' % (manifest['id'], '; no '.join(problems)),
                          backup_id=manifest['id'])


def _closest(text, names):
    close = difflib.get_close_matches(text, names, n=3, cutoff=0.5)
    return ' (closest: %s)' % ', '.join(close) if close else ' (it holds: %s)' % ', '.join(names[:10])


def _toc_matches(rest, keys, prefixes):
    """Whether a TOC entry ("DESC schema tag owner") is one of ``keys`` (owner left out)."""
    for key in [rest] + [rest[:i] for i, ch in enumerate(rest) if ch == ' ']:
        if key in keys and (key == rest or ' ' not in rest[len(key) + 1:]):
            return True
    return any(rest.startswith(p) for p in prefixes)


def _table_keys(schema, name, obj, chosen, skipped):
    keys = set('%s %s %s' % (desc, schema, name) for desc in ('TABLE', 'TABLE DATA', 'ROW SECURITY'))
    keys.update(['COMMENT %s TABLE %s' % (schema, name), 'ACL %s TABLE %s' % (schema, name)])
    for col in obj.get('defaults', []):
        keys.add('DEFAULT %s %s %s' % (schema, name, col))
    for con in obj.get('constraints', []):
        keys.update(['CONSTRAINT %s %s %s' % (schema, name, con), 'CHECK CONSTRAINT %s %s %s' % (schema, name, con),
                     'COMMENT %s CONSTRAINT %s ON %s' % (schema, con, name)])
    for index in obj.get('indexes', []):
        keys.update(['INDEX %s %s' % (schema, index), 'COMMENT %s INDEX %s' % (schema, index)])
    for seq in obj.get('sequences', []):
        keys.update('%s %s %s' % (desc, schema, seq) for desc in ('SEQUENCE', 'SEQUENCE OWNED BY', 'SEQUENCE SET'))
        keys.update(['ACL %s SEQUENCE %s' % (schema, seq), 'COMMENT %s SEQUENCE %s' % (schema, seq)])
    for trigger in obj.get('triggers', []):
        keys.update(['TRIGGER %s %s %s' % (schema, name, trigger), 'COMMENT %s TRIGGER %s ON %s' % (schema, trigger, name)])
    for policy in obj.get('policies', []):
        keys.update(['POLICY %s %s %s' % (schema, name, policy), 'COMMENT %s POLICY %s ON %s' % (schema, policy, name)])
    for fk in obj.get('foreign_keys', []):
        if (fk['schema'], fk['table']) in chosen:
            keys.add('FK CONSTRAINT %s %s %s' % (schema, name, fk['name']))
        else:
            skipped.append(dict(table=_catalog.qualified(schema, name), foreign_key=fk['name'],
                                references=_catalog.qualified(fk['schema'], fk['table']),
                                reason='the referenced table is not restored'))
    return keys


def table_subset(opts, manifest, toc):
    """TOC entries that restore the selected tables as usable tables.

    ``pg_restore --table`` restores a table's definition and data only: no
    primary key, index, default (so no ``serial``), owned sequence, trigger or
    policy.  This picks, from the manifest's record of what belongs to each
    table, those entries too.  A foreign key is included only when the table
    it references is restored as well; the others are returned as skipped.
    Returns ``(entries, skipped)``.
    """
    selected = [(s, n) for s, n, _rows in selected_tables(opts, manifest)]
    chosen = set(selected)
    objects = dict(((t['schema'], t['name']), t.get('objects') or {}) for t in manifest.get('tables') or [])
    keys, prefixes, skipped = set(), [], []
    for schema in sorted(set(s for s, _n in selected) - {'public'}):
        keys.update(['SCHEMA - %s' % schema, 'COMMENT - SCHEMA %s' % schema, 'ACL - SCHEMA %s' % schema])
    for schema, name in selected:
        keys.update(_table_keys(schema, name, objects.get((schema, name), {}), chosen, skipped))
        prefixes += ['COMMENT %s COLUMN %s.' % (schema, name), 'ACL %s COLUMN %s.' % (schema, name)]
    return [entry for entry in toc if _toc_matches(entry.rest, keys, prefixes)], skipped


def selected_sequences(opts, manifest):
    """The manifest's sequences (qualified names) that the selection restores (all without one)."""
    recorded = manifest.get('sequences') or {}
    if not opts.tables and not opts.schemas:
        return sorted(recorded)
    if opts.tables:
        objects = dict(((t['schema'], t['name']), t.get('objects') or {}) for t in manifest.get('tables') or [])
        names = set(_catalog.qualified(s, seq) for s, n, _rows in selected_tables(opts, manifest)
                    for seq in objects.get((s, n), {}).get('sequences', []))
    else:
        names = set(q for q in recorded if _catalog.parse_table(q)[0] in opts.schemas)
    return sorted(n for n in recorded if n in names)


# -- the in-place replace of a selection ---------------------------------------------

def in_place_entries(opts, manifest, tool, archive, existing_schemas):
    """Archive entries replacing the selection in place: SCHEMA entries only for schemas the
    target does not have (dropping an existing schema would take what is not in the backup)."""
    if opts.tables:
        entries, skipped = table_subset(opts, manifest, _pgclient.read_toc(tool.path, archive))
    else:
        argv = [tool.path, '--list'] + ['--schema=%s' % s for s in opts.schemas] + [archive]
        done = _pgclient.run(argv)
        if not done.ok:
            raise BackupError('cannot read the table of contents of %s: %s' % (archive, done.why()))
        entries = [_pgclient.TocEntry(line, m.group('dump_id'), m.group('rest'))
                   for line, m in ((ln, _pgclient.TOC_LINE.match(ln)) for ln in done.stdout.splitlines()) if m]
        schema_entries = [e for e in _pgclient.read_toc(tool.path, archive)
                          if SCHEMA_ENTRY.match(e.rest) and SCHEMA_ENTRY.match(e.rest).group(1) in opts.schemas]
        entries = schema_entries + entries
        skipped = []
    keep = [e for e in entries if not (SCHEMA_ENTRY.match(e.rest) and
                                       SCHEMA_ENTRY.match(e.rest).group(1) in existing_schemas)]
    return keep, skipped


def check_sql(tables, sequences, recorded):
    """A DO block raising when a restored table's row count or a sequence differs from the manifest."""
    lines = ["DO $dbdevops$", "DECLARE problems text[] := '{}'; n bigint; lv bigint; ic boolean; inc bigint;", "BEGIN"]
    for schema, name, rows in tables:
        if rows is None:
            continue
        key = _catalog.qualified(schema, name)
        lines += ['  SELECT count(*) INTO n FROM ONLY %s;' % key,
                  "  IF n <> %d THEN problems := problems || format('%%s has %%s rows, backup had %%s', %s, n, %d); "
                  "END IF;" % (rows, _literal(key), rows)]
    for key in sequences:
        last_value, is_called = recorded[key]
        # behind the recorded value fails; further along is what a sequence read after the snapshot gives
        lines += ['  SELECT last_value, is_called INTO lv, ic FROM %s;' % key,
                  '  SELECT seqincrement INTO inc FROM pg_sequence WHERE seqrelid = %s::regclass;' % _literal(key),
                  "  IF (lv + CASE WHEN ic THEN inc ELSE 0 END) * sign(inc) < (%d + CASE WHEN %s THEN inc ELSE 0 END) "
                  "* sign(inc) THEN problems := problems || format('sequence %%s is at (%%s, %%s), behind the "
                  "backup''s (%d, %s)', %s, lv, ic); END IF;"
                  % (int(last_value), bool(is_called), int(last_value), bool(is_called), _literal(key))]
    lines += ["  IF cardinality(problems) > 0 THEN",
              "    RAISE EXCEPTION 'dbdevops verification failed: %', array_to_string(problems, '; ');",
              "  END IF;", "END $dbdevops$;", ""]
    return '\n'.join(lines)


def _literal(text):
    return "'%s'" % text.replace("'", "''")


def replace_in_place(work, env, entries, check):
    """Run the selected entries with --clean into the target in one transaction; returns stderr.

    pg_restore writes the script, a pool thread passes it to psql (setting
    ``lock_timeout`` where the script turns it off) and adds ``check``; this
    thread started both and waits for them.
    """
    opts, tool, psql = work['options'], work['tool'], work['psql']
    folder = tempfile.mkdtemp(prefix='dbdevops-restore-')
    try:
        list_path = os.path.join(folder, 'use-list')
        with open(list_path, 'w') as handle:
            handle.write(''.join(entry.line + '\n' for entry in entries))
        restore_argv = [tool.path, '--clean', '--if-exists', '--use-list=%s' % list_path, '--file=-']
        if opts.no_owner:
            restore_argv += ['--no-owner', '--no-acl']
        restore_argv.append(work['archive'])
        psql_argv = [psql.path, '-X', '-q', '--no-password', '-v', 'ON_ERROR_STOP=1', '--single-transaction',
                     '-f', '-']
        with tempfile.TemporaryFile() as restore_err:
            producer = _pgclient.popen(restore_argv, stdout=subprocess.PIPE, stderr=restore_err)
            consumer = None
            try:
                consumer = _pgclient.popen(psql_argv, env=env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                           stderr=subprocess.PIPE)
                with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
                    pumping = pool.submit(_pump, producer.stdout, consumer.stdin, opts.lock_timeout, check)
                    stderr = consumer.stderr.read().decode('utf-8', 'replace')
                    pumped = pumping.exception()
                producer.wait()
                consumer.wait()
            except BaseException:
                _pgclient.kill(consumer)
                _pgclient.kill(producer)
                raise
            restore_err.seek(0)
            produced = restore_err.read().decode('utf-8', 'replace')
        if producer.returncode != 0 or _pgclient.error_lines(produced):
            return 1, produced
        if pumped is not None and consumer.returncode == 0:
            return 1, 'error: %s' % pumped
        return consumer.returncode, stderr
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _pump(source, sink, lock_timeout, check):
    try:
        for _index in range(200):           # the script's header: SET statements
            line = source.readline()
            if not line:
                break
            if line.strip() == _HEADER_LOCK.encode():
                line = ("SET lock_timeout = %s;\n" % _literal(lock_timeout)).encode('utf-8')
            sink.write(line)
            if line.startswith(b'SELECT pg_catalog.set_config'):
                break
        shutil.copyfileobj(source, sink, 1 << 20)
        sink.write(check.encode('utf-8'))
    except BrokenPipeError:
        pass                                 # psql stopped at an error: its stderr says which
    finally:
        try:
            sink.close()
        except BrokenPipeError:
            pass
        source.close()


def in_place_error(stderr, opts, target):
    """The message for a failed in-place replace (its transaction was rolled back)."""
    done = ' Nothing was changed: the transaction was rolled back.'
    if 'lock timeout' in stderr:
        return ('replacing %s in database "%s" could not lock what it replaces within lock_timeout %s: other '
                'sessions are using those objects.%s Retry when they are done, or raise lock_timeout'
                % (_what(opts), target, opts.lock_timeout, done))
    if 'depends on' in stderr or 'depend on' in stderr:
        detail = _detail(stderr)
        return ('replacing %s in database "%s" is blocked by objects outside the selection that depend on '
                'what it would drop: %s.%s Add them to the selection, or drop or alter those objects first'
                % (_what(opts), target, detail or _pgclient.first_error(stderr), done))
    match = re.search(r'dbdevops verification failed: (.*)', stderr)
    if match:
        return ('restored %s in database "%s" do not match the backup: %s.%s'
                % (_what(opts), target, match.group(1).strip(), done))
    return ('replacing %s in database "%s" failed: %s.%s'
            % (_what(opts), target, _pgclient.first_error(stderr), done))


def _what(opts):
    if opts.tables:
        return 'tables %s' % ', '.join(opts.tables)
    return 'schemas %s' % ', '.join(opts.schemas)


def _detail(stderr):
    lines = stderr.splitlines()
    out = []
    for i, line in enumerate(lines):
        if 'ERROR:' in line:
            out.append(line.split('ERROR:', 1)[1].strip())
            for follow in lines[i + 1:]:
                if follow.startswith('HINT:') or follow.startswith('psql:'):
                    break
                out.append(follow.replace('DETAIL:', '').strip())
            break
    return '; '.join(o for o in out if o)
