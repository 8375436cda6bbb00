import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { randomUUID } from 'node:crypto';
import { GatewayError, respond } from '../http/problem.js';
import { applyIdentity } from '../identity/apply.js';
import { upstreamHeaderList } from '../identity/headers.js';
import { earlyLimits, isLimited } from '../limits/apply.js';
import type { RateLimiter } from '../limits/types.js';
import type { PipelineObserver } from '../ops/record.js';
import { traceRequest } from '../ops/tracing.js';
import { upstreamError, type Proxy, type Upstream } from '../proxy/upstreams.js';
import type { RevocationCheck } from '../revocation/check.js';
import { decide, type Decision, type EarlyLimits } from './decide.js';
import { facts, forwardCtx, type Exchange, type Stages } from './exchange.js';
import { VERIFY, verify } from './forward-auth.js';
import { record } from './record.js';
import { connectionRefused, framingFault, limited, refuse } from './refusal.js';
import type { Runtime } from '../runtime.js';
import { upgrade } from './websocket.js';


/** Handlers for `/.portcullis/*` endpoints other than `verify` (refresh, logout). */
export type EndpointHandler = (req: IncomingMessage, res: ServerResponse, requestId: string, rt: Runtime) => Promise<void>;

const ENDPOINT_PREFIX = '/.portcullis/';

/** The request path: decide, then proxy, verify or refuse. Holds no config of its own. */
/** Where the pipeline's operator warnings go (the gateway's logger). */
export type Warn = (obj: Record<string, unknown>, msg: string) => void;

/** How often the same operator warning is logged at most. */
const WARN_EVERY_MS = 600_000;

/**
 * Forward-auth checks come from a proxy: from one that is not a trusted proxy, every client
 * behind it has the proxy's address, so one stranger's failed attempts refuse everyone not yet
 * verified (429), and allowed IPs and `by: ip` limits see one client. Said at most every 10
 * minutes, with how many checks came meanwhile.
 */
function untrustedCheckWarning(warn: Warn): (peer: string) => void {
  let last = -Infinity;
  let since = 0;
  return (peer) => {
    since++;
    const now = performance.now();
    if (now - last < WARN_EVERY_MS) return;
    last = now;
    warn({ peer, checks: since }, 'forward-auth check from a peer that is not in trustedProxies: every client behind it counts as that address (failed-attempt limits, allowed IPs, by: ip limits); list the proxy in trustedProxies');
    since = 0;
  };
}

export class Pipeline {
  private runtime: Runtime;
  private readonly endpoints = new Map<string, EndpointHandler>();
  private readonly s: Stages;
  /** Set when limits and revocation are both on Redis: limits go in the revocation check's round trip. */
  private readonly early: EarlyLimits | undefined;

  constructor(runtime: Runtime, revocation: RevocationCheck, proxy: Proxy, observer: PipelineObserver | undefined, limiter?: RateLimiter | undefined, warn?: Warn) {
    this.runtime = runtime;
    this.s = { revocation, proxy, observer, limiter, untrustedCheck: warn === undefined ? undefined : untrustedCheckWarning(warn) };
    const gateOf = limiter?.gated === true ? revocation.gate?.bind(revocation) : undefined;
    this.early = gateOf === undefined ? undefined : (policies, d) => earlyLimits(limiter, policies, d, gateOf);
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
    if (connectionRefused(req)) {
      // Flushes the refusal already queued on the socket, then closes it.
      req.socket.end();
      return;
    }
    const rt = this.runtime;
    const x: Exchange = { rt, req, requestId: randomUUID(), started: performance.now() };
    traceRequest(req, rt.tracing, x.started);
    const url = req.url ?? '';
    const fault = framingFault(req);
    if (fault !== undefined) {
      refuse(this.s, x, res, fault);
      return;
    }
    if (url.startsWith(ENDPOINT_PREFIX)) {
      this.endpoint(x, res);
      return;
    }
    let d: Decision | Promise<Decision>;
    try {
      d = decide(rt, this.s.revocation, facts(req, url, req.method ?? ''), this.early);
    } catch (err) {
      refuse(this.s, x, res, err);
      return;
    }
    if (d instanceof Promise) {
      d.then(
        (ok) => this.forward(x, res, ok),
        (err) => refuse(this.s, x, res, err),
      );
    } else this.forward(x, res, d);
  };

  readonly upgrade = (req: IncomingMessage, socket: Duplex, head: Buffer): void => {
    upgrade(this.s, this.runtime, req, socket, head);
  };

  private forward(x: Exchange, res: ServerResponse, d: Decision): void {
    if (isLimited(x.rt.routeLimits[d.route.index]!, d.identity)) {
      limited(this.s, x, res, d, (headers) => this.admitted(x, res, d, headers));
      return;
    }
    this.admitted(x, res, d);
  }

  /** `answerHeaders`: the RateLimit headers of a limited route, for the client's answer whatever it is. */
  private admitted(x: Exchange, res: ServerResponse, d: Decision, answerHeaders?: Record<string, string>): void {
    const { rt, req } = x;
    const upstream = rt.routeUpstreams[d.route.index]!;
    req.url = d.path + d.query;
    // The upstream's headers, once, as the flat list the pool takes; the identity's follow.
    const headers = upstreamHeaderList(req.headers, rt.forward, forwardCtx(d, x, false));
    const go = () => this.proxyTo(x, res, d, upstream, headers, answerHeaders);
    if (d.identity === null) go();
    else {
      applyIdentity(headers, rt, d.identity, upstream.name, go, (err) => {
        stateHeaders(res, answerHeaders);
        refuse(this.s, x, res, new GatewayError('upstream-unavailable', 'The identity assertion could not be signed.', { cause: err }), { d });
      });
    }
  }

  private proxyTo(x: Exchange, res: ServerResponse, d: Decision, upstream: Upstream, headers: string[], answerHeaders: Record<string, string> | undefined): void {
    const req = x.req;
    const authMs = performance.now() - x.started;
    const proxyStart = performance.now();
    let failure: GatewayError | undefined;
    this.s.proxy.web(req, res, upstream, headers, x.requestId, (err) => {
      stateHeaders(res, answerHeaders);
      failure = respond(res, upstreamError(err, req, upstream, proxyStart), x.requestId, req.method === 'HEAD');
    }, answerHeaders);
    const observer = this.s.observer;
    if (observer) {
      res.once('close', () => record(observer, { x, err: failure, d, upstream: upstream.name, authMs, status: res.statusCode, upstreamMs: performance.now() - proxyStart }));
    }
  }

  private endpoint(x: Exchange, res: ServerResponse): void {
    const req = x.req;
    const q = req.url!.indexOf('?');
    const path = q === -1 ? req.url! : req.url!.slice(0, q);
    if (path === VERIFY) {
      verify(this.s, x, res);
      return;
    }
    const h = this.endpoints.get(path);
    if (h === undefined) {
      refuse(this.s, x, res, new GatewayError('route-not-found', `No gateway endpoint ${path}.`));
      return;
    }
    // Logged and counted like a proxied request, under the endpoint's own route label.
    const route = path.slice(1);
    h(req, res, x.requestId, x.rt).then(
      () => record(this.s.observer, { x, authMs: performance.now() - x.started, status: res.statusCode, route }),
      (err) => refuse(this.s, x, res, err, { route }),
    );
  }
}

/** Sets headers of ours on an answer the gateway writes itself (a 502/504 on a limited route). */
function stateHeaders(res: ServerResponse, headers: Record<string, string> | undefined): void {
  if (headers === undefined || res.headersSent) return;
  for (const name in headers) res.setHeader(name, headers[name]!);
}
