-- Zero-downtime change, step 1 of 3: add the column nullable and without a
-- default, so no table rewrite and only a brief lock. Deploy code that
-- writes display_name for new rows before step 2.
ALTER TABLE users ADD COLUMN display_name text;
