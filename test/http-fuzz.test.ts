import { Agent, request } from 'node:http';
import { connect } from 'node:net';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeToken, DISPATCH_STATUSES, type CallbackEngine } from '../src/index.js';
import { serve, type DispatchServer } from '../src/http/index.js';
import { makeEngine } from './helpers/engine.js';

let engine: CallbackEngine;
let service: DispatchServer;
let url: URL;
let agent: Agent;
const tokens: string[] = [];
const ids: string[] = [];
let created = 0;

beforeAll(async () => {
  ({ engine } = makeEngine({ maxDataBytes: 2048 }));
  engine.anchor('job', {
    next: {
      progress: (cb) => {
        if (cb.data.boom === true) throw new Error('step failed on purpose');
        return { seen: true };
      },
    },
  });
  engine.anchor('order', {
    correlate: ['orderId'],
    eventTypes: { 'com.example.done': 'complete' },
  });
  for (let i = 0; i < 6; i++) {
    const cb = await engine.create(i % 2 ? 'job' : 'order', { data: { orderId: `o${i}` } });
    tokens.push(cb.token);
    ids.push(cb.id);
    created++;
  }
  service = await serve(engine, {
    maxBodyBytes: 8192,
    maxBatchEvents: 5,
    cloudEvents: { trustCorrelation: true },
  });
  url = new URL(service.url);
  agent = new Agent({ keepAlive: true, maxSockets: 4 });
});

afterAll(async () => {
  agent.destroy();
  await service.close();
  await engine.close();
});

interface Sent {
  method: string;
  path: string;
  headers: Record<string, string>;
  body: Uint8Array | undefined;
}

function send(
  req: Sent,
): Promise<{ status: number; headers: Record<string, unknown>; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const r = request(
      {
        agent,
        host: url.hostname,
        port: url.port,
        method: req.method,
        path: req.path,
        headers: req.headers,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks),
          }),
        );
        res.on('error', reject);
      },
    );
    r.on('error', reject);
    r.end(req.body);
  });
}

// ---- arbitraries -------------------------------------------------------------------------------

const visible = fc.stringMatching(/^[\x20-\x7e]{0,40}$/);
// Tokens are minted in beforeAll; the arbitraries read them lazily, at generation time.
const token = fc.oneof(
  { arbitrary: fc.nat({ max: 5 }).map((i) => tokens[i]!), weight: 4 },
  { arbitrary: fc.nat({ max: 5 }).map((i) => forge(tokens[i]!)), weight: 1 },
  { arbitrary: visible, weight: 1 },
);
const status = fc.oneof(
  { arbitrary: fc.constantFrom<string>(...DISPATCH_STATUSES), weight: 4 },
  { arbitrary: fc.constantFrom('create', 'timeout', 'notFound', 'PROGRESS'), weight: 1 },
  { arbitrary: visible, weight: 1 },
);

