import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { PoolSaturatedError, type CallbackEngine } from '../src/index.js';
import { createDispatchHandler, serve, type DispatchServer } from '../src/http/index.js';
import { makeEngine } from './helpers/engine.js';

/** A JSON response body, for reading its fields. */
const jsonOf = async (r: Response) => (await r.json()) as Record<string, unknown>;

let engine: CallbackEngine | undefined;
let service: DispatchServer | undefined;
let server: Server | undefined;

afterEach(async () => {
  await service?.close();
  if (server) await new Promise((resolve) => server!.close(resolve));
  await engine?.close();
  engine = service = server = undefined;
});

async function start(
  options: Parameters<typeof serve>[1] = {},
): Promise<{ engine: CallbackEngine; url: string }> {
  ({ engine } = makeEngine());
  engine.anchor('job');
  service = await serve(engine, options);
  return { engine, url: service.url };
}

function postJson(
  url: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<Response> {
  return fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

const msg = (token: string, callbackStatus: string, callbackData?: unknown) => ({
  type: 'CALLBACK',
  callbackToken: token,
  callbackStatus,
  callbackData,
});

describe('POST /callbacks (the CALLBACK message)', () => {
  it('answers the engine answer: applied, ignored and replayed are 200', async () => {
    const { engine, url } = await start();
    const cb = await engine.create('job', { data: { order: 1 } });
    let r = await postJson(`${url}/callbacks`, msg(cb.token, 'progress', { pct: 10 }));
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toMatch(/^application\/json/);
    expect(await jsonOf(r)).toEqual({
      status: 'progress',
      token: cb.token,
      data: { order: 1, pct: 10 },
    });
    r = await postJson(`${url}/callbacks`, msg(cb.token, 'accept'));
    expect(r.status).toBe(200);
    expect((await jsonOf(r)).status).toBe('progress');
    r = await postJson(`${url}/callbacks`, msg(cb.token, 'complete', { ok: true }));
    expect(r.status).toBe(200);
    expect(await jsonOf(r)).toMatchObject({ status: 'complete', data: { ok: true } });
    r = await postJson(`${url}/callbacks`, msg(cb.token, 'complete', { ok: true }));
    expect(r.status).toBe(200);
    expect((await engine.get(cb.token)).status).toBe('complete');
  });

  it('answers 409 with the current status when the callback is no longer active', async () => {
    const { engine, url } = await start();
    const cb = await engine.create('job');
    await engine.cancel(cb.token);
    const r = await postJson(`${url}/callbacks`, msg(cb.token, 'complete', { late: true }));
    expect(r.status).toBe(409);
    expect(await jsonOf(r)).toMatchObject({
      status: 'cancel',
      token: cb.token,
      code: 'CBE_ERR_ALREADY_SETTLED',
    });
    expect((await engine.get(cb.token)).data).toEqual({});
  });

  it('answers 404 with status notFound for unknown and forged tokens', async () => {
    const { engine, url } = await start();
    const cb = await engine.create('job');
    const forged = `${cb.token.slice(0, -2)}AA`;
    for (const token of ['nope', forged, '']) {
      const r = await postJson(`${url}/callbacks`, msg(token, 'complete'));
      expect(r.status).toBe(404);
      expect(await jsonOf(r)).toMatchObject({
        status: 'notFound',
        token,
        data: {},
        code: 'CBE_ERR_NOT_FOUND',
      });
    }
    expect((await engine.get(cb.token)).status).toBe('create');
  });

  it('reads with callbackAction getCallback', async () => {
    const { engine, url } = await start();
    const cb = await engine.create('job', { data: { a: 1 } });
    const r = await postJson(`${url}/callbacks`, {
      type: 'CALLBACK',
      callbackToken: cb.token,
      callbackAction: 'getCallback',
    });
    expect(r.status).toBe(200);
    expect(await jsonOf(r)).toEqual({ status: 'create', token: cb.token, data: { a: 1 } });
  });

  it.each([
    ['malformed JSON', '{"type":', 'CBE_ERR_INVALID_MESSAGE'],
    ['an empty body', '', 'CBE_ERR_INVALID_MESSAGE'],
    ['a non-object message', '[1,2]', 'CBE_ERR_INVALID_MESSAGE'],
    ['an unknown status', JSON.stringify(msg('t', 'finish')), 'CBE_ERR_INVALID_MESSAGE'],
    ['array data', JSON.stringify(msg('t', 'progress', [1])), 'CBE_ERR_INVALID_DATA'],
    ['deep nesting', `{"a":${'['.repeat(5000)}${']'.repeat(5000)}}`, 'CBE_ERR_INVALID_MESSAGE'],
  ])('answers 400 for %s', async (_name, body, code) => {
    const { url } = await start();
    const r = await postJson(`${url}/callbacks`, body);
    expect(r.status).toBe(400);
    const json = (await r.json()) as { code: string; message: string };
    expect(json.code).toBe(code);
    expect(json.message.length).toBeGreaterThan(0);
  });

  it('answers 400 for invalid UTF-8 and keeps hostile keys and numbers harmless', async () => {
    const { engine, url } = await start();
    const cb = await engine.create('job');
    let r = await fetch(`${url}/callbacks`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: Buffer.concat([
        Buffer.from('{"type":"CALLBACK","x":"'),
        Buffer.from([0xc3, 0x28]),
        Buffer.from('"}'),
      ]),
    });
    expect(r.status).toBe(400);
    expect(((await r.json()) as { message: string }).message).toMatch(/UTF-8/);
    // A number JSON.parse turns into Infinity cannot be stored as JSON: refused, nothing applied.
    const huge = `{"type":"CALLBACK","callbackToken":"${cb.token}","callbackStatus":"progress","callbackData":{"big":1e999}}`;
    r = await postJson(`${url}/callbacks`, huge);
    expect(r.status).toBe(400);
    expect(await r.json()).toMatchObject({ code: 'CBE_ERR_INVALID_DATA' });
    const body = `{"type":"CALLBACK","callbackToken":"${cb.token}","callbackStatus":"progress","callbackData":{"__proto__":{"polluted":true},"constructor":1,"nested":{"__proto__":{"polluted":true},"ok":1},"n":123456789012345678901234567890}}`;
    r = await postJson(`${url}/callbacks`, body);
    expect(r.status).toBe(200);
    const answer = (await r.json()) as { data: Record<string, unknown> };
    expect(Object.keys(answer.data).sort()).toEqual(['n', 'nested']);
    // Forbidden keys are dropped at every depth, not only the top level.
    expect(answer.data.nested).toEqual({ ok: 1 });
    expect(Object.keys((await engine.get(cb.token)).data.nested as object)).toEqual(['ok']);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('answers 415 for a non-JSON content type and 413 over the engine data limit', async () => {
    ({ engine } = makeEngine({ maxDataBytes: 64 }));
    engine.anchor('job');
    service = await serve(engine);
    const cb = await engine.create('job');
    let r = await fetch(`${service.url}/callbacks`, {
      method: 'POST',
      body: JSON.stringify(msg(cb.token, 'start')),
    });
    expect(r.status).toBe(415);
    expect((await jsonOf(r)).code).toBe('CBE_ERR_UNSUPPORTED_MEDIA_TYPE');
    r = await postJson(`${service.url}/callbacks`, msg(cb.token, 'start'), {
      'content-type': 'application/json; charset=latin1',
    });
    expect(r.status).toBe(415);
    r = await postJson(
      `${service.url}/callbacks`,
      msg(cb.token, 'progress', { blob: 'x'.repeat(100) }),
    );
    expect(r.status).toBe(413);
    expect((await jsonOf(r)).code).toBe('CBE_ERR_PAYLOAD_TOO_LARGE');
    expect((await engine.get(cb.token)).status).toBe('create');
  });
});

describe('GET /callbacks/{token} and the callback URL', () => {
  it('mounts on a plain node:http server; callbackUrl() mints a URL the route accepts', async () => {
    server = createServer();
    await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    ({ engine } = makeEngine({ baseUrl: base }));
    engine.anchor('job');
    server.on('request', createDispatchHandler(engine));
    const cb = await engine.create('job', { data: { id: 9 } });
    const cbUrl = engine.callbackUrl(cb.token);
    expect(cbUrl).toBe(`${base}/callbacks/${cb.token}`);

    let r = await fetch(cbUrl);
    expect(r.status).toBe(200);
    expect(await jsonOf(r)).toEqual({ status: 'create', token: cb.token, data: { id: 9 } });
    r = await fetch(`${cbUrl}/start`, { method: 'POST' });
    expect(r.status).toBe(200);
    expect((await jsonOf(r)).status).toBe('start');
    r = await postJson(`${cbUrl}/progress`, { pct: 50 });
    expect(await jsonOf(r)).toMatchObject({ status: 'progress', data: { id: 9, pct: 50 } });
    r = await postJson(`${cbUrl}/error`, { message: 'boom', errorNumber: 7 });
    expect(await jsonOf(r)).toMatchObject({ status: 'error', data: { message: 'boom' } });
    r = await postJson(`${cbUrl}/complete`, {});
    expect(r.status).toBe(409);
    expect((await jsonOf(r)).status).toBe('error');
    r = await fetch(`${cbUrl}`, { method: 'HEAD' });
    expect(r.status).toBe(200);
    expect(await r.text()).toBe('');
  });

  it('answers 404 notFound for unknown tokens, 400 for bad statuses, data or percent-encoding', async () => {
    const { engine, url } = await start();
    const cb = await engine.create('job');
    let r = await fetch(`${url}/callbacks/unknown-token`);
    expect(r.status).toBe(404);
    expect(await jsonOf(r)).toMatchObject({
      status: 'notFound',
      token: 'unknown-token',
      code: 'CBE_ERR_NOT_FOUND',
    });
    r = await postJson(`${url}/callbacks/${cb.token}/finish`, {});
    expect(r.status).toBe(400);
    expect(await jsonOf(r)).toMatchObject({
      code: 'CBE_ERR_INVALID_MESSAGE',
      message: expect.stringMatching(
        /^the status in a callback URL .* \(got "finish"\)$/,
      ) as unknown,
    });
    r = await postJson(`${url}/callbacks/${cb.token}/progress`, '"text"');
    expect(r.status).toBe(400);
    expect((await jsonOf(r)).code).toBe('CBE_ERR_INVALID_DATA');
    r = await postJson(`${url}/callbacks/%E0%A4%A/start`, {});
    expect(r.status).toBe(400);
    r = await fetch(`${url}/callbacks/${cb.token}/start`, {
      method: 'POST',
      body: 'x',
      headers: { 'content-type': 'text/plain' },
    });
    expect(r.status).toBe(415);
    expect((await engine.get(cb.token)).status).toBe('create');
  });
});

describe('routing, methods and availability', () => {
  it('answers 405 with Allow, 404 for unknown routes, OPTIONS with Allow', async () => {
    const { url } = await start();
    let r = await fetch(`${url}/callbacks`);
    expect(r.status).toBe(405);
    expect(r.headers.get('allow')).toBe('POST, OPTIONS');
    expect((await jsonOf(r)).code).toBe('CBE_ERR_METHOD_NOT_ALLOWED');
    r = await fetch(`${url}/callbacks/abc`, { method: 'DELETE' });
    expect(r.status).toBe(405);
    expect(r.headers.get('allow')).toBe('GET, HEAD, OPTIONS');
    r = await fetch(`${url}/events`, { method: 'PUT', body: '{}' });
    expect(r.status).toBe(405);
    r = await fetch(`${url}/nowhere`);
    expect(r.status).toBe(404);
    expect((await jsonOf(r)).code).toBe('CBE_ERR_ROUTE_NOT_FOUND');
    r = await fetch(`${url}/callbacks/a/b/c`, { method: 'POST' });
    expect(r.status).toBe(404);
    r = await fetch(`${url}/callbacks`, { method: 'OPTIONS' });
    expect(r.status).toBe(204);
    expect(r.headers.get('allow')).toBe('POST, OPTIONS');
  });

  it('honours basePath and passes foreign paths to next() (Express/Connect mounting)', async () => {
    ({ engine } = makeEngine());
    engine.anchor('job');
    const handler = createDispatchHandler(engine, { basePath: '/hooks' });
    server = createServer((req, res) =>
      handler(req, res, () => {
        res.writeHead(418).end('next');
      }),
    );
    await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const cb = await engine.create('job');
    let r = await postJson(`${base}/hooks/callbacks/${cb.token}/accept`, {});
    expect(r.status).toBe(200);
    expect((await jsonOf(r)).status).toBe('accept');
    r = await fetch(`${base}/callbacks/${cb.token}`);
    expect(r.status).toBe(418);
    r = await fetch(`${base}/hooksx/callbacks`);
    expect(r.status).toBe(418);
  });

  it('works behind a body parser that already consumed the stream (raw Buffer or parsed JSON)', async () => {
    ({ engine } = makeEngine());
    engine.anchor('job');
    const handler = createDispatchHandler(engine);
    // What express.raw() / express.json() leave behind: the stream read to its end, req.body set.
    server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const raw = Buffer.concat(chunks);
        const parsed = req.headers['x-parser'] === 'json';
        (req as typeof req & { body?: unknown }).body = parsed
          ? (JSON.parse(raw.toString()) as unknown)
          : raw;
        handler(req, res);
      });
    });
    await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const cb = await engine.create('job');
    let r = await postJson(`${base}/callbacks/${cb.token}/progress`, { via: 'raw' });
    expect(r.status).toBe(200);
    expect((await jsonOf(r)).data).toEqual({ via: 'raw' });
    r = await postJson(`${base}/callbacks`, msg(cb.token, 'progress', { via: 'json' }), {
      'x-parser': 'json',
    });
    expect(r.status).toBe(200);
    expect((await jsonOf(r)).data).toEqual({ via: 'json' });
  });

  it('answers 503 with Retry-After when the pool is saturated or the engine is closed', async () => {
    const { engine: real } = makeEngine();
    engine = real;
    real.anchor('job');
    const cb = await real.create('job');
    // The engine refuses worker-step reports this way when the pool queue is full.
    const saturated = new Proxy(real, {
      get(target, key) {
        if (key === 'deliver') return () => Promise.reject(new PoolSaturatedError());
        const value = Reflect.get(target, key) as unknown;
        return typeof value === 'function'
          ? (value as (...args: unknown[]) => unknown).bind(target)
          : value;
      },
    });
    service = await serve(saturated, { retryAfterSeconds: 3 });
    let r = await postJson(`${service.url}/callbacks`, msg(cb.token, 'progress'));
    expect(r.status).toBe(503);
    expect(r.headers.get('retry-after')).toBe('3');
    expect((await jsonOf(r)).code).toBe('CBE_ERR_POOL_SATURATED');
    await real.close();
    r = await fetch(`${service.url}/callbacks/${cb.token}`);
    expect(r.status).toBe(503);
    expect(r.headers.get('retry-after')).toBe('3');
    expect((await jsonOf(r)).code).toBe('CBE_ERR_ENGINE_CLOSED');
  });

  it('serves the OpenAPI document and sets server timeouts', async () => {
    const { url } = await start({
      requestTimeoutMs: 20_000,
      headersTimeoutMs: 5_000,
      keepAliveTimeoutMs: 7_000,
    });
    const r = await fetch(`${url}/openapi.json`);
    expect(r.status).toBe(200);
    expect((await jsonOf(r)).openapi).toBe('3.1.0');
    expect(service!.server.requestTimeout).toBe(20_000);
    expect(service!.server.headersTimeout).toBe(5_000);
    expect(service!.server.keepAliveTimeout).toBe(7_000);
  });
});
