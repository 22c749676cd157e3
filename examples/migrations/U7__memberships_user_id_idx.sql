-- dbdevops:transaction=off
SET lock_timeout = '2s';
DROP INDEX CONCURRENTLY IF EXISTS memberships_user_id_idx;
