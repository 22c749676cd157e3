# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Internal: split a SQL script into statements the way psql does (no Ansible imports).

A ``;`` ends a statement unless it is inside parentheses (``CREATE RULE ... DO
ALSO (INSERT ...; INSERT ...)``), inside a SQL-standard ``BEGIN ATOMIC ...
END`` function body, or inside a string, quoted identifier, dollar quote
(``$$``, ``$fn$``) or comment (``--``, nested ``/* */``).  ``E''`` strings take
backslash escapes, and so do plain ``''`` strings after ``SET
standard_conforming_strings = off`` (until it is set back or reset).

``COPY ... FROM stdin;`` takes the lines after it as its data, up to a line
holding only ``\\.``; the statement carries them in ``data`` (its ``text`` is
the COPY alone, which is what a parser or a lint should see).

psql meta-commands are refused naming the line and what to do instead, except
the few that change nothing for the engine (:data:`IGNORED_META_COMMANDS`),
which are dropped up to the end of their line.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import bisect
import re

from ansible_collections.dbdevops.postgresql.plugins.module_utils.errors import DbDevopsError

# what the scanner stops at; everything in between (digits, operators, spaces) is plain text
_NEXT = re.compile(r"--|/\*|[A-Za-z_\x80-\U0010ffff][A-Za-z0-9_$\x80-\U0010ffff]*|['\"$;()\\]")
# the same once the words of a statement no longer matter: only a one-letter string prefix (E'')
_NEXT_SKIPPING_WORDS = re.compile(r"--|/\*|(?<![A-Za-z0-9_$\x80-\U0010ffff])[eEbBxXnN](?=')|['\"$;()\\]")
_IDENT_CHAR = re.compile(r'[A-Za-z0-9_$\x80-\U0010ffff]')
_DOLLAR_TAG = re.compile(r'\$([A-Za-z_\x80-\U0010ffff][A-Za-z0-9_\x80-\U0010ffff]*)?\$')
_COMMENT_MARK = re.compile(r'/\*|\*/')
_ESCAPE_STRING_BODY = re.compile(r"[^'\\]*(?:(?:\\.|'')[^'\\]*)*'", re.S)
_META_NAME = re.compile(r'\\([A-Za-z_]+\+?|[^\s]?)')
_COPY_END = re.compile(r'^\\\.\r?$', re.M)
_SET_STD_STRINGS = re.compile(r'SET\s+(?:(?:SESSION|LOCAL)\s+)?standard_conforming_strings\s*(?:=|TO\b)\s*'
                              r"'?([A-Za-z0-9_]*)'?\s*$", re.I)
_RESET_STD_STRINGS = re.compile(r'RESET\s+(?:standard_conforming_strings|ALL)\s*$', re.I)

#: psql meta-commands that change nothing the engine does: dropped, with the rest of their line.
#: ``\set ON_ERROR_STOP on`` is accepted too (the engine always stops at the first error).
IGNORED_META_COMMANDS = ('echo', 'qecho', 'warn', 'timing', 'pset', 'x', 'a', 't', 'restrict', 'unrestrict')

_INLINE = "inline the other file's SQL here, or make it a migration file of its own"
_VARIABLES = ('psql variables are not supported: use a ${name} placeholder (the placeholders option); '
              'only "\\set ON_ERROR_STOP on" is accepted, since the engine always stops at the first error')
_RESULTS = ('end the statement with ; instead (the engine does not read query results); to run '
            'statements built by a query, EXECUTE them in a DO block')
_META_HINTS = {
    'i': _INLINE, 'ir': _INLINE, 'include': _INLINE, 'include_relative': _INLINE,
    'c': ('the engine runs every file on the database it connects to (the connection options): '
          'remove it, and run the migrations against each database'),
    'connect': None,
    'copy': ('use COPY ... FROM stdin; with the rows on the lines after it, ended by a line holding '
             'only \\.'),
    'if': 'conditionals are not supported: use a DO block with IF ... THEN ... END IF',
    'set': _VARIABLES, 'unset': _VARIABLES, 'setenv': _VARIABLES, 'getenv': _VARIABLES,
    'prompt': _VARIABLES,
    'g': _RESULTS, 'gx': _RESULTS, 'gset': _RESULTS, 'gexec': _RESULTS, 'gdesc': _RESULTS,
    'crosstabview': _RESULTS, 'watch': _RESULTS, 'bind': _RESULTS,
    ';': 'end each statement with ; (each one is sent on its own)',
    '.': ('a line holding only \\. ends the data of a COPY ... FROM stdin, and no such COPY comes '
          'before it: check the COPY statement above (it must be COPY ... FROM stdin, ended by ; '
          'at the end of its line)'),
}
_META_HINTS['connect'] = _META_HINTS['c']
for _name in ('elif', 'else', 'endif'):
    _META_HINTS[_name] = _META_HINTS['if']
