// The floor for any proxying gateway in Node: http-proxy-3 passing requests through with a
// keep-alive agent (the same agent settings Portcullis uses), and nothing else. With a
// second argument `fetch`, the same passthrough on http-proxy-3's fetch path over an undici
// dispatcher with as many keep-alive connections, so the two engines are measured side by side.
import http from 'node:http';
import { ProxyServer } from 'http-proxy-3';
import { Agent as UndiciAgent, fetch as undiciFetch } from 'undici';

const target = new URL(process.argv[2]);
const fetchPath = process.argv[3] === 'fetch';
const agent = new http.Agent({ keepAlive: true, maxSockets: 256, maxFreeSockets: 64, scheduling: 'lifo' });
const proxy = fetchPath
  ? new ProxyServer({ target, xfwd: false, fetch: undiciFetch, fetchOptions: { requestOptions: { dispatcher: new UndiciAgent({ connections: 256, keepAliveTimeout: 60_000 }) } } })
  : new ProxyServer({ target, agent, xfwd: false });
proxy.on('error', (_err, _req, res) => {
  if (res && !res.headersSent && typeof res.writeHead === 'function') res.writeHead(502);
  res?.end?.();
});
const server = http.createServer((req, res) => proxy.web(req, res));
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(JSON.stringify({ port: server.address().port }) + '\n');
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
