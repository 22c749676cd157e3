# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Migration files: discovery, naming, placeholders, directives and checksums.

Accepted names (anything else ending in ``.sql`` is an error naming the file):

* ``V<version>__<description>.sql``  versioned (Flyway style)
* ``U<version>__<description>.sql``  undo of that version
* ``R__<description>.sql``           repeatable, re-applied when its checksum changes
* ``<version>_<name>.up.sql`` / ``<version>_<name>.down.sql``  (golang-migrate pair)
* ``<version>_<name>.sql`` with ``-- migrate:up`` and optionally ``-- migrate:down``
  sections (dbmate); ``transaction:false`` after a marker runs that part
  outside a transaction.  Each part keeps the file's line numbers.
* a folder ``<version>_<name>/`` holding ``up.sql`` and optionally ``down.sql``
  (Diesel, Sourcegraph; ``<version>`` may be Diesel's ``2019-01-01-000000``,
  stored as ``20190101000000`` as Diesel does), or ``migration.sql`` alone
  (Prisma).  A Diesel ``metadata.toml`` with ``run_in_transaction = false``
  or a Sourcegraph ``metadata.yaml`` with ``createIndexConcurrently: true``
  runs the file outside a transaction.  The folder layout and flat
  versioned files cannot be mixed in one folder (repeatables can).

``<version>`` is dotted numbers (``1``, ``1.2.10``; ``_`` is accepted in place
of ``.`` in the Flyway style) or a UTC timestamp such as ``20240101120000``;
versions compare numerically part by part, trailing zero parts ignored
(``1.0`` and ``1`` are the same version, hence a duplicate).

Checksum: SHA-256 (hex) of the file text after placeholder substitution and
this normalisation, and nothing else: a UTF-8 byte-order mark is dropped; CRLF
and lone CR line endings become LF; trailing spaces and tabs are removed from
every line; blank lines at the start and at the end of the file are removed.
Comments, indentation and letter case are content: changing them changes the
checksum.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import os
import re

from ansible_collections.dbdevops.postgresql.plugins.module_utils.errors import DbDevopsError
from ansible_collections.dbdevops.postgresql.plugins.module_utils import _sqlsplit

_VERSION = r'(\d+(?:[._]\d+)*)'
_FLYWAY = re.compile(r'^([VU])' + _VERSION + r'__(.+)\.sql$')
_REPEATABLE = re.compile(r'^R__(.+)\.sql$')
_PAIR = re.compile(r'^(\d+(?:\.\d+)*)_(.+)\.(up|down)\.sql$')
_FOLDER = re.compile(r'^(\d{4}-\d{2}-\d{2}-\d{6}|\d+(?:\.\d+)*)(?:_(.+))?$')
_FOLDER_FILES = ('up.sql', 'down.sql', 'migration.sql')
_DBMATE = re.compile(r'^(\d+)_(.+)\.sql$')
_DBMATE_MARK = re.compile(r'^--[ \t]*migrate:(up|down)\b([^\n]*)$', re.M)
_PLACEHOLDER = re.compile(r'\$\{([A-Za-z_][A-Za-z0-9_.]*)\}')
_DIRECTIVE = re.compile(r'^[ \t]*--[ \t]*dbdevops:([A-Za-z_-]+)[ \t]*=[ \t]*([^\n]*?)[ \t]*$', re.M)
_KNOWN_DIRECTIVES = {'transaction': ('on', 'off'), 'lint-ignore': None}

KIND_VERSIONED = 'versioned'
KIND_UNDO = 'undo'
KIND_REPEATABLE = 'repeatable'


class MigrationFilesError(DbDevopsError):
    """The migrations folder cannot be used as it is; the message names the files."""


def version_key(text):
    """``'1.2.0'`` -> ``(1, 2)``: numeric parts, trailing zero parts dropped."""
    parts = [int(p) for p in str(text).strip().replace('_', '.').split('.')]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def version_text(key):
    return '.'.join(str(p) for p in key)


def is_version(text):
    return bool(re.match(r'^' + _VERSION + r'$', str(text).strip()))


def normalise(text):
    """The checksum normalisation described in the module docstring."""
    if text.startswith('\ufeff'):
        text = text[1:]
    text = text.replace('\r\n', '\n').replace('\r', '\n')
    lines = [ln.rstrip(' \t') for ln in text.split('\n')]
    while lines and not lines[0]:
        lines.pop(0)
    while lines and not lines[-1]:
        lines.pop()
    return '\n'.join(lines) + '\n' if lines else ''