_META_DEFAULT = ('remove it: the engine sends the SQL to the server itself, not through psql '
                 '(accepted and ignored: %s, and \\set ON_ERROR_STOP on)'
                 % ', '.join('\\' + n for n in IGNORED_META_COMMANDS))


class SqlSplitError(DbDevopsError):
    """The script cannot be split (meta-command, unterminated quote or comment)."""


class Statement(object):
    """One statement: its text (no trailing semicolon) and 1-based first line.

    A ``COPY ... FROM stdin`` also has its inline rows: ``data`` (the text
    between the statement's line and the ``\\.`` line, as written), ``data_line``
    (the line of the first row) and ``data_end_line`` (the line of ``\\.``).
    ``copy`` is ``'stdin'`` or ``'stdout'`` for ``COPY ... FROM stdin`` and
    ``COPY ... TO stdout``, else None.  ``standard_strings`` is False for a
    statement read after ``SET standard_conforming_strings = off`` (its ``''``
    strings take backslash escapes, which a parser assuming the default misreads).
    """

    __slots__ = ('text', 'line', 'copy', 'data', 'data_line', 'data_end_line', 'standard_strings')

    def __init__(self, text, line, copy=None, data=None, data_line=None, data_end_line=None,
                 standard_strings=True):
        self.text = text
        self.line = line
        self.copy = copy
        self.standard_strings = standard_strings
        self.data = data
        self.data_line = data_line
        self.data_end_line = data_end_line

    def __repr__(self):
        extra = '' if self.data is None else ', data=%d rows' % self.rows()
        return 'Statement(line=%d, %r%s)' % (self.line, self.text, extra)

    def __eq__(self, other):
        return isinstance(other, Statement) and \
            (self.text, self.line, self.data) == (other.text, other.line, other.data)

    def __ne__(self, other):
        return not self == other

    def __hash__(self):
        return hash((self.text, self.line))

    def short(self, width=120):
        """One line, for messages."""
        flat = ' '.join(self.text.split())
        return flat if len(flat) <= width else flat[:width - 3] + '...'

    def rows(self):
        """Lines of inline COPY data (a row per line in text format); 0 without data."""
        if not self.data:
            return 0
        return self.data.count('\n') + (0 if self.data.endswith('\n') else 1)

    def data_summary(self):
        """``3 rows, 42 bytes``: what the plan shows instead of the data."""
        size = len(self.data.encode('utf-8')) if self.data else 0
        rows = self.rows()
        return '%d row%s, %d byte%s' % (rows, '' if rows == 1 else 's', size, '' if size == 1 else 's')


def split(sql, filename='<sql>', standard_conforming_strings=True):
    """Return the list of :class:`Statement` in ``sql``; comments-only pieces are dropped.

    ``standard_conforming_strings`` is the server's setting when the script
    starts (on since PostgreSQL 9.1); ``SET``/``RESET`` of it in the script are followed.
    """
    return _Splitter(sql, filename, standard_conforming_strings).run()


def _parse_bool(value):
    """PostgreSQL's reading of a boolean setting (unique prefixes too); None when not one."""
    value = value.lower()
    if value in ('1', 'on'):
        return True
    if value in ('0', 'of', 'off'):
        return False
    for word, result in (('true', True), ('false', False), ('yes', True), ('no', False)):
        if value and word.startswith(value):
            return result
    return None


