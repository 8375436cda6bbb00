import t from 'tap';
import { startTestGateway } from '../helpers/gateway.js';
import { exchangeRaw } from '../helpers/raw.js';
import { publicAdminBasic, startRawUpstream } from './raw-upstream.js';

// Three ways to make the upstream act on what the gateway did not judge, each checked from
// the upstream's side (a raw server that records every request it reads):
// - a key query parameter in another spelling (`API_KEY`, `api.key`, `x=1;api_key=…`), which
//   ASP.NET, PHP or Rack read as the key parameter: an unverified key, or a second key
//   beside the one the gateway verified;
// - a method override in the query (`_method=DELETE`), which Symfony, Laravel and Express's
//   method-override honour: another method than the one the route was chosen for;
// - a path that normalizes to one of the gateway's own endpoints: never proxied.

const raw = await startRawUpstream();
t.teardown(() => raw.close());
const gw = await startTestGateway(
  publicAdminBasic(raw.url, { head: 'apiKeys: { queryParams: [api_key] }', adminPaths: ['admin'] }),
  { table: { 'basic-key': { subject: 'alice', role: 'basic', scopes: [] }, 'admin-key': { subject: 'root', role: 'admin', scopes: [] } } },
);
t.teardown(() => gw.close());
const port = Number(new URL(gw.url).port);

async function send(method: string, target: string, key?: string) {
  const n = raw.requests.length;
  const head = `${method} ${target} HTTP/1.1\r\nHost: a.example\r\n${key === undefined ? '' : `X-Api-Key: ${key}\r\n`}Content-Length: 0\r\nConnection: close\r\n\r\n`;
  const r = await exchangeRaw(port, head, { idleMs: 300, firstMs: 5000 });
  await new Promise((res) => setTimeout(res, 50));
  return { status: r.responses[0]?.status, seen: raw.requests.slice(n).map((s) => s.requestLine) };
}

t.test('a key query parameter in another spelling is refused, and the upstream reads nothing', async (t) => {
  const spellings = ['API_KEY', 'Api_Key', 'api.key', 'api+key', '%20api_key', 'api_key[]', 'api_key%5B0%5D', 'api[key', 'x=1;api_key', 'x=1;API_KEY', 'api_key%00', '%5Bapi_key%5D', 'api_key%5D', 'api_key[x]y', 'api_key%00%ZZ', '+api_key%00%FF'];
  for (const spelled of spellings) {
    // An unverified key on a public route.
    let r = await send('GET', `/public/x?${spelled}=admin-key`);
    t.equal(r.status, 400, `public route, ?${spelled}=…: 400`);
    t.same(r.seen, [], `public route, ?${spelled}=…: the upstream read nothing`);
    // A second key beside the one the gateway verifies.
    r = await send('GET', `/x?${spelled}=admin-key`, 'basic-key');
    t.equal(r.status, 400, `protected route, basic key in the header, ?${spelled}=admin key: 400`);
    t.same(r.seen, [], `protected route, ?${spelled}=…: the upstream read nothing`);
  }
});

t.test('the exact key parameter is verified and removed; look-alike names pass as they are', async (t) => {
  let r = await send('GET', '/x?a=1&api_key=basic-key&b=2');
  t.equal(r.status, 200);
  t.same(r.seen, ['GET /x?a=1&b=2 HTTP/1.1'], 'the key never reaches the upstream');
  r = await send('GET', '/admin/x?api_key=basic-key');
  t.equal(r.status, 403, 'a basic key in the query on an admin route');
  t.same(r.seen, []);
  r = await send('GET', '/public/x?api_keys=1&myapi_key=2&q=api_key', undefined);
  t.equal(r.status, 200);
  t.same(r.seen, ['GET /public/x?api_keys=1&myapi_key=2&q=api_key HTTP/1.1']);
});

t.test('a method override in the query is refused, and the upstream reads nothing', async (t) => {
  for (const q of ['_method=DELETE', '_METHOD=DELETE', '%5Fmethod=DELETE', '.method=DELETE', 'a=1;_method=PUT', '_method[]=DELETE', '_method%00=DELETE', '%5B_method%5D=DELETE', '_method%00%ZZ=DELETE']) {
    const r = await send('POST', `/x?${q}`, 'basic-key');
    t.equal(r.status, 400, `POST /x?${q}: 400`);
    t.same(r.seen, [], `POST /x?${q}: the upstream read nothing`);
  }
  const r = await send('POST', '/x?method=fast&x_method=1', 'basic-key');
  t.equal(r.status, 200, 'other names with "method" in them pass');
  t.same(r.seen, ['POST /x?method=fast&x_method=1 HTTP/1.1']);
});

t.test('no spelling of a gateway endpoint is proxied', async (t) => {
  for (const path of ['//.portcullis/logout', '/%2Eportcullis/logout', '/%2eportcullis/refresh', '/x/../.portcullis/refresh', '/public/../.portcullis/logout', '/.PORTCULLIS/logout', '/.portcullis', '/%2Eportcullis/verify', '/.portcullis./logout', '/.portcullis%20/logout', '/%20.portcullis/refresh', '/%20/.portcullis/logout', '/.portcull%C4%B1s/logout', '/.portculli%C5%BF/logout']) {
    const r = await send('POST', path, 'basic-key');
    t.ok(r.status === 404 || r.status === 400, `POST ${path}: refused (${r.status})`);
    t.same(r.seen, [], `POST ${path}: the upstream read nothing`);
  }
  const r = await send('GET', '/.portcullisx/y', 'basic-key');
  t.equal(r.status, 200, 'a path that only starts like the endpoints is proxied');
  t.same(r.seen, ['GET /.portcullisx/y HTTP/1.1']);
});
