"""The SQL splitter for files run outside a transaction: no database needed."""

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
])
def test_psql_meta_commands_rejected_naming_line(sql, line, word):
    with pytest.raises(SqlSplitError) as err:
        split(sql, 'V1__x.sql')
    assert 'V1__x.sql line %d' % line in str(err.value) and word in str(err.value)


@pytest.mark.parametrize('sql,what', [
    ("SELECT 'abc", 'quoted string'), ('SELECT "abc', 'quoted identifier'),
    ('SELECT $x$ abc', 'dollar-quoted'), ('SELECT 1 /* /* */', 'comment'),
])
def test_unterminated_constructs_named(sql, what):
    with pytest.raises(SqlSplitError, match=what):
        split(sql)


def test_backslash_inside_standard_string_and_comment_is_fine():
    assert texts("SELECT 'C:\\dir'; -- \\not a command\nSELECT 1") == ["SELECT 'C:\\dir'", 'SELECT 1']
