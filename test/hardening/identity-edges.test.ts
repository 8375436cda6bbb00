import t from 'tap';
import { SignJWT } from 'jose';
import { JwtAuthenticator } from '../../src/authn/jwt/authenticator.js';
import { parseConfig } from '../../src/config/load.js';
import { KeyService } from '../../src/keys/service.js';
import { openStore } from '../../src/store/open.js';
import { startTestGateway, TableAuthenticator } from '../helpers/gateway.js';
import { exchangeRaw } from '../helpers/raw.js';
import { apiKeysConfig, FAST_HASH } from '../keys/helpers.js';
import { JWT_ISSUER, JWT_SECRET } from './harness.js';
import { publicAdminBasic, startRawUpstream } from './raw-upstream.js';

// An upstream's HTTP parser trims a header value's edges, so an identity " admin" would
// reach it as "admin" while revocations, rate limits and logs know it as another subject:
// a subject "admin " revoked by `tokens revoke --subject admin` would not be, yet act as
// admin upstream. Such identities are refused at the gateway (never forwarded) and at key
// creation and import. Checked from the upstream's side.

const raw = await startRawUpstream();
t.teardown(() => raw.close());
const head = `jwt:\n  issuers:\n    - { name: hs, issuer: "${JWT_ISSUER}", algorithms: [HS256], secret: "${JWT_SECRET}" }\n`;

const text = publicAdminBasic(raw.url, { head, adminPaths: ['admin'] });
const loaded = parseConfig(text, 'identity-edges.yaml', {});
const rank = (r: string) => loaded.config.roleRanks.get(r) ?? -1;
const jwtAuth = new JwtAuthenticator(loaded.config.jwt, rank);
await jwtAuth.start();
const apiKey = new TableAuthenticator(
  {
    'lead-key': { subject: ' admin', role: 'admin', scopes: [] },
    'trail-key': { subject: 'admin ', role: 'admin', scopes: [] },
    'tab-key': { subject: 'admin\t', role: 'admin', scopes: [] },
    'scope-key': { subject: 'carol', role: 'basic', scopes: ['', 'read'], scopesHeader: ' read' },
    'ok-key': { subject: 'alice bob', role: 'basic', scopes: ['read', 'write'], scopesHeader: 'read write' },
  },
  loaded.config.roleRanks as Map<string, number>,
);
const gw = await startTestGateway(text, { services: { authenticators: () => ({ jwt: jwtAuth, apiKey }) } });
t.teardown(() => gw.close());
const port = Number(new URL(gw.url).port);

async function send(headers: string) {
  const n = raw.requests.length;
  const r = await exchangeRaw(port, `GET /admin/x HTTP/1.1\r\nHost: a.example\r\n${headers}Connection: close\r\n\r\n`, { idleMs: 300, firstMs: 5000 });
  await new Promise((res) => setTimeout(res, 50));
  return { status: r.responses[0]?.status, body: r.responses[0]?.body.toString() ?? '', upstream: raw.requests.length - n };
}

const jwt = (claims: Record<string, unknown>) =>
  new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).setIssuer(JWT_ISSUER).setIssuedAt().setExpirationTime('1h').sign(new TextEncoder().encode(JWT_SECRET));

t.test('identities with spaces at their edges never reach the upstream', async (t) => {
  const cases: [string, string, string][] = [
    ['a key whose subject starts with a space', 'X-Api-Key: lead-key\r\n', 'key-invalid'],
    ['a key whose subject ends with a space', 'X-Api-Key: trail-key\r\n', 'key-invalid'],
    ['a key whose subject ends with a tab', 'X-Api-Key: tab-key\r\n', 'key-invalid'],
    ['a key whose scope list starts with an empty scope', 'X-Api-Key: scope-key\r\n', 'key-invalid'],
    ['a JWT whose subject ends with a space', `Authorization: Bearer ${await jwt({ sub: 'admin ', role: 'admin' })}\r\n`, 'token-invalid'],
    ['a JWT whose subject starts with a space', `Authorization: Bearer ${await jwt({ sub: ' admin', role: 'admin' })}\r\n`, 'token-invalid'],
    ['a JWT whose role ends with a space', `Authorization: Bearer ${await jwt({ sub: 'admin', role: 'admin ' })}\r\n`, 'token-invalid'],
  ];
  for (const [what, headers, code] of cases) {
    const r = await send(headers);
    t.equal(r.status, 401, `${what}: 401`);
    t.match(r.body, code, `${what}: ${code}`);
    t.equal(r.upstream, 0, `${what}: nothing upstream`);
  }
  const ok = await send('X-Api-Key: ok-key\r\n');
  t.equal(ok.status, 403, 'a basic identity with inner spaces is judged as usual (403 on an admin route)');
  const admin = await send(`Authorization: Bearer ${await jwt({ sub: 'admin', role: 'admin' })}\r\n`);
  t.equal(admin.status, 200, `the real admin is admitted (${admin.body})`);
  t.equal(admin.upstream, 1);
});

t.test('keys cannot be created or imported with such a subject or name', async (t) => {
  const store = await openStore('sqlite://memory');
  t.teardown(() => store.close());
  await store.migrate();
  const svc = new KeyService({ store, config: apiKeysConfig({ hash: FAST_HASH }), roles: ['basic', 'admin'] });
  for (const subject of [' admin', 'admin ', 'ad\u00e9min', 'admin\u00a0']) {
    await t.rejects(svc.create({ subject, role: 'admin' }), { code: 'invalid-argument' }, `subject ${JSON.stringify(subject)} refused`);
  }
  await t.rejects(svc.create({ subject: 'job-user', role: 'basic', name: 'job ' }), { code: 'invalid-argument' }, 'a name with a trailing space refused');
  await t.rejects(svc.importKeys(JSON.stringify({ key: 'Legacy_Key-000111222', subject: 'admin ', role: 'admin' }), 'in.jsonl'), /invalid line/, 'an import line with such a subject refused');
  t.same(await store.listKeys(), [], 'nothing was written');
  const fine = await svc.create({ subject: 'user@example.com', role: 'basic', name: 'job 42' });
  t.ok(fine.key, 'ordinary subjects and names with inner spaces still work');
});
