import { createCallbackEngine } from 'callback-engine';
import { createCallbackClient } from 'callback-engine/client';
import { serve } from 'callback-engine/http';

const engine = createCallbackEngine({
  node: 'shop-1',
  secrets: ['change-me-to-a-long-random-secret'],
});
engine.anchor('order', {
  correlate: ['orderId'],
  eventTypes: { 'com.example.order.shipped': 'progress' },
  // Hold events that arrive before their callback exists: at most 1,000 events and
  // 1 MiB for this anchor, each for 10 minutes (`early: true` takes these defaults).
  early: { maxEvents: 1000, maxBytes: 1_048_576, retention: 'PT10M' },
});
const bearer = 'change-me-partner-token'; // finding a callback by correlation key needs auth
const service = await serve(engine, { auth: { bearer } });
const client = createCallbackClient({ baseUrl: service.url, auth: { bearer } });

// The warehouse is faster than the shop: its event arrives first, and is held.
const early = await client.sendEvent({
  type: 'com.example.order.shipped',
  source: '/warehouse',
  extensions: { orderid: 42 },
  data: { carrier: 'DHL' },
});
console.log('event:', early.kind, early.statusCode);

// Creating the callback applies the held event before create() resolves.
const order = await engine.create('order', { data: { orderId: 42 } });
console.log('created:', order.status, JSON.stringify(order.data));
await service.close();
await engine.close();
