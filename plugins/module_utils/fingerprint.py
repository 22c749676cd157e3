# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Schema fingerprint: the catalog as a flat, comparable dict (no Ansible imports).

``take(conn)`` returns ``{object key: {attribute: text}}`` for every user
object: tables, columns (type, NOT NULL, default), constraints, indexes,
views and materialized views, functions and procedures, triggers, sequences,
enum types and extensions.  Keys read like ``column public.users.email``.
Column order and object OIDs are not part of it, so an undo that drops and
re-adds a column in another position, or a database restored elsewhere,
compares equal.  ``digest()`` hashes it; ``compare()`` returns readable
differences; ``sync_script()`` writes SQL turning one schema into another.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import json

from ansible_collections.dbdevops.postgresql.plugins.module_utils._catalog import qualified, quote_ident

_SKIP_SCHEMAS = "('pg_catalog', 'information_schema', 'pg_toast')"
_USER_NS = ("n.nspname NOT IN %s AND n.nspname NOT LIKE 'pg\\_temp\\_%%' "
            "AND n.nspname NOT LIKE 'pg\\_toast\\_temp\\_%%'" % _SKIP_SCHEMAS)
_NOT_EXT = ("NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = %s AND d.deptype = 'e')")

QUERIES = (
    ('schema', """
        SELECT 'schema ' || quote_ident(n.nspname), json_build_object('name', n.nspname)
        FROM pg_namespace n WHERE %s AND n.nspname <> 'public'
          AND %s""" % (_USER_NS, _NOT_EXT % 'n.oid')),
    ('table', """
        SELECT 'table ' || quote_ident(n.nspname) || '.' || quote_ident(c.relname),
               json_build_object('schema', n.nspname, 'name', c.relname,
                                 'kind', CASE c.relkind WHEN 'p' THEN 'partitioned' ELSE 'table' END,
                                 'persistence', c.relpersistence)
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p') AND %s AND %s""" % (_USER_NS, _NOT_EXT % 'c.oid')),
    ('column', """
        SELECT 'column ' || quote_ident(n.nspname) || '.' || quote_ident(c.relname) || '.'
                   || quote_ident(a.attname),
               json_build_object('schema', n.nspname, 'table', c.relname, 'name', a.attname,
                                 'type', format_type(a.atttypid, a.atttypmod),
                                 'not_null', a.attnotnull,
                                 'default', pg_get_expr(ad.adbin, ad.adrelid),
                                 'identity', a.attidentity, 'generated', a.attgenerated,
                                 'collation', CASE WHEN a.attcollation <> t.typcollation
                                                   THEN a.attcollation::regcollation::text END)
        FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_type t ON t.oid = a.atttypid
        LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
        WHERE c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped AND %s AND %s"""
     % (_USER_NS, _NOT_EXT % 'c.oid')),
    ('constraint', """
        SELECT 'constraint ' || quote_ident(n.nspname) || '.' || quote_ident(c.relname) || '.'
                   || quote_ident(k.conname),
               json_build_object('schema', n.nspname, 'table', c.relname, 'name', k.conname,
                                 'type', k.contype, 'definition', pg_get_constraintdef(k.oid),
                                 'validated', k.convalidated)
        FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE %s AND %s""" % (_USER_NS, _NOT_EXT % 'c.oid')),
    ('index', """
        SELECT 'index ' || quote_ident(n.nspname) || '.' || quote_ident(ic.relname),
               json_build_object('schema', n.nspname, 'table', c.relname, 'name', ic.relname,
                                 'definition', pg_get_indexdef(i.indexrelid),
                                 'valid', i.indisvalid)
        FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
        JOIN pg_class c ON c.oid = i.indrelid
        JOIN pg_namespace n ON n.oid = ic.relnamespace
        WHERE %s AND %s
          AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid
                          AND k.contype IN ('p', 'u', 'x'))""" % (_USER_NS, _NOT_EXT % 'c.oid')),
    ('view', """
        SELECT CASE c.relkind WHEN 'm' THEN 'materialized view ' ELSE 'view ' END
                   || quote_ident(n.nspname) || '.' || quote_ident(c.relname),
               json_build_object('schema', n.nspname, 'name', c.relname,
                                 'materialized', c.relkind = 'm',
                                 'definition', pg_get_viewdef(c.oid))
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('v', 'm') AND %s AND %s""" % (_USER_NS, _NOT_EXT % 'c.oid')),
    ('function', """
        SELECT 'function ' || quote_ident(n.nspname) || '.' || quote_ident(p.proname)
                   || '(' || pg_get_function_identity_arguments(p.oid) || ')',
               json_build_object('schema', n.nspname, 'name', p.proname,
                                 'arguments', pg_get_function_identity_arguments(p.oid),
                                 'kind', p.prokind,
                                 'definition', CASE WHEN p.prokind IN ('f', 'p', 'w')
                                                    THEN pg_get_functiondef(p.oid) END)
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE %s AND p.prokind <> 'a' AND %s""" % (_USER_NS, _NOT_EXT % 'p.oid')),
    ('trigger', """
        SELECT 'trigger ' || quote_ident(n.nspname) || '.' || quote_ident(c.relname) || '.'
                   || quote_ident(t.tgname),
               json_build_object('schema', n.nspname, 'table', c.relname, 'name', t.tgname,
                                 'definition', pg_get_triggerdef(t.oid), 'enabled', t.tgenabled)
        FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE NOT t.tgisinternal AND %s AND %s""" % (_USER_NS, _NOT_EXT % 'c.oid')),
    ('sequence', """
        SELECT 'sequence ' || quote_ident(n.nspname) || '.' || quote_ident(c.relname),
               json_build_object('schema', n.nspname, 'name', c.relname, 'type', format_type(s.seqtypid, NULL),
                                 'start', s.seqstart, 'increment', s.seqincrement,
                                 'min', s.seqmin, 'max', s.seqmax, 'cycle', s.seqcycle)
        FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE %s AND %s""" % (_USER_NS, _NOT_EXT % 'c.oid')),
    ('type', """
        SELECT 'type ' || quote_ident(n.nspname) || '.' || quote_ident(t.typname),
               json_build_object('schema', n.nspname, 'name', t.typname, 'kind', 'enum',
                                 'labels', (SELECT json_agg(e.enumlabel ORDER BY e.enumsortorder)
                                            FROM pg_enum e WHERE e.enumtypid = t.oid))
        FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
        WHERE t.typtype = 'e' AND %s AND %s""" % (_USER_NS, _NOT_EXT % 't.oid')),
    ('extension', """
        SELECT 'extension ' || quote_ident(e.extname),
               json_build_object('name', e.extname, 'version', e.extversion,
                                 'schema', e.extnamespace::regnamespace::text)
        FROM pg_extension e WHERE e.extname <> 'plpgsql'"""),
)


