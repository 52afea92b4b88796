import Fastify from 'fastify';
import { createCallbackEngine } from 'callback-engine';
import { createCallbackClient } from 'callback-engine/client';
import { createMonitor } from 'callback-engine/dashboard';
import { callbackEngine } from 'callback-engine/fastify';

const port = Number(process.env.PORT ?? 3000);
const hmac = { secret: 'change-me-shared-with-the-payment-provider' };
const engine = createCallbackEngine({
  secrets: ['change-me-to-a-long-random-secret'],
  baseUrl: `http://127.0.0.1:${port}/hooks`, // ends with the prefix below
});
engine.anchor('payment', { next: { complete: (cb) => ({ paid: cb.report.amount }) } });
const monitor = createMonitor(engine);

const app = Fastify();
await app.register(callbackEngine, {
  engine,
  prefix: '/hooks',
  auth: { hmac },
  dashboard: monitor, // at /hooks/dashboard, behind the same auth
});
await app.listen({ port, host: '127.0.0.1' });

// Hand the payment provider a callback URL; it reports there with the client.
const cb = await engine.create('payment', { data: { orderId: 7 } });
console.log('callback URL:', engine.callbackUrl(cb.token));
const provider = createCallbackClient({ auth: { hmac } });
const result = await provider.report(engine.callbackUrl(cb.token), 'complete', { amount: 42 });
console.log(result.kind, result.status, JSON.stringify(result.data));

await app.close();
monitor.close();
await engine.close();
