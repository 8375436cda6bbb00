import type { ServerTls, TlsFiles } from '../../net/tls.js';
import type { Logger } from '../log.js';
import { Rpc, type RpcPort } from './rpc.js';

/**
 * The config the primary applied, as it hands it to its workers: the file's text and the
 * PEM files it names as the primary read them, its generation (1 at start, one more for
 * every reload the primary applied), and the restart-only sections the instance started on.
 * Workers never read the config or PEM files themselves: a replacement started after they
 * were edited without a reload, or after a reload that changed a restart-only section (the
 * store, say), serves what the others serve.
 */
export interface AppliedConfig {
  readonly generation: number;
  readonly text: string;
  /** The PEM files `text` names, as the primary read them (workers never read them from disk). */
  readonly tlsFiles: TlsFiles;
  /** The restart-only sections the instance started on: a worker started later opens what the others run on. */
  readonly running: Readonly<Record<string, unknown>>;
  /**
   * What every worker's listener serves: HTTPS with these files, or plain HTTP (null).
   * Turning TLS on or off takes a restart, so a reload that does keeps the protocol (and,
   * turning it off, the last certificates), for a worker started later as for the others.
   */
  readonly listenTls: ServerTls | null;
}

/** A worker's answer to `ready`: whether it is, and the generation it serves. */
export interface WorkerState {
  readonly ready: boolean;
  readonly generation: number;
}

/** A worker's answer to `reload`: whether it serves the config sent, and the generation it serves. */
export interface ReloadAnswer {
  readonly ok: boolean;
  readonly generation: number;
  readonly problems?: readonly string[];
}

/** What a worker process runs: one gateway without an admin listener. */
export interface WorkerGateway {
  readonly logger: Logger;
  /** Where it listens (the primary logs it once for all). */
  address(): { host: string; port: number } | undefined;
  /** Whether this worker's dependencies are ready (what `/readyz` would say for it alone). */
  ready(): Promise<boolean>;
  /** Its metrics registry as `getMetricsAsJSON()` gives it, for the primary to sum. */
  metrics(): Promise<object>;
  /** Applies a config the primary sent; the problems when it was refused. */
  reload(config: AppliedConfig): Promise<{ ok: boolean; problems?: readonly string[] }>;
  close(drainMs?: number): Promise<void>;
}

/** The channel to the primary, for a worker's own requests (shared rate limits). */
export function primaryChannel(): Rpc {
  return (channel ??= new Rpc(process as unknown as RpcPort));
}
let channel: Rpc | undefined;

/** How long a starting worker waits for the primary to hand it the config. */
const CONFIG_MS = 10_000;

/**
 * Runs this process as one worker of `serve --workers N`: asks the primary for the config
 * it applied, starts the gateway on it, tells the primary it listens, answers its
 * questions, and drains and exits when told to, when the primary is gone (the IPC channel
 * closed), or on its own SIGTERM/SIGINT.
 *
 * The handlers are in place before anything else, so a reload the primary sends while this
 * worker starts is kept and applied as soon as it has started; `ready` and `reload` answer
 * the generation served, which the primary compares with its own.
 */
export async function runWorker(start: (config: AppliedConfig) => Promise<WorkerGateway>): Promise<void> {
  const rpc = primaryChannel();
  const state = new WorkerConfigs();
  // Reloads come from the primary (which reads the file once for all).
  process.on('SIGHUP', () => undefined);
  rpc.handle('ready', () => state.ready());
  rpc.handle('metrics', async () => (await state.started).metrics());
  rpc.handle('reload', (arg) => state.offer(arg as AppliedConfig));
  let gw: WorkerGateway;
  try {
    const initial = await rpc.call<AppliedConfig>('config', undefined, CONFIG_MS);
    gw = await state.start(initial, start);
  } catch (err) {
    rpc.notify('failed', (err as Error).message);
    throw err;
  }
  await new Promise<void>((resolve) => {
    let closing = false;
    const stop = (drainMs: number | undefined, why: string) => {
      if (closing) return;
      closing = true;
      gw.logger.info({ why }, 'worker draining');
      gw.close(drainMs).then(resolve, (err: unknown) => {
        gw.logger.error({ err }, 'error while shutting down');
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

/** The configs of one worker: the generation it serves and the newest the primary sent. */
class WorkerConfigs {
  #gw: WorkerGateway | undefined;
  #serving = 0;
  #newest: AppliedConfig | undefined;
  /** Reloads run one at a time, in order. */
  #applying: Promise<unknown> = Promise.resolve();
  #resolveStarted!: (gw: WorkerGateway) => void;
  #rejectStarted!: (err: unknown) => void;
  readonly started = new Promise<WorkerGateway>((resolve, reject) => {
    this.#resolveStarted = resolve;
    this.#rejectStarted = reject;
  });

  constructor() {
    // A worker that failed to start answers its pending requests with the failure.
    this.started.catch(() => undefined);
  }

  async start(initial: AppliedConfig, start: (config: AppliedConfig) => Promise<WorkerGateway>): Promise<WorkerGateway> {
    this.#keep(initial);
    try {
      this.#gw = await start(initial);
    } catch (err) {
      this.#rejectStarted(err);
      throw err;
    }
    this.#serving = initial.generation;
    this.#resolveStarted(this.#gw);
    // A reload sent while this worker started: applied now, before it reports listening.
    if (this.#newest!.generation > this.#serving) await this.#apply();
    return this.#gw;
  }

  async ready(): Promise<WorkerState> {
    const gw = this.#gw;
    return { ready: gw !== undefined && (await gw.ready()), generation: this.#serving };
  }

  /** A config from the primary: applied once started (at once when it is), unless already served. */
  async offer(config: AppliedConfig): Promise<ReloadAnswer> {
    this.#keep(config);
    await this.started;
    return this.#apply();
  }

  #keep(config: AppliedConfig): void {
    if (this.#newest === undefined || config.generation > this.#newest.generation) this.#newest = config;
  }

  #apply(): Promise<ReloadAnswer> {
    const run = this.#applying.then(async (): Promise<ReloadAnswer> => {
      const next = this.#newest!;
      if (next.generation <= this.#serving) return { ok: true, generation: this.#serving };
      const r = await this.#gw!.reload(next);
      if (r.ok) this.#serving = next.generation;
      return { ok: r.ok, generation: this.#serving, ...(r.problems ? { problems: r.problems } : {}) };
    });
    this.#applying = run.catch(() => undefined);
    return run;
  }
}
