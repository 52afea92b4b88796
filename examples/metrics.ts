import { createCallbackEngine } from 'callback-engine';
import { createMonitor, withDashboard } from 'callback-engine/dashboard';
import { serve } from 'callback-engine/http';
import { createMetrics, withMetrics } from 'callback-engine/metrics';

const engine = createCallbackEngine({
  node: 'orders-1',
  secrets: ['change-me-to-a-long-random-secret'],
});
engine.anchor('payment');

const bearer = 'change-me-admin-token';
const metrics = createMetrics(engine); // needs the prom-client package
const monitor = createMonitor(engine);
// One auth for every route: the dispatch routes, /dashboard and /metrics.
const service = await serve(engine, {
  auth: { bearer },
  wrap: (handler) => withDashboard(withMetrics(handler, metrics), monitor),
});

const cb = await engine.create('payment');
await engine.dispatch({ type: 'CALLBACK', callbackToken: cb.token, callbackStatus: 'complete' });

const res = await fetch(`${service.url}/metrics`, {
  headers: { authorization: `Bearer ${bearer}` },
});
const text = await res.text();
console.log(text.split('\n').find((line) => line.startsWith('callback_engine_dispatches_total')));
console.log('without the token:', (await fetch(`${service.url}/metrics`)).status);

await service.close();
monitor.close();
metrics.close();
await engine.close();
