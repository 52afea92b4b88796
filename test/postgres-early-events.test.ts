/**
 * Early events with postgresStore(): held rows in the shared `early_events` table, committed
 * before the 202; claimed in arrival order by a create on any replica; removed with the applied
 * reports' effects; bounded per anchor against the table (no overshoot with concurrent holds on
 * two replicas); expired and counted on the engine clock; a held row whose callback exists
 * without having claimed it is applied, not expired. Needs PostgreSQL (PG_URL); two replicas run
 * in this process, forwarding over NATS where it answers, else over PostgreSQL (each test its own
 * schema, dropped afterwards).
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  createSimulatedClock,
  EarlyEventsFullError,
  type CallbackEngine,
  type SimulatedClock,
  type StepInput,
} from '../src/index.js';
import { serve } from '../src/http/index.js';
import { rejection } from './helpers/engine.js';
import { MACHINE_VERSION } from '../src/lifecycle/persist.js';
import { natsAvailable, PgFixture, pgAvailable, writeV1Schema } from './helpers/postgres.js';
import { internalsOf } from '../src/engine-internals.js';

const available = pgAvailable;

const SHARDS = 8;
const poll = { timeout: 10_000, interval: 25 };

const fx = new PgFixture();
beforeEach(() => {
  fx.fresh();
});
afterEach(() => fx.cleanup());

/** What the steps saw, per order: `node:status:n`, in the order they ran (both replicas). */
let seen: Map<string, string[]>;
const record = (node: string) => (input: StepInput) => {
  const id = String(input.data.orderid);
  const list = seen.get(id) ?? [];
  list.push(`${input.status}:${String(input.report.n ?? '-')}`);
  seen.set(id, list);
  return { lastBy: node };
};

function anchors(engine: CallbackEngine, node: string, early: object = {}): void {
  engine.anchor('order', {
    correlate: ['orderid'],
    eventTypes: { shipped: 'progress', done: 'complete' },
    early: { retention: 'PT10M', ...early },
    next: { create: record(node), progress: record(node), complete: record(node) },
  });
}

function open(
  node: string,
  clock: SimulatedClock,
  early: object = {},
  nats = false,
): CallbackEngine {
  const engine = fx.engine(node, {
    nats,
    store: { shards: SHARDS },
    engine: { clock },
  });
  anchors(engine, node, early);
  return engine;
}

/** Replicas a and b, ready, holding half of the shards each. */
async function pair(clock: SimulatedClock, early: object = {}) {
  const a = open('a', clock, early, natsAvailable);
  await a.ready();
  const b = open('b', clock, early, natsAvailable);
  await b.ready();
  await vi.waitFor(() => {
    expect(a.stats().cluster?.shards).toBe(SHARDS / 2);
    expect(b.stats().cluster?.shards).toBe(SHARDS / 2);
  }, poll);
  return [a, b] as const;
}

const hold = (engine: CallbackEngine, orderid: string, n: number, type = 'shipped') =>
  internalsOf(engine).holdEarly({
    attributes: { orderid },
    type,
    data: { n },
    // The key the HTTP layer gives the same CloudEvent (source and id).
    dedupKey: JSON.stringify(['/carrier', `${orderid}-${n}`]),
  });

const heldRows = async () =>
  (await fx.sql<{ dedup_key: string }>('SELECT dedup_key FROM early_events ORDER BY seq')).map(
    (r) => r.dedup_key,
  );

/** Posts a structured CloudEvent; answers status and Callback-Outcome. */
async function post(url: string, orderid: string, n: number, type = 'shipped') {
  const r = await fetch(`${url}/events`, {
    method: 'POST',
    headers: { 'content-type': 'application/cloudevents+json' },
    body: JSON.stringify({
      specversion: '1.0',
      source: '/carrier',
      id: `${orderid}-${n}`,
      type,
      orderid,
      data: { n },
    }),
  });
  await r.arrayBuffer();
  return { status: r.status, outcome: r.headers.get('callback-outcome') };
}

