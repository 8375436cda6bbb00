// Shared set-up of the example suites: the example's config started as the gateway would be
// on a throw-away PostgreSQL database, and the CLI run on the same file and environment.
import type { Test } from 'tap';
import { main } from '../../src/cli.js';
import type { Io } from '../../src/commands/io.js';
import { loadConfigFile, type LoadResult } from '../../src/config/load.js';
import { startPortcullis, type Portcullis } from '../../src/server.js';
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
export async function startExample(t: Test, config: string, env: (urls: { db: string; upstream: string }) => Record<string, string>): Promise<ExampleGateway> {
  const db = await tempDatabase();
  t.teardown(() => db.drop());
  const up = await startUpstream();
  t.teardown(() => up.close());
  Object.assign(process.env, env({ db: db.url, upstream: up.url }));
  const loaded = await loadConfigFile(config);
  const { logger } = memoryLogger();
  const p = await startPortcullis(loaded, { logger, listen: { host: '127.0.0.1', port: 0 }, admin: { host: '127.0.0.1', port: 0 } });
  t.teardown(() => p.close(100));
  return {
    p,
    loaded,
    up,
    url: p.gateway.url(),
    portcullis: async (...args) => {
      let out = '';
      let err = '';
      const io: Io = { out: (s) => void (out += s + '\n'), err: (s) => void (err += s + '\n') };
      const code = await main(['-c', config, ...args], io);
      return { code, out, err };
    },
  };
}
