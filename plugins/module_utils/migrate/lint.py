# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Safety lint of planned migrations, on the pglast parse tree (no Ansible imports).

Works with pglast 5 (Debian 12, PostgreSQL 15 parser) and later versions: it
walks the JSON parse tree generically by node name.  Without pglast the lint
is skipped with one warning.  Rules (a file can silence some with
``-- dbdevops:lint-ignore=rule,rule``):

create-index-not-concurrently  CREATE INDEX without CONCURRENTLY on a table that exists
volatile-default               ADD COLUMN with a volatile default (rewrites the table)
set-not-null                   ALTER COLUMN ... SET NOT NULL (scans under ACCESS EXCLUSIVE)
constraint-not-valid           ADD CONSTRAINT CHECK/FOREIGN KEY without NOT VALID
alter-column-type              ALTER COLUMN ... TYPE (usually rewrites the table)
drop-table / drop-column       destroys data
non-transactional-lock-timeout a transaction=off file with no lock_timeout at all
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

try:
    from pglast import parser as _pglast_parser
    HAS_PGLAST = True
except ImportError:  # pragma: no cover - depends on the host
    _pglast_parser = None
    HAS_PGLAST = False

SKIPPED_MESSAGE = 'lint skipped: pglast not installed (Debian: apt-get install python3-pglast)'


def parser_major():
    """The PostgreSQL major version whose grammar pglast carries (None without pglast)."""
    if not HAS_PGLAST:
        return None
    try:
        return int(_pglast_parser.get_postgresql_version()[0])
    except Exception:  # noqa: BLE001 - an old pglast without the function
        return None


VOLATILE_FUNCTIONS = frozenset((
    'random', 'gen_random_uuid', 'uuid_generate_v1', 'uuid_generate_v1mc', 'uuid_generate_v4',
    'clock_timestamp', 'timeofday', 'nextval', 'txid_current', 'setseed', 'random_normal',
    'gen_random_bytes'))


class Finding(object):
    def __init__(self, rule, script, line, message, statement):
        self.rule = rule
        self.script = script
        self.line = line
        self.message = message
        self.statement = statement

    def text(self):
        return '%s line %d: %s [%s]' % (self.script, self.line, self.message, self.rule)

    def to_dict(self):
        return dict(rule=self.rule, script=self.script, line=self.line, message=self.message,
                    statement=self.statement)


