import type { GatewayError } from '../../http/problem.js';
import { parseRevocationId } from '../../revocation/ids.js';
import type { CachedKeyIdentity } from './identity.js';
import { VerifiedCache } from '../verified-cache.js';
import { indexAdd, indexRemove, type Digests } from './digest-index.js';

/**
 * The API-key authenticator's cache: verified identities and refusals by key digest, with
 * the digests cached per revocation id so that a key's eviction finds them. Imported keys
 * are not indexed: theirs (`legacy:<sha256>`) holds their digest. A subject's eviction
 * (revoke-all, rare) scans the cache instead of keeping a second index: ~40 bytes a key
 * saved; a scan of 100 000 cached keys takes ~4–8 ms.
 */
export class KeyCache {
  readonly entries: VerifiedCache<CachedKeyIdentity, GatewayError>;
  readonly #byRevocation = new Map<string, Digests>();
  /** Bumped on every eviction: a verification that started before one must not cache its result. */
  epoch = 0;

  constructor(max: number, refusalMax: number, now: () => number) {
    this.entries = new VerifiedCache<CachedKeyIdentity, GatewayError>({ max, refusalMax, now, until: (identity) => identity.cachedUntil, onRemove: (key, value) => this.#unindex(key, value) });
  }

  /** Caches a verified identity until its `cachedUntil` and indexes it (`legacy`: an imported key, found by its digest). */
  keep(digest: string, identity: CachedKeyIdentity, legacy: boolean): void {
    this.entries.set(digest, identity);
    if (!legacy) indexAdd(this.#byRevocation, identity.revocationId, digest);
  }

  /** Drops cached identities of one credential (`key:<id>` / `legacy:<sha256>`). */
  evict(revocationId: string): void {
    const parsed = parseRevocationId(revocationId);
    if (parsed?.kind === 'legacy') {
      // An imported key is cached under its SHA-256, not indexed.
      const digest = parsed.sha256;
      const cached = this.entries.peek(digest, true);
      this.#evictDigests(cached !== undefined && cached.revocationId === revocationId ? digest : undefined);
      // A UUID key imported by the digest of its bytes is cached under the digest of the
      // text the client sent (any letter case), so those entries are indexed.
      const indexed = this.#byRevocation.get(revocationId);
      if (indexed !== undefined) this.#evictDigests(indexed);
      return;
    }
    this.#evictDigests(this.#byRevocation.get(revocationId));
  }

  /** Drops every cached identity (invalidations may have been missed). */
  evictAll(): void {
    this.epoch++;
    this.entries.clearIdentities();
  }

  /** Drops every cached identity of a subject. */
  evictSubject(subject: string): void {
    this.#evictDigests(new Set(this.entries.keysWhere((identity) => identity.subject === subject)));
  }

  #unindex(digest: string, identity: CachedKeyIdentity): void {
    indexRemove(this.#byRevocation, identity.revocationId, digest);
  }

  #evictDigests(digests: Digests | undefined): void {
    this.epoch++;
    if (digests === undefined) return;
    // The proof that a key matches its stored hash stays: the next request re-reads the
    // record anyway, so a just-revoked key is refused after one store read instead of
    // waiting on argon2 on every instance of the fleet.
    if (typeof digests === 'string') this.entries.delete(digests);
    else for (const d of [...digests]) this.entries.delete(d);
  }
}
