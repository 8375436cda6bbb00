import { randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { parseDuration } from '../config/duration.js';
import { checkUses, parseRateLimit } from '../keys/limits.js';
import { AnnouncementError, KeyServiceError, type CreateKeyOptions, type KeyService, type UpdateKeyOptions } from '../keys/service.js';
import type { TokenService } from '../tokens/service.js';
import { parseStoreUrl } from '../store/open.js';
import type { AdminRoute } from './admin.js';

/**
 * Where `serve` leaves a local admin token (mode 0600) when the store is an embedded file:
 * beside it, so whoever may read the keys' file may use the admin API too.
 */
export function adminTokenFile(storeUrl: string, baseDir?: string): string | undefined {
  try {
    const loc = parseStoreUrl(storeUrl, baseDir);
    return loc.kind === 'sqlite' && loc.file !== undefined ? join(dirname(loc.file), 'admin.token') : undefined;
  } catch {
    return undefined;
  }
}

/** Writes a fresh random admin token (mode 0600) and returns it. */
export async function writeAdminToken(file: string): Promise<string> {
  const token = randomBytes(32).toString('base64url');
  await mkdir(join(file, '..'), { recursive: true });
  await writeFile(file, token + '\n', { mode: 0o600 });
  await chmod(file, 0o600);
  return token;
}

/**
 * The admin token: the configured one; else, for the embedded store's file, a fresh one
 * written beside it (0600) for local tools; else none, and the admin API stays closed.
 */
export async function adminTokenFor(configured: string, storeUrl: string, baseDir: string | undefined): Promise<string> {
  const tokenFile = adminTokenFile(storeUrl, baseDir);
  if (configured === '' && tokenFile !== undefined) return writeAdminToken(tokenFile);
  return configured;
}

export async function readAdminToken(file: string): Promise<string | undefined> {
  try {
    return (await readFile(file, 'utf8')).trim() || undefined;
  } catch {
    return undefined;
  }
}

const invalid = (message: string) => new KeyServiceError('invalid-argument', message);

function strings(v: unknown, field: string): string[] | undefined {
  if (v === undefined) return undefined;
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) throw invalid(`${field} must be a list of strings`);
  return v;
}

function duration(v: unknown, field: string): number | undefined {
  if (v === undefined || v === null) return undefined;
  const ms = typeof v === 'string' || typeof v === 'number' ? parseDuration(v) : undefined;
  if (ms === undefined) throw invalid(`${field} must be a duration like 720h`);
  return ms;
}

/**
 * `rateLimit` (`"100/1m"`, or null / `"none"` for none) and `uses` (credits, or null for
 * unlimited), as `keys create|update` take them; fields left out are left out.
 */
function limitFields(body: Record<string, unknown>): { rateLimit?: ReturnType<typeof parseRateLimit>; uses?: number | null } {
  const r = body.rateLimit;
  if (r !== undefined && r !== null && typeof r !== 'string') throw invalid('rateLimit must be a string like "100/1m", or null');
  const u = body.uses;
  return {
    ...(r === undefined ? {} : { rateLimit: r === null ? null : parseRateLimit(r) }),
    ...(u === undefined ? {} : { uses: u === null ? null : checkUses(u) }),
  };
}

/** Parses the JSON body of a key creation (the same fields as `keys create`). */
export function createOptions(body: Record<string, unknown>): CreateKeyOptions {
  const text = (f: string) => {
    const v = body[f];
    if (v === undefined) return undefined;
    if (typeof v !== 'string') throw invalid(`${f} must be a string`);
    return v;
  };
  const expires = body.expires === null ? null : duration(body.expires, 'expires');
  return {
    subject: text('subject') ?? '',
    role: text('role') ?? '',
    ...(body.scopes !== undefined ? { scopes: strings(body.scopes, 'scopes')! } : {}),
    ...(body.name !== undefined ? { name: text('name') ?? null } : {}),
    ...(expires !== undefined ? { expiresIn: expires } : {}),
    ...(body.notBefore !== undefined ? { notBeforeIn: duration(body.notBefore, 'notBefore')! } : {}),
    ...(body.allowIps !== undefined ? { allowIps: strings(body.allowIps, 'allowIps')! } : {}),
    ...(body.audiences !== undefined ? { audiences: strings(body.audiences, 'audiences')! } : {}),
    replace: body.replace === true,
    refreshable: body.refreshable === true,
    ...limitFields(body),
  };
}

/**
 * Parses the JSON body of a key update (the fields of `keys update`): `role`, `scopes`,
 * `expires` (a duration from now, or "never" / null), `rateLimit`, `uses`.
 */
