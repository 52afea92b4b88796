/**
 * The channel hop in one process: the wrapped token (shape, signature over every field,
 * tampering, length cap, relay() input), forwarding to an origin engine served over HTTP
 * (answers, outcomes, exists, cancel, wait, the origin's 4xx), and a fake origin for what a real
 * one rarely does (5xx, redirects, huge answers, no answer, a broken connection).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import {
  createCallbackEngine,
  decodeToken,
  EngineClosedError,
  InvalidArgumentError,
  MAX_TOKEN_LENGTH,
  OriginRefusedError,
  OriginUnavailableError,
  type CallbackEngineOptions,
} from '../src/index.js';
import { serve } from '../src/http/index.js';
import { flush, makeEngine, rejection, report, SECRET } from './helpers/engine.js';
import { jsonOf } from './helpers/http.js';

const open: { close(): Promise<void> }[] = [];
afterEach(async () => {
  for (const o of open.splice(0).reverse()) await o.close();
});

/** An origin engine served over HTTP, with a `job` anchor. */
async function startOrigin(options: CallbackEngineOptions = {}) {
  const { engine } = makeEngine({ node: 'origin', ...options });
  engine.anchor('job');
  const service = await serve(engine);
  open.push(engine, service);
  return { engine, url: service.url, service };
}

/** The relaying engine (simulated clock), optionally served. */
function startRelay(options: CallbackEngineOptions = {}) {
  const made = makeEngine({ node: 'relay-1', ...options });
  open.push(made.engine);
  return made;
}

/** A fake origin: every request is recorded and handed to `answer`. */
async function fakeOrigin(
  answer: (req: IncomingMessage, res: ServerResponse, body: string) => void,
): Promise<{
  url: string;
  requests: { method: string; url: string; body: string; headers: IncomingMessage['headers'] }[];
}> {
  const requests: {
    method: string;
    url: string;
    body: string;
    headers: IncomingMessage['headers'];
  }[] = [];
  const server: Server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      requests.push({ method: req.method!, url: req.url!, body, headers: req.headers });
      answer(req, res, body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  open.push({
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  });
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, requests };
}

const json = (
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
) => {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
};

/** Re-encodes a token's JSON after `edit`. */
function reencode(token: string, edit: (fields: Record<string, unknown>) => void): string {
  const fields = JSON.parse(Buffer.from(token, 'base64url').toString('utf8')) as Record<
    string,
    unknown
  >;
  edit(fields);
  return Buffer.from(JSON.stringify(fields), 'utf8').toString('base64url');
}

