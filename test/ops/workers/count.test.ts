import t from 'tap';
import { availableParallelism } from 'node:os';
import { availableCpus, workerCount } from '../../../src/commands/serve.js';
import { CommandError } from '../../../src/commands/io.js';

t.test('--workers: numbers, auto, and everything else refused', async (t) => {
  const table: Array<[input: number | string, expected: number | 'error']> = [
    [1, 1], ['1', 1], [4, 4], ['16', 16], [256, 256],
    ['auto', 3],
    [0, 'error'], ['0', 'error'], [257, 'error'], ['2.5', 'error'], [2.5, 'error'], ['-1', 'error'], ['two', 'error'], ['', 'error'], [' 2', 'error'], ['0x2', 'error'],
  ];
  for (const [input, expected] of table) {
    if (expected === 'error') t.throws(() => workerCount(input, () => 3), CommandError, JSON.stringify(input));
    else t.equal(workerCount(input, () => 3), expected, JSON.stringify(input));
  }
});

t.test('auto: the CPUs available, capped by a container CPU limit', async (t) => {
  const cpus = availableParallelism();
  const files = (m: Record<string, string>) => (f: string) => {
    if (m[f] === undefined) throw new Error(`ENOENT ${f}`);
    return m[f]!;
  };
  t.equal(availableCpus(files({})), cpus, 'no cgroup files: every CPU');
  t.equal(availableCpus(files({ '/sys/fs/cgroup/cpu.max': 'max 100000\n' })), cpus, 'v2, no limit');
  t.equal(availableCpus(files({ '/sys/fs/cgroup/cpu.max': '100000 100000\n' })), 1, 'v2, 1 CPU');
  t.equal(availableCpus(files({ '/sys/fs/cgroup/cpu.max': '50000 100000\n' })), 1, 'v2, half a CPU: one worker');
  t.equal(availableCpus(files({ '/sys/fs/cgroup/cpu.max': `${150000 * 64} 100000\n` })), cpus, 'v2, a limit above the CPUs: the CPUs');
  t.equal(availableCpus(files({ '/sys/fs/cgroup/cpu/cpu.cfs_quota_us': '-1\n', '/sys/fs/cgroup/cpu/cpu.cfs_period_us': '100000\n' })), cpus, 'v1, no limit');
  t.equal(availableCpus(files({ '/sys/fs/cgroup/cpu/cpu.cfs_quota_us': '100000\n', '/sys/fs/cgroup/cpu/cpu.cfs_period_us': '100000\n' })), 1, 'v1, 1 CPU');
});
