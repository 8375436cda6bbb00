import t from 'tap';
import { serviceSkip } from '../helpers/services.js';
import { lifecycleSuite } from './lifecycle.js';

// Key ends and changes reach two running gateways through PostgreSQL LISTEN/NOTIFY (no Redis).

const skip = await serviceSkip('postgres');
if (skip) t.plan(0, `skipping: ${skip}`);
else await t.test('two instances on LISTEN/NOTIFY', (t) => lifecycleSuite(t, 'LISTEN/NOTIFY', false));
