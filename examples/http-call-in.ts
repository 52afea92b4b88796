import { createCallbackEngine } from 'callback-engine';
import { createCallbackClient } from 'callback-engine/client';
import { serve } from 'callback-engine/http';

// The service: an engine and its HTTP call-in point.
const port = Number(process.env.PORT ?? 8080);
const engine = createCallbackEngine({
  node: 'orders-1',
  secrets: ['change-me-to-a-long-random-secret'],
  baseUrl: `http://127.0.0.1:${port}`, // where outside parties reach this service
});
engine.anchor('payment', { next: { complete: (cb) => ({ paid: cb.report.amount }) } });
const service = await serve(engine, { port });

const cb = await engine.create('payment', { data: { orderId: 7 } });
const callbackUrl = engine.callbackUrl(cb.token); // hand this to the outside party

// The outside party: reports back to the callback URL. The client retries with backoff,
// honours Retry-After, and sends the same deduplication key on every attempt.
const client = createCallbackClient();
const result = await client.report(callbackUrl, 'complete', { amount: 42 });
console.log(result.kind, result.status, JSON.stringify(result.data));

await service.close();
await engine.close();
