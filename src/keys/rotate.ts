import type { Clock } from '../clock.js';
import { keyRevocationId } from '../revocation/ids.js';
import type { KeyRecord, KeyStore } from '../store/types.js';
import { AnnouncementError, invalid, KeyServiceError, storeFailure } from './errors.js';
import { checkLongest } from './validate.js';
import type { KeyRevocationEvent } from './events.js';
import { generateKey, generateRefreshToken } from './format.js';
import { hashSecret, type HashParams } from './hash.js';
import { keyStatus, newKeyInfo } from './info.js';
import type { CreatedKey } from './options.js';
import { successorOf } from './successor.js';

/** A rotation's successor, and until when the old key keeps working. */
export type RotatedKey = CreatedKey & { graceUntil: number };

/** What rotating a key needs. */
export interface RotateContext {
  readonly store: Pick<KeyStore, 'getKey' | 'rotateKey'>;
  readonly prefix: string;
  readonly hash: HashParams;
  /** Lifetime of a successor's refresh token (ms). */
  readonly tokenTtl: number;
  readonly clock: Clock;
  readonly emit: (event: KeyRevocationEvent) => Promise<void>;
}

/**
 * Issues a successor with the same grants and the same lifetime from now; the old key keeps
 * working for `graceMs`. The store is written first: when announcing the rotation then
 * fails, the successor comes back inside an {@link AnnouncementError} (its secret is shown
 * once), and rotating the rotated key again announces it again before refusing.
 */
export async function rotateKey(id: string, graceMs: number, ctx: RotateContext): Promise<RotatedKey> {
  if (!(Number.isFinite(graceMs) && graceMs >= 0)) throw invalid('grace must be a duration of zero or more');
  checkLongest('the grace', graceMs);
  const now = ctx.clock.now();
  const old = await ctx.store.getKey(id);
  if (old === undefined) throw new KeyServiceError('not-found', `no key with id ${id}`);
  const status = keyStatus(old, now);
  if (status === 'rotated' || status === 'rotating') {
    // Maybe the retry of a rotation whose announcement failed: announce it again.
    await announceRotation(ctx, old, old.graceUntil ?? now, now);
    throw new KeyServiceError('conflict', `key ${id} is ${status} (its rotation was announced again): only a working key can be rotated`);
  }
  if (status === 'revoked' || status === 'expired') {
    throw new KeyServiceError('conflict', `key ${id} is ${status}: only a working key can be rotated`);
  }
  const gen = generateKey(ctx.prefix);
  // A refreshable key's successor gets its own refresh token; the old one is spent by the
  // rotation, and presenting it is refused without touching the successor (see refresh).
  const refresh = old.refreshHash === null ? undefined : generateRefreshToken(ctx.prefix, gen.id);
  const [secretHash, refreshHash] = await Promise.all([
    hashSecret(gen.secret, ctx.hash),
    refresh === undefined ? Promise.resolve(null) : hashSecret(refresh.secret, ctx.hash),
  ]);
  const lifetime = old.expiresAt === null ? null : old.expiresAt - old.createdAt;
  const successor = successorOf(old, gen.id, secretHash, now, {
    expiresAt: lifetime === null ? null : now + lifetime,
    // The successor continues the key's lineage: rate-limit buckets and quotas carry over.
    familyId: old.familyId ?? old.id,
    refreshHash,
    refreshExpiresAt: refresh === undefined ? null : now + ctx.tokenTtl,
  });
  const graceUntil = now + graceMs;
  await ctx.store.rotateKey(id, successor, now, graceUntil).catch(storeFailure);
  const created: RotatedKey = {
    ...newKeyInfo(successor, now),
    remaining: old.remaining,
    key: gen.key,
    ...(refresh === undefined ? {} : { refreshToken: refresh.key, refreshExpiresAt: successor.refreshExpiresAt! }),
    replaced: [],
    rotatedFrom: id,
    graceUntil,
  };
  try {
    await announceRotation(ctx, old, graceUntil, now);
  } catch (err) {
    throw new AnnouncementError(created, `keys rotate ${id}`, err);
  }
  return created;
}

/**
 * A rotated key's end to every gateway: with a grace the old key still works, but until its
 * grace only, so cached copies that know nothing of the grace must go; without one (or once
 * it is over) it is revoked.
 */
async function announceRotation(ctx: RotateContext, old: KeyRecord, graceUntil: number, now: number): Promise<void> {
  const ref = { keyId: old.id, revocationId: keyRevocationId(old), subject: old.subject, at: now };
  if (graceUntil <= now) await ctx.emit({ kind: 'key', ...ref, expiresAt: graceUntil, reason: 'rotate' });
  else await ctx.emit({ kind: 'change', ...ref, reason: 'rotate' });
}
