import { createWebSocketInspector } from '@statelyai/inspect';
import { createInspectorServer } from '@statelyai/inspect/server';
import { createCallbackEngine } from 'callback-engine';

// Opens http://localhost:8080 in your browser: Stately's inspector, fed over a WebSocket on that port.
createInspectorServer({ port: 8080 });

const engine = createCallbackEngine({
  node: 'orders-1',
  secrets: ['change-me-to-a-long-random-secret'],
});
engine.anchor('payment', { next: { complete: (cb) => ({ paid: cb.report.amount ?? 0 }) } });
// Every callback actor started from now on sends its transitions to the inspector.
const inspector = createWebSocketInspector({ url: 'ws://localhost:8080' });
engine.inspect(inspector.inspect);

const cb = await engine.create('payment', { data: { orderId: 7 } });
const report = (callbackStatus: 'start' | 'complete', callbackData = {}) =>
  engine.dispatch({ type: 'CALLBACK', callbackToken: cb.token, callbackStatus, callbackData });
await report('start');
await report('complete', { amount: 42 });
// The inspector shows the callback's actor, each report, and each state with its context:
// { status: 'complete', data: { orderId: 7, amount: 42, paid: 42 },
//   report: { status: 'complete', data: { amount: 42 } } }
