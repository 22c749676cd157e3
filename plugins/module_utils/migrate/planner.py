# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The plan: which steps a run does, from the files, the history and the catalog; reads only.

``build_plan(history, files, opts, catalog_conn)`` checks the applied files'
checksums, places a baseline, picks the target, refuses out-of-order and
unwanted downgrades, then lists undo, versioned and repeatable steps, splits
their statements (a syntax problem stops the plan, not the run), warns about
INVALID indexes and lints.  Every refusal is a MigrationError saying that
nothing was applied.  No Ansible imports.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from ansible_collections.dbdevops.postgresql.plugins.module_utils._sqlsplit import SqlSplitError
from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate import files as mfiles
from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate import lint as mlint
from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate.history import row_summary
from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate.steps import (
    MigrationError, MigrationPlan, Step, vt)


def build_plan(history, files, opts, catalog_conn=None):
    """The MigrationPlan of ``files`` against ``history`` (a History); raises MigrationError."""
    plan = MigrationPlan()
    plan.warnings.extend(files.warnings)
    plan.next_rank = history.max_rank + 1
    plan.failed = [row_summary(r) for r in history.failed.values()]
    _check_applied_files(plan, history, files, opts)
    baseline = _baseline(plan, history, opts)
    applied_keys = list(history.applied) + ([baseline] if baseline is not None else [])
    current = max(applied_keys) if applied_keys else None
    pending = [k for k in files.versions()
               if not (k in history.applied or (baseline is not None and k <= baseline))]
    target = _target(files, current, opts, set(history.applied) | set(applied_keys))
    plan.current_version, plan.target_version = vt(current), vt(target)
    plan.pending = [mfiles.version_text(k) for k in pending]
    # target 0 is "nothing applied": a version 0 file is undone too
    wanted = [k for k in pending if target is None or (k <= target and target != ZERO)]
    _refuse_out_of_order([k for k in wanted if current is not None and k < current],
                         files, current, opts)
    downs = sorted([k for k in history.applied if target is not None and (k > target or target == ZERO)],
                   reverse=True)
    if downs:
        plan.steps.extend(_undo_steps(downs, files, current, target, baseline, opts))
    plan.steps.extend(Step('versioned', 'up', files.versioned[k]) for k in wanted)
    if not downs:
        # repeatables never run in a plan that undoes versions (they may use what the
        # undo removes); after a downgrade they run again with the next upgrade
        plan.steps.extend(_repeatable_steps(history, files, upgrading=bool(wanted)))
    will_apply = set(wanted)
    plan.pending_after = [mfiles.version_text(k) for k in pending if k not in will_apply]
    for step in plan.steps:
        if step.file is not None:
            _check_statements(step.file)
    if catalog_conn is not None:
        _warn_invalid_indexes(plan, catalog_conn, opts)
    if opts.lint and plan.steps:
        _lint(plan, catalog_conn, opts)
    return plan


def _check_statements(mfile):
    """Split the file (a syntax problem or a psql meta-command stops the plan) and refuse what
    only psql could run."""
    try:
        statements = mfile.statements
    except SqlSplitError as exc:
        raise MigrationError('%s; nothing was applied' % exc, **exc.details)
    for stmt in statements:
        if stmt.copy == 'stdout':
            raise MigrationError(
                '%s line %d: COPY ... TO stdout sends rows to the client, and a migration reads no '
                'results; remove it, or COPY to a server file; nothing was applied; statement: %s'
                % (mfile.script, stmt.line, stmt.short()),
                file=mfile.script, line=stmt.line, statement=stmt.text)


def _check_applied_files(plan, history, files, opts):
    """Checksums of applied files, before anything runs: refused, or repair steps."""
    plan.mismatches, plan.missing_files = history.check_files(files)
    if plan.missing_files:
        plan.warnings.append('applied versions with no file in %s: %s'
                             % (opts.path, ', '.join(plan.missing_files)))
    if plan.mismatches and not opts.repair:
        raise MigrationError(
            'checksum validation failed, nothing was applied: %s changed after it was applied; '
            'restore the file, or set repair: true to accept the new content'
            % '; '.join('%(script)s (applied %(applied_checksum)s, file now %(file_checksum)s)' % m
                        for m in plan.mismatches),
            checksum_mismatches=plan.mismatches)
    for m in plan.mismatches:
        plan.steps.append(Step('repair', 'none', files.versioned[mfiles.version_key(m['version'])],
                               note='applied checksum was %s' % m['applied_checksum']))


