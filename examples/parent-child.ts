import { createCallbackEngine } from 'callback-engine';

const engine = createCallbackEngine({
  node: 'shop-1',
  secrets: ['change-me-to-a-long-random-secret'],
});
engine.anchor('order');
engine.anchor('shipment', {
  next: {
    // Runs when the parent ends while this callback is still active.
    orphan: (cb) => console.log('shipment orphaned, parent was', cb.parentToken === order.token),
    // A step's signal aborts when the callback is cancelled, times out or is orphaned.
    start: async (cb) => {
      await fetch('https://carrier.example/track', { signal: cb.signal }).catch(() => {});
    },
  },
});

const order = await engine.create('order', { data: { orderId: 7 } });
const shipment = await engine.create('shipment', {
  parentToken: order.token, // the parent must be active
  idempotencyKey: 'order-7-shipment', // a second create with this key returns this callback
  tags: ['eu', 'express'],
});

await engine.cancel(order.token, { reason: 'customer changed their mind' });
console.log('order:', (await engine.get(order.token)).status);
console.log('shipment:', (await engine.get(shipment.token)).status);
await engine.close();
