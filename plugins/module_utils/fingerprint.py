# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Schema fingerprint: the catalog as a flat, comparable dict (no Ansible imports).

``take(conn)`` returns ``{object key: {attribute: value}}`` for every user
object: schemas, tables (owner, grants, comment, storage parameters, row-level
security, replica identity, partitioning, inheritance), columns (type, NOT
NULL, default, collation, identity, generated, statistics target, storage,
compression, options, grants, comment), constraints, indexes, views and
materialized views, functions and procedures, triggers, rules, policies,
extended statistics, sequences (options, ownership), types (enums with their
order, composites, domains with their constraints, ranges), default
privileges, publications and extensions.  Keys read like
``column public.users.email``.  Column order and object OIDs are not part of
it, so an undo that drops and re-adds a column in another position, or a
database restored elsewhere, compares equal.  Roles (owners, grantees) are
compared by name.

A fingerprint carries its format under ``FORMAT_KEY``; ``compare()`` of two
fingerprints of different formats (one recorded by an older release)
compares what both formats describe.  Function bodies in SQL and PL/pgSQL
are compared token by token, so whitespace outside string literals is not a
difference.  ``digest()`` hashes it; ``compare()`` returns readable
differences with a unified diff for long values; ``sync_script()`` writes SQL
turning one schema into another.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import difflib
import hashlib
import json
import re

from ansible_collections.dbdevops.postgresql.plugins.module_utils._catalog import qualified, quote_ident

FORMAT_KEY = '#format'
FORMAT_VERSION = 2

_SKIP_SCHEMAS = "('pg_catalog', 'information_schema', 'pg_toast')"
_USER_NS = ("n.nspname NOT IN %s AND n.nspname NOT LIKE 'pg\\_temp\\_%%' "
            "AND n.nspname NOT LIKE 'pg\\_toast\\_temp\\_%%'" % _SKIP_SCHEMAS)
_NOT_EXT = ("NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = %s AND d.deptype = 'e')")


def _acl(expr, kind=None, owner=None):
    """SQL for an ACL as a sorted JSON list of ``grantee: PRIV, PRIV`` (a NULL ACL is the default for ``kind``)."""
    acl = "COALESCE(%s, acldefault('%s', %s))" % (expr, kind, owner) if kind else expr
    acl = 'CASE WHEN cardinality(%s) > 0 THEN %s END' % (acl, acl)     # aclexplode fails on '{}'
    return ("(SELECT json_agg(g ORDER BY g) FROM (SELECT CASE WHEN x.grantee = 0 THEN 'PUBLIC' "
            "ELSE pg_get_userbyid(x.grantee) END || ': ' || string_agg(x.privilege_type || CASE WHEN "
            "x.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END, ', ' ORDER BY x.privilege_type) AS g "
            "FROM aclexplode(%s) x GROUP BY x.grantee) acl)" % acl)


def _options(expr):
    return '(SELECT json_agg(o ORDER BY o) FROM unnest(%s) o)' % expr


def _column_comments(relid):
    return ("(SELECT json_object_agg(a.attname, d.description) FROM pg_attribute a "
            "JOIN pg_description d ON d.objoid = a.attrelid AND d.classoid = 'pg_class'::regclass "
            "AND d.objsubid = a.attnum WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped)" % relid)


