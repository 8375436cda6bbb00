import net from 'node:net';
import type { AddressInfo } from 'node:net';

/** One request as the raw upstream framed it. */
export interface RawSeen {
  /** Index of the connection it came on. */
  conn: number;
  requestLine: string;
  /** Header lines exactly as received (name: value). */
  headerLines: string[];
  body: Buffer;
  /** Date.now() when the request was framed complete. */
  at: number;
}

export interface RawUpstream {
  port: number;
  url: string;
  /** Every byte received, per connection, in order. */
  readonly bytes: Buffer[];
  /** Requests framed so far (head + body complete). */
  readonly requests: RawSeen[];
  /** All bytes received on every connection, as latin1 text. */
  text(): string;
  /** A bookmark of how much each connection has received so far. */
  mark(): number[];
  /** The bytes every connection received after `mark`, as latin1 text (connection by connection). */
  textSince(mark: readonly number[]): string;
  close(): Promise<void>;
}

export interface RawUpstreamOptions {
  /** Runs before a request is answered (the upstream's own side effects, e.g. a logout). */
  onRequest?: (req: RawSeen) => void | Promise<void>;
}

/**
 * An upstream that is a bare TCP server: it records exactly the bytes the gateway sends
 * and frames requests itself with a strict, minimal HTTP/1.1 reader (Content-Length or
 * chunked), answering each with 200 and a small JSON body. It is a second, independent
 * opinion on where each request ends: a smuggled request would show up here as one more
 * request line, whatever Node's parser thought.
 */
export async function startRawUpstream(options: RawUpstreamOptions = {}): Promise<RawUpstream> {
  const bytes: Buffer[] = [];
  const requests: RawSeen[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((sock) => {
    const conn = bytes.length;
    bytes.push(Buffer.alloc(0));
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.on('error', () => sock.destroy());
    let buf = Buffer.alloc(0);
    // Answers go out in request order even when the hook takes its time.
    let answered: Promise<void> = Promise.resolve();
    sock.on('data', (d: Buffer) => {
      bytes[conn] = Buffer.concat([bytes[conn]!, d]);
      buf = Buffer.concat([buf, d]);
      for (;;) {
        const r = frame(buf);
        if (r === 'incomplete') return;
        if (r === 'invalid') {
          sock.end('HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
          return;
        }
        buf = buf.subarray(r.consumed);
        const seen: RawSeen = { conn, requestLine: r.requestLine, headerLines: r.headerLines, body: r.body, at: Date.now() };
        requests.push(seen);
        const body = JSON.stringify({ n: requests.length, line: r.requestLine, bodyBytes: r.body.length });
        // A response to HEAD has no body (RFC 9110 §9.3.2), or the proxy's next read would start in it.
        const head = r.requestLine.startsWith('HEAD ');
        const answer = `HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nx-raw-upstream: yes\r\n\r\n${head ? '' : body}`;
        const hook = options.onRequest;
        if (hook === undefined) sock.write(answer);
        else answered = answered.then(() => hook(seen)).then(() => void sock.write(answer), () => void sock.destroy());
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    bytes,
    requests,
    text: () => Buffer.concat(bytes).toString('latin1'),
    mark: () => bytes.map((b) => b.length),
    textSince: (mark) => Buffer.concat(bytes.map((b, i) => b.subarray(mark[i] ?? 0))).toString('latin1'),
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

type Framed = { consumed: number; requestLine: string; headerLines: string[]; body: Buffer } | 'incomplete' | 'invalid';

/** Frames one request at the start of `buf`; strict: CRLF only, one framing header, no obs-fold. */
function frame(buf: Buffer): Framed {
  const end = buf.indexOf('\r\n\r\n');
  if (end === -1) return buf.length > 65536 ? 'invalid' : 'incomplete';
  const head = buf.subarray(0, end).toString('latin1');
  const lines = head.split('\r\n');
  const requestLine = lines[0]!;
  if (!/^[A-Z]+ \S+ HTTP\/1\.[01]$/.test(requestLine)) return 'invalid';
  const headerLines = lines.slice(1);
  let length: number | undefined;
  let chunked = false;
  for (const l of headerLines) {
    if (/^[ \t]/.test(l) || l.includes('\n') || !/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+:/.test(l)) return 'invalid';
    const name = l.slice(0, l.indexOf(':')).toLowerCase();
    const value = l.slice(l.indexOf(':') + 1).trim();
    if (name === 'content-length') {
      if (length !== undefined || !/^\d+$/.test(value)) return 'invalid';
      length = Number(value);
    }
    if (name === 'transfer-encoding') {
      if (chunked || value.toLowerCase() !== 'chunked') return 'invalid';
      chunked = true;
    }
  }
  if (chunked && length !== undefined) return 'invalid';
  let at = end + 4;
  if (chunked) {
    const parts: Buffer[] = [];
    for (;;) {
      const eol = buf.indexOf('\r\n', at);
      if (eol === -1) return 'incomplete';
      const sizeText = buf.subarray(at, eol).toString('latin1').split(';', 1)[0]!;
      if (!/^[0-9A-Fa-f]{1,8}$/.test(sizeText)) return 'invalid';
      const size = parseInt(sizeText, 16);
      at = eol + 2;
      if (size === 0) {
        // Trailers, then the empty line.
        for (;;) {
          const e = buf.indexOf('\r\n', at);
          if (e === -1) return 'incomplete';
          const empty = e === at;
          at = e + 2;
          if (empty) break;
        }
        break;
      }
      if (buf.length < at + size + 2) return 'incomplete';
      if (buf[at + size] !== 0x0d || buf[at + size + 1] !== 0x0a) return 'invalid';
      parts.push(buf.subarray(at, at + size));
      at += size + 2;
    }
    return { consumed: at, requestLine, headerLines, body: Buffer.concat(parts) };
  }
  const n = length ?? 0;
  if (buf.length < at + n) return 'incomplete';
  return { consumed: at + n, requestLine, headerLines, body: buf.subarray(at, at + n) };
}

/**
 * The hardening suites' gateway config over an upstream: `/public/**` public, then
 * `adminPaths` (each `/<path>/**`) for `admin`, then everything else for `basic`. `head` is
 * YAML placed before the routes (extra sections), `log` is silent.
 */
export function publicAdminBasic(upstream: string, o: { head?: string; adminPaths?: readonly string[] } = {}): string {
  const admin = (o.adminPaths ?? []).map((p) => `  - match: { path: "/${p}/**" }\n    minRole: admin\n    upstream: api\n`).join('');
  return `${o.head ?? ''}
upstreams:
  api: { url: "${upstream}", timeout: 2s }
roles: [basic, admin]
log: { level: silent }
routes:
  - match: { path: "/public/**" }
    public: true
    upstream: api
${admin}  - match: { path: "/**" }
    minRole: basic
    upstream: api
`;
}
