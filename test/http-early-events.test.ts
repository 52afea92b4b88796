import { CloudEvent, HTTP, type Message } from 'cloudevents';
import { describe, expect, it } from 'vitest';
import {
  CallbackEngineError,
  EarlyEventsFullError,
  type CallbackEngine,
  type EngineEvent,
  type SimulatedClock,
  type StepInput,
} from '../src/index.js';
import { makeEngine, rejection } from './helpers/engine.js';
import { serviceFixture } from './helpers/http.js';
import { internalsOf } from '../src/engine-internals.js';

const fx = serviceFixture();

/** What each order callback's steps saw, by orderId: `status:n` in the order they ran. */
let seen: Map<string, string[]>;

const record = (input: StepInput) => {
  const id = String(input.data.orderId);
  const list = seen.get(id) ?? [];
  list.push(`${input.status}:${String(input.report.n ?? '-')}`);
  seen.set(id, list);
};

/** Registers the anchors of these tests. */
function anchors(engine: CallbackEngine, early: object | true = true): void {
  seen = new Map();
  engine.anchor('order', {
    correlate: ['orderId'],
    eventTypes: { 'com.example.order.shipped': 'progress', 'com.example.order.done': 'complete' },
    early,
    next: { create: record, progress: record, complete: record },
  });
  // Correlates too, but did not opt in: its unmatched events are still 404.
  engine.anchor('invoice', { correlate: ['invoiceId'], eventTypes: { paid: 'complete' } });
}

async function start(early: object | true = true) {
  const s = await fx.start((engine) => anchors(engine, early), {
    cloudEvents: { trustCorrelation: true },
  });
  return s;
}

async function send(
  url: string,
  message: Message,
): Promise<{ status: number; outcome: string | null; retryAfter: string | null; body: unknown }> {
  const r = await fetch(`${url}/events`, {
    method: 'POST',
    headers: message.headers as Record<string, string>,
    body: message.body as string,
  });
  return {
    status: r.status,
    outcome: r.headers.get('callback-outcome'),
    retryAfter: r.headers.get('retry-after'),
    body: await r.json(),
  };
}

let nextId = 0;
const shipped = (orderid: string, n: number, attrs: Record<string, unknown> = {}) =>
  new CloudEvent({
    id: `e-${++nextId}`,
    source: '/carrier',
    type: 'com.example.order.shipped',
    orderid,
    data: { n },
    ...attrs,
  });