/** The same token with another signature. */
function forge(token: string): string {
  const fields = decodeToken(token)!;
  const sig = `${fields.sig[0] === 'A' ? 'B' : 'A'}${fields.sig.slice(1)}`;
  return Buffer.from(JSON.stringify({ ...fields, sig })).toString('base64url');
}
const segment = fc.oneof(
  fc.string({ maxLength: 30 }).map(encodeURIComponent),
  fc.constantFrom('%', '%zz', '%E0%A4%A', '%00', '..', '', '%2F', '__proto__', 'constructor'),
);
const path = fc.oneof(
  fc.constantFrom('/callbacks', '/events', '/openapi.json', '/', '/callbacks/', '/events/'),
  token.map((t) => `/callbacks/${encodeURIComponent(t)}`),
  fc
    .tuple(token, status)
    .map(([t, s]) => `/callbacks/${encodeURIComponent(t)}/${encodeURIComponent(s)}`),
  fc.array(segment, { maxLength: 4 }).map((s) => `/${s.join('/')}`),
  fc
    .tuple(fc.constantFrom('/callbacks', '/events'), visible)
    .map(([p, q]) => `${p}?${encodeURIComponent(q)}`),
);
const contentType = fc.constantFrom(
  undefined,
  'application/json',
  'application/json; charset=utf-8',
  'application/json; charset=latin1',
  'application/cloudevents+json',
  'application/cloudevents-batch+json',
  'text/plain',
  'multipart/form-data; boundary=x',
);
const ceHeaders = fc.record(
  {
    'ce-specversion': fc.constantFrom('1.0', '0.3', ''),
    'ce-id': visible,
    'ce-source': visible,
    'ce-type': fc.constantFrom('com.example.done', 'other'),
    'ce-callbacktoken': token,
    'ce-callbackid': fc.oneof(
      fc.nat({ max: 5 }).map((i) => ids[i]!),
      visible,
    ),
    'ce-callbackstatus': status,
    'ce-orderid': fc.constantFrom('o0', 'o2', 'o9', '%zz'),
  },
  { requiredKeys: [] },
);
const data = fc.oneof(
  {
    arbitrary: fc.dictionary(fc.string({ maxLength: 8 }), fc.jsonValue({ maxDepth: 2 }), {
      maxKeys: 4,
    }),
    weight: 4,
  },
  fc.jsonValue({ maxDepth: 3 }),
  fc.constant(JSON.parse('{"__proto__":{"polluted":1},"constructor":{"x":1},"ok":1}') as unknown),
  fc.record({ boom: fc.boolean(), n: fc.double() }),
);
const message = fc.record(
  {
    type: fc.constantFrom('CALLBACK', 'callback', 7),
    callbackToken: token,
    callbackStatus: status,
    callbackAction: fc.constantFrom('getCallback', 'delete'),
    callbackData: data,
  },
  { requiredKeys: ['callbackToken'] },
);
const cloudEvent = fc.record(
  {
    specversion: fc.constantFrom('1.0', '1.0', '2'),
    id: visible,
    source: visible,
    type: fc.constantFrom('com.example.done', 'x'),
    callbacktoken: token,
    callbackstatus: status,
    orderid: fc.constantFrom('o0', 'o4'),
    data,
    data_base64: fc.constantFrom('e30=', '!!', 'W10='),
  },
  { requiredKeys: ['specversion', 'id', 'source', 'type'] },
);
const text = (s: string) => new TextEncoder().encode(s);
const body = fc.oneof(
  fc.constant(undefined),
  fc.uint8Array({ maxLength: 300 }),
  fc.json({ maxDepth: 4 }).map(text),
  message.map((m) => text(JSON.stringify(m))),
  cloudEvent.map((e) => text(JSON.stringify(e))),
  fc.array(cloudEvent, { maxLength: 7 }).map((e) => text(JSON.stringify(e))),
  data.map((d) => text(JSON.stringify(d))),
  fc.nat({ max: 3000 }).map((n) => text(`{"a":${'['.repeat(n)}${']'.repeat(n)}}`)),
  fc
    .constantFrom(
      '{"a":1e999999}',
      '-0',
      '{"a":123456789012345678901234567890}',
      '\uFEFF{}',
      '{"a":"\\ud800"}',
    )
    .map(text),
  fc.nat({ max: 20_000 }).map((n) => new Uint8Array(n).fill(0x61)),
);
const method = fc.constantFrom(
  'GET',
  'POST',
  'POST',
  'POST',
  'PUT',
  'DELETE',
  'PATCH',
  'OPTIONS',
  'HEAD',
  'BREW',
);
const randomRequest = fc
  .record({
    method,
    path,
    contentType,
    ce: ceHeaders,
    body,
    auth: fc.option(visible),
    chunked: fc.boolean(),
  })
  .map(({ method, path, contentType, ce, body, auth, chunked }): Sent => {
    const headers: Record<string, string> = { ...ce };
    if (contentType !== undefined) headers['content-type'] = contentType;
    if (auth !== null) headers.authorization = auth;
    if (method === 'GET' || method === 'HEAD') return { method, path, headers, body: undefined };
    // Frame every body explicitly: node:http sends an OPTIONS or DELETE body unframed otherwise.
    if (body !== undefined)
      headers[chunked ? 'transfer-encoding' : 'content-length'] = chunked
        ? 'chunked'
        : String(body.length);
    return { method, path, headers, body };
  });
const json = (value: unknown, type = 'application/json') => ({
  headers: { 'content-type': type },
  body: text(JSON.stringify(value)),
});
/** Mostly well-formed requests, so the fuzzer reaches the engine and not only the guards. */
const targetedRequest = fc.oneof(
  fc.record({ t: token, s: status, d: data }).map(({ t, s, d }): Sent => ({
    method: 'POST',
    path: `/callbacks/${encodeURIComponent(t)}/${encodeURIComponent(s)}`,
    ...json(d),
  })),
  message.map((m): Sent => ({
    method: 'POST',
    path: '/callbacks',
    ...json({ ...m, type: 'CALLBACK' }),
  })),
  fc.record({ ce: ceHeaders, d: data }).map(({ ce, d }): Sent => ({
    method: 'POST',
    path: '/events',
    headers: {
      'ce-specversion': '1.0',
      'ce-id': 'i',
      'ce-source': 's',
      'ce-type': 't',
      ...ce,
      'content-type': 'application/json',
    },
    body: text(JSON.stringify(d)),
  })),
  cloudEvent.map((e): Sent => ({
    method: 'POST',
    path: '/events',
    ...json(e, 'application/cloudevents+json'),
  })),
  fc.array(cloudEvent, { maxLength: 6 }).map((e): Sent => ({
    method: 'POST',
    path: '/events',
    ...json(e, 'application/cloudevents-batch+json'),
  })),
  token.map((t): Sent => ({
    method: 'GET',
    path: `/callbacks/${encodeURIComponent(t)}`,
    headers: {},
    body: undefined,
  })),
);
const requestArb = fc.oneof(
  { arbitrary: targetedRequest, weight: 3 },
  { arbitrary: randomRequest, weight: 2 },
);

