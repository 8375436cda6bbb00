import { z } from 'zod';
import { cidr, duration, lifetime, nonEmpty, timer } from './schema-parts.js';
import { admin, listen, type listenTls, tracing, upstream } from './schema-edge.js';

export { duration, MAX_TIMER_MS } from './schema-parts.js';
import { DEFAULT_STORE_URL } from '../store/open.js';

/** Longest `jwt.clockTolerance`: revocation markers and records outlive a credential by at least this (docs/reference/revocation.md). */
export const MAX_CLOCK_TOLERANCE_MS = 300_000;

const externalKey = z
  .string()
  .min(1)
  .refine((s) => /^(?:[^{}]|\{(?:token|jti|sub|sha256)\})*$/.test(s), 'a Redis key template: text with the placeholders {token}, {jti}, {sub} or {sha256}, and no other braces')
  .refine((s) => /\{(?:token|jti|sub|sha256)\}/.test(s), 'a template without a placeholder names one fixed key, which would revoke every token at once');

const revocation = z.strictObject({
  redis: z.string().default(''),
  onError: z.enum(['deny', 'allow']).default('deny'),
  keyPrefix: z.string().default('portcullis:'),
  /** Upper bound on one revocation check before `onError` applies. */
  timeout: timer.default(1_000),
  /**
   * Redis keys the fronted API itself writes to revoke a JWT (e.g. `{token}` for an API
   * that logs out with `SET <token> 1`): a token is revoked when any of them exists.
   * Taken as written, without `keyPrefix`. Redis only.
   */
  externalKeys: z.array(externalKey).default([]),
});

const claims = z.strictObject({
  subject: nonEmpty.default('sub'),
  role: nonEmpty.default('role'),
  scopes: nonEmpty.default('scope'),
});

const jwtAlgorithm = z.enum([
  'HS256', 'HS384', 'HS512',
  'RS256', 'RS384', 'RS512',
  'PS256', 'PS384', 'PS512',
  'ES256', 'ES384', 'ES512',
  'EdDSA', 'Ed25519',
]);

const issuer = z
  .strictObject({
    name: nonEmpty,
    /** Required `iss`. Omit it only for an API whose tokens carry no `iss`: such tokens then match this issuer. */
    issuer: nonEmpty.optional(),
    audience: z.union([nonEmpty, z.array(nonEmpty).min(1)]).optional(),
    algorithms: z.array(jwtAlgorithm).min(1),
    secret: z.string().optional(),
    publicKey: z.string().optional(),
    jwksUri: z.url().optional(),
    requiredClaims: z.array(nonEmpty).default([]),
    claims: claims.default({ subject: 'sub', role: 'role', scopes: 'scope' }),
    requireExp: z.boolean().default(true),
    maxTokenAge: duration.optional(),
    typ: z.string().optional(),
    /** Role given to tokens that carry none; unset: such tokens rank below every role. */
    defaultRole: z.string().optional(),
  })
  .superRefine((v, ctx) => {
    const sources = [v.secret !== undefined, v.publicKey !== undefined, v.jwksUri !== undefined].filter(Boolean).length;
    if (sources !== 1) ctx.addIssue({ code: 'custom', message: 'set exactly one of secret, publicKey or jwksUri', path: [] });
    const hs = v.algorithms.filter((a) => a.startsWith('HS'));
    if (v.secret !== undefined) {
      if (hs.length !== v.algorithms.length) ctx.addIssue({ code: 'custom', message: 'a secret verifies HS* algorithms only', path: ['algorithms'] });
      if (Buffer.byteLength(v.secret) < 32) ctx.addIssue({ code: 'custom', message: 'secret must be at least 32 bytes (256 bits)', path: ['secret'] });
    } else if (hs.length > 0) {
      ctx.addIssue({ code: 'custom', message: 'HS* algorithms need a secret, never a public key', path: ['algorithms'] });
    }
  });

