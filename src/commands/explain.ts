import type { Command } from 'commander';
import { roleRank, type GatewayConfig } from '../config/load.js';
import { buildRuntime, type Runtime } from '../runtime.js';
import { clientAddress, route } from '../pipeline/decide.js';
import { denialReason } from '../authz/authorize.js';
import { GatewayError, PROBLEMS } from '../http/problem.js';
import { quotaExhausted } from '../limits/apply.js';
import type { Identity } from '../authn/types.js';
import { extractCredential } from '../credentials/extract.js';
import { loadCommandConfig, type Io } from './io.js';

export interface ExplainStep {
  step: string;
  ok: boolean;
  detail: string;
}

export interface Explanation {
  method: string;
  target: string;
  normalizedPath?: string;
  route?: { index: number; pattern: string; upstream: string; public: boolean; minRole?: string | undefined; scopes: readonly string[] };
  /**
   * Rate-limit policies of the matched route, then the key's own limit (`own: true`), as
   * the limiter counts them once the request is admitted.
   */
  rateLimits?: Array<{ name: string; limit: number; windowMs: number; by: string; own?: true }>;
  /** Usage credits left for the key's lineage (absent: the key has none, it is unlimited). */
  credits?: { remaining: number };
  steps: ExplainStep[];
  decision: 'allow' | 'deny';
  status: number;
  code?: string;
  reason: string;
}

export interface ExplainInput {
  method: string;
  url: string;
  role?: string | undefined;
  scopes?: string[] | undefined;
  token?: string | undefined;
  key?: string | undefined;
  clientIp?: string | undefined;
  /** Verifies a token or key for real; given by the command when it can. */
  verify?: ((rt: Runtime, credential: { kind: 'jwt' | 'apiKey'; value: string }, steps: ExplainStep[]) => Promise<Identity>) | undefined;
  /** Reads the usage credits left for a verified key's lineage (null: unlimited); given with `verify`. */
  credits?: ((identity: Identity) => Promise<number | null>) | undefined;
}

function splitUrl(url: string): { target: string; host: string | undefined } {
  if (/^https?:\/\//i.test(url)) {
    const u = new URL(url);
    // Keep the raw path as typed: URL() would already have normalized it.
    const rest = url.slice(url.indexOf('/', url.indexOf('//') + 2) >>> 0);
    return { target: rest.startsWith('/') ? rest : '/', host: u.host };
  }
  return { target: url, host: undefined };
}

/** A verified key's own rate limit (after the route's, as the limiter counts it) and its usage credits. */
async function explainKeyLimits(out: Explanation, identity: Identity, input: ExplainInput): Promise<void> {
  const own = identity.rateLimit;
  if (own !== undefined) {
    out.rateLimits = [...(out.rateLimits ?? []), { name: own.name, limit: own.limit, windowMs: own.windowMs, by: own.by, own: true }];
    out.steps.push({ step: 'limits', ok: true, detail: `key's own "${own.name}" ${own.limit} per ${own.windowMs / 1000}s by ${own.by} (counted once admitted)` });
  }
  const remaining = identity.credits === true && input.credits ? await input.credits(identity) : null;
  if (remaining !== null) {
    out.credits = { remaining };
    out.steps.push({ step: 'credits', ok: remaining > 0, detail: `${remaining} left for the key's lineage (one spent per admitted request)` });
  }
}