describe('relay(): the wrapped token', () => {
  it('has the seeds shape, is deterministic, and accepts the callback URL or the base URL', async () => {
    const origin = await startOrigin({ baseUrl: 'http://127.0.0.1:1/hooks' });
    const cb = await origin.engine.create('job');
    const { engine } = startRelay();
    const wrapped = engine.relay(cb.token, { to: origin.engine.callbackUrl(cb.token) });
    const fields = decodeToken(wrapped)!;
    expect(fields).toEqual({
      node: 'relay-1',
      anchor: 'job',
      id: cb.id,
      sig: expect.stringMatching(/^[A-Za-z0-9_-]{43}$/),
      useTransport: true,
      transport: [{ url: 'http://127.0.0.1:1/hooks', token: cb.token }],
    });
    expect(engine.relay(cb.token, { to: 'http://127.0.0.1:1/hooks' })).toBe(wrapped);
    expect(engine.relay(cb.token, { to: 'http://127.0.0.1:1/hooks/' })).toBe(wrapped);
    expect(
      engine.relay(cb.token, { to: 'http://127.0.0.1:1/hooks/callbacks/' + cb.token + '/' }),
    ).toBe(wrapped);
    // Another engine (other node, same secret) mints another token for the same hop.
    const other = makeEngine({ node: 'relay-2' }).engine;
    open.push(other);
    expect(other.relay(cb.token, { to: 'http://127.0.0.1:1/hooks' })).not.toBe(wrapped);
  });

  it('refuses bad input with InvalidArgumentError naming it', async () => {
    const origin = await startOrigin();
    const { token } = await origin.engine.create('job');
    const { engine } = startRelay();
    const cases: [unknown, unknown, RegExp][] = [
      [
        'not-a-token',
        { to: origin.url },
        /relay\(\) needs a callback token of another engine \(got "not-a-token"\)/,
      ],
      [42, { to: origin.url }, /needs a callback token/],
      [token, undefined, /options must be an object with "to"/],
      [token, { url: origin.url }, /unknown option "url" in relay\(\) options; known options: to/],
      [
        token,
        { to: 'ftp://example.com/x' },
        /options.to must be an http\(s\) URL.*\(got "ftp:\/\/example.com\/x"\)/,
      ],
      [token, { to: 'not a url' }, /options.to must be an http\(s\) URL/],
      [token, { to: 'https://user:pw@example.com/hooks' }, /must not carry credentials/],
      [token, { to: 'https://example.com/hooks?x=1' }, /no query or fragment/],
      [
        token,
        { to: `https://example.com/callbacks/${(await origin.engine.create('job')).token}` },
        /callback URL of another token/,
      ],
    ];
    for (const [t, o, message] of cases) {
      let thrown: unknown;
      try {
        engine.relay(t as string, o as never);
      } catch (err) {
        thrown = err;
      }
      expect(thrown, String(message)).toBeInstanceOf(InvalidArgumentError);
      expect((thrown as Error).message).toMatch(message);
    }
    await engine.close();
    expect(() => engine.relay(token, { to: origin.url })).toThrow(EngineClosedError);
  });

  it('refuses a wrapped token over MAX_TOKEN_LENGTH, also after several hops', async () => {
    const { engine } = startRelay();
    // A well-formed origin token with a long anchor name: decodable, so relayable but for its length.
    const long = Buffer.from(
      JSON.stringify({ node: 'far', anchor: 'a'.repeat(2900), id: 'x', sig: 'y' }),
    ).toString('base64url');
    expect(long.length).toBeLessThan(MAX_TOKEN_LENGTH);
    expect(() => engine.relay(long, { to: 'http://origin.example' })).toThrow(
      /would make a wrapped token of \d+ characters, over the limit of 4096/,
    );
    // Hops nest: each relay wraps the previous wrapped token, until it no longer fits.
    const origin = await startOrigin();
    let token = (await origin.engine.create('job')).token;
    let hops = 0;
    for (;;) {
      try {
        token = engine.relay(token, { to: 'http://relay.example' });
      } catch (err) {
        expect(err).toBeInstanceOf(InvalidArgumentError);
        break;
      }
      expect(token.length).toBeLessThanOrEqual(MAX_TOKEN_LENGTH);
      hops++;
    }
    expect(hops).toBeGreaterThanOrEqual(3);
  });

  it('answers a tampered or foreign wrapped token notFound, counted as forged, and sends nothing', async () => {
    const fake = await fakeOrigin((_req, res) => json(res, 200, {}));
    const origin = await startOrigin();
    const cb = await origin.engine.create('job');
    const { engine } = startRelay();
    const wrapped = engine.relay(cb.token, { to: origin.url });
    const stranger = makeEngine({
      node: 'relay-1',
      secrets: ['another-secret-0123456789abcdef'],
    }).engine;
    open.push(stranger);
    const tampered = [
      // The forwarding URL pointed elsewhere (SSRF), the inner token, anchor, id or node changed.
      reencode(wrapped, (f) => ((f.transport as { url: string }[])[0]!.url = fake.url)),
      reencode(wrapped, (f) => ((f.transport as { token: string }[])[0]!.token = 'x')),
      reencode(wrapped, (f) => (f.anchor = 'other')),
      reencode(wrapped, (f) => (f.id = 'AAAAAAAAAAAAAAAAAAAAAA')),
      reencode(wrapped, (f) => (f.node = 'relay-2')),
      // An extra hop, or an extra field: not what this engine minted.
      reencode(wrapped, (f) => (f.transport as unknown[]).push({ url: fake.url, token: cb.token })),
      reencode(wrapped, (f) => (f.extra = 1)),
      // Minted by an engine with the same node name and another secret.
      stranger.relay(cb.token, { to: fake.url }),
      // The same fields as a plain token: a wrapped signature never passes as a plain one.
      reencode(wrapped, (f) => {
        delete f.useTransport;
        delete f.transport;
      }),
    ];
    const before = engine.stats();
    for (const t of tampered) {
      expect(await engine.dispatch(report(t, 'progress', { k: 1 })), t).toMatchObject({
        status: 'notFound',
        token: t,
      });
    }
    expect(await engine.exists(tampered[0]!)).toBe('notFound');
    expect((await engine.get(tampered[0]!)).status).toBe('notFound');
    const after = engine.stats();
    expect(after.forgedTokens - before.forgedTokens).toBe(tampered.length + 2);
    expect(after.notFound - before.notFound).toBe(tampered.length + 2);
    expect(fake.requests).toHaveLength(0);
    expect((await origin.engine.get(cb.token)).status).toBe('create');
    // The untampered one works.
    expect((await engine.dispatch(report(wrapped, 'start'))).status).toBe('start');
  });
});