def take(conn, exclude_tables=()):
    """Fingerprint of the database behind ``conn`` (a psycopg2 connection).

    ``exclude_tables`` is a list of ``(schema, table)`` left out with everything
    on them (the migration history table, typically); a schema of ``None``
    matches in any schema (``_catalog.parse_table`` of a bare name).
    """
    exclude = list(exclude_tables)
    result = {}
    with conn.cursor() as cur:
        for _kind, query in QUERIES:
            cur.execute(query)
            for key, attrs in cur.fetchall():
                if isinstance(attrs, str):
                    attrs = json.loads(attrs)
                table = (attrs.get('schema'), attrs.get('table') or attrs.get('name'))
                if _excluded(table, exclude) or _owned_by_excluded(key, attrs, exclude):
                    continue
                result[key] = attrs
    return result


def _excluded(table, exclude):
    schema, name = table
    return any(t == name and s in (None, schema) for s, t in exclude)


def _owned_by_excluded(key, attrs, exclude):
    if not key.startswith('sequence '):
        return False
    return any(s in (None, attrs.get('schema')) and attrs.get('name', '').startswith(t + '_')
               for s, t in exclude)


def digest(fp):
    return hashlib.sha256(json.dumps(fp, sort_keys=True).encode('utf-8')).hexdigest()


def dumps(fp):
    return json.dumps(fp, sort_keys=True, separators=(',', ':'))


def loads(text):
    return json.loads(text) if text else None


