-- Per-key rate limits (on the key, copied to its successors) and usage credits (per key
-- lineage: the first key's id, `COALESCE(family_id, id)`, shared by rotation successors
-- and refreshed descendants). A lineage without a key_quotas row is unlimited.
ALTER TABLE keys ADD COLUMN rate_limit integer CHECK (rate_limit IS NULL OR rate_limit > 0);
ALTER TABLE keys ADD COLUMN rate_window bigint CHECK (rate_window IS NULL OR rate_window > 0);
ALTER TABLE keys ADD CONSTRAINT keys_rate_pair CHECK ((rate_limit IS NULL) = (rate_window IS NULL));

CREATE TABLE key_quotas (
  lineage   text PRIMARY KEY,
  remaining bigint NOT NULL CHECK (remaining >= 0)
);
