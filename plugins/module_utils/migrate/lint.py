# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Safety lint of planned migrations, on the pglast parse tree (no Ansible imports).

Works with pglast 5 (Debian 12, PostgreSQL 15 parser) and later versions: it
walks the JSON parse tree generically by node name.  Without pglast the lint
is skipped with one warning.

``RULES`` is the registry: every rule's id, severity, category (``safety``
rules are on by default, ``style`` rules are opt-in) and what it catches;
docs/lint-rules.md is the table of them, with a risky and a safe example each
(checked by tests/unit/plugins/module_utils/migrate/test_lint_rules.py).

The live catalog decides when PostgreSQL makes a statement cheap: tables
created earlier in the same plan and tables with no rows on disk are not
flagged for locks, scans and rewrites; the server version decides the
version-dependent rules; ``pg_proc.provolatile`` decides which defaults are
volatile.

Which rules run, later settings winning:

1. the registry default;
2. ``dbdevops-lint.json`` in the migrations folder: ``{"rules": {"drop-column": false,
   "style": true}}`` (a rule id or a category, mapped to true or false);
3. the ``lint_rules`` option of the migrate module, the same mapping;
4. ``-- dbdevops:lint-ignore=rule,rule`` in a file (that file only).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import collections
import json
import os
import re

from ansible_collections.dbdevops.postgresql.plugins.module_utils.errors import DbDevopsError

try:
    from pglast import parser as _pglast_parser
    HAS_PGLAST = True
except ImportError:  # pragma: no cover - depends on the host
    _pglast_parser = None
    HAS_PGLAST = False

SKIPPED_MESSAGE = 'lint skipped: pglast not installed (Debian: apt-get install python3-pglast)'
PROJECT_FILE = 'dbdevops-lint.json'


class LintConfigError(DbDevopsError):
    """A lint setting names a rule that does not exist, or the project file cannot be read."""


def parser_major():
    """The PostgreSQL major version whose grammar pglast carries (None without pglast)."""
    if not HAS_PGLAST:
        return None
    try:
        return int(_pglast_parser.get_postgresql_version()[0])
    except Exception:  # noqa: BLE001 - an old pglast without the function
        return None


Rule = collections.namedtuple('Rule', 'id severity category default summary')

_RULE_TABLE = (
    # id, severity, category, on by default, what it catches
    ('create-index-not-concurrently', 'warning', 'safety', True,
     'CREATE INDEX without CONCURRENTLY on a table with rows: writes wait for the whole build'),
    ('drop-index-not-concurrently', 'warning', 'safety', True,
     'DROP INDEX without CONCURRENTLY on a table with rows: reads and writes wait for the lock'),
    ('reindex-not-concurrently', 'warning', 'safety', True,
     'REINDEX without CONCURRENTLY: writes (and reads using the index) wait for the rebuild'),
    ('concurrently-in-transaction', 'error', 'safety', True,
     'CREATE/DROP INDEX, REINDEX or DETACH PARTITION CONCURRENTLY inside a transaction: PostgreSQL '
     'refuses it'),
    ('detach-partition-not-concurrently', 'warning', 'safety', True,
     'DETACH PARTITION without CONCURRENTLY (PostgreSQL 14+): ACCESS EXCLUSIVE on the parent'),
    ('volatile-default', 'warning', 'safety', True,
     'ADD COLUMN with a volatile DEFAULT (random(), clock_timestamp(), any function the catalog '
     'says is volatile): rewrites the table'),
    ('add-column-default-pre11', 'warning', 'safety', True,
     'ADD COLUMN with any DEFAULT before PostgreSQL 11: rewrites the table'),
    ('add-column-generated-stored', 'warning', 'safety', True,
     'ADD COLUMN ... GENERATED ALWAYS AS (...) STORED on a table with rows: rewrites it'),
    ('add-column-identity', 'warning', 'safety', True,
     'ADD COLUMN of an identity or serial column on a table with rows: fills every row, rewriting it'),
    ('add-column-required', 'error', 'safety', True,
     'ADD COLUMN ... NOT NULL without a DEFAULT on a table with rows: fails, and old code cannot insert'),
    ('add-column-references', 'warning', 'safety', True,
     'ADD COLUMN ... REFERENCES on a table with rows: locks both tables and scans while validating'),
    ('constraint-not-valid', 'warning', 'safety', True,
     'ADD CONSTRAINT CHECK or FOREIGN KEY without NOT VALID on a table with rows: validated under a '
     'lock that blocks writes'),
    ('validate-in-same-transaction', 'warning', 'safety', True,
     'VALIDATE CONSTRAINT in the transaction that added it NOT VALID: the scan runs under the '
     'ACCESS EXCLUSIVE lock of the ADD'),
    ('add-unique-constraint', 'warning', 'safety', True,
     'ADD UNIQUE or EXCLUDE constraint without USING INDEX on a table with rows: builds the index '
     'under ACCESS EXCLUSIVE'),
    ('add-primary-key', 'warning', 'safety', True,
     'ADD PRIMARY KEY without USING INDEX on a table with rows: builds the index under ACCESS '
     'EXCLUSIVE'),
    ('set-not-null', 'warning', 'safety', True,
     'SET NOT NULL on a table with rows, without a validated CHECK (col IS NOT NULL) to use '
     '(PostgreSQL 12+): scans under ACCESS EXCLUSIVE'),
    ('drop-not-null', 'warning', 'safety', True,
     'DROP NOT NULL on an existing table: code reading the column may not expect NULL'),
    ('alter-column-type', 'warning', 'safety', True,
     'ALTER COLUMN ... TYPE on a table with rows: usually rewrites it and its indexes (not when '
     'only widening varchar or going to text)'),
    ('rename-column', 'warning', 'safety', True,
     'RENAME COLUMN on an existing table: running code still uses the old name'),
    ('rename-table', 'warning', 'safety', True,
     'RENAME of an existing table: running code still uses the old name'),
    ('drop-column', 'warning', 'safety', True, 'DROP COLUMN: destroys its data, breaks code reading it'),
    ('drop-table', 'warning', 'safety', True, 'DROP TABLE: destroys its data'),
    ('drop-database', 'warning', 'safety', True, 'DROP DATABASE: destroys a whole database'),
    ('truncate-cascade', 'warning', 'safety', True,
     'TRUNCATE ... CASCADE: also empties every table that references it, recursively'),
    ('create-domain-with-constraint', 'warning', 'safety', True,
     'CREATE DOMAIN with a CHECK: changing it later scans every column of the domain under lock'),
    ('alter-domain-add-constraint', 'warning', 'safety', True,
     'ALTER DOMAIN ... ADD CONSTRAINT on an existing domain: scans every column using it, '
     'blocking writes'),
    ('enum-value-in-transaction', 'error', 'safety', True,
     'ALTER TYPE ... ADD VALUE inside a transaction: refused before PostgreSQL 12; on 12+ the new '
     'value cannot be used until the transaction commits'),
    ('transaction-nesting', 'warning', 'safety', True,
     'BEGIN inside an open transaction, or COMMIT/ROLLBACK with none, in a transaction=off file'),
    ('uncommitted-transaction', 'error', 'safety', True,
     'a transaction=off file that ends inside BEGIN ... with no COMMIT'),
    ('non-transactional-lock-timeout', 'warning', 'safety', True,
     'a transaction=off file with no lock_timeout (neither the option nor SET lock_timeout)'),
    ('require-lock-timeout', 'warning', 'safety', True,
     'a transactional file that changes schema with no lock_timeout (neither the option nor SET '
     'lock_timeout)'),
    ('vacuum-full-or-cluster', 'warning', 'safety', True,
     'VACUUM FULL or CLUSTER on a table with rows: rewrites it under ACCESS EXCLUSIVE'),
    ('duplicate-column', 'error', 'safety', True,
     'a column named twice in CREATE TABLE or assigned twice in UPDATE: PostgreSQL refuses it'),
    ('parse-error', 'error', 'safety', True, "a statement PostgreSQL's parser (pglast) rejects"),
    # opt-in: habits rather than dangers
    ('prefer-robust-stmts', 'warning', 'style', False,
     'in a transaction=off file, CREATE/ADD/DROP without IF [NOT] EXISTS: a rerun after a partial '
     'failure fails on what already ran'),
    ('require-statement-timeout', 'warning', 'style', False,
     'a file with no SET statement_timeout (the statement_timeout option also covers it)'),
    ('prefer-text-field', 'warning', 'style', False,
     'varchar(n): changing n later takes ACCESS EXCLUSIVE; text with a CHECK does not'),
    ('ban-char-field', 'warning', 'style', False, 'char(n): pads with spaces; use text'),
    ('prefer-bigint', 'warning', 'style', False,
     'int, smallint, serial or smallserial columns: running out later needs a rewrite'),
    ('prefer-timestamptz', 'warning', 'style', False, 'timestamp without time zone columns'),
    ('prefer-identity', 'warning', 'style', False, 'serial types instead of identity columns'),
    ('enum-value-ordering', 'warning', 'style', False,
     'ALTER TYPE ... ADD VALUE without BEFORE/AFTER: appended last, which changes < and > results'),
    ('require-table-schema', 'warning', 'style', False,
     'a table named without its schema: which table depends on search_path'),
    ('identifier-too-long', 'warning', 'style', False,
     'an identifier longer than 63 bytes: PostgreSQL silently truncates it'),
)

