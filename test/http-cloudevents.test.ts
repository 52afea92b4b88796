import { CloudEvent, emitterFor, httpTransport, HTTP, Mode, type Message } from 'cloudevents';
import { describe, expect, it } from 'vitest';
import type { ServeOptions } from '../src/http/index.js';
import type { CallbackEngine } from '../src/index.js';
import { jsonOf, serviceFixture } from './helpers/http.js';

const fx = serviceFixture();

/** Serves the test anchors; by default trusting correlation, as these tests exercise it. */
function start(
  options: ServeOptions = { cloudEvents: { trustCorrelation: true } },
): Promise<{ engine: CallbackEngine; url: string }> {
  return fx.start((engine) => {
    engine.anchor('job');
    engine.anchor('order', {
      correlate: ['orderId', 'region'],
      eventTypes: {
        'com.example.order.shipped': 'progress',
        'com.example.order.delivered': 'complete',
      },
    });
  }, options);
}

/** Sends an SDK-encoded message with fetch, to see the status code (the SDK transport hides it). */
async function send(url: string, message: Message): Promise<{ status: number; body: unknown }> {
  const r = await fetch(`${url}/events`, {
    method: 'POST',
    headers: message.headers as Record<string, string>,
    body: message.body as string,
  });
  return { status: r.status, body: await r.json() };
}

const event = (attrs: Record<string, unknown>) =>
  new CloudEvent({ source: '/test/worker', type: 'com.example.report', ...attrs });

/**
 * POSTs a hand-built structured-mode `progress` event for `token`: for shapes the SDK would
 * refuse to build or would re-encode (non-object data, data_base64).
 */
const postStructured = (url: string, token: string, attrs: Record<string, unknown>) =>
  fetch(`${url}/events`, {
    method: 'POST',
    headers: { 'content-type': 'application/cloudevents+json' },
    body: JSON.stringify({
      specversion: '1.0',
      id: 'x',
      source: 's',
      type: 't',
      callbacktoken: token,
      callbackstatus: 'progress',
      ...attrs,
    }),
  });

describe('correlation without a token needs trust', () => {
  it('refuses events found by callbackid or correlate keys with 403 CBE_ERR_UNTRUSTED_CORRELATION when the handler has no auth; callbacktoken still works', async () => {
    const { engine, url } = await start({});
    const job = await engine.create('job');
    const order = await engine.create('order', { data: { orderId: 'A-1', region: 'eu' } });
    for (const message of [
      HTTP.binary(event({ callbackid: job.id, callbackstatus: 'cancel' })),
      HTTP.structured(event({ callbackid: job.id, callbackstatus: 'cancel' })),
      HTTP.binary(event({ type: 'com.example.order.delivered', orderid: 'A-1', region: 'eu' })),
      HTTP.structured(event({ type: 'com.example.order.delivered', orderid: 'A-1', region: 'eu' })),
    ]) {
      const r = await send(url, message);
      expect(r.status).toBe(403);
      expect(r.body).toMatchObject({ code: 'CBE_ERR_UNTRUSTED_CORRELATION' });
      expect((r.body as { message: string }).message).toMatch(/trustCorrelation/);
    }
    expect((await engine.get(job.token)).status).toBe('create');
    expect((await engine.get(order.token)).status).toBe('create');

    const r = await send(
      url,
      HTTP.structured(event({ callbacktoken: job.token, callbackstatus: 'accept' })),
    );
    expect(r).toMatchObject({ status: 200, body: { status: 'accept' } });
  });

  it('accepts correlated events when the handler has auth', async () => {
    const { engine, url } = await start({ auth: { bearer: 'tok' } });
    const job = await engine.create('job');
    const m = HTTP.binary(event({ callbackid: job.id, callbackstatus: 'start' }));
    const r = await fetch(`${url}/events`, {
      method: 'POST',
      headers: { ...(m.headers as Record<string, string>), authorization: 'Bearer tok' },
      body: m.body as string,
    });
    expect(r.status).toBe(200);
    expect((await engine.get(job.token)).status).toBe('start');
  });
});

