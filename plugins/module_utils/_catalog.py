# -*- coding: utf-8 -*-
# Copyright: dbdevops.postgresql contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Internal: catalog queries shared by the backup engine and data_compare."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

# Ordinary tables a user owns the data of: no system schemas, no temp or toast
# schemas, and no tables an extension creates (CREATE EXTENSION brings those).
USER_TABLES_SQL = """
SELECT n.nspname, c.relname
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind = 'r'
   AND n.nspname NOT IN ('pg_catalog', 'information_schema')
   AND n.nspname !~ '^pg_toast' AND n.nspname !~ '^pg_temp'
   AND NOT EXISTS (SELECT 1 FROM pg_depend d
                    WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
 ORDER BY 1, 2
"""


def list_user_tables(cur):
    """[(schema, table), ...] in name order, read through an open cursor."""
    cur.execute(USER_TABLES_SQL)
    return [tuple(row) for row in cur.fetchall()]
