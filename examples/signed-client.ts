import { createCallbackEngine } from 'callback-engine';
import { createCallbackClient } from 'callback-engine/client';
import { serve } from 'callback-engine/http';

const hmacSecret = 'change-me-shared-with-the-outside-party';
const engine = createCallbackEngine({
  node: 'orders-1',
  secrets: ['change-me-to-a-long-random-secret'],
});
engine.anchor('payment', {
  correlate: ['orderId'], // CloudEvents may name the callback by extension `orderid`
  eventTypes: { 'com.example.payment.settled': 'complete' }, // event type → status
});
// Every route needs a valid signature: requests are signed with the shared secret.
const service = await serve(engine, { auth: { hmac: { secret: hmacSecret } } });
const cb = await engine.create('payment', { data: { orderId: 7 } });

// The outside party signs every attempt with the same secret.
const client = createCallbackClient({
  baseUrl: service.url,
  auth: { hmac: { secret: hmacSecret } },
});
const started = await client.report(cb.token, 'start', {}, { dedupKey: 'psp-7-start' });
console.log('report:', started.kind, started.status);

// The same report as a CloudEvent, found by its correlation key instead of the token.
const settled = await client.sendEvent({
  type: 'com.example.payment.settled',
  source: '/psp/payments',
  id: 'evt-1001', // with the source, the event's deduplication key
  extensions: { orderid: 7 },
  data: { amount: 42 },
});
console.log('event:', settled.kind, settled.status, JSON.stringify(settled.data));

const unsigned = await fetch(`${service.url}/callbacks/${cb.token}`);
console.log('unsigned read:', unsigned.status);
await service.close();
await engine.close();
