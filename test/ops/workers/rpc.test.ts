import t from 'tap';
import { EventEmitter } from 'node:events';
import { Rpc, RpcTimeoutError, type RpcMessage, type RpcPort } from '../../../src/ops/workers/rpc.js';

/** Two ends of an in-process channel, delivering asynchronously like IPC does. */
function pair(): [RpcPort, RpcPort] {
  const a = new EventEmitter();
  const b = new EventEmitter();
  const port = (self: EventEmitter, other: EventEmitter): RpcPort => ({
    send: (m: RpcMessage) => void setImmediate(() => other.emit('message', structuredClone(m))),
    on: (e, l) => void self.on(e, l),
    off: (e, l) => void self.off(e, l),
  });
  return [port(a, b), port(b, a)];
}

t.test('a call is answered by the handler on the other side, in either direction', async (t) => {
  const [pa, pb] = pair();
  const a = new Rpc(pa).handle('double', (x) => (x as number) * 2);
  const b = new Rpc(pb).handle('greet', async (x) => `hello ${String(x)}`);
  t.equal(await b.call('double', 21, 1000), 42);
  t.equal(await a.call('greet', 'primary', 1000), 'hello primary');
  const many = await Promise.all([1, 2, 3, 4].map((n) => b.call('double', n, 1000)));
  t.same(many, [2, 4, 6, 8], 'concurrent calls each get their own answer');
});

t.test('failures reach the caller as rejections', async (t) => {
  const [pa, pb] = pair();
  new Rpc(pa).handle('boom', () => {
    throw new Error('it broke');
  });
  const b = new Rpc(pb);
  await t.rejects(b.call('boom', null, 1000), /it broke/);
  await t.rejects(b.call('nothing-here', null, 1000), /unknown request nothing-here/);
});

t.test('no answer: a timeout; a closed end fails what is pending', async (t) => {
  const [, pb] = pair();
  const b = new Rpc(pb);
  await t.rejects(b.call('silence', null, 50), RpcTimeoutError);
  const pending = b.call('silence', null, 10_000);
  b.close('worker exited');
  await t.rejects(pending, /worker exited/);
});

t.test('notices are one-way; foreign messages on the channel are ignored', async (t) => {
  const [pa, pb] = pair();
  const heard: unknown[] = [];
  new Rpc(pa).onNotice('reload', (arg) => heard.push(arg));
  const b = new Rpc(pb);
  b.notify('reload', { why: 'SIGHUP' });
  b.notify('unheard');
  (pa as unknown as { on: RpcPort['on'] }).on('message', () => undefined);
  const raw = pb as RpcPort;
  raw.send({ cmd: 'NODE_something' } as unknown as RpcMessage);
  raw.send('a string' as unknown as RpcMessage);
  await new Promise((r) => setTimeout(r, 20));
  t.same(heard, [{ why: 'SIGHUP' }]);
});
