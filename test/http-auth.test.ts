import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { CreatedCallback, SimulatedClock } from '../src/index.js';
import { signRequest, type DispatchHandlerOptions } from '../src/http/index.js';
import { jsonOf, serviceFixture } from './helpers/http.js';

const fx = serviceFixture();

async function start(
  options: DispatchHandlerOptions,
): Promise<{ cb: CreatedCallback; url: string }> {
  const { engine, url } = await fx.start((e) => e.anchor('job'), options);
  return { cb: await engine.create('job'), url };
}

describe('bearer auth', () => {
  it('answers 401 with WWW-Authenticate without or with a wrong token; accepts every configured token', async () => {
    const { cb, url } = await start({ auth: { bearer: ['current-token', 'previous-token'] } });
    const body = JSON.stringify({
      type: 'CALLBACK',
      callbackToken: cb.token,
      callbackStatus: 'progress',
    });
    const post = (headers: Record<string, string>) =>
      fetch(`${url}/callbacks`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...headers },
        body,
      });

    let r = await post({});
    expect(r.status).toBe(401);
    expect(r.headers.get('www-authenticate')).toBe('Bearer realm="callback-engine"');
    expect((await jsonOf(r)).code).toBe('CBE_ERR_UNAUTHORIZED');
    r = await post({ authorization: 'Bearer current-token-but-longer' });
    expect(r.status).toBe(401);
    expect(r.headers.get('www-authenticate')).toMatch(/error="invalid_token"/);
    r = await post({ authorization: 'Basic current-token' });
    expect(r.status).toBe(401);
    expect((await fx.engine.get(cb.token)).status).toBe('create');

    r = await post({ authorization: 'Bearer current-token' });
    expect(r.status).toBe(200);
    r = await post({ authorization: 'bearer previous-token' });
    expect(r.status).toBe(200);
    r = await fetch(`${url}/callbacks/${cb.token}`, {
      headers: { authorization: 'Bearer previous-token' },
    });
    expect(r.status).toBe(200);
    r = await fetch(`${url}/callbacks/${cb.token}`);
    expect(r.status).toBe(401);
  });

  it('puts /openapi.json behind the same auth, and describes the scheme there', async () => {
    const { url } = await start({ auth: { bearer: 'current-token' } });
    expect((await fetch(`${url}/openapi.json`)).status).toBe(401);
    const r = await fetch(`${url}/openapi.json`, {
      headers: { authorization: 'Bearer current-token' },
    });
    expect(r.status).toBe(200);
    const doc = (await r.json()) as { components: { securitySchemes: Record<string, unknown> } };
    expect(doc.components.securitySchemes.bearer).toEqual({ type: 'http', scheme: 'bearer' });
  });
});

