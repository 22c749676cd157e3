"""Schema fingerprint, comparison and sync script on real databases."""

import subprocess
import types

import pytest

from ansible_collections.dbdevops.postgresql.plugins.module_utils import fingerprint
from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate.options import MigrateOptions
from tests.harness import REPO_ROOT
from tests.harness.migrate_samples import engine, info, migrate, write

SCHEMA = """
CREATE EXTENSION IF NOT EXISTS pgcrypto;
CREATE SCHEMA app;
CREATE TYPE app.role AS ENUM ('owner', 'member');
CREATE SEQUENCE app.ticket_seq START 100;
CREATE TABLE app.users (id bigserial PRIMARY KEY, email text NOT NULL UNIQUE,
                        created timestamptz DEFAULT now());
CREATE TABLE app.projects (id bigserial PRIMARY KEY, owner_id bigint REFERENCES app.users,
                           name text CHECK (name <> ''));
CREATE INDEX projects_owner_idx ON app.projects (owner_id);
CREATE VIEW app.v_projects AS SELECT p.id, u.email FROM app.projects p JOIN app.users u ON u.id = p.owner_id;
CREATE FUNCTION app.touch() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$;
CREATE TRIGGER projects_touch BEFORE UPDATE ON app.projects FOR EACH ROW EXECUTE FUNCTION app.touch();
"""


def take(pg, db):
    conn = pg.connect(db)
    try:
        return fingerprint.take(conn)
    finally:
        conn.close()


def test_fingerprint_covers_every_object_kind(pg_db):
    pg, db = pg_db
    pg.sql(SCHEMA, dbname=db)
    fp = take(pg, db)
    kinds = set(k.split(' ')[0] for k in fp)
    assert kinds >= {'schema', 'type', 'sequence', 'table', 'column', 'constraint', 'index', 'view',
                     'function', 'trigger', 'extension'}
    assert fp['column app.users.email']['not_null'] is True
    assert fp['column app.users.created']['default'] == 'now()'
    assert 'CREATE INDEX projects_owner_idx' in fp['index app.projects_owner_idx']['definition']
    assert fp['extension pgcrypto']['version']
    assert not any('gen_random_bytes' in k for k in fp)             # extension members left out
    assert fingerprint.digest(fp) == fingerprint.digest(take(pg, db))


