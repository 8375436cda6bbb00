import t from 'tap';
import { KeyService } from '../../src/keys/service.js';
import { verifySecret } from '../../src/keys/hash.js';
import { parseKey } from '../../src/keys/format.js';
import { adminRoutes } from '../../src/ops/admin-api.js';
import type { AdminRequest } from '../../src/ops/admin.js';
import { openStore } from '../../src/store/open.js';
import { TokenService } from '../../src/tokens/service.js';
import { apiKeysConfig, FAST_HASH, TestClock } from '../keys/helpers.js';

// The admin API's rotate and create (replace) store a new key before announcing what it
// replaces. When the announcement fails (the revocation backend is unreachable), the new
// key's secret is answered all the same, with the command that announces it: a 500 would
// lose it, and the retry of a rotation is refused (the key is rotated by then).

const store = await openStore('sqlite://memory');
await store.migrate();
t.teardown(() => store.close());
let down = true;
const clock = new TestClock();
const keys = new KeyService({
  store, config: apiKeysConfig({ hash: FAST_HASH }), clock, roles: ['basic'],
  onRevoke: () => {
    if (down) throw new Error('Redis unreachable');
  },
});
const tokens = new TokenService(store, { revoke: async () => undefined, revokeSubject: async () => undefined } as never, clock);
const routes = adminRoutes({ keys, tokens });
const route = (method: string, pattern: string) => routes.find((r) => r.method === method && r.pattern === pattern)!;
const req = (params: Record<string, string>, body: unknown): AdminRequest => ({ method: 'POST', path: '/', query: new URLSearchParams(), params, requestId: 'r', body: async () => body });

t.test('rotate: the stored successor is answered with announced: false', async (t) => {
  down = false;
  const old = await keys.create({ subject: 'ann', role: 'basic' });
  down = true;
  const r = await route('POST', '/admin/v1/keys/:id/rotate').handler(req({ id: old.id }, { grace: '0s' }));
  const b = r.body as { id: string; key: string; announced?: boolean; retry?: string };
  t.equal(r.status, 201);
  t.equal(b.announced, false, 'says the announcement failed');
  t.equal(b.retry, `keys rotate ${old.id}`, 'and how to announce it');
  const stored = await store.getKey(b.id);
  t.ok(stored !== undefined && (await verifySecret(stored.secretHash!, parseKey(b.key, 'pcl')!.secret)), 'the answered key is the stored successor');
});

t.test('create with replace: the new key is answered with announced: false', async (t) => {
  down = false;
  await keys.create({ subject: 'ben', role: 'basic', name: 'laptop' });
  down = true;
  const r = await route('POST', '/admin/v1/keys').handler(req({}, { subject: 'ben', role: 'basic', name: 'laptop', replace: true }));
  const b = r.body as { id: string; key: string; announced?: boolean; replaced: string[] };
  t.equal(r.status, 201);
  t.equal(b.announced, false);
  t.equal(b.replaced.length, 1, 'the replaced key is named');
  t.ok(await store.getKey(b.id), 'the new key is stored');
});
