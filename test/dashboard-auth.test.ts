import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import {
  createDispatchHandler,
  signRequest,
  type DispatchHandlerOptions,
} from '../src/http/index.js';
import type { CallbackEngine } from '../src/index.js';
import {
  createMonitor,
  withDashboard,
  type DashboardOptions,
  type Monitor,
} from '../src/dashboard.js';
import { makeEngine, report } from './helpers/engine.js';

let engine: CallbackEngine | undefined;
let monitor: Monitor | undefined;
let server: Server | undefined;

afterEach(async () => {
  server?.closeAllConnections();
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  monitor?.close();
  await engine?.close();
  engine = monitor = server = undefined;
});

async function start(handlerOptions: DispatchHandlerOptions, dashboard?: DashboardOptions) {
  ({ engine } = makeEngine());
  engine.anchor('job');
  monitor = createMonitor(engine, { tickMs: 0 });
  server = createServer(
    withDashboard(createDispatchHandler(engine, handlerOptions), monitor, dashboard),
  );
  await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
  return { engine, monitor, base: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

const ROUTES = [
  '/dashboard',
  '/dashboard/',
  '/dashboard/events',
  '/dashboard/callbacks/some-id',
  '/dashboard/diagram.svg',
  '/dashboard/diagram.mmd',
  '/dashboard/nowhere',
];

/** Reads an SSE stream until `enough` says so, then closes it. */
async function readStream(
  url: string,
  headers: Record<string, string>,
  enough: (s: string) => boolean,
) {
  const controller = new AbortController();
  const r = await fetch(url, { headers, signal: controller.signal });
  const reader = r.body!.getReader();
  let text = '';
  while (!enough(text)) {
    const { value, done } = await reader.read();
    if (done) break;
    text += Buffer.from(value).toString('utf8');
  }
  controller.abort();
  return text;
}

describe('dashboard auth', () => {
  it('puts every dashboard route behind the handler bearer auth (Basic with the token as password works for browsers)', async () => {
    const { base } = await start({ auth: { bearer: 'tok' } });
    for (const path of ROUTES) {
      const r = await fetch(`${base}${path}`);
      expect(r.status, path).toBe(401);
      expect(((await r.json()) as { code: string }).code).toBe('CBE_ERR_UNAUTHORIZED');
      expect(r.headers.get('www-authenticate')).toMatch(/^Basic realm=/);
    }
    expect((await fetch(`${base}/dashboard`, { method: 'POST' })).status).toBe(401);
    expect(
      (await fetch(`${base}/dashboard`, { headers: { authorization: 'Bearer nope' } })).status,
    ).toBe(401);
    expect(
      (await fetch(`${base}/dashboard/diagram.mmd`, { headers: { authorization: 'Bearer tok' } }))
        .status,
    ).toBe(200);
    const basic = `Basic ${Buffer.from('admin:tok').toString('base64')}`;
    expect((await fetch(`${base}/dashboard`, { headers: { authorization: basic } })).status).toBe(
      200,
    );
  });

  it('with HMAC auth, a dashboard request needs a signature too', async () => {
    const { base, engine } = await start({ auth: { hmac: { secret: 'k' } } });
    for (const path of ROUTES) expect((await fetch(`${base}${path}`)).status, path).toBe(401);
    const sig = signRequest({
      secret: 'k',
      method: 'GET',
      path: '/dashboard/diagram.mmd',
      timestamp: Math.floor(engine.clock.now() / 1000),
    });
    const r = await fetch(`${base}/dashboard/diagram.mmd`, {
      headers: { 'callback-signature': sig },
    });
    expect(r.status).toBe(200);
  });

  it('has auth of its own, or none when auth is false', async () => {
    let { base } = await start({}, { auth: { bearer: 'admin-token' } });
    expect((await fetch(`${base}/dashboard`)).status).toBe(401);
    expect(
      (await fetch(`${base}/dashboard`, { headers: { authorization: 'Bearer admin-token' } }))
        .status,
    ).toBe(200);
    await new Promise<void>((r) => server!.close(() => r()));
    monitor!.close();
    await engine!.close();
    ({ base } = await start({ auth: { bearer: 'tok' } }, { auth: false }));
    expect((await fetch(`${base}/dashboard/diagram.mmd`)).status).toBe(200);
    // An unknown dashboard route is a route error, like the dispatch handler's, not notFound.
    const missing = await fetch(`${base}/dashboard/nope`);
    expect(missing.status).toBe(404);
    expect(await missing.json()).toMatchObject({ code: 'CBE_ERR_ROUTE_NOT_FOUND' });
  });
});

describe('the dashboard never shows a full token', () => {
  it('the callback view is by id and the SSE stream carries ids only', async () => {
    const { base, engine, monitor } = await start({ auth: { bearer: 'tok' } });
    const headers = { authorization: 'Bearer tok' };
    const cbs = await Promise.all([engine.create('job'), engine.create('job')]);
    await engine.dispatch(report(cbs[0].token, 'progress', { pct: 1 }));
    await engine.dispatch(report(cbs[1].token, 'complete'));

    for (const key of [cbs[0].token, cbs[0].id]) {
      const r = await fetch(`${base}/dashboard/callbacks/${encodeURIComponent(key)}`, { headers });
      expect(r.status).toBe(200);
      const text = await r.text();
      expect(JSON.parse(text)).toMatchObject({ id: cbs[0].id, status: 'progress' });
      for (const cb of cbs) expect(text).not.toContain(cb.token);
    }

    const page = await (await fetch(`${base}/dashboard`, { headers })).text();
    const stream = readStream(`${base}/dashboard/events`, headers, (s) => s.includes(cbs[1].id));
    // Publish after the stream opened; the view lists the recent transitions by id.
    const ticker = setInterval(() => monitor.tick(), 5);
    const text = await stream.finally(() => clearInterval(ticker));
    expect(text).toContain('event: view');
    for (const cb of cbs) {
      expect(text).not.toContain(cb.token);
      expect(page).not.toContain(cb.token);
    }
  });
});
