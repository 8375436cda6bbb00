import t from 'tap';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { request } from 'undici';
import { startUpstream } from '../helpers/upstream.js';
import { spawnGateway } from '../helpers/spawn.js';

// Reload (SIGHUP and --watch) and SIGTERM drain, against a real gateway process under traffic.
const up = await startUpstream();
t.teardown(() => up.close());

const config = (extraRoute: string) => `
listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
store: { url: "sqlite://memory" }
upstreams: { api: { url: "${up.url}", timeout: 10s } }
log: { level: info }
routes:
${extraRoute}
  - match: { path: "/slow/**" }
    public: true
    upstream: api
  - match: { path: "/**" }
    minRole: basic
    upstream: api
`;
const openRoute = `  - match: { path: "/open/**" }\n    public: true\n    upstream: api`;

async function status(url: string): Promise<number> {
  const r = await request(url);
  await r.body.dump();
  return r.statusCode;
}

async function until(cond: () => Promise<boolean>, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('condition not met in time');
}

for (const mode of ['SIGHUP', '--watch'] as const) {
  t.test(`reload by ${mode}: new config applies, in-flight requests finish, an invalid config is refused`, async (t) => {
    const gw = await spawnGateway(config(''), { args: mode === '--watch' ? ['--watch'] : [] });
    t.teardown(() => gw.stop());
    t.equal(await status(`${gw.url}/open/x`), 401, 'protected before the reload');

    const inflight = Array.from({ length: 5 }, () => request(`${gw.url}/slow/800`).then(async (r) => { await r.body.dump(); return r.statusCode; }));
    await new Promise((r) => setTimeout(r, 100));
    writeFileSync(gw.configFile, config(openRoute));
    if (mode === 'SIGHUP') gw.child.kill('SIGHUP');
    await until(async () => (await status(`${gw.url}/open/x`)) === 200);
    t.pass('new route serves after the reload');
    t.same(await Promise.all(inflight), [200, 200, 200, 200, 200], 'requests in flight during the reload completed');

    writeFileSync(gw.configFile, config(openRoute) + '\nbogus: true\n');
    if (mode === 'SIGHUP') gw.child.kill('SIGHUP');
    await until(async () => gw.lines.some((l) => l.includes('config reload refused')));
    const refused = gw.lines.find((l) => l.includes('config reload refused'))!;
    t.match(refused, /unknown key \\"bogus\\"/, 'the refusal names the problem with its position');
    t.equal(await status(`${gw.url}/open/x`), 200, 'the previous config keeps serving');
    t.equal(gw.child.exitCode, null, 'still running');
  });
}

t.test('SIGTERM drains in-flight requests and exits 0', async (t) => {
  const gw = await spawnGateway(config(''));
  const inflight = Array.from({ length: 8 }, () => request(`${gw.url}/slow/700`).then(async (r) => { await r.body.dump(); return r.statusCode; }, (e: Error) => e.message));
  await new Promise((r) => setTimeout(r, 150));
  const exited = gw.stop('SIGTERM');
  await new Promise((r) => setTimeout(r, 100));
  const refused = await request(`${gw.url}/slow/0`).then(() => 'served', () => 'refused');
  t.equal(refused, 'refused', 'no new connections once draining');
  t.same(await Promise.all(inflight), Array(8).fill(200), 'every in-flight request completed');
  t.equal(await exited, 0, 'exit code 0');
});

t.test('serve replaces itself, same PID, with the memory flags and a bounded malloc arena count', async (t) => {
  const proc = (pid: number, what: 'cmdline' | 'environ') => readFileSync(`/proc/${pid}/${what}`, 'utf8').split('\0');
  // Under glibc's malloc (jemalloc has no per-thread arenas to bound: see the next test).
  const cases: { name: string; env: Record<string, string>; flags: string[]; arenas: string | undefined; replaced: boolean }[] = [
    { name: 'shipped defaults', env: {}, flags: ['--max-semi-space-size=4', '--heap-growing-percent=25', '--gc-memory-reducer-start-delay-ms=2000'], arenas: '2', replaced: true },
    { name: 'PORTCULLIS_NODE_FLAGS replaces the flags; MALLOC_ARENA_MAX set by the environment stays', env: { PORTCULLIS_NODE_FLAGS: '--max-semi-space-size=8', MALLOC_ARENA_MAX: '6' }, flags: ['--max-semi-space-size=8'], arenas: '6', replaced: true },
    { name: "PORTCULLIS_NODE_FLAGS='' : no replacement", env: { PORTCULLIS_NODE_FLAGS: '' }, flags: [], arenas: undefined, replaced: false },
  ];
  for (const c of cases) {
    const env: Record<string, string> = { PORTCULLIS_MALLOC: 'system', MALLOC_ARENA_MAX: '', ...c.env };
    const gw = await spawnGateway(config(''), { env });
    const pid = gw.child.pid!;
    const argv = proc(pid, 'cmdline');
    const environ = proc(pid, 'environ');
    const arenas = environ.find((e) => e.startsWith('MALLOC_ARENA_MAX='))?.slice('MALLOC_ARENA_MAX='.length);
    t.ok(c.flags.every((f) => argv.includes(f)), `${c.name}: flags ${JSON.stringify(argv.filter((a) => a.startsWith('--')))}`);
    if (c.flags.length === 0) t.notOk(argv.some((a) => a.startsWith('--max-semi-space-size')), `${c.name}: none added`);
    t.equal(arenas === '' ? undefined : arenas, c.arenas, `${c.name}: MALLOC_ARENA_MAX ${arenas}`);
    t.equal(environ.includes('PORTCULLIS_NODE_FLAGS_APPLIED=1'), c.replaced, `${c.name}: ${c.replaced ? '' : 'not '}replaced`);
    t.equal(await status(`${gw.url}/slow/0`), 200, `${c.name}: and it serves`);
    await gw.stop();
  }
});