describe('HMAC signature auth', () => {
  const now = () => Math.floor(fx.engine.clock.now() / 1000);
  const signed = (
    url: string,
    path: string,
    init: { method?: string; body?: string; secret?: string; t?: number; headers?: object } = {},
  ) => {
    const method = init.method ?? 'POST';
    const body = init.body ?? '';
    const headers = body === '' ? {} : { 'content-type': 'application/json' };
    return fetch(`${url}${path}`, {
      method,
      headers: {
        ...headers,
        'callback-signature': signRequest({
          secret: init.secret ?? 'new-secret',
          method,
          path,
          body,
          headers,
          timestamp: init.t ?? now(),
        }),
        ...init.headers,
      },
      ...(body === '' ? {} : { body }),
    });
  };

  it('signs method, path with query, timestamp and body; every secret of the rotation verifies', async () => {
    const { cb, url } = await start({ auth: { hmac: { secret: ['new-secret', 'old-secret'] } } });
    const path = `/callbacks/${cb.token}/progress`;
    const body = JSON.stringify({ pct: 1 });
    let r = await fetch(`${url}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body,
    });
    expect(r.status).toBe(401);
    expect(r.headers.get('www-authenticate')).toMatch(/^Signature /);
    expect((await jsonOf(r)).message).toMatch(/callback-signature is missing/);

    r = await signed(url, path, { body, secret: 'wrong-secret' });
    expect(r.status).toBe(401);
    expect((await jsonOf(r)).message).toMatch(/does not match/);
    // The old body-only format is not accepted.
    r = await fetch(`${url}${path}`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'callback-signature': createHmac('sha256', 'new-secret').update(body).digest('hex'),
      },
      body,
    });
    expect(r.status).toBe(401);
    // Nor the retired v1 scheme, which did not cover the headers: the 401 says so.
    const t = now();
    const v1 = createHmac('sha256', 'new-secret').update(`${t}.POST.${path}.${body}`).digest('hex');
    r = await fetch(`${url}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'callback-signature': `t=${t},v1=${v1}` },
      body,
    });
    expect(r.status).toBe(401);
    expect((await jsonOf(r)).message).toMatch(/only v1 signatures, which did not cover/);
    expect((await fx.engine.get(cb.token)).status).toBe('create');

    r = await signed(url, path, { body });
    expect(r.status).toBe(200);
    r = await signed(url, path, { body: JSON.stringify({ pct: 2 }), secret: 'old-secret' });
    expect(r.status).toBe(200);
    r = await signed(url, `/callbacks/${cb.token}?view=full`, { method: 'GET' });
    expect(r.status).toBe(200);
  });

  it('a signature for one request does not authorise another (path, method, body-less POST)', async () => {
    const { cb, url } = await start({ auth: { hmac: { secret: 'new-secret' } } });
    // A captured GET signature (empty body) replayed on a body-less cancel.
    const get = signRequest({
      secret: 'new-secret',
      method: 'GET',
      path: `/callbacks/${cb.token}`,
      timestamp: now(),
    });
    let r = await fetch(`${url}/callbacks/${cb.token}/cancel`, {
      method: 'POST',
      headers: { 'callback-signature': get },
    });
    expect(r.status).toBe(401);
    // A progress signature replayed on complete with the same body.
    const body = JSON.stringify({ pct: 5 });
    const progress = signRequest({
      secret: 'new-secret',
      method: 'POST',
      path: `/callbacks/${cb.token}/progress`,
      body,
      timestamp: now(),
    });
    r = await fetch(`${url}/callbacks/${cb.token}/complete`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'callback-signature': progress },
      body,
    });
    expect(r.status).toBe(401);
    expect((await fx.engine.get(cb.token)).status).toBe('create');
    // An empty body is signed like any other.
    r = await signed(url, `/callbacks/${cb.token}/cancel`);
    expect(r.status).toBe(200);
    expect((await fx.engine.get(cb.token)).status).toBe('cancel');
  });

  it('refuses a timestamp outside the replay window, measured on the engine clock', async () => {
    const { cb, url } = await start({
      auth: { hmac: { secret: 'new-secret', toleranceSeconds: 60 } },
    });
    const path = `/callbacks/${cb.token}`;
    let r = await signed(url, path, { method: 'GET', t: now() - 61 });
    expect(r.status).toBe(401);
    expect((await jsonOf(r)).message).toMatch(/outside the replay window of 60 s/);
    r = await signed(url, path, { method: 'GET', t: now() + 61 });
    expect(r.status).toBe(401);
    const t = now();
    r = await signed(url, path, { method: 'GET', t });
    expect(r.status).toBe(200);
    (fx.engine.clock as SimulatedClock).advance(61_000);
    r = await signed(url, path, { method: 'GET', t });
    expect(r.status).toBe(401);
  });

  it('with bearer and hmac configured, both must pass; the header name is configurable', async () => {
    const { cb, url } = await start({
      auth: { bearer: 'tok', hmac: { secret: 'new-secret', header: 'X-Signature' } },
    });
    const path = `/callbacks/${cb.token}`;
    const sig = () => signRequest({ secret: 'new-secret', method: 'GET', path, timestamp: now() });
    let r = await fetch(`${url}${path}`, { headers: { 'x-signature': sig() } });
    expect(r.status).toBe(401);
    expect(r.headers.get('www-authenticate')).toMatch(/^Bearer /);
    r = await fetch(`${url}${path}`, { headers: { authorization: 'Bearer tok' } });
    expect(r.status).toBe(401);
    expect(r.headers.get('www-authenticate')).toMatch(/^Signature .*x-signature/);
    r = await fetch(`${url}${path}`, {
      headers: { authorization: 'Bearer nope', 'x-signature': sig() },
    });
    expect(r.status).toBe(401);
    r = await fetch(`${url}${path}`, {
      headers: { authorization: 'Bearer tok', 'x-signature': sig() },
    });
    expect(r.status).toBe(200);
  });
});

describe('signRequest()', () => {
  it('is t=<seconds>,v2=<hex HMAC-SHA256 of the scheme, t, METHOD, target, covered headers and body>', () => {
    const header = signRequest({
      secret: 's',
      method: 'post',
      path: '/callbacks/x/complete?a=1',
      body: '{"a":1}',
      headers: {
        'Content-Type': 'application/json',
        'callback-dedup-key': ' k1 ',
        'ce-id': 'e1',
        authorization: 'Bearer not-signed',
        'x-other': 'not signed',
      },
      timestamp: 1700000000,
    });
    const hex = createHmac('sha256', 's')
      .update(
        'v2\n1700000000\nPOST\n/callbacks/x/complete?a=1\n' +
          'callback-dedup-key:k1\nce-id:e1\ncontent-type:application/json\n\n{"a":1}',
      )
      .digest('hex');
    expect(header).toBe(`t=1700000000,v2=${hex}`);
  });

  it('takes headers as an object, a Headers or pairs; several secrets give several signatures', () => {
    const base = { method: 'POST', path: '/events', body: '{}', timestamp: 1 };
    const pairs: [string, string][] = [
      ['ce-type', 't'],
      ['content-type', 'application/json'],
    ];
    const a = signRequest({ ...base, secret: 's', headers: Object.fromEntries(pairs) });
    expect(signRequest({ ...base, secret: 's', headers: new Headers(pairs) })).toBe(a);
    expect(signRequest({ ...base, secret: 's', headers: pairs })).toBe(a);
    expect(signRequest({ ...base, secret: 's' })).not.toBe(a);
    const both = signRequest({ ...base, secret: ['s', 'old'], headers: pairs });
    expect(both.startsWith(`${a},v2=`)).toBe(true);
    expect(both.split(',')).toHaveLength(3);
  });

  it('refuses a path that is not absolute', () => {
    expect(() => signRequest({ secret: 's', method: 'GET', path: 'callbacks' })).toThrow(
      expect.objectContaining({
        code: 'CBE_ERR_INVALID_ARGUMENT',
        message: 'signRequest: path must start with "/" and hold no line break (got "callbacks")',
      }),
    );
  });
});
