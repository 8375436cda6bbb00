import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { randomUUID } from 'node:crypto';
import { GatewayError, respond, respondOnSocket, toGatewayError } from '../http/problem.js';
import { identityHeaders, upstreamHeaders } from '../identity/headers.js';
import { upstreamError, type Proxy, type Upstream } from '../proxy/upstreams.js';
import { isLimited, withLimits } from '../limits/apply.js';
import type { RateLimiter } from '../limits/types.js';
import type { RevocationCheck } from '../revocation/check.js';
import { traceOf, traceRequest } from '../ops/tracing.js';
import type { PipelineObserver } from '../ops/record.js';
import { CLOSE_CONNECTION, decide, type Decision, type RequestFacts } from './decide.js';
import type { Runtime } from './runtime.js';

/** Handlers for `/.portcullis/*` endpoints other than `verify` (refresh, logout). */
export type EndpointHandler = (req: IncomingMessage, res: ServerResponse, requestId: string, rt: Runtime) => Promise<void>;

const ENDPOINT_PREFIX = '/.portcullis/';
const VERIFY = ENDPOINT_PREFIX + 'verify';

/** How a request ended, for {@link Pipeline.record}. */
interface Outcome {
  readonly err?: GatewayError | undefined;
  readonly d?: Decision | undefined;
  readonly upstream?: string | undefined;
  readonly authMs: number;
  readonly status?: number | undefined;
  readonly upstreamMs?: number | undefined;
  /** Route label when it is not the decision's (the gateway's own endpoints). */
  readonly route?: string | undefined;
}

/**
 * Set on a socket once a request on it was refused for ambiguous framing. Requests Node
 * already parsed behind it (pipelined in the same packet) or parses later are never
 * processed: they were framed by the very reading that was refused.
 */
const REFUSED = Symbol('portcullis.refusedConnection');
type Marked = { [REFUSED]?: true };

/** RFC 9112 §6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing. */
function framingFault(req: IncomingMessage): GatewayError | undefined {
  if (req.headers['transfer-encoding'] === undefined || req.httpVersionMajor !== 1 || req.httpVersionMinor !== 0) return undefined;
  return new GatewayError('bad-request', 'Transfer-Encoding is not allowed in an HTTP/1.0 request.', { headers: CLOSE_CONNECTION });
}

/**
 * Only websocket handshakes are tunnelled, and only bodiless ones (RFC 6455 §4.1: a GET).
 * Any other upgrade — `h2c` above all — would hand the client a raw connection to the
 * upstream on which further requests pass unseen; a body on a handshake is bytes that
 * would reach the upstream outside any request the gateway framed.
 */
function upgradeFault(req: IncomingMessage): GatewayError | undefined {
  const h = req.headers;
  if (req.method !== 'GET' || h.upgrade?.toLowerCase() !== 'websocket') {
    return new GatewayError('bad-request', 'Only websocket upgrades (GET with "Upgrade: websocket") are proxied.', { headers: CLOSE_CONNECTION });
  }
  if (h['transfer-encoding'] !== undefined || (h['content-length'] !== undefined && h['content-length'] !== '0')) {
    return new GatewayError('bad-request', 'A websocket handshake has no body.', { headers: CLOSE_CONNECTION });
  }
  return framingFault(req);
}

function facts(req: IncomingMessage, target: string, method: string): RequestFacts {
  return { method, target, headers: req.headers, rawHeaders: req.rawHeaders, peerIp: req.socket.remoteAddress ?? '' };
}

/** The request path: decide, then proxy, verify or refuse. Holds no config of its own. */
export class Pipeline {
  private runtime: Runtime;
  private readonly endpoints = new Map<string, EndpointHandler>();

  constructor(
    runtime: Runtime,
    private readonly revocation: RevocationCheck,
    private readonly proxy: Proxy,
    private readonly observer: PipelineObserver | undefined,
    private readonly limiter?: RateLimiter | undefined,
  ) {
    this.runtime = runtime;
  }

  get current(): Runtime {
    return this.runtime;
  }

  /** Atomically switch to a new runtime; requests in flight keep the one they started with. */
  swap(runtime: Runtime): Runtime {
    const old = this.runtime;
    this.runtime = runtime;
    return old;
  }

  addEndpoint(name: string, handler: EndpointHandler): void {
    this.endpoints.set(ENDPOINT_PREFIX + name, handler);
  }

