import cluster, { type Worker } from 'node:cluster';
import { AggregatorRegistry } from 'prom-client';
import type { Logger } from '../log.js';
import { Rpc, type RpcHandler, type RpcPort } from './rpc.js';

/** What the primary needs to know of one worker. */
interface Member {
  readonly worker: Worker;
  readonly rpc: Rpc;
  readonly slot: number;
  readonly started: number;
  listening: boolean;
  address?: unknown;
}

export interface SupervisorOptions {
  /** How many workers to keep running. */
  readonly count: number;
  readonly logger: Logger;
  /** Requests workers may make of the primary (`limit`…). */
  readonly handlers?: Readonly<Record<string, RpcHandler>>;
  /** How long a worker may take to start listening (ms). */
  readonly startTimeoutMs?: number;
  /** Called when a worker dies unexpectedly (metrics). */
  readonly onDeath?: (slot: number, code: number | null, signal: string | null) => void;
}

export interface WorkerAnswer<T> {
  readonly slot: number;
  readonly pid: number | undefined;
  readonly value?: T;
  readonly error?: string;
}

const ANSWER_MS = 2_000;

/**
 * The primary of `serve --workers N`: keeps N worker processes running on the shared
 * listen port, replaces one that dies (after a back-off that grows while workers keep
 * dying young), and speaks to all of them — readiness, metrics, reload, shutdown.
 */
export class Supervisor {
  readonly #opts: SupervisorOptions;
  readonly #members = new Map<number, Member>();
  #stopping = false;
  #youngDeaths = 0;
  readonly #replacing = new Set<NodeJS.Timeout>();

  constructor(opts: SupervisorOptions) {
    this.#opts = opts;
  }

  get count(): number {
    return this.#opts.count;
  }

  /** Forks every worker and resolves once all listen; rejects (after stopping the rest) if one fails. */
  async start(): Promise<void> {
    const starts: Promise<void>[] = [];
    for (let slot = 0; slot < this.#opts.count; slot++) starts.push(this.#fork(slot));
    try {
      await Promise.all(starts);
    } catch (err) {
      await this.stop(0);
      throw err;
    }
  }

  /** Where the workers listen (all share one address), as the first of them reported it. */
  address(): unknown {
    for (const m of this.#members.values()) if (m.address !== undefined) return m.address;
    return undefined;
  }

  /** Workers currently up and listening. */
  listening(): number {
    let n = 0;
    for (const m of this.#members.values()) if (m.listening) n++;
    return n;
  }

  /** Asks every live worker `op` and gathers the answers (an error per worker that failed). */
  async ask<T>(op: string, arg?: unknown, timeoutMs = ANSWER_MS): Promise<WorkerAnswer<T>[]> {
    const members = [...this.#members.values()];
    return Promise.all(
      members.map(async (m) => {
        try {
          const value = await m.rpc.call<T>(op, arg, timeoutMs);
          return { slot: m.slot, pid: m.worker.process.pid, value };
        } catch (err) {
          return { slot: m.slot, pid: m.worker.process.pid, error: (err as Error).message };
        }
      }),
    );
  }

  /** Ready when every slot has a listening worker whose answer to `ready` is accepted. */
  async ready(accept: (answer: unknown) => boolean = (a) => a === true): Promise<boolean> {
    if (this.#stopping || this.listening() < this.#opts.count) return false;
    const answers = await this.ask<unknown>('ready');
    return answers.length === this.#opts.count && answers.every((a) => a.error === undefined && accept(a.value));
  }

  /** Every worker's metrics, summed (prom-client's cluster aggregation), with the primary's own. */
  async metrics(own: readonly object[] = []): Promise<string> {
    const answers = await this.ask<object>('metrics');
    const all = [...own, ...answers.flatMap((a) => (a.value === undefined ? [] : [a.value]))];
    return AggregatorRegistry.aggregate(all).metrics();
  }

  /** Stops replacing workers, asks each to drain and exit, and waits for them (killing stragglers). */
  async stop(drainMs: number): Promise<void> {
    this.#stopping = true;
    for (const t of this.#replacing) clearTimeout(t);
    this.#replacing.clear();
    const exits = [...this.#members.values()].map((m) => this.#stopOne(m, drainMs));
    await Promise.all(exits);
  }

  #stopOne(m: Member, drainMs: number): Promise<void> {
    return new Promise<void>((resolve) => {
      if (m.worker.isDead()) return resolve();
      const kill = setTimeout(() => m.worker.process.kill('SIGKILL'), drainMs + 5_000);
      m.worker.once('exit', () => {
        clearTimeout(kill);
        resolve();
      });
      m.rpc.notify('shutdown', { drainMs });
    });
  }

  /** Starts a worker in `slot`; a replacement that dies while starting is itself replaced. */
  #fork(slot: number, replacement = false): Promise<void> {
    const worker = cluster.fork({ PORTCULLIS_WORKER_SLOT: String(slot) });
    const rpc = new Rpc(worker as unknown as RpcPort);
    for (const [op, h] of Object.entries(this.#opts.handlers ?? {})) rpc.handle(op, h);
    const member: Member = { worker, rpc, slot, started: Date.now(), listening: false };
    this.#members.set(worker.id, member);
    const log = this.#opts.logger;
    return new Promise<void>((resolve, reject) => {
      let settled = false;
      const timer = setTimeout(() => {
        if (settled) return;
        settled = true;
        reject(new Error(`worker ${slot} did not start listening within ${this.#opts.startTimeoutMs ?? 30_000} ms`));
      }, this.#opts.startTimeoutMs ?? 30_000);
      rpc.onNotice('listening', (address) => {
        member.listening = true;
        member.address = address;
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve();
      });
      rpc.onNotice('failed', (why) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        reject(new Error(`worker ${slot} failed to start: ${String(why)}`));
      });
      worker.once('exit', (code, signal) => {
        clearTimeout(timer);
        rpc.close(`worker ${slot} exited`);
        this.#members.delete(worker.id);
        if (!settled) {
          settled = true;
          reject(new Error(`worker ${slot} exited while starting (code ${code}, signal ${signal})`));
          if (!replacement) return;
        }
        if (this.#stopping) return;
        this.#opts.onDeath?.(slot, code, signal);
        const young = Date.now() - member.started < 10_000;
        this.#youngDeaths = young ? this.#youngDeaths + 1 : 0;
        const delay = young ? Math.min(30_000, 250 * 2 ** Math.min(this.#youngDeaths - 1, 7)) : 0;
        log.error({ worker: slot, workerPid: worker.process.pid, code, signal, restartInMs: delay }, 'worker died; starting a replacement');
        const t = setTimeout(() => {
          this.#replacing.delete(t);
          if (this.#stopping) return;
          this.#fork(slot, true).catch((err) => log.error({ worker: slot, err: { message: (err as Error).message } }, 'replacement worker failed to start'));
        }, delay);
        this.#replacing.add(t);
      });
    });
  }
}