describe('early events over HTTP', () => {
  it('holds an event that arrives before its callback: 202 with Callback-Outcome queued, in binary and structured mode', async () => {
    const { engine, url } = await start();
    const clock = (engine as unknown as { clock: SimulatedClock }).clock;
    const bin = await send(url, HTTP.binary(shipped('A-1', 1)));
    expect(bin).toMatchObject({
      status: 202,
      outcome: 'queued',
      body: {
        status: 'queued',
        anchor: 'order',
        expiresAt: new Date(clock.now() + 600_000).toISOString(),
      },
    });
    const str = await send(
      url,
      HTTP.structured(
        new CloudEvent({
          id: 'done-1',
          source: '/carrier',
          type: 'com.example.order.done',
          orderid: 'A-1',
          data: { n: 2 },
        }),
      ),
    );
    expect(str).toMatchObject({ status: 202, outcome: 'queued', body: { status: 'queued' } });
    expect(engine.stats().early).toMatchObject({ held: 2, claimed: 0 });
  });

  it('applies held events in arrival order before create() resolves; the created answer shows them', async () => {
    const { engine, url } = await start();
    for (const n of [1, 2, 3])
      expect((await send(url, HTTP.binary(shipped('B-7', n)))).status).toBe(202);
    const done = await send(
      url,
      HTTP.binary(
        new CloudEvent({
          id: 'b7-done',
          source: '/carrier',
          type: 'x.unmapped',
          callbackstatus: 'complete',
          orderid: 'B-7',
          data: { n: 4, result: 'ok' },
        }),
      ),
    );
    expect(done.status).toBe(202);
    const cb = await engine.create('order', { data: { orderId: 'B-7' } });
    // Resolved only after all four were applied, in order, after the create step.
    expect(seen.get('B-7')).toEqual([
      'create:-',
      'progress:1',
      'progress:2',
      'progress:3',
      'complete:4',
    ]);
    expect(cb.status).toBe('complete');
    expect(cb.data).toEqual({ orderId: 'B-7', n: 4, result: 'ok' });
    expect(engine.stats().early).toMatchObject({ held: 0, heldBytes: 0, claimed: 4 });
    // Afterwards the callback is found by correlation as usual (terminal: 409).
    expect((await send(url, HTTP.binary(shipped('B-7', 5)))).status).toBe(409);
  });

  it('many concurrent early events for many correlation keys, then concurrent creates: nothing lost, order kept', async () => {
    const { engine, url } = await start({ maxEvents: 10_000, maxBytes: 10_000_000 });
    const keys = Array.from({ length: 25 }, (_, i) => `K-${i}`);
    const perKey = 6;
    // Keys in parallel; each key's events one after the other (their arrival order).
    await Promise.all(
      keys.map(async (k, i) => {
        for (let n = 1; n <= perKey; n++) {
          const m = n % 2 === 0 ? HTTP.structured(shipped(k, n)) : HTTP.binary(shipped(k, n));
          const r = await send(url, m);
          expect(r.status, `${k} #${n} (${i})`).toBe(202);
        }
      }),
    );
    expect(engine.stats().early?.held).toBe(keys.length * perKey);
    const created = await Promise.all(
      keys.map((k) => engine.create('order', { data: { orderId: k } })),
    );
    const expected = ['create:-', ...Array.from({ length: perKey }, (_, i) => `progress:${i + 1}`)];
    for (const [i, k] of keys.entries()) {
      expect(seen.get(k)).toEqual(expected);
      expect(created[i]!.data).toEqual({ orderId: k, n: perKey });
    }
    expect(engine.stats().early).toMatchObject({ held: 0, claimed: keys.length * perKey });
  });

  it('refuses an event past maxEvents with 503 CBE_ERR_EARLY_EVENTS_FULL and Retry-After; nothing held changes', async () => {
    const { engine, url } = await start({ maxEvents: 2 });
    await send(url, HTTP.binary(shipped('C-1', 1)));
    await send(url, HTTP.binary(shipped('C-2', 1)));
    const r = await send(url, HTTP.structured(shipped('C-3', 1)));
    expect(r).toMatchObject({
      status: 503,
      body: { code: 'CBE_ERR_EARLY_EVENTS_FULL' },
    });
    expect(r.retryAfter).not.toBeNull();
    expect((r.body as { message: string }).message).toMatch(/early\.maxEvents 2/);
    expect(engine.stats().early).toMatchObject({ held: 2, refused: 1 });
    const err = await rejection(
      internalsOf(engine).holdEarly({
        attributes: { orderid: 'C-4' },
        type: 'com.example.order.shipped',
        dedupKey: 'c4',
      }),
    );
    expect(err).toBeInstanceOf(EarlyEventsFullError);
    expect(err).toMatchObject({
      statusCode: 503,
      retryable: true,
      anchor: 'order',
      bound: 'maxEvents',
    });
    expect(engine.stats().early).toMatchObject({ held: 2, refused: 2 });
    // The refused events were not held: their callback gets nothing.
    const c3 = await engine.create('order', { data: { orderId: 'C-3' } });
    expect(c3.status).toBe('create');
    const c1 = await engine.create('order', { data: { orderId: 'C-1' } });
    expect(c1.status).toBe('progress');
  });

  it('refuses an event past maxBytes (503), and one larger than maxBytes alone (413)', async () => {
    const { engine, url } = await start({ maxBytes: 40 });
    const pad = (len: number) => ({ n: 1, pad: 'x'.repeat(len) });
    expect((await send(url, HTTP.binary(shipped('D-1', 1, { data: pad(10) })))).status).toBe(202);
    const before = engine.stats().early!;
    const over = await send(url, HTTP.binary(shipped('D-2', 1, { data: pad(15) })));
    expect(over).toMatchObject({ status: 503, body: { code: 'CBE_ERR_EARLY_EVENTS_FULL' } });
    expect((over.body as { message: string }).message).toMatch(/early\.maxBytes 40/);
    const huge = await send(url, HTTP.binary(shipped('D-3', 1, { data: pad(100) })));
    expect(huge).toMatchObject({ status: 413, body: { code: 'CBE_ERR_PAYLOAD_TOO_LARGE' } });
    expect(engine.stats().early).toMatchObject({
      held: 1,
      heldBytes: before.heldBytes,
      refused: 1,
    });
  });

  it('expires unclaimed events after the retention, on the engine clock, counted and reported', async () => {
    const { engine, url } = await start({ retention: 'PT1M' });
    const clock = (engine as unknown as { clock: SimulatedClock }).clock;
    const events: EngineEvent[] = [];
    engine.subscribe((e) => {
      if (e.type === 'early') events.push(e);
    });
    await send(url, HTTP.binary(shipped('E-1', 1)));
    clock.advance(30_000);
    await send(url, HTTP.binary(shipped('E-2', 1)));
    clock.advance(30_000); // E-1 is a minute old now
    expect(engine.stats().early).toMatchObject({ held: 1, expired: 1 });
    clock.advance(30_000);
    expect(engine.stats().early).toMatchObject({ held: 0, expired: 2 });
    expect(events.map((e) => e.reason)).toEqual(['held', 'held', 'expired', 'expired']);
    expect(events[2]).toMatchObject({ anchor: 'order', reported: 'progress' });
    const cb = await engine.create('order', { data: { orderId: 'E-1' } });
    expect(cb.status).toBe('create');
  });

  it('an anchor that did not opt in still answers 404 for an unmatched correlated event', async () => {
    const { engine, url } = await start();
    const r = await send(
      url,
      HTTP.binary(new CloudEvent({ id: 'i1', source: 's', type: 'paid', invoiceid: 'I-1' })),
    );
    expect(r).toMatchObject({
      status: 404,
      outcome: 'notFound',
      body: {
        status: 'notFound',
        message:
          "no callback matches this event's correlation attributes, and no anchor holds early events for them",
      },
    });
    // An event whose status resolves for no opted-in anchor is not held either.
    const r2 = await send(
      url,
      HTTP.binary(new CloudEvent({ id: 'o1', source: 's', type: 'x.unmapped', orderid: 'O-1' })),
    );
    expect(r2.status).toBe(404);
    expect(engine.stats().early?.held).toBe(0);
  });

  it('holds a redelivered event once, and does not apply it again after its callback claimed it', async () => {
    const { engine, url } = await start();
    const ev = shipped('F-1', 1);
    expect((await send(url, HTTP.binary(ev))).status).toBe(202);
    expect((await send(url, HTTP.structured(ev))).status).toBe(202);
    expect(engine.stats().early?.held).toBe(1);
    const cb = await engine.create('order', { data: { orderId: 'F-1' } });
    expect(cb.status).toBe('progress');
    const again = await send(url, HTTP.binary(ev));
    expect(again).toMatchObject({ status: 200, outcome: 'replayed' });
    expect(seen.get('F-1')).toEqual(['create:-', 'progress:1']);
  });

  it('batch mode answers each early event 202 queued in its entry', async () => {
    const { engine, url } = await start();
    const r = await fetch(`${url}/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/cloudevents-batch+json' },
      body: JSON.stringify([shipped('G-1', 1), shipped('G-1', 2)]),
    });
    expect(r.status).toBe(200);
    const body = (await r.json()) as { statusCode: number; outcome: string }[];
    expect(body.map((b) => [b.statusCode, b.outcome])).toEqual([
      [202, 'queued'],
      [202, 'queued'],
    ]);
    await engine.create('order', { data: { orderId: 'G-1' } });
    expect(seen.get('G-1')).toEqual(['create:-', 'progress:1', 'progress:2']);
  });
});

describe('early events in process', () => {
  it('holdEarly() answers found when the callback was created meanwhile, unmatched without a match', async () => {
    const { engine } = makeEngine();
    anchors(engine);
    const cb = await engine.create('order', { data: { orderId: 'H-1' } });
    const input = {
      attributes: { orderid: 'H-1' },
      type: 'com.example.order.shipped',
      dedupKey: 'k1',
    };
    expect(await internalsOf(engine).holdEarly(input)).toEqual({ kind: 'found', token: cb.token });
    expect(await internalsOf(engine).holdEarly({ ...input, attributes: { other: 1 } })).toEqual({
      kind: 'unmatched',
    });
    expect(
      await internalsOf(engine).holdEarly({
        ...input,
        attributes: { orderid: 'H-2' },
        dedupKey: 'k2',
      }),
    ).toMatchObject({ kind: 'queued', anchor: 'order', duplicate: false });
    const err = await rejection(
      internalsOf(engine).holdEarly({ ...input, attributes: { orderid: 'H-3' }, status: 'bogus' }),
    );
    expect(err.code).toBe('CBE_ERR_INVALID_MESSAGE');
    await engine.close();
  });

  it('a held event the new callback refuses (over maxCallbackBytes) is dropped, the others still apply', async () => {
    const { engine } = makeEngine({ maxCallbackBytes: 200 });
    anchors(engine);
    const base = { attributes: { orderid: 'J-1' }, type: 'com.example.order.shipped' };
    await internalsOf(engine).holdEarly({ ...base, data: { n: 1 }, dedupKey: 'a' });
    await internalsOf(engine).holdEarly({
      ...base,
      data: { n: 2, pad: 'x'.repeat(300) },
      dedupKey: 'b',
    });
    await internalsOf(engine).holdEarly({ ...base, data: { n: 3 }, dedupKey: 'c' });
    const cb = await engine.create('order', { data: { orderId: 'J-1' } });
    expect(cb.data).toEqual({ orderId: 'J-1', n: 3 });
    expect(seen.get('J-1')).toEqual(['create:-', 'progress:1', 'progress:3']);
    await engine.close();
  });

  it('the first registered opted-in anchor whose keys and status match holds the event', async () => {
    const { engine } = makeEngine();
    engine.anchor('a', { correlate: ['ref'], early: true, eventTypes: { only: 'progress' } });
    engine.anchor('b', { correlate: ['ref'], early: true });
    const hold = (type: string, dedupKey: string, status?: string) =>
      internalsOf(engine).holdEarly({ attributes: { ref: 'R' }, type, dedupKey, status });
    expect(await hold('only', '1')).toMatchObject({ kind: 'queued', anchor: 'a' });
    // No status for "a" or "b" from this type: not held.
    expect(await hold('other', '2')).toEqual({ kind: 'unmatched' });
    expect(await hold('other', '3', 'start')).toMatchObject({ kind: 'queued', anchor: 'a' });
    await engine.close();
  });
});

describe('anchor option early: validation', () => {
  const bad = (early: unknown, correlate: string[] | null) => {
    const { engine } = makeEngine();
    try {
      engine.anchor('x', { ...(correlate ? { correlate } : {}), early } as never);
    } catch (err) {
      expect(err).toBeInstanceOf(CallbackEngineError);
      return err as CallbackEngineError;
    }
    throw new Error('expected a throw');
  };
  it.each([
    [
      'needs correlate',
      true,
      null,
      'anchor "x" options.early needs options.correlate: early events are held under the anchor\'s correlation keys',
    ],
    [
      'must be true, false or an object',
      'yes',
      ['k'],
      'anchor "x" options.early must be true, false or an object { maxEvents, maxBytes, retention } (got "yes")',
    ],
    [
      'maxEvents a positive integer',
      { maxEvents: 0 },
      ['k'],
      'anchor "x" options.early.maxEvents must be a positive integer (got 0)',
    ],
    [
      'maxBytes a positive integer',
      { maxBytes: 1.5 },
      ['k'],
      'anchor "x" options.early.maxBytes must be a positive integer (got 1.5)',
    ],
    [
      'retention an ISO 8601 duration',
      { retention: '10 minutes' },
      ['k'],
      'anchor "x" options.early.retention must be an ISO 8601 duration longer than zero such as "PT10M" (got "10 minutes")',
    ],
    [
      'retention longer than zero',
      { retention: 'PT0S' },
      ['k'],
      'anchor "x" options.early.retention must be an ISO 8601 duration longer than zero such as "PT10M" (got "PT0S")',
    ],
  ])('%s', (_name, early, correlate, message) => {
    const err = bad(early, correlate);
    expect(err.code).toBe('CBE_ERR_INVALID_ARGUMENT');
    expect(err.message).toBe(message);
  });

  it('refuses unknown keys', () => {
    const err = bad({ maxEvent: 3 }, ['k']);
    expect(err.code).toBe('CBE_ERR_INVALID_ARGUMENT');
    expect(err.message).toBe(
      'unknown option "maxEvent" in anchor "x" options.early (did you mean "maxEvents"?)',
    );
  });

  it('accepts true, false and an object; stats().early appears once an anchor opted in', () => {
    const { engine } = makeEngine();
    engine.anchor('p', { correlate: ['k'], early: false });
    expect(engine.stats().early).toBeUndefined();
    engine.anchor('q', { correlate: ['k'], early: { maxEvents: 5, retention: 'PT30S' } });
    expect(engine.stats().early).toEqual({
      held: 0,
      heldBytes: 0,
      claimed: 0,
      expired: 0,
      refused: 0,
    });
    void engine.close();
  });
});
