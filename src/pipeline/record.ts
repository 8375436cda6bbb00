import type { GatewayError } from '../http/problem.js';
import type { PipelineObserver } from '../ops/record.js';
import { traceOf } from '../ops/tracing.js';
import type { Decision } from './decide.js';
import type { Exchange } from './exchange.js';

/** How a request ended. */
export interface Outcome {
  readonly x: Exchange;
  readonly err?: GatewayError | undefined;
  readonly d?: Decision | undefined;
  readonly upstream?: string | undefined;
  /** Milliseconds spent deciding. */
  readonly authMs: number;
  readonly status?: number | undefined;
  readonly upstreamMs?: number | undefined;
  /** Route label when it is not the decision's (the gateway's own endpoints). */
  readonly route?: string | undefined;
}

/** Hands one finished request to the observer (the log line, metrics, the trace's end). */
export function record(observer: PipelineObserver | undefined, o: Outcome): void {
  if (!observer) return;
  const { err, d, x } = o;
  const req = x.req;
  const id = d?.identity ?? null;
  observer.onRequest({
    requestId: x.requestId,
    method: x.method ?? req.method ?? '',
    path: d?.path ?? err?.path,
    route: o.route ?? d?.route.label ?? err?.route,
    decision: err === undefined ? 'allow' : err.status >= 500 ? 'error' : 'deny',
    code: err?.code,
    ratePolicy: err?.policy,
    status: err?.status ?? o.status ?? 0,
    latencyMs: performance.now() - x.started,
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
