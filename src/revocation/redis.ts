import type { RedisOptions } from 'ioredis';
import { systemClock, type Clock } from '../clock.js';
import { GatewayError } from '../http/problem.js';
import {
  backoff,
  DEFAULT_EXPIRY_GRACE_MS,
  ListenerSet,
  pollReady,
  revocationUnavailable,
  ThrottledLog,
  withTimeout,
} from './support.js';
import { MgetBatcher, type CheckBatch } from './redis-batch.js';
import { RedisInvalidations } from './redis-invalidations.js';
import { commandConnection, type ScriptedRedis } from './redis-script.js';
import type { RedisRevocationOptions } from './redis-options.js';

export type { RedisRevocationOptions } from './redis-options.js';
import { RedisSeed } from './redis-seed.js';
import { RedisTurn } from './redis-turn.js';
import type { RevocationGate } from './check.js';
import { errInfo } from './redis-util.js';
import type {
  InvalidationListener,
  RevocationLogger,
  RevocationStore,
  RevocationSubjectRef,
} from './types.js';

/**
 * Revocation markers in Redis, shared by a fleet (docs/reference/revocation.md).
 *
 * Keys: `<prefix>r:<revocationId>` (a marker expiring at the credential's expiry plus the
 * grace), `<prefix>s:<subject>` (the subject-wide "issued before" timestamp, ms), and the
 * keys the fronted API writes itself (`revocation.externalKeys`, unprefixed; read only).
 * Checks made in one turn of the event loop share one `MGET` of their keys: one write and
 * one round trip for every request read in that turn. Invalidations are published as JSON on `<prefix>invalidate` and
 * read on a second connection (a subscribed connection can send nothing else).
 *
 * Nothing is queued while Redis is away: checks fail at once (or within `timeout` when
 * the connection dies under them) and `onError` decides. ioredis reconnects by itself
 * with capped backoff.
 *
 * Every command is bounded by `timeout`, but not with ioredis's `commandTimeout`: that arms
 * a timer per command, and in a gateway process under load that was seen keeping ~10 MB of
 * young objects alive into every scavenge (8 ms pauses) where the same process without it
 * kept ~0.3 MB (0.8 ms). The `MGET`s in flight are swept by one interval timer instead;
 * the rare other commands get a timer each.
 */
export class RedisRevocationStore implements RevocationStore {
  readonly #redis: ScriptedRedis;
  readonly #invalidations: RedisInvalidations;
  readonly #idPrefix: string;
  readonly #subjectPrefix: string;
  readonly #channel: string;
  readonly #sentinelKey: string;
  readonly #allow: boolean;
  readonly #grace: number;
  readonly #clock: Clock;
  readonly #logger: RevocationLogger;
  readonly #failLog: ThrottledLog;
  readonly #connLog: ThrottledLog;
  readonly #listeners: ListenerSet;
  readonly #timeout: number;
  readonly #onCheckFailure: ((err: unknown) => void) | undefined;
  readonly #seed: RedisSeed;
  #everReady = false;
  #lost = false;
  #closed = false;
  /**
   * A check timed out on a connection that still looks ready: Redis is hung (or the path
   * to it is). Until a PING gets through again `ready()` is false, so `/readyz` does not
   * report ready while every check is being refused.
   */
  #unanswered = false;
  #probe: NodeJS.Timeout | undefined;
  readonly #checks: MgetBatcher;
  /** The command connection's turns: the rate limits send their script in the checks' write. */
  readonly turn: RedisTurn;