describe('POST /events with the official cloudevents SDK', () => {
  it('binary mode through emitterFor(httpTransport()) reaches the callback by callbacktoken', async () => {
    const { engine, url } = await start();
    const cb = await engine.create('job', { data: { n: 1 } });
    const emit = emitterFor(httpTransport(`${url}/events`), { binding: HTTP, mode: Mode.BINARY });
    const response = (await emit(
      event({ callbacktoken: cb.token, callbackstatus: 'progress', data: { pct: 30 } }),
    )) as { body: string };
    expect(JSON.parse(response.body)).toEqual({
      status: 'progress',
      token: cb.token,
      data: { n: 1, pct: 30 },
    });
    expect((await engine.get(cb.token)).data).toEqual({ n: 1, pct: 30 });
  });

  it('structured mode through emitterFor(httpTransport()) applies the report', async () => {
    const { engine, url } = await start();
    const cb = await engine.create('job');
    const emit = emitterFor(httpTransport(`${url}/events`), {
      binding: HTTP,
      mode: Mode.STRUCTURED,
    });
    const response = (await emit(
      event({ callbacktoken: cb.token, callbackstatus: 'complete', data: { result: 'ok' } }),
    )) as { body: string };
    expect(JSON.parse(response.body)).toMatchObject({ status: 'complete', data: { result: 'ok' } });
    expect((await engine.get(cb.token)).status).toBe('complete');
  });

  it('finds the callback by callbackid (instance-id correlation) in both modes', async () => {
    const { engine, url } = await start();
    const cb = await engine.create('job');
    let r = await send(url, HTTP.binary(event({ callbackid: cb.id, callbackstatus: 'accept' })));
    expect(r).toMatchObject({ status: 200, body: { status: 'accept', token: cb.token } });
    r = await send(url, HTTP.structured(event({ callbackid: cb.id, callbackstatus: 'start' })));
    expect(r).toMatchObject({ status: 200, body: { status: 'start' } });
    r = await send(url, HTTP.binary(event({ callbackid: 'no-such-id', callbackstatus: 'start' })));
    expect(r).toMatchObject({
      status: 404,
      body: { status: 'notFound', code: 'CBE_ERR_NOT_FOUND' },
    });
  });

  it('routes by the anchor correlation attributes and maps the event type to a status', async () => {
    const { engine, url } = await start();
    const a = await engine.create('order', { data: { orderId: 'A-1', region: 'eu' } });
    const b = await engine.create('order', { data: { orderId: 'A-1', region: 'us' } });
    let r = await send(
      url,
      HTTP.binary(
        event({
          type: 'com.example.order.shipped',
          orderid: 'A-1',
          region: 'us',
          data: { carrier: 'x' },
        }),
      ),
    );
    expect(r).toMatchObject({
      status: 200,
      body: { status: 'progress', token: b.token, data: { carrier: 'x' } },
    });
    r = await send(
      url,
      HTTP.structured(event({ type: 'com.example.order.delivered', orderid: 'A-1', region: 'eu' })),
    );
    expect(r).toMatchObject({ status: 200, body: { status: 'complete', token: a.token } });
    expect((await engine.get(a.token)).status).toBe('complete');
    expect((await engine.get(b.token)).status).toBe('progress');
    r = await send(
      url,
      HTTP.binary(event({ type: 'com.example.order.shipped', orderid: 'B-2', region: 'eu' })),
    );
    expect(r).toMatchObject({ status: 404, body: { status: 'notFound' } });
  });

  it('answers 400 when no status can be found, and does not touch the callback', async () => {
    const { engine, url } = await start();
    const cb = await engine.create('order', { data: { orderId: 'Z', region: 'eu' } });
    const r = await send(
      url,
      HTTP.binary(event({ type: 'com.example.unmapped', callbacktoken: cb.token })),
    );
    expect(r.status).toBe(400);
    expect(r.body).toMatchObject({ code: 'CBE_ERR_INVALID_MESSAGE' });
    expect((r.body as { message: string }).message).toMatch(/callbackstatus/);
    expect((await engine.get(cb.token)).status).toBe('create');
  });
});

