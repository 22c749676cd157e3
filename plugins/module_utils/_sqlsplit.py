# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Internal: split a SQL script into statements the way psql does (no Ansible imports).

Handles single quotes (``''`` doubling), ``E''`` strings (backslash escapes),
quoted identifiers, dollar quotes with tags (``$$``, ``$fn$``), nested block
comments, line comments and SQL-standard ``BEGIN ATOMIC ... END`` function
bodies.  psql meta-commands (``\\set``, ``\\i`` ...) are rejected naming the
line, since the engine talks to the server directly and cannot run them.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.dbdevops.postgresql.plugins.module_utils.errors import DbDevopsError

_IDENT_CHAR = re.compile(r'[A-Za-z0-9_$\x80-\uffff]')
_DOLLAR_TAG = re.compile(r'\$([A-Za-z_\x80-\uffff][A-Za-z0-9_\x80-\uffff]*)?\$')
_WORD = re.compile(r'[A-Za-z_][A-Za-z0-9_$]*')


class SqlSplitError(DbDevopsError):
    """The script cannot be split (meta-command, unterminated quote or comment)."""


class Statement(object):
    """One statement: its text (no trailing semicolon) and 1-based first line."""

    __slots__ = ('text', 'line')

    def __init__(self, text, line):
        self.text = text
        self.line = line

    def __repr__(self):
        return 'Statement(line=%d, %r)' % (self.line, self.text)

    def __eq__(self, other):
        return isinstance(other, Statement) and (self.text, self.line) == (other.text, other.line)

    def __ne__(self, other):
        return not self == other

    def short(self, width=120):
        """One line, for messages."""
        flat = ' '.join(self.text.split())
        return flat if len(flat) <= width else flat[:width - 3] + '...'


def split(sql, filename='<sql>'):
    """Return the list of :class:`Statement` in ``sql``; comments-only pieces are dropped."""
    statements = []
    n = len(sql)
    i = 0
    line = 1
    start = None          # index of the first token of the current statement
    start_line = None
    words = []            # first keywords of the current statement (upper case)
    atomic_depth = 0      # inside BEGIN ATOMIC ... END of CREATE FUNCTION/PROCEDURE

    def fail(what, at_line):
        raise SqlSplitError('%s line %d: %s' % (filename, at_line, what), file=filename, line=at_line)

    while i < n:
        c = sql[i]
        if c == '\n':
            line += 1
            i += 1
            continue
        if c in ' \t\r\f\v':
            i += 1
            continue
        # comments never start a statement
        if c == '-' and sql.startswith('--', i):
            j = sql.find('\n', i)
            i = n if j < 0 else j
            continue
        if c == '/' and sql.startswith('/*', i):
            depth = 0
            at = line
            while i < n:
                if sql.startswith('/*', i):
                    depth += 1
                    i += 2
                elif sql.startswith('*/', i):
                    depth -= 1
                    i += 2
                    if depth == 0:
                        break
                else:
                    if sql[i] == '\n':
                        line += 1
                    i += 1
            if depth:
                fail('unterminated /* comment */ starting here', at)
            continue
        if c == '\\':
            m = re.match(r'\\[A-Za-z!?]*', sql[i:])
            fail('psql meta-command "%s" is not supported; the engine sends SQL to the server '
                 'directly (use a placeholder instead of \\set, and one file per script instead '
                 'of \\i)' % (m.group(0) if m else '\\'), line)
        if c == ';':
            if start is not None and atomic_depth == 0:
                text = sql[start:i].strip()
                if text:
                    statements.append(Statement(text, start_line))
                start = None
                words = []
            i += 1
            continue
        if start is None:
            start = i
            start_line = line
        if c == "'":
            escape = i > 0 and sql[i - 1] in 'eE' and (i < 2 or not _IDENT_CHAR.match(sql[i - 2]))
            at = line
            i += 1
            while True:
                if i >= n:
                    fail('unterminated quoted string starting here', at)
                ch = sql[i]
                if escape and ch == '\\':
                    if i + 1 < n and sql[i + 1] == '\n':
                        line += 1
                    i += 2
                    continue
                if ch == '\n':
                    line += 1
                if ch == "'":
                    if i + 1 < n and sql[i + 1] == "'":
                        i += 2
                        continue
                    i += 1
                    break
                i += 1
            continue
        if c == '"':
            at = line
            j = i + 1
            while True:
                k = sql.find('"', j)
                if k < 0:
                    fail('unterminated quoted identifier starting here', at)
                if sql.startswith('""', k):
                    j = k + 2
                    continue
                break
            line += sql.count('\n', i, k)
            i = k + 1
            continue
        if c == '$' and not (i > 0 and _IDENT_CHAR.match(sql[i - 1])):
            m = _DOLLAR_TAG.match(sql, i)
            if m:
                tag = m.group(0)
                end = sql.find(tag, m.end())
                if end < 0:
                    fail('unterminated dollar-quoted string %s starting here' % tag, line)
                line += sql.count('\n', i, end)
                i = end + len(tag)
                continue
        m = _WORD.match(sql, i)
        if m:
            word = m.group(0).upper()
            if len(words) < 8:
                words.append(word)
            if _is_routine(words):
                if word == 'ATOMIC' and len(words) > 1 and _prev_word(sql, i) == 'BEGIN':
                    atomic_depth += 1
                elif atomic_depth and word == 'CASE':
                    atomic_depth += 1
                elif atomic_depth and word == 'END':
                    atomic_depth -= 1
            i = m.end()
            continue
        i += 1
    if start is not None:
        text = sql[start:].strip()
        if text:
            statements.append(Statement(text, start_line))
    return statements


def _is_routine(words):
    if not words or words[0] != 'CREATE':
        return False
    rest = words[1:]
    if rest[:2] == ['OR', 'REPLACE']:
        rest = rest[2:]
    return bool(rest) and rest[0] in ('FUNCTION', 'PROCEDURE')


def _prev_word(sql, i):
    j = i - 1
    while j >= 0 and sql[j].isspace():
        j -= 1
    k = j
    while k >= 0 and (sql[k].isalnum() or sql[k] == '_'):
        k -= 1
    return sql[k + 1:j + 1].upper()
