-- undo: {description}
-- version {version}, created {created} UTC by dbdevops.postgresql.migration_new
--
-- Must bring the schema back exactly as it was before version {version}
-- (verify_rollback checks this on a scratch database).