const STATUSES = new Set([200, 204, 400, 404, 405, 409, 413, 415]);

describe('fuzzing the real server', () => {
  it('always answers a well-formed status with a JSON body, and the engine stays consistent', async () => {
    const seen = new Map<number, number>();
    await fc.assert(
      fc.asyncProperty(requestArb, async (req) => {
        const res = await send(req);
        seen.set(res.status, (seen.get(res.status) ?? 0) + 1);
        expect(
          STATUSES.has(res.status),
          `${res.status} for ${req.method} ${req.path}: ${res.body.toString()}`,
        ).toBe(true);
        if (
          req.method === 'HEAD' ||
          res.status === 204 ||
          (req.method === 'OPTIONS' && res.status === 200)
        )
          return;
        expect(res.headers['content-type']).toMatch(/^application\/json; charset=utf-8$/);
        const parsed = JSON.parse(res.body.toString('utf8')) as Record<string, unknown> | unknown[];
        if (res.status >= 400) {
          const err = parsed as Record<string, unknown>;
          expect(err.code).toMatch(/^CBE_ERR_[A-Z_]+$/);
          expect(typeof err.message).toBe('string');
        }
        if (res.status === 405) expect(res.headers.allow).toBeTruthy();
      }),
      { numRuns: 300 },
    );
    // The fuzzer reached the interesting answers, not only 404s.
    for (const code of [200, 400, 404, 405, 409, 415])
      expect(seen.get(code) ?? 0).toBeGreaterThan(0);
    expect(engine.stats().dispatched).toBeGreaterThan(10);
    expect(engine.stats().forgedTokens).toBeGreaterThan(0);

    // A control callback still works end to end.
    const control = await engine.create('job', { data: { control: true } });
    created++;
    const r = await fetch(`${service.url}/callbacks/${control.token}/progress`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"pct":1}',
    });
    expect(r.status).toBe(200);
    expect(await r.json()).toEqual({
      status: 'progress',
      token: control.token,
      data: { control: true, pct: 1, seen: true },
    });

    // The counters add up: every callback is counted once, under one status and one anchor.
    const stats = engine.stats();
    const byStatus = Object.values(stats.byStatus).reduce((a, b) => a + b, 0);
    const byAnchor = Object.values(stats.byAnchor)
      .flatMap((m) => Object.values(m))
      .reduce((a, b) => a + b, 0);
    expect(stats.created).toBe(created);
    expect(byStatus).toBe(created);
    expect(byAnchor).toBe(created);
    expect(stats.active + stats.retained).toBe(created);
    const listed = (await engine.list({ limit: 1000 })).items;
    expect(listed).toHaveLength(created);
    for (const item of listed) {
      const answer = await engine.get(item.token);
      expect(answer.status).toBe(item.status);
      expect(Object.hasOwn(answer.data, '__proto__')).toBe(false);
      expect(Object.hasOwn(answer.data, 'constructor')).toBe(false);
    }
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(service.server.listening).toBe(true);
  });

  it('survives arbitrary bytes on a raw socket', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.uint8Array({ maxLength: 400 }),
          fc
            .tuple(
              fc.constantFrom('POST /callbacks HTTP/1.1\r\n', 'GET /openapi.json HTTP/1.0\r\n'),
              fc.uint8Array({ maxLength: 200 }),
            )
            .map(([line, rest]) => Buffer.concat([Buffer.from(line), rest])),
        ),
        async (bytes) => {
          const answer = await new Promise<string>((resolve, reject) => {
            const socket = connect(Number(url.port), url.hostname, () => socket.end(bytes));
            let out = '';
            socket.setEncoding('latin1');
            socket.on('data', (c: string) => (out += c));
            socket.on('close', () => resolve(out));
            socket.on('error', (err: NodeJS.ErrnoException) =>
              err.code === 'ECONNRESET' ? resolve(out) : reject(err),
            );
          });
          if (answer !== '') expect(answer).toMatch(/^HTTP\/1\.[01] [1-5]\d\d /);
        },
      ),
      { numRuns: 60 },
    );
    const r = await fetch(`${service.url}/openapi.json`);
    expect(r.status).toBe(200);
  });
});
