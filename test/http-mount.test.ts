/**
 * The Fastify plugin (`callback-engine/fastify`) and the Express router (`callback-engine/express`)
 * mounted under a prefix: every route of the service reached there (by the outside party's client
 * and by the CloudEvents SDK, HMAC-signed), callback URLs and the OpenAPI server that carry the
 * prefix, one auth over the dashboard and /metrics too, and exactly-once through a dropped answer.
 */
import { execFileSync } from 'node:child_process';
import type { Server } from 'node:http';
import { createServer } from 'node:net';
import { CloudEvent, HTTP, type Message } from 'cloudevents';
import express from 'express';
import Fastify from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { createCallbackClient, type CallbackClientOptions } from '../src/client/index.js';
import { signRequest } from '../src/http/index.js';
import { callbackEngineRouter } from '../src/mount/express.js';
import { callbackEngine } from '../src/mount/fastify.js';
import type { MountOptions } from '../src/mount/mount.js';
import { createMonitor } from '../src/dashboard.js';
import { createMetrics } from '../src/metrics.js';
import type { CallbackEngine } from '../src/index.js';
import { makeEngine } from './helpers/engine.js';

const HMAC = 'mount-hmac-secret';
const PREFIX = '/hooks';

const open: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const close of open.splice(0).reverse()) await close();
});

/** A port nothing listens on now, so the engine's baseUrl can name it before the app listens. */
async function freePort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as { port: number };
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

/** An engine whose `baseUrl` is the mount, and whose `job` steps count every run. */
async function engineAt(prefix = PREFIX) {
  const port = await freePort();
  const origin = `http://127.0.0.1:${port}`;
  const { engine, clock } = makeEngine({ baseUrl: `${origin}${prefix}` });
  const runs = { progress: 0, complete: 0 };
  engine.anchor('job', {
    next: {
      progress: () => void runs.progress++,
      complete: () => void runs.complete++,
    },
  });
  open.push(() => engine.close());
  return { engine, clock, port, origin, runs };
}

/** Mounts the service at `/hooks` in a fresh app of one framework and listens on `port`. */
type Mount = (engine: CallbackEngine, port: number, options: MountOptions) => Promise<void>;

const mountFastify: Mount = async (engine, port, options) => {
  const app = Fastify();
  await app.register(callbackEngine, { engine, prefix: PREFIX, ...options });
  // A route of the app beside the plugin keeps Fastify's JSON parser.
  app.post('/orders', (request) => ({ parsed: request.body }));
  open.push(() => {
    const closing = app.close();
    // fetch may hold a spare keep-alive connection that never sent a request: not idle to Node.
    app.server.closeAllConnections();
    return closing;
  });
  await app.listen({ port, host: '127.0.0.1' });
};

const mountExpress: Mount = async (engine, port, options) => {
  const app = express();
  app.use(PREFIX, callbackEngineRouter(engine, options));
  // Parsers of the rest of the app come after the router.
  app.use(express.json());
  app.post('/orders', (req, res) => void res.json({ parsed: req.body as unknown }));
  const server: Server = await new Promise((resolve) => {
    const s = app.listen(port, '127.0.0.1', () => resolve(s));
  });
  open.push(
    () =>
      new Promise((resolve) => {
        server.close(resolve);
        server.closeAllConnections();
      }),
  );
};

/** A signed fetch (the v2 scheme, on the engine's clock), as an outside party sends it. */
function signedFetch(engine: CallbackEngine, origin: string) {
  return (
    path: string,
    init: { method?: string; headers?: Record<string, string>; body?: string } = {},
  ) => {
    const method = init.method ?? 'GET';
    const headers = { ...init.headers };
    headers['callback-signature'] = signRequest({
      secret: HMAC,
      method,
      path,
      body: init.body ?? '',
      headers,
      timestamp: Math.floor(engine.clock.now() / 1000),
    });
    return fetch(`${origin}${path}`, {
      method,
      headers,
      ...(init.body === undefined ? {} : { body: init.body }),
    });
  };
}

/** Sends an SDK-encoded CloudEvent to `/hooks/events`, signed. */
function sendMessage(engine: CallbackEngine, origin: string, message: Message) {
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(message.headers)) headers[k] = String(v);
  return signedFetch(engine, origin)(`${PREFIX}/events`, {
    method: 'POST',
    headers,
    body: message.body as string,
  });
}

