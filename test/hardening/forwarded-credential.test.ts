import t from 'tap';
import { startTestGateway } from '../helpers/gateway.js';
import { exchangeRaw } from '../helpers/raw.js';
import { publicAdminBasic, startRawUpstream } from './raw-upstream.js';

// With `identity.forwardCredential: true` the upstream acts on the credential itself, so it
// must get exactly the credential the gateway verified: not the connection-string preamble
// (which can hold another key: an upstream splitting `a:b:KEY` on its first `:` would act
// on that one), not an Authorization of a scheme the gateway ignores beside a verified key,
// and nothing on a public route, where nothing was verified. Checked from the upstream's side.

const raw = await startRawUpstream();
t.teardown(() => raw.close());
const gw = await startTestGateway(publicAdminBasic(raw.url, { head: 'identity: { forwardCredential: true }\napiKeys: { queryParams: [api_key] }' }), {
  table: { 'basic-key': { subject: 'alice', role: 'basic', scopes: [] } },
});
t.teardown(() => gw.close());
const port = Number(new URL(gw.url).port);

async function send(target: string, headers: string) {
  const n = raw.requests.length;
  const r = await exchangeRaw(port, `GET ${target} HTTP/1.1\r\nHost: a.example\r\n${headers}Connection: close\r\n\r\n`, { idleMs: 300, firstMs: 5000 });
  await new Promise((res) => setTimeout(res, 50));
  const seen = raw.requests.slice(n);
  const credentialLines = seen.flatMap((s) => s.headerLines).filter((l) => /^(authorization|x-api-key):/i.test(l));
  return { status: r.responses[0]?.status, seen: seen.length, credentialLines, lines: seen.flatMap((s) => [s.requestLine, ...s.headerLines]) };
}

const cases: [string, string, string, string[]][] = [
  ['a key header with a preamble holding another key', '/x', 'X-Api-Key: api.example:443:admin-key:basic-key\r\n', ['x-api-key: basic-key']],
  ['an Authorization with a preamble holding another key', '/x', 'Authorization: Bearer admin-key:basic-key\r\n', ['authorization: Bearer basic-key']],
  ['an Authorization of another scheme beside a verified key header', '/x', 'Authorization: Basic b3BzOmh1bnRlcjI=\r\nX-Api-Key: basic-key\r\n', ['x-api-key: basic-key']],
  ['a key verified from the query beside a Digest Authorization', '/x?api_key=basic-key', 'Authorization: Digest username="ops"\r\n', []],
  ['the plain verified key', '/x', 'X-Api-Key: basic-key\r\n', ['x-api-key: basic-key']],
];

t.test('the upstream gets the verified credential only, as verified', async (t) => {
  for (const [what, target, headers, want] of cases) {
    const r = await send(target, headers);
    t.equal(r.status, 200, `${what}: 200`);
    t.equal(r.seen, 1, `${what}: one request upstream`);
    t.same(r.credentialLines.map((l) => l.replace(/^[^:]+/, (n) => n.toLowerCase())), want, `${what}: the upstream's credential headers`);
    t.notOk(r.lines.some((l) => l.includes('admin-key') || l.includes('b3BzOmh1bnRlcjI') || l.includes('Digest')), `${what}: nothing unverified anywhere upstream`);
  }
});

t.test('a public route forwards no credential: none was verified', async (t) => {
  const r = await send('/public/x?api_key=basic-key', 'Authorization: Basic b3BzOmh1bnRlcjI=\r\nX-Api-Key: basic-key\r\n');
  t.equal(r.status, 200);
  t.same(r.credentialLines, [], 'no Authorization, no key header');
  t.same(r.lines[0], 'GET /public/x HTTP/1.1', 'no key parameter');
});