def checksum(text):
    return hashlib.sha256(normalise(text).encode('utf-8')).hexdigest()


def substitute(text, placeholders, filename):
    """Replace ``${name}``; an unknown name is an error naming file and line."""
    if '${' not in text:
        return text

    def repl(match):
        name = match.group(1)
        if name not in placeholders:
            line = text.count('\n', 0, match.start()) + 1
            raise MigrationFilesError(
                '%s line %d: placeholder ${%s} has no value; add it to the placeholders option '
                '(known: %s)' % (filename, line, name, ', '.join(sorted(placeholders)) or 'none'),
                file=filename, line=line)
        value = placeholders[name]
        if isinstance(value, bool):
            value = 'true' if value else 'false'
        return '%s' % (value,)

    return _PLACEHOLDER.sub(repl, text)


MASK = '********'


class Masker(object):
    """Hides the values of secret placeholders in whatever is shown (plan, errors, history)."""

    def __init__(self, secrets=None):
        values = set()
        for value in (secrets or {}).values():
            if isinstance(value, bool):
                value = 'true' if value else 'false'
            value = '%s' % (value,) if value is not None else ''
            if value:
                values.add(value)
        # the longest first, so a secret containing another is hidden whole
        self.values = sorted(values, key=len, reverse=True)

    def __bool__(self):
        return bool(self.values)

    def text(self, text):
        if not self.values or not isinstance(text, str):
            return text
        for value in self.values:
            text = text.replace(value, MASK)
        return text

    def value(self, obj):
        """``obj`` (dicts, lists, strings) with every secret replaced by the mask."""
        if not self.values:
            return obj
        if isinstance(obj, str):
            return self.text(obj)
        if isinstance(obj, dict):
            return dict((k, self.value(v)) for k, v in obj.items())
        if isinstance(obj, (list, tuple)):
            return type(obj)(self.value(v) for v in obj)
        return obj


class MigrationFile(object):
    """One file of the folder, read and prepared (placeholders applied)."""

    def __init__(self, kind, version, description, path, text, shown=None, script=None):
        self.kind = kind
        self.key = version_key(version) if version is not None else None
        self.version = version_text(self.key) if self.key is not None else None
        self.description = description
        self.path = path
        self.script = script or os.path.basename(path)   # <folder>/up.sql in the folder layout
        self.sql = text                   # what runs (secret placeholders substituted)
        self.shown = text if shown is None else shown   # what is shown: secrets masked
        self.checksum = checksum(self.shown)            # a new secret value is not a new file
        self.directives = _directives(self.shown, self.script)
        self.transactional = self.directives.get('transaction', 'on') != 'off'
        self.lint_ignore = set(r.strip() for r in self.directives.get('lint-ignore', '').split(',')
                               if r.strip())
        self._statements = None
        self._changes_session = None

    @property
    def changes_session(self):
        """Whether a statement may leave settings in the session (``SET``, ``set_config``, a ``DO``
        or ``SELECT`` that may call it, ...): the next file then starts with a reset."""
        if self._changes_session is None:
            self._changes_session = any(not _SESSION_SAFE.match(s.text) or 'set_config' in s.text.lower()
                                        for s in self.statements)
        return self._changes_session

    @property
    def statements(self):
        """The statements, split lazily (a syntax problem surfaces at plan time)."""
        if self._statements is None:
            statements = _sqlsplit.split(self.sql, self.script)
            if self.transactional:
                _refuse_transaction_control(statements, self.script)
            self._statements = statements
        return self._statements

    def to_dict(self):
        return dict(kind=self.kind, version=self.version, description=self.description,
                    script=self.script, checksum=self.checksum, transactional=self.transactional)

    def __repr__(self):
        return 'MigrationFile(%s %s)' % (self.kind, self.script)


# statements that leave no setting behind in the session (a SET inside CREATE FUNCTION is the
# function's own); anything else, and any text calling set_config, may
_SESSION_SAFE = re.compile(r'(CREATE|ALTER|DROP|INSERT|UPDATE|DELETE|MERGE|COMMENT|GRANT|REVOKE|TRUNCATE|'
                           r'REFRESH|REINDEX|VACUUM|ANALYZE|CLUSTER|LOCK|SAVEPOINT|RELEASE|ROLLBACK\s+TO|'
                           r'SECURITY\s+LABEL|IMPORT|COPY)\b', re.I)

