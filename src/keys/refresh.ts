import type { Clock } from '../clock.js';
import { keyRevocationId } from '../revocation/ids.js';
import type { KeyRecord, KeyStore } from '../store/types.js';
import { KeyServiceError } from './errors.js';
import type { AttemptLimiter } from '../util/attempt-limiter.js';
import { compileAllowIp } from '../util/cidr.js';
import type { KeyRevocationEvent } from './events.js';
import { generateKey, generateRefreshToken, parseRefreshToken } from './format.js';
import { hashSecret, verifySecret, type HashParams } from './hash.js';
import { effectiveEnd } from './lifetime.js';
import { successorOf } from './successor.js';

/** Answer of a successful refresh (docs/reference/api-keys.md). */
export interface RefreshedKey {
  readonly id: string;
  readonly key: string;
  readonly expiresAt: number;
  readonly refreshToken: string;
  readonly refreshExpiresAt: number;
}

/**
 * Runs an argon2 verification for a key id in the gateway's bounded, fair verification
 * queue (its API-key authenticator's), so that forged refresh tokens from many addresses
 * take no more of argon2 and of libuv's threads than forged keys do.
 */
export type BoundedVerification = <T>(keyId: string, run: () => Promise<T>) => Promise<T>;

/** What exchanging a refresh token needs. */
export interface RefreshContext {
  readonly store: Pick<KeyStore, 'getKey' | 'getSubjectRevocations' | 'refreshKey' | 'revokeFamily'>;
  readonly prefix: string;
  readonly hash: HashParams;
  /** Lifetimes of the new key and of its refresh token (ms). */
  readonly lifetimes: { readonly keyTtl: number; readonly tokenTtl: number };
  readonly clock: Clock;
  /** Failed refreshes: refresh tokens are well-formed for anyone who knows a key id. */
  readonly attempts: AttemptLimiter;
  readonly emit: (event: KeyRevocationEvent) => Promise<void>;
  /** The gateway's verification queue; without one (the CLI) verifications run as they come. */
  readonly bounded?: BoundedVerification | undefined;
}

const refused = (detail = 'The refresh token is not valid.'): KeyServiceError => new KeyServiceError('refresh-invalid', detail);
const ROTATED = 'The key of this refresh token was rotated; use the refresh token issued with its successor.';
const REPLAYED = 'The refresh token was already used; every key of its family is revoked.';

/**
 * Exchanges a refresh token for a new key and refresh token (same grants, same family);
 * the old key and token are revoked at once. A spent token revokes the whole family.
 * Refusals are KeyServiceError `refresh-invalid` (429 `rate-limited` for a client past the
 * failed-attempt limit); store failures are the store's own errors.
 */
export async function exchangeRefreshToken(token: string, clientIp: string, ctx: RefreshContext): Promise<RefreshedKey> {
  const parsed = parseRefreshToken(token, ctx.prefix);
  if (parsed === null) throw refused();
  const now = ctx.clock.now();
  const old = await ctx.store.getKey(parsed.id);
  if (old === undefined || old.refreshHash === null) throw refused();
  await verifyToken(ctx, old.refreshHash, parsed, clientIp);
  await checkUsable(ctx, old, now);
  // The successor keeps the key's allowed addresses: refreshed from elsewhere, it could not
  // be used where it was asked for, and the token would be spent for nothing. Refused
  // before anything is spent; the key and its token keep working where they may.
  if (compileAllowIp(old.allowedIps)?.(clientIp) === false) throw refused('The refresh comes from an address the key is not allowed at; refresh from one it is, or ask for a new key.');
  return replace(ctx, old, now);
}

/** Checks the token's secret under the failed-attempt limit. */
async function verifyToken(ctx: RefreshContext, refreshHash: string, parsed: { id: string; secret: string }, clientIp: string): Promise<void> {
  // Anyone who knows a key id can forge a well-formed token, and each costs an argon2
  // run: a client past the limit is refused without one. Counted before verifying so
  // that a concurrent burst cannot overshoot; taken back when the token proves right.
  const wait = ctx.attempts.wait(parsed.id, clientIp);
  if (wait !== undefined) throw new KeyServiceError('rate-limited', 'Too many failed refreshes from this address; retry later.', { retryAfter: wait });
  ctx.attempts.count(parsed.id, clientIp, 1);
  let ok: boolean;
  try {
    const run = () => verifySecret(refreshHash, parsed.secret);
    ok = await (ctx.bounded === undefined ? run() : ctx.bounded(parsed.id, run));
  } catch (err) {
    ctx.attempts.count(parsed.id, clientIp, -1);
    throw err;
  }
  if (!ok) throw refused();
  ctx.attempts.count(parsed.id, clientIp, -1);
}

/** Refuses a proven token whose key was rotated, replayed, revoked or has expired. */
async function checkUsable(ctx: RefreshContext, old: KeyRecord, now: number): Promise<void> {
  // Spent by the rotation, not replayed: the successor has a token of its own.
  if (old.successorId !== null) throw refused(ROTATED);
  if (old.refreshSpentAt !== null) {
    await revokeFamily(ctx, old, now);
    throw refused(REPLAYED);
  }
  if (old.revokedAt !== null) throw refused('The key of this refresh token is revoked.');
  if (old.refreshExpiresAt !== null && now >= old.refreshExpiresAt) throw refused('The refresh token has expired.');
  const subjectRevs = await ctx.store.getSubjectRevocations(old.subject);
  if (subjectRevs.some((r) => r.scope !== 'tokens' && old.createdAt < r.revokedBefore)) throw refused('The key of this refresh token is revoked.');
}

/**
 * Announces the old key's end, then stores the successor, spending the token and revoking
 * the old key. In that order: when the announcement fails (Redis unreachable) nothing is
 * spent and the client's retry refreshes; the other way round, the retry of a client that
 * never got its new key would be taken for a replay and revoke the whole family.
 */
async function replace(ctx: RefreshContext, old: KeyRecord, now: number): Promise<RefreshedKey> {
  const gen = generateKey(ctx.prefix);
  const rt = generateRefreshToken(ctx.prefix, gen.id);
  const [secretHash, refreshHash] = await Promise.all([hashSecret(gen.secret, ctx.hash), hashSecret(rt.secret, ctx.hash)]);
  const expiresAt = now + ctx.lifetimes.keyTtl;
  const refreshExpiresAt = now + ctx.lifetimes.tokenTtl;
  const successor = successorOf(old, gen.id, secretHash, now, { expiresAt, familyId: old.familyId ?? old.id, refreshHash, refreshExpiresAt });
  await ctx.emit({ kind: 'key', keyId: old.id, revocationId: keyRevocationId(old), subject: old.subject, at: now, expiresAt: effectiveEnd(old), reason: 'refresh' });
  if (!(await ctx.store.refreshKey(old.id, successor, now))) {
    // Lost a race with a rotation: the token is spent, not replayed.
    if ((await ctx.store.getKey(old.id))?.successorId != null) throw refused(ROTATED);
    // Lost a race with another use of the same token: that is a replay too.
    await revokeFamily(ctx, old, now);
    throw refused(REPLAYED);
  }
  return { id: gen.id, key: gen.key, expiresAt, refreshToken: rt.key, refreshExpiresAt };
}

async function revokeFamily(ctx: RefreshContext, k: KeyRecord, now: number): Promise<void> {
  const revoked = await ctx.store.revokeFamily(k.familyId ?? k.id, now);
  for (const r of revoked) {
    await ctx.emit({ kind: 'key', keyId: r.id, revocationId: r.revocationId, subject: r.subject, at: now, expiresAt: r.expiresAt, reason: 'family' });
  }
}
