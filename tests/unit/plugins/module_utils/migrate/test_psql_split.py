"""Migration files read as psql reads them, run through MigrateEngine on a real PostgreSQL.

Parenthesised rule actions, inline COPY data (transactional and not, several
blocks, rows with tabs, escapes, empty strings and NULLs), BEGIN ATOMIC
bodies, standard_conforming_strings, and psql meta-commands: the few accepted
ones are dropped, the others refused at plan time naming file and line.
Each cycle: check mode changes nothing, the run does it, a rerun does nothing.
"""

import pytest

from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate.steps import MigrationError
from tests.harness.migrate_samples import engine, migrate, plan_of, write


def sql(pg_db, text, params=None):
    pg, db = pg_db
    return pg.sql(text, params, dbname=db)


def relations(pg_db):
    return sorted(r[0] for r in sql(pg_db, "SELECT c.relname FROM pg_class c JOIN pg_namespace n "
                                           "ON n.oid = c.relnamespace WHERE n.nspname = 'public' "
                                           "AND c.relkind = 'r'"))


def cycle(pg_db, path, **opts):
    """Check mode (nothing changes), the run, the rerun (nothing to do); the check-mode plan
    and the run's result."""
    before = relations(pg_db)
    plan = plan_of(engine(pg_db, path, **opts))
    assert plan.changed
    assert relations(pg_db) == before, 'check mode changed the database'
    result = migrate(engine(pg_db, path, **opts))
    assert result['changed'] is True
    again = migrate(engine(pg_db, path, **opts))
    assert again['changed'] is False and again['applied'] == []
    return plan, result


def refused(pg_db, path, **opts):
    """The plan's error; nothing was created, not even the history table."""
    with pytest.raises(MigrationError) as err:
        plan_of(engine(pg_db, path, **opts))
    assert 'nothing was applied' in str(err.value)
    with pytest.raises(MigrationError):
        migrate(engine(pg_db, path, **opts))
    assert relations(pg_db) == []
    return err.value


def test_rule_with_parenthesised_actions_is_one_statement_and_both_actions_fire(pg_db, tmp_path):
    path = write(tmp_path / 'm', {
        'V1__rule.sql': 'CREATE TABLE t (id int);\nCREATE TABLE a (id int);\nCREATE TABLE b (id int);\n'
                        'CREATE RULE r AS ON INSERT TO t DO ALSO (\n'
                        '    INSERT INTO a VALUES (NEW.id);\n'
                        '    INSERT INTO b VALUES (NEW.id * 10);\n'
                        ');\n',
        'V2__use.sql': 'INSERT INTO t VALUES (1), (2);\n'})
    plan = cycle(pg_db, path)[0]
    statements = plan.steps[0].file.statements
    assert len(statements) == 4 and statements[3].line == 4
    assert sql(pg_db, 'SELECT id FROM a ORDER BY id') == [(1,), (2,)]
    assert sql(pg_db, 'SELECT id FROM b ORDER BY id') == [(10,), (20,)]


SEED = ('CREATE TABLE t (id int PRIMARY KEY, name text, note text);\n'
        'COPY t (id, name, note) FROM stdin;\n'
        '1\tplain\t\\N\n'
        '2\t\tempty name, NULL-free\n'
        '3\ttab\\there\tback\\\\slash\n'
        '4\tline\\nbreak\tsemi;colon \'quote\' "dq" $$\n'
        '5\t\\\\.\tnot the end\n'
        '6\tünïcødé\t✓\n'
        '\\.\n'
        'CREATE INDEX t_name ON t (name);\n')

SEED_ROWS = [(1, 'plain', None), (2, '', 'empty name, NULL-free'), (3, 'tab\there', 'back\\slash'),
             (4, 'line\nbreak', 'semi;colon \'quote\' "dq" $$'), (5, '\\.', 'not the end'),
             (6, 'ünïcødé', '✓')]


