import { normalizeTarget } from '../http/normalize-path.js';
import { parseStoreUrl } from '../store/open.js';
import type { RawConfig } from './schema.js';

/** A path into the config document (keys and list indexes). */
export type ConfigPath = readonly (string | number)[];

/**
 * The rules that span several fields, which the schema cannot state: names that must
 * exist or be unique, a store every worker can open, routes that are well-formed. Appends
 * a located problem (`at(path)` gives `FILE:LINE:COL`) for each break, and returns the
 * role ranks (role name → index in `roles`).
 */
export function crossFieldRules(cfg: RawConfig, at: (path: ConfigPath) => string, problems: string[]): Map<string, number> {
  const roleRanks = new Map<string, number>();
  cfg.roles.forEach((r, i) => {
    if (roleRanks.has(r)) problems.push(`${at(['roles', i])} role "${r}" is listed twice`);
    roleRanks.set(r, i);
  });
  cfg.routes.forEach((r, i) => {
    // Own keys only: `constructor` or `toString` must not pass for an upstream name.
    if (!Object.hasOwn(cfg.upstreams, r.upstream)) problems.push(`${at(['routes', i, 'upstream'])} routes.${i}.upstream: no upstream named "${r.upstream}" (known: ${Object.keys(cfg.upstreams).join(', ')})`);
    if (r.minRole !== undefined && !roleRanks.has(r.minRole)) problems.push(`${at(['routes', i, 'minRole'])} routes.${i}.minRole: "${r.minRole}" is not in roles [${cfg.roles.join(', ')}]`);
    const n = normalizeTarget(r.match.path, { allowPathParams: cfg.allowPathParams });
    if (!n.ok) problems.push(`${at(['routes', i, 'match', 'path'])} routes.${i}.match.path: not a valid path (${n.reason})`);
    else if (n.path !== r.match.path || n.query !== '') problems.push(`${at(['routes', i, 'match', 'path'])} routes.${i}.match.path: write the pattern as requests are matched: "${n.path}"`);
    if (r.public && (r.minRole !== undefined || r.scopes.length > 0 || r.audience !== undefined)) problems.push(`${at(['routes', i, 'public'])} routes.${i}: a public route cannot also require minRole, scopes or audience`);
  });
  const names = new Set<string>();
  cfg.jwt.issuers.forEach((iss, i) => {
    if (names.has(iss.name)) problems.push(`${at(['jwt', 'issuers', i, 'name'])} issuer name "${iss.name}" is used twice`);
    names.add(iss.name);
    if (iss.issuer === undefined && cfg.jwt.issuers.some((o, j) => j < i && o.issuer === undefined)) problems.push(`${at(['jwt', 'issuers', i])} only one issuer may omit "issuer" (it takes the tokens that carry no iss)`);
    if (iss.defaultRole !== undefined && !roleRanks.has(iss.defaultRole)) problems.push(`${at(['jwt', 'issuers', i, 'defaultRole'])} defaultRole "${iss.defaultRole}" is not in roles`);
  });
  try {
    const loc = parseStoreUrl(cfg.store.url);
    if (cfg.workers !== 1 && loc.kind === 'sqlite' && loc.file === undefined) {
      problems.push(`${at(['workers'])} workers: several workers need a store they can all open: sqlite://FILE or postgres:// (each process would have its own sqlite://memory)`);
    }
  } catch (err) {
    problems.push(`${at(['store', 'url'])} store.url: ${(err as Error).message}`);
  }
  if (cfg.revocation.externalKeys.length > 0 && cfg.revocation.redis.trim() === '') {
    problems.push(`${at(['revocation', 'externalKeys'])} revocation.externalKeys: needs revocation.redis (the keys are read from the Redis the API writes them to)`);
  }
  const policyNames = new Set<string>();
  cfg.rateLimits.policies.forEach((pol, i) => {
    if (policyNames.has(pol.name)) problems.push(`${at(['rateLimits', 'policies', i, 'name'])} rate-limit policy "${pol.name}" is defined twice`);
    policyNames.add(pol.name);
  });
  cfg.routes.forEach((r, i) => {
    r.rateLimit.forEach((name, j) => {
      if (!policyNames.has(name)) problems.push(`${at(['routes', i, 'rateLimit', j])} routes.${i}.rateLimit: no policy named "${name}" in rateLimits.policies`);
    });
  });
  const idh = Object.values(cfg.identity.headers);
  if (new Set(idh).size !== idh.length) problems.push(`${at(['identity', 'headers'])} identity.headers: two identity fields share one header name`);
  return roleRanks;
}
