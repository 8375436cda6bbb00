import type { IncomingMessage } from 'node:http';
import type { ForwardContext } from '../identity/headers.js';
import type { RateLimiter } from '../limits/types.js';
import type { PipelineObserver } from '../ops/record.js';
import { traceOf } from '../ops/tracing.js';
import type { Proxy } from '../proxy/upstreams.js';
import type { RevocationCheck } from '../revocation/check.js';
import type { Decision, RequestFacts } from './decide.js';
import type { Runtime } from '../runtime.js';

/** What the stages of the request path share: set once, for every request. */
export interface Stages {
  readonly revocation: RevocationCheck;
  readonly proxy: Proxy;
  readonly observer: PipelineObserver | undefined;
  readonly limiter: RateLimiter | undefined;
  /** Told of a forward-auth check from a peer that is not a trusted proxy (a warning, throttled by its owner). */
  readonly untrustedCheck?: ((peer: string) => void) | undefined;
}

/** One request on its way through the stages. */
export interface Exchange {
  /** The runtime the request started with (a reload does not change it midway). */
  readonly rt: Runtime;
  readonly req: IncomingMessage;
  readonly requestId: string;
  /** `performance.now()` at arrival. */
  readonly started: number;
  /** The method judged, when not the request's own (a forward-auth check judges the original request's). */
  readonly method?: string | undefined;
}

export function facts(req: IncomingMessage, target: string, method: string): RequestFacts {
  return { method, target, headers: req.headers, rawHeaders: req.rawHeaders, peerIp: req.socket.remoteAddress ?? '' };
}

/** The forwarding facts for the upstream's headers. */
export function forwardCtx(d: Decision, x: Exchange, upgrade: boolean): ForwardContext {
  const req = x.req;
  return {
    clientIp: d.clientIp,
    peerIp: req.socket.remoteAddress ?? '',
    peerTrusted: d.peerTrusted,
    proto: (req.socket as { encrypted?: boolean }).encrypted ? 'https' : 'http',
    requestId: x.requestId,
    upgrade,
    trace: traceOf(req)?.upstream(req.method ?? '', d.route.upstream),
    verified: d.identity === null ? null : d.credential,
  };
}