@pytest.mark.parametrize('directive', ['', '-- dbdevops:transaction=off\n'])
def test_copy_from_stdin_loads_inline_rows(pg_db, tmp_path, directive):
    path = write(tmp_path / 'm', {'V1__seed.sql': directive + SEED, 'V2__after.sql': 'SELECT 1;'})
    plan, result = cycle(pg_db, path)
    shift = directive.count('\n')
    assert sql(pg_db, 'SELECT id, name, note FROM t ORDER BY id') == SEED_ROWS
    assert sql(pg_db, "SELECT to_regclass('t_name') IS NOT NULL") == [(True,)]
    copy = plan.steps[0].file.statements[1]
    assert copy.text == 'COPY t (id, name, note) FROM stdin' and copy.line == 2 + shift
    assert (copy.data_line, copy.data_end_line) == (3 + shift, 9 + shift)
    assert plan.steps[0].file.statements[2].line == 10 + shift
    # the plan shows the COPY and a summary of its rows, never the rows
    shown = result['plan']['steps'][0]['sql']
    assert 'COPY t (id, name, note) FROM stdin;\n-- COPY data: 6 rows, 137 bytes ' in shown
    assert '(lines %d-%d of V1__seed.sql, not shown)\n\\.\nCREATE INDEX' % (3 + shift, 8 + shift) in shown
    for text in (shown, result['plan']['sql'], '\n'.join(result['queries'])):
        assert 'plain' not in text and 'empty name' not in text
    assert not [f for f in result['lint'] if f['rule'] == 'parse-error']


def test_copy_as_last_and_first_statement_and_two_blocks_in_one_file(pg_db, tmp_path):
    path = write(tmp_path / 'm', {
        # SET: the next file starts with a session reset, sent before its first statement, a COPY
        'V1__tables.sql': 'SET search_path = public;\nCREATE TABLE a (x int, y text);\nCREATE TABLE b (x int, y text);\n',
        'V2__two_blocks.sql': ('COPY a FROM stdin;\n1\tone\n2\ttwo\n\\.\r\n'
                               '-- a comment between the blocks; with a semicolon\n'
                               "COPY b (x, y) FROM STDIN WITH (FORMAT csv);  -- trailing comment\n"
                               '10,"ten; or ""10"""\n20,\n\\.\n'),
        'V3__empty.sql': 'COPY a FROM stdin;\n\\.\n'})
    plan, result = cycle(pg_db, path)
    statements = plan.steps[1].file.statements
    assert [(s.line, s.data_line, s.rows()) for s in statements] == [(1, 2, 2), (6, 7, 2)]
    assert sql(pg_db, 'SELECT x, y FROM a ORDER BY x') == [(1, 'one'), (2, 'two')]
    assert sql(pg_db, 'SELECT x, y FROM b ORDER BY x') == [(10, 'ten; or "10"'), (20, None)]
    assert [a['version'] for a in result['applied']] == ['1', '2', '3']
    assert '(lines 2-3 of V2__two_blocks.sql, not shown)\n\\.\r\n-- a comment' in result['plan']['sql']
    assert '-- up V3__empty.sql\nCOPY a FROM stdin;\n-- COPY data: none\n\\.' in result['plan']['sql']


@pytest.mark.parametrize('directive', ['', '-- dbdevops:transaction=off\n'])
def test_lines_after_a_copy_block_stay_right_in_errors(pg_db, tmp_path, directive):
    path = write(tmp_path / 'm', {'V1__seed.sql': directive + (
        'CREATE TABLE t (id int);\nCOPY t FROM stdin;\n1\n2\n3\n\\.\n\nINSERT INTO t VALUES (1 / 0);\n')})
    with pytest.raises(MigrationError) as err:
        migrate(engine(pg_db, path, lint=False))
    shift = directive.count('\n')
    assert 'V1__seed.sql line %d: division by zero' % (8 + shift) in str(err.value)
    assert err.value.details['line'] == 8 + shift


def test_a_bad_copy_row_is_named_by_its_file_line(pg_db, tmp_path):
    path = write(tmp_path / 'm', {'V1__seed.sql': (
        'CREATE TABLE t (id int);\n\nCOPY t FROM stdin;\n1\n2\nthree\n\\.\n')})
    with pytest.raises(MigrationError) as err:
        migrate(engine(pg_db, path))
    message = str(err.value)
    assert 'failed at V1__seed.sql line 6 (row 3 of the COPY data of line 3): invalid input syntax' in message
    assert 'the transaction was rolled back' in message and err.value.details['line'] == 6
    assert 't' not in relations(pg_db)