def compare(before, after):
    """Readable differences turning ``before`` into ``after``: a list of dicts.

    Each is ``{'change': 'added'|'removed'|'changed', 'object': key, 'detail': text}``.
    """
    out = []
    for key in sorted(set(before) | set(after)):
        if key not in before:
            out.append(dict(change='added', object=key, detail=_short(after[key])))
        elif key not in after:
            out.append(dict(change='removed', object=key, detail=_short(before[key])))
        elif before[key] != after[key]:
            parts = []
            for attr in sorted(set(before[key]) | set(after[key])):
                old, new = before[key].get(attr), after[key].get(attr)
                if old != new:
                    parts.append('%s: %s -> %s' % (attr, _compact(old), _compact(new)))
            out.append(dict(change='changed', object=key, detail='; '.join(parts)))
    return out


def format_differences(diffs, limit=50):
    lines = ['%s %s%s' % ({'added': '+', 'removed': '-', 'changed': '~'}[d['change']], d['object'],
                          (' (%s)' % d['detail']) if d['detail'] else '') for d in diffs[:limit]]
    if len(diffs) > limit:
        lines.append('... and %d more' % (len(diffs) - limit))
    return lines


def _compact(value):
    text = json.dumps(value) if not isinstance(value, str) else value
    text = ' '.join(text.split())
    return text if len(text) <= 200 else text[:197] + '...'


def _short(attrs):
    for attr in ('definition', 'type'):
        if attrs.get(attr):
            return _compact(attrs[attr])
    return ''


_ORDER = ('extension', 'schema', 'type', 'sequence', 'table', 'column', 'constraint', 'index',
          'function', 'view', 'materialized', 'trigger')


def _kind(key):
    return key.split(' ', 1)[0]


def sync_script(target, source):
    """SQL that turns the schema fingerprinted as ``target`` into ``source``.

    Creates what only ``source`` has, alters what differs, drops what only
    ``target`` has (drops last, commented with what they remove).  Review it
    before running: renames show up as a drop plus a create.
    """
    creates, alters, drops = [], [], []
    new_tables = set((v['schema'], v['name']) for k, v in source.items()
                     if _kind(k) == 'table' and k not in target)
    gone_tables = set((v['schema'], v['name']) for k, v in target.items()
                      if _kind(k) == 'table' and k not in source)

    def with_table(key, attrs, tables):
        # columns of a created table are in its CREATE TABLE; a dropped table takes its
        # columns, constraints, indexes and triggers with it
        return _kind(key) in ('column', 'constraint', 'index', 'trigger') and \
            (attrs.get('schema'), attrs.get('table')) in tables and \
            (_kind(key) == 'column' or tables is gone_tables)

    for key in sorted(set(source) - set(target), key=lambda k: (_ORDER.index(_kind(k)), k)):
        if not with_table(key, source[key], new_tables):
            creates.extend(_create(key, source[key], source))
    for key in sorted(set(source) & set(target), key=lambda k: (_ORDER.index(_kind(k)), k)):
        if source[key] != target[key]:
            alters.extend(_alter(key, target[key], source[key]))
    for key in sorted(set(target) - set(source), key=lambda k: (-_ORDER.index(_kind(k)), k)):
        if not with_table(key, target[key], gone_tables):
            drops.extend(_drop(key, target[key], source))
    lines = ['-- generated by dbdevops.postgresql.schema_diff: review before running', 'BEGIN;']
    for title, stmts in (('create', creates), ('alter', alters), ('drop', drops)):
        if stmts:
            lines.append('-- %s' % title)
            lines.extend(stmts)
    lines.append('COMMIT;')
    return '\n'.join(lines) + '\n', bool(creates or alters or drops)


def _column_sql(col):
    text = '%s %s' % (quote_ident(col['name']), col['type'])
    if col.get('default') is not None and not col.get('generated'):
        text += ' DEFAULT %s' % col['default']
    if col.get('not_null'):
        text += ' NOT NULL'
    return text