QUERIES = (
    ('schema', """
        SELECT 'schema ' || quote_ident(n.nspname),
               json_build_object('name', n.nspname, 'owner', pg_get_userbyid(n.nspowner),
                                 'acl', %s, 'comment', obj_description(n.oid, 'pg_namespace'))
        FROM pg_namespace n WHERE %s
          AND %s""" % (_acl('n.nspacl', 'n', 'n.nspowner'), _USER_NS, _NOT_EXT % 'n.oid')),
    ('table', """
        SELECT 'table ' || quote_ident(n.nspname) || '.' || quote_ident(c.relname),
               json_build_object('schema', n.nspname, 'name', c.relname,
                                 'kind', CASE c.relkind WHEN 'p' THEN 'partitioned' ELSE 'table' END,
                                 'persistence', c.relpersistence,
                                 'owner', pg_get_userbyid(c.relowner), 'acl', %s,
                                 'comment', obj_description(c.oid, 'pg_class'),
                                 'options', %s,
                                 'toast_options', (SELECT %s FROM pg_class tc WHERE tc.oid = c.reltoastrelid),
                                 'rls', c.relrowsecurity, 'force_rls', c.relforcerowsecurity,
                                 'replica_identity', CASE c.relreplident WHEN 'd' THEN NULL
                                     WHEN 'n' THEN 'nothing' WHEN 'f' THEN 'full'
                                     ELSE 'index ' || (SELECT quote_ident(ic.relname) FROM pg_index i
                                                       JOIN pg_class ic ON ic.oid = i.indexrelid
                                                       WHERE i.indrelid = c.oid AND i.indisreplident) END,
                                 'partition_key', CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) END,
                                 'partition_bound', pg_get_expr(c.relpartbound, c.oid),
                                 'inherits', (SELECT json_agg(i.inhparent::regclass::text ORDER BY i.inhseqno)
                                              FROM pg_inherits i WHERE i.inhrelid = c.oid))
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('r', 'p') AND %s AND %s"""
     % (_acl('c.relacl', 'r', 'c.relowner'), _options('c.reloptions'), _options('tc.reloptions'),
        _USER_NS, _NOT_EXT % 'c.oid')),
    ('column', """
        SELECT 'column ' || quote_ident(n.nspname) || '.' || quote_ident(c.relname) || '.'
                   || quote_ident(a.attname),
               json_build_object('schema', n.nspname, 'table', c.relname, 'name', a.attname,
                                 'type', format_type(a.atttypid, a.atttypmod),
                                 'not_null', a.attnotnull,
                                 'default', pg_get_expr(ad.adbin, ad.adrelid),
                                 'identity', a.attidentity, 'generated', a.attgenerated,
                                 'collation', CASE WHEN a.attcollation <> t.typcollation
                                                   THEN a.attcollation::regcollation::text END,
                                 'statistics', CASE WHEN a.attstattarget >= 0 THEN a.attstattarget END,
                                 'storage', CASE WHEN a.attstorage <> t.typstorage THEN a.attstorage END,
                                 'compression', NULLIF(a.attcompression::text, ''),
                                 'options', %s, 'acl', %s,
                                 'comment', col_description(c.oid, a.attnum))
        FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_type t ON t.oid = a.atttypid
        LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
        WHERE c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped AND %s AND %s"""
     % (_options('a.attoptions'), _acl('a.attacl'), _USER_NS, _NOT_EXT % 'c.oid')),
    ('constraint', """
        SELECT 'constraint ' || quote_ident(n.nspname) || '.' || quote_ident(c.relname) || '.'
                   || quote_ident(k.conname),
               json_build_object('schema', n.nspname, 'table', c.relname, 'name', k.conname,
                                 'type', k.contype, 'definition', pg_get_constraintdef(k.oid),
                                 'validated', k.convalidated,
                                 'comment', obj_description(k.oid, 'pg_constraint'))
        FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE %s AND %s""" % (_USER_NS, _NOT_EXT % 'c.oid')),
    ('index', """
        SELECT 'index ' || quote_ident(n.nspname) || '.' || quote_ident(ic.relname),
               json_build_object('schema', n.nspname, 'table', c.relname, 'name', ic.relname,
                                 'definition', pg_get_indexdef(i.indexrelid),
                                 'valid', i.indisvalid,
                                 'comment', obj_description(ic.oid, 'pg_class'),
                                 'clustered', NULLIF(i.indisclustered, false),
                                 'statistics', (SELECT json_object_agg(a.attnum, a.attstattarget)
                                                FROM pg_attribute a WHERE a.attrelid = ic.oid
                                                AND a.attstattarget >= 0))
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
                                 'definition', pg_get_viewdef(c.oid),
                                 'owner', pg_get_userbyid(c.relowner), 'acl', %s,
                                 'comment', obj_description(c.oid, 'pg_class'),
                                 'options', %s, 'column_comments', %s)
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind IN ('v', 'm') AND %s AND %s"""
     % (_acl('c.relacl', 'r', 'c.relowner'), _options('c.reloptions'), _column_comments('c.oid'),
        _USER_NS, _NOT_EXT % 'c.oid')),
    ('function', """
        SELECT 'function ' || quote_ident(n.nspname) || '.' || quote_ident(p.proname)
                   || '(' || pg_get_function_identity_arguments(p.oid) || ')',
               json_build_object('schema', n.nspname, 'name', p.proname,
                                 'arguments', pg_get_function_identity_arguments(p.oid),
                                 'kind', p.prokind,
                                 'definition', CASE WHEN p.prokind IN ('f', 'p', 'w')
                                                    THEN pg_get_functiondef(p.oid) END,
                                 'owner', pg_get_userbyid(p.proowner), 'acl', %s,
                                 'comment', obj_description(p.oid, 'pg_proc'),
                                 'part_of', (SELECT d.refobjid::regtype::text FROM pg_depend d
                                             WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid
                                               AND d.refclassid = 'pg_type'::regclass
                                               AND d.deptype = 'i' LIMIT 1))
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE %s AND p.prokind <> 'a' AND %s"""
     % (_acl('p.proacl', 'f', 'p.proowner'), _USER_NS, _NOT_EXT % 'p.oid')),
    ('trigger', """
        SELECT 'trigger ' || quote_ident(n.nspname) || '.' || quote_ident(c.relname) || '.'
                   || quote_ident(t.tgname),
               json_build_object('schema', n.nspname, 'table', c.relname, 'name', t.tgname,
                                 'definition', pg_get_triggerdef(t.oid), 'enabled', t.tgenabled,
                                 'comment', obj_description(t.oid, 'pg_trigger'))
        FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE NOT t.tgisinternal AND %s AND %s""" % (_USER_NS, _NOT_EXT % 'c.oid')),
    ('rule', """
        SELECT 'rule ' || quote_ident(n.nspname) || '.' || quote_ident(c.relname) || '.'
                   || quote_ident(r.rulename),
               json_build_object('schema', n.nspname, 'table', c.relname, 'name', r.rulename,
                                 'definition', pg_get_ruledef(r.oid), 'enabled', r.ev_enabled,
                                 'comment', obj_description(r.oid, 'pg_rewrite'))
        FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE r.rulename <> '_RETURN' AND %s AND %s""" % (_USER_NS, _NOT_EXT % 'c.oid')),
    ('policy', """
        SELECT 'policy ' || quote_ident(n.nspname) || '.' || quote_ident(c.relname) || '.'
                   || quote_ident(p.polname),
               json_build_object('schema', n.nspname, 'table', c.relname, 'name', p.polname,
                                 'command', CASE p.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT'
                                     WHEN 'w' THEN 'UPDATE' WHEN 'd' THEN 'DELETE' ELSE 'ALL' END,
                                 'permissive', p.polpermissive,
                                 'roles', (SELECT json_agg(r ORDER BY r) FROM (
                                     SELECT CASE WHEN o = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(o) END AS r
                                     FROM unnest(p.polroles) o) s),
                                 'using', pg_get_expr(p.polqual, p.polrelid),
                                 'check', pg_get_expr(p.polwithcheck, p.polrelid),
                                 'comment', obj_description(p.oid, 'pg_policy'))
        FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE %s AND %s""" % (_USER_NS, _NOT_EXT % 'c.oid')),
    ('statistics', """
        SELECT 'statistics ' || quote_ident(n.nspname) || '.' || quote_ident(s.stxname),
               json_build_object('schema', n.nspname, 'table', c.relname, 'name', s.stxname,
                                 'definition', pg_get_statisticsobjdef(s.oid),
                                 'target', CASE WHEN s.stxstattarget >= 0 THEN s.stxstattarget END,
                                 'owner', pg_get_userbyid(s.stxowner),
                                 'comment', obj_description(s.oid, 'pg_statistic_ext'))
        FROM pg_statistic_ext s JOIN pg_namespace n ON n.oid = s.stxnamespace
        JOIN pg_class c ON c.oid = s.stxrelid
        WHERE %s AND %s""" % (_USER_NS, _NOT_EXT % 's.oid')),
    ('sequence', """
        SELECT 'sequence ' || quote_ident(n.nspname) || '.' || quote_ident(c.relname),
               json_build_object('schema', n.nspname, 'name', c.relname, 'type', format_type(s.seqtypid, NULL),
                                 'start', s.seqstart, 'increment', s.seqincrement,
                                 'min', s.seqmin, 'max', s.seqmax, 'cycle', s.seqcycle,
                                 'cache', s.seqcache,
                                 'unlogged', NULLIF(c.relpersistence = 'u', false),
                                 'owned_by', (SELECT quote_ident(rn.nspname) || '.' || quote_ident(rc.relname)
                                                  || '.' || quote_ident(ra.attname)
                                              FROM pg_depend d JOIN pg_class rc ON rc.oid = d.refobjid
                                              JOIN pg_namespace rn ON rn.oid = rc.relnamespace
                                              JOIN pg_attribute ra ON ra.attrelid = d.refobjid
                                                   AND ra.attnum = d.refobjsubid
                                              WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                                                AND d.refclassid = 'pg_class'::regclass
                                                AND d.deptype IN ('a', 'i') LIMIT 1),
                                 'owner', pg_get_userbyid(c.relowner), 'acl', %s,
                                 'comment', obj_description(c.oid, 'pg_class'))
        FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE %s AND %s""" % (_acl('c.relacl', 's', 'c.relowner'), _USER_NS, _NOT_EXT % 'c.oid')),
    ('type', """
        SELECT 'type ' || quote_ident(n.nspname) || '.' || quote_ident(t.typname),
               json_build_object('schema', n.nspname, 'name', t.typname,
                                 'kind', CASE t.typtype WHEN 'e' THEN 'enum' WHEN 'c' THEN 'composite'
                                             WHEN 'd' THEN 'domain' ELSE 'range' END,
                                 'labels', (SELECT json_agg(e.enumlabel ORDER BY e.enumsortorder)
                                            FROM pg_enum e WHERE e.enumtypid = t.oid),
                                 'attributes', (SELECT json_agg(json_build_array(
                                                    a.attname, format_type(a.atttypid, a.atttypmod),
                                                    CASE WHEN a.attcollation <> at.typcollation
                                                         THEN a.attcollation::regcollation::text END)
                                                    ORDER BY a.attnum)
                                                FROM pg_attribute a JOIN pg_type at ON at.oid = a.atttypid
                                                WHERE t.typtype = 'c' AND a.attrelid = t.typrelid
                                                  AND a.attnum > 0 AND NOT a.attisdropped),
                                 'column_comments', CASE WHEN t.typtype = 'c' THEN %s END,
                                 'base', CASE WHEN t.typtype = 'd' THEN format_type(t.typbasetype, t.typtypmod) END,
                                 'default', t.typdefault,
                                 'not_null', NULLIF(t.typnotnull, false),
                                 'collation', CASE WHEN t.typtype = 'd' AND t.typcollation <> bt.typcollation
                                                   THEN t.typcollation::regcollation::text END,
                                 'constraints', (SELECT json_agg(json_build_object(
                                                     'name', k.conname, 'definition', pg_get_constraintdef(k.oid),
                                                     'validated', k.convalidated,
                                                     'comment', obj_description(k.oid, 'pg_constraint'))
                                                     ORDER BY k.conname)
                                                 FROM pg_constraint k WHERE k.contypid = t.oid),
                                 'subtype', format_type(r.rngsubtype, NULL),
                                 'range_collation', CASE WHEN r.rngcollation <> 0
                                                         THEN r.rngcollation::regcollation::text END,
                                 'subtype_opclass', (SELECT quote_ident(opc.opcname) FROM pg_opclass opc
                                                     WHERE opc.oid = r.rngsubopc AND NOT opc.opcdefault),
                                 'canonical', NULLIF(r.rngcanonical::regproc::text, '-'),
                                 'subtype_diff', NULLIF(r.rngsubdiff::regproc::text, '-'),
                                 'owner', pg_get_userbyid(t.typowner), 'acl', %s,
                                 'comment', obj_description(t.oid, 'pg_type'))
        FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
        LEFT JOIN pg_type bt ON bt.oid = t.typbasetype
        LEFT JOIN pg_range r ON r.rngtypid = t.oid
        WHERE (t.typtype IN ('e', 'd', 'r')
               OR (t.typtype = 'c' AND (SELECT tc.relkind FROM pg_class tc WHERE tc.oid = t.typrelid) = 'c'))
          AND %s AND %s"""
     % (_column_comments('t.typrelid'), _acl('t.typacl', 'T', 't.typowner'), _USER_NS, _NOT_EXT % 't.oid')),
    ('default', """
        SELECT 'default privileges for role ' || quote_ident(pg_get_userbyid(d.defaclrole))
                   || COALESCE(' in schema ' || quote_ident(n.nspname), '') || ' on '
                   || CASE d.defaclobjtype WHEN 'r' THEN 'tables' WHEN 'S' THEN 'sequences'
                          WHEN 'f' THEN 'functions' WHEN 'T' THEN 'types' ELSE 'schemas' END,
               json_build_object('role', pg_get_userbyid(d.defaclrole), 'in_schema', n.nspname,
                                 'objects', CASE d.defaclobjtype WHEN 'r' THEN 'tables' WHEN 'S' THEN 'sequences'
                                     WHEN 'f' THEN 'functions' WHEN 'T' THEN 'types' ELSE 'schemas' END,
                                 'acl', %s)
        FROM pg_default_acl d LEFT JOIN pg_namespace n ON n.oid = d.defaclnamespace""" % _acl('d.defaclacl')),
    ('publication', """
        SELECT 'publication ' || quote_ident(p.pubname),
               json_build_object('publication', p.pubname, 'owner', pg_get_userbyid(p.pubowner),
                                 'all_tables', p.puballtables,
                                 'publish', concat_ws(', ', CASE WHEN p.pubinsert THEN 'insert' END,
                                                      CASE WHEN p.pubupdate THEN 'update' END,
                                                      CASE WHEN p.pubdelete THEN 'delete' END,
                                                      CASE WHEN p.pubtruncate THEN 'truncate' END),
                                 'via_root', p.pubviaroot,
                                 'tables', (SELECT json_agg(json_build_array(
                                                n.nspname, c.relname, pg_get_expr(pr.prqual, pr.prrelid),
                                                (SELECT json_agg(a.attname ORDER BY a.attnum) FROM pg_attribute a
                                                 WHERE a.attrelid = pr.prrelid AND a.attnum = ANY(pr.prattrs::int2[])))
                                                ORDER BY n.nspname, c.relname)
                                            FROM pg_publication_rel pr JOIN pg_class c ON c.oid = pr.prrelid
                                            JOIN pg_namespace n ON n.oid = c.relnamespace
                                            WHERE pr.prpubid = p.oid),
                                 'schemas', (SELECT json_agg(n.nspname ORDER BY n.nspname)
                                             FROM pg_publication_namespace pn
                                             JOIN pg_namespace n ON n.oid = pn.pnnspid WHERE pn.pnpubid = p.oid),
                                 'comment', obj_description(p.oid, 'pg_publication'))
        FROM pg_publication p"""),
    ('extension', """
        SELECT 'extension ' || quote_ident(e.extname),
               json_build_object('name', e.extname, 'version', e.extversion,
                                 'schema', e.extnamespace::regnamespace::text)
        FROM pg_extension e WHERE e.extname <> 'plpgsql'"""),
)

