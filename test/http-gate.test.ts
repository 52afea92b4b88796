/**
 * One gate at the edge: the dispatch routes, the OpenAPI document, the dashboard (page, API,
 * event stream, diagrams) and /metrics answer nothing but 401 to a request without the service's
 * credentials, whatever order the parts are wrapped or created in and however they are mounted
 * (plain node:http, Express, Fastify, serve()). An admin part that cannot tell which auth applies
 * is refused at start-up; `auth: false` opens one deliberately.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import Fastify from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import {
  createDispatchHandler,
  serve,
  signRequest,
  type DispatchAuthOptions,
  type DispatchHandler,
} from '../src/http/index.js';
import { InvalidArgumentError, type CallbackEngine, type CreatedCallback } from '../src/index.js';
import { createDashboard, createMonitor, withDashboard, type Monitor } from '../src/dashboard.js';
import { createMetrics, withMetrics, type EngineMetrics } from '../src/metrics.js';
import { makeEngine } from './helpers/engine.js';

type Handler = (req: IncomingMessage, res: ServerResponse, next?: (err?: unknown) => void) => void;

const closers: (() => unknown)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

/** One engine with a monitor and metrics, closed after the test. */
function setup(): { engine: CallbackEngine; monitor: Monitor; metrics: EngineMetrics } {
  const { engine } = makeEngine();
  engine.anchor('job');
  const monitor = createMonitor(engine, { tickMs: 0 });
  const metrics = createMetrics(engine);
  closers.push(() => engine.close());
  closers.push(() => monitor.close());
  closers.push(() => metrics.close());
  return { engine, monitor, metrics };
}

interface Parts {
  readonly monitor: Monitor;
  readonly metrics: EngineMetrics;
}

/** How the parts are put together: `before` makes admin parts ahead of the dispatch handler. */
interface Composition {
  readonly name: string;
  readonly before?: (p: Parts) => unknown;
  readonly compose: (p: Parts, dispatch: DispatchHandler, made: unknown) => Handler;
}

const COMPOSITIONS: readonly Composition[] = [
  {
    name: 'withDashboard(withMetrics(dispatch))',
    compose: (p, d) => withDashboard(withMetrics(d, p.metrics), p.monitor),
  },
  {
    name: 'withMetrics(withDashboard(dispatch))',
    compose: (p, d) => withMetrics(withDashboard(d, p.monitor), p.metrics),
  },
  {
    name: 'side by side, admin parts created before the dispatch handler',
    before: (p) => ({
      dashboard: createDashboard(p.monitor),
      // withMetrics around something that is not a dispatch handler: it passes the rest on.
      metrics: withMetrics((_req, _res, next) => next?.(), p.metrics),
    }),
    compose: (_p, d, made) => {
      const { dashboard, metrics } = made as {
        dashboard: ReturnType<typeof createDashboard>;
        metrics: Handler;
      };
      return (req, res, next) => {
        if (dashboard(req, res)) return;
        metrics(req, res, () => d(req, res, next));
      };
    },
  },
];

/** How the composed service is mounted; resolves with its base URL. */
interface Mounting {
  readonly name: string;
  mount(
    engine: CallbackEngine,
    auth: DispatchAuthOptions,
    build: (dispatch: DispatchHandler) => Handler,
  ): Promise<string>;
}

async function listenHttp(server: Server): Promise<string> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  closers.push(() => {
    server.closeAllConnections();
    return new Promise((r) => server.close(r));
  });
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