def _create(key, a, source):
    kind = _kind(key)
    if kind == 'extension':
        return ['CREATE EXTENSION IF NOT EXISTS %s;' % quote_ident(a['name'])]
    if kind == 'schema':
        return ['CREATE SCHEMA %s;' % quote_ident(a['name'])]
    if kind == 'type':
        return ['CREATE TYPE %s AS ENUM (%s);' % (qualified(a['schema'], a['name']), ', '.join(
            "'%s'" % lbl.replace("'", "''") for lbl in a.get('labels') or []))]
    if kind == 'sequence':
        return ['CREATE SEQUENCE IF NOT EXISTS %s AS %s INCREMENT %s MINVALUE %s MAXVALUE %s START %s%s;'
                % (qualified(a['schema'], a['name']), a['type'], a['increment'], a['min'], a['max'],
                   a['start'], ' CYCLE' if a['cycle'] else '')]
    if kind == 'table':
        cols = [v for k, v in sorted(source.items()) if _kind(k) == 'column'
                and v['schema'] == a['schema'] and v['table'] == a['name']]
        return ['CREATE TABLE %s (%s);' % (qualified(a['schema'], a['name']),
                                           ', '.join(_column_sql(c) for c in cols))]
    if kind == 'column':
        return ['ALTER TABLE %s ADD COLUMN %s;' % (qualified(a['schema'], a['table']), _column_sql(a))]
    if kind == 'constraint':
        return ['ALTER TABLE %s ADD CONSTRAINT %s %s;'
                % (qualified(a['schema'], a['table']), quote_ident(a['name']), a['definition'])]
    if kind == 'index':
        return ['%s;' % a['definition']]
    if kind in ('function',):
        return ['%s;' % a['definition'].rstrip()] if a.get('definition') else []
    if kind in ('view', 'materialized'):
        return ['CREATE %sVIEW %s AS %s' % ('MATERIALIZED ' if a.get('materialized') else '',
                                            qualified(a['schema'], a['name']), a['definition'].strip())]
    if kind == 'trigger':
        return ['%s;' % a['definition']]
    return ['-- cannot create %s automatically' % key]


def _alter(key, old, new):
    kind = _kind(key)
    if kind == 'column':
        table = qualified(new['schema'], new['table'])
        col = quote_ident(new['name'])
        out = []
        if old.get('type') != new.get('type'):
            out.append('ALTER TABLE %s ALTER COLUMN %s TYPE %s;' % (table, col, new['type']))
        if old.get('default') != new.get('default'):
            out.append('ALTER TABLE %s ALTER COLUMN %s %s;' % (
                table, col, 'DROP DEFAULT' if new.get('default') is None
                else 'SET DEFAULT %s' % new['default']))
        if old.get('not_null') != new.get('not_null'):
            out.append('ALTER TABLE %s ALTER COLUMN %s %s NOT NULL;' % (
                table, col, 'SET' if new.get('not_null') else 'DROP'))
        return out or ['-- %s differs: review by hand' % key]
    if kind in ('function',) and new.get('definition'):
        return ['%s;' % new['definition'].rstrip()]
    if kind in ('view',) and not new.get('materialized'):
        return ['CREATE OR REPLACE VIEW %s AS %s' % (qualified(new['schema'], new['name']),
                                                     new['definition'].strip())]
    return _drop(key, old, {}) + _create(key, new, {})


# Objects dropped by name alone: schema-qualified, but for extensions and schemas.
_DROP_BY_NAME = dict(extension='EXTENSION', schema='SCHEMA', type='TYPE', sequence='SEQUENCE',
                     table='TABLE', index='INDEX')


def _drop(key, a, source):
    kind = _kind(key)
    if kind in _DROP_BY_NAME:
        name = quote_ident(a['name']) if kind in ('extension', 'schema') else qualified(a['schema'], a['name'])
        return ['DROP %s IF EXISTS %s;' % (_DROP_BY_NAME[kind], name)]
    if kind == 'column':
        return ['ALTER TABLE %s DROP COLUMN IF EXISTS %s;'
                % (qualified(a['schema'], a['table']), quote_ident(a['name']))]
    if kind == 'constraint':
        return ['ALTER TABLE IF EXISTS %s DROP CONSTRAINT IF EXISTS %s;' % (
            qualified(a['schema'], a['table']), quote_ident(a['name']))]
    if kind == 'function':
        return ['DROP %s IF EXISTS %s.%s(%s);' % ('PROCEDURE' if a.get('kind') == 'p' else 'FUNCTION',
                                                  quote_ident(a['schema']), quote_ident(a['name']), a['arguments'])]
    if kind in ('view', 'materialized'):
        return ['DROP %sVIEW IF EXISTS %s;'
                % ('MATERIALIZED ' if a.get('materialized') else '', qualified(a['schema'], a['name']))]
    if kind == 'trigger':
        return ['DROP TRIGGER IF EXISTS %s ON %s;' % (quote_ident(a['name']), qualified(a['schema'], a['table']))]
    return ['-- cannot drop %s automatically' % key]
