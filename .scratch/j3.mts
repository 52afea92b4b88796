import { createCallbackEngine } from '../src/index.ts';
import { sqliteStore } from '../src/store/sqlite.ts';
import { mkdtempSync } from 'node:fs'; import { join } from 'node:path'; import { tmpdir } from 'node:os';
const dir = mkdtempSync(join(tmpdir(), 'j-'));
for (const store of [undefined, sqliteStore({ path: join(dir, 'x.db') })]) {
const e = createCallbackEngine({ node: 'n1', secrets: ['0123456789abcdef0123456789abcdef0123'], ...(store ? { store } : {}) });
e.anchor('job', { next: { progress: () => new Promise((r) => setTimeout(r, 3000)), cancel: () => ({ c: 1 }) } });
await e.ready();
const cb = await e.create('job');
const t0 = performance.now();
const p = e.dispatch({ type: 'CALLBACK', callbackToken: cb.token, callbackStatus: 'progress', callbackData: {} });
await new Promise((r) => setTimeout(r, 100));
const c = await e.dispatch({ type: 'CALLBACK', callbackToken: cb.token, callbackStatus: 'cancel', callbackData: {} });
console.log(store ? 'sqlite' : 'memory', 'cancel', c.status, c.data, performance.now() - t0);
console.log('progress', (await p).status, performance.now() - t0);
await e.close();
}
