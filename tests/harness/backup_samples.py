"""Shared set-up for the backup/restore/data_compare tests (sample data, params); no tests here."""

import os
import shutil
import tempfile

from ansible_collections.dbdevops.postgresql.plugins.module_utils.connection import ConnParams
from ansible_collections.dbdevops.postgresql.plugins.module_utils.backup import engine

SAMPLE_SQL = '''
CREATE SCHEMA sales;
CREATE TABLE public.customers (id serial PRIMARY KEY, name text NOT NULL, born date,
                               balance numeric(12,2), tags jsonb, photo bytea);
CREATE TABLE sales.orders (id bigserial PRIMARY KEY, customer_id int REFERENCES public.customers(id),
                           placed timestamptz DEFAULT now(), amount double precision);
CREATE TABLE public."Odd ""Name""" (k text);
CREATE TABLE public.empty_one (x int);
INSERT INTO public.customers (name, born, balance, tags, photo)
  SELECT 'c' || g, date '2000-01-01' + g, g * 1.5, jsonb_build_object('g', g),
         CASE WHEN g % 7 = 0 THEN NULL ELSE decode(md5(g::text), 'hex') END
    FROM generate_series(1, 300) g;
INSERT INTO sales.orders (customer_id, placed, amount)
  SELECT 1 + g % 300, timestamptz '2026-01-01 00:00+00' + g * interval '1 minute', g / 3.0
    FROM generate_series(1, 2000) g;
INSERT INTO public."Odd ""Name""" VALUES ('a'), ('b'), (NULL);
'''


def load_sample(cluster, dbname):
    conn = cluster.connect(dbname)
    with conn.cursor() as cur:
        cur.execute(SAMPLE_SQL)
    conn.close()


def params_for(cluster, dbname='postgres', password=True):
    return ConnParams.from_params(cluster.conn_params(dbname=dbname, password=password or None))


def make_dest():
    path = tempfile.mkdtemp(prefix='dbdevops-bk-')
    os.chmod(path, 0o755)
    return path


def take_backup(cluster, dbname, dest, **kwargs):
    params = params_for(cluster, dbname)
    opts = engine.BackupOptions(dest=dest, databases=[dbname], **kwargs)
    return engine.run_backup(params, engine.plan_backup(params, opts))[0]


def rm(path):
    shutil.rmtree(path, ignore_errors=True)