RULES = collections.OrderedDict((r[0], Rule(*r)) for r in _RULE_TABLE)
CATEGORIES = ('safety', 'style')


def _apply(enabled, mapping, where):
    if not mapping:
        return
    if not isinstance(mapping, dict):
        raise LintConfigError('%s: lint rules must be a mapping of rule id (or %s) to true/false, not %r'
                              % (where, '/'.join(CATEGORIES), mapping), where=where)
    unknown = sorted(k for k in mapping if k not in RULES and k not in CATEGORIES and k != 'all')
    if unknown:
        raise LintConfigError('%s: unknown lint rule %s; known rules: %s (categories: %s)'
                              % (where, ', '.join(unknown), ', '.join(RULES), ', '.join(CATEGORIES)),
                              where=where, unknown=unknown)
    # categories first, so {"style": true, "prefer-bigint": false} means what it says
    for key in sorted(mapping, key=lambda k: k in RULES):
        value = _truth(mapping[key], where, key)
        for rule in RULES.values():
            if key in ('all', rule.id, rule.category):
                enabled[rule.id] = value


def _truth(value, where, key):
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ('true', 'yes', 'on', '1'):
        return True
    if text in ('false', 'no', 'off', '0'):
        return False
    raise LintConfigError('%s: lint rule %s must be true or false, not %r' % (where, key, value), where=where)


def read_project_file(folder):
    """The ``rules`` mapping of ``dbdevops-lint.json`` in ``folder`` ({} when there is none)."""
    path = os.path.join(folder, PROJECT_FILE)
    if not os.path.isfile(path):
        return {}
    try:
        with open(path, 'r') as handle:
            data = json.load(handle)
    except (IOError, OSError, ValueError) as exc:
        raise LintConfigError('%s: cannot read the lint settings: %s; it must be JSON like '
                              '{"rules": {"drop-column": false}}' % (path, exc), path=path)
    if not isinstance(data, dict) or set(data) - {'rules'}:
        raise LintConfigError('%s: expected one key "rules", like {"rules": {"drop-column": false}}'
                              % path, path=path)
    return data.get('rules') or {}


def enabled_rules(rules=None, folder=None):
    """{rule id: on/off} from the defaults, the project file of ``folder`` and ``rules``."""
    enabled = dict((r.id, r.default) for r in RULES.values())
    if folder:
        _apply(enabled, read_project_file(folder), os.path.join(folder, PROJECT_FILE))
    _apply(enabled, rules, 'lint_rules')
    return enabled


class Finding(object):
    def __init__(self, rule, script, line, message, statement):
        self.rule = rule
        self.script = script
        self.line = line
        self.message = message
        self.statement = statement

    @property
    def severity(self):
        return RULES[self.rule].severity if self.rule in RULES else 'warning'

    def text(self):
        return '%s line %d: %s [%s]' % (self.script, self.line, self.message, self.rule)

    def to_dict(self):
        return dict(rule=self.rule, severity=self.severity, script=self.script, line=self.line,
                    message=self.message, statement=self.statement)


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

    Every rule is about a statement node, and those only occur at the top
    level or as elements of ``CREATE SCHEMA ... CREATE TABLE ...``.
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


def _const_strings(node):
    """Every string constant in a tree (pglast 5 and later spell A_Const differently)."""
    for name, fields in walk(node):
        if name == 'A_Const':
            sval = fields.get('sval')
            if isinstance(sval, dict):
                yield sval.get('sval')
        elif name == 'String' and 'str' in fields:
            yield fields['str']


def _rel(rangevar):
    """(schema or None, name) of a RangeVar."""
    if not rangevar:
        return None
    return (rangevar.get('schemaname') or None, rangevar.get('relname'))


def _qi(name):
    return '"%s"' % name.replace('"', '""')


def _regtext(rel):
    schema, name = rel
    return ('%s.%s' % (_qi(schema), _qi(name))) if schema else _qi(name)


def _shown(rel):
    return '%s.%s' % (rel[0] or 'public', rel[1])


def _type_name(type_node):
    names = [n.lower() for n in _strings((type_node or {}).get('names'))]
    return names[-1] if names else ''


