"""Every lint rule on its risky and its safe examples (lint_cases.json), against a real database.

The same data renders docs/lint-rules.md; a test fails when the page is not what the data
and the registry give.  After changing a rule or a case, rewrite the page with:

    python tests/unit/plugins/module_utils/migrate/test_lint_rules.py
"""

import json
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, '..', '..', '..', '..', '..'))
CASES_FILE = os.path.join(HERE, 'lint_cases.json')
DOC = os.path.join(ROOT, 'docs', 'lint-rules.md')

if __name__ == '__main__':      # run as a script: the collection on sys.path as conftest does
    sys.path.insert(0, ROOT)
    import tests.conftest  # noqa: F401,E402  pylint: disable=unused-import

import pytest  # noqa: E402

from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate import lint as mlint  # noqa: E402
from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate.files import (  # noqa: E402
    KIND_VERSIONED, MigrationFile)

with open(CASES_FILE) as _handle:
    DATA = json.load(_handle)
CASES = dict((c['rule'], c) for c in DATA['cases'])
SIZE = re.compile(r'\(\d+(?:\.\d+)? (?:bytes|kB|MB|GB|TB), ~\d+ rows\)')


class _Step(object):
    def __init__(self, mfile):
        self.file = mfile
        self.kind = 'versioned'


def normalise(message):
    """Sizes and row counts of the live table vary a little between runs; the page shows placeholders."""
    return SIZE.sub('(<size>, ~<rows> rows)', message)


def lint(conn, folder, case, example):
    """The findings of one example (a SQL text, or a dict with sql and settings to override)."""
    settings = dict((k, case[k]) for k in ('server_version', 'lock_timeout', 'statement_timeout') if k in case)
    if isinstance(example, dict):
        settings.update((k, v) for k, v in example.items() if k != 'sql')
        example = example['sql']
    mfile = MigrationFile(KIND_VERSIONED, '1', 'example', os.path.join(folder, 'V1__example.sql'), example)
    catalog = mlint.Catalog(conn, server_version=settings.get('server_version'))
    return mlint.lint_steps([_Step(mfile)], catalog, lock_timeout=settings.get('lock_timeout', '5s'),
                            statement_timeout=settings.get('statement_timeout'),
                            rules={case['rule']: True})


