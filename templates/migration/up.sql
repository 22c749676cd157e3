-- {description}
-- version {version}, created {created} UTC by dbdevops.postgresql.migration_new
--
-- Runs in one transaction with its history row. For CREATE INDEX CONCURRENTLY
-- or other statements that cannot run in a transaction, put this line first:
--   -- dbdevops:transaction=off
-- Zero-downtime habits: add columns nullable and without a volatile default,
-- backfill in batches in a later migration, add constraints NOT VALID and
-- VALIDATE them in another migration.