def _size(nbytes):
    for unit in ('bytes', 'kB', 'MB', 'GB', 'TB'):
        if nbytes < 1024 or unit == 'TB':
            return ('%d %s' % (nbytes, unit)) if unit == 'bytes' else ('%.1f %s' % (nbytes, unit))
        nbytes /= 1024.0


# Without a connection (or for a function the catalog does not have): the volatile built-ins
VOLATILE_FUNCTIONS = frozenset((
    'random', 'gen_random_uuid', 'uuid_generate_v1', 'uuid_generate_v1mc', 'uuid_generate_v4',
    'clock_timestamp', 'timeofday', 'nextval', 'txid_current', 'setseed', 'random_normal',
    'gen_random_bytes', 'uuidv4', 'uuidv7'))

_TABLE_SQL = """
SELECT n.nspname, c.relname, c.relkind,
       CASE WHEN c.relkind = 'p' THEN (SELECT coalesce(sum(pg_catalog.pg_total_relation_size(t.relid)), 0)
                                         FROM pg_catalog.pg_partition_tree(c.oid) t)
            ELSE pg_catalog.pg_total_relation_size(c.oid) END,
       CASE WHEN c.relkind = 'p' THEN (SELECT coalesce(sum(greatest(pc.reltuples, 0)), 0)
                                         FROM pg_catalog.pg_partition_tree(c.oid) t
                                         JOIN pg_catalog.pg_class pc ON pc.oid = t.relid WHERE t.isleaf)
            ELSE greatest(c.reltuples, 0) END::bigint,
       CASE WHEN c.relkind = 'p' THEN (SELECT coalesce(sum(pg_catalog.pg_relation_size(t.relid)), 0)
                                         FROM pg_catalog.pg_partition_tree(c.oid) t WHERE t.isleaf)
            ELSE pg_catalog.pg_relation_size(c.oid) END
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE c.oid = pg_catalog.to_regclass(%s) AND c.relkind IN ('r', 'p', 'm')
"""

# before PostgreSQL 12 (no pg_partition_tree): sizes unknown, never empty
_TABLE_SQL_OLD = """
SELECT n.nspname, c.relname, c.relkind, pg_catalog.pg_total_relation_size(c.oid),
       greatest(c.reltuples, 0)::bigint, 1
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE c.oid = pg_catalog.to_regclass(%s) AND c.relkind IN ('r', 'p', 'm')
"""

_INDEX_TABLE_SQL = """
SELECT tn.nspname, t.relname FROM pg_catalog.pg_index i
  JOIN pg_catalog.pg_class t ON t.oid = i.indrelid JOIN pg_catalog.pg_namespace tn ON tn.oid = t.relnamespace
 WHERE i.indexrelid = pg_catalog.to_regclass(%s)
"""

_NOT_NULL_CHECKS_SQL = """
SELECT pg_catalog.pg_get_constraintdef(oid) FROM pg_catalog.pg_constraint
 WHERE conrelid = pg_catalog.to_regclass(%s) AND contype = 'c' AND convalidated
"""

_COLUMN_TYPE_SQL = """
SELECT pg_catalog.format_type(atttypid, atttypmod) FROM pg_catalog.pg_attribute
 WHERE attrelid = pg_catalog.to_regclass(%s) AND attname = %s AND NOT attisdropped
"""

_VOLATILITY_SQL = """
SELECT p.provolatile FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
 WHERE p.proname = %s AND (%s::text IS NULL OR n.nspname = %s)
"""


class Table(object):
    """What the catalog says about one table."""

    def __init__(self, name, kind, size, rows, data_bytes):
        self.name = name
        self.kind = kind
        self.size = size
        self.rows = rows
        self.empty = not data_bytes

    def describe(self):
        return 'existing table %s (%s, ~%d rows)' % (self.name, _size(self.size), self.rows)


class Catalog(object):
    """What the live database says (tables, their size, functions' volatility); ``conn=None``: nothing
    is known, every existing-looking table counts as having rows."""

    def __init__(self, conn=None, server_version=None):
        self.conn = conn
        self.server_version = server_version or (getattr(conn, 'server_version', None) if conn else None)
        self._cache = {}

    def _rows(self, sql, args):
        if self.conn is None:
            return None
        key = (sql, tuple(args))
        if key not in self._cache:
            try:
                with self.conn.cursor() as cur:
                    cur.execute(sql, args)
                    self._cache[key] = cur.fetchall()
            except Exception:  # noqa: BLE001 - a catalog the lint cannot read: unknown, flagged as such
                if not getattr(self.conn, 'autocommit', True):
                    self.conn.rollback()
                self._cache[key] = None
        return self._cache[key]

    def setting(self, name):
        """The session's value of a setting (the engine's own timeouts are set on it), None if unknown."""
        rows = self._rows('SELECT pg_catalog.current_setting(%s)', (name,))
        return rows[0][0] if rows else None

    def at_least(self, version):
        """Whether the server is at least ``version`` (e.g. 120000); unknown counts as yes."""
        return self.server_version is None or self.server_version >= version

    def table(self, rel):
        """A :class:`Table`, False when the catalog has no such table, None when unknown."""
        if self.conn is None:
            return None
        rows = self._rows(_TABLE_SQL if self.at_least(120000) else _TABLE_SQL_OLD, (_regtext(rel),))
        if rows is None:
            return None
        if not rows:
            return False
        schema, name, kind, size, count, data = rows[0]
        return Table('%s.%s' % (schema, name), kind, int(size), int(count), int(data))

    def table_of_index(self, rel):
        """(schema, table) of an index, None when unknown or missing."""
        rows = self._rows(_INDEX_TABLE_SQL, (_regtext(rel),))
        return tuple(rows[0]) if rows else None

    def not_null_checks(self, rel):
        """Columns with a validated ``CHECK (col IS NOT NULL)``."""
        cols = set()
        for (definition,) in self._rows(_NOT_NULL_CHECKS_SQL, (_regtext(rel),)) or []:
            match = re.match(r'^CHECK \(\((.+) IS NOT NULL\)\)$', definition)
            if match:
                col = match.group(1)
                cols.add(col[1:-1].replace('""', '"') if col.startswith('"') else col)
        return cols

    def column_type(self, rel, column):
        rows = self._rows(_COLUMN_TYPE_SQL, (_regtext(rel), column))
        return rows[0][0] if rows else None

    def volatile(self, funcname):
        """True/False from ``pg_proc.provolatile`` (any overload volatile counts), None when unknown."""
        schema, name = (funcname[-2] if len(funcname) > 1 else None), funcname[-1]
        rows = self._rows(_VOLATILITY_SQL, (name, schema, schema))
        if not rows:
            return None
        return any(r[0] == 'v' for r in rows)


