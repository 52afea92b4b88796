import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { CreatedCallback } from '../src/index.js';
import type { DispatchHandlerOptions } from '../src/http/index.js';
import { jsonOf, serviceFixture } from './helpers/http.js';

const fx = serviceFixture();

async function start(
  options: DispatchHandlerOptions,
): Promise<{ cb: CreatedCallback; url: string }> {
  const { engine, url } = await fx.start((e) => e.anchor('job'), options);
  return { cb: await engine.create('job'), url };
}

const sign = (secret: string, body: string) =>
  createHmac('sha256', secret).update(body).digest('hex');

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

  it('leaves /openapi.json public and describes the scheme there', async () => {
    const { url } = await start({ auth: { bearer: 'current-token' } });
    const r = await fetch(`${url}/openapi.json`);
    expect(r.status).toBe(200);
    const doc = (await r.json()) as { components: { securitySchemes: Record<string, unknown> } };
    expect(doc.components.securitySchemes.bearer).toEqual({ type: 'http', scheme: 'bearer' });
  });
});

describe('HMAC signature auth', () => {
  it('accepts hex and sha256= signatures of the raw body, refuses wrong or missing ones', async () => {
    const { cb, url } = await start({ auth: { hmac: { secret: ['new-secret', 'old-secret'] } } });
    const body = JSON.stringify({ pct: 1 });
    const post = (headers: Record<string, string>) =>
      fetch(`${url}/callbacks/${cb.token}/progress`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...headers },
        body,
      });
    let r = await post({});
    expect(r.status).toBe(401);
    expect(r.headers.get('www-authenticate')).toMatch(/^Signature /);
    r = await post({ 'x-callback-signature': sign('wrong-secret', body) });
    expect(r.status).toBe(401);
    r = await post({ 'x-callback-signature': sign('new-secret', `${body} `) });
    expect(r.status).toBe(401);
    r = await post({ 'x-callback-signature': 'sha256=zz' });
    expect(r.status).toBe(401);
    expect((await fx.engine.get(cb.token)).status).toBe('create');

    r = await post({ 'x-callback-signature': sign('new-secret', body) });
    expect(r.status).toBe(200);
    r = await post({ 'x-callback-signature': `sha256=${sign('old-secret', body).toUpperCase()}` });
    expect(r.status).toBe(200);
    r = await fetch(`${url}/callbacks/${cb.token}`, {
      headers: { 'x-callback-signature': sign('new-secret', '') },
    });
    expect(r.status).toBe(200);
  });

  it('uses the configured header, and with bearer also configured either one suffices', async () => {
    const { cb, url } = await start({
      auth: { bearer: 'tok', hmac: { secret: 's3cret', header: 'X-Hub-Signature-256' } },
    });
    const body = JSON.stringify({
      type: 'CALLBACK',
      callbackToken: cb.token,
      callbackStatus: 'accept',
    });
    const post = (headers: Record<string, string>) =>
      fetch(`${url}/callbacks`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...headers },
        body,
      });
    expect((await post({ 'x-callback-signature': sign('s3cret', body) })).status).toBe(401);
    expect((await post({ 'x-hub-signature-256': `sha256=${sign('s3cret', body)}` })).status).toBe(
      200,
    );
    expect((await post({ authorization: 'Bearer tok' })).status).toBe(200);
    const wrong = await post({ authorization: 'Bearer nope' });
    expect(wrong.status).toBe(401);
    expect(wrong.headers.get('www-authenticate')).toMatch(/^Bearer /);
  });
});