def walk(node):
    """Yield ``(node_name, fields)`` for every node of a pglast JSON tree."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                if key[:1].isupper() and isinstance(value, dict):
                    yield key, value
                stack.append(value)
        elif isinstance(item, list):
            stack.extend(item)


def statement_nodes(tree):
    """Yield ``(node_name, fields)`` for each statement of a parse tree.

    Every rule is about a statement node (CREATE TABLE, CREATE INDEX, ALTER TABLE,
    DROP, SET), and those only occur at the top level or as elements of
    ``CREATE SCHEMA ... CREATE TABLE ...``, so this is all the lint walks: much
    cheaper than every node of the tree, and the same with pglast 5 and 8.
    """
    stack = [entry.get('stmt') for entry in reversed(tree.get('stmts') or [])]
    while stack:
        item = stack.pop()
        if not isinstance(item, dict):
            continue
        for name, fields in item.items():
            if isinstance(fields, dict):
                yield name, fields
                if name == 'CreateSchemaStmt':
                    stack.extend(reversed(fields.get('schemaElts') or []))


def _strings(nodes):
    out = []
    for item in nodes or []:
        if isinstance(item, dict) and 'String' in item:
            s = item['String']
            out.append(s.get('sval', s.get('str')))
    return out


def _relname(rangevar):
    if not rangevar:
        return None
    return '%s.%s' % (rangevar.get('schemaname') or 'public', rangevar.get('relname'))


class Catalog(object):
    """What the live database says about tables (None when there is no connection)."""

    def __init__(self, conn=None):
        self.conn = conn
        self._cache = {}

    def table(self, qualified):
        """``(exists, size_bytes, rows)`` or ``None`` when unknown."""
        if self.conn is None:
            return None
        if qualified not in self._cache:
            with self.conn.cursor() as cur:
                cur.execute("SELECT pg_total_relation_size(c.oid), c.reltuples::bigint FROM pg_class c "
                            "WHERE c.oid = to_regclass(%s) AND c.relkind IN ('r', 'p', 'm')",
                            (qualified,))
                row = cur.fetchone()
            self._cache[qualified] = (True, row[0], max(row[1], 0)) if row else (False, 0, 0)
        return self._cache[qualified]


def _size(nbytes):
    for unit in ('bytes', 'kB', 'MB', 'GB', 'TB'):
        if nbytes < 1024 or unit == 'TB':
            return ('%d %s' % (nbytes, unit)) if unit == 'bytes' else ('%.1f %s' % (nbytes, unit))
        nbytes /= 1024.0


def lint_steps(steps, catalog=None, lock_timeout=None):
    """Findings for a list of plan steps (objects with .file, .kind); order kept."""
    if not HAS_PGLAST:
        return None
    catalog = catalog or Catalog()
    created = set()
    findings = []
    for step in steps:
        mfile = step.file
        if mfile is None:
            continue
        sets_lock_timeout = False
        file_findings = []
        for stmt in mfile.statements:
            try:
                tree = json.loads(_pglast_parser.parse_sql_json(stmt.text))
            except Exception as exc:  # noqa: BLE001 - pglast raises its own ParseError types
                file_findings.append(Finding('parse-error', mfile.script, stmt.line,
                                             'cannot parse: %s' % exc, stmt.short()))
                continue
            for name, node in statement_nodes(tree):
                if name == 'VariableSetStmt' and node.get('name') == 'lock_timeout':
                    sets_lock_timeout = True
                for rule, message in _check(name, node, catalog, created):
                    file_findings.append(Finding(rule, mfile.script, stmt.line, message, stmt.short()))
        if not mfile.transactional and not sets_lock_timeout and not lock_timeout:
            file_findings.append(Finding(
                'non-transactional-lock-timeout', mfile.script, 1,
                'runs outside a transaction with no lock_timeout: a statement waiting for a lock '
                'queues every query behind it; SET lock_timeout in the file or keep the '
                'lock_timeout option', ''))
        findings.extend(f for f in file_findings if f.rule not in mfile.lint_ignore)
    return findings


# ALTER TABLE column commands that lock and scan or rewrite an existing table: rule, message.
_COLUMN_RULES = {
    'AT_SetNotNull': (
        'set-not-null',
        'SET NOT NULL on column {column} scans {where} under an ACCESS EXCLUSIVE lock; add '
        'CHECK ({column} IS NOT NULL) NOT VALID, VALIDATE CONSTRAINT, then SET NOT NULL'),
    'AT_AlterColumnType': (
        'alter-column-type',
        'ALTER COLUMN {column} TYPE usually rewrites {where} under an ACCESS EXCLUSIVE '
        'lock; add a new column, backfill, and switch over instead'),
}


def _existing(catalog, table, created):
    """Text like 'existing table public.t (12.0 MB, ~1000 rows)' or None when new."""
    if table in created:
        return None
    info = catalog.table(table)
    if info is None:
        return 'table %s' % table
    exists, size, rows = info
    if not exists:
        return None
    return 'existing table %s (%s, ~%d rows)' % (table, _size(size), rows)


def _check(name, node, catalog, created):
    if name == 'CreateStmt':
        created.add(_relname(node.get('relation')))
    elif name == 'IndexStmt' and not node.get('concurrent'):
        where = _existing(catalog, _relname(node.get('relation')), created)
        if where:
            yield ('create-index-not-concurrently',
                   'CREATE INDEX without CONCURRENTLY on %s blocks writes while it builds; use '
                   'CREATE INDEX CONCURRENTLY in a file with "-- dbdevops:transaction=off"' % where)
    elif name == 'AlterTableStmt':
        table = _relname(node.get('relation'))
        for cmd in node.get('cmds') or []:
            cmd = cmd.get('AlterTableCmd', {})
            subtype = cmd.get('subtype')
            definition = cmd.get('def') or {}
            if subtype == 'AT_AddColumn':
                for cname, cnode in walk(definition):
                    if cname == 'Constraint' and cnode.get('contype') == 'CONSTR_DEFAULT':
                        funcs = set(f.lower() for _n, fc in walk(cnode.get('raw_expr') or {})
                                    if _n == 'FuncCall' for f in _strings(fc.get('funcname'))[-1:])
                        volatile = sorted(funcs & VOLATILE_FUNCTIONS)
                        where = _existing(catalog, table, created)
                        if volatile and where:
                            yield ('volatile-default',
                                   'ADD COLUMN with volatile default %s() rewrites %s under an '
                                   'ACCESS EXCLUSIVE lock; add the column without a default, '
                                   'backfill in batches, then SET DEFAULT' % (volatile[0], where))
            elif subtype in _COLUMN_RULES:
                where = _existing(catalog, table, created)
                if where:
                    rule, text = _COLUMN_RULES[subtype]
                    yield rule, text.format(column=cmd.get('name'), where=where)
            elif subtype == 'AT_AddConstraint':
                con = definition.get('Constraint', {})
                if con.get('contype') in ('CONSTR_CHECK', 'CONSTR_FOREIGN') and \
                        not con.get('skip_validation'):
                    where = _existing(catalog, table, created)
                    if where:
                        yield ('constraint-not-valid',
                               'ADD CONSTRAINT %s without NOT VALID validates every row of %s under '
                               'a lock; add it NOT VALID, then VALIDATE CONSTRAINT in a later step'
                               % (con.get('conname') or '', where))
            elif subtype == 'AT_DropColumn':
                yield ('drop-column',
                       'DROP COLUMN %s on %s destroys its data; deploy code that no longer reads '
                       'it first' % (cmd.get('name'), table))
    elif name == 'DropStmt' and node.get('removeType') == 'OBJECT_TABLE':
        for obj in node.get('objects') or []:
            parts = _strings((obj.get('List') or {}).get('items')) if isinstance(obj, dict) else []
            yield ('drop-table', 'DROP TABLE %s destroys its data' % '.'.join(p for p in parts if p))
