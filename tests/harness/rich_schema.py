"""A database with every kind of object a real application has, and an independent reader of it.

``load(cluster, dbname)`` builds it; ``snapshot(cluster, dbname)`` reads every
table's rows (by column name), every large object and every sequence with its
own simple queries, so a test can check the collection's verdicts against a
second opinion that shares no code with the engines.  No tests here.
"""

import hashlib

# 63 bytes exactly, in multibyte characters (21 x 3-byte 'ㄱ'): the longest name PostgreSQL keeps.
LONG_NAME = '\u3131' * 21
assert len(LONG_NAME.encode('utf-8')) == 63

RICH_SQL = r'''
CREATE EXTENSION IF NOT EXISTS pg_trgm;          -- extension-owned objects must be left alone
CREATE SCHEMA "Odd Schema";
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN positive_int AS integer CHECK (VALUE > 0);
CREATE TYPE pair AS (a int, b text);

-- inheritance: columns added to the parent after the child exists, and to the child alone
CREATE TABLE animals (id int, name text);
CREATE TABLE dogs (bark_volume int) INHERITS (animals);
ALTER TABLE animals ADD COLUMN born date;
ALTER TABLE dogs ADD COLUMN good_boy boolean;
INSERT INTO animals VALUES (1, 'generic', '2020-01-01');
INSERT INTO dogs (id, name, bark_volume, born, good_boy) VALUES (2, 'rex', 11, '2021-02-03', true),
                                                               (3, 'fido', NULL, NULL, NULL);

-- declarative partitions with a default partition
CREATE TABLE events (id bigint, happened date NOT NULL, payload jsonb) PARTITION BY RANGE (happened);
CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE TABLE events_other PARTITION OF events DEFAULT;
INSERT INTO events SELECT g, date '2025-06-01' + g * 5, jsonb_build_object('g', g, 'nested', jsonb_build_array(g, 'x'))
  FROM generate_series(1, 200) g;

-- sequences, owned and free
CREATE TABLE invoices (id serial PRIMARY KEY, total numeric(14, 4), note text);
INSERT INTO invoices (total, note) SELECT g * 1.0001, CASE WHEN g % 3 = 0 THEN '' WHEN g % 3 = 1 THEN NULL ELSE 'n' END
  FROM generate_series(1, 50) g;
CREATE SEQUENCE free_counter START 100 INCREMENT 7;
SELECT nextval('free_counter'), nextval('free_counter');
CREATE SEQUENCE never_called;

-- odd names
CREATE TABLE "Odd Schema"."Quoted ""Table""" ("Mixed Case" int, "with space" text, "ünïcødé" text);
INSERT INTO "Odd Schema"."Quoted ""Table""" VALUES (1, 'a b', 'é'), (2, NULL, 'ß');
CREATE TABLE "{long}" ("{long}" int);
INSERT INTO "{long}" VALUES (63), (64);

-- many types in one keyless table, with a column named t
CREATE TABLE kitchen_sink (
  t text, feeling mood, qty positive_int, span int4range, tags text[], doc json, docb jsonb,
  raw bytea, words tsvector, ratio double precision, small real, stamp timestamptz, dur interval,
  rel regclass, fn regproc, addr inet, money_col numeric, p pair, u uuid);
INSERT INTO kitchen_sink VALUES
  ('a', 'happy', 1, '[1,10)', '{x,"y z",NULL}', '{"k": [1, 2]}', '{"k": {"deep": true}}', '\x00ff10',
   to_tsvector('simple', 'the quick brown fox'), 0.1 + 0.2, 1.5, '2026-03-01 12:00:00+00', '1 day 02:03:04',
   'invoices', 'now', '10.0.0.1/8', 12345678901234567890.123456789, ROW(1, 'one'),
   'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'),
  ('a', 'happy', 1, '[1,10)', '{x,"y z",NULL}', '{"k": [1, 2]}', '{"k": {"deep": true}}', '\x00ff10',
   to_tsvector('simple', 'the quick brown fox'), 0.1 + 0.2, 1.5, '2026-03-01 12:00:00+00', '1 day 02:03:04',
   'invoices', 'now', '10.0.0.1/8', 12345678901234567890.123456789, ROW(1, 'one'),
   'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'),
  ('', NULL, NULL, 'empty', '{}', 'null', '[]', '', '', 'NaN', '-Infinity', 'infinity', '-1 mon',
   '"Odd Schema"."Quoted ""Table"""', 'pg_catalog.timeofday', '::1', 0, NULL, NULL),
  (NULL, 'sad', 2147483647, NULL, NULL, NULL, NULL, NULL, NULL, 1e-300, 3.4e38, NULL, NULL, NULL, NULL,
   NULL, -0.0, ROW(NULL, NULL), NULL);

-- unlogged table, materialized view, row-level security
CREATE UNLOGGED TABLE scratchpad (k text PRIMARY KEY, v text);
INSERT INTO scratchpad VALUES ('a', '1'), ('b', '2');
CREATE MATERIALIZED VIEW invoice_totals AS SELECT count(*) AS n, sum(total) AS s FROM invoices;
CREATE TABLE secrets (owner_name text, secret text);
ALTER TABLE secrets ENABLE ROW LEVEL SECURITY;
ALTER TABLE secrets FORCE ROW LEVEL SECURITY;
CREATE POLICY own_rows ON secrets USING (owner_name = current_user);
INSERT INTO secrets VALUES ('postgres', 's1'), ('someone_else', 's2');

-- large objects
SELECT lo_from_bytea(0, 'first large object'::bytea);
SELECT lo_from_bytea(0, decode(repeat('00ff', 5000), 'hex'));
'''


