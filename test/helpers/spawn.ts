import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const BIN = new URL('../../bin/portcullis.js', import.meta.url).pathname;

export interface GatewayProcess {
  child: ChildProcess;
  url: string;
  port: number;
  adminUrl: string | undefined;
  configFile: string;
  dir: string;
  /** Every stdout line so far (JSON log lines). */
  lines: string[];
  rssKb(): number;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/**
 * Runs `portcullis serve` from the build (dist/) in a child process on a config written to a
 * temp dir; resolves once it logs that it listens. Set `listen.port: 0` in the config.
 */
export async function spawnGateway(configYaml: string, opts: { env?: Record<string, string>; args?: string[]; timeoutMs?: number } = {}): Promise<GatewayProcess> {
  const dir = mkdtempSync(join(tmpdir(), 'pcl-gw-'));
  const configFile = join(dir, 'gateway.config.yaml');
  writeFileSync(configFile, configYaml);
  const child = spawn(process.execPath, [BIN, 'serve', '-c', configFile, ...(opts.args ?? [])], {
    env: { ...process.env, ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
    cwd: dir,
  });
  const lines: string[] = [];
  let stderr = '';
  child.stderr!.on('data', (d) => { stderr += d; });
  const ready = new Promise<{ port: number; admin?: number }>((resolve, reject) => {
    let buf = '';
    let port: number | undefined;
    let admin: number | undefined;
    const timer = setTimeout(() => reject(new Error(`gateway did not start in time\n${stderr}\n${lines.join('\n')}`)), opts.timeoutMs ?? 45_000);
    child.stdout!.on('data', (d) => {
      buf += d;
      let i: number;
      while ((i = buf.indexOf('\n')) !== -1) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        lines.push(line);
        try {
          const j = JSON.parse(line);
          if (j.msg === 'admin listening') admin = j.address.port;
          if (j.msg === 'portcullis listening') port = j.address.port;
          if (port !== undefined && admin !== undefined) {
            clearTimeout(timer);
            setTimeout(() => resolve({ port: port!, admin }), 0);
          }
        } catch { /* not JSON */ }
      }
    });
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`gateway exited with ${code}\n${stderr}\n${lines.join('\n')}`)); });
  });
  const { port, admin } = await ready;
  return {
    child, port, dir, configFile, lines,
    url: `http://127.0.0.1:${port}`,
    adminUrl: admin === undefined ? undefined : `http://127.0.0.1:${admin}`,
    rssKb: () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))?.[1] ?? 0),
    stop: (signal = 'SIGTERM') =>
      new Promise((resolve) => {
        if (child.exitCode !== null) return resolve(child.exitCode);
        child.once('exit', (code) => resolve(code));
        child.kill(signal);
      }),
  };
}

/** The pids of a `serve --workers` gateway's live workers, from its log lines. */
export function workerPidsOf(lines: readonly string[]): Set<number> {
  const pids = new Set<number>();
  for (const l of lines) {
    try {
      const j = JSON.parse(l);
      if (j.msg === 'worker listening') pids.add(j.pid);
      if (j.msg === 'worker died; starting a replacement') pids.delete(j.workerPid);
    } catch { /* not JSON */ }
  }
  return pids;
}