def _baseline(plan, history, opts):
    """The baseline key after this plan (a baseline step is added on a fresh history)."""
    baseline = history.baseline
    if opts.baseline_version is None:
        return baseline
    if not mfiles.is_version(opts.baseline_version):
        raise MigrationError('baseline_version "%s" is not a version (dotted numbers or a '
                             'timestamp)' % opts.baseline_version)
    bkey = mfiles.version_key(opts.baseline_version)
    if baseline is None and not history.applied:
        plan.steps.append(Step('baseline', 'none', version=mfiles.version_text(bkey),
                               description='baseline'))
        return bkey
    if baseline != bkey:
        raise MigrationError(
            'cannot baseline at %s: %s.%s already has history (current version %s); '
            'baseline only applies to a database with no applied migrations'
            % (opts.baseline_version, opts.history_schema, opts.history_table, vt(history.current())))
    return baseline


ZERO = (0,)


def _target(files, current, opts, applied):
    """The target key: the option, else the latest of the files and the current version.

    A target must be a version of a file or of the history, 0 (undo everything) or
    below the first version (the same); anything else is refused naming the nearest.
    """
    if opts.target is None:
        known = [k for k in [files.latest(), current] if k is not None]
        return max(known) if known else None
    if not mfiles.is_version(opts.target):
        raise MigrationError('target "%s" is not a version: give dotted numbers, a timestamp, '
                             'or "latest"' % opts.target)
    key = mfiles.version_key(opts.target)
    known = sorted(set(files.versions()) | set(applied))
    if key == ZERO or key in known or (known and key < known[0]):
        return key
    lower = [k for k in known if k < key]
    upper = [k for k in known if k > key]
    nearest = ([lower[-1]] if lower else []) + ([upper[0]] if upper else [])
    raise MigrationError(
        'target %s: no migration in %s has that version, and none was applied; nearest: %s%s; give '
        'one of the versions, 0 to undo everything, or latest; nothing was applied'
        % (opts.target, opts.path, ', '.join(vt(k) for k in nearest) or 'none (no migration files)',
           ' (the newest)' if lower and not upper else ''),
        nearest=[vt(k) for k in nearest])


def _refuse_out_of_order(older, files, current, opts):
    if older and not opts.out_of_order:
        raise MigrationError(
            'out-of-order migrations: %s are older than the current version %s and were never '
            'applied; nothing was applied. Renumber them above %s, or set out_of_order: true '
            'to apply them' % (', '.join(files.versioned[k].script for k in older),
                               vt(current), vt(current)),
            out_of_order=[files.versioned[k].script for k in older])


def _undo_steps(downs, files, current, target, baseline, opts):
    """Undo steps for the applied versions ``downs`` (newest first), when allowed and possible."""
    if not opts.allow_downgrade:
        raise MigrationError(
            'target %s is below the current version %s: that undoes %s; set '
            'allow_downgrade: true to do it; nothing was applied'
            % (vt(target), vt(current), ', '.join(vt(k) for k in downs)))
    if baseline is not None and target < baseline:
        raise MigrationError('target %s is below the baseline %s; a baselined database '
                             'cannot go below it' % (vt(target), vt(baseline)))
    missing = [k for k in downs if k not in files.undo]
    if missing:
        raise MigrationError(
            'cannot downgrade to %s: no undo file for %s (expected %s); nothing was undone'
            % (vt(target), ', '.join(vt(k) for k in missing),
               ', '.join('U%s__<description>.sql or %s_<name>.down.sql' % (vt(k), vt(k))
                         for k in missing)),
            missing_undo=[vt(k) for k in missing])
    return [Step('undo', 'down', files.undo[k]) for k in downs]


def _repeatable_steps(history, files, upgrading):
    steps = []
    for desc in sorted(files.repeatable):
        rfile = files.repeatable[desc]
        why = history.repeatable_due(rfile, upgrading)
        if why:
            steps.append(Step('repeatable', 'up', rfile, note=why))
    return steps


def _warn_invalid_indexes(plan, conn, opts):
    plan.invalid_indexes = invalid_indexes(conn, plan.steps)
    for idx in plan.invalid_indexes:
        plan.warnings.append(
            'index %s is INVALID (left by a failed CREATE INDEX CONCURRENTLY) and %s '
            'builds it again; %s' % (idx['index'], idx['script'],
                                     'it will be dropped first' if opts.drop_invalid_indexes
                                     else 'set drop_invalid_indexes: true to drop it first'))


def _lint(plan, catalog_conn, opts):
    lintable = [s for s in plan.steps if s.kind in ('versioned', 'undo', 'repeatable')]
    findings = mlint.lint_steps(lintable, mlint.Catalog(catalog_conn), lock_timeout=opts.lock_timeout,
                                statement_timeout=opts.statement_timeout,
                                rules=opts.lint_rules or None)
    if findings is None:
        plan.warnings.append(mlint.SKIPPED_MESSAGE)
        return
    findings = _without_misread(findings, lintable)
    plan.lint = findings
    _refuse_unparsable(findings, catalog_conn)
    if findings and opts.fail_on_lint:
        raise MigrationError(
            'lint failed (fail_on_lint is set), nothing was applied: %s'
            % '; '.join(f.text() for f in findings),
            lint=[f.to_dict() for f in findings])
    plan.warnings.extend(f.text() for f in findings)


