"""The SQL splitter, by psql's rules: statements, lines, COPY data, meta-commands; no database needed."""

import re

import pytest

from ansible_collections.dbdevops.postgresql.plugins.module_utils._sqlsplit import (
    SqlSplitError, split)


def texts(sql):
    return [s.text for s in split(sql)]


def test_simple_statements_and_lines():
    stmts = split("CREATE TABLE a (id int);\n\nINSERT INTO a VALUES (1);\nSELECT 1")
    assert [(s.text, s.line) for s in stmts] == [
        ('CREATE TABLE a (id int)', 1), ('INSERT INTO a VALUES (1)', 3), ('SELECT 1', 4)]


def test_semicolons_inside_quotes_identifiers_and_comments():
    sql = ("SELECT 'a;b', 'it''s;';\n"
           'SELECT "we;ird""name" FROM t;\n'
           '-- a comment; with a semicolon\n'
           'SELECT 2 /* block; /* nested; */ still comment; */ ;\n')
    assert texts(sql) == ["SELECT 'a;b', 'it''s;'", 'SELECT "we;ird""name" FROM t',
                          'SELECT 2 /* block; /* nested; */ still comment; */']


def test_escape_strings_backslash_quote():
    assert texts(r"SELECT E'a\';b'; SELECT 'c\'; SELECT 3") == [
        r"SELECT E'a\';b'", r"SELECT 'c\'", 'SELECT 3']


def test_dollar_quotes_with_tags():
    sql = ("CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $fn$\n"
           "BEGIN\n  PERFORM 'x;';\n  RETURN $$;$$::text::int;\nEND;\n$fn$;\n"
           "SELECT $1;")
    stmts = split(sql)
    assert len(stmts) == 2
    assert stmts[0].text.endswith('$fn$') and stmts[1].line == 7
    assert stmts[1].text == 'SELECT $1'


def test_identifier_with_dollar_is_not_a_dollar_quote():
    assert texts('SELECT a$b$ FROM t; SELECT 2') == ['SELECT a$b$ FROM t', 'SELECT 2']


def test_begin_atomic_body_kept_whole():
    sql = ("CREATE FUNCTION g(a int) RETURNS int LANGUAGE sql\nBEGIN ATOMIC\n"
           "  SELECT CASE WHEN a > 0 THEN 1 ELSE 0 END;\n  SELECT 2;\nEND;\nSELECT 3;")
    stmts = texts(sql)
    assert len(stmts) == 2 and stmts[0].endswith('END') and stmts[1] == 'SELECT 3'


def test_comment_only_pieces_dropped_and_line_of_first_token():
    stmts = split('-- header\n/* x */\n\n  CREATE TABLE t ();\n-- trailing\n')
    assert [(s.text, s.line) for s in stmts] == [('CREATE TABLE t ()', 4)]


@pytest.mark.parametrize('sql,line,word', [
    ('SELECT 1;\n\\set x 1\nSELECT 2;', 2, '\\set'),
    ('SELECT 1;\nSELECT 2;\n  \\i other.sql\n', 3, '\\i'),
    ('SELECT 1 \\gset\n', 1, '\\gset'),
    ('SELECT 1\\; SELECT 2;\n', 1, '\\;'),
    ('SELECT 1;\n\\.\n', 2, '\\.'),
    ('\\set ON_ERROR_STOP off\n', 1, '\\set'),
    ('\\!rm -rf /\n', 1, '\\!'),
])
def test_psql_meta_commands_rejected_naming_line(sql, line, word):
    with pytest.raises(SqlSplitError) as err:
        split(sql, 'V1__x.sql')
    assert str(err.value).startswith('psql meta-command %s at V1__x.sql line %d is not supported: ' % (word, line))
    assert err.value.details == dict(file='V1__x.sql', line=line, meta_command=word)


def test_accepted_meta_commands_are_dropped_to_end_of_line():
    sql = ('\\restrict k3y\n\\set ON_ERROR_STOP 1\n\\pset pager off\nSELECT 1,\n\\echo half way; no split\n2;\n'
           '\\qecho done\n\\unrestrict k3y\n')
    assert [(s.text, s.line) for s in split(sql)] == [('SELECT 1,\n\n2', 4)]