describe('relay: forwarding to the origin', () => {
  it('forwards reports, reads, exists and cancel, and hands back the wrapped token', async () => {
    const origin = await startOrigin();
    const cb = await origin.engine.create('job', { data: { order: 7 } });
    const { engine } = startRelay();
    const wrapped = engine.relay(cb.token, { to: origin.url });

    const accepted = await engine.deliver(report(wrapped, 'accept', { by: 'far' }));
    expect(accepted.outcome).toBe('applied');
    expect(JSON.parse(JSON.stringify(accepted.answer))).toMatchObject({
      status: 'accept',
      token: wrapped,
      data: { order: 7, by: 'far' },
    });
    expect(accepted.answer.attributes).toMatchObject({
      callbackToken: wrapped,
      callbackStatus: 'accept',
    });
    expect((await engine.deliver(report(wrapped, 'accept'))).outcome).toBe('ignored');
    expect((await origin.engine.get(cb.token)).data).toEqual({ order: 7, by: 'far' });

    expect(
      await engine.deliver({ type: 'CALLBACK', callbackToken: wrapped, callbackAction: 'exists' }),
    ).toMatchObject({ outcome: 'read', answer: { status: 'exists', token: wrapped, data: {} } });
    expect(
      await engine.deliver({
        type: 'CALLBACK',
        callbackToken: wrapped,
        callbackAction: 'getCallback',
      }),
    ).toMatchObject({ outcome: 'read', answer: { status: 'accept', token: wrapped } });
    expect(await engine.exists(wrapped)).toBe('exists');
    await expect(engine.wait(wrapped)).rejects.toThrow(
      /wait\(\) is not supported for a relayed token/,
    );

    // cancel() on the wrapped token cancels at the origin; later reports answer the cancel.
    expect(await engine.cancel(wrapped, { why: 'far side' })).toMatchObject({
      status: 'cancel',
      token: wrapped,
    });
    expect((await origin.engine.get(cb.token)).status).toBe('cancel');
    expect(await engine.deliver(report(wrapped, 'complete'))).toMatchObject({
      outcome: 'conflict',
      answer: { status: 'cancel' },
    });

    // A token the origin does not know: notFound through the wrapper too.
    const unknown = reencode(cb.token, (f) => (f.id = 'AAAAAAAAAAAAAAAAAAAAAA'));
    const w2 = engine.relay(unknown, { to: origin.url });
    expect(await engine.exists(w2)).toBe('notFound');
    expect(await engine.deliver(report(w2, 'start'))).toMatchObject({
      outcome: 'notFound',
      answer: { status: 'notFound', token: w2 },
    });
    expect(engine.stats().forgedTokens).toBe(0);
  });

  it('answers the exists action for local tokens too', async () => {
    const { engine } = makeEngine();
    open.push(engine);
    engine.anchor('job');
    const cb = await engine.create('job', { data: { a: 1 } });
    expect(
      await engine.deliver({ type: 'CALLBACK', callbackToken: cb.token, callbackAction: 'exists' }),
    ).toEqual({
      outcome: 'read',
      answer: expect.objectContaining({ status: 'exists', token: cb.token, data: {} }),
    });
    expect(
      (await engine.dispatch({ type: 'CALLBACK', callbackToken: 'nope', callbackAction: 'exists' }))
        .status,
    ).toBe('notFound');
  });

  it('goes through the relaying engine’s HTTP service, mirroring the origin’s statuses', async () => {
    const origin = await startOrigin({ maxDataBytes: 64 });
    const cb = await origin.engine.create('job');
    const { engine } = startRelay();
    const local = await serve(engine);
    open.push(local);
    const wrapped = engine.relay(cb.token, { to: origin.url });
    const at = (s: string) => `${local.url}/callbacks/${encodeURIComponent(wrapped)}${s}`;
    const post = (url: string, body: unknown) =>
      fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });

    const started = await post(at('/start'), { step: 1 });
    expect(started.status).toBe(200);
    expect(started.headers.get('callback-outcome')).toBe('applied');
    expect(await jsonOf(started)).toEqual({ status: 'start', token: wrapped, data: { step: 1 } });

    const read = await fetch(at(''));
    expect(read.status).toBe(200);
    expect(await jsonOf(read)).toMatchObject({ status: 'start', token: wrapped });

    // The origin's 4xx comes back as it was sent: here its smaller data limit (413).
    const big = await post(at('/progress'), { text: 'x'.repeat(100) });
    expect(big.status).toBe(413);
    const body = await jsonOf(big);
    expect(body.code).toBe('CBE_ERR_PAYLOAD_TOO_LARGE');
    expect(body.message).toMatch(/over the limit of 64/);
    const err = await rejection(
      engine.dispatch(report(wrapped, 'progress', { text: 'x'.repeat(100) })),
    );
    expect(err).toBeInstanceOf(OriginRefusedError);
    expect(err).toMatchObject({
      code: 'CBE_ERR_ORIGIN_REFUSED',
      statusCode: 413,
      originCode: 'CBE_ERR_PAYLOAD_TOO_LARGE',
    });

    const done = await post(`${local.url}/callbacks`, {
      type: 'CALLBACK',
      callbackToken: wrapped,
      callbackStatus: 'complete',
    });
    expect(done.status).toBe(200);
    const again = await post(at('/error'), { message: 'late' });
    expect(again.status).toBe(409);
    expect(await jsonOf(again)).toMatchObject({
      status: 'complete',
      token: wrapped,
      code: 'CBE_ERR_ALREADY_SETTLED',
    });
  });

  it('passes the origin’s schema issues back with its 400, over HTTP and in process', async () => {
    const { engine: originEngine } = makeEngine({ node: 'origin' });
    originEngine.anchor('order', { reports: { progress: z.object({ pct: z.number() }) } });
    const originService = await serve(originEngine);
    open.push(originEngine, originService);
    const cb = await originEngine.create('order');
    const { engine } = startRelay();
    const local = await serve(engine);
    open.push(local);
    const wrapped = engine.relay(cb.token, { to: originService.url });
    const r = await fetch(`${local.url}/callbacks/${encodeURIComponent(wrapped)}/progress`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ pct: 'half' }),
    });
    expect(r.status).toBe(400);
    const body = await jsonOf(r);
    expect(body.code).toBe('CBE_ERR_INVALID_DATA');
    expect(body.issues).toEqual([{ path: ['pct'], message: expect.any(String) as string }]);
    const err = (await rejection(
      engine.dispatch(report(wrapped, 'progress', { pct: 'half' })),
    )) as OriginRefusedError;
    expect(err.originCode).toBe('CBE_ERR_INVALID_DATA');
    expect(err.issues?.[0]?.path).toEqual(['pct']);
    expect((await originEngine.get(cb.token)).status).toBe('create');
  });

  it('forwards through two hops: each engine forwards to the previous one', async () => {
    const origin = await startOrigin();
    const cb = await origin.engine.create('job');
    const b = startRelay().engine;
    const bService = await serve(b);
    open.push(bService);
    const c = makeEngine({ node: 'relay-c' }).engine;
    open.push(c);
    const viaB = b.relay(cb.token, { to: origin.url });
    const viaC = c.relay(viaB, { to: bService.url });
    expect(decodeToken(viaC)).toMatchObject({
      node: 'relay-c',
      anchor: 'job',
      id: cb.id,
      transport: [{ url: bService.url, token: viaB }],
    });
    expect(await c.dispatch(report(viaC, 'progress', { hop: 2 }))).toMatchObject({
      status: 'progress',
      token: viaC,
      data: { hop: 2 },
    });
    expect((await origin.engine.get(cb.token)).data).toEqual({ hop: 2 });
  });

  it('passes a deduplication key through: a retried report is applied once', async () => {
    const origin = await startOrigin();
    origin.engine.anchor('count', {
      next: { progress: (s) => ({ n: ((s.data.n as number | undefined) ?? 0) + 1 }) },
    });
    const cb = await origin.engine.create('count');
    const { engine } = startRelay();
    const wrapped = engine.relay(cb.token, { to: origin.url });
    const message = { ...(report(wrapped, 'progress') as object), dedupKey: 'report-1' } as never;
    await engine.dispatch(message);
    await engine.dispatch(message);
    await engine.dispatch({
      ...(report(wrapped, 'progress') as object),
      dedupKey: 'report-2',
    } as never);
    expect((await origin.engine.get(cb.token)).data).toEqual({ n: 2 });
  });

  it('sends the relay.headers of an origin with every request', async () => {
    const fake = await fakeOrigin((_req, res) =>
      json(
        res,
        200,
        { status: 'start', token: 'inner', data: {} },
        { 'callback-outcome': 'applied' },
      ),
    );
    const { engine } = startRelay({
      relay: { headers: (origin) => ({ authorization: `Bearer for ${origin}` }) },
    });
    const inner = Buffer.from(
      JSON.stringify({ node: 'o', anchor: 'job', id: 'i', sig: 's' }),
    ).toString('base64url');
    const wrapped = engine.relay(inner, { to: fake.url });
    await engine.dispatch(report(wrapped, 'start', { a: 1 }));
    expect(fake.requests).toHaveLength(1);
    expect(fake.requests[0]).toMatchObject({ method: 'POST', url: '/callbacks' });
    expect(fake.requests[0]!.headers.authorization).toBe(`Bearer for ${fake.url}`);
    expect(JSON.parse(fake.requests[0]!.body)).toEqual({
      type: 'CALLBACK',
      callbackToken: inner,
      callbackStatus: 'start',
      callbackData: { a: 1 },
    });
  });
});