const MOUNTINGS: readonly Mounting[] = [
  {
    name: 'plain node:http',
    async mount(engine, auth, build) {
      const handler = build(createDispatchHandler(engine, { auth }));
      return listenHttp(createServer((req, res) => handler(req, res)));
    },
  },
  {
    name: 'Express',
    async mount(engine, auth, build) {
      const app = express();
      app.use(build(createDispatchHandler(engine, { auth })));
      app.use(express.json());
      return listenHttp(createServer(app));
    },
  },
  {
    name: 'Fastify',
    async mount(engine, auth, build) {
      const app = Fastify();
      const handler = build(createDispatchHandler(engine, { auth }));
      await app.register((scope, _o, done) => {
        scope.removeAllContentTypeParsers();
        scope.addContentTypeParser('*', (_request, _payload, parsed) => parsed(null));
        scope.all('/*', (request, reply) => {
          reply.hijack();
          handler(request.raw, reply.raw);
        });
        done();
      });
      closers.push(() => app.close());
      return app.listen({ port: 0, host: '127.0.0.1' });
    },
  },
  {
    name: 'serve()',
    async mount(engine, auth, build) {
      const service = await serve(engine, { auth, wrap: build });
      closers.push(() => service.close());
      return service.url;
    },
  },
];

/** One request: method, path, headers, body. */
type Route = readonly [
  method: string,
  path: string,
  headers?: Record<string, string>,
  body?: string,
];

/** Every route of the surface (and a wrong method on some), for one callback. */
function everyRoute(cb: CreatedCallback): Route[] {
  const t = encodeURIComponent(cb.token);
  const json = { 'content-type': 'application/json' };
  const act = { 'x-requested-with': 'anything' };
  const event = {
    specversion: '1.0',
    id: 'e1',
    source: '/test',
    type: 'done',
    callbacktoken: cb.token,
    callbackstatus: 'cancel',
  };
  return [
    [
      'POST',
      '/callbacks',
      json,
      JSON.stringify({ type: 'CALLBACK', callbackToken: cb.token, callbackStatus: 'cancel' }),
    ],
    ['GET', `/callbacks/${t}`],
    ['HEAD', `/callbacks/${t}`],
    ['POST', `/callbacks/${t}/cancel`],
    ['POST', `/callbacks/${t}/complete`, json, '{"stolen":true}'],
    ['DELETE', `/callbacks/${t}`],
    [
      'POST',
      '/events',
      {
        ...json,
        'ce-specversion': '1.0',
        'ce-id': 'e2',
        'ce-source': '/test',
        'ce-type': 'done',
        'ce-callbacktoken': cb.token,
        'ce-callbackstatus': 'cancel',
      },
      '{}',
    ],
    ['POST', '/events', { 'content-type': 'application/cloudevents+json' }, JSON.stringify(event)],
    [
      'POST',
      '/events',
      { 'content-type': 'application/cloudevents-batch+json' },
      JSON.stringify([event]),
    ],
    ['OPTIONS', '/events', { 'webhook-request-origin': 'sender.example' }],
    ['GET', '/openapi.json'],
    ['PUT', '/openapi.json'],
    ['GET', '/dashboard'],
    ['GET', '/dashboard/'],
    ['GET', '/dashboard/events'],
    ['GET', `/dashboard/callbacks/${cb.id}`],
    ['GET', '/dashboard/diagram.svg'],
    ['GET', '/dashboard/diagram.mmd'],
    ['GET', '/dashboard/api/callbacks'],
    ['GET', `/dashboard/api/callbacks/${cb.id}`],
    ['POST', `/dashboard/api/callbacks/${cb.id}/cancel`, act],
    ['POST', `/dashboard/api/callbacks/${cb.id}/retry`, act],
    ['DELETE', '/dashboard'],
    ['GET', '/dashboard/nowhere'],
    ['GET', '/metrics'],
    ['HEAD', '/metrics'],
    ['POST', '/metrics'],
  ];
}

const AUTHS: readonly [string, DispatchAuthOptions][] = [
  ['bearer', { bearer: 'right-token' }],
  ['hmac', { hmac: { secret: 'right-secret' } }],
];

/** Wrong credentials of each kind, for a request. */
function wrongCredentials(kind: string, route: Route, now: number): Record<string, string> {
  if (kind === 'bearer') return { authorization: 'Bearer wrong-token' };
  const [method, path, headers, body] = route;
  return {
    'callback-signature': signRequest({
      secret: 'wrong-secret',
      method,
      path,
      body,
      headers,
      timestamp: now,
    }),
  };
}

