import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocketServer } from 'ws';

export interface Seen {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  rawHeaders: string[];
  bodyBytes: number;
}

/**
 * A real upstream on 127.0.0.1:0 that records every request it receives and answers
 * 200 with a JSON echo. `/slow/<ms>` waits before answering; `/ws` accepts websockets
 * and echoes messages, recording the handshake.
 */
export async function startUpstream(): Promise<{ url: string; port: number; seen: Seen[]; stats: { aborted: number }; server: http.Server; close(): Promise<void> }> {
  const seen: Seen[] = [];
  const stats = { aborted: 0 };
  const server = http.createServer((req, res) => {
    res.on('close', () => { if (!res.writableFinished) stats.aborted++; });
    let bodyBytes = 0;
    req.on('data', (c: Buffer) => { bodyBytes += c.length; });
    req.on('end', () => {
      seen.push({ method: req.method!, url: req.url!, headers: req.headers, rawHeaders: req.rawHeaders, bodyBytes });
      const slow = /^\/slow\/(\d+)/.exec(req.url!);
      const send = () => {
        if (res.destroyed) return;
        if (req.url!.startsWith('/cut/')) {
          // Headers and part of the body, then the connection dies.
          res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': 1_000_000 });
          res.write(Buffer.alloc(1000, 1), () => setTimeout(() => res.socket?.destroy(), 20));
          return;
        }
        if (req.url!.startsWith('/big/')) {
          const n = Number(req.url!.slice(5));
          res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': n });
          const chunk = Buffer.alloc(65536, 1);
          let left = n;
          const pump = () => {
            while (left > 0) {
              const c = left >= chunk.length ? chunk : chunk.subarray(0, left);
              left -= c.length;
              if (!res.write(c)) return void res.once('drain', pump);
            }
            res.end();
          };
          pump();
          return;
        }
        const body = JSON.stringify({ url: req.url, bodyBytes });
        res.writeHead(200, { 'content-type': 'application/json', 'x-upstream': 'yes' });
        res.end(body);
      };
      if (slow) setTimeout(send, Number(slow[1]));
      else send();
    });
  });
  const wss = new WebSocketServer({ server, path: '/ws' });
  wss.on('connection', (sock, req) => {
    seen.push({ method: 'WS', url: req.url!, headers: req.headers, rawHeaders: req.rawHeaders, bodyBytes: 0 });
    sock.on('message', (m) => sock.send(`echo:${m.toString()}`));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    seen,
    stats,
    server,
    close: () =>
      new Promise<void>((r) => {
        for (const c of wss.clients) c.terminate();
        wss.close();
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
