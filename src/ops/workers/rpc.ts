/**
 * Requests and answers between the primary and its workers over Node's IPC channel
 * (`process.send` in a worker, `worker.send` in the primary). Every message is a plain
 * object tagged `portcullis`, so other IPC users of the same channel are left alone.
 */

/** What one side asks of the other; `op` names a handler registered on the other side. */
export interface RpcRequest {
  readonly portcullis: 'req';
  readonly id: number;
  readonly op: string;
  readonly arg?: unknown;
}

export interface RpcResponse {
  readonly portcullis: 'res';
  readonly id: number;
  readonly ok: boolean;
  readonly value?: unknown;
  readonly error?: string;
}

/** A one-way notice (`reload`, `shutdown`, `listening`…). */
export interface RpcNotice {
  readonly portcullis: 'notice';
  readonly op: string;
  readonly arg?: unknown;
}

export type RpcMessage = RpcRequest | RpcResponse | RpcNotice;

export type RpcHandler = (arg: unknown) => unknown;

/** The transport one end of the channel writes to and reads from. */
export interface RpcPort {
  send(message: RpcMessage): void;
  on(event: 'message', listener: (message: unknown) => void): void;
  off(event: 'message', listener: (message: unknown) => void): void;
}

export class RpcTimeoutError extends Error {
  constructor(op: string, ms: number) {
    super(`no answer to ${op} within ${ms} ms`);
    this.name = 'RpcTimeoutError';
  }
}

/**
 * One end of the channel: `call` sends a request and resolves with the other side's
 * answer (rejects on its error, a timeout, or the channel closing); `handle` answers the
 * other side's requests; `onNotice` hears one-way messages.
 */
export class Rpc {
  readonly #port: RpcPort;
  readonly #handlers = new Map<string, RpcHandler>();
  readonly #notices = new Map<string, (arg: unknown) => void>();
  readonly #pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
  #next = 1;
  readonly #listener = (m: unknown) => this.#receive(m);

  constructor(port: RpcPort) {
    this.#port = port;
    port.on('message', this.#listener);
  }

  handle(op: string, handler: RpcHandler): this {
    this.#handlers.set(op, handler);
    return this;
  }

  onNotice(op: string, listener: (arg: unknown) => void): this {
    this.#notices.set(op, listener);
    return this;
  }

  notify(op: string, arg?: unknown): void {
    this.#send({ portcullis: 'notice', op, arg });
  }

  call<T = unknown>(op: string, arg: unknown, timeoutMs: number): Promise<T> {
    const id = this.#next++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new RpcTimeoutError(op, timeoutMs));
      }, timeoutMs);
      this.#pending.set(id, { resolve: resolve as (v: unknown) => void, reject, timer });
      try {
        this.#port.send({ portcullis: 'req', id, op, arg });
      } catch (err) {
        clearTimeout(timer);
        this.#pending.delete(id);
        reject(err as Error);
      }
    });
  }

  /** Fails every request still waiting (the other side is gone) and stops listening. */
  close(reason = 'channel closed'): void {
    this.#port.off('message', this.#listener);
    for (const [id, p] of this.#pending) {
      clearTimeout(p.timer);
      this.#pending.delete(id);
      p.reject(new Error(reason));
    }
  }

  #send(m: RpcMessage): void {
    try {
      this.#port.send(m);
    } catch {
      // The other side is gone; its requests fail by timeout or close().
    }
  }

  #receive(m: unknown): void {
    if (typeof m !== 'object' || m === null) return;
    const msg = m as Partial<RpcMessage>;
    if (msg.portcullis === 'res') {
      const r = msg as RpcResponse;
      const p = this.#pending.get(r.id);
      if (p === undefined) return;
      this.#pending.delete(r.id);
      clearTimeout(p.timer);
      if (r.ok) p.resolve(r.value);
      else p.reject(new Error(r.error ?? 'failed'));
    } else if (msg.portcullis === 'req') {
      void this.#answer(msg as RpcRequest);
    } else if (msg.portcullis === 'notice') {
      const n = msg as RpcNotice;
      this.#notices.get(n.op)?.(n.arg);
    }
  }

  async #answer(req: RpcRequest): Promise<void> {
    const handler = this.#handlers.get(req.op);
    if (handler === undefined) {
      this.#send({ portcullis: 'res', id: req.id, ok: false, error: `unknown request ${req.op}` });
      return;
    }
    try {
      const value = await handler(req.arg);
      this.#send({ portcullis: 'res', id: req.id, ok: true, value });
    } catch (err) {
      this.#send({ portcullis: 'res', id: req.id, ok: false, error: (err as Error).message });
    }
  }
}
