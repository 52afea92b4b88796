import { once } from 'node:events';
import express from 'express';
import { createCallbackEngine } from 'callback-engine';
import { createCallbackClient } from 'callback-engine/client';
import { callbackEngineRouter } from 'callback-engine/express';

const port = Number(process.env.PORT ?? 3000);
const hmac = { secret: 'change-me-shared-with-the-payment-provider' };
const engine = createCallbackEngine({
  secrets: ['change-me-to-a-long-random-secret'],
  baseUrl: `http://127.0.0.1:${port}/hooks`, // ends with the mount path below
});
engine.anchor('payment', { next: { complete: (cb) => ({ paid: cb.report.amount }) } });

const app = express();
app.use('/hooks', callbackEngineRouter(engine, { auth: { hmac } })); // before any body parser
app.use(express.json()); // the rest of your app
const server = app.listen(port, '127.0.0.1');
await once(server, 'listening');

// Hand the payment provider a callback URL; it reports there with the client.
const cb = await engine.create('payment', { data: { orderId: 7 } });
console.log('callback URL:', engine.callbackUrl(cb.token));
const provider = createCallbackClient({ auth: { hmac } });
const result = await provider.report(engine.callbackUrl(cb.token), 'complete', { amount: 42 });
console.log(result.kind, result.status, JSON.stringify(result.data));

server.close();
await engine.close();
