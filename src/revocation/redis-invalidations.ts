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
  /** Set once the first SUBSCRIBE is confirmed. */
  #confirmed = false;
  /** The channel is subscribed on the current connection (false from a drop until SUBSCRIBE is confirmed again). */
  #live = false;

  constructor(options: RedisInvalidationOptions) {
    this.#o = options;
    this.#sub = new Redis(options.url, {
      ...options.connection,
      connectionName: 'portcullis-revocation-sub',
      // The first SUBSCRIBE waits for a connection rather than fail; later ones are sent on
      // each reconnect below, so that the drop-all follows a confirmed subscription.
      enableOfflineQueue: true,
      maxRetriesPerRequest: null,
      autoResubscribe: false,
    });
    this.#sub.on('error', () => {
      // Same outage as the main connection, which already logs it.
    });
    this.#sub.on('message', (channel: string, message: string) => this.#onMessage(channel, message));
    this.#sub.on('close', () => {
      this.#live = false;
    });
    // Messages published while the subscriber was away are lost; revocations are still
    // caught by the markers, but changes (rotation graces, updates) are not. So after a
    // reconnect: subscribe again and, once Redis confirms it (every later message is heard),
    // drop every cached identity (every earlier one is covered).
    let first = true;
    this.#sub.on('ready', () => {
      if (first) {
        first = false;
        return; // the constructor's SUBSCRIBE is in the offline queue
      }
      this.#subscribe(true);
    });
    this.#subscribe(false);
  }

  #subscribe(dropAll: boolean): void {
    this.#sub.subscribe(this.#o.channel).then(() => {
      this.#confirmed = true;
      this.#live = true;
      if (dropAll) this.#o.listeners.emit({ kind: 'all' });
    }, (err: unknown) => {
      if (!this.#o.closed()) this.#o.logger.error({ err: errInfo(err) }, 'revocation redis: subscribe failed; caches will not hear other instances');
    });
  }

  /** The channel was subscribed at least once (from then on other instances are heard). */
  get confirmed(): boolean {
    return this.#confirmed;
  }

  /** Whether the channel is subscribed on a live connection now. */
  connected(): boolean {
    return this.#live && this.#sub.status === 'ready';
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
