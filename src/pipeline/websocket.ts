import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { randomUUID } from 'node:crypto';
import { GatewayError, respondOnSocket, toGatewayError } from '../http/problem.js';
import { applyIdentity } from '../identity/apply.js';
import { upstreamHeaders } from '../identity/headers.js';
import { withLimits } from '../limits/apply.js';
import { traceRequest } from '../ops/tracing.js';
import { upstreamError } from '../proxy/upstreams.js';
import { CLOSE_CONNECTION, decide, type Decision } from './decide.js';
import { facts, forwardCtx, type Exchange, type Stages } from './exchange.js';
import { record } from './record.js';
import { connectionRefused, framingFault, holdRefusal } from './refusal.js';
import type { Runtime } from '../runtime.js';

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

/** A websocket handshake: decide, limit, then tunnel to the route's upstream or refuse on the socket. */
export function upgrade(s: Stages, rt: Runtime, req: IncomingMessage, socket: Duplex, head: Buffer): void {
  if (connectionRefused(req)) {
    socket.end();
    return;
  }
  const x: Exchange = { rt, req, requestId: randomUUID(), started: performance.now() };
  traceRequest(req, rt.tracing, x.started);
  socket.on('error', () => socket.destroy());
  const fail = (err: unknown) => {
    const e = toGatewayError(err);
    const authMs = performance.now() - x.started;
    holdRefusal(rt, e, socket, () => {
      respondOnSocket(socket, e, x.requestId);
      record(s.observer, { x, err: e, authMs });
    });
  };
  const go = (d: Decision) => withLimits(s.limiter, rt.routeLimits[d.route.index]!, d, () => tunnel(s, x, socket, head, d, fail), fail);
  const fault = upgradeFault(req);
  if (fault !== undefined) {
    fail(fault);
    return;
  }
  try {
    const d = decide(rt, s.revocation, facts(req, req.url ?? '', req.method ?? ''));
    if (d instanceof Promise) d.then(go, fail);
    else go(d);
  } catch (err) {
    fail(err);
  }
}

function tunnel(s: Stages, x: Exchange, socket: Duplex, head: Buffer, d: Decision, fail: (err: unknown) => void): void {
  const { rt, req, requestId, started } = x;
  const upstream = rt.routeUpstreams[d.route.index]!;
  req.url = d.path + d.query;
  const headers = upstreamHeaders(req.headers, rt.forward, null, forwardCtx(d, x, true));
  req.headers = headers as IncomingMessage['headers'];
  const open = () => {
    const authMs = performance.now() - started;
    s.proxy.ws(req, socket, head, upstream, (err) => respondOnSocket(socket, upstreamError(err, req, upstream, authMs + started), requestId));
    record(s.observer, { x, d, upstream: upstream.name, authMs, status: 101 });
  };
  if (d.identity === null) open();
  else applyIdentity(headers, rt, d.identity, upstream.name, open, fail);
}
