-- dbdevops:transaction=off
-- dbdevops:lint-ignore=set-not-null
-- Zero-downtime change, step 3 of 3: NOT NULL without a long ACCESS EXCLUSIVE scan.
-- A CHECK added NOT VALID takes a brief lock; VALIDATE scans under a weaker lock;
-- SET NOT NULL then uses the validated CHECK and skips its own scan (PostgreSQL 12+).
SET lock_timeout = '2s';
ALTER TABLE users ADD CONSTRAINT users_display_name_not_null CHECK (display_name IS NOT NULL) NOT VALID;
ALTER TABLE users VALIDATE CONSTRAINT users_display_name_not_null;
ALTER TABLE users ALTER COLUMN display_name SET NOT NULL;
ALTER TABLE users DROP CONSTRAINT users_display_name_not_null;
