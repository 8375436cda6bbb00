import { systemClock, type Clock } from '../clock.js';
import { DEFAULT_EXPIRY_GRACE_MS, ListenerSet, pollReady } from './support.js';
import type {
  InvalidationListener,
  RevocationLogger,
  RevocationSnapshot,
  RevocationStore,
  RevocationSubjectRef,
} from './types.js';

/** Options of {@link MemoryRevocationStore}. */
export interface MemoryRevocationOptions {
  clock?: Clock;
  logger?: RevocationLogger;
  /** How often expired entries are dropped in the background (default 60 s). 0 disables the timer. */
  sweepIntervalMs?: number;
  /** Added to every `until` before a marker is forgotten (default {@link DEFAULT_EXPIRY_GRACE_MS}). */
  expiryGraceMs?: number;
}

const silent: RevocationLogger = { warn() {}, error() {} };

interface SubjectEntry {
  before: number;
  /** When the entry may be forgotten (ms); Infinity for never. */
  expiresAt: number;
}

/**
 * In-process revocation set: the whole view of a single instance (kept current from the
 * embedded store's notices when it has one), or the local copy behind a shared backend. Checks
 * are synchronous Map lookups. Expired entries are dropped when a check meets them and by
 * a periodic sweep on an unref'd timer, so an idle process can still exit.
 */
export class MemoryRevocationStore implements RevocationStore {
  readonly #ids = new Map<string, number>();
  readonly #subjects = new Map<string, SubjectEntry>();
  readonly #clock: Clock;
  readonly #grace: number;
  readonly #listeners: ListenerSet;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;
  readonly #onClose: Array<() => Promise<void>> = [];

  constructor(options: MemoryRevocationOptions = {}) {
    this.#clock = options.clock ?? systemClock;
    this.#grace = options.expiryGraceMs ?? DEFAULT_EXPIRY_GRACE_MS;
    this.#listeners = new ListenerSet(options.logger ?? silent);
    const every = options.sweepIntervalMs ?? 60_000;
    if (every > 0) {
      this.#timer = setInterval(() => this.sweep(), every);
      this.#timer.unref();
    }
  }

  isRevoked(identity: RevocationSubjectRef): boolean {
    const exp = this.#ids.get(identity.revocationId);
    if (exp !== undefined) {
      if (exp > this.#clock.now()) return true;
      this.#ids.delete(identity.revocationId);
    }
    const s = this.#subjects.get(identity.subject);
    if (s !== undefined && identity.issuedAt < s.before) {
      if (s.expiresAt > this.#clock.now()) return true;
      this.#subjects.delete(identity.subject);
    }
    return false;
  }

  revoke(revocationId: string, until: number | undefined): Promise<void> {
    this.addId(revocationId, until, true);
    return Promise.resolve();
  }

  revokeSubject(subject: string, before: number, until?: number): Promise<void> {
    this.addSubject(subject, before, until, true);
    return Promise.resolve();
  }

  evict(revocationId: string): Promise<void> {
    this.#listeners.emit({ kind: 'id', revocationId });
    return Promise.resolve();
  }

  /** Tells listeners that every cached identity must go (invalidations may have been missed). */
  evictAll(): void {
    this.#listeners.emit({ kind: 'all' });
  }

  /**
   * Records an id revocation; `notify` tells listeners. Used directly by stores that keep
   * this set as their local view of a shared backend.
   */
  addId(revocationId: string, until: number | undefined | null, notify: boolean): void {
    const expiresAt = until === undefined || until === null ? Infinity : until + this.#grace;
    const prev = this.#ids.get(revocationId);
    // A credential revoked twice stays revoked for the longer of the two.
    if (prev === undefined || prev < expiresAt) this.#ids.set(revocationId, expiresAt);
    if (notify) this.#listeners.emit({ kind: 'id', revocationId });
  }

  /** Records a subject-wide revocation, keeping the newest `before` and the latest expiry. */
  addSubject(subject: string, before: number, until: number | undefined | null, notify: boolean): void {
    const expiresAt = until === undefined || until === null ? Infinity : until + this.#grace;
    const prev = this.#subjects.get(subject);
    if (prev === undefined) this.#subjects.set(subject, { before, expiresAt });
    else {
      // Replace rather than mutate: entries are never shared, but this keeps the update atomic to readers.
      this.#subjects.set(subject, { before: Math.max(prev.before, before), expiresAt: Math.max(prev.expiresAt, expiresAt) });
    }
    if (notify) this.#listeners.emit({ kind: 'subject', subject, before: Math.max(before, prev?.before ?? before) });
  }

  /** Merges a snapshot from the durable store. */
  load(snapshot: RevocationSnapshot, notify: boolean): void {
    for (const r of snapshot.ids) this.addId(r.revocationId, r.until, notify);
    for (const s of snapshot.subjects) this.addSubject(s.subject, s.before, s.until, notify);
    if (notify) for (const revocationId of snapshot.changed ?? []) this.#listeners.emit({ kind: 'id', revocationId });
    if (notify && snapshot.added === true) this.#listeners.emit({ kind: 'added' });
  }

  /** Drops expired entries; returns how many were dropped. */
  sweep(): number {
    const now = this.#clock.now();
    let n = 0;
    for (const [id, exp] of this.#ids) {
      if (exp <= now) {
        this.#ids.delete(id);
        n++;
      }
    }
    for (const [subject, s] of this.#subjects) {
      if (s.expiresAt <= now) {
        this.#subjects.delete(subject);
        n++;
      }
    }
    return n;
  }

  /** Entries currently held (expired ones included until swept). */
  get size(): { ids: number; subjects: number } {
    return { ids: this.#ids.size, subjects: this.#subjects.size };
  }

  onInvalidate(listener: InvalidationListener): () => void {
    return this.#listeners.add(listener);
  }

  ready(): boolean {
    return !this.#closed;
  }

  waitReady(timeoutMs: number): Promise<boolean> {
    return pollReady(() => this.ready(), timeoutMs);
  }

  /** Runs `fn` (e.g. ending a subscription that feeds this set) when the set is closed. */
  closeWith(fn: () => Promise<void>): void {
    this.#onClose.push(fn);
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
    await Promise.all(this.#onClose.splice(0).map((fn) => fn().catch(() => undefined)));
  }
}
