import net from 'node:net';

export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
  raw: string;
}

/** Sends bytes exactly as given and reads one response (the server closes or sends Content-Length bytes). */
export function rawRequest(port: number, text: string, timeoutMs = 3000): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    let buf = '';
    const timer = setTimeout(() => { sock.destroy(); reject(new Error(`no response within ${timeoutMs} ms; got ${JSON.stringify(buf)}`)); }, timeoutMs);
    const tryParse = (final: boolean) => {
      const end = buf.indexOf('\r\n\r\n');
      if (end === -1) return final ? finish() : undefined;
      const head = buf.slice(0, end).split('\r\n');
      const headers: Record<string, string> = {};
      for (const l of head.slice(1)) { const i = l.indexOf(':'); headers[l.slice(0, i).toLowerCase()] = l.slice(i + 1).trim(); }
      const len = headers['content-length'];
      const body = buf.slice(end + 4);
      if (len !== undefined && Buffer.byteLength(body) >= Number(len)) return finish();
      if (final) finish();
    };
    const finish = () => {
      clearTimeout(timer);
      sock.destroy();
      const end = buf.indexOf('\r\n\r\n');
      const head = (end === -1 ? buf : buf.slice(0, end)).split('\r\n');
      const headers: Record<string, string> = {};
      for (const l of head.slice(1)) { const i = l.indexOf(':'); if (i > 0) headers[l.slice(0, i).toLowerCase()] = l.slice(i + 1).trim(); }
      resolve({ status: Number(head[0]?.split(' ')[1] ?? 0), headers, body: end === -1 ? '' : buf.slice(end + 4), raw: buf });
    };
    sock.on('data', (d) => { buf += d.toString('latin1'); tryParse(false); });
    sock.on('end', () => tryParse(true));
    sock.on('error', () => tryParse(true));
    sock.write(Buffer.from(text, 'latin1'));
  });
}

/** A plain GET with the given target and extra header lines. */
export function rawGet(port: number, target: string, headers: string[] = [], method = 'GET'): Promise<RawResponse> {
  return rawRequest(port, `${method} ${target} HTTP/1.1\r\nHost: localhost\r\n${headers.map((h) => h + '\r\n').join('')}Connection: close\r\n\r\n`);
}

export interface ExchangeOptions {
  /** Pause between chunks, in ms. */
  gapMs?: number;
  /** How long the gateway may stay quiet before the exchange ends, in ms (default 400). */
  idleMs?: number;
  /**
   * How long to wait for the first byte of an answer, in ms (default: `idleMs`). A longer wait
   * keeps a slow first answer on a loaded machine from reading as no answer at all.
   */
  firstMs?: number;
}

export interface Exchanged {
  responses: Parsed[];
  closed: boolean;
  raw: string;
}

export interface Parsed {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/**
 * Writes `chunks` (latin1; with `gapMs` between them), then reads until the gateway closes
 * the connection or stays quiet for `idleMs`. Returns every complete response, in order.
 */
export function exchangeRaw(port: number, chunks: string | string[], opts: ExchangeOptions = {}): Promise<Exchanged> {
  const parts = typeof chunks === 'string' ? [chunks] : chunks;
  return new Promise((resolve) => {
    const sock = net.connect(port, '127.0.0.1');
    let buf = '';
    let closed = false;
    let idle: NodeJS.Timeout | undefined;
    const done = () => {
      clearTimeout(idle);
      sock.destroy();
      resolve({ responses: parseResponses(buf), closed, raw: buf });
    };
    const arm = () => {
      clearTimeout(idle);
      idle = setTimeout(done, buf === '' ? Math.max(opts.firstMs ?? 0, opts.idleMs ?? 400) : (opts.idleMs ?? 400));
    };
    sock.on('data', (d) => {
      buf += d.toString('latin1');
      arm();
    });
    sock.on('close', () => {
      closed = true;
      done();
    });
    sock.on('error', () => undefined);
    sock.on('connect', async () => {
      for (let i = 0; i < parts.length; i++) {
        if (i > 0 && opts.gapMs) await new Promise((r) => setTimeout(r, opts.gapMs));
        if (sock.destroyed) return;
        sock.write(Buffer.from(parts[i]!, 'latin1'));
      }
      arm();
    });
  });
}

export function parseResponses(buf: string): Parsed[] {
  const out: Parsed[] = [];
  let at = 0;
  while (at < buf.length) {
    const end = buf.indexOf('\r\n\r\n', at);
    if (end === -1) break;
    const head = buf.slice(at, end).split('\r\n');
    const headers: Record<string, string> = {};
    for (const l of head.slice(1)) {
      const i = l.indexOf(':');
      if (i > 0) headers[l.slice(0, i).toLowerCase()] = l.slice(i + 1).trim();
    }
    const len = Number(headers['content-length'] ?? 0);
    const body = buf.slice(end + 4, end + 4 + len);
    out.push({ status: Number(head[0]!.split(' ')[1]), headers, body });
    at = end + 4 + len;
  }
  return out;
}

