/**
 * Deduplication keys belong to one callback, are stored in the same commit as the effect they
 * deduplicate (only with a committed effect: never for an unknown or forged token, a refused
 * report or a failed commit), survive restarts, and are kept for the deduplication window.
 */

import { afterEach, describe, expect, it } from 'vitest';
import { createSimulatedClock, type CallbackEngine, type DispatchResult } from '../src/index.js';
import { type StoreBatch } from '../src/store/index.js';
import { cloudEventKey } from '../src/http/routes.js';
import { sqliteStore } from '../src/store/sqlite.js';
import { DurableFixture, turn } from './helpers/durable.js';
import { makeEngine } from './helpers/engine.js';
import { PgFixture, pgAvailable } from './helpers/postgres.js';
import { openDb } from './helpers/sqlite.js';

const keyed = (
  engine: CallbackEngine,
  token: string,
  status: string,
  data: Record<string, unknown>,
  dedupKey: string,
): Promise<DispatchResult> =>
  engine.deliver({
    type: 'CALLBACK',
    callbackToken: token,
    callbackStatus: status as 'progress',
    callbackData: data,
    dedupKey,
  });

/** An anchor whose progress step counts its runs per callback. */
function counting(engine: CallbackEngine, runs: Map<string, number>): void {
  engine.anchor('job', {
    next: {
      progress: (cb) => {
        runs.set(cb.id, (runs.get(cb.id) ?? 0) + 1);
        return { runs: runs.get(cb.id)! };
      },
    },
  });
}

const fx = new DurableFixture();
afterEach(() => fx.cleanup());