  constructor(options: RedisRevocationOptions) {
    const prefix = options.keyPrefix ?? 'portcullis:';
    this.#idPrefix = `${prefix}r:`;
    this.#subjectPrefix = `${prefix}s:`;
    this.#channel = `${prefix}invalidate`;
    this.#sentinelKey = `${prefix}seeded`;
    this.#allow = options.onError === 'allow';
    this.#grace = options.expiryGraceMs ?? DEFAULT_EXPIRY_GRACE_MS;
    this.#clock = options.clock ?? systemClock;
    this.#logger = options.logger;
    this.#failLog = new ThrottledLog(options.logger);
    this.#connLog = new ThrottledLog(options.logger, 30_000);
    this.#listeners = new ListenerSet(options.logger);
    this.#timeout = options.timeout ?? 1_000;
    this.#onCheckFailure = options.onCheckFailure;
    const maxBackoff = options.maxBackoffMs ?? 2_000;
    const common: RedisOptions = {
      connectTimeout: options.connectTimeoutMs ?? 2_000,
      retryStrategy: (times: number) => backoff(times - 1, 50, maxBackoff),
      lazyConnect: false,
    };

    this.#redis = commandConnection(options.url, common);
    this.#seed = new RedisSeed({
      source: options.source,
      writer: {
        redis: this.#redis,
        sentinelKey: this.#sentinelKey,
        marker: (id, until) => this.#marker(id, until),
        subjectArgs: (subject, before, until) => this.#subjectArgs(subject, before, until),
        bounded: (p) => this.#bounded(p),
      },
      logger: options.logger,
      clock: this.#clock,
      loadTimeoutMs: options.loadTimeoutMs ?? 30_000,
      checkIntervalMs: options.seedCheckIntervalMs ?? 30_000,
    });
    this.turn = new RedisTurn(this.#redis);
    this.#checks = new MgetBatcher(this.#redis, this.#timeout, {
      answered: () => {
        this.#unanswered = false;
      },
      failed: (batch, err) => this.#failBatch(batch, err),
    }, this.turn.schedule);
    this.#redis.on('error', (err: Error) => this.#connLog.error({ err: errInfo(err) }, 'revocation redis connection error'));
    this.#redis.on('ready', () => this.#onReady());
    this.#redis.on('close', () => this.#onClose());

    this.#invalidations = new RedisInvalidations({
      url: options.url,
      connection: common,
      channel: this.#channel,
      listeners: this.#listeners,
      logger: options.logger,
      publish: (channel, message) => this.#bounded(this.#redis.publish(channel, message)),
      closed: () => this.#closed,
    });
  }

  gate(identity: RevocationSubjectRef): RevocationGate | undefined {
    // The script reads integers; anything else takes the usual check.
    if (this.#redis.status !== 'ready' || !this.#seed.seeded || this.#unanswered || !Number.isSafeInteger(identity.issuedAt)) return undefined;
    const id = this.#idPrefix + identity.revocationId;
    const ext = identity.externalRevocationKeys;
    return { present: ext === undefined || ext.length === 0 ? [id] : [id, ...ext], subject: this.#subjectPrefix + identity.subject, issuedAt: identity.issuedAt };
  }

  isRevoked(identity: RevocationSubjectRef): boolean | Promise<boolean> {
    if (this.#redis.status !== 'ready' || !this.#seed.seeded) {
      return this.#fail(new Error(this.#seed.seeded ? `redis connection ${this.#redis.status}` : 'redis not yet seeded'));
    }
    return this.#checks.check(this.#idPrefix + identity.revocationId, this.#subjectPrefix + identity.subject, identity.externalRevocationKeys, identity.issuedAt);
  }

  #failBatch(batch: CheckBatch, err: unknown): void {
    if (this.#redis.status === 'ready') this.#watchUnanswered();
    for (const c of batch.checks) {
      const failed = this.#fail(err);
      if (failed === false) c.resolve(false);
      else failed.catch(c.reject);
    }
  }

  /** Any other command, bounded by the timeout. */
  #bounded<T>(p: Promise<T>): Promise<T> {
    return withTimeout(p, this.#timeout, 'revocation redis');
  }

  /** Marks Redis as not answering and PINGs it (bounded by the command timeout) until it does. */
  #watchUnanswered(): void {
    if (this.#unanswered || this.#closed) return;
    this.#unanswered = true;
    const tick = () => {
      this.#probe = undefined;
      if (this.#closed || !this.#unanswered) return;
      this.#bounded(this.#redis.ping()).then(
        () => {
          this.#unanswered = false;
        },
        () => {
          if (!this.#closed && this.#unanswered) this.#probe = setTimeout(tick, 500).unref();
        },
      );
    };
    this.#probe = setTimeout(tick, 500).unref();
  }

  /** allow: answer "not revoked" and log (throttled); deny: the 503 problem. */
  #fail(err: unknown): false | Promise<never> {
    this.#onCheckFailure?.(err);
    if (this.#allow) {
      this.#failLog.error({ err: errInfo(err), onError: 'allow' }, 'revocation check failed; SERVING WITHOUT REVOCATION CHECK (onError: allow)');
      return false;
    }
    return Promise.reject(revocationUnavailable(err));
  }

  async revoke(revocationId: string, until: number | undefined): Promise<void> {
    const m = this.#marker(revocationId, until);
    if (m !== undefined) {
      const [key, at] = m;
      await this.#write(() => (at === undefined ? this.#redis.set(key, '1') : this.#redis.set(key, '1', 'PXAT', at)));
    }
    this.#listeners.emit({ kind: 'id', revocationId });
    await this.#invalidations.publish({ v: 1, kind: 'id', revocationId, until: until ?? null });
  }

  async evict(revocationId: string): Promise<void> {
    this.#listeners.emit({ kind: 'id', revocationId });
    await this.#invalidations.publish({ v: 1, kind: 'changed', revocationId });
  }

  async revokeSubject(subject: string, before: number, until?: number): Promise<void> {
    const stored = await this.#write(() => this.#redis.portcullisRevokeSubject(...this.#subjectArgs(subject, before, until)));
    const effective = Math.max(before, Number(stored ?? before));
    this.#listeners.emit({ kind: 'subject', subject, before: effective });
    await this.#invalidations.publish({ v: 1, kind: 'subject', subject, before: effective, until: until ?? null });
  }

  /** Key and absolute expiry of an id marker; undefined when the credential has already expired for good. */
  #marker(revocationId: string, until: number | undefined | null): [string, number | undefined] | undefined {
    const key = this.#idPrefix + revocationId;
    if (until === undefined || until === null) return [key, undefined];
    const at = until + this.#grace;
    // Already past: the credential cannot be used any more, and PXAT in the past would just delete.
    if (at <= this.#clock.now()) return undefined;
    return [key, at];
  }

  #subjectArgs(subject: string, before: number, until: number | undefined | null): [string, string, string] {
    const at = until === undefined || until === null ? '' : String(until + this.#grace);
    return [this.#subjectPrefix + subject, String(Math.trunc(before)), at];
  }

  async #write<T>(op: () => Promise<T>): Promise<T> {
    if (this.#closed) throw new GatewayError('revocation-unavailable', 'Revocation store is closed.');
    // A process that revokes right after opening (the CLI) would otherwise race the connect; bounded like a check.
    if (this.#redis.status !== 'ready') await pollReady(() => this.#redis.status === 'ready', this.#timeout);
    try {
      return await this.#bounded(op());
    } catch (err) {
      throw revocationUnavailable(err);
    }
  }

  #onReady(): void {
    if (this.#lost) this.#logger.warn({}, 'revocation redis reconnected');
    this.#lost = false;
    this.#unanswered = false;
    this.#everReady = true;
    this.#seed.connected();
  }

  #onClose(): void {
    this.#seed.disconnected();
    if (this.#everReady && !this.#lost && !this.#closed) {
      this.#lost = true;
      this.#logger.error({ onError: this.#allow ? 'allow' : 'deny' }, 'revocation redis connection lost; reconnecting');
    }
  }

  onInvalidate(listener: InvalidationListener): () => void {
    return this.#listeners.add(listener);
  }

  /**
   * Connected, seeded and answering, and the invalidation channel subscribed at least once
   * (so an instance that reports ready hears other instances from then on).
   */
  ready(): boolean {
    return !this.#closed && this.#redis.status === 'ready' && this.#seed.seeded && this.#invalidations.confirmed && !this.#unanswered;
  }

  waitReady(timeoutMs: number): Promise<boolean> {
    return pollReady(() => this.ready(), timeoutMs);
  }

  /** Whether the invalidation subscriber is connected (diagnostics; checks do not depend on it). */
  subscribed(): boolean {
    return this.#invalidations.connected();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#seed.close();
    if (this.#probe !== undefined) clearTimeout(this.#probe);
    this.#checks.close();
    this.#redis.disconnect();
    this.#invalidations.close();
  }
}