const BIN = new URL('../../bin/portcullis.js', import.meta.url).pathname;
// Debian's libjemalloc2 (a dependency of its redis-server); .ci/run installs it.
const JEMALLOC = [`/usr/lib/${process.arch === 'arm64' ? 'aarch64' : 'x86_64'}-linux-gnu/libjemalloc.so.2`, '/usr/lib64/libjemalloc.so.2', '/usr/lib/libjemalloc.so.2', '/usr/local/lib/libjemalloc.so.2'].find((f) => existsSync(f));

// Without it the test is skipped on a developer machine and fails in CI.
const noJemalloc = JEMALLOC === undefined && process.env.CI !== 'true' ? 'libjemalloc.so.2 is not installed' : false;
t.test('serve allocates with jemalloc when the system has it, unless told otherwise', { skip: noJemalloc }, async (t) => {
  if (JEMALLOC === undefined) {
    t.fail('libjemalloc.so.2 is not installed (apt-get install libjemalloc2)');
    return;
  }
  const mapped = (pid: number) => readFileSync(`/proc/${pid}/maps`, 'utf8').includes('libjemalloc');
  const envOf = (pid: number, name: string) => readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').find((e) => e.startsWith(`${name}=`))?.slice(name.length + 1);
  const libm = `/lib/${process.arch === 'arm64' ? 'aarch64' : 'x86_64'}-linux-gnu/libm.so.6`;
  const cases: { name: string; env: Record<string, string>; jemalloc: boolean; conf: string | undefined; preload: string | undefined; flags: boolean }[] = [
    { name: 'found on the system', env: {}, jemalloc: true, conf: 'background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0', preload: JEMALLOC, flags: true },
    { name: 'named by PORTCULLIS_MALLOC, with MALLOC_CONF from the environment', env: { PORTCULLIS_MALLOC: JEMALLOC, MALLOC_CONF: 'narenas:1' }, jemalloc: true, conf: 'narenas:1', preload: JEMALLOC, flags: true },
    { name: "PORTCULLIS_NODE_FLAGS='' : no flags, jemalloc still", env: { PORTCULLIS_NODE_FLAGS: '' }, jemalloc: true, conf: 'background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0', preload: JEMALLOC, flags: false },
    { name: 'PORTCULLIS_MALLOC=system', env: { PORTCULLIS_MALLOC: 'system' }, jemalloc: false, conf: undefined, preload: undefined, flags: true },
    { name: 'LD_PRELOAD set by the environment stays as it is', env: { LD_PRELOAD: libm }, jemalloc: false, conf: undefined, preload: libm, flags: true },
  ];
  for (const c of cases) {
    const gw = await spawnGateway(config(''), { env: { LD_PRELOAD: '', MALLOC_CONF: '', MALLOC_ARENA_MAX: '', PORTCULLIS_MALLOC: '', ...c.env } });
    const pid = gw.child.pid!;
    t.equal(mapped(pid), c.jemalloc, `${c.name}: jemalloc ${c.jemalloc ? '' : 'not '}mapped in the serving process`);
    t.equal(envOf(pid, 'LD_PRELOAD') || undefined, c.preload, `${c.name}: LD_PRELOAD`);
    t.equal(envOf(pid, 'MALLOC_CONF') || undefined, c.conf, `${c.name}: MALLOC_CONF`);
    if (c.jemalloc) t.equal(envOf(pid, 'MALLOC_ARENA_MAX') || undefined, undefined, `${c.name}: no glibc arena bound`);
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    t.equal(argv.includes('--max-semi-space-size=4'), c.flags, `${c.name}: the V8 flags ${c.flags ? '' : 'not '}added`);
    t.equal(await status(`${gw.url}/slow/0`), 200, `${c.name}: and it serves`);
    await gw.stop();
  }
  // Checked before anything else: with LD_PRELOAD set, and with no flags to add, too.
  for (const extra of [{}, { LD_PRELOAD: libm, PORTCULLIS_NODE_FLAGS: '' }]) {
    const env: Record<string, string | undefined> = { ...process.env, PORTCULLIS_NODE_FLAGS: undefined, LD_PRELOAD: undefined, ...extra, PORTCULLIS_MALLOC: '/nonexistent/libjemalloc.so.2' };
    const missing = spawnSync(process.execPath, [BIN, 'serve', '-c', '/nonexistent.yaml'], { env, encoding: 'utf8' });
    t.equal(missing.status, 2, `a PORTCULLIS_MALLOC that names no file: exit 2 (${JSON.stringify(extra)})`);
    t.match(missing.stderr, /PORTCULLIS_MALLOC=\/nonexistent\/libjemalloc\.so\.2: no such file/, 'and says so');
  }
});
