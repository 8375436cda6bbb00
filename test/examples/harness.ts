// Shared set-up of the example suites: the example's config started as the gateway would be
// on a throw-away PostgreSQL database, and the CLI run on the same file and environment.
import type { Test } from 'tap';
import type { Clock } from '../../src/clock.js';
import { main } from '../../src/cli.js';
import type { Io } from '../../src/commands/io.js';
import { loadConfigFile, type GatewayConfig, type LoadResult } from '../../src/config/load.js';
import { startPortcullis, type Portcullis } from '../../src/gateway.js';
import { memoryLogger } from '../helpers/gateway.js';
import { tempDatabase } from '../helpers/services.js';
import { startUpstream } from '../helpers/upstream.js';

export interface ExampleGateway {
  readonly p: Portcullis;
  /** The example's config as loaded with the environment set. */
  readonly loaded: LoadResult;
  /** The upstream behind the gateway; `seen` holds what it received. */
  readonly up: Awaited<ReturnType<typeof startUpstream>>;
  /** Base URL of the gateway's listener. */
  readonly url: string;
  /** Runs `portcullis -c CONFIG …` in-process; its exit code and what it printed. */
  portcullis(...args: string[]): Promise<{ code: number; out: string; err: string }>;
}

/**
 * Starts `config` with a fresh database and a recording upstream, after setting the
 * variables `env` derives from them in `process.env` (the CLI reads the same file with the
 * same environment, as an operator's shell would). Everything is torn down with `t`.
 */
export interface ExampleOptions {
  /** A changed copy of the loaded config (e.g. a Redis key prefix of the test's own). */
  adjust?: (config: GatewayConfig) => GatewayConfig;
  clock?: Clock;
  /** A database already created (a second gateway on the same store). */
  db?: string;
}

export async function startExample(
  t: Test,
  config: string,
  env: (urls: { db: string; upstream: string }) => Record<string, string>,
  opts: ExampleOptions = {},
): Promise<ExampleGateway> {
  let dbUrl = opts.db;
  if (dbUrl === undefined) {
    const db = await tempDatabase();
    t.teardown(() => db.drop());
    dbUrl = db.url;
  }
  const up = await startUpstream();
  t.teardown(() => up.close());
  Object.assign(process.env, env({ db: dbUrl, upstream: up.url }));
  const file = await loadConfigFile(config);
  const loaded = opts.adjust ? { ...file, config: opts.adjust(file.config) } : file;
  const { logger } = memoryLogger();
  const p = await startPortcullis(loaded, {
    logger,
    listen: { host: '127.0.0.1', port: 0 },
    admin: { host: '127.0.0.1', port: 0 },
    ...(opts.clock ? { clock: opts.clock } : {}),
  });
  t.teardown(() => p.close(100));
  return {
    p,
    loaded,
    up,
    url: p.gateway!.url(),
    portcullis: async (...args) => {
      let out = '';
      let err = '';
      const io: Io = { out: (s) => void (out += s + '\n'), err: (s) => void (err += s + '\n') };
      const code = await main(['-c', config, ...args], io);
      return { code, out, err };
    },
  };
}
