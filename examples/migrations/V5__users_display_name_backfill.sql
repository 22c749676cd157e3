-- dbdevops:transaction=off
-- Zero-downtime change, step 2 of 3: backfill in batches of ${batch_size} rows,
-- committing after each batch so no long transaction holds row locks or bloats.
SET lock_timeout = '2s';

DO $$
DECLARE
    done integer;
BEGIN
    LOOP
        UPDATE users SET display_name = username
        WHERE id IN (SELECT id FROM users WHERE display_name IS NULL LIMIT ${batch_size}
                     FOR UPDATE SKIP LOCKED);
        GET DIAGNOSTICS done = ROW_COUNT;
        EXIT WHEN done = 0;
        COMMIT;
    END LOOP;
END
$$;
