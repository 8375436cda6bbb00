import { randomUUID } from 'node:crypto';
import { Redis, type RedisOptions } from 'ioredis';
import { type ListenerSet, parseWire, revocationUnavailable, type WireMessage } from './support.js';
import { errInfo } from './redis-util.js';
import type { RevocationLogger } from './types.js';

export interface RedisInvalidationOptions {
  readonly url: string;
  /** Connect timeout and retry strategy, shared with the store's command connection. */
  readonly connection: Pick<RedisOptions, 'connectTimeout' | 'retryStrategy' | 'lazyConnect'>;
  /** `<prefix>invalidate`. */
  readonly channel: string;
  readonly listeners: ListenerSet;
  readonly logger: RevocationLogger;
  /** PUBLISH on the store's command connection, bounded by its timeout. */
  readonly publish: (channel: string, message: string) => Promise<unknown>;
  readonly closed: () => boolean;
}

/**
 * The invalidation channel of a Redis fleet: messages are published on the store's command
 * connection and read on a second one (a subscribed connection can send nothing else).
 * Each instance skips its own echo: it told its listeners when it wrote.
 */
export class RedisInvalidations {
  readonly #o: RedisInvalidationOptions;
  readonly #sub: Redis;
  readonly #instance = randomUUID();
  /** Set once the first SUBSCRIBE is confirmed; later drops are resubscribed by ioredis. */
  #confirmed = false;

  constructor(options: RedisInvalidationOptions) {
    this.#o = options;
    this.#sub = new Redis(options.url, {
      ...options.connection,
      connectionName: 'portcullis-revocation-sub',
      // SUBSCRIBE must wait for a connection rather than fail; autoResubscribe redoes it after reconnects.
      enableOfflineQueue: true,
      maxRetriesPerRequest: null,
      autoResubscribe: true,
    });
    this.#sub.on('error', () => {
      // Same outage as the main connection, which already logs it.
    });
    this.#sub.on('message', (channel: string, message: string) => this.#onMessage(channel, message));
    // Messages published while the subscriber was away are lost; revocations are still
    // caught by the markers, but changes (rotation graces, updates) are not: drop every
    // cached identity when it comes back.
    let subReady = false;
    this.#sub.on('ready', () => {
      if (subReady) options.listeners.emit({ kind: 'all' });
      subReady = true;
    });
    this.#sub.subscribe(options.channel).then(() => {
      this.#confirmed = true;
    }, (err: unknown) => {
      if (!options.closed()) options.logger.error({ err: errInfo(err) }, 'revocation redis: subscribe failed; caches will not hear other instances');
    });
  }

  /** The channel was subscribed at least once (from then on other instances are heard). */
  get confirmed(): boolean {
    return this.#confirmed;
  }

  /** Whether the subscriber is connected now. */
  connected(): boolean {
    return this.#sub.status === 'ready';
  }

  async publish(msg: WireMessage): Promise<void> {
    msg.src = this.#instance;
    try {
      await this.#o.publish(this.#o.channel, JSON.stringify(msg));
    } catch (err) {
      // The marker is written, so every check already sees the revocation; only other instances' caches miss the eviction.
      throw revocationUnavailable(err);
    }
  }

  #onMessage(channel: string, message: string): void {
    if (channel !== this.#o.channel) return;
    const m = parseWire(message);
    if (m === undefined) {
      this.#o.logger.warn({ channel }, 'revocation redis: ignored malformed invalidation message');
      return;
    }
    if (m.src === this.#instance) return; // already told our listeners when we wrote it
    if (m.kind === 'id' || m.kind === 'changed') this.#o.listeners.emit({ kind: 'id', revocationId: m.revocationId! });
    else this.#o.listeners.emit({ kind: 'subject', subject: m.subject!, before: m.before! });
  }

  close(): void {
    this.#sub.disconnect();
  }
}
