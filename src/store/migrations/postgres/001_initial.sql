-- API keys: native keys carry an argon2id hash of their secret, imported legacy keys a
-- SHA-256 digest of the whole key (exactly one of the two).
CREATE TABLE keys (
  id                 text PRIMARY KEY,
  name               text,
  subject            text NOT NULL,
  role               text NOT NULL,
  scopes             text[] NOT NULL DEFAULT '{}',
  audiences          text[] NOT NULL DEFAULT '{}',
  allowed_ips        text[] NOT NULL DEFAULT '{}',
  secret_hash        text,
  sha256             text UNIQUE,
  created_at         timestamptz NOT NULL,
  not_before         timestamptz,
  expires_at         timestamptz,
  last_used_at       timestamptz,
  revoked_at         timestamptz,
  successor_id       text REFERENCES keys (id),
  grace_until        timestamptz,
  family_id          text,
  refresh_hash       text,
  refresh_expires_at timestamptz,
  refresh_spent_at   timestamptz,
  CONSTRAINT keys_one_secret CHECK ((secret_hash IS NULL) <> (sha256 IS NULL)),
  CONSTRAINT keys_sha256_hex CHECK (sha256 IS NULL OR sha256 ~ '^[0-9a-f]{64}$')
);
CREATE INDEX keys_subject_idx ON keys (subject, created_at);
CREATE INDEX keys_family_idx ON keys (family_id) WHERE family_id IS NOT NULL;
CREATE INDEX keys_revoked_idx ON keys (revoked_at) WHERE revoked_at IS NOT NULL;

-- JWT revocations by jti (per issuer) or by token digest (issuer '').
CREATE TABLE token_revocations (
  id         text NOT NULL,
  issuer     text NOT NULL DEFAULT '',
  until      timestamptz,
  created_at timestamptz NOT NULL,
  PRIMARY KEY (issuer, id)
);
CREATE INDEX token_revocations_created_idx ON token_revocations (created_at);
CREATE INDEX token_revocations_until_idx ON token_revocations (until);

-- Subject-wide revocations: credentials of the subject issued before revoked_before are revoked.
CREATE TABLE subject_revocations (
  subject        text NOT NULL,
  scope          text NOT NULL CHECK (scope IN ('keys', 'tokens', 'all')),
  revoked_before timestamptz NOT NULL,
  created_at     timestamptz NOT NULL,
  updated_at     timestamptz NOT NULL,
  PRIMARY KEY (subject, scope)
);
CREATE INDEX subject_revocations_updated_idx ON subject_revocations (updated_at);

-- Small persistent values (e.g. the identity assertion signing key).
CREATE TABLE kv (
  name       text PRIMARY KEY,
  value      text NOT NULL,
  updated_at timestamptz NOT NULL
);