_TX_CONTROL = re.compile(r'(BEGIN|START\s+TRANSACTION|COMMIT|END|ROLLBACK|ABORT|PREPARE\s+TRANSACTION)\b'
                         r'(?!\s+(?:TO\b|PREPARED\b))', re.I)


def _refuse_transaction_control(statements, script):
    """A transactional file must not end or start transactions itself.

    The engine wraps the file and its history row in one transaction; a COMMIT in
    the file would commit half of the migration without its history row.
    ``ROLLBACK TO [SAVEPOINT]`` and savepoints are fine.
    """
    for stmt in statements:
        match = _TX_CONTROL.match(stmt.text)
        if match:
            raise MigrationFilesError(
                '%s line %d: %s in a file that runs in a transaction: the engine wraps each file '
                'in one transaction together with its history row, so this would commit or abort '
                'part of the migration; remove the transaction commands from the file, or put '
                '"-- dbdevops:transaction=off" in it to manage transactions yourself'
                % (script, stmt.line, ' '.join(match.group(1).upper().split())),
                file=script, line=stmt.line, statement=stmt.text)


def _directives(text, script):
    found = {}
    if 'dbdevops:' not in text:
        return found
    for match in _DIRECTIVE.finditer(text):
        name, value = match.group(1).lower(), match.group(2).lower().strip()
        line = text.count('\n', 0, match.start()) + 1
        if name not in _KNOWN_DIRECTIVES:
            raise MigrationFilesError(
                '%s line %d: unknown directive "dbdevops:%s"; known: %s'
                % (script, line, name, ', '.join(sorted(_KNOWN_DIRECTIVES))), file=script, line=line)
        allowed = _KNOWN_DIRECTIVES[name]
        if allowed and value not in allowed:
            raise MigrationFilesError(
                '%s line %d: directive dbdevops:%s=%s must be one of %s'
                % (script, line, name, value, '/'.join(allowed)), file=script, line=line)
        found[name] = value
    return found


def classify(name):
    """(kind, version, description) for a file name, or None when misnamed."""
    m = _FLYWAY.match(name)
    if m:
        kind = KIND_VERSIONED if m.group(1) == 'V' else KIND_UNDO
        return kind, m.group(2), m.group(3).replace('_', ' ')
    m = _REPEATABLE.match(name)
    if m:
        return KIND_REPEATABLE, None, m.group(1).replace('_', ' ')
    m = _PAIR.match(name)
    if m:
        kind = KIND_VERSIONED if m.group(3) == 'up' else KIND_UNDO
        return kind, m.group(1), m.group(2).replace('_', ' ')
    return None


class MigrationSet(object):
    """All files of a folder: versioned and undo by version key, repeatables by description."""

    def __init__(self, path, versioned, undo, repeatable, warnings, masker=None):
        self.path = path
        self.masker = masker or Masker()
        self.versioned = versioned        # key -> MigrationFile
        self.undo = undo                  # key -> MigrationFile
        self.repeatable = repeatable      # description -> MigrationFile
        self.warnings = warnings
        self.layout = None                # 'flat', 'folder' (one per migration) or None (no versions)

    def versions(self):
        return sorted(self.versioned)

    def latest(self):
        return max(self.versioned) if self.versioned else None

    def all_files(self):
        return ([self.versioned[k] for k in sorted(self.versioned)]
                + [self.undo[k] for k in sorted(self.undo)]
                + [self.repeatable[d] for d in sorted(self.repeatable)])


def _read(path):
    """The bytes of a file: os.read is about twice as fast as open() for small files."""
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks = []
        while True:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                return b''.join(chunks)
            chunks.append(chunk)
    finally:
        os.close(fd)


def _load(full, name, dirent=None):
    """``(text, None)`` of a migration file, or ``(None, why)`` when it cannot be used."""
    try:
        regular = dirent.is_file() if dirent is not None else os.path.isfile(full)
    except OSError:
        regular = False
    if not regular:
        why = ('a dangling symbolic link' if os.path.islink(full) and not os.path.exists(full)
               else 'not a regular file')
        return None, '%s (%s)' % (name, why)
    try:
        raw = _read(full)
    except (IOError, OSError) as exc:
        return None, '%s (%s)' % (name, exc.strerror or exc)
    try:
        text = raw.decode('utf-8')
    except UnicodeDecodeError as exc:
        return None, '%s (not UTF-8 at byte %d)' % (name, exc.start)
    if '\x00' in text:
        return None, '%s (contains a NUL byte at line %d)' % (name, text.count('\n', 0, text.index('\x00')) + 1)
    return text, None