def test_compare_and_sync_script_make_target_equal(pg, pg_db):
    _pg, source = pg_db
    target = pg.create_database(source + '_t')
    try:
        pg.sql(SCHEMA, dbname=source)
        pg.sql("CREATE SCHEMA app; CREATE TABLE app.users (id bigserial PRIMARY KEY, email text, "
               "legacy int); CREATE TABLE app.old (id int); CREATE INDEX users_legacy ON app.users (legacy)",
               dbname=target)
        src, dst = take(pg, source), take(pg, target)
        diffs = fingerprint.compare(dst, src)
        summary = fingerprint.format_differences(diffs)
        assert any(s.startswith('- table app.old') for s in summary)
        assert any(s.startswith('+ table app.projects') for s in summary)
        assert any(s.startswith('~ column app.users.email') and 'not_null: false -> true' in s
                   for s in summary)
        script, changed = fingerprint.sync_script(dst, src)
        assert changed and 'DROP TABLE IF EXISTS "app"."old";' in script
        pg.sql(script, dbname=target)
        assert fingerprint.compare(take(pg, target), src) == []
        script, changed = fingerprint.sync_script(take(pg, target), src)
        assert changed is False
    finally:
        pg.sql('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % target)


def test_excluded_table_and_its_sequence_left_out(pg_db):
    pg, db = pg_db
    pg.sql('CREATE TABLE schema_migrations (installed_rank serial PRIMARY KEY); CREATE TABLE t (id int)',
           dbname=db)
    conn = pg.connect(db)
    fp = fingerprint.take(conn, exclude_tables=[('public', 'schema_migrations')])
    conn.close()
    assert sorted(k for k in fp if 'schema_migrations' in k) == []
    assert 'table public.t' in fp


# -- format 2: the whole schema, function bodies without whitespace noise, real diffs


# The last commit whose fingerprint.py wrote format 1 (no format marker): what existing histories hold.
FORMAT_1_COMMIT = '0ab8baa'


def format_1_module():
    try:
        source = subprocess.run(['git', 'show', '%s:plugins/module_utils/fingerprint.py' % FORMAT_1_COMMIT],
                                cwd=REPO_ROOT, check=True, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip('the format 1 fingerprint code is not in this checkout (no git history)')
    module = types.ModuleType('fingerprint_format_1')
    exec(compile(source, 'fingerprint_format_1.py', 'exec'), module.__dict__)
    return module


RICH = SCHEMA + """
CREATE TYPE app.address AS (street text, city text);
CREATE DOMAIN app.positive AS integer DEFAULT 1 CHECK (VALUE > 0);
CREATE TYPE app.score AS RANGE (subtype = float8);
COMMENT ON TABLE app.users IS 'people';
ALTER TABLE app.users ENABLE ROW LEVEL SECURITY;
CREATE POLICY own ON app.users USING (id > 0);
ALTER TABLE app.projects SET (fillfactor = 70);
"""


def test_history_of_format_1_is_not_drift_after_upgrade(pg_db, tmp_path):
    """A fingerprint recorded by the previous release compares equal to the same schema now."""
    old = format_1_module()
    pg, db = pg_db
    path = write(tmp_path, {'V1__rich.sql': RICH})
    migrate(engine(pg_db, path))
    opts = MigrateOptions(path)
    table = '%s.%s' % (opts.history_schema, opts.history_table)
    conn = pg.connect(db)
    try:
        recorded = old.take(conn, exclude_tables=[(opts.history_schema, opts.history_table)])
    finally:
        conn.close()
    assert fingerprint.FORMAT_KEY not in recorded and fingerprint.format_of(recorded) == 1
    pg.sql('UPDATE %s SET fingerprint = %%s WHERE fingerprint IS NOT NULL' % table,
           (old.dumps(recorded),), dbname=db)
    drift = info(pg_db, path)['drift']
    assert drift['checked'] and drift['drifted'] is False, drift['summary']

    # what format 1 sees is still drift; what only format 2 sees waits for the next recorded fingerprint
    conn = pg.connect(db)
    try:
        before = fingerprint.take(conn, exclude_tables=[(opts.history_schema, opts.history_table)])
    finally:
        conn.close()
    pg.sql("COMMENT ON COLUMN app.users.email IS 'login'; ALTER TABLE app.users ADD COLUMN by_hand int",
           dbname=db)
    drift = info(pg_db, path)['drift']
    assert [d['object'] for d in drift['differences']] == ['column app.users.by_hand']
    conn = pg.connect(db)
    try:
        now = fingerprint.take(conn, exclude_tables=[(opts.history_schema, opts.history_table)])
    finally:
        conn.close()
    assert fingerprint.format_of(now) == fingerprint.FORMAT_VERSION
    assert [d['object'] for d in fingerprint.compare(before, now)] == ['column app.users.by_hand',
                                                                       'column app.users.email']
    assert [d['object'] for d in fingerprint.compare(recorded, now)] == ['column app.users.by_hand']


def test_tokens_match_the_server_lexer():
    parser = pytest.importorskip('pglast.parser')
    texts = ["SELECT E'a\\'b', $$x  y$$, $q$ a $ b $q$, a::int, 1..10, U&'d', \"Q \"\" q\" -- c\n"
             "/* x /* y */ z */ :=  $1 >= <> +- a.b, 1.5e3, .5, x+-1, a<-b, a@-b",
             "BEGIN\n  IF n > 0 THEN RETURN 'x  y' || n; END IF;\nEND"]
    for text in texts:
        expected = [text[t.start:t.end + 1].rstrip() for t in parser.scan(text)]
        assert fingerprint.tokens(text) == expected


def definition(body, language='plpgsql'):
    return ('CREATE OR REPLACE FUNCTION app.f(n integer)\n RETURNS text\n LANGUAGE %s\nAS $function$%s$function$\n'
            % (language, body))


def test_function_bodies_compare_without_whitespace_but_literals_keep_theirs():
    norm = fingerprint.normalize_function
    base = "\nBEGIN\n    RETURN 'a  b' || n;  -- note\nEND\n"
    assert norm(definition(base)) == norm(definition("BEGIN RETURN   'a  b'||n; -- note\n END"))
    assert norm(definition(base)) != norm(definition(base.replace("'a  b'", "'a b'")))
    assert norm(definition(base)) != norm(definition(base.replace('-- note', '-- other note')))
    assert norm(definition(base)) != norm(definition(base.replace('RETURN', 'RETURN -')))
    assert norm(definition(base.replace('n;', 'n ;'))) == norm(definition(base))
    # an argument called "language" does not hide the real language
    named = definition(base).replace('app.f(n integer)', 'app.f(language text)')
    assert norm(named) == norm(named.replace("    RETURN 'a  b'", "RETURN 'a  b'"))
    # whitespace means something in Python: a plpython body keeps every byte
    py = '\nif n:\n    return "x"\nreturn "y"\n'
    assert norm(definition(py, 'plpython3u')) != norm(
        definition(py.replace('    return', '  return'), 'plpython3u'))


def test_difference_shows_a_unified_diff_without_cutting(pg_db):
    pg, db = pg_db
    long_body = '\n'.join("    PERFORM %d; -- step %d of a long function body" % (i, i) for i in range(40))
    pg.sql("CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$BEGIN\n%s\nEND$$" % long_body, dbname=db)
    before = take(pg, db)
    pg.sql("CREATE OR REPLACE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$BEGIN\n%s\nEND$$"
           % long_body.replace('PERFORM 37;', 'PERFORM 370;'), dbname=db)
    diffs = fingerprint.compare(before, take(pg, db))
    assert len(diffs) == 1 and diffs[0]['detail'] == 'definition differs'
    lines = diffs[0]['diff']
    assert '-    PERFORM 37; -- step 37 of a long function body' in lines
    assert '+    PERFORM 370; -- step 37 of a long function body' in lines
    assert lines[0] == '--- before/definition' and lines[1] == '+++ after/definition'
    text = fingerprint.format_differences(diffs)[0]
    assert text.startswith('~ function public.f() (definition differs)\n    --- before/definition')
    assert '...' not in text
    capped = fingerprint.format_differences(diffs, max_lines=3)[0]
    assert capped.count('\n') == 4 and capped.endswith(
        '... %d more lines of this diff (the full diff is in differences)' % (len(lines) - 3))


def test_sync_script_recreates_comments_grants_policies_and_types(pg, pg_db):
    _pg, source = pg_db
    pg.sql("DO $$BEGIN CREATE ROLE fp_reader; EXCEPTION WHEN duplicate_object THEN NULL; END$$")
    target = pg.create_database(source + '_t')
    try:
        pg.sql(RICH + """
            GRANT SELECT, UPDATE (email) ON app.users TO fp_reader;
            GRANT USAGE ON SCHEMA app TO fp_reader WITH GRANT OPTION;
            REVOKE EXECUTE ON FUNCTION app.touch() FROM PUBLIC;
            COMMENT ON COLUMN app.users.email IS 'it''s the login';
            ALTER TABLE app.users ALTER COLUMN email SET STATISTICS 300, REPLICA IDENTITY FULL;
            ALTER DEFAULT PRIVILEGES GRANT USAGE ON SEQUENCES TO fp_reader;
            CREATE MATERIALIZED VIEW app.m AS SELECT 1 AS one WITH NO DATA;
            COMMENT ON MATERIALIZED VIEW app.m IS 'mat';
            CREATE UNLOGGED TABLE app.parts (id int, at date) PARTITION BY RANGE (at);
            CREATE TABLE app.parts_2026 PARTITION OF app.parts FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
            """, dbname=source)
        src = take(pg, source)
        script, changed = fingerprint.sync_script(take(pg, target), src)
        assert changed and "COMMENT ON COLUMN \"app\".\"users\".\"email\" IS 'it''s the login';" in script
        pg.sql(script, dbname=target)
        assert fingerprint.compare(take(pg, target), src) == []
        assert fingerprint.digest(take(pg, target)) == fingerprint.digest(src)
        assert fingerprint.sync_script(take(pg, target), src)[1] is False
        # and back: everything the target has more is removed again
        empty = pg.create_database(source + '_e')
        try:
            script, _changed = fingerprint.sync_script(take(pg, target), take(pg, empty))
            pg.sql(script, dbname=target)
            assert fingerprint.compare(take(pg, target), take(pg, empty)) == []
        finally:
            pg.sql('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % empty)
    finally:
        pg.sql('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % target)


def test_marker_and_digest(pg_db):
    pg, db = pg_db
    fp = take(pg, db)
    assert fp[fingerprint.FORMAT_KEY] == {'version': fingerprint.FORMAT_VERSION}
    assert fingerprint.loads(fingerprint.dumps(fp)) == fp
    assert 'schema public' in fp and 'schema public' not in fingerprint.as_format(fp, 1)
