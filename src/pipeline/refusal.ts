import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { GatewayError, respond, toGatewayError } from '../http/problem.js';
import { withLimits } from '../limits/apply.js';
import { CLOSE_CONNECTION, type Decision } from './decide.js';
import type { Exchange, Stages } from './exchange.js';
import { record } from './record.js';
import type { Runtime } from '../runtime.js';

/**
 * Set on a socket once a request on it was refused for ambiguous framing. Requests Node
 * already parsed behind it (pipelined in the same packet) or parses later are never
 * processed: they were framed by the very reading that was refused.
 */
const REFUSED = Symbol('portcullis.refusedConnection');
type Marked = { [REFUSED]?: true };

/** True once a request on this connection was refused for its framing. */
export function connectionRefused(req: IncomingMessage): boolean {
  return (req.socket as Marked)[REFUSED] === true;
}

/** RFC 9112 §6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing. */
export function framingFault(req: IncomingMessage): GatewayError | undefined {
  if (req.headers['transfer-encoding'] === undefined || req.httpVersionMajor !== 1 || req.httpVersionMinor !== 0) return undefined;
  return new GatewayError('bad-request', 'Transfer-Encoding is not allowed in an HTTP/1.0 request.', { headers: CLOSE_CONNECTION });
}

/** Where the refusal is counted: the decision, if one was reached, or a gateway endpoint's label. */
export interface RefusedAt {
  readonly d?: Decision | undefined;
  readonly route?: string | undefined;
}

/** Answers a request with the problem `err` maps to (held first when it is a failed-attempt 429). */
export function refuse(s: Stages, x: Exchange, res: ServerResponse, err: unknown, at: RefusedAt = {}): void {
  const e = toGatewayError(err);
  const req = x.req;
  if (e.headers?.connection === 'close') (req.socket as Marked)[REFUSED] = true;
  // The request body is not wanted; drain it so the connection can be reused.
  else if (!req.complete) req.resume();
  const authMs = performance.now() - x.started;
  holdRefusal(x.rt, e, res, () => {
    respond(res, e, x.requestId, req.method === 'HEAD');
    record(s.observer, { x, err: e, d: at.d, authMs, route: at.route });
  });
}

/**
 * Step 6½: the route's rate limits, for an admitted request. Calls `go` with the headers
 * to add to the answer (none without limits), or refuses 429 / 503.
 */
export function limited(s: Stages, x: Exchange, res: ServerResponse, d: Decision, go: (headers: Record<string, string> | undefined) => void, route?: string): void {
  withLimits(s.limiter, x.rt.routeLimits[d.route.index]!, d, go, (err) => refuse(s, x, res, err, { d, route }), d.limits);
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