def _dbmate_parts(name, text):
    """The up and down entries of a dbmate file, or None when it has no ``-- migrate:up``.

    Each part is padded with the blank lines before it, so its statements keep the
    line numbers of the file (blank lines at the start do not change a checksum).
    """
    marks = list(_DBMATE_MARK.finditer(text))
    if not marks or marks[0].group(1) != 'up':
        return None
    version, description = _DBMATE.match(name).groups()
    out = []
    for i, mark in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        body = text[mark.end():end]
        if not body.strip() and mark.group(1) == 'down':
            continue
        padded = '\n' * text.count('\n', 0, mark.end()) + body
        kind = KIND_VERSIONED if mark.group(1) == 'up' else KIND_UNDO
        transactional = not re.search(r'\btransaction:false\b', mark.group(2))
        out.append(((kind, version, description.replace('_', ' ')), None, padded,
                    dict(script=name, transactional=transactional, padded=True)))
    return out


def _folder_metadata(folder):
    """(description, transactional) from a Diesel ``metadata.toml`` / Sourcegraph ``metadata.yaml``."""
    description, transactional = None, True
    for meta in ('metadata.toml', 'metadata.yaml'):
        try:
            with open(os.path.join(folder, meta), 'rb') as handle:
                text = handle.read().decode('utf-8', 'replace')
        except (IOError, OSError):
            continue
        if re.search(r'^\s*run_in_transaction\s*=\s*false\s*$', text, re.M | re.I) or \
                re.search(r'^\s*createIndexConcurrently\s*:\s*true\s*$', text, re.M | re.I):
            transactional = False
        match = re.search(r'^name\s*:\s*[\'"]?(.*?)[\'"]?\s*$', text, re.M)
        if match and match.group(1):
            description = match.group(1)
    return description, transactional


def _folder_entries(dirent, match, entries, problems):
    """The files of one migration folder ``<version>_<name>/`` added to ``entries``."""
    folder = dirent.name
    version = match.group(1).replace('-', '')
    try:
        with os.scandir(dirent.path) as listing:
            names = dict((e.name, e) for e in listing)
    except OSError as exc:
        problems['unreadable'].append('%s/ (%s)' % (folder, exc.strerror))
        return
    sql = sorted(n for n in names if n.lower().endswith('.sql'))
    unexpected = [n for n in sql if n not in _FOLDER_FILES]
    if unexpected or not sql:
        problems['folders'].append(
            '%s/ holds %s (a migration folder holds up.sql and down.sql, or migration.sql)'
            % (folder, ', '.join(unexpected) if unexpected else 'no .sql file'))
        return
    if 'migration.sql' in names and ('up.sql' in names or 'down.sql' in names):
        problems['folders'].append('%s/ holds both migration.sql and %s; keep one'
                                   % (folder, 'up.sql' if 'up.sql' in names else 'down.sql'))
        return
    if 'down.sql' in names and 'up.sql' not in names:
        problems['folders'].append('%s/ holds down.sql but no up.sql' % folder)
        return
    description, transactional = _folder_metadata(dirent.path)
    description = (match.group(2) or '').replace('_', ' ') or description or 'migration %s' % version
    for name in sql:
        kind = KIND_UNDO if name == 'down.sql' else KIND_VERSIONED
        script = '%s/%s' % (folder, name)
        text, why = _load(os.path.join(dirent.path, name), script, names[name])
        if why:
            problems['unreadable'].append(why)
            continue
        entries.append(((kind, version, description), os.path.join(dirent.path, name), text,
                        dict(script=script, transactional=transactional)))


