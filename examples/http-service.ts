import { createServer } from 'node:http';
import { createCallbackEngine } from 'callback-engine';
import { createMonitor, withDashboard } from 'callback-engine/dashboard';
import { createDispatchHandler } from 'callback-engine/http';

const port = Number(process.env.PORT ?? 8080);
const engine = createCallbackEngine({
  secrets: ['change-me-to-a-long-random-secret'],
  baseUrl: `http://127.0.0.1:${port}`, // where outside services reach this service
});
engine.anchor('payment', { next: { complete: (cb) => ({ paid: cb.report.amount }) } });

const monitor = createMonitor(engine);
const server = createServer(withDashboard(createDispatchHandler(engine), monitor));
await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
console.log(`dashboard: http://127.0.0.1:${port}/dashboard`);

// Hand the outside service a callback URL; it POSTs its report there.
const cb = await engine.create('payment', { data: { orderId: 7 } });
const res = await fetch(`${engine.callbackUrl(cb.token)}/complete`, {
  method: 'POST',
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify({ amount: 42 }),
});
console.log(res.status, JSON.stringify(await res.json()));

server.close();
monitor.close();
await engine.close();
