/**
 * Under HMAC auth a signature covers the request's meaning: a captured signed request, replayed
 * inside the replay window with anything changed that selects the callback, its status, its
 * deduplication key or how its body is read (path, `Callback-Dedup-Key`, `ce-*` headers of a
 * binary CloudEvent, `Content-Type`, the body of a structured event or a batch), is refused with
 * 401 and changes nothing. Each changed request, signed properly, is accepted: it is a request the
 * service would otherwise have applied.
 */
import { describe, expect, it } from 'vitest';
import { signRequest } from '../src/http/index.js';
import type { CallbackEngine, CreatedCallback } from '../src/index.js';
import { jsonOf, serviceFixture } from './helpers/http.js';

const fx = serviceFixture();
const SECRET = 'shared-secret';

/** A request as a client sends it. */
interface Req {
  readonly method: string;
  readonly path: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
}

const JSON_TYPE = { 'content-type': 'application/json' };
const t = (cb: CreatedCallback) => encodeURIComponent(cb.token);

function signatureOf(engine: CallbackEngine, req: Req): string {
  return signRequest({
    secret: SECRET,
    method: req.method,
    path: req.path,
    body: req.body,
    headers: req.headers,
    timestamp: Math.floor(engine.clock.now() / 1000),
  });
}

async function send(url: string, req: Req, signature: string): Promise<Response> {
  return fetch(`${url}${req.path}`, {
    method: req.method,
    headers: { ...req.headers, 'callback-signature': signature },
    ...(req.body === '' ? {} : { body: req.body }),
  });
}

function without(headers: Record<string, string>, name: string): Record<string, string> {
  return Object.fromEntries(Object.entries(headers).filter(([k]) => k !== name));
}

function binaryEvent(cb: CreatedCallback, status: string, id = 'e1'): Req {
  return {
    method: 'POST',
    path: '/events',
    headers: {
      ...JSON_TYPE,
      'ce-specversion': '1.0',
      'ce-id': id,
      'ce-source': '/provider',
      'ce-type': 'com.example.report',
      'ce-callbacktoken': cb.token,
      'ce-callbackstatus': status,
    },
    body: JSON.stringify({ pct: 10 }),
  };
}

function structured(cb: CreatedCallback, status: string, id: string): Record<string, unknown> {
  return {
    specversion: '1.0',
    id,
    source: '/provider',
    type: 'com.example.report',
    callbacktoken: cb.token,
    callbackstatus: status,
    data: { pct: 20 },
  };
}

/** One replay: a signed original request, and how an attacker changes it before resending it. */
interface ReplayCase {
  readonly name: string;
  readonly original: (a: CreatedCallback, b: CreatedCallback) => Req;
  readonly tamper: (original: Req, a: CreatedCallback, b: CreatedCallback) => Req;
}

