import t from 'tap';
import { LocalRateLimiter } from '../../src/limits/local.js';
import type { RateLimiter } from '../../src/limits/types.js';
import type { RevocationCheck } from '../../src/revocation/check.js';
import { startRawUpstream } from '../hardening/raw-upstream.js';
import { startTestGateway } from '../helpers/gateway.js';
import { rawGet } from '../helpers/raw.js';

// A limiter that takes gates may still answer a check at once (it fell back to counting in
// this process): that answer has counted the request, and must be the one used — a second
// check would count it twice.

t.test('a limit check answered at once on the early path counts the request once', async (t) => {
  const up = await startRawUpstream();
  t.teardown(() => up.close());
  const local = new LocalRateLimiter();
  let checks = 0;
  const limiter: RateLimiter = {
    gated: true,
    check: (hits) => {
      checks++;
      return local.check(hits);
    },
    connected: () => true,
    close: async () => {},
  };
  const revocation: RevocationCheck = { isRevoked: () => Promise.resolve(false), gate: () => ({ present: [], subject: 's', issuedAt: 0 }) };
  const g = await startTestGateway(`
upstreams: { api: { url: "${up.url}" } }
roles: [basic]
log: { level: silent }
rateLimits:
  policies:
    - { name: two, limit: 2, window: 1h, by: credential }
routes:
  - match: { path: "/**" }
    minRole: basic
    rateLimit: [two]
    upstream: api
`, { table: { 'key-a': { subject: 'alice', role: 'basic', keyId: 'ka' } }, services: { limiter, revocation } });
  t.teardown(() => g.close());
  const port = Number(new URL(g.url).port);
  const r = await rawGet(port, '/one', ['X-Api-Key: key-a']);
  t.equal(r.status, 200);
  t.equal(checks, 1, 'checked once');
  t.equal(r.headers['ratelimit'], '"two";r=1;t=0', 'and counted once');
  t.equal((await rawGet(port, '/two', ['X-Api-Key: key-a'])).status, 200, 'so the second of two is admitted');
});
