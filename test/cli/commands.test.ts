import t from 'tap';
import { mkdtempSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SignJWT } from 'jose';
import { main } from '../../src/cli.js';
import type { Io } from '../../src/commands/io.js';
import { tempPgDatabase } from '../store/helpers.js';

async function run(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const io: Io = { out: (s) => void (out += s + '\n'), err: (s) => void (err += s + '\n') };
  const code = await main(argv, io);
  return { code, out, err };
}

const dir = mkdtempSync(join(tmpdir(), 'pcl-cli-'));
const SECRET = 'a-secret-of-at-least-thirty-two-bytes-long!';
const good = join(dir, 'good.yaml');
writeFileSync(good, readFileSync('gateway.config.yaml', 'utf8')
  .replace('store: { url: "${DATABASE_URL:-sqlite://./data/portcullis.db}" }', 'store: { url: "sqlite://memory" }')
  .replace('  issuers: []', `  issuers:\n    - { name: local, issuer: "https://auth.example.com", algorithms: [HS256], secret: "${SECRET}" }`));

t.test('check: the shipped config is valid', async (t) => {
  const r = await run('check', '-c', 'gateway.config.yaml');
  t.equal(r.code, 0, r.err);
  t.match(r.out, /valid \(4 routes, 1 upstreams\)/);
});

t.test('check: a broken config fails with FILE:LINE:COL', async (t) => {
  const bad = join(dir, 'bad.yaml');
  writeFileSync(bad, 'upstreams:\n  api: { url: "http://x", timeout: soon }\nroutes:\n  - match: { path: "/**" }\n    upstream: nope\n    minrole: admin\n');
  const r = await run('check', '-c', bad);
  t.equal(r.code, 1);
  t.match(r.err, new RegExp(`^${bad.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}:2:\\d+ upstreams\\.api\\.timeout: expected a duration`, 'm'));
  t.match(r.err, /:6:5 unknown key "minrole"/);
  const j = await run('check', '-c', bad, '--json');
  t.equal(j.code, 1);
  t.equal(JSON.parse(j.out).valid, false);
});

t.test('check: shadowed routes are warned about', async (t) => {
  const f = join(dir, 'shadow.yaml');
  writeFileSync(f, 'upstreams: { api: { url: "http://x" } }\nroutes:\n  - match: { path: "/**" }\n    upstream: api\n  - match: { path: /admin }\n    upstream: api\n');
  const r = await run('check', '-c', f);
  t.equal(r.code, 0);
  t.match(r.err, /:5:\d+ warning: route 1 \(\/admin\) can never match/);
});

t.test('explain: role, scopes, and denial reasons', async (t) => {
  const allow = await run('explain', '-c', good, 'POST', '/films/7/reviews', '--role', 'premium', '--scopes', 'reviews:write', '--json');
  t.equal(allow.code, 0, allow.err);
  const a = JSON.parse(allow.out);
  t.equal(a.decision, 'allow');
  t.equal(a.route.index, 2);
  const deny = JSON.parse((await run('explain', '-c', good, 'GET', '/app/../admin/x', '--role', 'premium', '--json')).out);
  t.equal(deny.normalizedPath, '/admin/x');
  t.equal(deny.code, 'authorisation-required');
  t.match(deny.reason, /requires the role "admin"/);
  const missing = JSON.parse((await run('explain', '-c', good, 'GET', '/x', '--json')).out);
  t.equal(missing.code, 'token-missing');
  const bad = JSON.parse((await run('explain', '-c', good, 'GET', '/a%2fb', '--json')).out);
  t.equal(bad.code, 'bad-request');
  const human = await run('explain', '-c', good, 'GET', '/health');
  t.match(human.out, /decision: ALLOW/);
});

