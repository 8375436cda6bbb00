import t from 'tap';
import { stringify } from 'yaml';
import { buildJwtAttacks } from '../fixtures/jwt-attacks.js';
import { isCompactJws } from '../../src/credentials/preamble.js';
import { JwtAuthenticator } from '../../src/authn/jwt/authenticator.js';
import { parseConfig } from '../../src/config/load.js';
import { startUpstream } from '../helpers/upstream.js';
import { startTestGateway } from '../helpers/gateway.js';
import { rawGet } from '../helpers/raw.js';

// Every forged token of the attack table, sent through a whole gateway: 401 with the right
// code and an upstream that saw nothing; every genuine one reaches the upstream with its identity.
const fx = await buildJwtAttacks();
t.teardown(() => fx.close());
const up = await startUpstream();
t.teardown(() => up.close());

const yaml = stringify({
  upstreams: { api: { url: up.url } },
  roles: fx.roles,
  log: { level: 'silent' },
  jwt: fx.jwtInput,
  routes: [{ match: { path: '/**' }, upstream: 'api' }],
});
const loaded = parseConfig(yaml, 'jwt.yaml', {});
const jwt = new JwtAuthenticator(loaded.config.jwt, (r) => loaded.config.roleRanks.get(r) ?? -1, fx.clock);
await jwt.start();
const g = await startTestGateway(yaml, { services: { authenticators: () => ({ jwt }) } });
t.teardown(() => g.close());
const port = Number(new URL(g.url).port);

for (const c of fx.cases) {
  t.test(c.name, async (t) => {
    const before = up.seen.length;
    const r = await rawGet(port, '/resource', [`Authorization: Bearer ${c.token}`, 'X-Auth-Subject: spoofed']);
    if (c.expect === 'ok') {
      t.equal(r.status, 200, r.body.slice(0, 200));
      const h = up.seen.at(-1)!.headers;
      t.equal(h['x-auth-subject'], c.identity!.subject);
      t.equal(h['x-auth-role'], c.identity!.role);
      t.equal(h['x-auth-scopes'], c.identity!.scopes.join(' '));
      t.equal(h['x-auth-method'], 'jwt');
      t.equal(h['authorization'], undefined, 'the token is not forwarded');
    } else {
      t.equal(r.status, r.body.includes('"bad-request"') ? 400 : 401, r.body.slice(0, 200));
      if (r.status === 401) {
        // Values that are not compact-JWS shaped are API keys by definition (docs/reference/request-pipeline.md, step 3).
        t.equal(JSON.parse(r.body).code, isCompactJws(c.token) ? c.expect : 'key-invalid');
        t.match(r.headers['www-authenticate'], /^Bearer realm="portcullis", error="invalid_token"/);
      }
      t.equal(up.seen.length, before, 'the upstream saw nothing');
    }
  });
}

t.test('tokens naming jku/x5u never made the gateway fetch anything', async (t) => {
  t.equal(fx.lure.fetches, 0);
});