# Object kinds whose entry hangs on one table (``schema`` + ``table``): left out with an excluded table.
_ON_TABLE = ('column', 'constraint', 'index', 'trigger', 'rule', 'policy', 'statistics')


def take(conn, exclude_tables=()):
    """Fingerprint of the database behind ``conn`` (a psycopg2 connection).

    ``exclude_tables`` is a list of ``(schema, table)`` left out with everything
    on them (the migration history table, typically); a schema of ``None``
    matches in any schema (``_catalog.parse_table`` of a bare name).
    """
    exclude = list(exclude_tables)
    result = {FORMAT_KEY: dict(version=FORMAT_VERSION)}
    with conn.cursor() as cur:
        for _kind, query in QUERIES:
            cur.execute(query)
            for key, attrs in cur.fetchall():
                if isinstance(attrs, str):
                    attrs = json.loads(attrs)
                attrs = dict((k, v) for k, v in attrs.items() if v is not None)
                if 'schema' in attrs:
                    table = (attrs.get('schema'), attrs.get('table') or attrs.get('name'))
                    if _excluded(table, exclude) or _owned_by_excluded(key, attrs, exclude):
                        continue
                if attrs.get('tables') and key.startswith('publication '):
                    attrs['tables'] = [t for t in attrs['tables'] if not _excluded((t[0], t[1]), exclude)] or None
                    if attrs['tables'] is None:
                        del attrs['tables']
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


# -- formats ---------------------------------------------------------------------------

# Format 1 (releases before format markers): these kinds with these attributes only.
_V1_ATTRS = dict(
    schema=('name',),
    table=('schema', 'name', 'kind', 'persistence'),
    column=('schema', 'table', 'name', 'type', 'not_null', 'default', 'identity', 'generated', 'collation'),
    constraint=('schema', 'table', 'name', 'type', 'definition', 'validated'),
    index=('schema', 'table', 'name', 'definition', 'valid'),
    view=('schema', 'name', 'materialized', 'definition'),
    function=('schema', 'name', 'arguments', 'kind', 'definition'),
    trigger=('schema', 'table', 'name', 'definition', 'enabled'),
    sequence=('schema', 'name', 'type', 'start', 'increment', 'min', 'max', 'cycle'),
    type=('schema', 'name', 'kind', 'labels'),
    extension=('name', 'version', 'schema'),
)
_V1_ATTRS['materialized'] = _V1_ATTRS['view']


def format_of(fp):
    """The format version of a fingerprint (1 for one recorded before formats were marked)."""
    marker = (fp or {}).get(FORMAT_KEY)
    return int(marker.get('version', 1)) if isinstance(marker, dict) else 1


def objects(fp):
    """The object entries of a fingerprint (without its format marker)."""
    return dict((k, v) for k, v in (fp or {}).items() if k != FORMAT_KEY)


def as_format(fp, version):
    """``fp`` reduced to what fingerprint format ``version`` describes (only 1 and 2 exist)."""
    entries = objects(fp)
    if version >= FORMAT_VERSION or format_of(fp) <= version:
        return entries
    out = {}
    for key, attrs in entries.items():
        kind = _kind(key)
        if kind not in _V1_ATTRS or (kind == 'schema' and attrs.get('name') == 'public') \
                or (kind == 'type' and attrs.get('kind') != 'enum'):
            continue
        out[key] = dict((a, v) for a, v in attrs.items() if a in _V1_ATTRS[kind])
    return out


def comparable(before, after):
    """Both fingerprints as plain object dicts in the one format both describe."""
    version = min(format_of(before), format_of(after))
    return as_format(before, version), as_format(after, version)


# -- function bodies without whitespace noise ------------------------------------------

_IDENT_RE = re.compile(r'[A-Za-z_\u0080-\U0010ffff][A-Za-z_0-9$\u0080-\U0010ffff]*')
_NUMBER_RE = re.compile(r'(?:\d+(?:\.(?!\.)\d*)?|\.\d+)(?:[eE][+-]?\d+)?')
_DOLLAR_RE = re.compile(r'\$(?:[A-Za-z_\u0080-\U0010ffff][A-Za-z_0-9\u0080-\U0010ffff]*)?\$')
_PARAM_RE = re.compile(r'\$\d+')
_OP_CHARS = set('+-*/<>=~!@#%^&|`?')


def _quoted_end(text, i, quote, backslash):
    """Index after the literal starting at ``text[i]`` (a quote) with doubled quotes as escapes."""
    j = i + 1
    n = len(text)
    while j < n:
        c = text[j]
        if backslash and c == '\\':
            j += 2
            continue
        if c == quote:
            if j + 1 < n and text[j + 1] == quote:
                j += 2
                continue
            return j + 1
        j += 1
    return n