export function updateOptions(body: Record<string, unknown>): UpdateKeyOptions {
  for (const k of Object.keys(body)) if (!['role', 'scopes', 'expires', 'rateLimit', 'uses'].includes(k)) throw invalid(`unknown field ${k}`);
  if (body.role !== undefined && typeof body.role !== 'string') throw invalid('role must be a string');
  const expires = body.expires === null || body.expires === 'never' ? null : duration(body.expires, 'expires');
  return {
    ...(body.role === undefined ? {} : { role: body.role }),
    ...(body.scopes === undefined ? {} : { scopes: strings(body.scopes, 'scopes')! }),
    ...(expires === undefined ? {} : { expiresIn: expires }),
    ...limitFields(body),
  };
}

/**
 * A new key is stored even when announcing what it replaces failed (revocation backend
 * unreachable): its secret is answered all the same, once, with `announced: false` and the
 * command that announces it, never lost behind a 500.
 */
async function stored<T extends object>(op: Promise<T>): Promise<T | (T & { announced: false; announceError: string; retry: string })> {
  try {
    return await op;
  } catch (err) {
    if (!(err instanceof AnnouncementError)) throw err;
    return { ...(err.result as T), announced: false, announceError: err.message, retry: err.retry };
  }
}

/**
 * The admin API (on the admin listener): the same key and token services the CLI uses,
 * so a CLI talking to a running gateway and one opening the store act identically. Errors
 * are answered from the one problem table (a key-service refusal by its own code).
 */
export function adminRoutes(core: { readonly keys: KeyService; readonly tokens: TokenService }): AdminRoute[] {
  const body = async (req: Parameters<AdminRoute['handler']>[0]) => {
    const b = await req.body();
    if (b === null || typeof b !== 'object' || Array.isArray(b)) throw invalid('the body must be a JSON object');
    return b as Record<string, unknown>;
  };
  return [
    { method: 'POST', pattern: '/admin/v1/keys', handler: async (req) => ({ status: 201, body: await stored(core.keys.create(createOptions(await body(req)))) }) },
    { method: 'GET', pattern: '/admin/v1/keys', handler: async (req) => ({ status: 200, body: await core.keys.list({ subject: req.query.get('subject') ?? undefined }) }) },
    { method: 'POST', pattern: '/admin/v1/keys/:id/revoke', handler: async (req) => ({ status: 200, body: await core.keys.revoke(req.params.id!) }) },
    { method: 'PATCH', pattern: '/admin/v1/keys/:id', handler: async (req) => ({ status: 200, body: await core.keys.update(req.params.id!, updateOptions(await body(req))) }) },
    {
      method: 'POST', pattern: '/admin/v1/keys/revoke-by-name',
      handler: async (req) => {
        const b = await body(req);
        if (typeof b.name !== 'string') throw invalid('name must be a string');
        if (b.subject !== undefined && typeof b.subject !== 'string') throw invalid('subject must be a string');
        return { status: 200, body: await core.keys.revokeByName(b.name, b.subject) };
      },
    },
    {
      method: 'POST', pattern: '/admin/v1/keys/:id/rotate',
      handler: async (req) => {
        const b = await body(req);
        return { status: 201, body: await stored(core.keys.rotate(req.params.id!, duration(b.grace, 'grace'))) };
      },
    },
    {
      method: 'POST', pattern: '/admin/v1/subjects/:subject/revoke-keys',
      handler: async (req) => ({ status: 200, body: await core.keys.revokeSubject(req.params.subject!) }),
    },
    {
      method: 'POST', pattern: '/admin/v1/keys/import',
      handler: async (req) => {
        const b = await body(req);
        if (typeof b.content !== 'string') throw invalid('content must be the JSON-lines text');
        return { status: 201, body: await core.keys.importKeys(b.content, typeof b.file === 'string' ? b.file : 'import') };
      },
    },
    {
      method: 'POST', pattern: '/admin/v1/tokens/revoke',
      handler: async (req) => {
        const b = await body(req);
        if (typeof b.subject === 'string') return { status: 200, body: await core.tokens.revokeSubject(b.subject) };
        if (typeof b.jti !== 'string') throw invalid('give jti or subject');
        let until: number | undefined;
        if (b.until !== undefined) {
          until = typeof b.until === 'string' ? Date.parse(b.until) : NaN;
          if (!Number.isFinite(until)) throw invalid('until must be an ISO 8601 time');
        }
        return { status: 200, body: await core.tokens.revokeJti(b.jti, until) };
      },
    },
  ];
}
