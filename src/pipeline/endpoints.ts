import type { IncomingMessage } from 'node:http';
import { GatewayError } from '../http/problem.js';
import { checkAmbiguity } from '../http/guard.js';
import { readJsonObject } from '../http/body.js';
import { extractCredential } from '../credentials/extract.js';
import type { BoundedVerification } from '../keys/refresh.js';
import type { KeyService } from '../keys/service.js';
import type { TokenService } from '../tokens/service.js';
import type { RevocationCheck } from '../revocation/check.js';
import { CLOSE_CONNECTION, clientAddress, verifyCredential } from './decide.js';
import type { EndpointHandler } from './handler.js';
import type { Runtime } from '../runtime.js';

const MAX_BODY = 16 * 1024;

/** The named cookie's value; a value that is not valid percent-encoding is the client's error (400). */
export function cookie(req: IncomingMessage, name: string): string | undefined {
  const header = req.headers.cookie;
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const i = part.indexOf('=');
    if (i === -1 || part.slice(0, i).trim() !== name) continue;
    try {
      return decodeURIComponent(part.slice(i + 1).trim());
    } catch {
      throw new GatewayError('bad-request', `The ${name} cookie is not valid percent-encoding.`);
    }
  }
  return undefined;
}

function refreshCookie(name: string, token: string, maxAgeSeconds: number): string {
  return `${name}=${encodeURIComponent(token)}; Max-Age=${maxAgeSeconds}; Path=/.portcullis/; HttpOnly; Secure; SameSite=Strict`;
}

function precheck(req: IncomingMessage, rt: Runtime): void {
  const reason = checkAmbiguity(req.rawHeaders, rt.guard);
  if (reason !== null) throw new GatewayError('bad-request', reason, { headers: CLOSE_CONNECTION });
  if (req.method !== 'POST') throw new GatewayError('bad-request', 'Use POST.');
}

/**
 * `POST /.portcullis/refresh`: exchanges a refresh token (JSON body or cookie) for a new key
 * and refresh token; a cookie-borne token is answered with a cookie (docs/reference/api-keys.md).
 */
export function refreshEndpoint(core: { readonly keys: Pick<KeyService, 'refresh'> }, bounded?: BoundedVerification): EndpointHandler {
  return async (req, res, requestId, rt) => {
    precheck(req, rt);
    const cookieName = rt.config.apiKeys.refresh.cookieName;
    const body = await readJsonObject(req, MAX_BODY);
    const fromBody = typeof body.refreshToken === 'string' ? body.refreshToken : undefined;
    const fromCookie = cookie(req, cookieName);
    if (fromBody !== undefined && fromCookie !== undefined && fromBody !== fromCookie) throw new GatewayError('bad-request', 'Two different refresh tokens were sent.');
    const token = fromBody ?? fromCookie;
    if (token === undefined || token === '') throw new GatewayError('refresh-invalid', 'A refresh token is required (JSON "refreshToken" or the refresh cookie).');
    // Failed refreshes are counted per client: others' forgeries never refuse this one.
    const { clientIp } = clientAddress(rt, { method: 'POST', target: '/', headers: req.headers, rawHeaders: req.rawHeaders, peerIp: req.socket.remoteAddress ?? '' });
    const r = await core.keys.refresh(token, clientIp, bounded);
    const answer: Record<string, unknown> = { key: r.key, id: r.id, expiresAt: new Date(r.expiresAt).toISOString(), refreshExpiresAt: new Date(r.refreshExpiresAt).toISOString() };
    const headers: Record<string, string | string[]> = { 'content-type': 'application/json', 'cache-control': 'no-store', 'x-request-id': requestId };
    if (fromBody === undefined) {
      const maxAge = Math.max(0, Math.floor((r.refreshExpiresAt - Date.now()) / 1000));
      headers['set-cookie'] = refreshCookie(cookieName, r.refreshToken, maxAge);
    } else answer.refreshToken = r.refreshToken;
    const text = JSON.stringify(answer);
    res.writeHead(200, { ...headers, 'content-length': Buffer.byteLength(text) });
    res.end(text);
  };
}

/** `POST /.portcullis/logout`: revokes the credential the request carries; 204. */
export function logoutEndpoint(core: { readonly keys: Pick<KeyService, 'revoke'>; readonly tokens: Pick<TokenService, 'revokeId'> }, revocation: RevocationCheck): EndpointHandler {
  return async (req, res, requestId, rt) => {
    precheck(req, rt);
    req.resume();
    const { credential } = extractCredential(req.headers, '', rt.extract);
    if (credential === null) throw new GatewayError('token-missing', 'Log out with the credential to revoke.');
    const { clientIp } = clientAddress(rt, { method: 'POST', target: '/', headers: req.headers, rawHeaders: req.rawHeaders, peerIp: req.socket.remoteAddress ?? '' });
    const identity = await verifyCredential(rt, revocation, credential, clientIp);
    if (identity.method === 'apiKey') await core.keys.revoke(identity.keyId!);
    else await core.tokens.revokeId(identity.revocationId, identity.expiresAt);
    // A browser that kept its refresh token in the cookie must drop it on logout.
    res.writeHead(204, { 'cache-control': 'no-store', 'x-request-id': requestId, 'set-cookie': refreshCookie(rt.config.apiKeys.refresh.cookieName, '', 0) });
    res.end();
  };
}
