import t from 'tap';
import { mkdtempSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SignJWT } from 'jose';
import { main } from '../../src/cli.js';
import type { Io } from '../../src/commands/io.js';

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
