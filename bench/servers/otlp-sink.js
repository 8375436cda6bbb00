// A stand-in OTLP/HTTP collector for the tracing target: reads every export, answers 200
// at once and counts what it got. `GET /stats` says how many exports and bytes arrived.
import http from 'node:http';

let posts = 0;
let bytes = 0;
const server = http.createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/stats') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ posts, bytes }));
    return;
  }
  req.on('data', (c) => { bytes += c.length; });
  req.on('end', () => {
    posts++;
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{}');
  });
});
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(JSON.stringify({ port: server.address().port }) + '\n');
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
