"""Hand-made schema changes, each one seen by drift detection, schema_diff and verified rollback.

For every change of ``CHANGES`` the same database goes through three doors:

1. drift: migrate ``V1`` (the base schema), make the change by hand, and
   migration_info must report drift naming the object;
2. schema_diff: the changed database against a fresh copy of the base schema
   must differ on that object, and the sync script must make the copy equal;
3. verified rollback: ``V2`` makes the change and its undo forgets it, so the
   undo must be refused at version 2, naming the object.

A whitespace-only change of a function body is none of these.
"""

import pytest

from ansible_collections.dbdevops.postgresql.plugins.module_utils.connection import ConnParams
from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate.options import MigrateOptions
from ansible_collections.dbdevops.postgresql.plugins.module_utils.migrate.verify import (
    describe_verify_failure, verify_rollback)
from ansible_collections.dbdevops.postgresql.plugins.module_utils.schemadiff import (
    SchemaDiffEngine, SchemaDiffOptions)
from tests.harness.migrate_samples import engine, info, migrate, write

ROLES = ('drift_reader', 'drift_owner')

BASE = r"""
CREATE SCHEMA app;
CREATE TYPE app.status AS ENUM ('new', 'done');
CREATE TYPE app.address AS (street text, city text);
CREATE DOMAIN app.positive AS integer CHECK (VALUE > 0);
CREATE SEQUENCE app.ticket_seq;
CREATE TABLE app.accounts (id integer PRIMARY KEY, email text NOT NULL, note text, balance numeric,
                           state app.status DEFAULT 'new');
CREATE INDEX accounts_email_idx ON app.accounts (email);
CREATE VIEW app.v_accounts AS SELECT id, email FROM app.accounts;
CREATE FUNCTION app.total(n integer) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    -- a comment
    RETURN 'sum:  ' || n::text;
END
$$;
"""

FUNCTION = r"""CREATE OR REPLACE FUNCTION app.total(n integer) RETURNS text LANGUAGE plpgsql AS $$
%s
$$;"""

