import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { systemClock, type Clock } from '../clock.js';
import { REVOCATION_CHANNEL } from '../store/types.js';
import { MemoryRevocationStore } from './memory.js';
import {
  backoff,
  parseWire,
  pollReady,
  revocationUnavailable,
  ThrottledLog,
  withTimeout,
  type WireMessage,
} from './support.js';
import type { PgNotifyRevocationOptions } from './pg-notify-options.js';
import type {
  InvalidationListener,
  RevocationLogger,
  RevocationSnapshot,
  RevocationStore,
  RevocationSubjectRef,
} from './types.js';

export type { PgNotifyRevocationOptions } from './pg-notify-options.js';

/**
 * Revocations for a PostgreSQL fleet without Redis (docs/reference/revocation.md). Each instance holds the
 * active set in memory (checks are synchronous lookups), loaded from the durable store at
 * start; revocations are announced with `pg_notify` and heard through `LISTEN` on a
 * dedicated connection. The channel carries two kinds of message: this class's own
 * (`revoke`, `evict`, `revokeSubject`) and the key store's notices, sent in the transaction
 * of each write and read through the source's `decodeNotice` (an import among them). When that connection is lost the instance reconnects with
 * backoff, re-LISTENs first and then reads what changed while it was away, so nothing
 * falls between the two.
 */
export class PgNotifyRevocationStore implements RevocationStore {
  readonly #mem: MemoryRevocationStore;
  readonly #opts: PgNotifyRevocationOptions;
  readonly #channel: string;
  readonly #clock: Clock;
  readonly #logger: RevocationLogger;
  readonly #allow: boolean;
  readonly #staleAfter: number;
  readonly #pingEvery: number;
  /** How long the listener may go unheard before its set counts as stale. */
  readonly #aliveWithin: number;
  readonly #failLog: ThrottledLog;
  readonly #connLog: ThrottledLog;
  readonly #instance = randomUUID();
  /** Announces revocations; separate from the listener so a revoke works while the listener reconnects. */
  readonly #pool: pg.Pool;
  #client: pg.Client | undefined;
  #ping: NodeJS.Timeout | undefined;
  #retry: NodeJS.Timeout | undefined;
  #synced = false;
  #loaded = false;
  /** When the listener connection was lost; undefined before the first sync. */
  #lostAt: number | undefined;
  /** Start of the last moment the listener was known to have received everything (ms). */
  #lastAlive = 0;
  /** When the listener connection last answered (its connect, or a ping). */
  #heardAt = 0;
  /** When the oldest ping still unanswered was sent; undefined when every ping is answered. */
  #askedAt: number | undefined;
  #connecting = false;
  #closed = false;

