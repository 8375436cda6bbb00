import t from 'tap';
import { serviceSkip } from '../helpers/services.js';
import { lifecycleSuite } from './lifecycle.js';

// Key ends and changes reach two running gateways through Redis pub/sub and markers.

const skip = (await serviceSkip('postgres')) || (await serviceSkip('redis'));
if (skip) t.plan(0, `skipping: ${skip}`);
else await t.test('two instances on redis', (t) => lifecycleSuite(t, 'redis', true));
