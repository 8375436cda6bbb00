import type http from 'node:http';
import type { Dispatcher } from 'undici';

/** Response headers that describe the upstream's connection (and its framing): never forwarded. */
const HOP_BY_HOP: ReadonlySet<string> = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'proxy-authenticate']);
/** Trailer fields that would restate framing or routing: never forwarded as trailers. */
const NOT_TRAILERS: ReadonlySet<string> = new Set([...HOP_BY_HOP, 'content-length', 'host', 'content-encoding', 'content-type', 'content-range']);

/** What one request sends upstream, besides the client's request line and body. */
export interface UpstreamRequest {
  /**
   * The upstream's headers as undici's flat `[name, value, …]` list, without
   * `Transfer-Encoding`: undici states a body's framing itself from the body it is given
   * (a body of unknown length goes chunked, as it arrived; a `Content-Length` it writes
   * and checks the body against).
   */
  readonly headers: string[];
  /** Ours, for the client's answer. */
  readonly requestId: string;
  readonly timeout: number;
  /** The TLS server name for an https upstream (the configured one, never the request's Host). */
  readonly sni: string | undefined;
  /**
   * Headers of ours for the client's answer (RateLimit), in the list `writeHead` takes —
   * set on the response beforehand they would send Node down its slower merging path.
   * An upstream header of the same name wins, as it would there.
   */
  readonly answerHeaders?: Record<string, string> | undefined;
}

/** Why a dispatched request failed: a timeout (504) or an unreachable upstream (502). */
export type DispatchFailure = (err: Error, timedOut: boolean) => void;

/** The upstream went quiet past its timeout: no byte either way (or waited in the pool that long). */
class UpstreamIdle extends Error {
  override readonly name = 'UpstreamIdle';
}

/** A dispatched request that no longer wants the upstream (timed out, or its client left) before undici sent it. */
class Withdrawn extends Error {
  override readonly name = 'Withdrawn';
}

function onIdle(x: Exchange): void {
  // Held back by our own client (its response is not drained): not the upstream's silence.
  if (x.paused) x.timer.refresh();
  else x.cancel(new UpstreamIdle('upstream idle past its timeout'), true);
}

/**
 * One proxied request as undici's dispatch handler. Its upstream timeout is one native
 * timer for the whole exchange — from dispatch (time queued for a connection and the
 * connect included) to the end of the answer — refreshed by every byte either way, so it
 * measures idleness as a socket timeout would, across the queue as well. undici's own
 * headers/body timeouts run on a coarse shared clock (up to ~0.5 s late) and are off.
 */
class Exchange {
  readonly timer: NodeJS.Timeout;
  paused = false;
  private abort: ((err?: Error) => void) | undefined;
  private started = false;
  private done = false;
  /** Set when the exchange ended before undici handed it a connection: it is withdrawn there. */
  private withdrawn: Error | undefined;
  private readonly onClientGone = () => {
    if (!this.res.writableFinished || !this.req.complete) this.cancel(new Error('client closed the connection'), false);
  };

  private readonly req: http.IncomingMessage;
  private readonly res: http.ServerResponse;
  private readonly requestId: string;
  private readonly fail: DispatchFailure;
  private readonly answerHeaders?: Record<string, string>;
  constructor(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    requestId: string,
    timeout: number,
    fail: DispatchFailure,
    answerHeaders?: Record<string, string>,
  ) {
    this.req = req;
    this.res = res;
    this.requestId = requestId;
    this.fail = fail;
    this.answerHeaders = answerHeaders;
    this.timer = setTimeout(onIdle, timeout, this);
    res.once('close', this.onClientGone);
  }

  /** Ends the exchange from our side: a timeout (504 when nothing was answered yet) or a client gone. */
  cancel(err: Error, timedOut: boolean): void {
    if (this.done) return;
    if (this.abort !== undefined) {
      this.abort(err);
      return;
    }
    // Still queued in the pool: answer now; undici drops it when it would have sent it.
    this.withdrawn = err;
    this.finish();
    if (timedOut && !this.res.headersSent) this.fail(err, true);
  }

  private finish(): void {
    this.done = true;
    clearTimeout(this.timer);
    this.res.off('close', this.onClientGone);
  }

