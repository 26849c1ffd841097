// Writes config/schema.json from the zod schema (src/config/schema.ts), compiled to dist/.
// Run through `npm run schema`, which builds first. test/unit/config.test.ts fails when the
// committed file and the schema differ.
import { writeFile } from 'node:fs/promises';
import { renderConfigJsonSchema } from '../dist/config/schema.js';

const target = new URL('../config/schema.json', import.meta.url);
await writeFile(target, renderConfigJsonSchema());
console.log(`wrote ${target.pathname}`);