/** The right credentials of each kind, for a request. */
function rightCredentials(kind: string, route: Route, now: number): Record<string, string> {
  if (kind === 'bearer') return { authorization: 'Bearer right-token' };
  const [method, path, headers, body] = route;
  return {
    'callback-signature': signRequest({
      secret: 'right-secret',
      method,
      path,
      body,
      headers,
      timestamp: now,
    }),
  };
}

async function call(
  base: string,
  route: Route,
  extra: Record<string, string> = {},
): Promise<Response> {
  const [method, path, headers = {}, body] = route;
  const r = await fetch(`${base}${path}`, {
    method,
    headers: { ...headers, ...extra },
    ...(body === undefined ? {} : { body }),
  });
  // A non-401 may be an open event stream: do not wait for its end.
  if (r.status === 401) await r.arrayBuffer();
  else await r.body?.cancel();
  return r;
}

describe('one gate for every route, every composition, every mounting (spec 16)', () => {
  for (const [kind, auth] of AUTHS) {
    for (const composition of COMPOSITIONS) {
      for (const mounting of MOUNTINGS) {
        it(`${kind}: ${composition.name}, mounted with ${mounting.name}: nothing but 401 without credentials`, async () => {
          const { engine, monitor, metrics } = setup();
          const parts = { monitor, metrics };
          // Parts made ahead of the dispatch handler (whose creation is inside mount()).
          const made = composition.before?.(parts);
          const base = await mounting.mount(engine, auth, (d) =>
            composition.compose(parts, d, made),
          );
          const cb = await engine.create('job');
          const now = Math.floor(engine.clock.now() / 1000);
          const answered: string[] = [];
          for (const route of everyRoute(cb)) {
            for (const extra of [{}, wrongCredentials(kind, route, now)]) {
              const r = await call(base, route, extra);
              if (r.status !== 401) answered.push(`${route[0]} ${route[1]} -> ${r.status}`);
            }
          }
          expect(answered).toEqual([]);
          expect((await engine.get(cb.token)).status).toBe('create');

          // With the credentials, each part is reachable (the mount is real, not a wall of 401s).
          const reach: Route[] = [
            ['GET', `/callbacks/${encodeURIComponent(cb.token)}`],
            ['GET', '/openapi.json'],
            ['GET', '/dashboard/diagram.mmd'],
            ['GET', '/metrics'],
            ['POST', `/dashboard/api/callbacks/${cb.id}/cancel`, { 'x-requested-with': 'test' }],
          ];
          for (const route of reach) {
            const r = await call(base, route, rightCredentials(kind, route, now));
            expect(r.status, `${route[0]} ${route[1]}`).toBe(200);
          }
          expect((await engine.get(cb.token)).status).toBe('cancel');
        });
      }
    }
  }
});

describe('the finding: composing the two wrappers kept auth on neither', () => {
  it('withDashboard(withMetrics(handler)): an anonymous dashboard cancel is 401 and cancels nothing; the other order keeps /metrics closed', async () => {
    const { engine, monitor, metrics } = setup();
    const auth = { bearer: 'right-token' };
    const a = await listenHttp(
      createServer(
        withDashboard(withMetrics(createDispatchHandler(engine, { auth }), metrics), monitor),
      ),
    );
    const b = await listenHttp(
      createServer(
        withMetrics(withDashboard(createDispatchHandler(engine, { auth }), monitor), metrics),
      ),
    );
    const cb = await engine.create('job');
    for (const marker of ['XMLHttpRequest', 'x', 'fetch']) {
      const r = await fetch(`${a}/dashboard/api/callbacks/${cb.id}/cancel`, {
        method: 'POST',
        headers: { 'x-requested-with': marker },
      });
      expect(r.status).toBe(401);
    }
    expect((await engine.get(cb.token)).status).toBe('create');
    expect((await fetch(`${b}/metrics`)).status).toBe(401);
    expect((await fetch(`${a}/metrics`)).status).toBe(401);
  });
});

