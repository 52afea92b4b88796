import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { afterEach, describe, expect, it } from 'vitest';
import { expressApp } from '../examples/express.js';
import { fastifyApp } from '../examples/fastify.js';
import { createDispatchHandler, signRequest } from '../src/http/index.js';
import type { CallbackEngine } from '../src/index.js';
import { makeEngine } from './helpers/engine.js';

let engine: CallbackEngine | undefined;
const closers: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0)) await close();
  await engine?.close();
  engine = undefined;
});

function setup(): CallbackEngine {
  ({ engine } = makeEngine());
  engine.anchor('job');
  return engine;
}

async function listen(app: express.Express): Promise<string> {
  const server: Server = await new Promise((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  closers.push(() => new Promise((r) => server.close(r)));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

const json = (body: unknown, headers: Record<string, string> = {}): RequestInit => ({
  method: 'POST',
  headers: { 'content-type': 'application/json', ...headers },
  body: JSON.stringify(body),
});

/** Drives one callback through every call-in: CALLBACK message, callback URL, CloudEvents both modes. */
async function driveAll(base: string, engine: CallbackEngine): Promise<void> {
  const cb = await engine.create('job');
  let r = await fetch(
    `${base}/hooks/callbacks`,
    json({ type: 'CALLBACK', callbackToken: cb.token, callbackStatus: 'accept' }),
  );
  expect(r.status).toBe(200);
  expect(r.headers.get('callback-outcome')).toBe('applied');
  r = await fetch(`${base}/hooks/callbacks/${cb.token}/progress`, json({ pct: 10 }));
  expect(await r.json()).toMatchObject({ status: 'progress', data: { pct: 10 } });
  r = await fetch(`${base}/hooks/events`, {
    method: 'POST',
    headers: { 'content-type': 'application/cloudevents+json' },
    body: JSON.stringify({
      specversion: '1.0',
      id: 'e1',
      source: '/worker',
      type: 'com.example.progress',
      callbacktoken: cb.token,
      callbackstatus: 'progress',
      data: { pct: 50 },
    }),
  });
  expect(r.status).toBe(200);
  expect(await r.json()).toMatchObject({ status: 'progress', data: { pct: 50 } });
  r = await fetch(`${base}/hooks/events`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'ce-specversion': '1.0',
      'ce-id': 'e2',
      'ce-source': '/worker',
      'ce-type': 'com.example.done',
      'ce-callbacktoken': cb.token,
      'ce-callbackstatus': 'complete',
    },
    body: JSON.stringify({ result: 'ok' }),
  });
  expect(r.status).toBe(200);
  expect(await r.json()).toMatchObject({ status: 'complete', data: { pct: 50, result: 'ok' } });
  r = await fetch(`${base}/hooks/callbacks/${cb.token}`);
  expect(r.headers.get('callback-outcome')).toBe('read');
  expect((await engine.get(cb.token)).status).toBe('complete');
}

describe('Express 5', () => {
  it('the README recipe (mounted before body parsers) takes every call-in, CloudEvents structured and binary', async () => {
    const e = setup();
    await driveAll(await listen(expressApp(e)), e);
  });

  it('the README recipe with HMAC auth: the signature covers the mount path (originalUrl)', async () => {
    const e = setup();
    const base = await listen(expressApp(e, { auth: { hmac: { secret: 'k' } } }));
    const cb = await e.create('job');
    const path = `/hooks/callbacks/${cb.token}/complete`;
    const body = JSON.stringify({ ok: true });
    const sig = signRequest({
      secret: 'k',
      method: 'POST',
      path,
      body,
      headers: { 'content-type': 'application/json' },
      timestamp: Math.floor(e.clock.now() / 1000),
    });
    const r = await fetch(`${base}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'callback-signature': sig },
      body,
    });
    expect(r.status).toBe(200);
    expect((await e.get(cb.token)).status).toBe('complete');
  });

  it('behind express.json() without auth it still works (the parsed body is used)', async () => {
    const e = setup();
    const app = express();
    app.use(express.json());
    app.use('/hooks', createDispatchHandler(e));
    await driveAll(await listen(app), e);
  });

  it('behind express.json() with HMAC auth, the 401 says the body parser consumed the body', async () => {
    const e = setup();
    const app = express();
    app.use(express.json());
    app.use('/hooks', createDispatchHandler(e, { auth: { hmac: { secret: 'k' } } }));
    const base = await listen(app);
    const cb = await e.create('job');
    const path = `/hooks/callbacks/${cb.token}/complete`;
    const body = JSON.stringify({ ok: true });
    const sig = signRequest({
      secret: 'k',
      method: 'POST',
      path,
      body,
      headers: { 'content-type': 'application/json' },
      timestamp: Math.floor(e.clock.now() / 1000),
    });
    const r = await fetch(`${base}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'callback-signature': sig },
      body,
    });
    expect(r.status).toBe(401);
    const answer = (await r.json()) as { code: string; message: string };
    expect(answer.code).toBe('CBE_ERR_UNAUTHORIZED');
    expect(answer.message).toMatch(/already parsed by a body parser/);
    expect(answer.message).toMatch(/before express\.json\(\)/);
    expect((await e.get(cb.token)).status).toBe('create');
  });
});

describe('Fastify 5', () => {
  it('the README recipe takes every call-in, CloudEvents structured (no 415) and binary', async () => {
    const e = setup();
    const app = await fastifyApp(e);
    closers.push(() => app.close());
    const base = await app.listen({ port: 0, host: '127.0.0.1' });
    await driveAll(base, e);
  });

  it('the README recipe with HMAC auth', async () => {
    const e = setup();
    const app = await fastifyApp(e, { auth: { hmac: { secret: 'k' } } });
    closers.push(() => app.close());
    const base = await app.listen({ port: 0, host: '127.0.0.1' });
    const cb = await e.create('job');
    const path = `/hooks/callbacks/${cb.token}/cancel`;
    const sig = signRequest({
      secret: 'k',
      method: 'POST',
      path,
      timestamp: Math.floor(e.clock.now() / 1000),
    });
    let r = await fetch(`${base}${path}`, { method: 'POST' });
    expect(r.status).toBe(401);
    r = await fetch(`${base}${path}`, { method: 'POST', headers: { 'callback-signature': sig } });
    expect(r.status).toBe(200);
    expect((await e.get(cb.token)).status).toBe('cancel');
  });
});