const jwt = z.strictObject({
  clockTolerance: duration.refine((ms) => ms <= MAX_CLOCK_TOLERANCE_MS, 'at most 5m: revocations are kept that long past a credential\'s expiry, and a token must not outlive its revocation').default(30_000),
  jwksCooldown: timer.default(30_000),
  /** How long a fetched JWKS is fresh before a background refresh. */
  jwksCacheMaxAge: timer.default(600_000),
  jwksTimeout: timer.default(5_000),
  maxTokenBytes: z.number().int().min(256).max(65536).default(8192),
  issuers: z.array(issuer).default([]),
});

const argon2Params = z.strictObject({
  memoryCost: z.number().int().min(19_456).default(19_456),
  timeCost: z.number().int().min(2).default(2),
  parallelism: z.number().int().min(1).default(1),
});

const apiKeys = z.strictObject({
  prefix: z.string().regex(/^[a-z][a-z0-9]{1,15}$/, 'prefix: 2–16 lowercase letters or digits, starting with a letter').default('pcl'),
  defaultTtl: lifetime.default(720 * 3_600_000),
  schemes: z.array(nonEmpty).default(['Bearer', 'ApiKey']),
  headers: z.array(nonEmpty).default(['x-api-key']),
  /** Query parameters that may carry a key (off by default; removed before proxying, never logged). */
  queryParams: z.array(nonEmpty).default([]),
  cache: z.strictObject({ max: z.number().int().min(1).default(100_000), ttl: duration.default(60_000) }).default({ max: 100_000, ttl: 60_000 }),
  negativeCacheTtl: duration.default(5_000),
  hash: argon2Params.default({ memoryCost: 19_456, timeCost: 2, parallelism: 1 }),
  /** Concurrent argon2 verifications at most, and how many may wait before 503. */
  maxConcurrentVerifications: z.number().int().min(1).default(4),
  verificationQueue: z.number().int().min(0).default(256),
  failedAttempts: z
    .strictObject({
      max: z.number().int().min(1).default(10),
      window: duration.default(60_000),
      /**
       * How long a 429 for too many failed attempts is held before it is sent. A client (or a
       * flood) gets its next answer no sooner: one connection can try at most once per delay.
       */
      delay: duration.refine((ms) => ms <= 10_000, 'at most 10s: a longer hold only ties up connections').default(1_000),
    })
    .default({ max: 10, window: 60_000, delay: 1_000 }),
  lastUsedInterval: timer.default(30_000),
  refresh: z
    .strictObject({ keyTtl: lifetime.default(900_000), tokenTtl: lifetime.default(30 * 86_400_000), cookieName: nonEmpty.default('portcullis_refresh') })
    .default({ keyTtl: 900_000, tokenTtl: 30 * 86_400_000, cookieName: 'portcullis_refresh' }),
});

const headerName = z.string().regex(/^[a-z0-9-]+$/, 'header names are lowercase letters, digits and -');

const identity = z.strictObject({
  headers: z
    .strictObject({
      subject: headerName.default('x-auth-subject'),
      role: headerName.default('x-auth-role'),
      scopes: headerName.default('x-auth-scopes'),
      keyId: headerName.default('x-auth-key-id'),
      method: headerName.default('x-auth-method'),
    })
    .default({ subject: 'x-auth-subject', role: 'x-auth-role', scopes: 'x-auth-scopes', keyId: 'x-auth-key-id', method: 'x-auth-method' }),
  /** Header-name prefixes that are ours: anything inbound starting with one is stripped. */
  namespace: z.array(headerName).default(['x-auth-']),
  assertion: z
    .strictObject({ header: headerName.default('x-auth-assertion'), ttl: duration.default(60_000), privateKey: z.string().optional() })
    .optional(),
  forwardCredential: z.boolean().default(false),
});

const log = z.strictObject({
  level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  pii: z.enum(['hashed', 'plain']).default('hashed'),
  salt: z.string().default(''),
  pretty: z.boolean().default(false),
});