# (name, SQL of the hand-made change, the object it changes, what the difference says)
CHANGES = [
    ('comment on column', "COMMENT ON COLUMN app.accounts.email IS 'login address'",
     'column app.accounts.email', 'comment: null -> login address'),
    ('comment on table', "COMMENT ON TABLE app.accounts IS 'customer accounts'",
     'table app.accounts', 'comment: null -> customer accounts'),
    ('comment on function', "COMMENT ON FUNCTION app.total(integer) IS 'sums'",
     'function app.total(n integer)', 'comment: null -> sums'),
    ('comment on type', "COMMENT ON TYPE app.status IS 'lifecycle'", 'type app.status', 'comment'),
    ('comment on index', "COMMENT ON INDEX app.accounts_email_idx IS 'lookup'",
     'index app.accounts_email_idx', 'comment'),
    ('comment on constraint', "COMMENT ON CONSTRAINT accounts_pkey ON app.accounts IS 'key'",
     'constraint app.accounts.accounts_pkey', 'comment'),
    ('comment on schema', "COMMENT ON SCHEMA app IS 'the application'", 'schema app', 'comment'),
    ('comment on view column', "COMMENT ON COLUMN app.v_accounts.email IS 'shown'",
     'view app.v_accounts', 'column_comments'),
    ('grant select', 'GRANT SELECT ON app.accounts TO drift_reader', 'table app.accounts',
     '+drift_reader: SELECT'),
    ('revoke execute from public', 'REVOKE EXECUTE ON FUNCTION app.total(integer) FROM PUBLIC',
     'function app.total(n integer)', '-PUBLIC: EXECUTE'),
    ('column grant', 'GRANT UPDATE (note) ON app.accounts TO drift_reader', 'column app.accounts.note',
     'acl: +drift_reader: UPDATE'),
    ('schema grant', 'GRANT USAGE ON SCHEMA app TO drift_reader', 'schema app', 'drift_reader: USAGE'),
    ('sequence grant', 'GRANT USAGE ON SEQUENCE app.ticket_seq TO drift_reader', 'sequence app.ticket_seq',
     'drift_reader: USAGE'),
    ('type grant revoked', 'REVOKE USAGE ON TYPE app.status FROM PUBLIC', 'type app.status', 'PUBLIC: USAGE'),
    ('default privileges', 'ALTER DEFAULT PRIVILEGES IN SCHEMA app GRANT SELECT ON TABLES TO drift_reader',
     'default privileges for role postgres in schema app on tables', 'drift_reader: SELECT'),
    ('enable row level security', 'ALTER TABLE app.accounts ENABLE ROW LEVEL SECURITY',
     'table app.accounts', 'rls: false -> true'),
    ('force row level security', 'ALTER TABLE app.accounts FORCE ROW LEVEL SECURITY',
     'table app.accounts', 'force_rls: false -> true'),
    ('add policy', 'CREATE POLICY own_rows ON app.accounts FOR SELECT TO drift_reader USING (id > 0)',
     'policy app.accounts.own_rows', '(id > 0)'),
    ('composite type attribute added', 'ALTER TYPE app.address ADD ATTRIBUTE zip text',
     'type app.address', '["city", "text", null], ["zip", "text", null]]'),
    ('domain constraint', 'ALTER DOMAIN app.positive ADD CONSTRAINT small CHECK (VALUE < 1000)',
     'type app.positive', 'CHECK ((VALUE < 1000))'),
    ('domain default', 'ALTER DOMAIN app.positive SET DEFAULT 1', 'type app.positive', 'default: null -> 1'),
    ('table storage parameter', 'ALTER TABLE app.accounts SET (fillfactor=70)', 'table app.accounts',
     'options: +fillfactor=70'),
    ('toast storage parameter', 'ALTER TABLE app.accounts SET (toast.autovacuum_enabled=false)',
     'table app.accounts', 'toast_options'),
    ('index storage parameter', 'ALTER INDEX app.accounts_email_idx SET (fillfactor=80)',
     'index app.accounts_email_idx', 'fillfactor'),
    ('view option', 'ALTER VIEW app.v_accounts SET (security_barrier=true)', 'view app.v_accounts',
     'security_barrier=true'),
    ('statistics target', 'ALTER TABLE app.accounts ALTER COLUMN email SET STATISTICS 500',
     'column app.accounts.email', 'statistics: null -> 500'),
    ('column storage', 'ALTER TABLE app.accounts ALTER COLUMN note SET STORAGE EXTERNAL',
     'column app.accounts.note', 'storage: null -> e'),
    ('extended statistics', 'CREATE STATISTICS app.accounts_dep ON id, email FROM app.accounts',
     'statistics app.accounts_dep', 'CREATE STATISTICS'),
    ('owner change', 'ALTER TABLE app.accounts OWNER TO drift_owner', 'table app.accounts',
     'owner: postgres -> drift_owner'),
    ('function owner change', 'ALTER FUNCTION app.total(integer) OWNER TO drift_owner',
     'function app.total(n integer)', 'owner: postgres -> drift_owner'),
    ('replica identity full', 'ALTER TABLE app.accounts REPLICA IDENTITY FULL', 'table app.accounts',
     'replica_identity: null -> full'),
    ('replica identity index', 'CREATE UNIQUE INDEX accounts_email_key ON app.accounts (email); '
     'ALTER TABLE app.accounts REPLICA IDENTITY USING INDEX accounts_email_key', 'table app.accounts',
     'replica_identity: null -> index accounts_email_key'),
    ('sequence owned by', 'ALTER SEQUENCE app.ticket_seq OWNED BY app.accounts.id', 'sequence app.ticket_seq',
     'owned_by: null -> app.accounts.id'),
    ('sequence cache', 'ALTER SEQUENCE app.ticket_seq CACHE 20', 'sequence app.ticket_seq', 'cache: 1 -> 20'),
    ('function body change', FUNCTION % "BEGIN\n    RETURN 'total:  ' || n::text;\nEND",
     'function app.total(n integer)', "+    RETURN 'total:  ' || n::text;"),
    ('whitespace inside a string literal', FUNCTION % "BEGIN\n    -- a comment\n    RETURN 'sum: ' || n::text;\nEND",
     'function app.total(n integer)', "-    RETURN 'sum:  ' || n::text;"),
    ('function setting', 'ALTER FUNCTION app.total(integer) SET search_path = app',
     'function app.total(n integer)', '+ SET search_path TO'),
    ('enum value added', "ALTER TYPE app.status ADD VALUE 'archived'", 'type app.status', 'labels'),
    ('rule', 'CREATE RULE keep_accounts AS ON DELETE TO app.accounts DO INSTEAD NOTHING',
     'rule app.accounts.keep_accounts', 'CREATE RULE'),
    ('publication', 'CREATE PUBLICATION drift_pub FOR TABLE app.accounts', 'publication drift_pub',
     'app.accounts'),
    ('new column', 'ALTER TABLE app.accounts ADD COLUMN by_hand integer', 'column app.accounts.by_hand', 'integer'),
]

# Not a change of the schema: the same function with its whitespace (outside literals) moved around.
WHITESPACE_ONLY = FUNCTION % "  BEGIN\n\t-- a comment\n  RETURN   'sum:  '||n::text ;\n\n  END  "