describe('relay: an origin that fails', () => {
  const inner = Buffer.from(
    JSON.stringify({ node: 'o', anchor: 'job', id: 'i', sig: 's' }),
  ).toString('base64url');

  it('refuses as retryable (503, Retry-After) when unreachable, 5xx, redirecting or garbled', async () => {
    let mode = '';
    const fake = await fakeOrigin((_req, res) => {
      if (mode === '500') json(res, 500, { code: 'CBE_ERR_INTERNAL', message: 'internal error' });
      else if (mode === '302') {
        res.writeHead(302, { location: '/elsewhere' });
        res.end();
      } else if (mode === 'text') {
        res.writeHead(200, { 'content-type': 'text/html' });
        res.end('<html>proxy</html>');
      } else if (mode === 'big')
        json(res, 200, { status: 'start', token: 'x', data: { big: 'y'.repeat(5000) } });
      else json(res, 200, { hello: 'world' });
    });
    const { engine } = startRelay({ relay: { maxAnswerBytes: 1000 } });
    const local = await serve(engine);
    open.push(local);
    const wrapped = engine.relay(inner, { to: fake.url });
    const expectations: [string, RegExp][] = [
      ['500', /answered 500 CBE_ERR_INTERNAL: internal error/],
      ['302', /answered a redirect \(302\); redirects are not followed/],
      ['text', /answered 200 with a body that is not JSON/],
      ['big', /answered more than 1000 bytes/],
      ['shape', /answered 200 without a callback answer/],
    ];
    for (const [m, message] of expectations) {
      mode = m;
      const err = await rejection(engine.dispatch(report(wrapped, 'start')));
      expect(err, m).toBeInstanceOf(OriginUnavailableError);
      expect(err.message, m).toMatch(message);
      expect(err).toMatchObject({
        code: 'CBE_ERR_ORIGIN_UNAVAILABLE',
        statusCode: 503,
        retryable: true,
      });
    }
    expect(fake.requests.map((r) => r.url)).not.toContain('/elsewhere');
    const res = await fetch(`${local.url}/callbacks/${encodeURIComponent(wrapped)}/start`, {
      method: 'POST',
    });
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toMatch(/^\d+$/);
    expect((await jsonOf(res)).code).toBe('CBE_ERR_ORIGIN_UNAVAILABLE');

    // Nothing listening at all (a port that was free a moment ago).
    const probe = createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const freePort = (probe.address() as AddressInfo).port;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    const gone = engine.relay(inner, { to: `http://127.0.0.1:${freePort}` });
    const refused = await rejection(engine.dispatch(report(gone, 'start')));
    expect(refused).toBeInstanceOf(OriginUnavailableError);
    expect(refused.message).toMatch(
      new RegExp(`the origin http://127\\.0\\.0\\.1:${freePort} is unreachable \\(ECONNREFUSED\\)`),
    );
  });

  it('gives up after relay.timeout on the engine clock', async () => {
    let arrived!: () => void;
    const arrival = new Promise<void>((resolve) => (arrived = resolve));
    await fakeOrigin(() => arrived()).then(async (fake) => {
      const { engine, clock } = startRelay({ relay: { timeout: 'PT3S' } });
      const wrapped = engine.relay(inner, { to: fake.url });
      const pending = rejection(engine.dispatch(report(wrapped, 'start')));
      await arrival;
      clock.advance(2_999);
      await flush();
      clock.advance(1);
      const err = await pending;
      expect(err).toBeInstanceOf(OriginUnavailableError);
      expect(err.message).toMatch(/did not answer within 3000 ms/);
    });
  });

  it('sends one request per callback at a time, in order; those behind a failed one are not sent', async () => {
    const held: ServerResponse[] = [];
    let arrivedOne!: () => void;
    const first = new Promise<void>((resolve) => (arrivedOne = resolve));
    const fake = await fakeOrigin((req, res, body) => {
      if (req.url === '/ping') return json(res, 200, {});
      held.push(res);
      arrivedOne();
      void body;
    });
    const { engine } = startRelay();
    const wrapped = engine.relay(inner, { to: fake.url });
    const answers = Array.from({ length: 5 }, (_, k) =>
      engine.deliver(report(wrapped, 'progress', { k })),
    );
    await first;
    // A request sent after the five were dispatched has been served, and still only one arrived.
    await fetch(`${fake.url}/ping`);
    expect(fake.requests.filter((r) => r.url !== '/ping')).toHaveLength(1);
    for (let k = 0; k < 3; k++) {
      json(
        held[k]!,
        200,
        { status: 'progress', token: inner, data: { k } },
        { 'callback-outcome': 'applied' },
      );
      expect((await answers[k]!).answer.data).toEqual({ k });
      while (held.length === k + 1) await flush();
    }
    // The fourth breaks: the fifth, queued behind it, fails without being sent.
    held[3]!.destroy();
    await expect(answers[3]).rejects.toBeInstanceOf(OriginUnavailableError);
    await expect(answers[4]).rejects.toThrow(/queued behind the failed one was not sent/);
    const sent = fake.requests
      .filter((r) => r.url !== '/ping')
      .map((r) => (JSON.parse(r.body) as { callbackData: { k: number } }).callbackData.k);
    expect(sent).toEqual([0, 1, 2, 3]);
    // The queue drained: the next report is sent again.
    const next = engine.dispatch(report(wrapped, 'progress', { k: 5 }));
    while (held.length < 5) await flush();
    json(held[4]!, 200, { status: 'progress', token: inner, data: { k: 5 } });
    expect((await next).data).toEqual({ k: 5 });
  });

  it('rejects requests in flight with EngineClosedError when the engine closes', async () => {
    let arrived!: () => void;
    const arrival = new Promise<void>((resolve) => (arrived = resolve));
    const fake = await fakeOrigin(() => arrived());
    const engine = createCallbackEngine({ node: 'relay-x', secrets: [SECRET] });
    const wrapped = engine.relay(inner, { to: fake.url });
    const pending = rejection(engine.dispatch(report(wrapped, 'start')));
    await arrival;
    await engine.close();
    expect(await pending).toBeInstanceOf(EngineClosedError);
  });

  it('validates the relay engine option', () => {
    const cases: [unknown, RegExp][] = [
      [{ timeout: 'soon' }, /options.relay.timeout must be an ISO 8601 duration.*\(got "soon"\)/],
      [{ timeout: 'PT0S' }, /options.relay.timeout must be longer than zero/],
      [{ maxAnswerBytes: 0 }, /options.relay.maxAnswerBytes must be a positive integer \(got 0\)/],
      [{ headers: 'x' }, /options.relay.headers must be a function/],
      [{ timout: 'PT1S' }, /unknown option "timout" in options.relay \(did you mean "timeout"\?\)/],
      ['fast', /options.relay must be an object/],
    ];
    for (const [relay, message] of cases)
      expect(() => createCallbackEngine({ secrets: [SECRET], relay: relay as never })).toThrow(
        message,
      );
  });
});