const methodName = z.string().regex(/^[A-Z]+$/, 'methods are upper-case, e.g. GET');
const pathPattern = z
  .string()
  .regex(/^\//, 'a path pattern starts with /')
  .refine((p) => !p.split('/').slice(0, -1).includes('**'), '** may only be the last segment');

const rateLimitPolicy = z.strictObject({
  name: z
    .string()
    .regex(/^[A-Za-z0-9_.-]+$/, 'policy names are letters, digits, "_", "." and "-"')
    // `key` names a key's own limit (`keys create --rate-limit`), counted in its own buckets.
    .refine((n) => n !== 'key', 'the policy name "key" is reserved for per-key rate limits'),
  /** Requests admitted per window, sliding: never more than this in any window-long interval. */
  limit: z.number().int().min(1),
  window: duration.refine((ms) => ms >= 1_000, 'a rate-limit window is at least 1s'),
  by: z.enum(['credential', 'subject', 'ip', 'route', 'global']).default('credential'),
});

const rateLimits = z.strictObject({
  /** Redis unreachable: `allow` (each instance enforces the limits alone meanwhile) or `deny` (503). */
  onError: z.enum(['allow', 'deny']).default('allow'),
  policies: z.array(rateLimitPolicy).default([]),
  /** Buckets kept in process (without Redis, or while it is away); least recently used go first. */
  maxBuckets: z.number().int().min(1000).default(100_000),
});

const route = z.strictObject({
  name: z.string().optional(),
  match: z.strictObject({
    path: pathPattern,
    methods: z.array(methodName).min(1).optional(),
    host: z.string().min(1).optional(),
  }),
  public: z.boolean().default(false),
  minRole: z.string().optional(),
  scopes: z.array(nonEmpty).default([]),
  audience: z.union([nonEmpty, z.array(nonEmpty).min(1)]).optional(),
  auth: z.array(z.enum(['jwt', 'apiKey'])).min(1).default(['jwt', 'apiKey']),
  /** Names of `rateLimits.policies` that apply to this route, after authentication. */
  rateLimit: z.array(nonEmpty).default([]),
  upstream: nonEmpty,
});

/** The whole file. Cross-field checks (route → upstream, minRole ∈ roles) are in `load.ts`. */
export const configSchema = z
  .strictObject({
    listen: listen.default(listen.parse({})),
    admin: admin.default(admin.parse({})),
    upstreams: z.record(z.string().regex(/^[A-Za-z0-9_-]+$/), upstream),
    roles: z.array(nonEmpty).min(1).default(['basic', 'admin']),
    trustedProxies: z.array(cidr).default([]),
    allowPathParams: z.boolean().default(false),
    store: z.strictObject({ url: nonEmpty.default(DEFAULT_STORE_URL), poolSize: z.number().int().min(1).default(10) }).default({ url: DEFAULT_STORE_URL, poolSize: 10 }),
    revocation: revocation.default(revocation.parse({})),
    jwt: jwt.default(jwt.parse({})),
    apiKeys: apiKeys.default(apiKeys.parse({})),
    identity: identity.default(identity.parse({})),
    rateLimits: rateLimits.default(rateLimits.parse({})),
    log: log.default(log.parse({})),
    tracing: tracing.default(tracing.parse({})),
    /** Worker processes sharing the listen port (docs/reference/workers.md); `auto`: one per CPU. Restart-only. */
    workers: z.union([z.number().int().min(1).max(256), z.literal('auto')]).default(1),
    shutdown: z.strictObject({ drainTimeout: timer.default(10_000) }).default({ drainTimeout: 10_000 }),
    routes: z.array(route).min(1),
  })
  .meta({ title: 'Portcullis gateway configuration' });

export type ConfigInput = z.input<typeof configSchema>;
export type RawConfig = z.output<typeof configSchema>;
export type IssuerConfig = z.output<typeof issuer>;
export type RouteConfig = z.output<typeof route>;
export type UpstreamConfig = z.output<typeof upstream>;
export type ApiKeysConfig = z.output<typeof apiKeys>;
export type JwtConfig = z.output<typeof jwt>;
export type RevocationConfig = z.output<typeof revocation>;
export type IdentityConfig = z.output<typeof identity>;
export type ListenTlsConfig = z.output<typeof listenTls>;
export type TracingConfig = z.output<typeof tracing>;
export type RateLimitsConfig = z.output<typeof rateLimits>;

/** JSON Schema of the config file (input side), for editors. */
export function configJsonSchema(): Record<string, unknown> {
  return z.toJSONSchema(configSchema, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;
}
