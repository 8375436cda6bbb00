import t from 'tap';
import net from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { startUpstream } from '../../helpers/upstream.js';
import { spawnGateway } from '../../helpers/spawn.js';
import { redisPrefix, REDIS_URL, serviceSkip } from '../../helpers/services.js';

// `serve --workers 2` with rate limits on Redis and `rateLimits.onError: allow`: while Redis
// is away the instance enforces its limits alone, and its workers still count together
// (in the primary's buckets), so the instance admits at most `limit`, not `limit` per worker.

const skip = await serviceSkip('redis');
if (skip) t.plan(0, `skipping: ${skip}`);
else {
  const keys = redisPrefix();
  t.teardown(() => keys.clean());
  const up = await startUpstream();
  t.teardown(() => up.close());
  const dir = await mkdtemp(join(tmpdir(), 'pcl-workers-outage-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));

  // Redis through a forwarder that can be cut.
  const target = new URL(REDIS_URL);
  const socks = new Set<net.Socket>();
  let open = true;
  const forwarder = net.createServer((c) => {
    if (!open) return c.destroy();
    const r = net.connect(Number(target.port || 6379), target.hostname);
    socks.add(c).add(r);
    c.pipe(r).pipe(c);
    const end = () => {
      c.destroy();
      r.destroy();
    };
    for (const s of [c, r]) s.on('error', end).on('close', end);
  });
  await new Promise<void>((res) => forwarder.listen(0, '127.0.0.1', res));
  t.teardown(() => forwarder.close());
  const redisUrl = `redis://127.0.0.1:${(forwarder.address() as net.AddressInfo).port}${target.pathname}`;

  const gw = await spawnGateway(
    `
listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0, token: "admin-token-for-the-workers-outage-test-0123" }
store: { url: "sqlite://${join(dir, 'portcullis.db')}" }
revocation: { redis: "${redisUrl}", keyPrefix: "${keys.prefix}", onError: allow, timeout: 300ms }
upstreams: { api: { url: "${up.url}" } }
workers: 2
rateLimits:
  onError: allow
  policies:
    - { name: six, limit: 6, window: 1m, by: global }
routes:
  - match: { path: "/limited" }
    public: true
    rateLimit: [six]
    upstream: api
`,
    { timeoutMs: 60_000 },
  );
  t.teardown(() => gw.stop('SIGKILL'));

  /** One GET on a connection of its own, so the primary hands it to either worker. */
  const fresh = async (): Promise<number> => {
    const agent = new Agent({ pipelining: 0 });
    try {
      const r = await request(`${gw.url}/limited`, { headers: { connection: 'close' }, dispatcher: agent });
      await r.body.text();
      return r.statusCode;
    } finally {
      await agent.close();
    }
  };

  t.test('with Redis away (onError: allow), the workers of one instance still admit at most the limit together', async (t) => {
    const before = await Promise.all([...Array(3)].map(fresh));
    t.same(before, [200, 200, 200], 'counted in Redis while it is there');
    open = false;
    for (const s of socks) s.destroy();
    const seen = up.seen.length;
    const during: number[] = [];
    for (let i = 0; i < 24; i++) during.push(await fresh());
    const admitted = during.filter((s) => s === 200).length;
    t.equal(admitted, 6, `six admitted of 24 by the instance (${JSON.stringify(during)})`);
    t.equal(during.filter((s) => s === 429).length, 18, 'the rest refused 429');
    t.equal(up.seen.length - seen, 6, 'and the upstream saw six');
    t.ok(gw.lines.some((l) => l.includes('rate limits: redis unreachable')), 'the outage is logged');
  });
}