  readonly handle = (req: IncomingMessage, res: ServerResponse): void => {
    if ((req.socket as Marked)[REFUSED]) {
      // Flushes the refusal already queued on the socket, then closes it.
      req.socket.end();
      return;
    }
    const rt = this.runtime;
    const started = performance.now();
    const requestId = randomUUID();
    traceRequest(req, rt.tracing, started);
    const url = req.url ?? '';
    const fault = framingFault(req);
    if (fault !== undefined) {
      this.refuse(rt, req, res, requestId, fault, started, undefined);
      return;
    }
    if (url.startsWith(ENDPOINT_PREFIX)) {
      this.endpoint(req, res, requestId, rt, started);
      return;
    }
    let d: Decision | Promise<Decision>;
    try {
      d = decide(rt, this.revocation, facts(req, url, req.method ?? ''));
    } catch (err) {
      this.refuse(rt, req, res, requestId, err, started, undefined);
      return;
    }
    if (d instanceof Promise) {
      d.then(
        (ok) => this.forward(req, res, requestId, rt, ok, started),
        (err) => this.refuse(rt, req, res, requestId, err, started, undefined),
      );
    } else this.forward(req, res, requestId, rt, d, started);
  };

  readonly upgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    if ((req.socket as Marked)[REFUSED]) {
      socket.end();
      return;
    }
    const rt = this.runtime;
    const started = performance.now();
    const requestId = randomUUID();
    traceRequest(req, rt.tracing, started);
    socket.on('error', () => socket.destroy());
    const fail = (err: unknown) => {
      const e = toGatewayError(err);
      const authMs = performance.now() - started;
      holdRefusal(rt, e, socket, () => {
        respondOnSocket(socket, e, requestId);
        this.record(req, requestId, started, { err: e, authMs });
      });
    };
    const go = (d: Decision) => withLimits(this.limiter, rt.routeLimits[d.route.index]!, d, () => tunnel(d), fail);
    const tunnel = (d: Decision) => {
      const upstream = rt.routeUpstreams[d.route.index]!;
      req.url = d.path + d.query;
      const headers = upstreamHeaders(req.headers, rt.forward, d.identity, this.forwardCtx(d, req, requestId, true));
      req.headers = headers as IncomingMessage['headers'];
      const open = () => {
        const authMs = performance.now() - started;
        this.proxy.ws(req, socket, head, upstream, (err) => respondOnSocket(socket, upstreamError(err, req, upstream, authMs + started), requestId));
        this.record(req, requestId, started, { d, upstream: upstream.name, authMs, status: 101 });
      };
      if (rt.assertion !== undefined && d.identity !== null) {
        const signed = rt.assertion.signer.sign(d.identity, upstream.name);
        if (typeof signed !== 'string') {
          signed.then((a) => { headers[rt.assertion!.header] = a; open(); }, fail);
          return;
        }
        headers[rt.assertion.header] = signed;
      }
      open();
    };
    const fault = upgradeFault(req);
    if (fault !== undefined) {
      fail(fault);
      return;
    }
    try {
      const d = decide(rt, this.revocation, facts(req, req.url ?? '', req.method ?? ''));
      if (d instanceof Promise) d.then(go, fail);
      else go(d);
    } catch (err) {
      fail(err);
    }
  };

  private forwardCtx(d: Decision, req: IncomingMessage, requestId: string, upgrade: boolean) {
    return {
      clientIp: d.clientIp,
      peerIp: req.socket.remoteAddress ?? '',
      peerTrusted: d.peerTrusted,
      proto: (req.socket as { encrypted?: boolean }).encrypted ? ('https' as const) : ('http' as const),
      requestId,
      upgrade,
      trace: traceOf(req)?.upstream(req.method ?? '', d.route.upstream),
    };
  }

  /**
   * Step 6½: the route's rate limits, for an admitted request. Calls `go` with the headers
   * to add to the answer (none without limits), or refuses 429 / 503.
   */
  private limited(rt: Runtime, req: IncomingMessage, res: ServerResponse, requestId: string, d: Decision, started: number, go: (headers: Record<string, string> | undefined) => void, route?: string): void {
    withLimits(this.limiter, rt.routeLimits[d.route.index]!, d, go, (err) => this.refuse(rt, req, res, requestId, err, started, d, route));
  }

  private forward(req: IncomingMessage, res: ServerResponse, requestId: string, rt: Runtime, d: Decision, started: number): void {
    if (isLimited(rt.routeLimits[d.route.index]!, d.identity)) {
      this.limited(rt, req, res, requestId, d, started, (headers) => {
        if (headers !== undefined) for (const name in headers) res.setHeader(name, headers[name]!);
        this.admitted(req, res, requestId, rt, d, started);
      });
      return;
    }
    this.admitted(req, res, requestId, rt, d, started);
  }

  private admitted(req: IncomingMessage, res: ServerResponse, requestId: string, rt: Runtime, d: Decision, started: number): void {
    const upstream = rt.routeUpstreams[d.route.index]!;
    req.url = d.path + d.query;
    const headers = upstreamHeaders(req.headers, rt.forward, d.identity, this.forwardCtx(d, req, requestId, false));
    // The request id reaches the client with the upstream's response headers (proxy engine).
    req.headers = headers as IncomingMessage['headers'];
    if (rt.assertion !== undefined && d.identity !== null) {
      const signed = rt.assertion.signer.sign(d.identity, upstream.name);
      if (typeof signed !== 'string') {
        signed.then(
          (a) => {
            headers[rt.assertion!.header] = a;
            this.proxyTo(req, res, requestId, d, upstream, started);
          },
          (err) => this.refuse(rt, req, res, requestId, new GatewayError('upstream-unavailable', 'The identity assertion could not be signed.', { cause: err }), started, d),
        );
        return;
      }
      headers[rt.assertion.header] = signed;
    }
    this.proxyTo(req, res, requestId, d, upstream, started);
  }

  private proxyTo(req: IncomingMessage, res: ServerResponse, requestId: string, d: Decision, upstream: Upstream, started: number): void {
    const authMs = performance.now() - started;
    const proxyStart = performance.now();
    let failure: GatewayError | undefined;
    this.proxy.web(req, res, upstream, (err) => {
      failure = respond(res, upstreamError(err, req, upstream, proxyStart), requestId, req.method === 'HEAD');
    });
    if (this.observer) {
      res.once('close', () => this.record(req, requestId, started, { err: failure, d, upstream: upstream.name, authMs, status: res.statusCode, upstreamMs: performance.now() - proxyStart }));
    }
  }

  private refuse(rt: Runtime, req: IncomingMessage, res: ServerResponse, requestId: string, err: unknown, started: number, d: Decision | undefined, route?: string): void {
    const e = toGatewayError(err);
    if (e.headers?.connection === 'close') (req.socket as Marked)[REFUSED] = true;
    // The request body is not wanted; drain it so the connection can be reused.
    else if (!req.complete) req.resume();
    const authMs = performance.now() - started;
    holdRefusal(rt, e, res, () => {
      respond(res, e, requestId, req.method === 'HEAD');
      this.record(req, requestId, started, { err: e, d, authMs, route });
    });
  }

  private endpoint(req: IncomingMessage, res: ServerResponse, requestId: string, rt: Runtime, started: number): void {
    const q = req.url!.indexOf('?');
    const path = q === -1 ? req.url! : req.url!.slice(0, q);
    if (path === VERIFY) {
      this.verify(req, res, requestId, rt, started);
      return;
    }
    const h = this.endpoints.get(path);
    if (h === undefined) {
      this.refuse(rt, req, res, requestId, new GatewayError('route-not-found', `No gateway endpoint ${path}.`), started, undefined);
      return;
    }
    // Logged and counted like a proxied request, under the endpoint's own route label.
    const route = path.slice(1);
    h(req, res, requestId, rt).then(
      () => this.record(req, requestId, started, { authMs: performance.now() - started, status: res.statusCode, route }),
      (err) => this.refuse(rt, req, res, requestId, err, started, undefined, route),
    );
  }

  /** Forward-auth: decide for the original request named in X-Forwarded-* / X-Original-*. */
  private verify(req: IncomingMessage, res: ServerResponse, requestId: string, rt: Runtime, started: number): void {
    const route = VERIFY.slice(1);
    const onErr = (err: unknown) => this.refuse(rt, req, res, requestId, err, started, undefined, route);
    const answer = (d: Decision, headers: Record<string, string>) => {
      res.writeHead(200, headers);
      res.end();
      this.record(req, requestId, started, { d, authMs: performance.now() - started, status: 200, route });
    };
    const onOk = (d: Decision) => this.limited(rt, req, res, requestId, d, started, (limits) => onAdmitted(d, limits), route);
    const onAdmitted = (d: Decision, limits: Record<string, string> | undefined) => {
      const headers: Record<string, string> = { 'x-request-id': requestId, 'cache-control': 'no-store', 'content-length': '0', ...limits };
      if (d.identity === null) return answer(d, headers);
      identityHeaders(headers, rt.forward.names, d.identity);
      if (rt.assertion === undefined) return answer(d, headers);
      const header = rt.assertion.header;
      const signed = rt.assertion.signer.sign(d.identity, d.route.upstream);
      if (typeof signed === 'string') {
        headers[header] = signed;
        return answer(d, headers);
      }
      signed.then((a) => { headers[header] = a; answer(d, headers); }, onErr);
    };
    const original = originalRequest(req.headers);
    if (typeof original === 'string') {
      onErr(new GatewayError('bad-request', original));
      return;
    }
    const { method, target, host } = original;
    try {
      const d = decide(rt, this.revocation, { method, target, host, headers: req.headers, rawHeaders: req.rawHeaders, peerIp: req.socket.remoteAddress ?? '' });
      if (d instanceof Promise) d.then(onOk, onErr);
      else onOk(d);
    } catch (err) {
      onErr(err);
    }
  }

  private record(req: IncomingMessage, requestId: string, started: number, o: Outcome): void {
    if (!this.observer) return;
    const { err, d } = o;
    const id = d?.identity ?? null;
    this.observer.onRequest({
      requestId,
      method: req.method ?? '',
      path: d?.path ?? err?.path,
      route: o.route ?? d?.route.label ?? err?.route,
      decision: err === undefined ? 'allow' : err.status >= 500 ? 'error' : 'deny',
      code: err?.code,
      ratePolicy: err?.policy,
      status: err?.status ?? o.status ?? 0,
      latencyMs: performance.now() - started,
      authMs: o.authMs,
      keyId: id?.keyId,
      subject: id?.subject,
      method_: id?.method,
      clientIp: d?.clientIp ?? req.socket.remoteAddress,
      upstream: o.upstream,
      upstreamMs: o.upstreamMs,
      trace: traceOf(req),
    });
  }
}

