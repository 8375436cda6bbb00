import t from 'tap';
import { parseDuration, formatDuration } from '../../src/config/duration.js';

const cases: Array<[string, number | undefined]> = [
  ['500ms', 500], ['30s', 30_000], ['15m', 900_000], ['720h', 2_592_000_000], ['7d', 604_800_000],
  ['1.5s', 1500], ['0s', 0], ['', undefined], ['10', undefined], ['-1s', undefined], ['1w', undefined], ['s', undefined], ['1 s', undefined],
];
for (const [input, want] of cases) {
  t.equal(parseDuration(input), want, `parseDuration(${JSON.stringify(input)})`);
}
t.equal(formatDuration(2_592_000_000), '30d');
t.equal(formatDuration(3_600_000), '1h');
t.equal(formatDuration(1500), '1500ms');