@pytest.fixture(scope='module', autouse=True)
def roles(pg):
    for role in ROLES:
        pg.sql("DO $$BEGIN CREATE ROLE %s; EXCEPTION WHEN duplicate_object THEN NULL; END$$" % role)


def differences(pg, source, target):
    """schema_diff's plan of ``source`` (desired) against ``target``."""
    opts = SchemaDiffOptions(dst=dict(db=target))
    plan = SchemaDiffEngine((ConnParams.from_params(pg.conn_params(source)),
                             ConnParams.from_params(pg.conn_params(target))), opts).plan()
    return plan.values


def by_object(diffs, key):
    found = [d for d in diffs if d['object'] == key]
    assert found, 'no difference on %s in %s' % (key, [d['object'] for d in diffs])
    return found[0]


def shows(diff, text):
    """The difference says ``text``: in its detail or in its unified diff."""
    return text in diff['detail'] or any(text in line for line in diff.get('diff') or [])


@pytest.mark.parametrize('name, change, key, says', CHANGES, ids=[c[0] for c in CHANGES])
def test_hand_made_change_is_seen_by_drift_schema_diff_and_verified_rollback(
        pg_db, tmp_path, name, change, key, says):
    pg, db = pg_db
    path = write(tmp_path / 'm', {'V1__base.sql': BASE})
    migrate(engine(pg_db, path))

    # 1. drift
    pg.sql(change, dbname=db)
    drift = info(pg_db, path)['drift']
    assert drift['checked'] and drift['drifted'], name
    assert shows(by_object(drift['differences'], key), says), by_object(drift['differences'], key)
    assert any(line.startswith(('~ %s' % key, '+ %s' % key)) for line in drift['summary'])

    # 2. schema_diff, and its sync script makes the base copy equal
    base = pg.create_database(db + '_base')
    try:
        pg.sql(BASE, dbname=base)
        result = differences(pg, db, base)
        assert not result['identical'] and shows(by_object(result['differences'], key), says)
        pg.sql(result['sync_script'], dbname=base)
        again = differences(pg, db, base)
        assert again['differences'] == [], (result['sync_script'], again['summary'])
        assert again['source_fingerprint'] == again['target_fingerprint']
    finally:
        pg.sql('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % base)

    # 3. verified rollback: an undo that forgets the change is refused, naming the object
    vpath = write(tmp_path / 'v', {'V1__base.sql': BASE, 'V2__by_hand.sql': change + ';',
                                   'U2__by_hand.sql': 'SELECT 1;'})
    report = verify_rollback(ConnParams.from_params(pg.conn_params(db)), MigrateOptions(vpath))
    assert report['verified'] is False and report['failure']['version'] == '2', name
    assert report['failure']['stage'] == 'undo'
    assert shows(by_object(report['failure']['differences'], key), says)
    message = describe_verify_failure(report)
    assert 'version 2 (U2__by_hand.sql)' in message and key in message


def test_whitespace_only_function_change_is_no_difference(pg_db, tmp_path):
    pg, db = pg_db
    path = write(tmp_path / 'm', {'V1__base.sql': BASE})
    migrate(engine(pg_db, path))
    pg.sql(WHITESPACE_ONLY, dbname=db)
    assert 'RETURN   ' in pg.sql("SELECT prosrc FROM pg_proc WHERE proname = 'total'", dbname=db)[0][0]
    drift = info(pg_db, path)['drift']
    assert drift['checked'] and drift['drifted'] is False, drift['summary']

    base = pg.create_database(db + '_base')
    try:
        pg.sql(BASE, dbname=base)
        result = differences(pg, db, base)
        assert result['identical'] and result['source_fingerprint'] == result['target_fingerprint']
        assert 'FUNCTION' not in result['sync_script']
    finally:
        pg.sql('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % base)

    # an undo that restores the body with other whitespace gives back the same schema
    vpath = write(tmp_path / 'v', {'V1__base.sql': BASE, 'V2__ws.sql': FUNCTION % 'BEGIN RETURN 1; END',
                                   'U2__ws.sql': WHITESPACE_ONLY})
    report = verify_rollback(ConnParams.from_params(pg.conn_params(db)), MigrateOptions(vpath))
    assert report['verified'] is True, report['failure'] and report['failure']['summary']


def test_every_kind_of_change_is_covered():
    assert len(CHANGES) >= 26
    kinds = set(c[2].split(' ')[0] for c in CHANGES)
    assert kinds >= {'column', 'table', 'function', 'type', 'index', 'constraint', 'schema', 'view',
                     'sequence', 'policy', 'statistics', 'default', 'rule', 'publication'}
