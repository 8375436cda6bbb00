// Writes gateway.config.schema.json from the zod schema (run after `npm run build`).
import { writeFileSync } from 'node:fs';
import { configJsonSchema } from '../dist/config/schema.js';

const file = new URL('../gateway.config.schema.json', import.meta.url);
writeFileSync(file, JSON.stringify(configJsonSchema(), null, 2) + '\n');
console.log(`wrote ${file.pathname}`);
