import { createCallbackEngine } from 'callback-engine';
import { serve } from 'callback-engine/http';

// The origin: the service that created the callback, reachable from the relay only.
const origin = createCallbackEngine({
  node: 'orders',
  secrets: ['origin-secret-0123456789abcdef'],
});
origin.anchor('payment', { next: { complete: (cb) => ({ paid: cb.report.amount }) } });
const originService = await serve(origin);

// The relay: a service the far party can reach, with its own node name and secrets.
const relay = createCallbackEngine({ node: 'edge', secrets: ['edge-secret-0123456789abcdef01'] });

const cb = await origin.create('payment', { data: { orderId: 7 } });
// Wrap the origin's token; hand the wrapped one (or its callback URL) to the far party.
const wrapped = relay.relay(cb.token, { to: originService.url });

// A report with the wrapped token is forwarded to the origin; its answer comes back.
const answer = await relay.dispatch({
  type: 'CALLBACK',
  callbackToken: wrapped,
  callbackStatus: 'complete',
  callbackData: { amount: 42 },
  dedupKey: 'psp-7-complete', // a retry after a broken connection is applied once
});
console.log(answer.status, JSON.stringify(answer.data), answer.token === wrapped);
console.log('at the origin:', (await origin.get(cb.token)).status);

await relay.close();
await originService.close();
await origin.close();
