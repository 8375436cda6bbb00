import type { Sql } from './driver.js';
import type { Statements } from './statements.js';

/**
 * Usage credits, kept per key lineage in `key_quotas` (docs/reference/rate-limits.md). A
 * lineage without a row is unlimited; a row's `remaining` never goes below zero.
 */

/** Sets a lineage's credits (null: removes them, the lineage is unlimited again). */
export async function setUses(tx: Sql, lineage: string, uses: number | null): Promise<void> {
  if (uses === null) {
    await tx.query('DELETE FROM key_quotas WHERE lineage = $1', [lineage]);
    return;
  }
  await tx.query(
    'INSERT INTO key_quotas (lineage, remaining) VALUES ($1, $2) ON CONFLICT (lineage) DO UPDATE SET remaining = excluded.remaining',
    [lineage, uses],
  );
}

/**
 * Spends up to `wanted` credits of each lineage inside the caller's transaction: each row
 * is read locked, then lowered by what it could give. Resolves to what each lineage gave.
 */
export async function spendUses(tx: Sql, sql: Statements, wanted: ReadonlyMap<string, number>): Promise<Map<string, number>> {
  const granted = new Map<string, number>();
  // A fixed order, so that two batches locking the same rows cannot deadlock.
  for (const lineage of [...wanted.keys()].sort()) {
    const want = wanted.get(lineage)!;
    const rows = await tx.query<{ remaining: unknown }>(sql.usesForUpdate, [lineage]);
    if (rows[0] === undefined) {
      granted.set(lineage, want);
      continue;
    }
    const give = Math.min(want, Number(rows[0].remaining));
    if (give > 0) await tx.query('UPDATE key_quotas SET remaining = remaining - $2 WHERE lineage = $1', [lineage, give]);
    granted.set(lineage, give);
  }
  return granted;
}