t.test('explain --token runs every JWT check', async (t) => {
  const key = new TextEncoder().encode(SECRET);
  const ok = await new SignJWT({ role: 'admin' }).setProtectedHeader({ alg: 'HS256' }).setIssuer('https://auth.example.com').setSubject('u1').setIssuedAt().setExpirationTime('5m').sign(key);
  const r = JSON.parse((await run('explain', '-c', good, 'GET', '/admin/x', '--token', ok, '--json')).out);
  t.equal(r.decision, 'allow');
  t.ok(r.steps.some((s: { step: string; ok: boolean }) => s.step === 'signature' && s.ok), 'signature step listed');
  const expired = await new SignJWT({ role: 'admin' }).setProtectedHeader({ alg: 'HS256' }).setIssuer('https://auth.example.com').setSubject('u1').setIssuedAt(1_000_000).setExpirationTime(1_000_100).sign(key);
  const e = JSON.parse((await run('explain', '-c', good, 'GET', '/admin/x', '--token', expired, '--json')).out);
  t.equal(e.code, 'token-expired');
  t.ok(e.steps.some((s: { step: string; ok: boolean }) => s.step === 'exp' && !s.ok), 'the failing check is named');
});

t.test('unknown command and bad usage exit non-zero', async (t) => {
  t.not((await run('frobnicate')).code, 0);
  t.not((await run('tokens', 'revoke', '-c', good)).code, 0, 'tokens revoke needs --jti or --subject');
});

t.test('explain shows the rate limits of the matched route; check locates an unknown policy', async (t) => {
  const f = join(dir, 'limits.yaml');
  writeFileSync(f, 'upstreams: { api: { url: "http://x" } }\nroles: [basic]\nrateLimits:\n  policies:\n    - { name: per-key, limit: 100, window: 1m }\n    - { name: everyone, limit: 5000, window: 1h, by: global }\nroutes:\n  - match: { path: "/api/**" }\n    minRole: basic\n    rateLimit: [per-key, everyone]\n    upstream: api\n  - match: { path: "/**" }\n    public: true\n    upstream: api\n');
  const e = JSON.parse((await run('explain', '-c', f, 'GET', '/api/x', '--role', 'basic', '--json')).out);
  t.same(e.rateLimits, [{ name: 'per-key', limit: 100, windowMs: 60_000, by: 'credential' }, { name: 'everyone', limit: 5000, windowMs: 3_600_000, by: 'global' }]);
  const text = (await run('explain', '-c', f, 'GET', '/api/x', '--role', 'basic')).out;
  t.match(text, /limits +"per-key" 100 per 60s by credential; "everyone" 5000 per 3600s by global/);
  t.equal(JSON.parse((await run('explain', '-c', f, 'GET', '/other', '--json')).out).rateLimits, undefined, 'none on an unlimited route');
  const bad = join(dir, 'limits-bad.yaml');
  writeFileSync(bad, 'upstreams: { api: { url: "http://x" } }\nrateLimits:\n  policies:\n    - { name: a, limit: 1, window: 500ms }\nroutes:\n  - match: { path: "/**" }\n    rateLimit: [b]\n    upstream: api\n');
  const r = await run('check', '-c', bad);
  t.equal(r.code, 1);
  t.match(r.err, /:4:\d+ .*window.*at least 1s/);
  writeFileSync(bad, 'upstreams: { api: { url: "http://x" } }\nrateLimits:\n  policies:\n    - { name: a, limit: 1, window: 1s }\nroutes:\n  - match: { path: "/**" }\n    rateLimit: [b]\n    upstream: api\n');
  const r2 = await run('check', '-c', bad);
  t.equal(r2.code, 1);
  t.match(r2.err, /:7:\d+ routes\.0\.rateLimit: no policy named "b"/);
});

