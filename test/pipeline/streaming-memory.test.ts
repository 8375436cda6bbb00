import t from 'tap';
import http from 'node:http';
import { startUpstream } from '../helpers/upstream.js';
import { spawnGateway } from '../helpers/spawn.js';

// A 100 MB upload through a gateway process must not grow its resident memory by more
// than a few MB: bodies are piped, never buffered.
const up = await startUpstream();
t.teardown(() => up.close());
const gw = await spawnGateway(`
listen: { host: 127.0.0.1, port: 0 }
admin: { host: 127.0.0.1, port: 0 }
store: { url: "sqlite://memory" }
upstreams: { api: { url: "${up.url}" } }
log: { level: info }
routes:
  - match: { path: "/upload" }
    public: true
    upstream: api
`);
t.teardown(() => gw.stop());

// Node frees socket read buffers only at GC, and V8 lets ~64 MB of such external memory
// accumulate before collecting. So the peak RSS growth of any large transfer sits somewhere
// below that bound, wherever the collector happens to run; what proves streaming is that the
// growth stays under one constant bound, well below the smaller body, whatever the body's
// size. A buffering gateway would grow by at least the body: 100 MB, then 300 MB.
async function peakGrowthMb(bytes: number): Promise<number> {
  const baseline = gw.rssKb();
  let peak = baseline;
  const sampler = setInterval(() => { peak = Math.max(peak, gw.rssKb()); }, 10);
  const res = await upload(gw.port, bytes);
  clearInterval(sampler);
  peak = Math.max(peak, gw.rssKb());
  if (res.status !== 200 || res.body.bodyBytes !== bytes) throw new Error(`upload of ${bytes} bytes: status ${res.status}, upstream got ${res.body.bodyBytes}`);
  return (peak - baseline) / 1024;
}

t.test('large uploads stream: gateway memory does not grow with the body', async (t) => {
  await upload(gw.port, 1 << 20); // warm up pools and JIT
  const g100 = await peakGrowthMb(100 * 1024 * 1024);
  const g300 = await peakGrowthMb(300 * 1024 * 1024);
  t.comment(`gateway RSS peak growth: 100 MB upload ${g100.toFixed(1)} MB, 300 MB upload ${g300.toFixed(1)} MB`);
  // The collector's threshold puts growth anywhere up to ~80 MB; a buffering gateway grows by
  // at least the body. One bound, the smaller body, holds for both sizes.
  const bound = 100;
  t.ok(g100 < bound, `100 MB upload grew RSS by ${g100.toFixed(1)} MB (< ${bound} MB: less than the body)`);
  t.ok(g300 < bound, `300 MB upload grew RSS by ${g300.toFixed(1)} MB (< ${bound} MB: the same bound, a third of the body)`);
});

function upload(port: number, bytes: number): Promise<{ status: number; body: { bodyBytes: number } }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/upload', headers: { 'content-length': bytes } }, (res) => {
      let s = '';
      res.on('data', (d) => (s += d));
      res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(s) }));
    });
    req.on('error', reject);
    const chunk = Buffer.alloc(64 * 1024, 3);
    let left = bytes;
    const pump = () => {
      while (left > 0) {
        const c = left >= chunk.length ? chunk : chunk.subarray(0, left);
        left -= c.length;
        if (!req.write(c)) return void req.once('drain', pump);
      }
      req.end();
    };
    pump();
  });
}
