import t from 'tap';
import { request } from 'undici';
import { parseConfig, type GatewayConfig } from '../src/config/load.js';
import { configSchema } from '../src/config/schema.js';
import { CONFIG_SECTIONS, restartOnlyChanges } from '../src/runtime.js';
import { startPortcullis } from '../src/gateway.js';
import { startUpstream } from './helpers/upstream.js';
import { memoryLogger } from './helpers/gateway.js';

// What a reload applies and what takes a restart: one table keyed by config section.
t.test('every top-level section of the schema is declared reloadable or restart-only', async (t) => {
  t.same(Object.keys(CONFIG_SECTIONS).sort(), Object.keys(configSchema.shape).sort());
});

const yaml = (store: string, extra = '') => `
upstreams: { api: { url: "http://127.0.0.1:1" } }
store: { url: "${store}", poolSize: 4 }
routes:
  - match: { path: "/**" }
    minRole: basic
    upstream: api
${extra}`;
const cfg = (store: string, extra = ''): GatewayConfig => parseConfig(yaml(store, extra), 'r.yaml', {}).config;

t.test('restart-only changes are named by section and key; reloadable ones are not', async (t) => {
  const a = cfg('sqlite://memory');
  t.same(restartOnlyChanges(a, cfg('sqlite://memory')), []);
  t.same(restartOnlyChanges(a, cfg('sqlite://other.db')), ['store.url']);
  t.same(restartOnlyChanges(a, cfg('sqlite://memory', 'listen: { port: 8081 }\nlog: { level: debug }')), ['listen.port', 'log.level']);
  t.same(restartOnlyChanges(a, cfg('sqlite://memory', 'jwt: { clockTolerance: 10s }\nadmin: { acceptJwt: true }')), [], 'jwt and admin.acceptJwt reload');
});

t.test('a reload keeps the API-key cache unless its own sections change; a changed store is logged as taking a restart', async (t) => {
  const up = await startUpstream();
  t.teardown(() => up.close());
  const text = (store: string, extra = '') => yaml(store, extra).replace('http://127.0.0.1:1', up.url);
  const { logger, lines } = memoryLogger();
  const p = await startPortcullis(parseConfig(text('sqlite://memory'), 'r.yaml', {}), { logger, listen: { host: '127.0.0.1', port: 0 }, admin: { host: '127.0.0.1', port: 0 } });
  t.teardown(() => p.close(100));
  const key = (await p.core.keys.create({ subject: 'svc', role: 'basic' })).key;
  const call = async () => {
    const r = await request(`${p.gateway!.url()}/x`, { headers: { 'x-api-key': key } });
    await r.body.dump();
    return r.statusCode;
  };
  t.equal(await call(), 200);
  const first = p.authenticators().apiKey!;
  const hits = () => p.authenticators().apiKey!.stats.cacheHits;

  await p.reload(parseConfig(text('sqlite://memory', 'trustedProxies: [10.0.0.0/8]'), 'r.yaml', {}));
  t.equal(p.authenticators().apiKey, first, 'a reload that leaves the store and apiKeys alone keeps the authenticator');
  const before = hits();
  t.equal(await call(), 200);
  t.equal(hits(), before + 1, 'the key is still cached');
  t.notOk(lines.some((l) => l.includes('take a restart')), 'nothing restart-only changed');

  await p.reload(parseConfig(text('sqlite://other.db'), 'r.yaml', {}));
  const restart = lines.map((l) => JSON.parse(l) as { msg: string; changed?: string[] }).filter((l) => l.msg.includes('take a restart'));
  t.equal(restart.length, 1, 'the store change is logged as taking a restart');
  t.same(restart[0]!.changed, ['store.url']);
  t.equal(p.authenticators().apiKey, first, 'the store is not reopened, nor the cache emptied');

  // Compared with the previous config, not the first: a later reload keeping the new URL changes nothing.
  await p.reload(parseConfig(text('sqlite://other.db', 'trustedProxies: [10.0.0.0/8]'), 'r.yaml', {}));
  t.equal(p.authenticators().apiKey, first, 'a later reload does not empty the cache');
  t.equal(lines.filter((l) => l.includes('take a restart')).length, 1, 'and logs no restart-only change');
  const b2 = hits();
  t.equal(await call(), 200);
  t.equal(hits(), b2 + 1);
});

t.test('a reload that changes roles or apiKeys reaches the key service behind the admin API and refresh', async (t) => {
  const { logger } = memoryLogger();
  const p = await startPortcullis(parseConfig(yaml('sqlite://memory'), 'r.yaml', {}), { logger, listeners: { admin: false }, listen: { host: '127.0.0.1', port: 0 } });
  t.teardown(() => p.close(100));
  await t.rejects(p.core.keys.create({ subject: 'ops', role: 'operator' }), 'an unknown role is refused');
  const keys = p.core.keys;
  await p.reload(parseConfig(yaml('sqlite://memory', 'trustedProxies: [10.0.0.0/8]'), 'r.yaml', {}));
  t.equal(p.core.keys, keys, 'a reload leaving apiKeys and roles alone keeps the key service');
  await p.reload(parseConfig(yaml('sqlite://memory', 'roles: [basic, operator]\napiKeys: { prefix: acme }'), 'r.yaml', {}));
  const created = await p.core.keys.create({ subject: 'ops', role: 'operator' });
  t.match(created.key, /^acme_/, 'the new role and prefix apply');
});
