import { compilePolicy } from '../../limits/compile.js';
import type { KeyRateLimit, KeyRecord } from '../../store/types.js';
import { compileAllowIp } from '../../util/cidr.js';
import type { Identity, OwnRateLimit } from '../types.js';
import { Interner } from './interner.js';

/** The name a key's own rate limit goes by in `RateLimit-Policy` and the metrics. */
export const KEY_POLICY = 'key';

/** A key's identity as the cache holds it: with the time it stops being served from there. */
export interface CachedKeyIdentity extends Identity {
  /** ms: the cache's TTL from verification, or the key's end if that comes first. */
  readonly cachedUntil: number;
}

const NO_AUDIENCES: readonly string[] = Object.freeze([]);

/**
 * Builds the Identity of a verified key record. Role names, scope lists and audience
 * lists are interned: 100 000 cached keys of one role and scope set share one copy.
 */
export class IdentityBuilder {
  readonly #rank: (role: string) => number;
  readonly #roles = new Interner<string>();
  readonly #scopes = new Interner<{ readonly scopes: readonly string[]; readonly header: string }>();
  readonly #audiences = new Interner<readonly string[]>();
  readonly #policies = new Interner<OwnRateLimit>();

  constructor(rank: (role: string) => number) {
    this.#rank = rank;
  }

  /** `end`: the key's effective end (ms), null when it has none; `cachedUntil`: see {@link CachedKeyIdentity}. */
  build(record: KeyRecord, end: number | null, revocationId: string, cachedUntil: number): CachedKeyIdentity {
    const scopes = this.#scopes.get(JSON.stringify(record.scopes), () => ({ scopes: Object.freeze([...record.scopes]), header: record.scopes.join(' ') }));
    return Object.freeze({
      method: 'apiKey',
      subject: record.subject,
      role: this.#roles.get(record.role, () => record.role),
      roleRank: this.#rank(record.role),
      scopes: scopes.scopes,
      scopesHeader: scopes.header,
      keyId: record.id,
      ...(record.familyId !== null && record.familyId !== record.id ? { lineage: record.familyId } : {}),
      audiences: record.audiences.length === 0 ? NO_AUDIENCES : this.#audiences.get(JSON.stringify(record.audiences), () => Object.freeze([...record.audiences])),
      allowIp: compileAllowIp(record.allowedIps),
      issuedAt: record.createdAt,
      expiresAt: end ?? undefined,
      revocationId,
      ...(record.rateLimit === null ? {} : { rateLimit: this.#policy(record.rateLimit) }),
      ...(record.remaining === null ? {} : { credits: true as const }),
      cachedUntil,
    });
  }

  #policy(r: KeyRateLimit): OwnRateLimit {
    return this.#policies.get(`${r.limit}/${r.window}`, () => ({ ...compilePolicy({ name: KEY_POLICY, limit: r.limit, window: r.window, by: 'credential' }), by: 'credential' as const }));
  }
}
