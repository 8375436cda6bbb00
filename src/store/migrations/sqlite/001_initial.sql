-- The SQLite twin of postgres/001_initial.sql: the same tables and constraints. Times are
-- INTEGER milliseconds since the epoch, lists are JSON arrays of strings.
CREATE TABLE keys (
  id                 TEXT PRIMARY KEY NOT NULL,
  name               TEXT,
  subject            TEXT NOT NULL,
  role               TEXT NOT NULL,
  scopes             TEXT NOT NULL DEFAULT '[]' CHECK (json_type(scopes) = 'array'),
  audiences          TEXT NOT NULL DEFAULT '[]' CHECK (json_type(audiences) = 'array'),
  allowed_ips        TEXT NOT NULL DEFAULT '[]' CHECK (json_type(allowed_ips) = 'array'),
  secret_hash        TEXT,
  sha256             TEXT UNIQUE,
  created_at         INTEGER NOT NULL,
  not_before         INTEGER,
  expires_at         INTEGER,
  last_used_at       INTEGER,
  revoked_at         INTEGER,
  successor_id       TEXT REFERENCES keys (id),
  grace_until        INTEGER,
  family_id          TEXT,
  refresh_hash       TEXT,
  refresh_expires_at INTEGER,
  refresh_spent_at   INTEGER,
  CONSTRAINT keys_one_secret CHECK ((secret_hash IS NULL) <> (sha256 IS NULL)),
  CONSTRAINT keys_sha256_hex CHECK (sha256 IS NULL OR (length(sha256) = 64 AND sha256 NOT GLOB '*[^0-9a-f]*'))
);
CREATE INDEX keys_subject_idx ON keys (subject, created_at);
CREATE INDEX keys_family_idx ON keys (family_id) WHERE family_id IS NOT NULL;
CREATE INDEX keys_revoked_idx ON keys (revoked_at) WHERE revoked_at IS NOT NULL;

-- JWT revocations by jti (per issuer) or by token digest (issuer '').
CREATE TABLE token_revocations (
  id         TEXT NOT NULL,
  issuer     TEXT NOT NULL DEFAULT '',
  until      INTEGER,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (issuer, id)
);
CREATE INDEX token_revocations_created_idx ON token_revocations (created_at);
CREATE INDEX token_revocations_until_idx ON token_revocations (until);

-- Subject-wide revocations: credentials of the subject issued before revoked_before are revoked.
CREATE TABLE subject_revocations (
  subject        TEXT NOT NULL,
  scope          TEXT NOT NULL CHECK (scope IN ('keys', 'tokens', 'all')),
  revoked_before INTEGER NOT NULL,
  created_at     INTEGER NOT NULL,
  updated_at     INTEGER NOT NULL,
  PRIMARY KEY (subject, scope)
);
CREATE INDEX subject_revocations_updated_idx ON subject_revocations (updated_at);

-- Small persistent values (e.g. the identity assertion signing key).
CREATE TABLE kv (
  name       TEXT PRIMARY KEY NOT NULL,
  value      TEXT NOT NULL,
  updated_at INTEGER NOT NULL
);

-- What PostgreSQL's NOTIFY carries: every process on the file polls it past the last seq it
-- saw. AUTOINCREMENT: seq never goes back, so a gap means rows were pruned before a reader
-- saw them. `at` (ms) is when the row was written, for pruning.
CREATE TABLE notices (
  seq     INTEGER PRIMARY KEY AUTOINCREMENT,
  channel TEXT NOT NULL,
  payload TEXT NOT NULL,
  at      INTEGER NOT NULL
);