const FRAMEWORKS: [string, Mount][] = [
  ['Fastify plugin (callback-engine/fastify)', mountFastify],
  ['Express router (callback-engine/express)', mountExpress],
];

describe.each(FRAMEWORKS)('%s mounted at /hooks', (_name, mount) => {
  /** The mounted service with HMAC auth, the dashboard and /metrics, and a signed client. */
  async function start(clientOptions: CallbackClientOptions = {}) {
    const at = await engineAt();
    const monitor = createMonitor(at.engine);
    const metrics = createMetrics(at.engine);
    open.push(async () => {
      monitor.close();
      metrics.close();
    });
    await mount(at.engine, at.port, {
      auth: { hmac: { secret: HMAC } },
      dashboard: monitor,
      metrics,
    });
    const client = createCallbackClient({
      baseUrl: `${at.origin}${PREFIX}`,
      auth: { hmac: { secret: HMAC } },
      clock: at.engine.clock,
      ...clientOptions,
    });
    return { ...at, client, signed: signedFetch(at.engine, at.origin) };
  }

  it('the client reports by callback URL and by CloudEvents, structured and binary; callback URLs carry the prefix', async () => {
    const { engine, origin, client, runs } = await start();
    const cb = await engine.create('job', { data: { orderId: 7 } });
    const url = engine.callbackUrl(cb.token);
    expect(url.startsWith(`${origin}/hooks/callbacks/`)).toBe(true);

    const byUrl = await client.report(url, 'progress', { pct: 10 });
    expect(byUrl).toMatchObject({ kind: 'applied', status: 'progress', attempts: 1 });
    const structured = await client.sendEvent(
      {
        type: 'com.example.progress',
        source: '/worker',
        callbackToken: cb.token,
        callbackStatus: 'progress',
        data: { pct: 50 },
      },
      { mode: 'structured' },
    );
    expect(structured).toMatchObject({ kind: 'applied', status: 'progress', data: { pct: 50 } });
    const binary = await client.sendEvent(
      {
        type: 'com.example.done',
        source: '/worker',
        callbackToken: cb.token,
        callbackStatus: 'complete',
        data: { receipt: 'R-7' },
      },
      { mode: 'binary' },
    );
    expect(binary).toMatchObject({ kind: 'applied', status: 'complete' });
    const final = await engine.get(cb.token);
    expect(final.status).toBe('complete');
    expect(final.data).toMatchObject({ orderId: 7, pct: 50, receipt: 'R-7' });
    expect(runs).toEqual({ progress: 2, complete: 1 });
  });

  it('the official cloudevents SDK reaches the callback in binary and structured mode (signed)', async () => {
    const { engine, origin } = await start();
    const cb = await engine.create('job');
    const event = (attrs: Record<string, unknown>) =>
      new CloudEvent({
        source: '/sdk',
        type: 'com.example.report',
        callbacktoken: cb.token,
        ...attrs,
      });
    let r = await sendMessage(
      engine,
      origin,
      HTTP.binary(event({ callbackstatus: 'progress', data: { pct: 1 } })),
    );
    expect(r.status).toBe(200);
    expect(r.headers.get('callback-outcome')).toBe('applied');
    r = await sendMessage(
      engine,
      origin,
      HTTP.structured(event({ callbackstatus: 'complete', data: { ok: true } })),
    );
    expect(r.status).toBe(200);
    expect(await r.json()).toMatchObject({ status: 'complete', data: { pct: 1, ok: true } });
  });

  it('the OpenAPI document lists the server so that server + path is the callback URL', async () => {
    const { engine, signed } = await start();
    const r = await signed(`${PREFIX}/openapi.json`);
    expect(r.status).toBe(200);
    const doc = (await r.json()) as { servers: { url: string }[]; paths: Record<string, unknown> };
    const report = Object.keys(doc.paths).find((p) => p.endsWith('/callbacks/{token}/{status}'))!;
    const cb = await engine.create('job');
    expect(`${doc.servers[0]!.url}${report}`.replace('{token}', cb.token)).toBe(
      `${engine.callbackUrl(cb.token)}/{status}`,
    );
  });

  it('answers 401 without credentials on every route, dashboard and /metrics included, and serves them signed under the prefix', async () => {
    const { engine, signed, origin } = await start();
    const cb = await engine.create('job');
    const routes: [string, string][] = [
      ['POST', '/callbacks'],
      ['GET', `/callbacks/${cb.token}`],
      ['POST', `/callbacks/${cb.token}/complete`],
      ['POST', '/events'],
      ['GET', '/openapi.json'],
      ['OPTIONS', '/events'],
      ['GET', '/dashboard'],
      ['GET', '/dashboard/api/callbacks'],
      ['POST', `/dashboard/api/callbacks/${cb.id}/cancel`],
      ['GET', '/dashboard/events'],
      ['GET', '/metrics'],
    ];
    for (const [method, path] of routes) {
      const r = await fetch(`${origin}${PREFIX}${path}`, {
        method,
        headers: { 'content-type': 'application/json' },
        ...(method === 'POST' ? { body: '{}' } : {}),
      });
      expect(r.status, `${method} ${path}`).toBe(401);
      expect(((await r.json()) as { code: string }).code).toBe('CBE_ERR_UNAUTHORIZED');
    }
    expect((await engine.get(cb.token)).status).toBe('create');

    const page = await signed(`${PREFIX}/dashboard`);
    expect(page.status).toBe(200);
    // The page asks for its API and event stream under the prefix.
    expect(await page.text()).toContain('const base = "/hooks/dashboard"');
    const list = await signed(`${PREFIX}/dashboard/api/callbacks`);
    expect(list.status).toBe(200);
    expect(await list.json()).toMatchObject({ items: [{ id: cb.id, status: 'create' }] });
    const stream = await signed(`${PREFIX}/dashboard/events`);
    expect(stream.status).toBe(200);
    expect(stream.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const reader = stream.body!.getReader();
    const first = new TextDecoder().decode((await reader.read()).value as Uint8Array);
    expect(first).toMatch(/^event: view\ndata: \{/);
    await reader.cancel();
    const metrics = await signed(`${PREFIX}/metrics`);
    expect(metrics.status).toBe(200);
    expect(await metrics.text()).toContain('callback_engine_creates_total');
  });

  it('applies a report exactly once when the answer to its first attempt is dropped (one dedup key)', async () => {
    let dropped = 0;
    const keys: string[] = [];
    const { engine, client, runs } = await start({
      sleep: async () => {},
      fetch: async (input, init) => {
        keys.push(new Headers(init?.headers).get('callback-dedup-key') ?? '');
        const answer = await fetch(input, init);
        if (dropped < 1) {
          // The service answered (and applied it); the answer is lost on the way back.
          await answer.arrayBuffer();
          dropped++;
          throw new TypeError('fetch failed: the connection was reset');
        }
        return answer;
      },
    });
    const cb = await engine.create('job');
    const r = await client.report(engine.callbackUrl(cb.token), 'progress', { pct: 30 });
    expect(r).toMatchObject({ kind: 'replayed', status: 'progress', attempts: 2 });
    expect(keys).toEqual([r.dedupKey, r.dedupKey]);
    expect(runs.progress).toBe(1);
    expect((await engine.get(cb.token)).data).toMatchObject({ pct: 30 });
  });

  it('keeps the raw body for the routes and leaves the rest of the app its JSON parser', async () => {
    const { origin, engine, signed } = await start();
    const parsed = await fetch(`${origin}/orders`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ id: 1 }),
    });
    expect(await parsed.json()).toEqual({ parsed: { id: 1 } });
    // A signed report whose body holds odd spacing: verified over the bytes sent, parsed once.
    const cb = await engine.create('job');
    const body = '{ "pct" :  42 }';
    const r = await signed(`${PREFIX}/callbacks/${cb.token}/progress`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body,
    });
    expect(r.status).toBe(200);
    expect((await engine.get(cb.token)).data).toMatchObject({ pct: 42 });
  });

  it('passes paths that are not its routes on to the app (404 from the framework, not 401)', async () => {
    const { origin } = await start();
    const r = await fetch(`${origin}${PREFIX}/not-ours`);
    expect(r.status).toBe(404);
  });
});