describe.skipIf(!available)('early events with postgresStore()', () => {
  it('one engine: held rows are committed before queued, survive close and reopen, are claimed in order and leave with the effect', async () => {
    seen = new Map();
    const clock = createSimulatedClock();
    const a = open('solo', clock);
    await a.ready();
    expect(await hold(a, 'S-1', 1)).toMatchObject({ kind: 'queued', duplicate: false });
    expect(await hold(a, 'S-1', 2)).toMatchObject({ kind: 'queued', duplicate: false });
    expect(await hold(a, 'S-1', 3, 'done')).toMatchObject({ kind: 'queued' });
    // Redelivered: held once.
    expect(await hold(a, 'S-1', 2)).toMatchObject({ kind: 'queued', duplicate: true });
    // Committed when queued was answered.
    expect(await heldRows()).toEqual([
      '["/carrier","S-1-1"]',
      '["/carrier","S-1-2"]',
      '["/carrier","S-1-3"]',
    ]);
    await a.close();

    const b = open('solo', clock);
    await b.ready();
    const cb = await b.create('order', { data: { orderid: 'S-1' } });
    // Applied in arrival order before create() resolved.
    expect(seen.get('S-1')).toEqual(['create:-', 'progress:1', 'progress:2', 'complete:3']);
    expect(cb).toMatchObject({ status: 'complete', data: { orderid: 'S-1', n: 3 } });
    // The rows left in the commits that applied them, with their deduplication keys.
    expect(await heldRows()).toEqual([]);
    const keys = await fx.sql<{ key: string }>('SELECT key FROM dedup ORDER BY key');
    expect(keys.map((k) => k.key)).toEqual([
      '["/carrier","S-1-1"]',
      '["/carrier","S-1-2"]',
      '["/carrier","S-1-3"]',
    ]);
    expect(b.stats().early).toMatchObject({ claimed: 3, expired: 0 });
    // A redelivery after the claim is found and answered replayed, not held again.
    const server = await serve(b, { port: 0, cloudEvents: { trustCorrelation: true } });
    try {
      expect(await post(server.url, 'S-1', 2)).toEqual({ status: 200, outcome: 'replayed' });
    } finally {
      await server.close();
    }
    expect(await heldRows()).toEqual([]);
    expect(seen.get('S-1')).toHaveLength(4);
  });

  it('a schema of version 1 written before early events existed opens, upgraded, and gains the table', async () => {
    const clock = createSimulatedClock();
    await writeV1Schema(fx, { shards: SHARDS, machineVersion: MACHINE_VERSION });
    const b = open('old', clock);
    await b.ready();
    expect(await hold(b, 'U-1', 1)).toMatchObject({ kind: 'queued' });
    expect(await heldRows()).toEqual(['["/carrier","U-1-1"]']);
    expect(await fx.sql('SELECT value FROM meta WHERE key = $1', ['schema_version'])).toEqual([
      { value: '2' },
    ]);
  });

  it('unclaimed events expire on the engine clock and are counted; their rows go', async () => {
    const clock = createSimulatedClock();
    const a = open('exp', clock, { retention: 'PT1M' });
    await a.ready();
    await hold(a, 'T-1', 1);
    clock.advance(30_000);
    await hold(a, 'T-2', 1);
    clock.advance(31_000);
    await vi.waitFor(() => expect(a.stats().early).toMatchObject({ expired: 1 }), poll);
    expect(await heldRows()).toEqual(['["/carrier","T-2-1"]']);
    clock.advance(30_000);
    await vi.waitFor(() => expect(a.stats().early).toMatchObject({ expired: 2, held: 0 }), poll);
    expect(await heldRows()).toEqual([]);
    // Nothing left to claim.
    seen = new Map();
    await a.create('order', { data: { orderid: 'T-1' } });
    expect(seen.get('T-1')).toEqual(['create:-']);
  });

  it('a held row whose callback exists but never claimed it (a crash) is applied at restart, not expired', async () => {
    seen = new Map();
    const clock = createSimulatedClock();
    const a = open('crash', clock, { retention: 'PT1M' });
    await a.ready();
    const cb = await a.create('order', { data: { orderid: 'V-1' } });
    await a.close();
    // The state a crash between the create's commit and its claim leaves.
    await fx.sql(
      `INSERT INTO early_events (dedup_key, anchor, corr_key, status, data, bytes, held_at, expires_at)
       VALUES ('["/carrier","V-1-1"]', 'order', $1, 'progress', '{"n":1}', 7, $2, $3)`,
      ['order\\0V-1', clock.now(), clock.now() + 60_000],
    );
    const b = open('crash', clock, { retention: 'PT1M' });
    await b.ready();
    // The shards it takes hold the callback: the held row is applied to it.
    await vi.waitFor(async () => {
      expect(await b.get(cb.token)).toMatchObject({ status: 'progress', data: { n: 1 } });
      // Its step runs once the report's entry is committed.
      expect(seen.get('V-1')).toEqual(['create:-', 'progress:1']);
    }, poll);
    await vi.waitFor(async () => expect(await heldRows()).toEqual([]), poll);
    // Counted once its report is answered (after its step's outcome is stored).
    await vi.waitFor(() => expect(b.stats().early).toMatchObject({ claimed: 1 }), poll);
    clock.advance(120_000);
    expect(b.stats().early).toMatchObject({ expired: 0, claimed: 1 });
  });

  it('bounds hold against the table: concurrent holds on two replicas never pass maxEvents; maxBytes too', async () => {
    const clock = createSimulatedClock();
    const [a, b] = await pair(clock, { maxEvents: 5, maxBytes: 200 });
    const results = await Promise.allSettled(
      Array.from({ length: 24 }, (_, i) => hold(i % 2 === 0 ? a : b, `B-${i}`, i)),
    );
    const held = results.filter((r) => r.status === 'fulfilled');
    const refused = results.filter((r) => r.status === 'rejected');
    expect(held).toHaveLength(5);
    expect(refused).toHaveLength(19);
    for (const r of refused) {
      const err = r.reason as EarlyEventsFullError;
      expect(err).toBeInstanceOf(EarlyEventsFullError);
      expect(err.code).toBe('CBE_ERR_EARLY_EVENTS_FULL');
      expect(err.statusCode).toBe(503);
      expect(err.bound).toBe('maxEvents');
    }
    expect(await heldRows()).toHaveLength(5);
    expect(a.stats().early!.refused + b.stats().early!.refused).toBe(19);

    // Bytes: free the count by creating the callbacks, then fill the byte bound.
    for (const r of await fx.sql<{ corr_key: string }>('SELECT corr_key FROM early_events'))
      await a.create('order', { data: { orderid: r.corr_key.split('\\0')[1] } });
    await vi.waitFor(async () => expect(await heldRows()).toEqual([]), poll);
    const big = (engine: CallbackEngine, id: string) =>
      internalsOf(engine).holdEarly({
        attributes: { orderid: id },
        type: 'shipped',
        data: { pad: 'x'.repeat(80) },
        dedupKey: `big ${id}`,
      });
    await big(a, 'C-1');
    await big(b, 'C-2');
    const err = await rejection(big(a, 'C-3'));
    expect(err).toBeInstanceOf(EarlyEventsFullError);
    expect((err as EarlyEventsFullError).bound).toBe('maxBytes');
    expect(err.message).toMatch(/early\.maxBytes 200/);
  });

  it('an event held through replica a over HTTP is applied by a create on replica b', async () => {
    seen = new Map();
    const clock = createSimulatedClock();
    const [a, b] = await pair(clock);
    const server = await serve(a, { port: 0, cloudEvents: { trustCorrelation: true } });
    try {
      expect(await post(server.url, 'X-1', 1)).toEqual({ status: 202, outcome: 'queued' });
      expect(await post(server.url, 'X-1', 2, 'done')).toEqual({ status: 202, outcome: 'queued' });
      const cb = await b.create('order', { data: { orderid: 'X-1' } });
      expect(cb).toMatchObject({ status: 'complete', data: { orderid: 'X-1', n: 2, lastBy: 'b' } });
      expect(seen.get('X-1')).toEqual(['create:-', 'progress:1', 'complete:2']);
      expect(b.stats().early).toMatchObject({ claimed: 2 });
      expect(await heldRows()).toEqual([]);
      // Redelivered through a after the claim: applied once.
      expect(await post(server.url, 'X-1', 1)).toEqual({ status: 200, outcome: 'replayed' });
      expect(seen.get('X-1')).toHaveLength(3);
    } finally {
      await server.close();
    }
  });

  it('many keys, events over both replicas, creates over both (some racing the events): nothing lost, order kept, applied once', async () => {
    seen = new Map();
    const clock = createSimulatedClock();
    const [a, b] = await pair(clock);
    const sa = await serve(a, { port: 0, cloudEvents: { trustCorrelation: true } });
    const sb = await serve(b, { port: 0, cloudEvents: { trustCorrelation: true } });
    const KEYS = 24;
    const EVENTS = 6;
    try {
      const outcomes: string[] = [];
      await Promise.all(
        Array.from({ length: KEYS }, async (_, k) => {
          const key = `K-${k}`;
          // Each key's producer sends in order, over both replicas; the create of half of the
          // keys starts in the middle of their events, on either replica.
          let creating: Promise<unknown> | undefined;
          for (let n = 1; n <= EVENTS; n++) {
            if (n === EVENTS / 2 && k % 2 === 1)
              creating = (k % 4 === 1 ? a : b).create('order', { data: { orderid: key } });
            const r = await post((n + k) % 2 === 0 ? sa.url : sb.url, key, n);
            expect([200, 202]).toContain(r.status);
            outcomes.push(r.outcome ?? '');
          }
          await creating;
        }),
      );
      // The other half are created now, spread over both replicas.
      await Promise.all(
        Array.from({ length: KEYS / 2 }, (_, j) =>
          (j % 2 === 0 ? b : a).create('order', { data: { orderid: `K-${2 * j}` } }),
        ),
      );
      for (let k = 0; k < KEYS; k++)
        expect(seen.get(`K-${k}`)).toEqual([
          'create:-',
          ...Array.from({ length: EVENTS }, (_, i) => `progress:${i + 1}`),
        ]);
      expect(outcomes.filter((o) => o === 'queued').length).toBeGreaterThan(KEYS);
      // Events after a create went to the callback directly.
      expect(outcomes.filter((o) => o === 'applied').length).toBeGreaterThan(0);
      expect(await heldRows()).toEqual([]);
      const counted = await fx.sql<{ n: number }>('SELECT count(*)::int AS n FROM dedup');
      expect(counted).toEqual([{ n: KEYS * EVENTS }]);
    } finally {
      await sa.close();
      await sb.close();
    }
  });
});