def _without_misread(findings, steps):
    """Findings less the parse errors of statements the parser cannot read as the server will:
    after ``SET standard_conforming_strings = off`` a backslash escapes in ``''`` strings, and
    pglast always parses with the setting on (the server judges those statements)."""
    misread = set((s.file.script, stmt.line) for s in steps if s.file is not None
                  for stmt in s.file.statements if not stmt.standard_strings)
    if not misread:
        return findings
    return [f for f in findings if not (f.rule == 'parse-error' and (f.script, f.line) in misread)]


def _refuse_unparsable(findings, catalog_conn):
    """A statement PostgreSQL's own parser rejects is an error, in check mode too.

    Only a warning when the server is newer than the grammar pglast carries
    (the statement may use syntax pglast does not know yet).
    """
    rejected = [f for f in findings if f.rule == 'parse-error']
    if not rejected:
        return
    grammar = mlint.parser_major()
    server = (getattr(catalog_conn, 'server_version', 0) or 0) // 10000
    if grammar is None or (server and server > grammar):
        return
    raise MigrationError(
        "PostgreSQL's parser (the %d grammar, through pglast) rejects %s; fix the statement%s; "
        'nothing was applied' % (grammar, '; '.join('%s line %d: %s; statement: %s' % (
            f.script, f.line, f.message.replace('cannot parse: ', ''), f.statement) for f in rejected),
            '' if len(rejected) == 1 else 's'),
        file=rejected[0].script, line=rejected[0].line, lint=[f.to_dict() for f in rejected])


def invalid_indexes(conn, steps):
    """INVALID indexes that the non-transactional ``steps`` build with CREATE INDEX CONCURRENTLY."""
    names = {}
    for step in steps:
        if step.file is None or step.file.transactional:
            continue
        for stmt in step.file.statements:
            name = _concurrent_index_name(stmt.text)
            if name:
                names[name] = step.script
    if not names:
        return []
    with conn.cursor() as cur:
        cur.execute("SELECT n.nspname, c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE NOT i.indisvalid AND c.relname = ANY(%s)", (list(names),))
        return [dict(index='%s.%s' % (s, n), schema=s, name=n, script=names[n])
                for s, n in cur.fetchall()]


# INVALID indexes not being built right now (a concurrent build in progress is INVALID too)
_INVALID_SQL = """
SELECT i.indexrelid::bigint, n.nspname, c.relname, quote_ident(tn.nspname) || '.' || quote_ident(t.relname),
       pg_catalog.pg_get_indexdef(i.indexrelid)
  FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_catalog.pg_class t ON t.oid = i.indrelid JOIN pg_catalog.pg_namespace tn ON tn.oid = t.relnamespace
 WHERE NOT i.indisvalid
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_stat_progress_create_index p WHERE p.index_relid = i.indexrelid)
 ORDER BY 2, 3
"""


def all_invalid_indexes(conn):
    """Every INVALID index of the database (none being built): index, table, definition."""
    return [dict(index='%s.%s' % (r[1], r[2]), table=r[3], definition=r[4]) for r in _read_invalid(conn)]


def _read_invalid(conn):
    with conn.cursor() as cur:
        cur.execute(_INVALID_SQL)
        return cur.fetchall()


def invalid_since(conn, before=None, names=()):
    """Without ``before``: the set of INVALID index oids now.  With it: the INVALID indexes
    (dicts) that are not in ``before`` or are named in ``names`` (a statement built them)."""
    found = _read_invalid(conn)
    if before is None:
        return set(r[0] for r in found)
    return [dict(index='%s.%s' % (r[1], r[2]), schema=r[1], name=r[2], table=r[3])
            for r in found if r[0] not in before or r[2] in names]


def named_indexes(text):
    """Names of the indexes a CREATE INDEX CONCURRENTLY statement builds (a failed REINDEX
    CONCURRENTLY leaves a new ``_ccnew`` index, which ``invalid_since`` finds as new)."""
    name = _concurrent_index_name(text)
    return (name,) if name else ()


def _concurrent_index_name(text):
    m = re.match(r'\s*CREATE\s+(?:UNIQUE\s+)?INDEX\s+CONCURRENTLY\s+(?:IF\s+NOT\s+EXISTS\s+)?'
                 r'("(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)', text, re.I)
    if not m:
        return None
    name = m.group(1)
    return name[1:-1].replace('""', '"') if name.startswith('"') else name.lower()
