import t from 'tap';
import { generateKeyPair, SignJWT } from 'jose';
import { canonicalSignature, JwtAuthenticator } from '../../src/authn/jwt/authenticator.js';
import { parseConfig } from '../../src/config/load.js';
import { startTestGateway } from '../helpers/gateway.js';
import { exchangeRaw } from '../helpers/raw.js';
import { JWT_ISSUER, JWT_SECRET } from './harness.js';
import { publicAdminBasic, startRawUpstream } from './raw-upstream.js';

// A signature's last base64url character carries bits that decoding ignores (2 for an
// HS256 signature of 32 bytes, 4 for an ES256 one of 64), so one signature can be written
// 4 or 16 ways, each a different text. Revocation by the token's text (the gateway's
// logout, a fronted API's `SET <token>` read through `{token}`) names one of them: every
// other spelling must be refused, not admitted as the same token. Checked from the
// upstream's side.

const raw = await startRawUpstream();
t.teardown(() => raw.close());
const es = await generateKeyPair('ES256');
const text = publicAdminBasic(raw.url, { head: `jwt:\n  issuers:\n    - { name: hs, issuer: "${JWT_ISSUER}", algorithms: [HS256], secret: "${JWT_SECRET}" }\n` });
const loaded = parseConfig(text, 'spelling.yaml', {});
const jwt = new JwtAuthenticator(loaded.config.jwt, (r) => loaded.config.roleRanks.get(r) ?? -1);
await jwt.start();
t.teardown(() => jwt.close());
const gw = await startTestGateway(text, { services: { authenticators: () => ({ jwt }) } });
t.teardown(() => gw.close());
const port = Number(new URL(gw.url).port);

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

/** Every spelling of a token's signature: its last character with each combination of spare bits. */
function spellings(token: string): string[] {
  const rest = (token.length - token.lastIndexOf('.') - 1) % 4;
  const spare = rest === 2 ? 0x0f : rest === 3 ? 0x03 : 0;
  const v = B64.indexOf(token.at(-1)!) & ~spare;
  return Array.from({ length: spare + 1 }, (_, bits) => token.slice(0, -1) + B64[v | bits]);
}

t.test('only the canonical spelling of a signature reaches the upstream', async (t) => {
  const token = await new SignJWT({ role: 'basic' }).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).setIssuer(JWT_ISSUER).setSubject('alice').setIssuedAt().setExpirationTime('1h').sign(new TextEncoder().encode(JWT_SECRET));
  const all = spellings(token);
  t.equal(all.length, 4, 'an HS256 signature has four spellings');
  t.equal(all[0], token, 'the first is the one jose wrote');
  for (const [i, s] of all.entries()) {
    const n = raw.requests.length;
    const r = await exchangeRaw(port, `GET /x HTTP/1.1\r\nHost: a.example\r\nAuthorization: Bearer ${s}\r\nConnection: close\r\n\r\n`, { idleMs: 300, firstMs: 5000 });
    await new Promise((res) => setTimeout(res, 30));
    if (i === 0) {
      t.equal(r.responses[0]?.status, 200, 'canonical: admitted');
      t.equal(raw.requests.length - n, 1);
    } else {
      t.equal(r.responses[0]?.status, 401, `spelling ${i}: 401`);
      t.match(r.responses[0]?.body.toString() ?? '', /token-invalid/, `spelling ${i}: token-invalid`);
      t.equal(raw.requests.length - n, 0, `spelling ${i}: nothing upstream`);
    }
  }
});

t.test('the rule, over many signatures of both lengths', async (t) => {
  let checked = 0;
  for (let i = 0; i < 40; i++) {
    const hs = await new SignJWT({ i }).setProtectedHeader({ alg: 'HS256' }).sign(new TextEncoder().encode(JWT_SECRET));
    const ec = await new SignJWT({ i }).setProtectedHeader({ alg: 'ES256' }).sign(es.privateKey);
    for (const token of [hs, ec]) {
      const all = spellings(token);
      t.ok(canonicalSignature(all[0]!), 'what jose writes is canonical');
      for (const other of all.slice(1)) if (canonicalSignature(other)) t.fail(`accepted a spare bit: ${other.slice(-4)}`);
      checked += all.length;
    }
  }
  t.ok(checked >= 40 * (4 + 16), `${checked} spellings checked`);
});