describe('Fastify plugin: closing the app', () => {
  it('app.close() ends an open dashboard event stream instead of waiting for its client', async () => {
    const { engine, port, origin } = await engineAt();
    const monitor = createMonitor(engine);
    open.push(async () => monitor.close());
    const app = Fastify();
    await app.register(callbackEngine, { engine, prefix: PREFIX, dashboard: { monitor } });
    await app.listen({ port, host: '127.0.0.1' });
    const stream = await fetch(`${origin}${PREFIX}/dashboard/events`);
    const reader = stream.body!.getReader();
    expect(new TextDecoder().decode((await reader.read()).value as Uint8Array)).toMatch(
      /^event: view/,
    );
    const started = performance.now();
    await app.close();
    expect(performance.now() - started).toBeLessThan(2000);
    // The stream ended (or broke off) on the client's side too.
    await expect(
      reader.read().then(
        (r) => r.done,
        () => true,
      ),
    ).resolves.toBe(true);
  });
});

describe('framework details', () => {
  it("Express: the X-Powered-By header is the app's choice, not the router's", async () => {
    const { engine, port, origin } = await engineAt();
    const app = express();
    app.disable('x-powered-by');
    app.use(PREFIX, callbackEngineRouter(engine));
    const server: Server = await new Promise((resolve) => {
      const s = app.listen(port, '127.0.0.1', () => resolve(s));
    });
    open.push(() => new Promise((resolve) => server.close(resolve)));
    const r = await fetch(`${origin}${PREFIX}/openapi.json`);
    expect(r.status).toBe(200);
    expect(r.headers.get('x-powered-by')).toBeNull();
  });

  it('Fastify: with openApi: false the document is not routed at all', async () => {
    const { engine } = await engineAt();
    const app = Fastify();
    open.push(() => app.close());
    await app.register(callbackEngine, { engine, prefix: PREFIX, openApi: false });
    const r = await app.inject({ method: 'GET', url: `${PREFIX}/openapi.json` });
    expect(r.statusCode).toBe(404);
    expect(r.json<{ message: string }>().message).toMatch(
      /^Route GET:\/hooks\/openapi\.json not found/,
    );
  });
});

