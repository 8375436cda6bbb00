import pino from 'pino';
import { Writable } from 'node:stream';
import { parseConfig, type LoadResult } from '../../src/config/load.js';
import { GatewayListener } from '../../src/pipeline/listener.js';
import { nextRuntime, type Authenticators } from '../../src/runtime.js';
import type { RevocationCheck } from '../../src/revocation/check.js';
import type { RateLimiter } from '../../src/limits/types.js';
import type { Authenticator, Credential, Identity } from '../../src/authn/types.js';
import { GatewayError } from '../../src/http/problem.js';
import type { PipelineObserver, RequestRecord } from '../../src/ops/record.js';

/** Collects the gateway's log lines so tests can read them. */
export function memoryLogger(level = 'info') {
  const lines: string[] = [];
  const stream = new Writable({ write(chunk, _enc, cb) { lines.push(...chunk.toString().split('\n').filter(Boolean)); cb(); } });
  return { logger: pino({ level, base: undefined }, stream), lines };
}

/**
 * Authenticates a fixed table of opaque values. Lets pipeline tests exercise forwarding
 * and authorization independently of the key store; the real authenticators have their
 * own suites and are wired by the composition root.
 */
export class TableAuthenticator implements Authenticator {
  readonly kind = 'apiKey' as const;
  private readonly table: Record<string, Partial<Identity> & { subject: string; role: string }>;
  private readonly ranks: Map<string, number>;
  constructor(table: Record<string, Partial<Identity> & { subject: string; role: string }>, ranks: Map<string, number>) {
    this.table = table;
    this.ranks = ranks;
  }
  authenticate(c: Credential): Identity {
    const e = this.table[c.value];
    if (!e) throw new GatewayError('key-invalid', 'Unknown API key.');
    const scopes = e.scopes ?? [];
    return { method: 'apiKey', audiences: [], issuedAt: 0, revocationId: `key:${e.subject}`, scopesHeader: scopes.join(' '), roleRank: this.ranks.get(e.role) ?? -1, ...e, scopes } as Identity;
  }
}

/** What a test gateway serves with in place of the store-backed ones. */
export interface TestServices {
  authenticators(): Authenticators;
  revocation: RevocationCheck;
  limiter?: RateLimiter;
}

export interface TestGateway {
  gw: GatewayListener;
  url: string;
  records: RequestRecord[];
  lines: string[];
  /** Swaps in a runtime built from `loaded`, as a reload of `serve` does. */
  reload(loaded: LoadResult): Promise<void>;
  close(): Promise<void>;
}

/** The gateway listener alone, on a table of keys (or the given services) and no store. */
export async function startTestGateway(
  yaml: string,
  opts: { services?: Partial<TestServices>; table?: ConstructorParameters<typeof TableAuthenticator>[0]; env?: Record<string, string>; observers?: PipelineObserver[] } = {},
): Promise<TestGateway> {
  const loaded = parseConfig(yaml, 'test.yaml', opts.env ?? {});
  const records: RequestRecord[] = [];
  const observer: PipelineObserver = { onRequest: (r) => records.push(r) };
  const { logger, lines } = memoryLogger();
  const apiKey = opts.table ? new TableAuthenticator(opts.table, loaded.config.roleRanks as Map<string, number>) : undefined;
  const services: TestServices = {
    authenticators: () => ({ apiKey }),
    revocation: { isRevoked: () => false },
    ...opts.services,
  };
  for (const w of loaded.warnings) logger.warn(w);
  const gw = await GatewayListener.start(await nextRuntime(loaded.config, services.authenticators()), {
    revocation: services.revocation,
    limiter: services.limiter,
    logger,
    observers: [observer, ...(opts.observers ?? [])],
    listen: { host: '127.0.0.1', port: 0 },
  });
  const reload = async (next: LoadResult) => {
    gw.swap(await nextRuntime(next.config, services.authenticators(), gw.pipeline.current));
    for (const w of next.warnings) logger.warn(w);
  };
  return { gw, url: gw.url(), records, lines, reload, close: () => gw.close(100) };
}