  onConnect(abort: (err?: Error) => void): void {
    // Throwing here makes undici fail the request without touching the connection.
    if (this.withdrawn !== undefined) throw new Withdrawn(this.withdrawn.message);
    this.abort = abort;
  }

  onBodySent(): void {
    this.timer.refresh();
  }

  onHeaders(status: number, raw: Buffer[], resume: () => void, statusText: string): boolean {
    this.timer.refresh();
    if (status < 200) return true;
    this.started = true;
    const { req, res } = this;
    const keepAlive = req.httpVersion !== '1.0' && (res as { shouldKeepAlive?: boolean }).shouldKeepAlive === true;
    res.writeHead(status, statusText || undefined, clientResponseHeaders(raw, keepAlive, this.requestId, this.answerHeaders));
    res.on('drain', () => {
      this.paused = false;
      this.timer.refresh();
      resume();
    });
    return true;
  }

  onData(chunk: Buffer): boolean {
    this.timer.refresh();
    const more = this.res.write(chunk);
    if (!more) this.paused = true;
    return more;
  }

  onComplete(trailers: Buffer[] | null): void {
    this.finish();
    const res = this.res;
    if (trailers && trailers.length !== 0 && (res as { chunkedEncoding?: boolean }).chunkedEncoding) res.addTrailers(trailerList(trailers));
    res.end();
  }

  onError(err: Error): void {
    if (this.done) return;
    this.finish();
    // Mid-answer, the client cannot be told: cut its response so it does not wait for the rest.
    if (this.started || this.res.headersSent) this.res.destroy();
    else this.fail(err, err instanceof UpstreamIdle);
  }
}

/**
 * Proxies one request through an undici dispatcher (a Pool per upstream): the body streams
 * up as it arrives and the answer streams down, each side pausing the other when it is
 * behind; nothing is buffered. The client's answer gets the upstream's status and headers
 * without its hop-by-hop ones, its trailers when the answer is chunked, and our own
 * `Connection` and request id. A client that goes away ends the upstream request too (and
 * frees its connection).
 */
export function dispatchTo(pool: Dispatcher, req: http.IncomingMessage, res: http.ServerResponse, up: UpstreamRequest, fail: DispatchFailure): void {
  const h = req.headers;
  // undici frames a body it sees whole (already ended) by Content-Length; handed as an
  // iterator it cannot measure, a chunked body goes up chunked, as it arrived.
  const chunked = h['transfer-encoding'] !== undefined;
  const hasBody = chunked || h['content-length'] !== undefined;
  pool.dispatch(
    {
      origin: undefined,
      path: req.url ?? '/',
      method: req.method as Dispatcher.HttpMethod,
      headers: up.headers,
      body: hasBody ? (chunked ? req[Symbol.asyncIterator]() : req) : null,
      headersTimeout: 0,
      bodyTimeout: 0,
      servername: up.sni,
    } as Dispatcher.DispatchOptions,
    new Exchange(req, res, up.requestId, up.timeout, fail, up.answerHeaders) as unknown as Dispatcher.DispatchHandler,
  );
}

/**
 * The headers the client gets with a proxied response, as a flat `[name, value, …]` list
 * for `writeHead`: the upstream's, without its hop-by-hop headers and those its
 * Connection header names, with our own Connection (per the client's connection) and
 * request id. Repeated headers (Set-Cookie) stay repeated.
 */
export function clientResponseHeaders(raw: Buffer[], keepAlive: boolean, requestId: string | undefined, ours?: Record<string, string>): string[] {
  let listed: string[] | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    if (raw[i]!.length === 10 && raw[i]!.toString('latin1').toLowerCase() === 'connection') {
      listed = (listed ?? []).concat(raw[i + 1]!.toString('latin1').toLowerCase().split(',').map((n) => n.trim()));
    }
  }
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toString('latin1').toLowerCase();
    if (HOP_BY_HOP.has(name) || listed?.includes(name) || (name === 'x-request-id' && requestId !== undefined)) continue;
    out.push(name, raw[i + 1]!.toString('latin1'));
  }
  if (ours !== undefined) {
    const upstreams = out.length;
    for (const name in ours) {
      let sent = false;
      for (let i = 0; i < upstreams && !sent; i += 2) sent = out[i] === name;
      if (!sent) out.push(name, ours[name]!);
    }
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