describe('the mount and the engine baseUrl', () => {
  const BASE_MESSAGE =
    /mounted at "\/hooks", but the engine's baseUrl "http:\/\/127\.0\.0\.1:\d+" does not end with it.*e\.g\. "http:\/\/127\.0\.0\.1:\d+\/hooks"/;

  it('Fastify: registering under a prefix the baseUrl lacks fails, naming the fix', async () => {
    const { engine } = await engineAt('');
    const app = Fastify();
    open.push(() => app.close());
    await expect(app.register(callbackEngine, { engine, prefix: '/hooks' })).rejects.toThrow(
      BASE_MESSAGE,
    );
  });

  it('Fastify: the prefix of enclosing plugins counts, and a baseUrl with more in front passes', async () => {
    const { engine } = await engineAt('/shop/api/hooks');
    const app = Fastify();
    open.push(() => app.close());
    await app.register(
      async (api) => {
        await api.register(callbackEngine, { engine, prefix: '/hooks' });
      },
      { prefix: '/api' },
    );
    await app.ready();
    const r = await app.inject({ method: 'GET', url: '/api/hooks/openapi.json' });
    expect(r.statusCode).toBe(200);
    expect(r.json<{ servers: { url: string }[] }>().servers[0]!.url).toMatch(/\/shop$/);

    const { engine: other } = await engineAt('/hooks');
    const app2 = Fastify();
    open.push(() => app2.close());
    await expect(
      app2.register(
        async (api) => {
          await api.register(callbackEngine, { engine: other, prefix: '/hooks' });
        },
        { prefix: '/api' },
      ),
    ).rejects.toThrow(/mounted at "\/api\/hooks"/);
  });

  it('Express: app.use() under a path the baseUrl lacks throws, also when an enclosing app is mounted later', async () => {
    const { engine } = await engineAt('');
    expect(() => express().use('/hooks', callbackEngineRouter(engine))).toThrow(BASE_MESSAGE);

    const { engine: nested } = await engineAt('/hooks');
    const api = express();
    api.use('/hooks', callbackEngineRouter(nested)); // "/hooks" so far: fine
    expect(() => express().use('/api', api)).toThrow(/mounted at "\/api\/hooks"/);

    const { engine: full } = await engineAt('/api/hooks');
    const api2 = express();
    api2.use('/hooks', callbackEngineRouter(full));
    expect(() => express().use('/api', api2)).not.toThrow();
  });

  it('an engine without baseUrl mounts anywhere (it hands out no callback URLs)', async () => {
    const { engine } = makeEngine();
    open.push(() => engine.close());
    expect(() => express().use('/hooks', callbackEngineRouter(engine))).not.toThrow();
    const app = Fastify();
    open.push(() => app.close());
    await app.register(callbackEngine, { engine, prefix: '/hooks' });
    await app.ready();
  });
});