def load(cluster, dbname):
    """Build the rich schema in ``dbname`` (as the superuser)."""
    cluster.sql(RICH_SQL.replace('{long}', LONG_NAME.replace('"', '""')), dbname=dbname)


# Output settings pinned for the independent reader, so text forms are stable.
PINNED = ("SET search_path = pg_catalog; SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres'; "
          "SET TimeZone = 'UTC'; SET extra_float_digits = 3; SET bytea_output = 'hex'; "
          "SET row_security = off")


def _qualified(schema, name):
    return '"%s"."%s"' % (schema.replace('"', '""'), name.replace('"', '""'))


def snapshot(cluster, dbname):
    """{'tables': {(schema, table): sorted rows as tuples of (column, text)}, 'large_objects': ...,
    'sequences': ...} read with the test's own queries."""
    conn = cluster.connect(dbname)
    out = dict(tables={}, large_objects={}, sequences={})
    try:
        with conn.cursor() as cur:
            cur.execute(PINNED)
            cur.execute("""SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                            WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
                              AND n.nspname NOT LIKE 'pg_toast%'
                              AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid
                                                AND d.classid = 'pg_class'::regclass AND d.deptype = 'e')""")
            for schema, table in cur.fetchall():
                cur.execute('SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 '
                            'AND NOT attisdropped ORDER BY attname', (_qualified(schema, table),))
                columns = [r[0] for r in cur.fetchall()]
                select = ', '.join('"%s"::text' % c.replace('"', '""') for c in columns)
                cur.execute('SELECT %s FROM ONLY %s' % (select, _qualified(schema, table)))
                out['tables'][(schema, table)] = sorted(
                    tuple((c, '\\N' if v is None else 'v:' + v) for c, v in zip(columns, row))
                    for row in cur.fetchall())
            cur.execute('SELECT oid FROM pg_largeobject_metadata ORDER BY oid')
            for (oid,) in cur.fetchall():
                cur.execute('SELECT lo_get(%s)', (oid,))
                out['large_objects'][oid] = hashlib.sha256(bytes(cur.fetchone()[0])).hexdigest()
            cur.execute("SELECT schemaname, sequencename FROM pg_sequences")
            for schema, name in cur.fetchall():
                cur.execute('SELECT last_value, is_called FROM %s' % _qualified(schema, name))
                out['sequences'][(schema, name)] = cur.fetchone()
    finally:
        conn.close()
    return out