def lint_steps(steps, catalog=None, lock_timeout=None, rules=None, statement_timeout=None):
    """Findings for a list of plan steps (objects with .file, .kind); order kept.

    ``rules``: the ``lint_rules`` mapping (rule id or category -> bool) over the defaults and
    the project file.  None without pglast.
    """
    if not HAS_PGLAST:
        return None
    files = [s.file for s in steps if getattr(s, 'file', None) is not None]
    folder = os.path.dirname(files[0].path) if files and getattr(files[0], 'path', None) else None
    enabled = enabled_rules(rules, folder)
    catalog = catalog or Catalog()
    if statement_timeout is None and enabled.get('require-statement-timeout'):
        # the planner's session carries the statement_timeout option
        statement_timeout = catalog.setting('statement_timeout')
        statement_timeout = None if statement_timeout in (None, '0') else statement_timeout
    linter = _Linter(catalog, lock_timeout=lock_timeout, statement_timeout=statement_timeout)
    findings = []
    for mfile in files:
        ignore = set(getattr(mfile, 'lint_ignore', ()) or ())
        findings.extend(f for f in linter.lint_file(mfile)
                        if f.rule == 'parse-error' or (enabled.get(f.rule, True) and f.rule not in ignore))
    return findings


_SERIAL = frozenset(('serial', 'serial4', 'bigserial', 'serial8', 'smallserial', 'serial2'))
_INT_NAMES = {'int4': 'integer', 'int': 'integer', 'int2': 'smallint', 'serial4': 'serial',
              'serial2': 'smallserial'}
_SMALL_INTS = frozenset(('int4', 'int2', 'int', 'integer', 'smallint', 'serial', 'serial4',
                         'smallserial', 'serial2'))
# statements that take locks on what already exists (the lock_timeout rules look for them)
_LOCKING = frozenset(('AlterTableStmt', 'IndexStmt', 'DropStmt', 'RenameStmt', 'TruncateStmt',
                      'AlterDomainStmt', 'AlterEnumStmt', 'ReindexStmt', 'ClusterStmt', 'VacuumStmt',
                      'CreateTrigStmt', 'CreateStmt', 'AlterObjectSchemaStmt', 'LockStmt'))
_DDL_PREFIXES = ('Create', 'Alter', 'Drop', 'Rename', 'Index', 'Truncate', 'Reindex', 'Comment', 'Grant')