describe('POST /events: batch mode and malformed events', () => {
  it('answers a batch with one result per event, in order', async () => {
    const { engine, url } = await start();
    const cb = await engine.create('job');
    const batch = [
      event({ id: 'e1', callbacktoken: cb.token, callbackstatus: 'progress', data: { step: 1 } }),
      event({ id: 'e2', callbacktoken: cb.token, callbackstatus: 'progress', data: { step: 2 } }),
      { specversion: '0.3', id: 'e3', source: 's', type: 't' },
      event({ id: 'e4', callbacktoken: 'forged', callbackstatus: 'complete' }),
      event({
        id: 'e5',
        callbacktoken: cb.token,
        callbackstatus: 'complete',
        data: { done: true },
      }),
      event({
        id: 'e6',
        callbacktoken: cb.token,
        callbackstatus: 'error',
        data: { message: 'late' },
      }),
    ];
    const r = await fetch(`${url}/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/cloudevents-batch+json' },
      body: JSON.stringify(batch),
    });
    expect(r.status).toBe(200);
    const results = (await r.json()) as {
      id: string;
      statusCode: number;
      status?: string;
      code?: string;
      outcome?: string;
    }[];
    expect(results.map((x) => [x.id, x.statusCode, x.status ?? x.code, x.outcome])).toEqual([
      ['e1', 200, 'progress', 'applied'],
      ['e2', 200, 'progress', 'applied'],
      ['e3', 400, 'CBE_ERR_INVALID_MESSAGE', undefined],
      ['e4', 404, 'notFound', 'notFound'],
      ['e5', 200, 'complete', 'applied'],
      ['e6', 409, 'complete', 'conflict'],
    ]);
    expect((await engine.get(cb.token)).data).toEqual({ step: 2, done: true });
  });

  it('refuses a batch that is not an array or holds too many events', async () => {
    const { url } = await fx.start(() => {}, { maxBatchEvents: 2 });
    const post = (body: unknown) =>
      fetch(`${url}/events`, {
        method: 'POST',
        headers: { 'content-type': 'application/cloudevents-batch+json' },
        body: JSON.stringify(body),
      });
    let r = await post({ not: 'an array' });
    expect(r.status).toBe(400);
    r = await post([{}, {}, {}]);
    expect(r.status).toBe(400);
    expect((await jsonOf(r)).message).toMatch(/at most 2/);
  });

  it('answers 400 for missing attributes, 415 for non-event or non-JSON requests', async () => {
    const { engine, url } = await start();
    const cb = await engine.create('job');
    const good = HTTP.binary(
      event({ callbacktoken: cb.token, callbackstatus: 'progress', data: { a: 1 } }),
    );
    const headers = good.headers as Record<string, string>;
    const noSource = Object.fromEntries(
      Object.entries(headers).filter(([name]) => name !== 'ce-source'),
    );
    let r = await fetch(`${url}/events`, { method: 'POST', headers: noSource, body: '{}' });
    expect(r.status).toBe(400);
    expect((await jsonOf(r)).message).toMatch(/source/);
    r = await fetch(`${url}/events`, {
      method: 'POST',
      headers: { ...headers, 'content-type': 'text/plain' },
      body: 'hello',
    });
    expect(r.status).toBe(415);
    r = await fetch(`${url}/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{}',
    });
    expect(r.status).toBe(415);
    expect((await jsonOf(r)).code).toBe('CBE_ERR_UNSUPPORTED_MEDIA_TYPE');
    r = await postStructured(url, cb.token, { data: [1] });
    expect(r.status).toBe(400);
    expect((await jsonOf(r)).code).toBe('CBE_ERR_INVALID_DATA');
    r = await fetch(`${url}/events`, { method: 'POST', headers, body: '{"a":' });
    expect(r.status).toBe(400);
    expect((await engine.get(cb.token)).status).toBe('create');
  });

  it('accepts data_base64 JSON and answers the webhook abuse-protection handshake', async () => {
    const { engine, url } = await start();
    const cb = await engine.create('job');
    let r = await postStructured(url, cb.token, {
      datacontenttype: 'application/json',
      data_base64: Buffer.from('{"b64":true}').toString('base64'),
    });
    expect(r.status).toBe(200);
    expect((await jsonOf(r)).data).toEqual({ b64: true });
    r = await fetch(`${url}/events`, {
      method: 'OPTIONS',
      headers: { 'webhook-request-origin': 'eventemitter.example.com' },
    });
    expect(r.status).toBe(200);
    expect(r.headers.get('webhook-allowed-origin')).toBe('eventemitter.example.com');
    expect(r.headers.get('allow')).toBe('POST, OPTIONS');
  });
});