describe('deduplication keys', () => {
  it('survive a restart (SQLite): 200 acknowledged keyed reports resent after it are replays, their steps do not run again', async () => {
    const file = fx.db();
    const runs = new Map<string, number>();
    let engine = fx.open(file);
    counting(engine, runs);
    const cbs = await Promise.all(Array.from({ length: 20 }, () => engine.create('job')));
    const sends = (e: CallbackEngine) =>
      Promise.all(
        cbs.flatMap((cb) =>
          Array.from({ length: 10 }, (_, k) => keyed(e, cb.token, 'progress', { k }, `seq-${k}`)),
        ),
      );
    const first = await sends(engine);
    expect(first.every((r) => r.outcome === 'applied')).toBe(true);
    await engine.close();
    engine = fx.open(file);
    counting(engine, runs);
    await engine.ready();
    const again = await sends(engine);
    expect(again.filter((r) => r.outcome === 'replayed')).toHaveLength(200);
    for (const cb of cbs) expect(runs.get(cb.id)).toBe(10);
  });

  it('belong to one callback: two callbacks whose senders both use key "1" are both applied', async () => {
    const { engine } = makeEngine();
    const runs = new Map<string, number>();
    counting(engine, runs);
    const a = await engine.create('job');
    const b = await engine.create('job');
    expect((await keyed(engine, a.token, 'progress', { n: 1 }, '1')).outcome).toBe('applied');
    expect((await keyed(engine, b.token, 'progress', { n: 1 }, '1')).outcome).toBe('applied');
    expect((await keyed(engine, a.token, 'progress', { n: 1 }, '1')).outcome).toBe('replayed');
    expect([runs.get(a.id), runs.get(b.id)]).toEqual([1, 1]);
  });

  it('a report with a forged token burns no key: the real report with that key is applied', async () => {
    const { engine } = makeEngine();
    const runs = new Map<string, number>();
    counting(engine, runs);
    const cb = await engine.create('job');
    const forged = `${cb.token.slice(0, -6)}AAAAAA`;
    expect((await keyed(engine, forged, 'progress', { n: 1 }, 'k')).outcome).toBe('notFound');
    expect((await keyed(engine, cb.token, 'progress', { n: 1 }, 'k')).outcome).toBe('applied');
    expect(runs.get(cb.id)).toBe(1);
  });

  it('a refused report (too large) and a failed commit record no key: the resend is applied', async () => {
    const real = sqliteStore({ path: fx.db() });
    let fail = false;
    const store = new Proxy(real, {
      get(target, prop, receiver) {
        if (prop === 'commit')
          return (b: StoreBatch) => {
            if (fail) {
              fail = false;
              throw new Error('disk I/O error');
            }
            return target.commit(b);
          };
        const v = Reflect.get(target, prop, receiver) as unknown;
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
    const engine = fx.open('', { maxCallbackBytes: 4096 }, undefined, store);
    const runs = new Map<string, number>();
    counting(engine, runs);
    const cb = await engine.create('job');
    await expect(
      keyed(engine, cb.token, 'progress', { big: 'x'.repeat(5000) }, 'k1'),
    ).rejects.toMatchObject({
      code: 'CBE_ERR_PAYLOAD_TOO_LARGE',
    });
    expect((await keyed(engine, cb.token, 'progress', { n: 1 }, 'k1')).outcome).toBe('applied');
    fail = true;
    await expect(keyed(engine, cb.token, 'progress', { n: 2 }, 'k2')).rejects.toMatchObject({
      code: 'CBE_ERR_STORE_UNAVAILABLE',
    });
    const resent = await keyed(engine, cb.token, 'progress', { n: 2 }, 'k2');
    expect(resent.outcome).toBe('applied');
    expect(resent.answer.data).toMatchObject({ n: 2 });
    const kinds = (await engine.history(cb.id)).entries.filter((e) => e.kind === 'reported');
    expect(kinds.map((e) => e.dedupKey)).toEqual(['k1', 'k2']);
  });

  it('are kept for the deduplication window (engine clock), then pruned', async () => {
    const clock = createSimulatedClock();
    const { engine } = makeEngine({ clock, dedupWindow: 'PT1H' });
    const runs = new Map<string, number>();
    counting(engine, runs);
    const cb = await engine.create('job', { timeout: false });
    expect((await keyed(engine, cb.token, 'progress', {}, 'w')).outcome).toBe('applied');
    clock.advance(59 * 60_000);
    expect((await keyed(engine, cb.token, 'progress', {}, 'w')).outcome).toBe('replayed');
    clock.advance(2 * 60_000);
    expect((await keyed(engine, cb.token, 'progress', {}, 'w')).outcome).toBe('applied');
    expect(runs.get(cb.id)).toBe(2);

    // SQLite: keys past the window are deleted in bounded batches after commits, once a minute.
    const file = fx.db();
    const durable = fx.open(file, { clock, dedupWindow: 'PT1H' });
    counting(durable, new Map());
    const d = await durable.create('job', { timeout: false });
    for (let i = 0; i < 5; i++) await keyed(durable, d.token, 'progress', {}, `old-${i}`);
    clock.advance(2 * 3_600_000);
    await keyed(durable, d.token, 'progress', {}, 'fresh');
    for (let i = 0; i < 5; i++) await turn();
    await durable.close();
    const db = openDb(file, { readOnly: true });
    try {
      expect(db.prepare('SELECT key FROM dedup ORDER BY key').all()).toEqual([{ key: 'fresh' }]);
    } finally {
      db.close();
    }
  });

  it("a CloudEvent's key is its source and id, unambiguous and never cut", () => {
    expect(cloudEventKey('a b', 'c')).not.toBe(cloudEventKey('a', 'b c'));
    expect(cloudEventKey('/carrier', 'E-1')).toBe('["/carrier","E-1"]');
    const prefix = 'x'.repeat(300);
    const one = cloudEventKey('/s', `${prefix}1`);
    const two = cloudEventKey('/s', `${prefix}2`);
    expect(one).not.toBe(two);
    for (const k of [one, two]) expect(k).toMatch(/^ce:[A-Za-z0-9_-]{43}$/);
    expect(cloudEventKey('/s', `${prefix}1`)).toBe(one);
  });

  it('refuses a bad dedupWindow option', () => {
    expect(() => makeEngine({ dedupWindow: '1 day' })).toThrow(
      /options.dedupWindow must be an ISO 8601 duration such as "PT24H" \(got "1 day"\)/,
    );
    expect(() => makeEngine({ dedupWindow: 'PT0S' })).toThrow(/longer than zero/);
  });
});

describe.skipIf(!pgAvailable)('deduplication keys with several replicas (PostgreSQL)', () => {
  const pg = new PgFixture();
  afterEach(() => pg.cleanup());

  /** A replica on this test's schema (4 shards, forwarding over PostgreSQL), counting its steps. */
  const replica = async (node: string, runs: Map<string, number>) => {
    const e = pg.engine(node, { nats: false, store: { shards: 4 } });
    counting(e, runs);
    await e.ready();
    return e;
  };

  it('one key on two callbacks of two replicas: both applied; a resend after the replicas changed is a replay', async () => {
    pg.fresh();
    const runs = new Map<string, number>();
    const open = (node: string) => replica(node, runs);
    const a = await open('a');
    const b = await open('b');
    const x = await a.create('job');
    const y = await b.create('job');
    expect((await keyed(a, x.token, 'progress', { n: 1 }, '1')).outcome).toBe('applied');
    expect((await keyed(b, y.token, 'progress', { n: 1 }, '1')).outcome).toBe('applied');
    const forged = `${x.token.slice(0, -6)}AAAAAA`;
    expect((await keyed(a, forged, 'progress', { n: 2 }, '2')).outcome).toBe('notFound');
    expect((await keyed(a, x.token, 'progress', { n: 2 }, '2')).outcome).toBe('applied');
    await a.close();
    await b.close();
    const c = await open('c');
    for (const [token, key] of [
      [x.token, '1'],
      [y.token, '1'],
      [x.token, '2'],
    ] as const)
      expect((await keyed(c, token, 'progress', {}, key)).outcome).toBe('replayed');
    expect([runs.get(x.id), runs.get(y.id)]).toEqual([2, 1]);
    const [count] = await pg.sql<{ n: number }>('SELECT count(*)::int AS n FROM dedup');
    expect(count!.n).toBe(3);
  });

  it('a burst of keyed reports asked of the database together: each key applied once per callback, resends replayed, nothing lost', async () => {
    pg.fresh();
    const runs = new Map<string, number>();
    const open = (node: string) => replica(node, runs);
    const a = await open('a');
    const b = await open('b');
    const cbs = await Promise.all(
      Array.from({ length: 40 }, (_, i) => (i % 2 ? a : b).create('job')),
    );
    // Key "old" committed on every callback before the burst; new replicas then hold none of
    // them in memory, so the burst reads "old" back from the database.
    for (const cb of cbs)
      expect((await keyed(a, cb.token, 'progress', {}, 'old')).outcome).toBe('applied');
    await a.close();
    await b.close();
    const c = await open('c');
    const d = await open('d');
    // The burst: per callback, two new keys each sent twice and "old" again, through both
    // replicas, all in flight at once (200 reports).
    const sends = cbs.flatMap((cb, i) =>
      ['k1', 'k2', 'old', 'k1', 'k2'].map((key, j) => ({ cb, key, via: (i + j) % 2 ? c : d })),
    );
    const results = await Promise.all(
      sends.map(({ cb, key, via }) => keyed(via, cb.token, 'progress', { key }, key)),
    );
    for (const cb of cbs) {
      const outcome = (key: string) =>
        results
          .filter((_, i) => sends[i]!.cb === cb && sends[i]!.key === key)
          .map((r) => r.outcome);
      expect(outcome('old')).toEqual(['replayed']);
      expect(outcome('k1').sort()).toEqual(['applied', 'replayed']);
      expect(outcome('k2').sort()).toEqual(['applied', 'replayed']);
      // "old" before the burst, then k1 and k2 once each.
      expect(runs.get(cb.id)).toBe(3);
    }
    const [count] = await pg.sql<{ n: number }>('SELECT count(*)::int AS n FROM dedup');
    expect(count!.n).toBe(cbs.length * 3);
    await c.close();
    await d.close();
  });
});
