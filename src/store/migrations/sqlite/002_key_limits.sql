-- The SQLite twin of postgres/002_key_limits.sql. rate_window is in milliseconds.
ALTER TABLE keys ADD COLUMN rate_limit INTEGER CHECK (rate_limit IS NULL OR rate_limit > 0);
ALTER TABLE keys ADD COLUMN rate_window INTEGER CHECK (rate_window IS NULL OR rate_window > 0);

CREATE TABLE key_quotas (
  lineage   TEXT PRIMARY KEY NOT NULL,
  remaining INTEGER NOT NULL CHECK (remaining >= 0)
);