/**
 * Sends a refusal now, or — for 429 `rate-limited` from the failed-attempt limits — after
 * `apiKeys.failedAttempts.delay`. Held, the client's connection gets no answer and (without
 * pipelining) sends nothing more, so a flood of guesses runs at one try per connection per
 * delay instead of as fast as refusals can be written. A client that goes away meanwhile
 * frees its timer at once; the refusal is then still logged.
 */
export function holdRefusal(rt: Runtime, e: GatewayError, conn: ServerResponse | Duplex, send: () => void): void {
  // A policy's 429 (it names its policy) is answered at once: it tells the client when to return.
  if (e.code !== 'rate-limited' || e.policy !== undefined || rt.rateLimitedDelay <= 0) {
    send();
    return;
  }
  const timer = setTimeout(() => {
    conn.off('close', early);
    send();
  }, rt.rateLimitedDelay);
  const early = () => {
    clearTimeout(timer);
    send();
  };
  conn.once('close', early);
}

function single(v: string | string[] | undefined): string | undefined | null {
  return Array.isArray(v) ? null : v;
}

/**
 * A path that normalization reshapes: a dot segment (raw or percent-encoded) or an empty
 * segment before the last. In proxy mode the upstream gets the normalized path; in
 * forward-auth the proxy forwards the client's own bytes, so such a path would be judged as
 * one path and served as another (`/admin/..` judged as `/`, routed as `/admin/:id` by a
 * server that does not resolve dot segments; `//public/admin` read as host `public`, path
 * `/admin` by one that parses its target as a URL). It is refused, never judged.
 */