const CASES: readonly ReplayCase[] = [
  // Callback URL: token and status in the path, dedup key in a header.
  {
    name: 'callback URL → another callback',
    original: (a) => ({
      method: 'POST',
      path: `/callbacks/${t(a)}/progress`,
      headers: { ...JSON_TYPE, 'callback-dedup-key': 'k1' },
      body: '{"pct":1}',
    }),
    tamper: (o, a, b) => ({ ...o, path: o.path.replace(t(a), t(b)) }),
  },
  {
    name: 'callback URL → another status',
    original: (a) => ({
      method: 'POST',
      path: `/callbacks/${t(a)}/progress`,
      headers: JSON_TYPE,
      body: '{"pct":1}',
    }),
    tamper: (o) => ({ ...o, path: o.path.replace('/progress', '/error') }),
  },
  {
    name: 'callback URL → another dedup key (applied twice otherwise)',
    original: (a) => ({
      method: 'POST',
      path: `/callbacks/${t(a)}/progress`,
      headers: { ...JSON_TYPE, 'callback-dedup-key': 'k1' },
      body: '{"pct":1}',
    }),
    tamper: (o) => ({ ...o, headers: { ...o.headers, 'callback-dedup-key': 'k2' } }),
  },
  {
    name: 'callback URL → dedup key removed',
    original: (a) => ({
      method: 'POST',
      path: `/callbacks/${t(a)}/progress`,
      headers: { ...JSON_TYPE, 'callback-dedup-key': 'k1' },
      body: '{"pct":1}',
    }),
    tamper: (o) => ({ ...o, headers: without(o.headers, 'callback-dedup-key') }),
  },
  {
    name: 'callback URL → dedup key added',
    original: (a) => ({
      method: 'POST',
      path: `/callbacks/${t(a)}/progress`,
      headers: JSON_TYPE,
      body: '{"pct":1}',
    }),
    tamper: (o) => ({ ...o, headers: { ...o.headers, 'callback-dedup-key': 'fresh' } }),
  },
  // CALLBACK message: token and status in the body, dedup key in a header.
  {
    name: 'CALLBACK message → another dedup key',
    original: (a) => ({
      method: 'POST',
      path: '/callbacks',
      headers: { ...JSON_TYPE, 'callback-dedup-key': 'm1' },
      body: JSON.stringify({
        type: 'CALLBACK',
        callbackToken: a.token,
        callbackStatus: 'progress',
      }),
    }),
    tamper: (o) => ({ ...o, headers: { ...o.headers, 'callback-dedup-key': 'm2' } }),
  },
  {
    name: 'CALLBACK message → another callback in the body',
    original: (a) => ({
      method: 'POST',
      path: '/callbacks',
      headers: JSON_TYPE,
      body: JSON.stringify({
        type: 'CALLBACK',
        callbackToken: a.token,
        callbackStatus: 'progress',
      }),
    }),
    tamper: (o, a, b) => ({ ...o, body: o.body.replace(a.token, b.token) }),
  },
  // Binary CloudEvents: every attribute is a ce-* header.
  {
    name: 'binary CloudEvent → another callback and status error (the captured-event replay)',
    original: (a) => binaryEvent(a, 'progress'),
    tamper: (o, _a, b) => ({
      ...o,
      headers: { ...o.headers, 'ce-callbacktoken': b.token, 'ce-callbackstatus': 'error' },
    }),
  },
  {
    name: 'binary CloudEvent → another callback',
    original: (a) => binaryEvent(a, 'progress'),
    tamper: (o, _a, b) => ({ ...o, headers: { ...o.headers, 'ce-callbacktoken': b.token } }),
  },
  {
    name: 'binary CloudEvent → another status',
    original: (a) => binaryEvent(a, 'progress'),
    tamper: (o) => ({ ...o, headers: { ...o.headers, 'ce-callbackstatus': 'error' } }),
  },
  {
    name: 'binary CloudEvent → another id (its dedup key)',
    original: (a) => binaryEvent(a, 'progress'),
    tamper: (o) => ({ ...o, headers: { ...o.headers, 'ce-id': 'e2' } }),
  },
  {
    name: 'binary CloudEvent → another source (its dedup key)',
    original: (a) => binaryEvent(a, 'progress'),
    tamper: (o) => ({ ...o, headers: { ...o.headers, 'ce-source': '/elsewhere' } }),
  },
  {
    name: 'binary CloudEvent → an attribute added',
    original: (a) => binaryEvent(a, 'progress'),
    tamper: (o) => ({ ...o, headers: { ...o.headers, 'ce-orderid': '42' } }),
  },
  {
    name: 'binary CloudEvent → an attribute removed',
    original: (a) => {
      const e = binaryEvent(a, 'progress');
      return { ...e, headers: { ...e.headers, 'ce-orderid': '42' } };
    },
    tamper: (o) => ({ ...o, headers: without(o.headers, 'ce-orderid') }),
  },
  // Structured CloudEvents: the attributes are in the signed body; the mode is the content type.
  {
    name: 'structured CloudEvent → another status in the body',
    original: (a) => ({
      method: 'POST',
      path: '/events',
      headers: { 'content-type': 'application/cloudevents+json' },
      body: JSON.stringify(structured(a, 'progress', 's1')),
    }),
    tamper: (o) => ({ ...o, body: o.body.replace('"progress"', '"error"') }),
  },
  {
    name: 'structured CloudEvent → sent as a binary event with ce-* headers',
    original: (a) => ({
      method: 'POST',
      path: '/events',
      headers: { 'content-type': 'application/cloudevents+json' },
      body: JSON.stringify(structured(a, 'progress', 's1')),
    }),
    tamper: (o, _a, b) => ({
      ...o,
      headers: {
        ...JSON_TYPE,
        'ce-specversion': '1.0',
        'ce-id': 'x1',
        'ce-source': '/provider',
        'ce-type': 'com.example.report',
        'ce-callbacktoken': b.token,
        'ce-callbackstatus': 'error',
      },
    }),
  },
  // Batches: every entry is in the signed body.
  {
    name: 'batch → an entry for another callback',
    original: (a) => ({
      method: 'POST',
      path: '/events',
      headers: { 'content-type': 'application/cloudevents-batch+json' },
      body: JSON.stringify([structured(a, 'progress', 'b1'), structured(a, 'progress', 'b2')]),
    }),
    tamper: (o, a, b) => ({ ...o, body: o.body.replace(a.token, b.token) }),
  },
  {
    name: 'batch → entries reordered',
    original: (a) => ({
      method: 'POST',
      path: '/events',
      headers: { 'content-type': 'application/cloudevents-batch+json' },
      body: JSON.stringify([structured(a, 'progress', 'b1'), structured(a, 'complete', 'b2')]),
    }),
    tamper: (o) => {
      const [first, second] = JSON.parse(o.body) as unknown[];
      return { ...o, body: JSON.stringify([second, first]) };
    },
  },
];