def test_semicolons_inside_parentheses_do_not_end_a_statement():
    sql = ('CREATE RULE r AS ON INSERT TO t DO ALSO (INSERT INTO a VALUES (1); INSERT INTO b\n'
           'VALUES ((2)));\nSELECT ")" , \')\', $$)$$, 3 -- )\n;\nSELECT 4')
    assert [(s.text[:20], s.line) for s in split(sql)] == [
        ('CREATE RULE r AS ON ', 1), ('SELECT ")" , \')\', $$', 3), ('SELECT 4', 5)]


def test_unclosed_parenthesis_is_named_where_it_opens():
    with pytest.raises(SqlSplitError, match=r'V1__x.sql line 2: \( is never closed'):
        split('SELECT 1;\nCREATE TABLE t (a int;\nSELECT 2;\n', 'V1__x.sql')


def test_begin_atomic_follows_psql_rules():
    sql = ('CREATE OR REPLACE PROCEDURE p() LANGUAGE sql BEGIN /* c */ ATOMIC\n'
           '  INSERT INTO t VALUES ((SELECT CASE WHEN true THEN 1 END));\n'
           '  SELECT CASE WHEN true THEN 2 END;\nEND;\n'
           'CREATE TABLE begin_atomic (atomic int);\nSELECT 3;')
    assert [s.line for s in split(sql)] == [1, 5, 6]
    with pytest.raises(SqlSplitError, match='line 1: BEGIN ATOMIC has no END'):
        split('CREATE FUNCTION f() RETURNS int BEGIN ATOMIC SELECT 1;\nSELECT 2;')


def test_copy_from_stdin_takes_its_rows_up_to_the_end_marker():
    sql = ('-- seed\nCOPY "my;table" (a, "b)") FROM STDIN WITH (FORMAT text);\n'
           'x\t\\N\n;\t$$\n\\\\.\t\\.x\n\\.\n'
           'COPY t FROM stdin;\r\n1\r\n\\.\r\nSELECT 1;\n'
           "COPY t FROM 'stdin';\nCOPY (SELECT 1) TO STDOUT;\n")
    stmts = split(sql)
    assert [(s.line, s.copy, s.data, s.data_line, s.data_end_line) for s in stmts] == [
        (2, 'stdin', 'x\t\\N\n;\t$$\n\\\\.\t\\.x\n', 3, 6),
        (7, 'stdin', '1\r\n', 8, 9), (10, None, None, None, None), (11, None, None, None, None),
        (12, 'stdout', None, None, None)]
    assert stmts[0].text == 'COPY "my;table" (a, "b)") FROM STDIN WITH (FORMAT text)'
    assert stmts[0].rows() == 3 and stmts[0].data_summary() == '3 rows, 18 bytes'


@pytest.mark.parametrize('sql,what', [
    ('COPY t FROM stdin;\n1\n', 'line 1: the data of COPY t FROM stdin has no end'),
    ('COPY t FROM stdin', 'line 1: the data of COPY t FROM stdin has no end'),
    ('COPY t FROM stdin; SELECT 1;\n\\.\n', 'line 1: COPY ... FROM stdin is followed by "SELECT 1;"'),
])
def test_copy_data_problems_named(sql, what):
    with pytest.raises(SqlSplitError, match=re.escape(what)):
        split(sql)


def test_standard_conforming_strings_followed():
    sql = ("SELECT 'a\\';\nSET standard_conforming_strings TO 'off';\nSELECT 'b\\';c', N'n\\'';\n"
           "SET SESSION standard_conforming_strings = on;\nSELECT 'c\\';\n"
           "SET standard_conforming_strings = of;\nSELECT 'd\\'';\nRESET ALL;\nSELECT 'e\\', U&'f\\', X'00';")
    stmts = split(sql)
    assert [s.standard_strings for s in stmts] == [True, True, False, False, True, True, False, False, True]
    assert [s.text for s in stmts][2] == "SELECT 'b\\';c', N'n\\''"
    off = split("SELECT 'x\\';y';", standard_conforming_strings=False)
    assert len(off) == 1 and not off[0].standard_strings


@pytest.mark.parametrize('sql,what', [
    ("SELECT 'abc", 'quoted string'), ('SELECT "abc', 'quoted identifier'),
    ('SELECT $x$ abc', 'dollar-quoted'), ('SELECT 1 /* /* */', 'comment'),
])
def test_unterminated_constructs_named(sql, what):
    with pytest.raises(SqlSplitError, match=what):
        split(sql)


def test_backslash_inside_standard_string_and_comment_is_fine():
    assert texts("SELECT 'C:\\dir'; -- \\not a command\nSELECT 1") == ["SELECT 'C:\\dir'", 'SELECT 1']
