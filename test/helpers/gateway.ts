import pino from 'pino';
import { Writable } from 'node:stream';
import { parseConfig } from '../../src/config/load.js';
import { Gateway, type Services } from '../../src/gateway.js';
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
  constructor(private readonly table: Record<string, Partial<Identity> & { subject: string; role: string }>, private readonly ranks: Map<string, number>) {}
  authenticate(c: Credential): Identity {
    const e = this.table[c.value];
    if (!e) throw new GatewayError('key-invalid', 'Unknown API key.');
    const scopes = e.scopes ?? [];
    return { method: 'apiKey', audiences: [], issuedAt: 0, revocationId: `key:${e.subject}`, scopesHeader: scopes.join(' '), roleRank: this.ranks.get(e.role) ?? -1, ...e, scopes } as Identity;
  }
}

export interface TestGateway {
  gw: Gateway;
  url: string;
  records: RequestRecord[];
  lines: string[];
  close(): Promise<void>;
}

export async function startTestGateway(
  yaml: string,
  opts: { services?: Partial<Services>; table?: ConstructorParameters<typeof TableAuthenticator>[0]; env?: Record<string, string>; observers?: PipelineObserver[] } = {},
): Promise<TestGateway> {
  const loaded = parseConfig(yaml, 'test.yaml', opts.env ?? {});
  const records: RequestRecord[] = [];
  const observer: PipelineObserver = { onRequest: (r) => records.push(r) };
  const { logger, lines } = memoryLogger();
  const apiKey = opts.table ? new TableAuthenticator(opts.table, loaded.config.roleRanks as Map<string, number>) : undefined;
  const services: Services = {
    authenticators: () => ({ apiKey }),
    revocation: { isRevoked: () => false },
    close: async () => {},
    ...opts.services,
  };
  const gw = await Gateway.start(loaded, { services, logger, observers: [observer, ...(opts.observers ?? [])], listen: { host: '127.0.0.1', port: 0 } });
  return { gw, url: gw.url(), records, lines, close: () => gw.close(100) };
}
