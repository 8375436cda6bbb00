// The floor for the undici engine: a passthrough on undici's dispatcher API (one Pool,
// `dispatch`, bodies streamed both ways), and nothing else: no header rules, no decision.
import http from 'node:http';
import { Pool } from 'undici';

const target = new URL(process.argv[2]);
const pool = new Pool(target.origin, { connections: 256, pipelining: 1 });
const HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'proxy-connection']);

const server = http.createServer((req, res) => {
  const headers = [];
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) if (!HOP.has(raw[i].toLowerCase())) headers.push(raw[i], raw[i + 1]);
  const body = req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined ? req : null;
  pool.dispatch({ path: req.url, method: req.method, headers, body }, {
    onConnect() {},
    onHeaders(status, rawRes, resume) {
      const out = [];
      for (let i = 0; i < rawRes.length; i += 2) {
        const name = rawRes[i].toString('latin1');
        if (!HOP.has(name.toLowerCase())) out.push(name, rawRes[i + 1].toString('latin1'));
      }
      res.writeHead(status, out);
      res.on('drain', resume);
      return true;
    },
    onData(chunk) {
      return res.write(chunk);
    },
    onComplete() {
      res.end();
    },
    onError() {
      if (!res.headersSent) res.writeHead(502);
      res.end();
    },
  });
});
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(JSON.stringify({ port: server.address().port }) + '\n');
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