def discover(path, placeholders=None, secrets=None, expand=True):
    """Read every migration file of ``path`` (and its migration folders); errors name the files.

    ``secrets`` are placeholders whose values run but are never shown: the
    file's ``shown`` text and its checksum have ``********`` in their place.
    ``expand=False`` leaves ``${name}`` as written (for listing versions, as
    migration_new does, where no placeholder values are known).
    """
    placeholders = dict(placeholders or {})
    secrets = dict(secrets or {})
    masked = dict(placeholders, **dict((k, MASK) for k in secrets))
    placeholders.update(secrets)
    if not path:
        raise MigrationFilesError('path is empty: give the folder holding the migration files')
    if not os.path.isdir(path):
        what = 'is not a directory' if os.path.exists(path) else 'does not exist'
        raise MigrationFilesError('migrations folder %s %s; check the path option' % (path, what),
                                  path=path)
    dirents, folders = [], []
    try:
        # scandir: the entry type comes with the listing, no stat() per file
        with os.scandir(path) as listing:
            for e in listing:
                if e.name.lower().endswith('.sql'):
                    dirents.append((e.name, e))
                elif _FOLDER.match(e.name) and e.is_dir():
                    folders.append((e.name, e))
    except OSError as exc:
        raise MigrationFilesError('cannot list migrations folder %s: %s' % (path, exc.strerror),
                                  path=path)
    dirents.sort()
    folders.sort()
    misnamed, entries = [], []
    problems = dict(unreadable=[], folders=[])
    for name, dirent in dirents:
        parsed = classify(name)
        if parsed is None and not _DBMATE.match(name):
            misnamed.append(name)
            continue
        text, why = _load(dirent.path, name, dirent)
        if why:
            problems['unreadable'].append(why)
            continue
        if parsed is None:
            parts = _dbmate_parts(name, text)
            if parts is None:
                misnamed.append(name)
            entries.extend(parts or [])
            continue
        entries.append((parsed, dirent.path, text, None))
    flat = [e for e in entries if e[0][0] != KIND_REPEATABLE]
    for name, dirent in folders:
        _folder_entries(dirent, _FOLDER.match(name), entries, problems)
    unreadable = problems['unreadable']
    out = []
    if misnamed:
        out.append('misnamed migration files (expected V<version>__<description>.sql, '
                   'U<version>__<description>.sql, R__<description>.sql, '
                   '<version>_<name>.up.sql/.down.sql, <version>_<name>.sql with a "-- migrate:up" '
                   'line (dbmate) or a folder <version>_<name>/ with up.sql and down.sql): %s'
                   % ', '.join(misnamed))
    if unreadable:
        out.append('unreadable migration files: %s' % ', '.join(unreadable))
    if problems['folders']:
        out.append('migration folders: %s' % '; '.join(problems['folders']))
    if flat and folders:
        out.append('%s mixes two layouts: flat files (%s) and folders per migration (%s/); keep one '
                   'layout per folder (repeatable R__ files may stay)'
                   % (path, flat[0][3]['script'] if flat[0][3] else os.path.basename(flat[0][1]),
                      folders[0][0]))
    if out:
        raise MigrationFilesError('%s: %s; nothing was applied' % (path, '; '.join(out)),
                                  path=path, misnamed=misnamed, unreadable=unreadable,
                                  folder_problems=problems['folders'])

    versioned, undo, repeatable = {}, {}, {}
    duplicates = []
    for (kind, version, description), full, text, extra in entries:
        full = full or os.path.join(path, extra['script'])
        script = extra['script'] if extra else os.path.basename(full)
        shown = substitute(text, masked, script) if secrets and expand else None
        text = substitute(text, placeholders, script) if expand else text
        if extra and extra.get('padded'):
            # a dbmate section runs padded (its line numbers), is shown without the padding
            shown = (shown if shown is not None else text).lstrip('\n')
        mfile = MigrationFile(kind, version, description, full, text, shown,
                              script=extra['script'] if extra else None)
        if extra and not extra['transactional']:
            mfile.transactional = False
        bucket, key = ((versioned, mfile.key) if kind == KIND_VERSIONED else
                       (undo, mfile.key) if kind == KIND_UNDO else
                       (repeatable, description))
        if key in bucket:
            duplicates.append('%s and %s (%s %s)'
                              % (bucket[key].script, mfile.script, kind, mfile.version or description))
            continue
        bucket[key] = mfile
    if duplicates:
        raise MigrationFilesError('%s: two files for one version: %s; rename one; nothing was applied'
                                  % (path, '; '.join(duplicates)), path=path, duplicates=duplicates)
    warnings = ['%s undoes version %s, which has no versioned file' % (u.script, u.version)
                for k, u in sorted(undo.items()) if k not in versioned]
    result = MigrationSet(path, versioned, undo, repeatable, warnings, Masker(secrets))
    result.layout = 'folder' if folders else ('flat' if flat else None)
    return result