def test_copy_data_without_end_marker_is_refused(pg_db, tmp_path):
    path = write(tmp_path / 'm', {'V1__seed.sql': 'CREATE TABLE t (id int);\nCOPY t FROM stdin;\n1\n2\n'})
    error = refused(pg_db, path)
    assert 'V1__seed.sql line 2: the data of COPY t FROM stdin has no end: add a line holding only \\.' \
        in str(error)


def test_copy_to_stdout_is_refused(pg_db, tmp_path):
    path = write(tmp_path / 'm', {'V1__dump.sql': 'CREATE TABLE t (id int);\nCOPY t TO STDOUT;\n'})
    error = refused(pg_db, path)
    assert str(error).startswith('V1__dump.sql line 2: COPY ... TO stdout sends rows to the client')


@pytest.mark.parametrize('line,command,hint', [
    (3, '\\i', "inline the other file's SQL here"),
    (2, '\\connect', 'the engine runs every file on the database it connects to'),
    (4, '\\if', 'use a DO block with IF'),
    (3, '\\set', 'use a ${name} placeholder'),
    (2, '\\copy', 'use COPY ... FROM stdin;'),
    (3, '\\gexec', 'EXECUTE them in a DO block'),
])
def test_meta_commands_refused_at_plan_time_naming_file_and_line(pg_db, tmp_path, line, command, hint):
    lines = ['CREATE TABLE a (id int);', 'SELECT 1;', 'SELECT 2;', 'SELECT 3;']
    lines.insert(line - 1, {'\\i': '\\i other.sql', '\\connect': '\\connect other',
                            '\\if': '\\if :flag', '\\set': '\\set n 5', '\\copy': '\\copy a from a.csv',
                            '\\gexec': '\\gexec'}[command])
    path = write(tmp_path / 'm', {'V1__a.sql': 'SELECT 0;', 'V3__x.sql': '\n'.join(lines) + '\n'})
    error = refused(pg_db, path)
    assert str(error).startswith('psql meta-command %s at V3__x.sql line %d is not supported: '
                                 % (command, line)), str(error)
    assert hint in str(error)
    assert (error.details['file'], error.details['line']) == ('V3__x.sql', line)


def test_harmless_meta_commands_are_dropped(pg_db, tmp_path):
    path = write(tmp_path / 'm', {'V1__a.sql': (
        '\\restrict AbC123\n\\set ON_ERROR_STOP on\n\\timing on\n'
        '\\echo creating a\nCREATE TABLE a (\n\\echo in the middle of a statement\n  id int);\n'
        "INSERT INTO a VALUES (1);\n\\unrestrict AbC123\n")})
    plan = cycle(pg_db, path)[0]
    assert [(s.line, s.text) for s in plan.steps[0].file.statements] == [
        (5, 'CREATE TABLE a (\n\n  id int)'), (8, 'INSERT INTO a VALUES (1)')]
    assert sql(pg_db, 'SELECT id FROM a') == [(1,)]


def test_begin_atomic_escape_strings_and_standard_conforming_strings(pg_db, tmp_path):
    path = write(tmp_path / 'm', {'V1__a.sql': (
        'CREATE TABLE a (s text);\n'
        'CREATE FUNCTION add_two(x int) RETURNS void LANGUAGE sql\nBEGIN ATOMIC\n'
        "  INSERT INTO a VALUES (CASE WHEN x > 0 THEN 'pos;' ELSE 'neg;' END);\n"
        "  INSERT INTO a VALUES ('second;');\nEND;\n"
        "SELECT add_two(1);\n"
        "INSERT INTO a VALUES (E'e\\';x'), ('std\\'), ($q$dollar;'$q$), (/* /* nested; */ ; */ 'c');\n"
        'SET standard_conforming_strings = off;\n'
        "INSERT INTO a VALUES ('off\\';y');\n"
        'RESET standard_conforming_strings;\n'
        "INSERT INTO a VALUES ('on\\');\n")})
    plan = cycle(pg_db, path)[0]
    assert len(plan.steps[0].file.statements) == 8
    assert sorted(r[0] for r in sql(pg_db, 'SELECT s FROM a')) == sorted(
        ['pos;', 'second;', "e';x", 'std\\', "dollar;'", 'c', "off';y", 'on\\'])
