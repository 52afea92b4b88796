import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCallbackEngine } from 'callback-engine';
import { sqliteStore } from 'callback-engine/sqlite';

const path = join(mkdtempSync(join(tmpdir(), 'callbacks-')), 'callbacks.db');

function open() {
  const engine = createCallbackEngine({
    node: 'orders-1', // required with a durable store: stored tokens name it
    secrets: ['change-me-to-a-long-random-secret'], // required too: stored tokens must still verify
    store: sqliteStore({ path }), // synchronous: 'full' (the default) or 'normal'
  });
  engine.anchor('payment', { next: { progress: (cb) => ({ lastPct: cb.report.pct }) } });
  return engine;
}

const first = open();
const cb = await first.create('payment', { data: { orderId: 7 } });
// Answered only once the report and the step's output are stored.
await first.dispatch({
  type: 'CALLBACK',
  callbackToken: cb.token,
  callbackStatus: 'progress',
  callbackData: { pct: 50 },
  dedupKey: 'psp-event-1001', // sent again with this key, it is applied once
});
await first.close();

// A restart on the same file: every callback is back, deadlines re-armed, history kept.
const second = open();
await second.ready();
const again = await second.deliver({
  type: 'CALLBACK',
  callbackToken: cb.token,
  callbackStatus: 'progress',
  callbackData: { pct: 50 },
  dedupKey: 'psp-event-1001',
});
console.log(again.outcome, again.answer.status, JSON.stringify(again.answer.data));
const history = await second.history(cb.token);
for (const e of history.entries) console.log(e.seq, e.kind, e.status, JSON.stringify(e.data ?? {}));
await second.close();
