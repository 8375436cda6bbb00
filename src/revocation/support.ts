import { MAX_CLOCK_TOLERANCE_MS } from '../config/schema.js';
import { GatewayError } from '../http/problem.js';
import type { InvalidationEvent, InvalidationListener, RevocationLogger } from './types.js';

/**
 * Markers outlive the credential by this much by default: verifiers accept a JWT for up
 * to `clockTolerance` after `exp`, and instances' clocks disagree a little, so a marker
 * that vanished exactly at `exp` would let a revoked token through for that window. It
 * covers the largest tolerance the config allows, not the current one: a reload that
 * raises the tolerance must not bring back tokens revoked before it.
 */
export const DEFAULT_EXPIRY_GRACE_MS = MAX_CLOCK_TOLERANCE_MS + 120_000;

/** The error every store throws when it cannot tell whether a credential is revoked. */
export function revocationUnavailable(cause: unknown): GatewayError {
  return new GatewayError('revocation-unavailable', 'Revocation status could not be checked; retry shortly.', {
    cause,
    headers: { 'retry-after': '1' },
  });
}

/** Listener registry whose emit never lets one listener's failure reach the others or the caller. */
export class ListenerSet {
  readonly #listeners = new Set<InvalidationListener>();
  readonly #logger: RevocationLogger;

  constructor(logger: RevocationLogger) {
    this.#logger = logger;
  }

  add(listener: InvalidationListener): () => void {
    // Wrapped so the same function registered twice gets two independent subscriptions.
    const entry: InvalidationListener = (ev) => listener(ev);
    this.#listeners.add(entry);
    return () => {
      this.#listeners.delete(entry);
    };
  }

  emit(ev: InvalidationEvent): void {
    for (const l of this.#listeners) {
      try {
        l(ev);
      } catch (err) {
        this.#logger.error({ err, event: ev.kind }, 'revocation invalidation listener threw');
      }
    }
  }
}

/**
 * Logs a recurring failure at most once per interval with a count of what was
 * suppressed: `onError: allow` must be loud, but one line per request would drown the log.
 */
export class ThrottledLog {
  #last = -Infinity;
  #suppressed = 0;

  private readonly logger: RevocationLogger;
  private readonly intervalMs: number;
  constructor(
    logger: RevocationLogger,
    intervalMs = 5_000,
  ) {
    this.logger = logger;
    this.intervalMs = intervalMs;
  }

  error(obj: Record<string, unknown>, msg: string, now = Date.now()): void {
    if (now - this.#last < this.intervalMs) {
      this.#suppressed++;
      return;
    }
    this.logger.error({ ...obj, suppressed: this.#suppressed }, msg);
    this.#last = now;
    this.#suppressed = 0;
  }
}

/** Capped exponential backoff with jitter, for reconnect loops. */
export function backoff(attempt: number, minMs: number, maxMs: number): number {
  const base = Math.min(maxMs, minMs * 2 ** Math.min(attempt, 20));
  return Math.round(base / 2 + Math.random() * (base / 2));
}

/** Polls `ready` until true or the timeout passes; used by the stores' `waitReady`. */
export async function pollReady(ready: () => boolean, timeoutMs: number, stepMs = 10): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!ready()) {
    if (Date.now() >= deadline) return false;
    await new Promise((r) => setTimeout(r, Math.min(stepMs, Math.max(1, deadline - Date.now()))));
  }
  return true;
}

/** Rejects when `p` has not settled within `ms`; for reads from the durable store that must not hang a reconnect. */
export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not answer within ${ms} ms`)), ms);
    timer.unref();
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Serialized form of an invalidation on a pub/sub channel. `src` lets an instance skip its
 * own echo. `changed`: a credential's record changed (evict, do not mark revoked).
 */
export interface WireMessage {
  v: 1;
  src?: string;
  kind: 'id' | 'subject' | 'changed';
  revocationId?: string;
  until?: number | null;
  subject?: string;
  before?: number;
}

/** Parses a pub/sub payload; undefined for anything malformed (which is logged, never thrown). */
export function parseWire(payload: string): WireMessage | undefined {
  let m: unknown;
  try {
    m = JSON.parse(payload);
  } catch {
    return undefined;
  }
  if (typeof m !== 'object' || m === null) return undefined;
  const o = m as Record<string, unknown>;
  const until = o.until;
  if (until !== undefined && until !== null && !Number.isFinite(until)) return undefined;
  if (o.src !== undefined && typeof o.src !== 'string') return undefined;
  if ((o.kind === 'id' || o.kind === 'changed') && typeof o.revocationId === 'string' && o.revocationId !== '') {
    return { v: 1, src: o.src as string | undefined, kind: o.kind, revocationId: o.revocationId, until: until as number | null | undefined };
  }
  if (o.kind === 'subject' && typeof o.subject === 'string' && o.subject !== '' && Number.isFinite(o.before)) {
    return { v: 1, src: o.src as string | undefined, kind: 'subject', subject: o.subject, before: o.before as number, until: until as number | null | undefined };
  }
  return undefined;
}
