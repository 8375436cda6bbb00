// The upstream every target forwards to: the smallest useful node:http server, answering
// every request with a short JSON body over keep-alive connections. `/echo` answers with
// the request headers it received, so the benchmark can check what each target forwards.
import http from 'node:http';

const body = Buffer.from('{"ok":true}');
const server = http.createServer((req, res) => {
  // Consume any request body before answering so the connection stays reusable.
  req.resume();
  if (req.url === '/echo' || req.url.endsWith('/echo')) {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(req.headers));
    return;
  }
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length });
  res.end(body);
});
server.keepAliveTimeout = 65_000;
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(JSON.stringify({ port: server.address().port }) + '\n');
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