describe('HMAC signatures cover what selects the callback, its status and its dedup key (spec 16)', () => {
  it.each(CASES.map((c) => [c.name, c] as const))(
    'a replayed signed request with %s is refused',
    async (_name, c) => {
      const { engine, url } = await fx.start((e) => e.anchor('job'), {
        auth: { hmac: { secret: SECRET } },
      });
      const a = await engine.create('job');
      const b = await engine.create('job');
      const original = c.original(a, b);
      const signature = signatureOf(engine, original);
      const first = await send(url, original, signature);
      expect(first.status).toBe(200);
      const before = [await engine.get(a.token), await engine.get(b.token)];

      const tampered = c.tamper(original, a, b);
      expect(tampered).not.toEqual(original);
      const replay = await send(url, tampered, signature);
      expect(replay.status).toBe(401);
      expect((await jsonOf(replay)).message).toMatch(/does not match the request/);
      expect([await engine.get(a.token), await engine.get(b.token)]).toEqual(before);

      // The changed request is a real one: signed for what it says, the service takes it.
      const honest = await send(url, tampered, signatureOf(engine, tampered));
      expect(honest.status).toBe(200);
    },
  );

  it('the unchanged replay of a report with a dedup key is applied once (answered replayed)', async () => {
    const { engine, url } = await fx.start((e) => e.anchor('job'), {
      auth: { hmac: { secret: SECRET } },
    });
    const a = await engine.create('job');
    for (const req of [
      binaryEvent(a, 'progress'),
      {
        method: 'POST',
        path: `/callbacks/${t(a)}/progress`,
        headers: { ...JSON_TYPE, 'callback-dedup-key': 'once' },
        body: '{"n":1}',
      },
    ]) {
      const signature = signatureOf(engine, req);
      const r1 = await send(url, req, signature);
      const r2 = await send(url, req, signature);
      expect([r1.status, r2.status]).toEqual([200, 200]);
      expect(r1.headers.get('callback-outcome')).toBe('applied');
      expect(r2.headers.get('callback-outcome')).toBe('replayed');
    }
  });

  it('headers outside the covered set (user-agent, traceparent) may change on the way', async () => {
    const { engine, url } = await fx.start((e) => e.anchor('job'), {
      auth: { hmac: { secret: SECRET } },
    });
    const a = await engine.create('job');
    const req: Req = {
      method: 'POST',
      path: `/callbacks/${t(a)}/progress`,
      headers: JSON_TYPE,
      body: '{}',
    };
    const signature = signatureOf(engine, req);
    const r = await send(
      url,
      {
        ...req,
        headers: {
          ...req.headers,
          'user-agent': 'another',
          traceparent: '00-' + '1'.repeat(32) + '-' + '2'.repeat(16) + '-01',
        },
      },
      signature,
    );
    expect(r.status).toBe(200);
  });
});
