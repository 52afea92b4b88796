// The worker entry used only when callback-engine runs from its TypeScript sources (its own
// tests, `tsx`): the built package loads dist/pool/worker.js instead. It registers tsx's require
// hook in this thread only, then loads the TypeScript entry, so pool threads need no special
// execArgv (which would have to be re-validated for workers and breaks on flags such as
// --input-type or --max-old-space-size).
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
require('tsx/cjs');
const entry = require('./worker.ts');

export default entry.default;
export const ping = entry.ping;
