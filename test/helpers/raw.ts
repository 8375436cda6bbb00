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
