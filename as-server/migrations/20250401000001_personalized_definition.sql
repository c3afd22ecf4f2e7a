-- Personalised channels survive an AS restart: the definition a channel was created with
-- (JSON: the definition as received and the schedule now in force, see
-- service::personalized::Stored) is kept with its row, so start-up re-creates the splicers
-- on the relays. NULL for every other channel.
-- Portable SQL: runs unchanged on SQLite and PostgreSQL.

ALTER TABLE channels ADD COLUMN definition TEXT NULL;