describe('start-up: an admin part that cannot tell which auth applies is refused', () => {
  it('dispatch handlers with different auth, then a dashboard or metrics without its own: refused, naming the fix', () => {
    const { engine, monitor, metrics } = setup();
    const d1 = createDispatchHandler(engine, { auth: { bearer: 'one' } });
    createDispatchHandler(engine, { auth: { hmac: { secret: 'two' } } });
    for (const make of [
      () => withDashboard(d1, monitor),
      () => createDashboard(monitor),
      () => withMetrics(d1, metrics),
    ]) {
      expect(make).toThrow(InvalidArgumentError);
      expect(make).toThrow(/protected in 2 different ways.*its own auth option \(or auth: false/);
    }
    // Saying which auth applies (or none, deliberately) is accepted.
    expect(() => withDashboard(d1, monitor, { auth: { bearer: 'admin' } })).not.toThrow();
    expect(() => withMetrics(d1, metrics, { auth: false })).not.toThrow();
  });

  it('a dashboard first, then dispatch handlers that disagree: the second one is refused (and serve() rejects)', async () => {
    const { engine, monitor } = setup();
    createDashboard(monitor);
    createDispatchHandler(engine, { auth: { bearer: 'one' } });
    // The same auth again is the same gate.
    createDispatchHandler(engine, { auth: { bearer: 'one' } });
    createDispatchHandler(engine);
    expect(() => createDispatchHandler(engine, { auth: { bearer: 'two' } })).toThrow(
      /the dashboard takes its auth from the engine's dispatch routes/,
    );
    await expect(serve(engine, { auth: { bearer: 'two' } })).rejects.toBeInstanceOf(
      InvalidArgumentError,
    );
  });

  it('withMetrics with metrics it cannot trace to an engine, around a handler that is not a dispatch handler, needs auth or auth: false', () => {
    const { metrics } = setup();
    const custom: EngineMetrics = {
      register: metrics.register,
      scrape: () => metrics.scrape(),
      close() {},
    };
    const plain: Handler = (_req, res) => res.end();
    expect(() => withMetrics(plain, custom)).toThrow(/cannot tell which auth protects/);
    expect(() => withMetrics(plain, custom, { auth: false })).not.toThrow();
    expect(() => withMetrics(plain, custom, { auth: { bearer: 'scrape' } })).not.toThrow();
  });
});

describe('inherit, or say otherwise', () => {
  it('a dashboard created before the dispatch handler takes its auth; auth: false opens it deliberately', async () => {
    const { engine, monitor, metrics } = setup();
    const early = createDashboard(monitor);
    const open = createDashboard(monitor, { basePath: '/open', auth: false });
    const openMetrics = withMetrics((_req, res) => res.end(), metrics, { auth: false });
    const dispatch = createDispatchHandler(engine, { auth: { bearer: 'right-token' } });
    const base = await listenHttp(
      createServer((req, res) => {
        if (early(req, res) || open(req, res)) return;
        if (req.url === '/metrics') return openMetrics(req, res);
        dispatch(req, res);
      }),
    );
    expect((await fetch(`${base}/dashboard/diagram.mmd`)).status).toBe(401);
    expect(
      (
        await fetch(`${base}/dashboard/diagram.mmd`, {
          headers: { authorization: 'Bearer right-token' },
        })
      ).status,
    ).toBe(200);
    expect((await fetch(`${base}/open/diagram.mmd`)).status).toBe(200);
    expect((await fetch(`${base}/metrics`)).status).toBe(200);
  });

  it('with a dispatch handler without auth beside one with auth, admin parts take the one with auth', async () => {
    const { engine, monitor } = setup();
    createDispatchHandler(engine);
    const gated = createDispatchHandler(engine, { auth: { bearer: 'right-token' } });
    const base = await listenHttp(createServer(withDashboard(gated, monitor)));
    expect((await fetch(`${base}/dashboard`)).status).toBe(401);
  });

  it('with no auth anywhere, the dashboard is open like the dispatch routes', async () => {
    const { engine, monitor } = setup();
    const base = await listenHttp(
      createServer(withDashboard(createDispatchHandler(engine), monitor)),
    );
    expect((await fetch(`${base}/dashboard/diagram.mmd`)).status).toBe(200);
  });
});