t.test("explain --key lists the key's own limit and its credits left, read from the store", async (t) => {
  const pg = await tempPgDatabase(t);
  const stores: Array<[string, string]> = [['SQLite', `sqlite://${join(dir, 'explain-keys.db')}`]];
  if (pg !== undefined) stores.push(['PostgreSQL', pg]);
  for (const [name, url] of stores) {
    await t.test(name, async (t) => {
      const f = join(dir, `explain-keys-${name}.yaml`);
      writeFileSync(f, `upstreams: { api: { url: "http://x" } }\nroles: [basic]\nstore: { url: "${url}" }\nrateLimits:\n  policies:\n    - { name: per-key, limit: 100, window: 1m }\nroutes:\n  - match: { path: "/api/**" }\n    minRole: basic\n    rateLimit: [per-key]\n    upstream: api\n  - match: { path: "/**" }\n    minRole: basic\n    upstream: api\n`);
      const created = await run('-c', f, 'keys', 'create', '--subject', 'alice', '--role', 'basic', '--rate-limit', '10/1m', '--uses', '5', '--json');
      t.equal(created.code, 0, created.err);
      const key = JSON.parse(created.out) as { id: string; key: string };
      t.equal((await run('-c', f, 'keys', 'update', key.id, '--uses', '3')).code, 0, 'credits refilled');
      const listed = (JSON.parse((await run('-c', f, 'keys', 'list', '--json')).out) as Array<{ id: string; remaining: number | null }>).find((k) => k.id === key.id);
      t.equal(listed?.remaining, 3);

      const r = await run('explain', '-c', f, 'GET', '/api/x', '--key', key.key, '--json');
      t.equal(r.code, 0, r.err);
      const e = JSON.parse(r.out);
      t.equal(e.decision, 'allow');
      t.same(e.rateLimits, [
        { name: 'per-key', limit: 100, windowMs: 60_000, by: 'credential' },
        { name: 'key', limit: 10, windowMs: 60_000, by: 'credential', own: true },
      ], "the route's policies, then the key's own");
      t.same(e.credits, { remaining: 3 }, 'the credits left, as keys list shows them');
      const text = (await run('explain', '-c', f, 'GET', '/api/x', '--key', key.key)).out;
      t.match(text, /limits +"per-key" 100 per 60s by credential \(counted once admitted\)/);
      t.match(text, /limits +key's own "key" 10 per 60s by credential \(counted once admitted\)/);
      t.match(text, /credits +3 left for the key's lineage \(one spent per admitted request\)/);

      t.equal((await run('-c', f, 'keys', 'update', key.id, '--uses', '0')).code, 0, 'credits spent');
      const spent = JSON.parse((await run('explain', '-c', f, 'GET', '/api/x', '--key', key.key, '--json')).out);
      t.same([spent.decision, spent.status, spent.code, spent.credits], ['deny', 429, 'quota-exhausted', { remaining: 0 }], 'no credit left: refused as the gateway would');

      const other = JSON.parse((await run('explain', '-c', f, 'GET', '/other', '--key', key.key, '--json')).out);
      t.same(other.rateLimits, [{ name: 'key', limit: 10, windowMs: 60_000, by: 'credential', own: true }], 'on a route without policies, the key\'s own alone');

      const plain = JSON.parse((await run('-c', f, 'keys', 'create', '--subject', 'bob', '--role', 'basic', '--json')).out) as { key: string };
      const p = JSON.parse((await run('explain', '-c', f, 'GET', '/other', '--key', plain.key, '--json')).out);
      t.equal(p.decision, 'allow');
      t.equal(p.rateLimits, undefined, 'a key without a limit adds none');
      t.equal(p.credits, undefined, 'nor credits');
    });
  }
});

t.test('keys create with a duration past 100 years: a clear error, and nothing written', async (t) => {
  const f = join(dir, 'long-durations.yaml');
  writeFileSync(f, `upstreams: { api: { url: "http://x" } }\nroles: [basic]\nstore: { url: "sqlite://${join(dir, 'long-durations.db')}" }\nroutes:\n  - match: { path: "/**" }\n    minRole: basic\n    upstream: api\n`);
  for (const args of [['--expires', '99999999999d'], ['--not-before', '99999999999d', '--expires', 'never'], ['--expires', '36501d']]) {
    const r = await run('-c', f, 'keys', 'create', '--subject', 'long', '--role', 'basic', ...args);
    t.equal(r.code, 1, `${args.join(' ')}: exit 1`);
    t.match(r.err, /at most 100 years/, `${args.join(' ')}: says why`);
  }
  t.same(JSON.parse((await run('-c', f, 'keys', 'list', '--json')).out), [], 'no key was written');
  const ok = await run('-c', f, 'keys', 'create', '--subject', 'long', '--role', 'basic', '--expires', '36500d', '--json');
  t.equal(ok.code, 0, ok.err);
  t.ok(Date.parse((JSON.parse(ok.out) as { expiresAt: string }).expiresAt) > Date.now() + 36_499 * 86_400_000, `100 years is accepted: ${ok.out}`);
});
