import t from 'tap';
import { generateRefreshToken } from '../../src/keys/format.js';
import { KeyService } from '../../src/keys/service.js';
import { DomainError, GatewayError, toGatewayError } from '../../src/http/problem.js';
import { openStore } from '../../src/store/open.js';
import { apiKeysConfig, FAST_HASH, TestClock } from './helpers.js';

// A refresh token is `<prefix>_rt_<key id>_<secret><checksum>`: anyone who knows a key id
// (it travels upstream in x-auth-key-id and sits in logs) can forge well-formed ones, and
// each costs an argon2 run. Failed refreshes are limited like failed keys are: per client,
// and per key id only for clients that have failed themselves, so a flood cannot keep
// argon2 busy, and never refuses the holder.

const store = await openStore('sqlite://memory', { migrate: true });
t.teardown(() => store.close());
const clock = new TestClock();
const svc = new KeyService({ store, config: apiKeysConfig({ hash: FAST_HASH, failedAttempts: { max: 3, window: 60_000, delay: 0 } }), clock, roles: ['basic'] });

async function outcome(token: string, client = '198.51.100.7'): Promise<{ code?: string; retryAfter?: string }> {
  try {
    await svc.refresh(token, client);
    return {};
  } catch (err) {
    // Refusals as the HTTP edge answers them (the service's own, or the attempt limiter's 429).
    if (!(err instanceof GatewayError || err instanceof DomainError)) throw err;
    const e = toGatewayError(err);
    const retryAfter = e.headers?.['retry-after'];
    return retryAfter === undefined ? { code: e.code } : { code: e.code, retryAfter: String(retryAfter) };
  }
}

t.test('forged refresh tokens for one key id are limited', async (t) => {
  const k = await svc.create({ subject: 'ann', role: 'basic', refreshable: true });
  const other = await svc.create({ subject: 'ben', role: 'basic', refreshable: true });
  for (let i = 1; i <= 3; i++) t.same(await outcome(generateRefreshToken('pcl', k.id).key), { code: 'refresh-invalid' }, `forged token ${i}`);
  t.same(await outcome(generateRefreshToken('pcl', k.id).key), { code: 'rate-limited', retryAfter: '60' }, 'then 429 with Retry-After, without verifying');
  t.same(await outcome(k.refreshToken!), { code: 'rate-limited', retryAfter: '60' }, 'that client is refused even with the right token');
  t.same(await outcome(generateRefreshToken('pcl', k.id).key, '203.0.113.1'), { code: 'refresh-invalid' }, 'another address gets one try at the attacked key id');
  t.same(await outcome(generateRefreshToken('pcl', k.id).key, '203.0.113.1'), { code: 'rate-limited', retryAfter: '60' }, 'and is refused once it has failed');
  clock.advance(30_000);
  t.same(await outcome(other.refreshToken!, '198.51.100.8'), {}, 'other keys refresh as usual');
  const fresh = await outcome(k.refreshToken!, '192.0.2.1');
  t.same(fresh, {}, 'the holder, from an address that has not failed, refreshes while its key id is under attack');
  t.same(await outcome(k.refreshToken!, '192.0.2.1'), { code: 'refresh-invalid' }, 'and a replay is still detected');
});

t.test('malformed tokens and unknown ids cost no argon2 and are not counted against a key', async (t) => {
  const k = await svc.create({ subject: 'cat', role: 'basic', refreshable: true });
  const client = '192.0.2.50';
  for (let i = 0; i < 5; i++) t.same(await outcome(`pcl_rt_${k.id}_short`, client), { code: 'refresh-invalid' });
  for (let i = 0; i < 5; i++) t.same(await outcome(generateRefreshToken('pcl', 'unknownkeyid01').key, client), { code: 'refresh-invalid' });
  t.same(await outcome(k.refreshToken!, client), {}, 'the holder is not limited by them');
});
