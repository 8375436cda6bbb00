import type { Logger } from '../log.js';
import { Rpc, type RpcPort } from './rpc.js';

/** What a worker process runs: one gateway without an admin listener. */
export interface WorkerGateway {
  /** Where it listens (the primary logs it once for all). */
  address(): { host: string; port: number } | undefined;
  /** Whether this worker's dependencies are ready (what `/readyz` would say for it alone). */
  ready(): Promise<boolean>;
  /** Its metrics registry as `getMetricsAsJSON()` gives it, for the primary to sum. */
  metrics(): Promise<object>;
  /** Re-reads the config file; the problems when it was refused. */
  reload(): Promise<{ ok: boolean; problems?: readonly string[] }>;
  close(drainMs?: number): Promise<void>;
}

/** The channel to the primary, for a worker's own requests (shared rate limits). */
export function primaryChannel(): Rpc {
  return (channel ??= new Rpc(process as unknown as RpcPort));
}
let channel: Rpc | undefined;

/**
 * Runs this process as one worker of `serve --workers N`: starts the gateway, tells the
 * primary it listens, answers its questions, and drains and exits when told to, when the
 * primary is gone (the IPC channel closed), or on its own SIGTERM/SIGINT.
 */
export async function runWorker(start: () => Promise<WorkerGateway>, logger: Logger): Promise<void> {
  const rpc = primaryChannel();
  let gw: WorkerGateway;
  try {
    gw = await start();
  } catch (err) {
    rpc.notify('failed', (err as Error).message);
    throw err;
  }
  // Reloads come from the primary (which re-reads the file once for all).
  process.on('SIGHUP', () => undefined);
  rpc.handle('ready', () => gw.ready());
  rpc.handle('metrics', () => gw.metrics());
  rpc.handle('reload', () => gw.reload());
  await new Promise<void>((resolve) => {
    let closing = false;
    const stop = (drainMs: number | undefined, why: string) => {
      if (closing) return;
      closing = true;
      logger.info({ why }, 'worker draining');
      gw.close(drainMs).then(resolve, (err: unknown) => {
        logger.error({ err }, 'error while shutting down');
        resolve();
      });
    };
    rpc.onNotice('shutdown', (arg) => stop((arg as { drainMs?: number } | undefined)?.drainMs, 'primary asked'));
    process.once('disconnect', () => stop(undefined, 'primary gone'));
    // A signal to this worker alone drains it (the primary then starts a replacement); a
    // terminal's Ctrl-C reaches the whole group, the primary included.
    process.once('SIGTERM', () => stop(undefined, 'SIGTERM'));
    process.once('SIGINT', () => stop(undefined, 'SIGINT'));
    rpc.notify('listening', gw.address());
  });
  rpc.close();
  process.disconnect?.();
}