class _Splitter(object):

    def __init__(self, sql, filename, standard_strings):
        self.sql = sql
        self.filename = filename
        self.default_std = standard_strings
        self.std = standard_strings
        self.std_off_line = None       # where SET standard_conforming_strings = off was
        self.statements = []
        self._newlines = None
        self._new_statement()

    def _new_statement(self):
        self.start = None       # offset of the first token of the current statement
        self.cuts = []          # (from, to) of ignored meta-commands inside it
        self.words = []         # its first words at paren depth 0, upper case
        self.opened = []        # offsets of the ( not closed yet
        self.atomic = []        # offsets of the BEGIN ATOMIC not ended yet (CASE too, inside one)
        self.last_word = None
        self.skip_words = False     # nothing further depends on the words of this statement

    def line_of(self, offset):
        if self._newlines is None:
            self._newlines = [m.start() for m in re.finditer('\n', self.sql)]
        return bisect.bisect_left(self._newlines, offset) + 1

    def fail(self, what, offset, **details):
        line = self.line_of(offset)
        raise SqlSplitError('%s line %d: %s' % (self.filename, line, what),
                            file=self.filename, line=line, **details)

    def run(self):
        sql = self.sql
        n = len(sql)
        i = 0
        while True:
            m = (_NEXT_SKIPPING_WORDS if self.opened or self.skip_words else _NEXT).search(sql, i)
            if m is None:
                break
            tok = m.group(0)
            p = m.start()
            c = tok[0]
            if tok == '--':
                j = sql.find('\n', p)
                i = n if j < 0 else j
                continue
            if tok == '/*':
                i = self._block_comment(p)
                continue
            if c == '\\':
                i = self._meta_command(p)
                continue
            if c == ';':
                if self.start is not None and not self.opened and not self.atomic:
                    i = self._end_statement(p, p + 1)
                else:
                    i = p + 1
                continue
            if self.start is None:
                self.start = p
            if c == "'":
                i = self._string(p, escapes=not self.std)
            elif c == '"':
                i = self._quoted_identifier(p)
            elif c == '$':
                i = self._dollar(p)
            elif c == '(':
                self.opened.append(p)
                i = p + 1
            elif c == ')':
                if self.opened:
                    self.opened.pop()
                i = p + 1
            else:
                i = self._word(tok, p, m.end())
        if self.start is not None:
            if self.opened:
                self.fail('( is never closed: psql reads everything up to the matching ) as one statement, '
                          'semicolons included; close it', self.opened[0])
            if self.atomic:
                self.fail('BEGIN ATOMIC has no END: the function body runs to the end of the file; '
                          'end it with END;', self.atomic[0])
            self._end_statement(n, n)
        return self.statements

    def _word(self, word, p, end):
        sql = self.sql
        if len(word) == 1 and end < len(sql) and sql[end] == "'" and word in 'eEbBxXnN':
            # E'' takes backslash escapes, B'' and X'' never do, N'' follows the setting
            return self._string(end, escapes=word in 'eE' or (word in 'nN' and not self.std))
        if self.opened:
            return end
        upper = word.upper()
        words = self.words
        if len(words) < 16:
            words.append(upper)
        # what the words decide: COPY ... FROM stdin (in the first 16), a routine's BEGIN ATOMIC ... END
        if words[0] != 'COPY' and (words[0] != 'CREATE' or len(words) >= 4) and not self._in_routine() \
                or len(words) >= 16 and words[0] == 'COPY':
            self.skip_words = True
        if self._in_routine():
            if upper == 'ATOMIC' and self.last_word == 'BEGIN':
                self.atomic.append(p)
            elif self.atomic and upper == 'CASE':
                self.atomic.append(p)
            elif self.atomic and upper == 'END':
                self.atomic.pop()
        self.last_word = upper
        return end

    def _in_routine(self):
        words = self.words
        if not words or words[0] != 'CREATE':
            return False
        rest = words[1:3] if words[1:3] != ['OR', 'REPLACE'] else words[3:4]
        return bool(rest) and rest[0] in ('FUNCTION', 'PROCEDURE')

    def _block_comment(self, p):
        depth = 0
        i = p
        while True:
            m = _COMMENT_MARK.search(self.sql, i)
            if m is None:
                self.fail('unterminated /* comment */ starting here', p)
            depth += 1 if m.group(0) == '/*' else -1
            i = m.end()
            if depth == 0:
                return i

    def _string(self, p, escapes):
        sql = self.sql
        if escapes:
            m = _ESCAPE_STRING_BODY.match(sql, p + 1)
            if m is None:
                why = ''
                if self.std_off_line is not None and sql[p - 1:p] not in ('e', 'E'):
                    why = (' (standard_conforming_strings is off since line %d, so a backslash '
                           'escapes the character after it)' % self.std_off_line)
                self.fail('unterminated quoted string starting here%s' % why, p)
            return m.end()
        j = p + 1
        while True:
            k = sql.find("'", j)
            if k < 0:
                self.fail('unterminated quoted string starting here', p)
            if sql.startswith("''", k):
                j = k + 2
                continue
            return k + 1

    def _quoted_identifier(self, p):
        j = p + 1
        while True:
            k = self.sql.find('"', j)
            if k < 0:
                self.fail('unterminated quoted identifier starting here', p)
            if self.sql.startswith('""', k):
                j = k + 2
                continue
            return k + 1

    def _dollar(self, p):
        if p > 0 and _IDENT_CHAR.match(self.sql[p - 1]):
            return p + 1
        m = _DOLLAR_TAG.match(self.sql, p)
        if not m:
            return p + 1            # $1, a parameter
        tag = m.group(0)
        end = self.sql.find(tag, m.end())
        if end < 0:
            self.fail('unterminated dollar-quoted string %s starting here' % tag, p)
        return end + len(tag)

    def _meta_command(self, p):
        sql = self.sql
        m = _META_NAME.match(sql, p)
        name = m.group(1)
        eol = sql.find('\n', p)
        eol = len(sql) if eol < 0 else eol
        args = sql[m.end():eol].split()
        if name in IGNORED_META_COMMANDS or (
                name == 'set' and len(args) == 2 and args[0] == 'ON_ERROR_STOP' and _parse_bool(args[1])):
            if self.start is not None:
                self.cuts.append((p, eol))
            return eol
        hint = _META_HINTS.get(name, _META_DEFAULT)
        line = self.line_of(p)
        shown = '\\' + name
        raise SqlSplitError('psql meta-command %s at %s line %d is not supported: %s'
                            % (shown, self.filename, line, hint),
                            file=self.filename, line=line, meta_command=shown)

    def _text(self, end):
        if not self.cuts:
            return self.sql[self.start:end].strip()
        pieces, at = [], self.start
        for cut_from, cut_to in self.cuts:
            pieces.append(self.sql[at:cut_from])
            at = cut_to
        pieces.append(self.sql[at:end])
        return ''.join(pieces).strip()

    def _end_statement(self, end, resume):
        """Close the statement ending at ``end``; returns where scanning resumes."""
        text = self._text(end) if self.start is not None else ''
        words = self.words
        start = self.start
        self._new_statement()
        if not text:
            return resume
        stmt = Statement(text, self.line_of(start), copy=_copy_direction(words), standard_strings=self.std)
        self.statements.append(stmt)
        if words and words[0] in ('SET', 'RESET'):
            self._follow_settings(text, start)
        if stmt.copy == 'stdin':
            return self._copy_data(stmt, start, resume)
        return resume

    def _follow_settings(self, text, start):
        m = _SET_STD_STRINGS.match(text)
        if m:
            value = m.group(1)
            on = self.default_std if value.lower() == 'default' else _parse_bool(value)
            if on is not None:
                self.std = on
        elif _RESET_STD_STRINGS.match(text):
            self.std = self.default_std
        else:
            return
        self.std_off_line = None if self.std else self.line_of(start)

    def _copy_data(self, stmt, start, resume):
        """Take the lines after ``COPY ... FROM stdin;`` up to ``\\.`` as its data."""
        sql = self.sql
        eol = sql.find('\n', resume)
        eol = len(sql) if eol < 0 else eol
        rest = sql[resume:eol].strip()
        if rest and not rest.startswith('--'):
            self.fail('COPY ... FROM stdin is followed by "%s" on the same line; psql reads the rows '
                      'from the next line on, so put nothing but a comment after its ; (the next '
                      'statement goes after the \\. line)' % rest[:40], resume)
        first = eol + 1
        m = _COPY_END.search(sql, first) if first <= len(sql) else None
        if m is None:
            self.fail('the data of %s has no end: add a line holding only \\. after its last row'
                      % stmt.short(60), start)
        stmt.data = sql[first:m.start()]
        stmt.data_line = self.line_of(first)
        stmt.data_end_line = self.line_of(m.start())
        return m.end()


def _copy_direction(words):
    """``'stdin'``/``'stdout'`` for COPY ... FROM stdin / TO stdout (words at paren depth 0)."""
    if not words or words[0] != 'COPY':
        return None
    for a, b in zip(words, words[1:]):
        if a == 'FROM' and b == 'STDIN':
            return 'stdin'
        if a == 'TO' and b == 'STDOUT':
            return 'stdout'
    return None