@pytest.fixture(scope='module')
def lint_db(pg, tmp_path_factory):
    name = 'lint_rules_%d' % os.getpid()
    pg.create_database(name)
    pg.sql(DATA['setup'], dbname=name)
    conn = pg.connect(name)
    yield conn, str(tmp_path_factory.mktemp('lint_rules'))
    conn.close()
    pg.sql('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % name)


def test_every_rule_has_a_case_and_every_case_a_rule():
    assert sorted(CASES) == sorted(mlint.RULES)
    assert len(DATA['cases']) == len(CASES)


def test_every_squawk_rule_maps_to_rules_that_exist():
    for row in DATA['squawk']:
        for rule in row['ours'].split(', '):
            assert rule in mlint.RULES, row


@pytest.mark.parametrize('rule', list(CASES))
def test_risky_examples_are_flagged_with_the_documented_message(lint_db, rule):
    conn, folder = lint_db
    case = CASES[rule]
    found = [f for f in lint(conn, folder, case, case['risky']) if f.rule == rule]
    assert found, 'risky example of %s not flagged' % rule
    assert normalise(found[0].message) == case['says']
    for example in case.get('also_risky', []):
        assert [f for f in lint(conn, folder, case, example) if f.rule == rule], example


@pytest.mark.parametrize('rule', list(CASES))
def test_safe_examples_are_quiet(lint_db, rule):
    conn, folder = lint_db
    case = CASES[rule]
    for example in [case['safe']] + case.get('also_safe', []):
        found = [f.text() for f in lint(conn, folder, case, example) if f.rule == rule]
        assert found == [], example


def test_defaults_run_safety_rules_only(lint_db):
    conn, folder = lint_db
    mfile = MigrationFile(KIND_VERSIONED, '1', 'x', os.path.join(folder, 'V1__x.sql'),
                          'CREATE TABLE t (id serial, code varchar(3));\nALTER TABLE accounts RENAME TO customers;')
    found = mlint.lint_steps([_Step(mfile)], mlint.Catalog(conn), lock_timeout='5s')
    assert [f.rule for f in found] == ['rename-table']
    assert found[0].to_dict()['severity'] == 'warning'


def test_settings_project_file_then_option_then_file_directive(lint_db, tmp_path):
    conn, _folder = lint_db
    text = 'CREATE TABLE t (id int);\nALTER TABLE accounts DROP COLUMN note;\nDROP TABLE orders;\n'
    mfile = MigrationFile(KIND_VERSIONED, '1', 'x', str(tmp_path / 'V1__x.sql'), text)

    def rules(**kwargs):
        return sorted(f.rule for f in mlint.lint_steps([_Step(mfile)], mlint.Catalog(conn), lock_timeout='5s',
                                                       **kwargs))

    assert rules() == ['drop-column', 'drop-table']
    (tmp_path / mlint.PROJECT_FILE).write_text(json.dumps({'rules': {'drop-table': False, 'style': True,
                                                                     'require-table-schema': False}}))
    assert rules() == ['drop-column', 'prefer-bigint', 'require-statement-timeout']
    assert rules(rules={'drop-table': True, 'style': False}) == ['drop-column', 'drop-table']
    ignoring = MigrationFile(KIND_VERSIONED, '1', 'x', str(tmp_path / 'V1__x.sql'),
                             '-- dbdevops:lint-ignore=drop-column\n' + text)
    found = mlint.lint_steps([_Step(ignoring)], mlint.Catalog(conn), lock_timeout='5s', rules={'style': False})
    assert [f.rule for f in found] == []
    with pytest.raises(mlint.LintConfigError) as err:
        rules(rules={'drop-tables': False})
    assert 'unknown lint rule drop-tables' in str(err.value) and 'drop-table' in str(err.value)
    (tmp_path / mlint.PROJECT_FILE).write_text('rules: {drop-table: false}')
    with pytest.raises(mlint.LintConfigError) as err:
        rules()
    assert mlint.PROJECT_FILE in str(err.value) and 'JSON' in str(err.value)


def test_catalog_knows_emptiness_and_size(lint_db):
    conn, _folder = lint_db
    catalog = mlint.Catalog(conn)
    accounts = catalog.table((None, 'accounts'))
    assert accounts.name == 'public.accounts' and not accounts.empty and accounts.rows == 5000
    assert catalog.table((None, 'empty_t')).empty
    assert not catalog.table(('public', 'events')).empty          # rows are in its partition
    assert catalog.table((None, 'no_such_table')) is False
    assert catalog.volatile(['next_token']) is True and catalog.volatile(['now']) is False
    assert catalog.not_null_checks((None, 'orders')) == {'total'}


# --- the parser of the managed host -------------------------------------------------------------

SYSTEM_PYTHON = '/usr/bin/python3'
_EXAMPLES_RULES = r'''
import json, sys
from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate import lint as mlint
from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate.files import KIND_VERSIONED, MigrationFile

class Step(object):
    def __init__(self, mfile):
        self.file, self.kind = mfile, 'versioned'

out = []
for rule, sql, settings, folder in json.load(sys.stdin):
    mfile = MigrationFile(KIND_VERSIONED, '1', 'x', folder + '/V1__x.sql', sql)
    found = mlint.lint_steps([Step(mfile)], mlint.Catalog(None, settings.get('server_version')),
                             lock_timeout=settings.get('lock_timeout', '5s'),
                             statement_timeout=settings.get('statement_timeout'), rules={'all': True})
    out.append(sorted(set(f.rule for f in found)))
print(json.dumps([mlint.parser_major(), out]))
'''


def _all_examples(folder):
    for rule, case in CASES.items():
        for example in [case['risky'], case['safe']] + case.get('also_risky', []) + case.get('also_safe', []):
            settings = dict((k, case[k]) for k in ('server_version', 'lock_timeout', 'statement_timeout')
                            if k in case)
            if isinstance(example, dict):
                settings.update((k, v) for k, v in example.items() if k != 'sql')
                example = example['sql']
            yield [rule, example, settings, folder]


def _has_system_pglast():
    if not os.path.exists(SYSTEM_PYTHON):
        return False
    return subprocess.call([SYSTEM_PYTHON, '-c', 'import pglast, psycopg2'], stderr=subprocess.DEVNULL) == 0


@pytest.mark.skipif(not _has_system_pglast(), reason='no pglast for /usr/bin/python3 (Debian: python3-pglast)')
def test_the_managed_hosts_parser_gives_the_same_findings(tmp_path):
    """Modules run with /usr/bin/python3 and Debian's pglast 5 (PostgreSQL 15 grammar); the tests
    run with the venv's pglast: every example gives the same rules under both (no catalog)."""
    examples = list(_all_examples(str(tmp_path)))
    root = mlint.__file__.split(os.sep + 'ansible_collections' + os.sep, maxsplit=1)[0]     # what holds ansible_collections/
    child = subprocess.run([SYSTEM_PYTHON, '-c', _EXAMPLES_RULES], input=json.dumps(examples),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                           env=dict(os.environ, PYTHONPATH=root), check=False)
    assert child.returncode == 0, child.stderr
    grammar, theirs = json.loads(child.stdout)
    ours = []
    for rule, sql, settings, folder in examples:
        mfile = MigrationFile(KIND_VERSIONED, '1', 'x', folder + '/V1__x.sql', sql)
        found = mlint.lint_steps([_Step(mfile)], mlint.Catalog(None, settings.get('server_version')),
                                 lock_timeout=settings.get('lock_timeout', '5s'),
                                 statement_timeout=settings.get('statement_timeout'), rules={'all': True})
        ours.append(sorted(set(f.rule for f in found)))
    assert grammar is not None
    assert [(e[1], r) for e, r in zip(examples, theirs)] == [(e[1], r) for e, r in zip(examples, ours)]


# --- the page ---------------------------------------------------------------------------------

def _code(sql):
    return '```sql\n%s\n```' % sql.rstrip()


def _example_text(example):
    if isinstance(example, dict):
        extra = ', '.join('%s %s' % (k.replace('_', ' '), v) for k, v in sorted(example.items()) if k != 'sql')
        return '%s\n-- (%s)' % (example['sql'].rstrip(), extra)
    return example


def render():
    out = [
        '# Lint rules',
        '',
        '<!-- generated by tests/unit/plugins/module_utils/migrate/test_lint_rules.py from',
        '     plugins/module_utils/migrate/lint.py (RULES) and lint_cases.json; do not edit by hand -->',
        '',
        'The migrate module lints every planned file before anything runs (it needs `pglast`).',
        'Findings are warnings; with `fail_on_lint: true` any finding stops the run before it starts.',
        'Rules marked *error* are statements PostgreSQL refuses or that fail on a table with rows.',
        'Each finding is in the task\'s `lint` list (`rule`, `severity`, `script`, `line`, `message`,',
        '`statement`) and, as `<file> line <n>: <message> [<rule>]`, in its `warnings`.',
        '',
        'The lint reads the live catalog: a table created earlier in the same plan, or one with no',
        'rows on disk, is not flagged for locks, scans or rewrites; the server version decides the',
        'version-dependent rules; `pg_proc.provolatile` decides which defaults are volatile (the',
        "database's own functions included).",
        '',
        '## Turning rules on and off',
        '',
        'Later settings win:',
        '',
        '1. the default of each rule (below): `safety` rules are on, `style` rules are off;',
        '2. `dbdevops-lint.json` in the migrations folder (plain JSON, read without PyYAML on the',
        '   managed host): `{"rules": {"drop-column": false, "style": true}}`;',
        '3. the `lint_rules` option of `dbdevops.postgresql.migrate`, the same mapping:',
        '   `lint_rules: {drop-column: false, prefer-bigint: true}`;',
        '4. `-- dbdevops:lint-ignore=rule,rule` in a migration file, for that file only.',
        '',
        'A key is a rule id, a category (`safety`, `style`) or `all`; categories apply before rule',
        'ids. An unknown rule id is an error. `parse-error` cannot be turned off: a statement',
        "PostgreSQL's parser rejects stops the plan.",
        '',
        '## Rules',
        '',
        '| rule | severity | category | default | catches |',
        '| --- | --- | --- | --- | --- |',
    ]
    for rule in mlint.RULES.values():
        out.append('| [`%s`](#%s) | %s | %s | %s | %s |' % (
            rule.id, rule.id, rule.severity, rule.category, 'on' if rule.default else 'off',
            rule.summary.replace('|', '\\|')))
    out += ['', '## Examples', '',
            'Each risky example is flagged and each safe one is not, against a database built by this',
            'set-up (`accounts` has 5000 rows, `empty_t` none, `orders` has a validated',
            '`CHECK (total IS NOT NULL)`); the "lint says" text is the exact message.',
            '', _code(DATA['setup']), '']
    for rule in mlint.RULES.values():
        case = CASES[rule.id]
        settings = ', '.join('%s %s' % (k.replace('_', ' '), case[k])
                             for k in ('server_version', 'lock_timeout', 'statement_timeout') if k in case)
        out += ['### %s' % rule.id, '',
                '%s (%s, %s, %s by default).%s' % (
                    rule.summary[:1].upper() + rule.summary[1:], rule.severity, rule.category,
                    'on' if rule.default else 'off',
                    (' Examples run with: %s.' % settings.replace('None', 'none')) if settings else ''),
                '', 'Risky:', '', _code(case['risky'])]
        for example in case.get('also_risky', []):
            out += ['', _code(_example_text(example))]
        out += ['', 'Lint says: %s' % case['says'], '', 'Safe:', '', _code(case['safe'])]
        for example in case.get('also_safe', []):
            out += ['', _code(_example_text(example))]
        out.append('')
    out += ['## Compared with squawk', '',
            "Each rule of [squawk](https://squawkhq.com/docs/rules)'s list and the rules here that cover it.",
            '', '| squawk rule | here | note |', '| --- | --- | --- |']
    for row in DATA['squawk']:
        out.append('| %s | %s | %s |' % (row['rule'], ', '.join('`%s`' % r for r in row['ours'].split(', ')),
                                         row['note']))
    out += ['', 'Here and not in squawk: `enum-value-in-transaction` (using a value that ALTER TYPE ... ADD VALUE',
            'added in the same transaction), the table-size and empty-table exemptions from the live catalog,',
            'and `pg_proc.provolatile` for functions of the database itself.', '']
    return '\n'.join(out)


def test_the_page_is_rendered_from_the_same_data():
    with open(DOC) as handle:
        assert handle.read() == render(), 'docs/lint-rules.md is stale: run python %s' % os.path.relpath(__file__, ROOT)


if __name__ == '__main__':
    with open(DOC, 'w') as handle:
        handle.write(render())
    print('wrote %s' % DOC)
