import type { RevocationCheck } from './check.js';
import type { Clock } from '../clock.js';
import type { Identity } from '../authn/types.js';
import type { Logger } from 'pino';
import { REVOCATION_CHANNEL, type KeyStore, type RevocationLog, type RevocationNotice } from '../store/types.js';
import { formatRevocationId, formatScopedSubject, fromTokenRecordId } from './ids.js';
import type { RevocationSnapshot, RevocationSource, RevocationStore } from './types.js';
import { DEFAULT_EXPIRY_GRACE_MS, ThrottledLog } from './support.js';

// The key store as the revocation view's durable record: what the view loads, how the
// embedded store's notices reach it, the scoped check the request path asks, and pruning.

type KeyRow = { revocationId: string; expiresAt: number | null };
type TokenRow = { id: string; until: number | null };
type SubjectRow = { subject: string; scope: string; revokedBefore: number };

/** Store rows as revocation entries: ids by kind, subjects scoped by the credentials they cover. */
function toSnapshot(ks: readonly KeyRow[], ts: readonly TokenRow[], ss: readonly SubjectRow[]): RevocationSnapshot {
  const out: RevocationSnapshot = { ids: [], subjects: [] };
  for (const k of ks) out.ids.push({ revocationId: k.revocationId, until: k.expiresAt ?? undefined });
  for (const t of ts) out.ids.push({ revocationId: formatRevocationId(fromTokenRecordId(t.id)), until: t.until ?? undefined });
  for (const s of ss) {
    if (s.scope !== 'tokens') out.subjects.push({ subject: formatScopedSubject('keys', s.subject), before: s.revokedBefore });
    if (s.scope !== 'keys') out.subjects.push({ subject: formatScopedSubject('tokens', s.subject), before: s.revokedBefore });
  }
  return out;
}

/** One notice of the store's revocation channel as revocation entries. */
function noticeSnapshot(payload: string): RevocationSnapshot {
  const n = JSON.parse(payload) as RevocationNotice;
  if (n.kind === 'key') return toSnapshot([n], [], []);
  if (n.kind === 'token') return toSnapshot([], [n], []);
  if (n.kind === 'changed') return { ids: [], subjects: [], changed: [n.revocationId] };
  if (n.kind === 'added') return { ids: [], subjects: [], added: true };
  if (n.kind === 'subject') return toSnapshot([], [], [n]);
  throw new Error('not a revocation notice');
}

/** The durable record of revocations, as the revocation view loads it (subjects scoped by kind). */
export function revocationSource(store: RevocationLog & Pick<KeyStore, 'kind' | 'listen'>, clock: Clock, logger?: Pick<Logger, 'warn' | 'error'>): RevocationSource {
  const loadActive = async (): Promise<RevocationSnapshot> => {
    // A credential is accepted a clock tolerance past its end: so is its revocation kept.
    const since = clock.now() - DEFAULT_EXPIRY_GRACE_MS;
    const [ks, ts, ss] = await Promise.all([store.listActiveRevokedKeys(since), store.listActiveTokenRevocations(since), store.listSubjectRevocations()]);
    return toSnapshot(ks, ts, ss);
  };
  const source: RevocationSource = {
    loadActive,
    decodeNotice: noticeSnapshot,
    changedSince: async (since) => {
      const [ks, ts, ss] = await Promise.all([store.listRevokedKeysSince(since), store.listTokenRevocationsSince(since), store.listSubjectRevocationsSince(since)]);
      return toSnapshot(ks, ts, ss);
    },
  };
  // The embedded file has no server to push changes: every process polls its notices.
  // (PostgreSQL's are heard on the LISTEN connection of the revocation view, through decodeNotice.)
  if (store.kind === 'sqlite') {
    // A file that cannot be read (a disk error) would fail every poll: one line per 30 s.
    const failures = logger === undefined ? undefined : new ThrottledLog(logger, 30_000);
    source.watch = (apply) =>
      store.listen(REVOCATION_CHANNEL, {
        onError: (err) => failures?.error({ err: err.message }, 'revocation: reading the store\'s notices failed; changes from other processes are not seen'),
        onMessage: (payload) => {
          try {
            apply(noticeSnapshot(payload));
          } catch (err) {
            logger?.warn({ err: String(err) }, 'revocation: ignored a malformed store notice');
          }
        },
        onReconnect: () => {
          loadActive().then(apply, (err: unknown) => logger?.warn({ err: String(err) }, 'revocation: reloading after missed notices failed'));
        },
      });
  }
  return source;
}

/**
 * Revocation check on the scoped subject of the credential's kind (keys and JWTs of one
 * subject are revoked apart), timing the asynchronous checks when asked to.
 */
export function scopedCheck(revocation: RevocationStore, observe?: (ms: number) => void): RevocationCheck {
  const scoped = (id: RevocationCheckRef) => ({
    revocationId: id.revocationId,
    subject: formatScopedSubject(id.method === 'jwt' ? 'tokens' : 'keys', id.subject),
    issuedAt: id.issuedAt,
    externalRevocationKeys: id.externalRevocationKeys,
  });
  const gate = revocation.gate?.bind(revocation);
  return {
    isRevoked: (id: RevocationCheckRef) => {
      const r = revocation.isRevoked(scoped(id));
      if (observe === undefined || typeof r === 'boolean') return r;
      const t0 = performance.now();
      return r.finally(() => observe(performance.now() - t0));
    },
    ...(gate === undefined ? {} : { gate: (id: RevocationCheckRef) => gate(scoped(id)) }),
  };
}

type RevocationCheckRef = Pick<Identity, 'revocationId' | 'subject' | 'issuedAt' | 'externalRevocationKeys'> & { method?: Identity['method'] };

/**
 * Deletes, every `everyMs`, the token revocations whose token can no longer be accepted
 * (its expiry plus the longest clock tolerance has passed). Instances pruning at once
 * are harmless: a deletion is idempotent.
 */
export function startPruning(store: Pick<KeyStore, 'pruneTokenRevocations'>, clock: Clock, logger: Pick<Logger, 'info' | 'warn'>, everyMs: number): NodeJS.Timeout {
  const timer = setInterval(() => {
    store.pruneTokenRevocations(clock.now() - DEFAULT_EXPIRY_GRACE_MS).then(
      (n) => { if (n > 0) logger.info({ pruned: n }, 'pruned token revocations past their expiry'); },
      (err: unknown) => logger.warn({ err: String(err) }, 'pruning token revocations failed; retrying at the next interval'),
    );
  }, everyMs);
  timer.unref();
  return timer;
}