def tokens(text):
    """The lexical tokens of SQL or PL/pgSQL ``text`` (whitespace dropped, everything else verbatim).

    String literals (also ``E''``, ``U&''``, dollar-quoted), quoted identifiers
    and comments are single tokens with their inner whitespace kept.
    """
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        nxt = text[i + 1] if i + 1 < n else ''
        if c.isspace():
            i += 1
            continue
        if c == '-' and nxt == '-':
            j = text.find('\n', i)
            j = n if j < 0 else j
            out.append(text[i:j].rstrip())
            i = j
            continue
        if c == '/' and nxt == '*':
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith('/*', j):
                    depth, j = depth + 1, j + 2
                elif text.startswith('*/', j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(text[i:j])
            i = j
            continue
        if c in "'\"":
            j = _quoted_end(text, i, c, False)
        elif c in 'eE' and nxt == "'":
            j = _quoted_end(text, i + 1, "'", True)
        elif c in 'bBxXnN' and nxt == "'":
            j = _quoted_end(text, i + 1, "'", False)
        elif c in 'uU' and nxt == '&' and text[i + 2:i + 3] in ("'", '"'):
            j = _quoted_end(text, i + 2, text[i + 2], False)
        elif c == '$':
            m = _DOLLAR_RE.match(text, i)
            if m:
                end = text.find(m.group(0), m.end())
                j = n if end < 0 else end + len(m.group(0))
            else:
                m = _PARAM_RE.match(text, i)
                j = m.end() if m else i + 1
        elif c.isdigit() or (c == '.' and nxt.isdigit()):
            j = _NUMBER_RE.match(text, i).end()
        elif _IDENT_RE.match(text, i):
            j = _IDENT_RE.match(text, i).end()
        elif c in _OP_CHARS:
            j = i + 1
            while j < n and text[j] in _OP_CHARS and not text.startswith('--', j) \
                    and not text.startswith('/*', j):
                j += 1
            # as the server's lexer: a trailing + or - is its own token unless the operator
            # has one of ~!@#%^&|`? (so "a +-1" and "a + -1" are the same tokens)
            if not any(ch in '~!@#%^&|`?' for ch in text[i:j]):
                while j - i > 1 and text[j - 1] in '+-':
                    j -= 1
        elif (c == ':' and nxt in ':=') or (c == '.' and nxt == '.'):
            j = i + 2
        else:
            j = i + 1
        out.append(text[i:j])
        i = j
    return out


# Languages whose bodies are SQL-like tokens; other languages (plpython, plperl...) keep every byte.
_TOKEN_LANGUAGES = ('sql', 'plpgsql')
_LANGUAGE_RE = re.compile(r'^ LANGUAGE (\S+)$', re.M)


def normalize_function(definition):
    """``pg_get_functiondef`` text with whitespace outside literals and comments removed.

    The body of a SQL or PL/pgSQL function is tokenised too; string literals
    inside it keep their whitespace.  Other languages keep their body verbatim.
    """
    if not definition:
        return definition
    top = tokens(definition)
    found = _LANGUAGE_RE.search(definition)      # pg_get_functiondef puts it on a line of its own
    language = found.group(1).strip('"').lower() if found else None
    out = []
    for tok in top:
        m = _DOLLAR_RE.match(tok) if tok.startswith('$') else None
        if m and tok.endswith(m.group(0)) and len(tok) >= 2 * len(m.group(0)):
            inner = tok[len(m.group(0)):len(tok) - len(m.group(0))]
            if language in _TOKEN_LANGUAGES:
                tok = '$$ %s $$' % ' '.join(tokens(inner))
            else:
                tok = '$$%s$$' % inner
        out.append(tok)
    return ' '.join(out)


def _normalized(kind, attr, value):
    if kind == 'function' and attr == 'definition':
        return normalize_function(value)
    return value


def digest(fp):
    """SHA-256 of the fingerprint as compared (function bodies without whitespace noise)."""
    entries = objects(fp)
    canon = dict((key, dict((a, _normalized(_kind(key), a, v)) for a, v in attrs.items()))
                 for key, attrs in entries.items())
    return hashlib.sha256(json.dumps(canon, sort_keys=True).encode('utf-8')).hexdigest()


def dumps(fp):
    return json.dumps(fp, sort_keys=True, separators=(',', ':'))


def loads(text):
    return json.loads(text) if text else None


# -- differences -----------------------------------------------------------------------

# Lists whose order means nothing: shown as the items added (+) and removed (-).
_UNORDERED = ('acl', 'options', 'toast_options', 'roles', 'tables', 'schemas')
_SHORT = 120         # longer values (or ones over several lines) are shown as a unified diff


def _text(value):
    """A value as text for a diff: strings as they are, lists one item a line, the rest as JSON."""
    if value is None:
        return ''
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return '\n'.join(v if isinstance(v, str) else json.dumps(v, sort_keys=True) for v in value)
    if isinstance(value, dict):
        return '\n'.join('%s: %s' % (k, v if isinstance(v, str) else json.dumps(v, sort_keys=True))
                         for k, v in sorted(value.items()))
    return json.dumps(value)


def _inline(value):
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _is_long(value):
    text = _inline(value)
    return '\n' in text or len(text) > _SHORT


def unified(old, new, name):
    """A unified diff (list of lines) of two values of attribute ``name``."""
    return list(difflib.unified_diff(_text(old).splitlines(), _text(new).splitlines(),
                                     'before/%s' % name, 'after/%s' % name, lineterm='', n=3))


def compare(before, after):
    """Readable differences turning ``before`` into ``after``: a list of dicts.

    Each is ``{'change': 'added'|'removed'|'changed', 'object': key, 'detail': text}``,
    with ``diff`` (unified diff lines, nothing cut) when a value is long or spans
    several lines.  Fingerprints of different formats are compared in the older one.
    """
    before, after = comparable(before or {}, after or {})
    out = []
    for key in sorted(set(before) | set(after)):
        if key not in before or key not in after:
            change, attrs = ('added', after[key]) if key not in before else ('removed', before[key])
            entry = dict(change=change, object=key, detail=_short(attrs))
            body = attrs.get('definition')
            if body and _is_long(body):
                entry['diff'] = unified(None if change == 'added' else body,
                                        body if change == 'added' else None, 'definition')
            out.append(entry)
            continue
        parts, lines = [], []
        kind = _kind(key)
        for attr in sorted(set(before[key]) | set(after[key])):
            old, new = before[key].get(attr), after[key].get(attr)
            if _normalized(kind, attr, old) == _normalized(kind, attr, new):
                continue
            if attr in _UNORDERED and isinstance(old or [], list) and isinstance(new or [], list):
                parts.append('%s: %s' % (attr, ', '.join(
                    ['+%s' % _inline(v) for v in new or [] if v not in (old or [])]
                    + ['-%s' % _inline(v) for v in old or [] if v not in (new or [])])))
            elif _is_long(old) or _is_long(new):
                parts.append('%s differs' % attr)
                lines.extend(unified(old, new, attr))
            else:
                parts.append('%s: %s -> %s' % (attr, _inline(old), _inline(new)))
        if parts:
            entry = dict(change='changed', object=key, detail='; '.join(parts))
            if lines:
                entry['diff'] = lines
            out.append(entry)
    return out


def format_differences(diffs, limit=50, max_lines=300):
    """One text per difference (``+``/``-``/``~`` object (detail)), a long value's diff under it.

    At most ``limit`` differences and ``max_lines`` diff lines in all; what is left
    out is counted ("... N more lines"), and is in full in the differences themselves.
    """
    out, budget = [], max_lines
    for d in diffs[:limit]:
        text = '%s %s%s' % ({'added': '+', 'removed': '-', 'changed': '~'}[d['change']], d['object'],
                            (' (%s)' % d['detail']) if d['detail'] else '')
        lines = d.get('diff') or []
        if lines:
            shown = lines[:max(budget, 0)]
            budget -= len(shown)
            text += ''.join('\n    ' + line for line in shown)
            if len(shown) < len(lines):
                text += '\n    ... %d more lines of this diff (the full diff is in differences)' % (
                    len(lines) - len(shown))
        out.append(text)
    if len(diffs) > limit:
        out.append('... and %d more' % (len(diffs) - limit))
    return out


def _compact(value):
    return ' '.join(_inline(value).split())


def _short(attrs):
    """What an added or removed object is, in one line (a long definition is in full in its diff)."""
    text = ''
    for attr in ('definition', 'type', 'base', 'subtype'):
        if attrs.get(attr):
            text = _compact(attrs[attr])
            break
    else:
        if 'command' in attrs:          # a policy
            text = '%s FOR %s TO %s%s%s' % (
                'PERMISSIVE' if attrs.get('permissive', True) else 'RESTRICTIVE', attrs['command'],
                ', '.join(attrs.get('roles') or ['PUBLIC']),
                ' USING %s' % attrs['using'] if attrs.get('using') else '',
                ' WITH CHECK %s' % attrs['check'] if attrs.get('check') else '')
        elif 'objects' in attrs:        # default privileges
            text = '; '.join(attrs.get('acl') or [])
        elif 'publication' in attrs:
            text = 'all tables' if attrs.get('all_tables') else ', '.join(
                ['%s.%s' % (t[0], t[1]) for t in attrs.get('tables') or []]
                + ['tables in schema %s' % n for n in attrs.get('schemas') or []])
    return text if len(text) <= 200 else text[:197] + '...'


# -- sync script -------------------------------------------------------------------------

_ORDER = ('extension', 'schema', 'type', 'sequence', 'table', 'column', 'constraint', 'index',
          'function', 'view', 'materialized', 'trigger', 'rule', 'policy', 'statistics', 'publication',
          'default')


def _kind(key):
    return key.split(' ', 1)[0]


def _literal(text):
    return 'NULL' if text is None else "'%s'" % text.replace("'", "''")


# Drop order: what depends on others first (functions after the tables whose defaults use them).
_DROP_ORDER = ('default', 'publication', 'statistics', 'policy', 'rule', 'trigger', 'materialized', 'view',
               'index', 'constraint', 'column', 'table', 'function', 'sequence', 'type', 'schema', 'extension')


def _drop_rank(key, attrs):
    kind = _kind(key)
    primary = not (kind == 'constraint' and attrs.get('type') == 'f')
    return (_DROP_ORDER.index(kind) if kind in _DROP_ORDER else -1, primary, key)


def _rank(key, attrs=None):
    """Creation order: by kind, foreign keys after the keys they reference."""
    kind = _kind(key)
    foreign = kind == 'constraint' and (attrs or {}).get('type') == 'f'
    return (_ORDER.index(kind) if kind in _ORDER else len(_ORDER), foreign, key)


def sync_script(target, source):
    """SQL that turns the schema fingerprinted as ``target`` into ``source``.

    Creates what only ``source`` has, alters what differs, drops what only
    ``target`` has (drops last, commented with what they remove).  Review it
    before running: renames show up as a drop plus a create.
    """
    target, source = comparable(target or {}, source or {})
    creates, alters, drops = [], [], []
    new_tables = set((v['schema'], v['name']) for k, v in source.items()
                     if _kind(k) == 'table' and k not in target)
    gone_tables = set((v['schema'], v['name']) for k, v in target.items()
                      if _kind(k) == 'table' and k not in source)

    def with_table(key, attrs, tables):
        # columns of a created table are in its CREATE TABLE; a dropped table takes its
        # columns, constraints, indexes, triggers, rules, policies and statistics with it
        return _kind(key) in _ON_TABLE and \
            (attrs.get('schema'), attrs.get('table')) in tables and \
            (_kind(key) == 'column' or tables is gone_tables)

    for key in sorted(set(source) - set(target), key=lambda k: _rank(k, source[k])):
        if not with_table(key, source[key], new_tables):
            creates.extend(_create_full(key, source[key], source))
    for key in sorted(set(source) - set(target)):
        if _kind(key) == 'sequence' and source[key].get('owned_by'):    # once its table exists
            creates.append('ALTER SEQUENCE %s OWNED BY %s;' % (
                qualified(source[key]['schema'], source[key]['name']), source[key]['owned_by']))
    for key in sorted(set(source) & set(target), key=lambda k: _rank(k, source[k])):
        old, new = target[key], source[key]
        if any(_normalized(_kind(key), a, old.get(a)) != _normalized(_kind(key), a, new.get(a))
               for a in set(old) | set(new)):
            alters.extend(_alter(key, old, new))
    for key in sorted(set(target) - set(source), key=lambda k: _drop_rank(k, target[k])):
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
    if col.get('collation'):
        text += ' COLLATE %s' % col['collation']
    if col.get('generated') == 's' and col.get('default') is not None:
        text += ' GENERATED ALWAYS AS (%s) STORED' % col['default']
    elif col.get('default') is not None:
        text += ' DEFAULT %s' % col['default']
    if col.get('identity') in ('a', 'd'):
        text += ' GENERATED %s AS IDENTITY' % ('ALWAYS' if col['identity'] == 'a' else 'BY DEFAULT')
    if col.get('not_null'):
        text += ' NOT NULL'
    return text


# -- what an object is called in GRANT, COMMENT ON and ALTER ... OWNER TO

def _is_domain(a):
    return a.get('kind') == 'domain'


def _object(kind, a):
    """(keyword, name) of an object for COMMENT ON / ALTER ... OWNER TO; None when it has none."""
    if kind == 'schema':
        return 'SCHEMA', quote_ident(a['name'])
    if kind == 'publication':
        return 'PUBLICATION', quote_ident(a['publication'])
    if kind == 'function':
        return ('PROCEDURE' if a.get('kind') == 'p' else 'FUNCTION',
                '%s(%s)' % (qualified(a['schema'], a['name']), a.get('arguments', '')))
    if kind == 'type':
        return 'DOMAIN' if _is_domain(a) else 'TYPE', qualified(a['schema'], a['name'])
    if kind in ('constraint', 'trigger', 'policy', 'rule'):
        return kind.upper(), '%s ON %s' % (quote_ident(a['name']), qualified(a['schema'], a['table']))
    if kind == 'column':
        return 'COLUMN', '%s.%s' % (qualified(a['schema'], a['table']), quote_ident(a['name']))
    words = dict(table='TABLE', view='VIEW', materialized='MATERIALIZED VIEW', sequence='SEQUENCE',
                 index='INDEX', statistics='STATISTICS')
    if kind in words:
        return words[kind], qualified(a['schema'], a['name'])
    return None


def _grant_target(kind, a):
    word, name = _object(kind, a)
    if kind in ('view', 'materialized'):
        word = 'TABLE'
    return '%s %s' % (word, name)


_OWNER_PRIVS = dict(table='DELETE, INSERT, REFERENCES, SELECT, TRIGGER, TRUNCATE, UPDATE',
                    sequence='SELECT, UPDATE, USAGE', function='EXECUTE', type='USAGE', schema='CREATE, USAGE')
_OWNER_PRIVS['view'] = _OWNER_PRIVS['materialized'] = _OWNER_PRIVS['table']
_DEFACL_KIND = dict(tables='table', sequences='sequence', functions='function', types='type', schemas='schema')


def _default_acl(kind, owner):
    """The ACL an object of ``kind`` owned by ``owner`` has before any GRANT (the fingerprint's form)."""
    if kind not in _OWNER_PRIVS or not owner:
        return None
    entries = ['%s: %s' % (owner, _OWNER_PRIVS[kind])]
    if kind in ('function', 'type'):
        entries.append('PUBLIC: %s' % _OWNER_PRIVS[kind])
    return sorted(entries)


def _acl_set(acl):
    out = set()
    for entry in acl or []:
        grantee, _sep, privs = entry.rpartition(': ')
        for priv in privs.split(', '):
            option = priv.endswith(' WITH GRANT OPTION')
            out.add((grantee, priv[:-len(' WITH GRANT OPTION')] if option else priv, option))
    return out


def _role(name):
    return 'PUBLIC' if name == 'PUBLIC' else quote_ident(name)


def _acl_sql(old, new, grant_fmt, revoke_fmt):
    """GRANT/REVOKE statements turning ACL ``old`` into ``new`` (lists as in the fingerprint)."""
    before, after = _acl_set(old), _acl_set(new)
    out = []
    for grantee, priv, option in sorted(before - after):
        if (grantee, priv, not option) in after:
            if option:
                out.append(revoke_fmt % ('GRANT OPTION FOR %s' % priv, _role(grantee)))
            continue
        out.append(revoke_fmt % (priv, _role(grantee)))
    for grantee, priv, option in sorted(after - before):
        if (grantee, priv, True) in before:
            continue
        out.append(grant_fmt % (priv, _role(grantee)) + (' WITH GRANT OPTION' if option else '') + ';')
    return [s if s.endswith(';') else s + ';' for s in out]


def _options_sql(prefix, old, new, option_prefix=''):
    """ALTER ... SET (...) / RESET (...) turning storage parameters ``old`` into ``new``."""
    olds = dict(o.split('=', 1) for o in old or [])
    news = dict(o.split('=', 1) for o in new or [])
    out = []
    gone = sorted(k for k in olds if k not in news)
    if gone:
        out.append('%s RESET (%s);' % (prefix, ', '.join(option_prefix + k for k in gone)))
    changed = sorted(k for k in news if olds.get(k) != news[k])
    if changed:
        out.append('%s SET (%s);' % (prefix, ', '.join('%s%s=%s' % (option_prefix, k, news[k]) for k in changed)))
    return out


# Attributes set after CREATE (COMMENT, GRANT, ALTER ... SET ...), with their value right after it.
_AFTER_CREATE = ('owner', 'acl', 'comment', 'options', 'toast_options', 'rls', 'force_rls',
                 'replica_identity', 'statistics', 'storage', 'compression', 'column_comments',
                 'clustered', 'target')


def _baseline(kind, a):
    """``a`` as its CREATE statement leaves it: what ``_AFTER_CREATE`` names at its default."""
    base = dict((k, v) for k, v in a.items() if k not in _AFTER_CREATE)
    if 'owner' in a:
        base['owner'] = None
        acl_kind = kind if kind != 'default' else _DEFACL_KIND.get(a.get('objects'))
        base['acl'] = _default_acl(acl_kind, a['owner'])
    if kind == 'default':
        base['acl'] = None if a.get('in_schema') else _default_acl(
            _DEFACL_KIND.get(a.get('objects')), a.get('role'))
    if kind in ('table', 'column') and 'rls' in a:
        base.update(rls=False, force_rls=False)
    return base


def _create_full(key, a, source):
    kind = _kind(key)
    if a.get('part_of'):
        return []                 # a range type's constructor: CREATE TYPE makes it
    if kind == 'default':
        return _secondary(kind, _baseline(kind, a), a)
    out = _create(key, a, source)
    if not out or out[0].startswith('-- cannot'):
        return out
    out.extend(_secondary(kind, _baseline(kind, a), a))
    if kind == 'table':
        for ckey, col in sorted(source.items()):
            if _kind(ckey) == 'column' and col['schema'] == a['schema'] and col['table'] == a['name'] \
                    and not a.get('partition_bound'):
                out.extend(_secondary('column', _baseline('column', col), col))
    return out


def _create(key, a, source):
    kind = _kind(key)
    if kind == 'extension':
        return ['CREATE EXTENSION IF NOT EXISTS %s%s;' % (
            quote_ident(a['name']), ' VERSION %s' % _literal(a['version']) if a.get('version') else '')]
    if kind == 'schema':
        return ['CREATE SCHEMA IF NOT EXISTS %s;' % quote_ident(a['name'])]
    if kind == 'type':
        return [_create_type(a)]
    if kind == 'sequence':
        return ['CREATE %sSEQUENCE IF NOT EXISTS %s AS %s INCREMENT %s MINVALUE %s MAXVALUE %s START %s CACHE %s%s;'
                % ('UNLOGGED ' if a.get('unlogged') else '', qualified(a['schema'], a['name']), a['type'],
                   a['increment'], a['min'], a['max'], a['start'], a.get('cache', 1),
                   ' CYCLE' if a['cycle'] else '')]
    if kind == 'table':
        name = qualified(a['schema'], a['name'])
        head = 'CREATE %sTABLE %s' % ('UNLOGGED ' if a.get('persistence') == 'u' else '', name)
        if a.get('partition_bound') and a.get('inherits'):
            text = '%s PARTITION OF %s %s' % (head, a['inherits'][0], a['partition_bound'])
        else:
            cols = [v for k, v in sorted(source.items()) if _kind(k) == 'column'
                    and v['schema'] == a['schema'] and v['table'] == a['name']]
            text = '%s (%s)' % (head, ', '.join(_column_sql(c) for c in cols))
            if a.get('inherits'):
                text += ' INHERITS (%s)' % ', '.join(a['inherits'])
        if a.get('partition_key'):
            text += ' PARTITION BY %s' % a['partition_key']
        return [text + ';']
    if kind == 'column':
        return ['ALTER TABLE %s ADD COLUMN %s;' % (qualified(a['schema'], a['table']), _column_sql(a))]
    if kind == 'constraint':
        return ['ALTER TABLE %s ADD CONSTRAINT %s %s;'
                % (qualified(a['schema'], a['table']), quote_ident(a['name']), a['definition'])]
    if kind in ('index', 'trigger', 'statistics'):
        return ['%s;' % a['definition']]
    if kind == 'rule':
        return ['%s;' % a['definition'].rstrip().rstrip(';')]
    if kind == 'function':
        return ['%s;' % a['definition'].rstrip()] if a.get('definition') else []
    if kind in ('view', 'materialized'):
        return ['CREATE %sVIEW %s AS %s' % ('MATERIALIZED ' if a.get('materialized') else '',
                                            qualified(a['schema'], a['name']), a['definition'].strip())]
    if kind == 'policy':
        text = 'CREATE POLICY %s ON %s AS %s FOR %s TO %s' % (
            quote_ident(a['name']), qualified(a['schema'], a['table']),
            'PERMISSIVE' if a.get('permissive', True) else 'RESTRICTIVE', a.get('command', 'ALL'),
            ', '.join(_role(r) for r in a.get('roles') or ['PUBLIC']))
        if a.get('using'):
            text += ' USING (%s)' % a['using']
        if a.get('check'):
            text += ' WITH CHECK (%s)' % a['check']
        return [text + ';']
    if kind == 'publication':
        what = ''
        if a.get('all_tables'):
            what = ' FOR ALL TABLES'
        else:
            parts = ['TABLE %s%s%s' % (qualified(t[0], t[1]),
                                       ' (%s)' % ', '.join(quote_ident(c) for c in t[3]) if t[3] else '',
                                       ' WHERE (%s)' % t[2] if t[2] else '') for t in a.get('tables') or []]
            parts += ['TABLES IN SCHEMA %s' % quote_ident(s) for s in a.get('schemas') or []]
            if parts:
                what = ' FOR ' + ', '.join(parts)
        return ['CREATE PUBLICATION %s%s WITH (publish = %s, publish_via_partition_root = %s);' % (
            quote_ident(a['publication']), what, _literal(a.get('publish', '')),
            'true' if a.get('via_root') else 'false')]
    if kind == 'default':
        return []
    return ['-- cannot create %s automatically' % key]


def _create_type(a):
    name = qualified(a['schema'], a['name'])
    kind = a.get('kind', 'enum')
    if kind == 'enum':
        return 'CREATE TYPE %s AS ENUM (%s);' % (name, ', '.join(_literal(lbl) for lbl in a.get('labels') or []))
    if kind == 'composite':
        return 'CREATE TYPE %s AS (%s);' % (name, ', '.join(
            '%s %s%s' % (quote_ident(n), t, ' COLLATE %s' % c if c else '') for n, t, c in a.get('attributes') or []))
    if kind == 'domain':
        text = 'CREATE DOMAIN %s AS %s' % (name, a['base'])
        if a.get('collation'):
            text += ' COLLATE %s' % a['collation']
        if a.get('default') is not None:
            text += ' DEFAULT %s' % a['default']
        if a.get('not_null'):
            text += ' NOT NULL'
        for con in a.get('constraints') or []:
            text += ' CONSTRAINT %s %s' % (quote_ident(con['name']), con['definition'])
        return text + ';'
    parts = ['SUBTYPE = %s' % a['subtype']]
    for attr, word in (('subtype_opclass', 'SUBTYPE_OPCLASS'), ('range_collation', 'COLLATION'),
                       ('canonical', 'CANONICAL'), ('subtype_diff', 'SUBTYPE_DIFF')):
        if a.get(attr):
            parts.append('%s = %s' % (word, a[attr]))
    return 'CREATE TYPE %s AS RANGE (%s);' % (name, ', '.join(parts))


def _secondary(kind, old, new):
    """Statements for the attributes set after CREATE: owner, grants, comments, parameters..."""
    out = []
    changed = [a for a in _AFTER_CREATE if old.get(a) != new.get(a)]
    if not changed:
        return out
    obj = _object(kind, new)
    if 'comment' in changed and obj:
        out.append('COMMENT ON %s %s IS %s;' % (obj[0], obj[1], _literal(new.get('comment'))))
    if 'owner' in changed and new.get('owner') and obj and kind != 'column':
        out.append('ALTER %s %s OWNER TO %s;' % (obj[0], obj[1], quote_ident(new['owner'])))
    if 'acl' in changed:
        if kind == 'column':
            target = ('TABLE %s' % qualified(new['schema'], new['table'])).replace('%', '%%')
            col = quote_ident(new['name']).replace('%', '%%')
            out.extend(_acl_sql(old.get('acl'), new.get('acl'), 'GRANT %%s (%s) ON %s TO %%s' % (col, target),
                                'REVOKE %%s (%s) ON %s FROM %%s' % (col, target)))
        elif kind == 'default':
            head = ('ALTER DEFAULT PRIVILEGES FOR ROLE %s%s' % (
                quote_ident(new['role']), ' IN SCHEMA %s' % quote_ident(new['in_schema'])
                if new.get('in_schema') else '')).replace('%', '%%')
            objects_word = new['objects'].upper()
            out.extend(_acl_sql(old.get('acl'), new.get('acl'), head + ' GRANT %%s ON %s TO %%s' % objects_word,
                                head + ' REVOKE %%s ON %s FROM %%s' % objects_word))
        elif obj:
            target = _grant_target(kind, new).replace('%', '%%')
            out.extend(_acl_sql(old.get('acl'), new.get('acl'), 'GRANT %%s ON %s TO %%s' % target,
                                'REVOKE %%s ON %s FROM %%s' % target))
    if kind == 'table':
        name = qualified(new['schema'], new['name'])
        out.extend(_options_sql('ALTER TABLE %s' % name, old.get('options'), new.get('options')))
        out.extend(_options_sql('ALTER TABLE %s' % name, old.get('toast_options'), new.get('toast_options'),
                                'toast.'))
        if bool(old.get('rls')) != bool(new.get('rls')):
            out.append('ALTER TABLE %s %s ROW LEVEL SECURITY;' % (name, 'ENABLE' if new.get('rls') else 'DISABLE'))
        if bool(old.get('force_rls')) != bool(new.get('force_rls')):
            out.append('ALTER TABLE %s %sFORCE ROW LEVEL SECURITY;' % (name, '' if new.get('force_rls') else 'NO '))
        if old.get('replica_identity') != new.get('replica_identity'):
            ident = new.get('replica_identity') or 'default'
            out.append('ALTER TABLE %s REPLICA IDENTITY %s;' % (
                name, 'USING INDEX %s' % ident[len('index '):] if ident.startswith('index ') else ident.upper()))
    elif kind in ('view', 'materialized'):
        name = qualified(new['schema'], new['name'])
        out.extend(_options_sql('ALTER %s %s' % (_object(kind, new)[0], name), old.get('options'),
                                new.get('options')))
        if 'column_comments' in changed:
            olds, news = old.get('column_comments') or {}, new.get('column_comments') or {}
            for col in sorted(set(olds) | set(news)):
                if olds.get(col) != news.get(col):
                    out.append('COMMENT ON COLUMN %s.%s IS %s;' % (name, quote_ident(col), _literal(news.get(col))))
    elif kind == 'column':
        head = 'ALTER TABLE %s ALTER COLUMN %s' % (qualified(new['schema'], new['table']), quote_ident(new['name']))
        if 'statistics' in changed:
            out.append('%s SET STATISTICS %s;' % (head, new.get('statistics', -1)))
        if 'storage' in changed:
            if new.get('storage'):
                out.append('%s SET STORAGE %s;' % (head, dict(p='PLAIN', e='EXTERNAL', m='MAIN', x='EXTENDED')[
                    new['storage']]))
            else:
                out.append("-- %s: set the storage back to its type's default by hand" % head)
        if 'compression' in changed:
            out.append('%s SET COMPRESSION %s;' % (head, dict(p='pglz', l='lz4').get(new.get('compression'),
                                                                                     'DEFAULT')))
        out.extend(_options_sql(head, old.get('options'), new.get('options')))
    elif kind == 'index':
        name = qualified(new['schema'], new['name'])
        if 'clustered' in changed:
            table = qualified(new['schema'], new['table'])
            out.append('ALTER TABLE %s %s;' % (table, 'CLUSTER ON %s' % quote_ident(new['name'])
                                               if new.get('clustered') else 'SET WITHOUT CLUSTER'))
        if 'statistics' in changed:
            olds, news = old.get('statistics') or {}, new.get('statistics') or {}
            for col in sorted(set(olds) | set(news)):
                if olds.get(col) != news.get(col):
                    out.append('ALTER INDEX %s ALTER COLUMN %s SET STATISTICS %s;' % (name, col, news.get(col, -1)))
    elif kind == 'statistics' and 'target' in changed:
        out.append('ALTER STATISTICS %s SET STATISTICS %s;' % (qualified(new['schema'], new['name']),
                                                               new.get('target', -1)))
    elif kind == 'type' and 'column_comments' in changed:
        olds, news = old.get('column_comments') or {}, new.get('column_comments') or {}
        for col in sorted(set(olds) | set(news)):
            if olds.get(col) != news.get(col):
                out.append('COMMENT ON COLUMN %s.%s IS %s;' % (qualified(new['schema'], new['name']),
                                                               quote_ident(col), _literal(news.get(col))))
    return out


def _differs(kind, old, new, attrs):
    return [a for a in attrs if _normalized(kind, a, old.get(a)) != _normalized(kind, a, new.get(a))]


def _alter(key, old, new):
    kind = _kind(key)
    if new.get('part_of') or old.get('part_of'):
        return []                 # follows its range type
    primary = _differs(kind, old, new, sorted((set(old) | set(new)) - set(_AFTER_CREATE)))
    out = []
    if kind == 'column':
        table = qualified(new['schema'], new['table'])
        col = quote_ident(new['name'])
        for attr in primary:
            if attr == 'type':
                out.append('ALTER TABLE %s ALTER COLUMN %s TYPE %s%s;' % (
                    table, col, new['type'], ' COLLATE %s' % new['collation'] if new.get('collation') else ''))
            elif attr == 'default':
                out.append('ALTER TABLE %s ALTER COLUMN %s %s;' % (
                    table, col, 'DROP DEFAULT' if new.get('default') is None
                    else 'SET DEFAULT %s' % new['default']))
            elif attr == 'not_null':
                out.append('ALTER TABLE %s ALTER COLUMN %s %s NOT NULL;' % (
                    table, col, 'SET' if new.get('not_null') else 'DROP'))
            elif attr == 'collation' and 'type' not in primary:
                out.append('ALTER TABLE %s ALTER COLUMN %s TYPE %s COLLATE %s;' % (
                    table, col, new['type'], new.get('collation') or '"default"'))
            elif attr != 'collation':
                out.append('-- %s: %s differs: review by hand' % (key, attr))
        return out + _secondary(kind, old, new)
    replace = _replace(kind, old, new, primary)
    if replace is None:
        return _drop(key, old, {}) + _create_full(key, new, {})
    return replace + _secondary(kind, old, new)


def _replace(kind, old, new, primary):
    """Statements changing the primary attributes in place; None when only drop + create will do."""
    if not primary:
        return []
    if kind == 'function' and new.get('definition') and primary == ['definition']:
        return ['%s;' % new['definition'].rstrip()]
    if kind == 'view' and not new.get('materialized') and primary == ['definition']:
        return ['CREATE OR REPLACE VIEW %s AS %s' % (qualified(new['schema'], new['name']),
                                                     new['definition'].strip())]
    if kind == 'extension':
        out = []
        if 'version' in primary:
            out.append('ALTER EXTENSION %s UPDATE TO %s;' % (quote_ident(new['name']), _literal(new['version'])))
        if 'schema' in primary:
            out.append('ALTER EXTENSION %s SET SCHEMA %s;' % (quote_ident(new['name']), new['schema']))
        return out
    if kind == 'constraint' and primary == ['validated'] and new.get('validated'):
        return ['ALTER TABLE %s VALIDATE CONSTRAINT %s;' % (qualified(new['schema'], new['table']),
                                                            quote_ident(new['name']))]
    if kind == 'trigger' and primary == ['enabled']:
        how = dict(O='ENABLE', D='DISABLE', R='ENABLE REPLICA', A='ENABLE ALWAYS')[new['enabled']]
        return ['ALTER TABLE %s %s TRIGGER %s;' % (qualified(new['schema'], new['table']), how,
                                                   quote_ident(new['name']))]
    if kind == 'sequence':
        return _alter_sequence(old, new, primary)
    if kind == 'table':               # never dropped and created again: it holds data
        name = qualified(new['schema'], new['name'])
        return [('ALTER TABLE %s SET %s;' % (name, 'UNLOGGED' if new.get('persistence') == 'u' else 'LOGGED'))
                if attr == 'persistence' else '-- table %s: %s differs: review by hand' % (name, attr)
                for attr in primary]
    if kind == 'policy' and not set(primary) & {'command', 'permissive'} \
            and not (old.get('using') and not new.get('using')) and not (old.get('check') and not new.get('check')):
        text = 'ALTER POLICY %s ON %s' % (quote_ident(new['name']), qualified(new['schema'], new['table']))
        if 'roles' in primary:
            text += ' TO %s' % ', '.join(_role(r) for r in new.get('roles') or ['PUBLIC'])
        if 'using' in primary:
            text += ' USING (%s)' % new['using']
        if 'check' in primary:
            text += ' WITH CHECK (%s)' % new['check']
        return [text + ';']
    if kind == 'type':
        return _alter_type(old, new, primary)
    return None


def _alter_sequence(old, new, primary):
    name = qualified(new['schema'], new['name'])
    clauses, out = [], []
    words = dict(type='AS %s', start='START WITH %s', increment='INCREMENT BY %s', min='MINVALUE %s',
                 max='MAXVALUE %s', cache='CACHE %s')
    for attr in primary:
        if attr in words and new.get(attr) is not None:
            clauses.append(words[attr] % new[attr])
        elif attr == 'cycle':
            clauses.append('CYCLE' if new.get('cycle') else 'NO CYCLE')
        elif attr == 'owned_by':
            clauses.append('OWNED BY %s' % (new.get('owned_by') or 'NONE'))
        elif attr == 'unlogged':
            out.append('ALTER SEQUENCE %s SET %s;' % (name, 'UNLOGGED' if new.get('unlogged') else 'LOGGED'))
    if clauses:
        out.insert(0, 'ALTER SEQUENCE %s %s;' % (name, ' '.join(clauses)))
    return out


def _alter_type(old, new, primary):
    name = qualified(new['schema'], new['name'])
    if old.get('kind') != new.get('kind'):
        return None
    kind = new.get('kind')
    if kind == 'enum' and primary == ['labels']:
        olds, news = old.get('labels') or [], new.get('labels') or []
        if [lbl for lbl in news if lbl in olds] != olds:
            return None                     # a label removed or moved: only drop + create does it
        out = []
        for i, label in enumerate(news):
            if label not in olds:
                where = (' BEFORE %s' % _literal(news[i + 1]) if i + 1 < len(news) and news[i + 1] in olds
                         else ' AFTER %s' % _literal(news[i - 1]) if i else '')
                out.append('ALTER TYPE %s ADD VALUE %s%s;' % (name, _literal(label), where))
        return out
    if kind == 'composite' and primary == ['attributes']:
        olds = dict((a[0], a) for a in old.get('attributes') or [])
        news = dict((a[0], a) for a in new.get('attributes') or [])
        out = ['ALTER TYPE %s DROP ATTRIBUTE %s;' % (name, quote_ident(n)) for n in olds if n not in news]
        for attr in new.get('attributes') or []:
            n, typ, coll = attr
            coll = ' COLLATE %s' % coll if coll else ''
            if n not in olds:
                out.append('ALTER TYPE %s ADD ATTRIBUTE %s %s%s;' % (name, quote_ident(n), typ, coll))
            elif olds[n] != attr:
                out.append('ALTER TYPE %s ALTER ATTRIBUTE %s TYPE %s%s;' % (name, quote_ident(n), typ, coll))
        return out
    if kind == 'domain' and not set(primary) - {'default', 'not_null', 'constraints'}:
        out = []
        if 'default' in primary:
            out.append('ALTER DOMAIN %s %s;' % (name, 'DROP DEFAULT' if new.get('default') is None
                                                else 'SET DEFAULT %s' % new['default']))
        if 'not_null' in primary:
            out.append('ALTER DOMAIN %s %s NOT NULL;' % (name, 'SET' if new.get('not_null') else 'DROP'))
        if 'constraints' in primary:
            olds = dict((c['name'], c) for c in old.get('constraints') or [])
            news = dict((c['name'], c) for c in new.get('constraints') or [])
            for cname in sorted(set(olds) | set(news)):
                if olds.get(cname) == news.get(cname):
                    continue
                if cname in olds:
                    out.append('ALTER DOMAIN %s DROP CONSTRAINT %s;' % (name, quote_ident(cname)))
                if cname in news:
                    out.append('ALTER DOMAIN %s ADD CONSTRAINT %s %s;' % (
                        name, quote_ident(cname), news[cname]['definition']))
                    if news[cname].get('comment'):
                        out.append('COMMENT ON CONSTRAINT %s ON DOMAIN %s IS %s;' % (
                            quote_ident(cname), name, _literal(news[cname]['comment'])))
        return out
    return None


# Objects dropped by name alone: schema-qualified, but for extensions and schemas.
_DROP_BY_NAME = dict(extension='EXTENSION', schema='SCHEMA', sequence='SEQUENCE',
                     table='TABLE', index='INDEX', statistics='STATISTICS')


def _drop(key, a, source):
    kind = _kind(key)
    if a.get('part_of'):
        return []                 # dropped with its range type
    if kind in _DROP_BY_NAME:
        name = quote_ident(a['name']) if kind in ('extension', 'schema') else qualified(a['schema'], a['name'])
        return ['DROP %s IF EXISTS %s;' % (_DROP_BY_NAME[kind], name)]
    if kind == 'type':
        return ['DROP %s IF EXISTS %s;' % ('DOMAIN' if _is_domain(a) else 'TYPE', qualified(a['schema'], a['name']))]
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
    if kind in ('trigger', 'policy', 'rule'):
        return ['DROP %s IF EXISTS %s ON %s;' % (
            kind.upper(), quote_ident(a['name']), qualified(a['schema'], a['table']))]
    if kind == 'publication':
        return ['DROP PUBLICATION IF EXISTS %s;' % quote_ident(a['publication'])]
    if kind == 'default':
        return _secondary('default', a, _baseline('default', a))
    return ['-- cannot drop %s automatically' % key]
