import t from 'tap';
import { generateRefreshToken } from '../../src/keys/format.js';
import { KeyService } from '../../src/keys/service.js';
import { GatewayError } from '../../src/http/problem.js';
import { openStore } from '../../src/store/open.js';
import { apiKeysConfig, FAST_HASH, TestClock } from './helpers.js';

// A refresh token is `<prefix>_rt_<key id>_<secret><checksum>`: anyone who knows a key id
// (it travels upstream in x-auth-key-id and sits in logs) can forge well-formed ones, and
// each costs an argon2 run. Failed refreshes are limited per key id like failed keys are,
// so a flood cannot keep argon2 busy and starve key verification.

const store = await openStore('sqlite://memory', { migrate: true });
t.teardown(() => store.close());
const clock = new TestClock();
const svc = new KeyService({ store, config: apiKeysConfig({ hash: FAST_HASH, failedAttempts: { max: 3, window: 60_000, delay: 0 } }), clock, roles: ['basic'] });

async function outcome(token: string): Promise<{ code?: string; retryAfter?: string }> {
  try {
    await svc.refresh(token);
    return {};
  } catch (err) {
    if (!(err instanceof GatewayError)) throw err;
    const retryAfter = err.headers?.['retry-after'];
    return retryAfter === undefined ? { code: err.code } : { code: err.code, retryAfter: String(retryAfter) };
  }
}

t.test('forged refresh tokens for one key id are limited', async (t) => {
  const k = await svc.create({ subject: 'ann', role: 'basic', refreshable: true });
  const other = await svc.create({ subject: 'ben', role: 'basic', refreshable: true });
  for (let i = 1; i <= 3; i++) t.same(await outcome(generateRefreshToken('pcl', k.id).key), { code: 'refresh-invalid' }, `forged token ${i}`);
  t.same(await outcome(generateRefreshToken('pcl', k.id).key), { code: 'rate-limited', retryAfter: '60' }, 'then 429 with Retry-After, without verifying');
  t.same(await outcome(k.refreshToken!), { code: 'rate-limited', retryAfter: '60' }, 'the holder waits too, until the window ends');
  clock.advance(30_000);
  t.same(await outcome(k.refreshToken!), { code: 'rate-limited', retryAfter: '30' });
  t.same(await outcome(other.refreshToken!), {}, 'other keys refresh as usual');
  clock.advance(30_000);
  t.same(await outcome(k.refreshToken!), {}, 'after the window the holder refreshes');
  t.same(await outcome(k.refreshToken!), { code: 'refresh-invalid' }, 'and a replay is still detected');
});

t.test('malformed tokens and unknown ids cost no argon2 and are not counted against a key', async (t) => {
  const k = await svc.create({ subject: 'cat', role: 'basic', refreshable: true });
  for (let i = 0; i < 5; i++) t.same(await outcome(`pcl_rt_${k.id}_short`), { code: 'refresh-invalid' });
  for (let i = 0; i < 5; i++) t.same(await outcome(generateRefreshToken('pcl', 'unknownkeyid01').key), { code: 'refresh-invalid' });
  t.same(await outcome(k.refreshToken!), {}, 'the holder is not limited by them');
});
