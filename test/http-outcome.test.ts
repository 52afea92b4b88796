import { describe, expect, it } from 'vitest';
import { jsonOf, serviceFixture } from './helpers/http.js';

const fx = serviceFixture();

describe('the Callback-Outcome header', () => {
  it('tells applied, ignored (a late accept/start), replayed, conflict, notFound and read apart; the body keeps its shape', async () => {
    const { engine, url } = await fx.start((e) => e.anchor('job'));
    const cb = await engine.create('job');
    const post = (status: string, data: object = {}) =>
      fetch(`${url}/callbacks/${cb.token}/${status}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(data),
      });

    let r = await post('progress', { pct: 10 });
    expect(r.status).toBe(200);
    expect(r.headers.get('callback-outcome')).toBe('applied');

    r = await post('accept', { late: true });
    expect(r.status).toBe(200);
    expect(r.headers.get('callback-outcome')).toBe('ignored');
    expect(Object.keys(await jsonOf(r))).toEqual(['status', 'token', 'data']);

    r = await post('start');
    expect(r.headers.get('callback-outcome')).toBe('ignored');

    r = await post('complete', { ok: 1 });
    expect(r.headers.get('callback-outcome')).toBe('applied');
    r = await post('complete', { ok: 1 });
    expect(r.status).toBe(200);
    expect(r.headers.get('callback-outcome')).toBe('replayed');
    r = await post('error', { message: 'x' });
    expect(r.status).toBe(409);
    expect(r.headers.get('callback-outcome')).toBe('conflict');

    r = await fetch(`${url}/callbacks/${cb.token}`);
    expect(r.headers.get('callback-outcome')).toBe('read');
    r = await fetch(`${url}/callbacks/not-a-token`);
    expect(r.status).toBe(404);
    expect(r.headers.get('callback-outcome')).toBe('notFound');

    r = await fetch(`${url}/callbacks`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ type: 'CALLBACK', callbackToken: cb.token, callbackStatus: 'cancel' }),
    });
    expect(r.status).toBe(409);
    expect(r.headers.get('callback-outcome')).toBe('conflict');
  });

  it('is absent from errors that are not about a callback', async () => {
    const { url } = await fx.start((e) => e.anchor('job'));
    const r = await fetch(`${url}/callbacks`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{',
    });
    expect(r.status).toBe(400);
    expect(r.headers.get('callback-outcome')).toBeNull();
  });
});
