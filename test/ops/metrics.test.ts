import t, { type Test } from 'tap';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { request } from 'undici';
import { parseAllDocuments } from 'yaml';
import { register as globalRegistry } from 'prom-client';
import { Metrics } from '../../src/ops/metrics.js';
import { parseConfig } from '../../src/config/load.js';
import type { RequestRecord } from '../../src/ops/record.js';
import { startUpstream } from '../helpers/upstream.js';
import { startTestGateway } from '../helpers/gateway.js';

interface Line {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Prometheus text exposition → samples (comments dropped, label values unescaped). */
function parseExposition(text: string): Line[] {
  const out: Line[] = [];
  for (const raw of text.split('\n')) {
    if (raw === '' || raw.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(raw);
    if (!m) throw new Error(`unparseable exposition line: ${raw}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[l[1]!] = l[2]!.replace(/\\(["\\n])/g, (_s, c: string) => (c === 'n' ? '\n' : c));
    }
    out.push({ name: m[1]!, labels, value: m[3] === '+Inf' ? Infinity : Number(m[3]) });
  }
  return out;
}

function pick(lines: Line[], name: string, labels: Record<string, string> = {}): Line[] {
  return lines.filter((l) => l.name === name && Object.entries(labels).every(([k, v]) => l.labels[k] === v));
}

function value(lines: Line[], name: string, labels: Record<string, string> = {}): number | undefined {
  const found = pick(lines, name, labels);
  if (found.length > 1) throw new Error(`${name} ${JSON.stringify(labels)} matches ${found.length} series`);
  return found[0]?.value;
}

/** Buckets of one histogram series are cumulative, end in +Inf equal to _count. */
function checkHistogram(t: Test, lines: Line[], name: string, labels: Record<string, string>): void {
  const buckets = pick(lines, `${name}_bucket`, labels);
  t.ok(buckets.length > 2, `${name} has buckets`);
  for (let i = 1; i < buckets.length; i++) t.ok(buckets[i]!.value >= buckets[i - 1]!.value, `${name} buckets are cumulative`);
  t.equal(buckets[buckets.length - 1]!.labels.le, '+Inf');
  t.equal(buckets[buckets.length - 1]!.value, value(lines, `${name}_count`, labels), `${name} +Inf bucket equals _count`);
}

const up = await startUpstream();
t.teardown(() => up.close());

const metrics = new Metrics();
const table = {
  'basic-key': { subject: 'alice', role: 'basic', scopes: ['read'] },
  'admin-key': { subject: 'root', role: 'admin', scopes: [] },
};
const g = await startTestGateway(
  `
upstreams:
  api: { url: "${up.url}", timeout: 2s }
roles: [basic, admin]
log: { level: silent }
routes:
  - match: { path: /health, methods: [GET] }
    public: true
    upstream: api
  - name: admin
    match: { path: "/admin/**" }
    minRole: admin
    upstream: api
  - name: app
    match: { path: "/app/**" }
    minRole: basic
    upstream: api
`,
  { table, observers: [metrics] },
);
t.teardown(() => g.close());

async function get(path: string, key?: string): Promise<number> {
  const r = await request(`${g.url}${path}`, { headers: key ? { authorization: `Bearer ${key}` } : {} });
  await r.body.dump();
  return r.statusCode;
}

/** Forwarded requests are recorded when the response closes, a moment after the client has it. */
async function settled(n: number): Promise<void> {
  for (let i = 0; i < 200 && g.records.length < n; i++) await new Promise((r) => setTimeout(r, 5));
  if (g.records.length < n) throw new Error(`only ${g.records.length} of ${n} requests recorded`);
}

t.test('requests through a real gateway are counted by route, decision, status and code', async (t) => {
  const statuses = [
    await get('/health'),
    await get('/health'),
    await get('/app/a', 'basic-key'),
    await get('/app/b', 'basic-key'),
    await get('/app/c', 'basic-key'),
    await get('/app/a'),
    await get('/app/a', 'wrong-key'),
    await get('/admin/x', 'basic-key'),
    await get('/admin/x', 'admin-key'),
    await get('/nowhere'),
    await get('/app/a%2Fb'),
  ];
  t.same(statuses, [200, 200, 200, 200, 200, 401, 401, 403, 200, 404, 400]);
  await settled(statuses.length);

  const lines = parseExposition(await metrics.text());
  const req = 'portcullis_requests_total';
  // Admitted requests carry their route. Refusals are checked across routes: the route label of a
  // refusal is whatever the pipeline's record names (none before matching).
  const sum = (labels: Record<string, string>) => pick(lines, req, labels).reduce((a, l) => a + l.value, 0);
  const cases: Array<[Record<string, string>, number]> = [
    [{ route: '0:/health', decision: 'allow', status: '200', code: '' }, 2],
    [{ route: 'app', decision: 'allow', status: '200', code: '' }, 3],
    [{ route: 'admin', decision: 'allow', status: '200', code: '' }, 1],
    [{ decision: 'deny', status: '401', code: 'token-missing' }, 1],
    [{ decision: 'deny', status: '401', code: 'key-invalid' }, 1],
    [{ decision: 'deny', status: '403', code: 'authorisation-required' }, 1],
    [{ route: '(none)', decision: 'deny', status: '404', code: 'route-not-found' }, 1],
    [{ route: '(none)', decision: 'deny', status: '400', code: 'bad-request' }, 1],
  ];
  for (const [labels, n] of cases) t.equal(sum(labels), n, `${JSON.stringify(labels)} = ${n}`);
  for (const r of g.records) {
    t.equal(sum({ route: r.route ?? '(none)', status: String(r.status), code: r.code ?? '' }) > 0, true, `record ${r.route} ${r.status} ${r.code ?? ''} has its series`);
  }
  t.equal(pick(lines, req).reduce((a, l) => a + l.value, 0), statuses.length, 'no other request series');

  const perRoute = new Map<string, number>();
  for (const r of g.records) perRoute.set(r.route ?? '(none)', (perRoute.get(r.route ?? '(none)') ?? 0) + 1);
  for (const [route, n] of perRoute) t.equal(value(lines, 'portcullis_request_duration_seconds_count', { route }), n, `latency count of ${route}`);
  t.ok(value(lines, 'portcullis_request_duration_seconds_count', { route: 'app' })! >= 3);
  t.equal(pick(lines, 'portcullis_request_duration_seconds_count').reduce((a, l) => a + l.value, 0), statuses.length);
  checkHistogram(t, lines, 'portcullis_request_duration_seconds', { route: 'app' });
  t.ok(value(lines, 'portcullis_request_duration_seconds_sum', { route: 'app' })! > 0, 'latency sum is positive');

  // The identity exists only for admitted requests; refusals and public routes count as `none`.
  t.equal(value(lines, 'portcullis_auth_duration_seconds_count', { method: 'apiKey' }), 4);
  t.equal(value(lines, 'portcullis_auth_duration_seconds_count', { method: 'none' }), 7);
  t.equal(value(lines, 'portcullis_auth_duration_seconds_count', { method: 'jwt' }), 0);
  checkHistogram(t, lines, 'portcullis_auth_duration_seconds', { method: 'apiKey' });

  t.equal(value(lines, 'portcullis_upstream_duration_seconds_count', { upstream: 'api' }), 6, 'only forwarded requests have upstream latency');
  checkHistogram(t, lines, 'portcullis_upstream_duration_seconds', { upstream: 'api' });
  t.ok(value(lines, 'portcullis_upstream_duration_seconds_sum', { upstream: 'api' })! > 0);
});

t.test('latency lands in the right bucket', async (t) => {
  const m = new Metrics({ defaultMetrics: false });
  const rec = (over: Partial<RequestRecord>): RequestRecord => ({
    requestId: 'r', method: 'GET', path: '/x', route: 'r1', decision: 'allow', code: undefined, status: 200,
    latencyMs: 30, authMs: 0.3, keyId: undefined, subject: 's', method_: 'jwt', clientIp: '127.0.0.1', upstream: 'api', upstreamMs: 20,
    ...over,
  });
  m.onRequest(rec({}));
  m.onRequest(rec({ latencyMs: 0.5, authMs: 0.05, upstreamMs: 70_000 }));
  m.onRequest(rec({ upstream: undefined, upstreamMs: undefined }));
  const lines = parseExposition(await m.text());
  const b = (name: string, labels: Record<string, string>, le: string) => value(lines, `${name}_bucket`, { ...labels, le });
  // 30 ms, 0.5 ms, 30 ms → le=0.025 holds one, le=0.05 all three
  t.equal(b('portcullis_request_duration_seconds', { route: 'r1' }, '0.001'), 1);
  t.equal(b('portcullis_request_duration_seconds', { route: 'r1' }, '0.025'), 1);
  t.equal(b('portcullis_request_duration_seconds', { route: 'r1' }, '0.05'), 3);
  t.equal(b('portcullis_auth_duration_seconds', { method: 'jwt' }, '0.0001'), 1, '50 µs ≤ 100 µs');
  t.equal(b('portcullis_auth_duration_seconds', { method: 'jwt' }, '0.00025'), 1, '300 µs is above 250 µs');
  t.equal(b('portcullis_auth_duration_seconds', { method: 'jwt' }, '0.0005'), 3);
  // 70 s is beyond the last finite bucket: only +Inf counts it
  t.equal(b('portcullis_upstream_duration_seconds', { upstream: 'api' }, '60'), 1);
  t.equal(b('portcullis_upstream_duration_seconds', { upstream: 'api' }, '+Inf'), 2);
  t.equal(value(lines, 'portcullis_upstream_duration_seconds_sum', { upstream: 'api' }), 70.02);
  t.equal(value(lines, 'process_cpu_user_seconds_total'), undefined, 'default metrics can be left out');
});

t.test('cache, revocation and queue-depth metrics', async (t) => {
  const m = new Metrics({ defaultMetrics: false });
  m.cacheHit('jwt');
  m.cacheHit('jwt');
  m.cacheHit('apiKey');
  m.cacheMiss('apiKey');
  m.revocationError();
  m.observeRevocation(3);
  m.observeRevocation(0.2);
  let depth = 7;
  let lines = parseExposition(await m.text());
  t.equal(value(lines, 'portcullis_argon2_queue_depth'), 0, 'no source: zero');
  m.setQueueDepthSource(() => depth);
  lines = parseExposition(await m.text());
  t.equal(value(lines, 'portcullis_cache_hits_total', { kind: 'jwt' }), 2);
  t.equal(value(lines, 'portcullis_cache_hits_total', { kind: 'apiKey' }), 1);
  t.equal(value(lines, 'portcullis_cache_misses_total', { kind: 'apiKey' }), 1);
  t.equal(value(lines, 'portcullis_cache_misses_total', { kind: 'jwt' }), 0);
  t.equal(value(lines, 'portcullis_revocation_errors_total'), 1);
  t.equal(value(lines, 'portcullis_revocation_duration_seconds_count'), 2);
  t.equal(value(lines, 'portcullis_revocation_duration_seconds_bucket', { le: '0.00025' }), 1, '0.2 ms');
  t.equal(value(lines, 'portcullis_revocation_duration_seconds_bucket', { le: '0.0025' }), 1);
  t.equal(value(lines, 'portcullis_revocation_duration_seconds_bucket', { le: '0.005' }), 2, '3 ms');
  t.equal(value(lines, 'portcullis_argon2_queue_depth'), 7);
  depth = 2;
  t.equal(value(parseExposition(await m.text()), 'portcullis_argon2_queue_depth'), 2, 'read at scrape time');
  m.registry.resetMetrics();
  lines = parseExposition(await m.text());
  t.equal(value(lines, 'portcullis_cache_hits_total', { kind: 'jwt' }), 0, 'registry reset clears collected series');
  t.equal(value(lines, 'portcullis_revocation_duration_seconds_count'), 0);
});

t.test('cache counters read from the authenticators at scrape time stay monotonic across reloads', async (t) => {
  const m = new Metrics({ defaultMetrics: false });
  // Shapes of JwtAuthenticator.stats and ApiKeyAuthenticator.stats.
  let jwt: { hits: number; misses: number } | undefined = { hits: 0, misses: 0 };
  let apiKey = { cacheHits: 0, cacheMisses: 0 };
  m.setCacheSource('jwt', () => jwt);
  m.setCacheSource('apiKey', () => apiKey);
  const read = async () => {
    const lines = parseExposition(await m.text());
    return [value(lines, 'portcullis_cache_hits_total', { kind: 'jwt' }), value(lines, 'portcullis_cache_misses_total', { kind: 'jwt' }), value(lines, 'portcullis_cache_hits_total', { kind: 'apiKey' }), value(lines, 'portcullis_cache_misses_total', { kind: 'apiKey' })];
  };
  jwt.hits = 5;
  jwt.misses = 2;
  apiKey.cacheHits = 7;
  t.same(await read(), [5, 2, 7, 0]);
  t.same(await read(), [5, 2, 7, 0], 'a second scrape adds nothing');
  // A reload builds new authenticators; the old ones served a few more requests meanwhile.
  const old = apiKey;
  old.cacheHits = 9;
  apiKey = { cacheHits: 3, cacheMisses: 1 };
  t.same(await read(), [5, 2, 12, 1], 'old 7→9 plus the new one\'s 3');
  old.cacheHits = 100;
  apiKey.cacheHits = 4;
  t.same(await read(), [5, 2, 13, 1], 'a retired authenticator is no longer read');
  jwt = undefined;
  t.same(await read(), [5, 2, 13, 1], 'no JWT issuers any more: the counter keeps its value');
  jwt = { hits: 1, misses: 0 };
  m.cacheHit('jwt');
  t.same(await read(), [7, 2, 13, 1], 'per-event calls and a source add up');
});

t.test('own registry: process metrics present, prom-client global registry untouched', async (t) => {
  const lines = parseExposition(await metrics.text());
  t.ok(value(lines, 'process_cpu_user_seconds_total')! >= 0, 'default process metrics');
  t.ok(pick(lines, 'nodejs_heap_size_used_bytes').length === 1, 'default Node.js metrics');
  t.equal(globalRegistry.getSingleMetric('portcullis_requests_total'), undefined);
  const other = new Metrics();
  t.ok((await other.text()).includes('portcullis_requests_total'), 'a second instance registers without clashing');
  t.match(metrics.contentType, /^text\/plain; version=0\.0\.4/);
  const text = await metrics.text();
  t.match(text, /# TYPE portcullis_requests_total counter/);
  t.match(text, /# TYPE portcullis_auth_duration_seconds histogram/);
  t.match(text, /# TYPE portcullis_argon2_queue_depth gauge/);
});

// The deployment manifests ship with the code; a typo in them should fail here, not in a cluster.
/** The parts of the shipped Kubernetes manifests that the checks below read. */
interface Container {
  name: string;
  readinessProbe: { httpGet: { path: string; port: number } };
  livenessProbe: { httpGet: { path: string } };
  ports?: { name?: string; containerPort: number }[];
  securityContext: { readOnlyRootFilesystem?: boolean; allowPrivilegeEscalation?: boolean };
  env?: { name: string; valueFrom?: { secretKeyRef?: { key: string } } }[];
}
type Deployment = {
  spec: { template: { spec: { containers: Container[]; securityContext: { runAsNonRoot?: boolean } } } };
};

t.test('deploy/ manifests parse, and the sidecar gateway config is a valid config', async (t) => {
  const root = new URL('../../deploy/', import.meta.url).pathname;
  const files: string[] = [];
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      if (e.isDirectory()) walk(join(dir, e.name));
      else if (/\.ya?ml$/.test(e.name)) files.push(join(dir, e.name));
    }
  };
  walk(root);
  t.ok(files.length >= 2, 'found the manifests');
  const kinds = new Map<string, Record<string, unknown>[]>();
  for (const f of files) {
    const docs = parseAllDocuments(readFileSync(f, 'utf8'));
    for (const d of Array.isArray(docs) ? docs : [docs]) {
      t.same(d.errors.map((e) => e.message), [], `${f} parses`);
      const obj = d.toJS() as Record<string, unknown> | null;
      if (obj === null) continue;
      t.type(obj.apiVersion, 'string', `${f}: apiVersion`);
      t.type(obj.kind, 'string', `${f}: kind`);
      const list = kinds.get(obj.kind as string) ?? [];
      list.push(obj);
      kinds.set(obj.kind as string, list);
    }
  }
  for (const k of ['Deployment', 'Service', 'ConfigMap', 'Secret', 'Middleware']) t.ok(kinds.has(k), `a ${k} is shipped`);

  const cm = kinds.get('ConfigMap')![0] as { data: Record<string, string> };
  const env = { JWT_SECRET: 'x'.repeat(32), DATABASE_URL: 'postgres://u@db/portcullis', REDIS_URL: 'redis://redis:6379', PORTCULLIS_ADMIN_TOKEN: 't'.repeat(32) };
  const loaded = parseConfig(cm.data['gateway.config.yaml']!, 'configmap.yaml', env);
  const appUrl = new URL(loaded.config.upstreams.app!.url);
  t.equal(appUrl.hostname, '127.0.0.1', 'the app is reached over the pod loopback');

  const dep = kinds.get('Deployment')![0] as Deployment;
  const pod = dep.spec.template.spec;
  const gw = pod.containers.find((c) => c.name === 'portcullis')!;
  const app = pod.containers.find((c) => c.name !== 'portcullis')!;
  t.ok(gw && app, 'two containers: the app and the gateway');
  t.equal(gw.readinessProbe.httpGet.path, '/readyz');
  t.equal(gw.livenessProbe.httpGet.path, '/healthz');
  t.equal(gw.readinessProbe.httpGet.port, loaded.config.admin.port);
  const gwPort = gw.ports?.find((p) => p.containerPort === loaded.config.listen.port);
  t.ok(gwPort, 'the gateway container exposes the configured listen port');
  t.notOk(app.ports?.some((p) => p.containerPort === Number(appUrl.port)), 'the app port is not exposed');
  const svc = kinds.get('Service')![0] as { spec: { ports: { targetPort: string | number }[] } };
  t.ok(svc.spec.ports.every((p) => p.targetPort === gwPort?.name || p.targetPort === gwPort?.containerPort), 'the Service targets the gateway, not the app');
  for (const c of [gw, app]) {
    t.equal(c.securityContext.readOnlyRootFilesystem, true, `${c.name}: read-only root`);
    t.equal(c.securityContext.allowPrivilegeEscalation, false, `${c.name}: no privilege escalation`);
  }
  t.equal(pod.securityContext.runAsNonRoot, true);
  const secret = kinds.get('Secret')![0] as { data?: object; stringData?: object };
  for (const k of ['JWT_SECRET', 'DATABASE_URL', 'REDIS_URL', 'PORTCULLIS_ADMIN_TOKEN']) {
    t.ok(k in (secret.stringData ?? secret.data ?? {}), `Secret holds ${k}`);
    t.ok(gw.env?.some((e) => e.name === k && e.valueFrom?.secretKeyRef?.key === k), `gateway env ${k} from the Secret`);
  }

  const mw = kinds.get('Middleware')![0] as { spec: { forwardAuth: { authResponseHeaders: string[]; address: string } } };
  const names = loaded.config.identity.headers;
  const expected = [...Object.values(names), loaded.config.identity.assertion?.header].filter((h) => h !== undefined);
  t.same([...mw.spec.forwardAuth.authResponseHeaders].sort(), expected.sort(), 'Traefik copies every identity header and the assertion');
  t.match(mw.spec.forwardAuth.address, /\/\.portcullis\/verify$/);
});
