import type http from 'node:http';
import type { Dispatcher } from 'undici';

/** Response headers that describe the upstream's connection (and its framing): never forwarded. */
const HOP_BY_HOP: ReadonlySet<string> = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'proxy-authenticate']);
/** Trailer fields that would restate framing or routing: never forwarded as trailers. */
const NOT_TRAILERS: ReadonlySet<string> = new Set([...HOP_BY_HOP, 'content-length', 'host', 'content-encoding', 'content-type', 'content-range']);

/** Why a dispatched request failed: a timeout (504) or an unreachable upstream (502). */
export type DispatchFailure = (err: Error, timedOut: boolean) => void;

/** undici's codes for an upstream that went quiet past its timeout (not a connect timeout). */
function isTimeout(err: Error): boolean {
  const code = (err as { code?: string }).code;
  return code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT';
}

/**
 * The headers the upstream receives, as undici's flat `[name, value, …]` list. undici
 * states a request's framing itself from the body it is given, so `Transfer-Encoding`
 * stays out (a body of unknown length goes chunked, as it arrived) and `Content-Length`
 * goes in (undici writes that length and checks the body against it).
 */
function headerList(h: http.OutgoingHttpHeaders): string[] {
  const out: string[] = [];
  for (const name in h) {
    if (name === 'transfer-encoding') continue;
    const v = h[name];
    if (v === undefined) continue;
    if (Array.isArray(v)) for (const one of v) out.push(name, one);
    else out.push(name, typeof v === 'string' ? v : String(v));
  }
  return out;
}

/**
 * Proxies one request through an undici dispatcher (a Pool per upstream): the body streams
 * up as it arrives and the answer streams down, each side pausing the other when it is
 * behind; nothing is buffered. The client's answer gets the upstream's status and headers
 * without its hop-by-hop ones, its trailers when the answer is chunked, and our own
 * `Connection` and request id.
 */
export function dispatchTo(pool: Dispatcher, req: http.IncomingMessage, res: http.ServerResponse, up: { readonly timeout: number; readonly sni: string | undefined }, fail: DispatchFailure): void {
  const h = req.headers;
  // undici frames a body it sees whole (already ended) by Content-Length; handed as an
  // iterator it cannot measure, a chunked body goes up chunked, as it arrived.
  const chunked = h['transfer-encoding'] !== undefined;
  const hasBody = chunked || h['content-length'] !== undefined;
  const requestId = h['x-request-id'];
  let abort: ((err?: Error) => void) | undefined;
  let started = false;
  // A client that goes away ends the upstream request too (and frees its connection).
  const onClientGone = () => {
    if (!res.writableFinished || !req.complete) abort?.(new Error('client closed the connection'));
  };
  res.once('close', onClientGone);
  const handler: Dispatcher.DispatchHandler = {
    onConnect(a) {
      abort = a;
    },
    onHeaders(status, raw, resume, statusText) {
      if (status < 200) return true;
      started = true;
      const keepAlive = req.httpVersion !== '1.0' && (res as { shouldKeepAlive?: boolean }).shouldKeepAlive === true;
      res.writeHead(status, statusText || undefined, responseHeaders(raw as unknown as Buffer[], keepAlive, typeof requestId === 'string' ? requestId : undefined));
      res.on('drain', () => resume());
      return true;
    },
    onData(chunk) {
      return res.write(chunk);
    },
    onComplete(trailers) {
      res.off('close', onClientGone);
      const t = trailers as unknown as Buffer[] | null;
      if (t && t.length !== 0 && (res as { chunkedEncoding?: boolean }).chunkedEncoding) res.addTrailers(trailerList(t));
      res.end();
    },
    onError(err) {
      res.off('close', onClientGone);
      // Mid-answer, the client cannot be told: cut its response so it does not wait for the rest.
      if (started || res.headersSent) res.destroy();
      else fail(err, isTimeout(err));
    },
  };
  pool.dispatch(
    {
      origin: undefined,
      path: req.url ?? '/',
      method: req.method as Dispatcher.HttpMethod,
      headers: headerList(h),
      body: hasBody ? (chunked ? req[Symbol.asyncIterator]() : req) : null,
      headersTimeout: up.timeout,
      bodyTimeout: up.timeout,
      servername: up.sni,
    } as Dispatcher.DispatchOptions,
    handler,
  );
}

function responseHeaders(raw: Buffer[], keepAlive: boolean, requestId: string | undefined): string[] {
  let listed: string[] | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.length === 10 && raw[i]!.toString('latin1').toLowerCase() === 'connection') {
      listed = (listed ?? []).concat(raw[i + 1]!.toString('latin1').toLowerCase().split(',').map((n) => n.trim()));
    }
  }
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toString('latin1').toLowerCase();
    if (HOP_BY_HOP.has(name) || listed?.includes(name)) continue;
    out.push(name, raw[i + 1]!.toString('latin1'));
  }
  out.push('connection', keepAlive ? 'keep-alive' : 'close');
  if (requestId !== undefined) out.push('x-request-id', requestId);
  return out;
}

function trailerList(raw: Buffer[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toString('latin1').toLowerCase();
    if (!NOT_TRAILERS.has(name)) out[name] = raw[i + 1]!.toString('latin1');
  }
  return out;
}