class _Linter(object):
    """Reads the files of one plan in order; remembers what the plan creates and validates."""

    def __init__(self, catalog, lock_timeout=None, statement_timeout=None):
        self.catalog = catalog
        self.lock_timeout = lock_timeout
        self.statement_timeout = statement_timeout
        self.created = set()             # (schema or None, name) of tables made by the plan
        self.created_indexes = set()
        self.created_types = set()       # domains and enums
        self.functions = {}              # name -> volatile? for CREATE FUNCTION in the plan
        self.nn_checks = collections.defaultdict(set)     # table -> columns with a validated CHECK IS NOT NULL
        self.not_valid_nn = {}           # (table, constraint) -> column, added NOT VALID
        # the file being read (reset by lint_file)
        self.file = None
        self.line = 0
        self.in_block = None              # line of an explicit BEGIN in a transaction=off file
        self.tx_not_valid = set()         # (table, constraint) added NOT VALID in this transaction
        self.tx_enum_values = {}          # enum values added in this transaction -> type
        self.sets_lock_timeout = self.sets_statement_timeout = self.lock_finding = False

    # --- names -------------------------------------------------------------------------------
    @staticmethod
    def _match(rel, names):
        schema, name = rel
        return any(n == name and (s == schema or s is None or schema is None) for s, n in names)

    def is_new(self, rel):
        return self._match(rel, self.created)

    def where(self, rel):
        """Text like 'existing table public.t (12.0 MB, ~1000 rows)' when ``rel`` has rows (or the
        catalog is unknown); None for a table created in this plan, missing or empty."""
        if rel is None or self.is_new(rel):
            return None
        info = self.catalog.table(rel)
        if info is None:
            return 'table %s' % _shown(rel)
        if info is False or info.empty:
            return None
        return info.describe()

    def exists(self, rel):
        """Text naming an existing table (rows or not) not created in this plan, else None."""
        if rel is None or self.is_new(rel):
            return None
        info = self.catalog.table(rel)
        if info is None:
            return 'table %s' % _shown(rel)
        return ('table %s' % info.name) if info else None

    # --- files -------------------------------------------------------------------------------
    def lint_file(self, mfile):
        self.file = mfile
        self.in_block = None
        self.tx_not_valid = set()
        self.tx_enum_values = {}
        self.sets_lock_timeout = bool(self.lock_timeout)
        self.sets_statement_timeout = bool(self.statement_timeout)
        self.lock_finding = False
        self.line = 0
        out = []
        any_ddl = False
        sets_lock_anywhere = False
        for stmt in mfile.statements:
            try:
                tree = json.loads(_pglast_parser.parse_sql_json(stmt.text))
            except Exception as exc:  # noqa: BLE001 - pglast raises its own ParseError types
                out.append(Finding('parse-error', mfile.script, stmt.line, 'cannot parse: %s' % exc,
                                   stmt.short()))
                continue
            self.line = stmt.line
            for rule, message in _too_long(stmt.text):
                out.append(Finding(rule, mfile.script, stmt.line, message, stmt.short()))
            for name, node in statement_nodes(tree):
                if name == 'VariableSetStmt' and node.get('name') == 'lock_timeout' and _sets_nonzero(node):
                    sets_lock_anywhere = True
                if name.startswith(_DDL_PREFIXES) or name in _LOCKING:
                    any_ddl = True
                for rule, message in self.check(name, node):
                    out.append(Finding(rule, mfile.script, stmt.line, message, stmt.short()))
        if not mfile.transactional and not sets_lock_anywhere and not self.lock_timeout:
            out.append(Finding(
                'non-transactional-lock-timeout', mfile.script, 1,
                'runs outside a transaction with no lock_timeout: a statement waiting for a lock '
                'queues every query behind it; SET lock_timeout in the file or keep the '
                'lock_timeout option', ''))
        if self.in_block is not None:
            out.append(Finding('uncommitted-transaction', mfile.script, self.in_block,
                               'BEGIN at line %d has no COMMIT before the end of the file: the engine '
                               'does not commit it for you; end the transaction in the file'
                               % self.in_block, ''))
        if any_ddl and not self.sets_statement_timeout:
            out.append(Finding('require-statement-timeout', mfile.script, 1,
                               'changes schema with no statement_timeout: SET statement_timeout at the '
                               'top of the file or set the statement_timeout option', ''))
        return sorted(out, key=lambda f: f.line)

    @property
    def in_transaction(self):
        return self.file.transactional or self.in_block is not None

    def _end_transaction(self):
        self.in_block = None
        self.tx_not_valid = set()
        self.tx_enum_values = {}

    # --- statements --------------------------------------------------------------------------
    def check(self, name, node):
        if name in _LOCKING and self.file.transactional and not self.sets_lock_timeout \
                and not self.lock_finding and name != 'CreateStmt':
            self.lock_finding = True
            yield ('require-lock-timeout',
                   'changes schema with no lock_timeout: waiting for a lock queues every query behind '
                   'it; SET lock_timeout at the top of the file or keep the lock_timeout option')
        if self.tx_enum_values and name != 'AlterEnumStmt':
            used = sorted(set(_const_strings(node)) & set(self.tx_enum_values))
            if used:
                yield ('enum-value-in-transaction',
                       "uses enum value '%s' that ALTER TYPE %s ADD VALUE added in the same transaction: "
                       'PostgreSQL refuses it until that transaction commits; add the value in an '
                       'earlier migration' % (used[0], self.tx_enum_values[used[0]]))
        method = getattr(self, '_' + name, None)
        if method is not None:
            yield from method(node) or ()

    def _VariableSetStmt(self, node):
        if node.get('name') == 'lock_timeout' and _sets_nonzero(node):
            self.sets_lock_timeout = True
        elif node.get('name') == 'statement_timeout' and _sets_nonzero(node):
            self.sets_statement_timeout = True

    def _TransactionStmt(self, node):
        kind = node.get('kind')
        if kind in ('TRANS_STMT_BEGIN', 'TRANS_STMT_START'):
            if self.in_block is not None:
                yield ('transaction-nesting',
                       'BEGIN while the transaction started at line %d is open: PostgreSQL only warns '
                       'and keeps one transaction; COMMIT the first one before' % self.in_block)
            else:
                self.in_block = self.line
        elif kind in ('TRANS_STMT_COMMIT', 'TRANS_STMT_ROLLBACK', 'TRANS_STMT_PREPARE'):
            if self.in_block is None:
                yield ('transaction-nesting',
                       '%s with no open transaction: each statement of a transaction=off file '
                       'commits on its own; remove it or add the BEGIN it ends'
                       % ('COMMIT' if kind == 'TRANS_STMT_COMMIT' else 'ROLLBACK'))
            elif not node.get('chain'):
                self._end_transaction()

    def _concurrently_in_tx(self, what):
        return ('concurrently-in-transaction',
                '%s CONCURRENTLY cannot run inside a transaction: PostgreSQL refuses it; put it in a '
                'file with "-- dbdevops:transaction=off"%s'
                % (what, ' and outside BEGIN ... COMMIT' if not self.file.transactional else ''))

    def _robust(self, node, what):
        if not self.file.transactional and self.in_block is None and not node.get('if_not_exists') \
                and not node.get('missing_ok'):
            yield ('prefer-robust-stmts',
                   '%s without %s in a transaction=off file: if a later statement fails, the rerun '
                   'fails here on what already ran' % (what, 'IF EXISTS' if what.startswith('DROP')
                                                       else 'IF NOT EXISTS'))

    def _IndexStmt(self, node):
        rel = _rel(node.get('relation'))
        if node.get('idxname'):
            self.created_indexes.add((rel[0], node['idxname']))
        if node.get('concurrent') and self.in_transaction:
            yield self._concurrently_in_tx('CREATE INDEX')
        elif not node.get('concurrent'):
            where = self.where(rel)
            if where:
                yield ('create-index-not-concurrently',
                       'CREATE INDEX without CONCURRENTLY on %s blocks writes while it builds; use '
                       'CREATE INDEX CONCURRENTLY in a file with "-- dbdevops:transaction=off"' % where)
        yield from self._robust(node, 'CREATE INDEX')
        yield from _schema_rule(rel)

    def _CreateStmt(self, node):
        rel = _rel(node.get('relation'))
        self.created.add(rel)
        yield from _schema_rule(rel)
        seen = set()
        for elt in node.get('tableElts') or []:
            col = elt.get('ColumnDef') if isinstance(elt, dict) else None
            if not col:
                continue
            cname = col.get('colname')
            if cname in seen:
                yield ('duplicate-column', 'column %s is declared twice in CREATE TABLE %s: PostgreSQL '
                       'refuses it' % (cname, _shown(rel)))
            seen.add(cname)
            yield from _column_style(col)
        yield from self._robust(node, 'CREATE TABLE')

    def _CreateTableAsStmt(self, node):
        rel = _rel((node.get('into') or {}).get('rel'))
        if rel:
            self.created.add(rel)

    def _CreateFunctionStmt(self, node):
        volatility = 'volatile'
        for opt in node.get('options') or []:
            de = opt.get('DefElem') or {}
            if de.get('defname') == 'volatility':
                volatility = (_strings([de.get('arg')]) or ['volatile'])[0]
        self.functions[(_strings(node.get('funcname')) or [''])[-1]] = volatility == 'volatile'

    def _volatile_calls(self, expr):
        found = []
        for name, fc in walk(expr or {}):
            if name != 'FuncCall':
                continue
            funcname = [n.lower() for n in _strings(fc.get('funcname'))]
            if not funcname:
                continue
            volatile = self.functions.get(funcname[-1])
            if volatile is None:
                volatile = self.catalog.volatile(funcname)
            if volatile is None:
                volatile = funcname[-1] in VOLATILE_FUNCTIONS
            if volatile:
                found.append(funcname[-1])
        return sorted(found)

    def _AlterTableStmt(self, node):
        if node.get('objtype') not in (None, 'OBJECT_TABLE'):
            return
        rel = _rel(node.get('relation'))
        yield from _schema_rule(rel)
        for cmd in node.get('cmds') or []:
            cmd = cmd.get('AlterTableCmd', {})
            method = getattr(self, '_cmd_' + str(cmd.get('subtype')), None)
            if method is not None:
                yield from method(rel, cmd, cmd.get('def') or {}) or ()

    def _cmd_AT_AddColumn(self, rel, cmd, definition):
        col = definition.get('ColumnDef') or {}
        cname = col.get('colname')
        yield from _column_style(col)
        yield from self._robust(cmd, 'ADD COLUMN')
        cons = [c.get('Constraint') or {} for c in col.get('constraints') or [] if isinstance(c, dict)]
        kinds = set(c.get('contype') for c in cons)
        where = self.where(rel)
        if not where:
            return
        serial = _type_name(col.get('typeName')) in _SERIAL
        if serial or 'CONSTR_IDENTITY' in kinds:
            yield ('add-column-identity',
                   'ADD COLUMN %s as %s numbers every row of %s, rewriting it under an ACCESS EXCLUSIVE '
                   'lock; add a plain bigint column, fill it in batches from a sequence, then make it '
                   'the identity or default' % (cname, 'serial' if serial else 'identity', where))
        if any(c.get('contype') == 'CONSTR_GENERATED' and c.get('generated_kind', 's') == 's' for c in cons):
            yield ('add-column-generated-stored',
                   'ADD COLUMN %s GENERATED ... STORED computes every row of %s, rewriting it under an '
                   'ACCESS EXCLUSIVE lock; add a plain column filled by a trigger and backfill in '
                   'batches' % (cname, where))
        default = [c for c in cons if c.get('contype') == 'CONSTR_DEFAULT']
        if default:
            volatile = self._volatile_calls(default[0].get('raw_expr'))
            if volatile:
                yield ('volatile-default',
                       'ADD COLUMN with volatile default %s() rewrites %s under an ACCESS EXCLUSIVE lock; '
                       'add the column without a default, backfill in batches, then SET DEFAULT'
                       % (volatile[0], where))
            elif not self.catalog.at_least(110000):
                yield ('add-column-default-pre11',
                       'ADD COLUMN %s with a DEFAULT rewrites %s under an ACCESS EXCLUSIVE lock on '
                       'PostgreSQL %d (only 11 and later keep a constant default without a rewrite); '
                       'add the column, SET DEFAULT, then backfill in batches'
                       % (cname, where, self.catalog.server_version // 10000))
        elif kinds & {'CONSTR_NOTNULL'} and not serial and not kinds & {'CONSTR_IDENTITY', 'CONSTR_GENERATED'}:
            yield ('add-column-required',
                   'ADD COLUMN %s NOT NULL without a DEFAULT fails on %s (its rows have no value) and '
                   'breaks code that inserts without it; add it with a constant DEFAULT, or nullable '
                   'and SET NOT NULL after a backfill' % (cname, where))
        for con in cons:
            yield from self._constraint_on_column(rel, cname, con, where)

    def _constraint_on_column(self, rel, cname, con, where):
        kind = con.get('contype')
        if kind == 'CONSTR_FOREIGN':
            yield ('add-column-references',
                   'ADD COLUMN %s REFERENCES %s locks both tables and scans %s to validate; add the '
                   'column, then ADD CONSTRAINT ... FOREIGN KEY ... NOT VALID, then VALIDATE CONSTRAINT '
                   'in a later migration' % (cname, _shown(_rel(con.get('pktable'))), where))
        elif kind == 'CONSTR_UNIQUE':
            yield ('add-unique-constraint',
                   'ADD COLUMN %s UNIQUE builds a unique index on %s under an ACCESS EXCLUSIVE lock; '
                   'add the column, CREATE UNIQUE INDEX CONCURRENTLY, then ADD CONSTRAINT ... UNIQUE '
                   'USING INDEX' % (cname, where))
        elif kind == 'CONSTR_PRIMARY':
            yield ('add-primary-key',
                   'ADD COLUMN %s PRIMARY KEY builds the key index on %s under an ACCESS EXCLUSIVE lock; '
                   'add the column, CREATE UNIQUE INDEX CONCURRENTLY, then ADD CONSTRAINT ... PRIMARY '
                   'KEY USING INDEX' % (cname, where))
        elif kind == 'CONSTR_CHECK' and not con.get('skip_validation'):
            yield ('constraint-not-valid',
                   'ADD COLUMN %s with a CHECK validates every row of %s under an ACCESS EXCLUSIVE lock; '
                   'add the column, then the CHECK NOT VALID, then VALIDATE CONSTRAINT' % (cname, where))

    def _cmd_AT_AddConstraint(self, rel, cmd, definition):
        con = definition.get('Constraint', {})
        kind, conname = con.get('contype'), con.get('conname') or ''
        nn_column = _not_null_check_column(con)
        if kind in ('CONSTR_CHECK', 'CONSTR_FOREIGN') and con.get('skip_validation'):
            if self.in_transaction:
                self.tx_not_valid.add((rel[1], conname))
            if nn_column:
                self.not_valid_nn[(rel[1], conname)] = nn_column
            return
        if nn_column:
            self.nn_checks[rel[1]].add(nn_column)
        if kind in ('CONSTR_CHECK', 'CONSTR_FOREIGN'):
            where = self.where(rel)
            if where:
                other = (' and locks %s' % _shown(_rel(con.get('pktable')))) if kind == 'CONSTR_FOREIGN' else ''
                yield ('constraint-not-valid',
                       'ADD CONSTRAINT %s without NOT VALID validates every row of %s under a lock%s; add '
                       'it NOT VALID, then VALIDATE CONSTRAINT in a later step' % (conname, where, other))
        elif kind in ('CONSTR_UNIQUE', 'CONSTR_EXCLUSION', 'CONSTR_PRIMARY') and not con.get('indexname'):
            where = self.where(rel)
            if where and kind == 'CONSTR_PRIMARY':
                yield ('add-primary-key',
                       'ADD PRIMARY KEY builds its index on %s under an ACCESS EXCLUSIVE lock; CREATE '
                       'UNIQUE INDEX CONCURRENTLY first, then ADD CONSTRAINT ... PRIMARY KEY USING INDEX'
                       % where)
            elif where:
                what = 'UNIQUE' if kind == 'CONSTR_UNIQUE' else 'EXCLUDE'
                yield ('add-unique-constraint',
                       'ADD CONSTRAINT %s %s builds its index on %s under an ACCESS EXCLUSIVE lock; %s'
                       % (conname, what, where,
                          'CREATE UNIQUE INDEX CONCURRENTLY first, then ADD CONSTRAINT ... UNIQUE USING '
                          'INDEX' if what == 'UNIQUE' else 'build it where the table is new or empty'))

    def _cmd_AT_ValidateConstraint(self, rel, cmd, definition):
        name = cmd.get('name')
        if (rel[1], name) in self.not_valid_nn:
            self.nn_checks[rel[1]].add(self.not_valid_nn[(rel[1], name)])
        if (rel[1], name) in self.tx_not_valid:
            yield ('validate-in-same-transaction',
                   'VALIDATE CONSTRAINT %s runs in the transaction that added it NOT VALID, so its scan '
                   'holds the ACCESS EXCLUSIVE lock of the ADD; validate in a later migration (or after a '
                   'COMMIT in a transaction=off file)' % name)

    def _cmd_AT_SetNotNull(self, rel, cmd, definition):
        column = cmd.get('name')
        where = self.where(rel)
        if not where:
            return
        if self.catalog.at_least(120000) and (column in self.nn_checks[rel[1]]
                                              or column in self.catalog.not_null_checks(rel)):
            return
        yield ('set-not-null',
               'SET NOT NULL on column {column} scans {where} under an ACCESS EXCLUSIVE lock; add '
               'CHECK ({column} IS NOT NULL) NOT VALID, VALIDATE CONSTRAINT, then SET NOT NULL'
               .format(column=column, where=where))

    def _cmd_AT_DropNotNull(self, rel, cmd, definition):
        where = self.exists(rel)
        if where:
            yield ('drop-not-null',
                   'DROP NOT NULL on column %s of %s: code and functions reading it may not expect NULL'
                   % (cmd.get('name'), where))

    def _cmd_AT_AlterColumnType(self, rel, cmd, definition):
        where = self.where(rel)
        col = definition.get('ColumnDef') or {}
        if where and not self._binary_widening(rel, cmd.get('name'), col):
            yield ('alter-column-type',
                   'ALTER COLUMN %s TYPE usually rewrites %s under an ACCESS EXCLUSIVE '
                   'lock; add a new column, backfill, and switch over instead' % (cmd.get('name'), where))

    def _binary_widening(self, rel, column, col):
        """varchar(n) to varchar(m >= n), varchar or text: no rewrite, no index rebuild."""
        if col.get('raw_default'):          # USING expression
            return False
        current = self.catalog.column_type(rel, column) or ''
        new = _type_name(col.get('typeName'))
        mods = [v for _n, a in walk({'x': col.get('typeName', {}).get('typmods')}) if _n == 'A_Const'
                for v in [(a.get('ival') or {}).get('ival')] if v is not None]
        match = re.match(r'^character varying(?:\((\d+)\))?$', current)
        if not match and current != 'text':
            return False
        if new == 'text':
            return True
        if new == 'varchar':
            if not mods:
                return True
            return bool(match and match.group(1) and mods[0] >= int(match.group(1)))
        return False

    def _cmd_AT_DropColumn(self, rel, cmd, definition):
        yield from self._robust(cmd, 'DROP COLUMN')
        yield ('drop-column',
               'DROP COLUMN %s on %s destroys its data; deploy code that no longer reads '
               'it first' % (cmd.get('name'), _shown(rel)))

    def _cmd_AT_DetachPartition(self, rel, cmd, definition):
        part = definition.get('PartitionCmd') or {}
        if part.get('concurrent'):
            if self.in_transaction:
                yield self._concurrently_in_tx('DETACH PARTITION')
        elif self.catalog.at_least(140000):
            where = self.where(rel)
            if where:
                yield ('detach-partition-not-concurrently',
                       'DETACH PARTITION %s takes an ACCESS EXCLUSIVE lock on %s, blocking reads and '
                       'writes; use DETACH PARTITION ... CONCURRENTLY in a file with '
                       '"-- dbdevops:transaction=off"' % (_shown(_rel(part.get('name'))), where))

    def _DropStmt(self, node):
        kind = node.get('removeType')
        objects = [_strings((o.get('List') or {}).get('items')) if isinstance(o, dict) else []
                   for o in node.get('objects') or []]
        if kind == 'OBJECT_TABLE':
            yield from self._robust(node, 'DROP TABLE')
            for parts in objects:
                yield ('drop-table', 'DROP TABLE %s destroys its data' % '.'.join(p for p in parts if p))
        elif kind == 'OBJECT_INDEX':
            yield from self._robust(node, 'DROP INDEX')
            if node.get('concurrent'):
                if self.in_transaction:
                    yield self._concurrently_in_tx('DROP INDEX')
                return
            for parts in objects:
                idx = (parts[-2] if len(parts) > 1 else None, parts[-1])
                if self._match(idx, self.created_indexes):
                    continue
                table = self.catalog.table_of_index(idx) if self.catalog.conn is not None else idx
                where = self.where(table) if table else None
                if where:
                    yield ('drop-index-not-concurrently',
                           'DROP INDEX %s without CONCURRENTLY waits for and takes an ACCESS EXCLUSIVE lock '
                           'on %s, blocking reads and writes; use DROP INDEX CONCURRENTLY in a file with '
                           '"-- dbdevops:transaction=off"' % (_shown(idx), where if table != idx else
                                                              'its table'))
        elif kind in ('OBJECT_VIEW', 'OBJECT_MATVIEW', 'OBJECT_SEQUENCE', 'OBJECT_TYPE', 'OBJECT_DOMAIN',
                      'OBJECT_FUNCTION', 'OBJECT_SCHEMA'):
            yield from self._robust(node, 'DROP')

    def _DropdbStmt(self, node):
        yield ('drop-database', 'DROP DATABASE %s destroys the whole database' % node.get('dbname'))

    def _ReindexStmt(self, node):
        concurrent = any((p.get('DefElem') or {}).get('defname') == 'concurrently'
                         for p in node.get('params') or []) or node.get('concurrent')
        kind = (node.get('kind') or '').replace('REINDEX_OBJECT_', '')
        if concurrent:
            if self.in_transaction:
                yield self._concurrently_in_tx('REINDEX')
            return
        rel = _rel(node.get('relation'))
        if kind == 'INDEX':
            if self._match(rel, self.created_indexes):
                return
            table = self.catalog.table_of_index(rel) if self.catalog.conn is not None else rel
            where = self.where(table) if table else None
        elif kind == 'TABLE':
            where = self.where(rel)
        else:
            where = 'every table of %s %s' % (kind.lower(), node.get('name') or '')
        if where:
            yield ('reindex-not-concurrently',
                   'REINDEX %s without CONCURRENTLY blocks writes to %s (and reads that use the index) '
                   'while it rebuilds; use REINDEX ... CONCURRENTLY in a file with '
                   '"-- dbdevops:transaction=off"' % (kind, where.strip()))

    def _RenameStmt(self, node):
        rel = _rel(node.get('relation'))
        rtype = node.get('renameType')
        if rtype == 'OBJECT_TABLE' and rel:
            where = self.exists(rel)
            if self.is_new(rel):
                self.created.add((rel[0], node.get('newname')))
            if where:
                yield ('rename-table',
                       'RENAME of %s TO %s: code running now still uses the old name and fails until it is '
                       'deployed; add a view with the old name, or rename in two releases'
                       % (where, node.get('newname')))
        elif rtype == 'OBJECT_COLUMN' and node.get('relationType') == 'OBJECT_TABLE' and rel:
            where = self.exists(rel)
            if where:
                yield ('rename-column',
                       'RENAME COLUMN %s TO %s on %s: code running now still uses the old name; add the new '
                       'column, write both, backfill, then drop the old one'
                       % (node.get('subname'), node.get('newname'), where))

    def _CreateDomainStmt(self, node):
        self.created_types.add((_strings(node.get('domainname')) or [''])[-1])
        if any((c.get('Constraint') or {}).get('contype') == 'CONSTR_CHECK'
               for c in node.get('constraints') or [] if isinstance(c, dict)):
            yield ('create-domain-with-constraint',
                   'CREATE DOMAIN %s with a CHECK: changing that check later scans every column of the '
                   'domain under a lock that blocks writes; put the CHECK on the table columns instead'
                   % '.'.join(_strings(node.get('domainname'))))

    def _AlterDomainStmt(self, node):
        name = _strings(node.get('typeName'))
        if node.get('subtype') == 'C' and (name or [''])[-1] not in self.created_types:
            yield ('alter-domain-add-constraint',
                   'ALTER DOMAIN %s ADD CONSTRAINT checks every column of every table using the domain '
                   'under a lock that blocks writes; put the CHECK on the table columns instead'
                   % '.'.join(name))

    def _CreateEnumStmt(self, node):
        self.created_types.add((_strings(node.get('typeName')) or [''])[-1])

    def _AlterEnumStmt(self, node):
        if node.get('oldVal') or not node.get('newVal'):
            return
        typename = '.'.join(_strings(node.get('typeName')))
        if not node.get('newValNeighbor'):
            yield ('enum-value-ordering',
                   "ALTER TYPE %s ADD VALUE '%s' without BEFORE or AFTER puts it last, which changes what "
                   '< and > and ORDER BY give; say where it goes' % (typename, node['newVal']))
        if not self.in_transaction or _strings(node.get('typeName'))[-1] in self.created_types:
            return
        if not self.catalog.at_least(120000):
            yield ('enum-value-in-transaction',
                   'ALTER TYPE %s ADD VALUE cannot run inside a transaction before PostgreSQL 12: put it '
                   'in a file with "-- dbdevops:transaction=off"' % typename)
        else:
            self.tx_enum_values[node['newVal']] = typename

    def _TruncateStmt(self, node):
        if node.get('behavior') == 'DROP_CASCADE':
            names = ', '.join(_shown(_rel(r.get('RangeVar'))) for r in node.get('relations') or [])
            yield ('truncate-cascade',
                   'TRUNCATE %s CASCADE also empties every table with a foreign key to it, and theirs; '
                   'name each table to truncate instead' % names)

    def _VacuumStmt(self, node):
        full = any((o.get('DefElem') or {}).get('defname') == 'full' for o in node.get('options') or [])
        if not full or not node.get('is_vacuumcmd', True):
            return
        for vr in node.get('rels') or []:
            where = self.where(_rel((vr.get('VacuumRelation') or {}).get('relation')))
            if where:
                yield ('vacuum-full-or-cluster',
                       'VACUUM FULL rewrites %s under an ACCESS EXCLUSIVE lock, blocking reads and '
                       'writes; use pg_repack or plain VACUUM' % where)
        if not node.get('rels'):
            yield ('vacuum-full-or-cluster', 'VACUUM FULL rewrites every table of the database under '
                   'ACCESS EXCLUSIVE locks; use pg_repack or plain VACUUM')

    def _ClusterStmt(self, node):
        rel = _rel(node.get('relation'))
        where = self.where(rel) if rel else 'every clustered table of the database'
        if where:
            yield ('vacuum-full-or-cluster',
                   'CLUSTER rewrites %s under an ACCESS EXCLUSIVE lock, blocking reads and writes; use '
                   'pg_repack' % where)

    def _UpdateStmt(self, node):
        seen = set()
        for target in node.get('targetList') or []:
            name = (target.get('ResTarget') or {}).get('name')
            if name in seen:
                yield ('duplicate-column', 'UPDATE sets column %s twice: PostgreSQL refuses it' % name)
            seen.add(name)


def _sets_nonzero(node):
    """A SET that gives the setting a value other than 0 (SET x = 0 turns the timeout off)."""
    if node.get('kind') != 'VAR_SET_VALUE':
        return False
    values = list(_const_strings(node.get('args') or []))
    ints = [a for _n, a in walk(node.get('args') or []) if _n == 'A_Const' and 'ival' in a]
    if ints:
        return bool((ints[0].get('ival') or {}).get('ival'))
    return bool(values) and values[0].strip() not in ('0', '')


def _not_null_check_column(con):
    """The column of ``CHECK (col IS NOT NULL)``, else None."""
    if con.get('contype') != 'CONSTR_CHECK':
        return None
    test = (con.get('raw_expr') or {}).get('NullTest') or {}
    if test.get('nulltesttype') != 'IS_NOT_NULL':
        return None
    fields = _strings(((test.get('arg') or {}).get('ColumnRef') or {}).get('fields'))
    return fields[-1] if len(fields) == 1 else None


_QUOTED_TEXT = re.compile(r"(?:[EeBbXxUu]&?)?'(?:[^']|'')*'|\$([A-Za-z_]\w*)?\$.*?\$\1\$", re.S)
_IDENTIFIER = re.compile(r'"((?:[^"]|"")+)"|([A-Za-z_\x80-\uffff][A-Za-z0-9_$\x80-\uffff]*)')


def _too_long(text):
    """Identifiers of more than 63 bytes in a statement's text (the parser has already truncated
    them, so the tree cannot tell)."""
    for match in _IDENTIFIER.finditer(_QUOTED_TEXT.sub("''", text)):
        name = match.group(1).replace('""', '"') if match.group(1) else match.group(2)
        size = len(name.encode('utf-8'))
        if size > 63:
            yield ('identifier-too-long',
                   'identifier %s is %d bytes: PostgreSQL truncates it to 63, so the object gets another '
                   'name than the one written; shorten it' % (name, size))
            return


def _schema_rule(rel):
    if rel and not rel[0]:
        yield ('require-table-schema',
               'table %s is named without its schema: which table this is depends on search_path; '
               'write schema.%s' % (rel[1], rel[1]))


def _column_style(col):
    cname = col.get('colname')
    type_node = col.get('typeName') or {}
    tname = _type_name(type_node)
    if tname == 'varchar' and type_node.get('typmods'):
        yield ('prefer-text-field',
               'column %s is varchar(n): changing n later takes an ACCESS EXCLUSIVE lock; use text with a '
               'CHECK (length(%s) <= n)' % (cname, cname))
    elif tname in ('bpchar', 'char', 'character'):
        yield ('ban-char-field', 'column %s is char(n), which pads with spaces; use text' % cname)
    if tname in _SMALL_INTS:
        yield ('prefer-bigint',
               'column %s is %s: running out of values later needs a rewrite of the table; use bigint'
               % (cname, _INT_NAMES.get(tname, tname)))
    if tname == 'timestamp':
        yield ('prefer-timestamptz',
               'column %s is timestamp without time zone; use timestamptz' % cname)
    if tname in _SERIAL:
        yield ('prefer-identity',
               'column %s is %s; use bigint GENERATED BY DEFAULT AS IDENTITY' % (cname, tname))
