/**
 * The statements whose SQL differs between PostgreSQL and SQLite, one set per dialect.
 * Everything else the key store runs is plain SQL both accept and lives once in `sql.ts`.
 * Parameters are written `$1…` in both sets: the SQLite driver reads them as `?1…`, binds
 * times as milliseconds and lists as JSON arrays.
 */
export interface Statements {
  /** Announces payload $2 on channel $1, inside the caller's transaction. */
  readonly notify: string;
  /** The stored digests among the list $1. */
  readonly existingSha256: string;
  /** Key $1, locked against a concurrent rotation until the transaction ends. */
  readonly keyForUpdate: string;
  /** The credits of lineage $1 (`remaining`), locked until the transaction ends. */
  readonly usesForUpdate: string;
  /** Condition: `name` equals parameter $n, null matching null. */
  nameIs(n: number): string;
  /** last_used_at from two parallel lists, ids $1 and times $2 (ms); never moves backwards. */
  readonly touchLastUsed: string;
  /** Upsert of a JWT revocation ($1 id, $2 issuer, $3 until, $4 created): a longer or unbounded `until` wins. */
  readonly upsertTokenRevocation: string;
  /** Upsert of a subject revocation ($1 subject, $2 scope, $3 revoked_before, $4 at): `revoked_before` only moves forward. */
  readonly upsertSubjectRevocation: string;
}

export const postgresStatements: Statements = {
  notify: 'SELECT pg_notify($1, $2)',
  existingSha256: 'SELECT sha256 FROM keys WHERE sha256 = ANY($1::text[])',
  keyForUpdate: 'SELECT * FROM keys WHERE id = $1 FOR UPDATE',
  usesForUpdate: 'SELECT remaining FROM key_quotas WHERE lineage = $1 FOR UPDATE',
  nameIs: (n) => `name IS NOT DISTINCT FROM $${n}::text`,
  touchLastUsed: `UPDATE keys AS k SET last_used_at = to_timestamp(v.ms / 1000.0)
      FROM unnest($1::text[], $2::float8[]) AS v(id, ms)
     WHERE k.id = v.id AND (k.last_used_at IS NULL OR k.last_used_at < to_timestamp(v.ms / 1000.0))`,
  upsertTokenRevocation: `INSERT INTO token_revocations (id, issuer, until, created_at) VALUES ($1, $2, $3, $4)
    ON CONFLICT (issuer, id) DO UPDATE SET
      until = CASE WHEN token_revocations.until IS NULL OR EXCLUDED.until IS NULL THEN NULL
                   ELSE GREATEST(token_revocations.until, EXCLUDED.until) END,
      created_at = EXCLUDED.created_at`,
  upsertSubjectRevocation: `INSERT INTO subject_revocations (subject, scope, revoked_before, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)
    ON CONFLICT (subject, scope) DO UPDATE SET
      revoked_before = GREATEST(subject_revocations.revoked_before, EXCLUDED.revoked_before),
      updated_at = EXCLUDED.updated_at`,
};

export const sqliteStatements: Statements = {
  notify: `INSERT INTO notices (channel, payload, at) VALUES ($1, $2, CAST(unixepoch('subsec') * 1000 AS INTEGER))`,
  existingSha256: 'SELECT sha256 FROM keys WHERE sha256 IN (SELECT value FROM json_each($1))',
  // Write transactions on SQLite hold the database's one write lock from BEGIN IMMEDIATE on.
  keyForUpdate: 'SELECT * FROM keys WHERE id = $1',
  usesForUpdate: 'SELECT remaining FROM key_quotas WHERE lineage = $1',
  nameIs: (n) => `name IS $${n}`,
  touchLastUsed: `UPDATE keys AS k SET last_used_at = v.ms
      FROM (SELECT i.value AS id, t.value AS ms FROM json_each($1) AS i JOIN json_each($2) AS t ON t.key = i.key) AS v
     WHERE k.id = v.id AND (k.last_used_at IS NULL OR k.last_used_at < v.ms)`,
  upsertTokenRevocation: `INSERT INTO token_revocations (id, issuer, until, created_at) VALUES ($1, $2, $3, $4)
    ON CONFLICT (issuer, id) DO UPDATE SET
      until = CASE WHEN token_revocations.until IS NULL OR excluded.until IS NULL THEN NULL
                   ELSE max(token_revocations.until, excluded.until) END,
      created_at = excluded.created_at`,
  upsertSubjectRevocation: `INSERT INTO subject_revocations (subject, scope, revoked_before, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)
    ON CONFLICT (subject, scope) DO UPDATE SET
      revoked_before = max(subject_revocations.revoked_before, excluded.revoked_before),
      updated_at = excluded.updated_at`,
};
