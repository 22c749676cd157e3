"""Schema fingerprint, comparison and sync script on real databases."""

from ansible_collections.dbdevops.postgresql.plugins.module_utils import fingerprint

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