  constructor(options: PgNotifyRevocationOptions) {
    this.#opts = options;
    this.#channel = options.channel ?? REVOCATION_CHANNEL;
    this.#clock = options.clock ?? systemClock;
    this.#logger = options.logger;
    this.#allow = options.onError === 'allow';
    this.#staleAfter = options.staleAfterMs ?? 1_000;
    this.#pingEvery = options.pingIntervalMs ?? 1_000;
    this.#aliveWithin = 2 * this.#pingEvery + this.#staleAfter;
    this.#failLog = new ThrottledLog(options.logger);
    this.#connLog = new ThrottledLog(options.logger, 30_000);
    this.#mem = new MemoryRevocationStore({
      clock: this.#clock,
      logger: options.logger,
      ...(options.expiryGraceMs === undefined ? {} : { expiryGraceMs: options.expiryGraceMs }),
    });
    this.#pool = new pg.Pool({
      connectionString: options.connectionString,
      max: 1,
      idleTimeoutMillis: 10_000,
      connectionTimeoutMillis: options.connectTimeoutMs ?? 5_000,
      allowExitOnIdle: true,
      application_name: 'portcullis-revocation-notify',
    });
    this.#pool.on('error', (err) => this.#logger.warn({ err: { message: err.message } }, 'revocation notify connection dropped'));
    void this.#connect(0);
  }

  isRevoked(identity: RevocationSubjectRef): boolean {
    if (this.#synced ? this.#silent() : this.#lostAt === undefined || this.#clock.now() - this.#lostAt >= this.#staleAfter) {
      const why = new Error(this.#synced ? 'revocation listener not answering' : this.#lostAt === undefined ? 'revocations not loaded yet' : 'revocation listener disconnected');
      this.#opts.onCheckFailure?.(why);
      if (!this.#allow) throw revocationUnavailable(why);
      this.#failLog.error({ reason: why.message, onError: 'allow' }, 'revocation set may be stale; SERVING FROM LOCAL SET (onError: allow)');
    }
    return this.#mem.isRevoked(identity);
  }

  async revoke(revocationId: string, until: number | undefined): Promise<void> {
    this.#mem.addId(revocationId, until, true);
    await this.#notify({ v: 1, kind: 'id', revocationId, until: until ?? null });
  }

  async evict(revocationId: string): Promise<void> {
    await this.#mem.evict(revocationId);
    await this.#notify({ v: 1, kind: 'changed', revocationId });
  }

  async revokeSubject(subject: string, before: number, until?: number): Promise<void> {
    this.#mem.addSubject(subject, before, until, true);
    await this.#notify({ v: 1, kind: 'subject', subject, before, until: until ?? null });
  }

  async #notify(msg: WireMessage): Promise<void> {
    msg.src = this.#instance;
    try {
      await this.#pool.query('SELECT pg_notify($1, $2)', [this.#channel, JSON.stringify(msg)]);
    } catch (err) {
      throw revocationUnavailable(err);
    }
  }

  #onNotification(payload: string | undefined): void {
    const m = payload === undefined ? undefined : parseWire(payload);
    if (m === undefined) {
      this.#onNotice(payload);
      return;
    }
    if (m.src === this.#instance) return; // applied locally when it was made
    if (m.kind === 'changed') void this.#mem.evict(m.revocationId!);
    else if (m.kind === 'id') this.#mem.addId(m.revocationId!, m.until, true);
    else this.#mem.addSubject(m.subject!, m.before!, m.until, true);
  }

  /** A key store notice (every instance applies it, its writer's too); anything else is logged. */
  #onNotice(payload: string | undefined): void {
    let snap: RevocationSnapshot | undefined;
    try {
      snap = payload === undefined ? undefined : this.#opts.source.decodeNotice?.(payload);
    } catch {
      snap = undefined;
    }
    if (snap === undefined) this.#logger.warn({ channel: this.#channel }, 'revocation: ignored malformed notification');
    else this.#mem.load(snap, true);
  }

  async #connect(attempt: number): Promise<void> {
    if (this.#closed || this.#connecting) return;
    this.#connecting = true;
    const o = this.#opts;
    const client = new pg.Client({
      connectionString: o.connectionString,
      application_name: o.applicationName ?? 'portcullis-revocation',
      keepAlive: true,
      connectionTimeoutMillis: o.connectTimeoutMs ?? 5_000,
      query_timeout: o.connectTimeoutMs ?? 5_000,
    });
    client.on('error', (err) => this.#onLost(client, err));
    client.on('end', () => this.#onLost(client, new Error('connection ended')));
    client.on('notification', (n) => {
      if (n.channel === this.#channel) this.#onNotification(n.payload);
    });
    try {
      await client.connect();
      // LISTEN before reading, so a revocation committed during the read arrives as a notification.
      await client.query(`LISTEN ${client.escapeIdentifier(this.#channel)}`);
      const startedAt = this.#clock.now();
      const catchUp = this.#loaded;
      const snap = await withTimeout(
        catchUp ? o.source.changedSince(this.#lastAlive - (o.catchUpMarginMs ?? 30_000)) : o.source.loadActive(),
        o.loadTimeoutMs ?? 30_000,
        'revocation source',
      );
      if (this.#closed) {
        this.#connecting = false;
        await client.end().catch(() => {});
        return;
      }
      // Catch-up entries may sit in other instances' caches' counterparts here: tell listeners.
      this.#mem.load(snap, catchUp);
      // Changes that are not revocations (rotation graces, updates) leave no record to catch
      // up from: whatever was cached before the connection was lost is dropped.
      if (catchUp) this.#mem.evictAll();
      this.#loaded = true;
      this.#client = client;
      this.#lastAlive = startedAt;
      this.#heardAt = this.#clock.now();
      this.#askedAt = undefined;
      this.#synced = true;
      this.#lostAt = undefined;
      this.#connecting = false;
      this.#startPing(client);
      if (catchUp) {
        this.#logger.warn({ ids: snap.ids.length, subjects: snap.subjects.length }, 'revocation listener reconnected; caught up');
      }
    } catch (err) {
      this.#connecting = false;
      client.removeAllListeners('end');
      client.removeAllListeners('notification');
      client.on('error', () => {});
      client.end().catch(() => {});
      if (this.#closed) return;
      this.#connLog.error({ err: { message: (err as Error).message }, attempt }, 'revocation listener: connect failed; retrying');
      this.#scheduleConnect(attempt + 1);
    }
  }

  #scheduleConnect(attempt: number): void {
    const delay = backoff(attempt, this.#opts.minBackoffMs ?? 100, this.#opts.maxBackoffMs ?? 5_000);
    this.#retry = setTimeout(() => {
      this.#retry = undefined;
      void this.#connect(attempt);
    }, delay);
    this.#retry.unref();
  }

  #startPing(client: pg.Client): void {
    this.#ping = setInterval(() => {
      const t = this.#clock.now();
      this.#askedAt ??= t;
      client.query('SELECT 1').then(
        () => {
          // The server sends pending notifications before answering, so everything committed before t has arrived.
          if (client === this.#client) {
            this.#lastAlive = t;
            this.#heardAt = this.#clock.now();
            // Answers come in order: every earlier ping is answered too.
            if (this.#askedAt !== undefined && this.#askedAt <= t) this.#askedAt = undefined;
          }
        },
        (err: unknown) => this.#onLost(client, err),
      );
    }, this.#pingEvery);
    this.#ping.unref();
  }

  #onLost(client: pg.Client, err: unknown): void {
    if (client !== this.#client) return;
    this.#client = undefined;
    this.#synced = false;
    // The set was last known current when the connection last answered: a connection that
    // went silent before it failed gets no further grace.
    this.#lostAt = Math.min(this.#clock.now(), this.#heardAt + this.#aliveWithin);
    if (this.#ping !== undefined) clearInterval(this.#ping);
    this.#ping = undefined;
    client.removeAllListeners('end');
    client.on('error', () => {});
    client.end().catch(() => {});
    if (this.#closed) return;
    this.#logger.error({ err: { message: (err as Error)?.message } }, 'revocation listener connection lost; reconnecting');
    this.#scheduleConnect(0);
  }

  onInvalidate(listener: InvalidationListener): () => void {
    return this.#mem.onInvalidate(listener);
  }

  ready(): boolean {
    return this.#synced && !this.#closed && !this.#silent();
  }

  /**
   * A connection that stalls without closing (a firewall's idle drop) delivers no
   * notifications and no error. A ping unanswered for one interval plus `staleAfter` makes
   * the set stale, as while disconnected; a busy event loop that sent none does not.
   */
  #silent(): boolean {
    return this.#askedAt !== undefined && this.#clock.now() - this.#askedAt > this.#aliveWithin - this.#pingEvery;
  }

  waitReady(timeoutMs: number): Promise<boolean> {
    return pollReady(() => this.ready(), timeoutMs);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#synced = false;
    if (this.#ping !== undefined) clearInterval(this.#ping);
    if (this.#retry !== undefined) clearTimeout(this.#retry);
    const client = this.#client;
    this.#client = undefined;
    if (client !== undefined) {
      client.removeAllListeners('end');
      client.on('error', () => {});
      await client.end().catch(() => {});
    }
    await this.#pool.end().catch(() => {});
    await this.#mem.close();
  }
}