/** Runs the pipeline's decision steps for a described request, without a server. */
export async function explain(config: GatewayConfig, input: ExplainInput): Promise<Explanation> {
  const rt = buildRuntime(config, {});
  const method = input.method.toUpperCase();
  const { target, host } = splitUrl(input.url);
  const steps: ExplainStep[] = [];
  const out: Explanation = { method, target, steps, decision: 'deny', status: 0, reason: '' };
  const deny = (err: GatewayError): Explanation => {
    steps.push({ step: 'decision', ok: false, detail: `${err.status} ${err.code}: ${err.message}` });
    return { ...out, decision: 'deny', status: err.status, code: err.code, reason: err.message };
  };
  const headers: Record<string, string> = { host: host ?? 'localhost' };
  if (input.token) headers['authorization'] = `Bearer ${input.token}`;
  else if (input.key) headers['authorization'] = `Bearer ${input.key}`;
  const facts = { method, target, headers, rawHeaders: Object.entries(headers).flat(), peerIp: input.clientIp ?? '127.0.0.1' };
  try {
    const m = route(rt, facts);
    out.normalizedPath = m.path;
    out.route = { index: m.route.index, pattern: m.route.pattern, upstream: m.route.upstream, public: m.route.public, minRole: m.route.minRole, scopes: m.route.scopes };
    steps.push({ step: 'normalize', ok: true, detail: m.path === target.split('?')[0] ? m.path : `${target} → ${m.path}` });
    steps.push({ step: 'match', ok: true, detail: `route ${m.route.index} (${m.route.pattern}${m.route.methods ? ` ${[...m.route.methods].join(',')}` : ''}) → upstream ${m.route.upstream}` });
    const limits = rt.routeLimits[m.route.index]!;
    if (limits.length) {
      out.rateLimits = limits.map((l) => ({ name: l.name, limit: l.limit, windowMs: l.windowMs, by: l.by }));
      steps.push({ step: 'limits', ok: true, detail: limits.map((l) => `"${l.name}" ${l.limit} per ${l.windowMs / 1000}s by ${l.by}`).join('; ') + ' (counted once admitted)' });
    }
    if (m.route.public) {
      steps.push({ step: 'decision', ok: true, detail: 'public route: no credential needed' });
      return { ...out, decision: 'allow', status: 200, reason: 'public route' };
    }
    let identity: Identity;
    if (input.token || input.key) {
      const ex = extractCredential(headers, '', rt.extract);
      const cred = ex.credential!;
      steps.push({ step: 'extract', ok: true, detail: `${cred.kind === 'jwt' ? 'JWT' : 'API key'} from ${cred.source}` });
      if (cred.kind === 'jwt' && !m.route.allowJwt) throw new GatewayError('token-invalid', 'This route does not accept JWTs.');
      if (cred.kind === 'apiKey' && !m.route.allowApiKey) throw new GatewayError('key-invalid', 'This route does not accept API keys.');
      if (!input.verify) throw new GatewayError(cred.kind === 'jwt' ? 'token-invalid' : 'key-invalid', 'Cannot verify this credential here.');
      identity = await input.verify(rt, cred, steps);
      await explainKeyLimits(out, identity, input);
    } else if (input.role !== undefined || input.scopes !== undefined) {
      const role = input.role ?? '';
      const scopes = input.scopes ?? [];
      identity = { method: 'jwt', subject: 'explain', role, roleRank: roleRank(config, role), scopes, scopesHeader: scopes.join(' '), audiences: [], issuedAt: 0, revocationId: 'explain' };
      steps.push({ step: 'identity', ok: true, detail: `assumed: role "${role}"${scopes.length ? `, scopes ${scopes.join(' ')}` : ''}` });
    } else {
      throw new GatewayError('token-missing', 'This route requires a bearer token or an API key (pass --role, --token or --key).');
    }
    const { clientIp } = clientAddress(rt, facts);
    const reason = denialReason(m.route, identity, clientIp);
    if (reason !== null) return deny(new GatewayError('authorisation-required', reason));
    steps.push({ step: 'authorize', ok: true, detail: `role "${identity.role}" meets ${m.route.minRole ? `"${m.route.minRole}"` : 'no minimum'}${m.route.scopes.length ? `; scopes ${m.route.scopes.join(' ')} present` : ''}` });
    if (out.credits?.remaining === 0) return deny(quotaExhausted(undefined));
    steps.push({ step: 'decision', ok: true, detail: `allow → upstream ${m.route.upstream} as ${m.path}` });
    return { ...out, decision: 'allow', status: 200, reason: 'authorized' };
  } catch (err) {
    if (err instanceof GatewayError) return deny(err);
    throw err;
  }
}

export function formatExplanation(e: Explanation): string {
  const lines = [`request:  ${e.method} ${e.target}`];
  if (e.normalizedPath !== undefined) lines.push(`path:     ${e.normalizedPath}`);
  if (e.route) lines.push(`route:    #${e.route.index} ${e.route.pattern} → ${e.route.upstream}${e.route.public ? ' (public)' : ''}${e.route.minRole ? ` minRole=${e.route.minRole}` : ''}${e.route.scopes.length ? ` scopes=${e.route.scopes.join(',')}` : ''}`);
  for (const s of e.steps) lines.push(`  ${s.ok ? '✓' : '✗'} ${s.step.padEnd(10)} ${s.detail}`);
  lines.push(`decision: ${e.decision.toUpperCase()}${e.code ? ` ${e.status} ${e.code} (${PROBLEMS[e.code as keyof typeof PROBLEMS]?.title ?? ''})` : ''}`);
  return lines.join('\n');
}

export type VerifierFactory = (config: GatewayConfig) => Promise<{ verify: NonNullable<ExplainInput['verify']>; credits?: ExplainInput['credits']; close(): Promise<void> }>;

export function registerExplainCommand(program: Command, io: Io, verifiers?: VerifierFactory): void {
  program
    .command('explain')
    .description('show how a request would be handled: normalized path, matching route, decision and reason')
    .argument('<method>', 'HTTP method')
    .argument('<url>', 'path (or full URL) as the client would send it')
    .option('--role <role>', 'assume an identity with this role')
    .option('--scopes <list>', 'assume these scopes (comma-separated)')
    .option('--token <jwt>', 'verify this JWT with the configured issuers')
    .option('--key <key>', 'verify this API key against the store')
    .option('--client-ip <ip>', 'client address for IP restrictions', '127.0.0.1')
    .option('--json', 'print JSON')
    .action(async (method: string, url: string, opts: { role?: string; scopes?: string; token?: string; key?: string; clientIp?: string; json?: boolean }, cmd: Command) => {
      const config = (await loadCommandConfig(cmd, io)).config;
      const v = (opts.token || opts.key) && verifiers ? await verifiers(config) : undefined;
      try {
        const e = await explain(config, {
          method, url, role: opts.role, scopes: opts.scopes?.split(',').map((s) => s.trim()).filter(Boolean),
          token: opts.token, key: opts.key, clientIp: opts.clientIp, verify: v?.verify, credits: v?.credits,
        });
        io.out(opts.json ? JSON.stringify(e, null, 2) : formatExplanation(e));
      } finally {
        await v?.close();
      }
    });
}
