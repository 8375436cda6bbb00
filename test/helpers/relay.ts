import net from 'node:net';
import type { AddressInfo } from 'node:net';

/** Where a relay forwards to. */
export interface RelayTarget {
  host: string;
  port: number;
}

/** Relay state: forwarding, holding every byte (a hung peer), or refusing connections (a dead one). */
export type RelayState = 'open' | 'paused' | 'cut';

export interface Relay {
  readonly host: string;
  readonly port: number;
  readonly state: RelayState;
  /** Connections accepted so far, and the ones currently open. */
  readonly stats: { accepted: number; open: number };
  /** `host:port` of the relay, for building URLs. */
  readonly address: string;
  /**
   * Stops forwarding in both directions and keeps every socket open; new connections are
   * accepted and held too. Like a network partition or a hung server: nothing fails, nothing answers.
   */
  pause(): void;
  /** Destroys every relayed connection and refuses new ones (the listening socket closes). */
  cut(): Promise<void>;
  /** Back to forwarding: held data flows on, a cut relay listens again on the same port. */
  restore(): Promise<void>;
  close(): Promise<void>;
}

interface Pair {
  client: net.Socket;
  upstream: net.Socket;
}

/**
 * A TCP relay on 127.0.0.1:0 in front of `target` that a test can pause, cut and restore,
 * so a dependency (PostgreSQL, Redis, an upstream) can fail under a running gateway
 * without touching the real service other tests share.
 */
export async function startRelay(target: RelayTarget): Promise<Relay> {
  const pairs = new Set<Pair>();
  let state: RelayState = 'open';
  const stats = { accepted: 0, open: 0 };
  let port = 0;

  const hold = (p: Pair) => {
    p.client.pause();
    p.upstream.pause();
  };
  const flow = (p: Pair) => {
    p.client.resume();
    p.upstream.resume();
  };

  const onConnection = (client: net.Socket) => {
    if (state === 'cut') {
      client.destroy();
      return;
    }
    stats.accepted++;
    stats.open++;
    client.pause();
    const upstream = net.connect({ host: target.host, port: target.port, allowHalfOpen: true });
    upstream.pause();
    const pair: Pair = { client, upstream };
    pairs.add(pair);
    const wire = (from: net.Socket, to: net.Socket) => {
      from.on('data', (d: Buffer) => {
        if (!to.write(d)) from.pause();
      });
      to.on('drain', () => {
        if (state === 'open') from.resume();
      });
      from.on('end', () => to.end());
    };
    wire(client, upstream);
    wire(upstream, client);
    let done = false;
    const close = () => {
      if (done) return;
      done = true;
      pairs.delete(pair);
      stats.open--;
      client.destroy();
      upstream.destroy();
    };
    for (const s of [client, upstream]) {
      s.on('error', close);
      s.on('close', close);
    }
    if (state === 'open') flow(pair);
  };

  let server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, onConnection);
  const listen = (s: net.Server, p: number) =>
    new Promise<void>((resolve, reject) => {
      s.once('error', reject);
      s.listen(p, '127.0.0.1', () => {
        s.off('error', reject);
        resolve();
      });
    });
  await listen(server, 0);
  port = (server.address() as AddressInfo).port;

  const closeServer = (s: net.Server) => new Promise<void>((resolve) => s.close(() => resolve()));

  return {
    host: '127.0.0.1',
    port,
    address: `127.0.0.1:${port}`,
    stats,
    get state() {
      return state;
    },
    pause() {
      if (state !== 'open') return;
      state = 'paused';
      for (const p of pairs) hold(p);
    },
    async cut() {
      if (state === 'cut') return;
      state = 'cut';
      const closing = closeServer(server);
      for (const p of [...pairs]) {
        p.client.destroy();
        p.upstream.destroy();
      }
      await closing;
    },
    async restore() {
      if (state === 'paused') {
        state = 'open';
        for (const p of pairs) flow(p);
        return;
      }
      if (state === 'cut') {
        server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, onConnection);
        // The port was ours a moment ago; retry briefly in case the kernel still holds it.
        for (let attempt = 0; ; attempt++) {
          try {
            await listen(server, port);
            break;
          } catch (err) {
            if (attempt >= 20 || (err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err;
            await new Promise((r) => setTimeout(r, 50));
          }
        }
        state = 'open';
      }
    },
    async close() {
      state = 'cut';
      const closing = server.listening ? closeServer(server) : Promise.resolve();
      for (const p of [...pairs]) {
        p.client.destroy();
        p.upstream.destroy();
      }
      await closing;
    },
  };
}
