-- dbdevops:transaction=off
-- Index an existing, busy table without blocking writes. If the build fails it
-- leaves an INVALID index: rerun with drop_invalid_indexes: true.
SET lock_timeout = '2s';
CREATE INDEX CONCURRENTLY memberships_user_id_idx ON memberships (user_id);
