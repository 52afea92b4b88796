import { afterEach, describe, expect, it } from 'vitest';
import { createSimulatedClock, type CallbackEngine, type StepInput } from '../src/index.js';
import { MACHINE_VERSION } from '../src/lifecycle/persist.js';
import { DurableFixture, writeV1File } from './helpers/durable.js';
import { internalsOf } from '../src/engine-internals.js';
import { openDb } from './helpers/sqlite.js';

const fx = new DurableFixture();
afterEach(() => fx.cleanup());

let seen: string[] = [];
const record = (input: StepInput) => {
  seen.push(`${input.status}:${String(input.report.n ?? '-')}`);
};

function anchors(engine: CallbackEngine, retention = 'PT10M'): void {
  engine.anchor('order', {
    correlate: ['orderId'],
    eventTypes: { shipped: 'progress' },
    early: { retention },
    next: { create: record, progress: record, complete: record },
  });
}

const hold = (engine: CallbackEngine, orderid: string, n: number, status?: string) =>
  internalsOf(engine).holdEarly({
    attributes: { orderid },
    type: 'shipped',
    status,
    data: { n },
    dedupKey: `src ${orderid}-${n}`,
  });

const rows = (path: string) => {
  const db = openDb(path, { readOnly: true });
  try {
    return db
      .prepare('SELECT dedup_key FROM early_events ORDER BY seq')
      .all()
      .map((r) => (r as { dedup_key: string }).dedup_key);
  } finally {
    db.close();
  }
};

describe('early events with sqliteStore()', () => {
  it('stores held events before answering; they survive close and reopen and are then claimed in order', async () => {
    seen = [];
    const path = fx.db();
    const clock = createSimulatedClock();
    const a = fx.open(path, { clock });
    anchors(a);
    await a.ready();
    expect(await hold(a, 'S-1', 1)).toMatchObject({ kind: 'queued' });
    expect(await hold(a, 'S-1', 2)).toMatchObject({ kind: 'queued' });
    expect(await hold(a, 'S-1', 3, 'complete')).toMatchObject({ kind: 'queued' });
    // Redelivered: held once.
    expect(await hold(a, 'S-1', 2)).toMatchObject({ kind: 'queued', duplicate: true });
    await a.close();
    expect(rows(path)).toEqual(['src S-1-1', 'src S-1-2', 'src S-1-3']);

    const b = fx.open(path, { clock });
    anchors(b);
    await b.ready();
    expect(b.stats().early).toMatchObject({ held: 3 });
    const cb = await b.create('order', { data: { orderId: 'S-1' } });
    expect(seen).toEqual(['create:-', 'progress:1', 'progress:2', 'complete:3']);
    expect(cb).toMatchObject({ status: 'complete', data: { orderId: 'S-1', n: 3 } });
    await b.close();
    // Claimed rows left with the reports' effects.
    expect(rows(path)).toEqual([]);

    const c = fx.open(path, { clock });
    anchors(c);
    await c.ready();
    expect(c.stats().early).toMatchObject({ held: 0 });
    expect((await c.get(cb.token)).status).toBe('complete');
  });

  it('events whose retention passed while the engine was down expire at open, and their rows go', async () => {
    const path = fx.db();
    const clock = createSimulatedClock();
    const a = fx.open(path, { clock });
    anchors(a, 'PT1M');
    await a.ready();
    await hold(a, 'T-1', 1);
    await a.close();
    clock.advance(120_000);
    const b = fx.open(path, { clock });
    anchors(b, 'PT1M');
    await b.ready();
    clock.advance(0);
    expect(b.stats().early).toMatchObject({ held: 0, expired: 1 });
    await b.close();
    expect(rows(path)).toEqual([]);
  });

  it('after a crash between the create and the held reports commit, reopening applies the stored ones', async () => {
    seen = [];
    const path = fx.db();
    const clock = createSimulatedClock();
    const a = fx.open(path, { clock });
    anchors(a);
    await a.ready();
    const cb = await a.create('order', { data: { orderId: 'V-1' } });
    await a.close();
    // The state such a crash leaves: the callback is stored, its claimed event's row too.
    const db = openDb(path);
    db.prepare(
      `INSERT INTO early_events (seq, dedup_key, anchor, corr_key, status, data, held_at, expires_at)
       VALUES (0, 'src V-1-1', 'order', ?, 'progress', '{"n":1}', ?, ?)`,
    ).run('order\u0000V-1', clock.now(), clock.now() + 600_000);
    db.close();
    const b = fx.open(path, { clock });
    anchors(b);
    await b.ready();
    // Applied during recovery; close() commits it.
    await b.close();
    expect(seen).toEqual(['create:-', 'progress:1']);
    expect(rows(path)).toEqual([]);
    const c = fx.open(path, { clock });
    anchors(c);
    expect(await c.get(cb.token)).toMatchObject({ status: 'progress', data: { n: 1 } });
  });

  it('a file of schema 1 (before early events and the journal) opens, upgraded, and holds them', async () => {
    const path = fx.db();
    writeV1File(path, MACHINE_VERSION, []);
    const b = fx.open(path);
    anchors(b);
    await b.ready();
    expect(await hold(b, 'U-1', 1)).toMatchObject({ kind: 'queued' });
    await b.close();
    expect(rows(path)).toEqual(['src U-1-1']);
  });
});
