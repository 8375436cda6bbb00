import type { Identity } from '../authn/types.js';
import type { CompiledRoute } from '../http/match.js';
import { GatewayError } from '../http/problem.js';

/** Returns the first reason the identity may not use the route, or null (step 6). */
export function denialReason(route: CompiledRoute, identity: Identity, clientIp: string): string | null {
  if (identity.roleRank < route.minRank) {
    return `This route requires the role "${route.minRole}" or higher.`;
  }
  for (const s of route.scopes) {
    if (!identity.scopes.includes(s)) return `This route requires the scope "${s}".`;
  }
  if (route.audiences !== null) {
    if (!identity.audiences.some((a) => route.audiences!.includes(a))) return `This route admits only the audience ${route.audiences.map((a) => `"${a}"`).join(', ')}.`;
  } else if (identity.method === 'apiKey' && identity.audiences.length > 0) {
    return 'This key is restricted to routes of its audience.';
  }
  if (identity.allowIp !== undefined && !identity.allowIp(clientIp)) {
    return 'This credential may not be used from this address.';
  }
  return null;
}

/** Throws 403 `authorisation-required` when `denialReason` finds one. */
export function authorize(route: CompiledRoute, identity: Identity, clientIp: string): void {
  const reason = denialReason(route, identity, clientIp);
  if (reason !== null) throw new GatewayError('authorisation-required', reason);
}