describe('mount options are checked when mounting', () => {
  it('refuses a missing engine, basePath, unknown keys, and a monitor or metrics of another engine', async () => {
    const { engine } = makeEngine();
    const { engine: other } = makeEngine();
    open.push(
      () => engine.close(),
      () => other.close(),
    );
    const monitor = createMonitor(other);
    open.push(async () => monitor.close());
    expect(() => callbackEngineRouter({} as CallbackEngine)).toThrow(
      'callbackEngineRouter() needs an engine from createCallbackEngine() (got an object)',
    );
    expect(() => callbackEngineRouter(engine, { basePath: '/x' } as MountOptions)).toThrow(
      /takes no basePath option: its routes live where it is mounted/,
    );
    expect(() => callbackEngineRouter(engine, { dashbaord: monitor } as MountOptions)).toThrow(
      'unknown option "dashbaord" in callbackEngineRouter() options (did you mean "dashboard"?)',
    );
    expect(() => callbackEngineRouter(engine, { dashboard: monitor })).toThrow(
      'the monitor watches another engine than the one mounted',
    );
    expect(() =>
      callbackEngineRouter(engine, {
        dashboard: { monitor: createMonitor(engine), basePath: 'x' },
      }),
    ).toThrow(/options\.dashboard\.basePath must be a fixed path relative to the mount/);
    const metrics = createMetrics(other);
    open.push(async () => metrics.close());
    expect(() => callbackEngineRouter(engine, { metrics })).toThrow(
      'the metrics were created for another engine than the one mounted',
    );
    const app = Fastify();
    open.push(() => app.close());
    await expect(app.register(callbackEngine, { prefix: '/hooks' } as never)).rejects.toThrow(
      'the callback-engine Fastify plugin (options.engine) needs an engine',
    );
    const app2 = Fastify();
    open.push(() => app2.close());
    await expect(app2.register(callbackEngine, { engine, prefix: '/t/:tenant' })).rejects.toThrow(
      'needs a fixed prefix, without parameters or wildcards (got "/t/:tenant")',
    );
  });
});

describe('the framework packages stay optional', () => {
  it('the root, http, client and dashboard entries load with express and fastify unresolvable; only callback-engine/express needs its framework', () => {
    // A resolve hook that makes both frameworks missing, as in a project that installed neither.
    const hook = `export async function resolve(specifier, context, next) {
      if (/^(express|fastify)(\\/|$)/.test(specifier)) {
        const err = new Error('not installed: ' + specifier);
        err.code = 'ERR_MODULE_NOT_FOUND';
        throw err;
      }
      return next(specifier, context);
    }`;
    const register = `import { register } from 'node:module'; register(${JSON.stringify(
      `data:text/javascript,${encodeURIComponent(hook)}`,
    )});`;
    const script = `
      const loaded = [];
      for (const name of ['callback-engine', 'callback-engine/http', 'callback-engine/client', 'callback-engine/dashboard', 'callback-engine/fastify']) {
        const m = await import(name);
        loaded.push(name + ':' + Object.keys(m).length);
      }
      let express = 'loaded';
      try { await import('callback-engine/express'); } catch (err) { express = err.message; }
      console.log(JSON.stringify({ loaded, express }));
    `;
    const out = execFileSync(
      process.execPath,
      [
        '--import',
        'tsx',
        '--import',
        `data:text/javascript,${encodeURIComponent(register)}`,
        '--input-type=module',
        '-e',
        script,
      ],
      { encoding: 'utf8', timeout: 60_000 },
    );
    const { loaded, express: expressEntry } = JSON.parse(out.trim().split('\n').at(-1)!) as {
      loaded: string[];
      express: string;
    };
    expect(loaded).toHaveLength(5);
    for (const l of loaded) expect(l).not.toMatch(/:0$/);
    expect(expressEntry).toBe('not installed: express');
  });
});
