import type { IncomingMessage, ServerResponse } from 'node:http';
import { GatewayError } from '../http/problem.js';
import { unmapIPv4 } from '../util/cidr.js';
import { applyIdentity } from '../identity/apply.js';
import { decide, type Decision } from './decide.js';
import type { Exchange, Stages } from './exchange.js';
import { record } from './record.js';
import { limited, refuse } from './refusal.js';

export const VERIFY = '/.portcullis/verify';
const ROUTE = VERIFY.slice(1);

/** Forward-auth: decide for the original request named in X-Forwarded-* / X-Original-*. */
export function verify(s: Stages, check: Exchange, res: ServerResponse): void {
  const { rt, req, requestId } = check;
  const original = originalRequest(req.headers, req.method ?? 'GET');
  // Logged, counted and traced as the request it judged.
  const x: Exchange = typeof original === 'string' ? check : { ...check, method: original.method };
  const peer = req.socket.remoteAddress ?? '';
  if (!rt.isTrustedProxy(unmapIPv4(peer))) s.untrustedCheck?.(peer);
  const onErr = (err: unknown) => refuse(s, x, res, err, { route: ROUTE });
  const answer = (d: Decision, headers: Record<string, string>) => {
    res.writeHead(200, headers);
    res.end();
    record(s.observer, { x, d, authMs: performance.now() - x.started, status: 200, route: ROUTE });
  };
  const onAdmitted = (d: Decision, limits: Record<string, string> | undefined) => {
    const headers: Record<string, string> = { 'x-request-id': requestId, 'cache-control': 'no-store', 'content-length': '0', ...limits };
    if (d.identity === null) answer(d, headers);
    else applyIdentity(headers, rt, d.identity, d.route.upstream, () => answer(d, headers), onErr);
  };
  const onOk = (d: Decision) => limited(s, x, res, d, (limits) => onAdmitted(d, limits), ROUTE);
  if (typeof original === 'string') {
    onErr(new GatewayError('bad-request', original));
    return;
  }
  const { method, target, host } = original;
  try {
    const d = decide(rt, s.revocation, { method, target, host, headers: req.headers, rawHeaders: req.rawHeaders, peerIp: req.socket.remoteAddress ?? '' });
    if (d instanceof Promise) d.then(onOk, onErr);
    else onOk(d);
  } catch (err) {
    onErr(err);
  }
}

/** An HTTP method: a token (RFC 9110 §9.1), so never a list. */
const METHOD_TOKEN = /^[!#$%&'*+.^_`|~0-9A-Z-]+$/;

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
 * judged. Without a method header the call's own method is the original one: Envoy's
 * ext_authz sends the check with it (nginx's subrequests are GETs, and its config names
 * the method). Returns a reason string when the headers are missing or ambiguous.
 */
export function originalRequest(h: IncomingMessage['headers'], ownMethod: string): { method: string; target: string; host: string | undefined } | string {
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
  const method = (fm ?? om ?? ownMethod).toUpperCase();
  // Node joins a repeated X-Forwarded-Method (or X-Original-Method) with ", ".
  if (!METHOD_TOKEN.test(method)) return 'The original method must be one method.';
  return { method, target, host: fh ?? h.host };
}