const RESHAPED_PATH = /\/\/|\/(?:\.|%2e){1,2}(?:\/|$)/i;

/**
 * The request a forward-auth call asks about. Proxies name it with X-Forwarded-Method/-Uri
 * (Traefik, Envoy) or X-Original-Method/-URI (nginx). When both families are present they
 * must agree: otherwise a client-sent header the proxy passed along could change what is
 * judged. Returns a reason string when the headers are missing or ambiguous.
 */
export function originalRequest(h: IncomingMessage['headers']): { method: string; target: string; host: string | undefined } | string {
  const fm = single(h['x-forwarded-method']);
  const om = single(h['x-original-method']);
  const fu = single(h['x-forwarded-uri']);
  const ou = single(h['x-original-uri']);
  const fh = single(h['x-forwarded-host']);
  if (fm === null || om === null || fu === null || ou === null || fh === null) return 'Forward-auth headers must not repeat.';
  // Node joins repeated X-Forwarded-Host lines with ", ": two hosts have no one reading.
  if (fh !== undefined && (fh.includes(',') || fh.trim() === '')) return 'X-Forwarded-Host must name one host.';
  if (fu !== undefined && ou !== undefined && fu !== ou) return 'X-Forwarded-Uri and X-Original-URI disagree.';
  if (fm !== undefined && om !== undefined && fm.toUpperCase() !== om.toUpperCase()) return 'X-Forwarded-Method and X-Original-Method disagree.';
  const target = fu ?? ou;
  if (target === undefined) return 'Forward-auth needs X-Forwarded-Uri or X-Original-URI.';
  if (RESHAPED_PATH.test(target.split('?', 1)[0]!)) return 'The original URI has "." or ".." segments or "//": the upstream would not read it as the gateway does.';
  return { method: (fm ?? om ?? 'GET').toUpperCase(), target, host: fh ?? h.host };
}
