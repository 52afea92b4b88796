/**
 * The callback journal in process: every report, step try, retry, deadline, cancel and
 * orphaning is an entry; `engine.history()` pages them on every store and after restarts; the
 * record read back from the store is the fold of its snapshot and journal tail, equal to the
 * record in memory; a parent's end and its children's orphaning are one commit; the bytes a
 * report writes do not grow with the callback's data.
 */

import { afterEach, describe, expect, it } from 'vitest';
import {
  createSimulatedClock,
  InvalidArgumentError,
  type CallbackEngine,
  type HistoryEntry,
} from '../src/index.js';
import { type DurableStore, type StoreBatch } from '../src/store/index.js';
import { sqliteStore } from '../src/store/sqlite.js';
import { DurableFixture, report, turn } from './helpers/durable.js';
import { makeEngine } from './helpers/engine.js';

const fx = new DurableFixture();
afterEach(() => fx.cleanup());

/** Every history entry of a callback, page by page (small pages: paging is exercised). */
async function allHistory(engine: CallbackEngine, id: string, limit = 3): Promise<HistoryEntry[]> {
  const out: HistoryEntry[] = [];
  let cursor: string | undefined;
  do {
    const page = await engine.history(id, { limit, ...(cursor ? { cursor } : {}) });
    expect(page.entries.length).toBeLessThanOrEqual(limit);
    out.push(...page.entries);
    cursor = page.cursor;
  } while (cursor !== undefined);
  return out;
}

/** The anchor of these tests: a failing step with two retries, an ignored report, a deadline. */
function anchor(engine: CallbackEngine): void {
  let tries = 0;
  engine.anchor('job', {
    retry: { start: { attempts: 3, backoff: 'PT1S', factor: 2 } },
    next: {
      create: () => ({ created: true }),
      start: () => {
        tries++;
        if (tries < 3) throw new Error(`try ${tries} failed`);
        return { startedOnTry: tries };
      },
      progress: (cb) => ({ last: cb.report.pct }),
      timeout: () => ({ cleanedUp: true }),
    },
  });
}

/** Drives one callback through its path; returns its id. */
async function path(engine: CallbackEngine, clock: ReturnType<typeof createSimulatedClock>) {
  const cb = await engine.create('job', { data: { order: 7 }, timeout: 'PT1M' });
  await engine.dispatch(report(cb.token, 'start', { s: 1 }));
  clock.advance(1000);
  await turn();
  await turn();
  clock.advance(2000);
  await turn();
  await turn();
  // Late: the callback is past accept already.
  expect((await engine.deliver(report(cb.token, 'accept'))).outcome).toBe('ignored');
  await engine.dispatch({
    type: 'CALLBACK',
    callbackToken: cb.token,
    callbackStatus: 'progress',
    callbackData: { pct: 50 },
    dedupKey: 'p-50',
  });
  clock.advance(60_000);
  await turn();
  await turn();
  expect((await engine.get(cb.token)).status).toBe('timeout');
  return cb;
}

const EXPECTED = [
  ['created', 'create', 'create'],
  ['stepCompleted', 'create', 'create'],
  ['reported', 'start', 'start'],
  ['stepFailed', 'start', 'start'],
  ['stepFailed', 'start', 'start'],
  ['stepCompleted', 'start', 'start'],
  ['reported', 'start', undefined],
  ['reported', 'progress', 'progress'],
  ['stepCompleted', 'progress', 'progress'],
  ['timedOut', 'timeout', 'timeout'],
  ['stepCompleted', 'timeout', 'timeout'],
];

describe('engine.history()', () => {
  it.each(['memory', 'sqlite'] as const)(
    'pages a callback’s whole path (%s): reports with their outcome, step tries and retries, the deadline',
    async (kind) => {
      const clock = createSimulatedClock();
      const engine = kind === 'memory' ? makeEngine({ clock }).engine : fx.open(fx.db(), { clock });
      anchor(engine);
      await engine.ready();
      const cb = await path(engine, clock);
      const h = await allHistory(engine, cb.id);
      expect(h.map((e) => [e.kind, e.status, e.step])).toEqual(EXPECTED);
      expect(h.map((e) => e.seq)).toEqual(h.map((_, i) => i + 1));
      expect(h[0]).toMatchObject({ data: { order: 7 } });
      expect(h[2]).toMatchObject({
        reported: 'start',
        outcome: 'applied',
        data: { s: 1 },
        attempt: 1,
      });
      expect(h[3]).toMatchObject({ error: 'try 1 failed', attempt: 1, retryAt: h[3]!.at + 1000 });
      expect(h[4]).toMatchObject({ error: 'try 2 failed', attempt: 2, retryAt: h[4]!.at + 2000 });
      expect(h[5]).toMatchObject({ attempt: 3, data: { startedOnTry: 3 } });
      expect(h[6]).toMatchObject({ reported: 'accept', outcome: 'ignored' });
      expect(h[7]).toMatchObject({ dedupKey: 'p-50', data: { pct: 50 } });
      expect(h[9]).toMatchObject({ reason: 'deadline' });
      for (const e of h) expect(typeof e.at).toBe('number');
      // The same by token; a forged token has none.
      expect((await engine.history(cb.token)).entries).toEqual(h.slice(0, 100));
      const forged = `${cb.token.slice(0, -4)}AAAA`;
      expect((await engine.history(forged)).entries).toEqual([]);
    },
  );

  it('is the same after a restart (SQLite), and stays until the retention ends', async () => {
    const clock = createSimulatedClock();
    const file = fx.db();
    let engine = fx.open(file, { clock, retention: 'PT10M' });
    anchor(engine);
    const cb = await path(engine, clock);
    const before = await allHistory(engine, cb.id);
    await engine.close();
    engine = fx.open(file, { clock, retention: 'PT10M' });
    anchor(engine);
    await engine.ready();
    expect(await allHistory(engine, cb.id, 100)).toEqual(before);
    clock.advance(10 * 60_000);
    await turn();
    await turn();
    expect((await engine.get(cb.token)).status).toBe('notFound');
    expect((await engine.history(cb.id)).entries).toEqual([]);
  });

  it('refuses a bad cursor or limit with a clear error', async () => {
    const { engine } = makeEngine();
    engine.anchor('job');
    const cb = await engine.create('job');
    for (const options of [
      { limit: 0 },
      { limit: 1001 },
      { limit: 1.5 },
      { cursor: 'x' },
      { cursor: '-1' },
    ])
      await expect(engine.history(cb.id, options as never)).rejects.toBeInstanceOf(
        InvalidArgumentError,
      );
    await expect(engine.history('')).rejects.toThrow(/needs a callback token or callbackId/);
  });
});

describe('the record is the fold of its journal', () => {
  it('read back from the store (snapshot plus tail) it equals the record in memory, whatever the path', async () => {
    const file = fx.db();
    const clock = createSimulatedClock();
    const open = () => {
      const e = fx.open(file, { clock, maxLiveActors: 1 });
      e.anchor('job', {
        next: {
          progress: (cb) =>
            Number(cb.report.n) % 7 === 0
              ? Promise.reject(new Error(`bad ${String(cb.report.n)}`))
              : { [`k${Number(cb.report.n) % 5}`]: 'x'.repeat(Number(cb.report.n) * 37) },
        },
      });
      return e;
    };
    let engine = open();
    const cbs = await Promise.all(
      Array.from({ length: 6 }, (_, i) => engine.create('job', { data: { i } })),
    );
    const want = new Map<string, unknown>();
    // Many reports, big and small (snapshots are rewritten along the way), some failing a step.
    for (let n = 1; n <= 40; n++)
      for (const [i, cb] of cbs.entries())
        if ((n + i) % 3 !== 0) await engine.dispatch(report(cb.token, 'progress', { n, i }));
    for (const cb of cbs) want.set(cb.id, await engine.get(cb.token));
    const live = engine.stats();
    await engine.close();
    engine = open();
    await engine.ready();
    for (const cb of cbs) {
      const got = await engine.get(cb.token);
      expect(JSON.parse(JSON.stringify(got))).toEqual(JSON.parse(JSON.stringify(want.get(cb.id))));
    }
    expect(engine.stats().byStatus).toEqual(live.byStatus);
  });
});

/** A SQLite store whose every batch is recorded (and whose next commit can be made to fail). */
function recordingStore(path: string): {
  store: DurableStore;
  batches: StoreBatch[];
  failNext: () => void;
} {
  const real = sqliteStore({ path });
  const batches: StoreBatch[] = [];
  let fail = false;
  const store = Object.create(real) as DurableStore;
  Object.assign(store, {
    kind: 'durable',
    name: real.name,
    open: (c: never) => real.open(c),
    commit: (b: StoreBatch) => {
      if (fail) {
        fail = false;
        throw new Error('disk I/O error');
      }
      batches.push(b);
      return real.commit(b);
    },
  });
  for (const m of [
    'load',
    'findByIdempotencyKey',
    'findByCorrelationKey',
    'childrenOf',
    'hasKey',
    'nextDueAt',
    'dueIds',
    'list',
    'history',
    'pruneKeys',
    'loadEarly',
    'close',
  ] as const)
    (store as unknown as Record<string, unknown>)[m] = (...a: unknown[]) =>
      (real as unknown as Record<string, (...x: unknown[]) => unknown>)[m]!(...a);
  return { store, batches, failNext: () => (fail = true) };
}

describe('one commit for a parent’s end and its subtree’s orphaning', () => {
  it('the parent’s terminal entry and every orphaning (down the tree) are in one batch', async () => {
    const { store, batches } = recordingStore(fx.db());
    const engine = fx.open('', { clock: createSimulatedClock() }, undefined, store);
    engine.anchor('job', { next: { orphan: () => ({ cleaned: true }) } });
    const parent = await engine.create('job');
    const kids = await Promise.all(
      [1, 2, 3].map(() => engine.create('job', { parentToken: parent.token })),
    );
    const grand = await engine.create('job', { parentToken: kids[0]!.token });
    await engine.dispatch(report(kids[2]!.token, 'complete'));
    batches.length = 0;
    await engine.cancel(parent.token);
    const ended = batches.find((b) => b.entries.some((e) => e.id === parent.id))!;
    const kinds = (id: string) =>
      ended.entries
        .filter((e) => e.id === id)
        .map((e) => (JSON.parse(e.entry) as { kind: string }).kind);
    expect(kinds(parent.id)).toEqual(['cancelled']);
    for (const id of [kids[0]!.id, kids[1]!.id, grand.id]) expect(kinds(id)).toEqual(['orphaned']);
    expect(kinds(kids[2]!.id)).toEqual([]);
    // The orphan steps ran after that commit, each in a later batch.
    await turn();
    await turn();
    for (const id of [kids[0]!.id, kids[1]!.id, grand.id])
      expect((await engine.history(id)).entries.at(-1)).toMatchObject({
        kind: 'stepCompleted',
        status: 'orphan',
      });
  });

  it('a failed commit leaves neither the parent’s end nor any orphaning, in memory or in the store', async () => {
    const { store, failNext } = recordingStore(fx.db());
    const engine = fx.open('', { clock: createSimulatedClock() }, undefined, store);
    engine.anchor('job');
    const parent = await engine.create('job');
    const kid = await engine.create('job', { parentToken: parent.token });
    failNext();
    await expect(engine.cancel(parent.token)).rejects.toMatchObject({
      code: 'CBE_ERR_STORE_UNAVAILABLE',
    });
    expect((await engine.get(parent.token)).status).toBe('create');
    expect((await engine.get(kid.token)).status).toBe('create');
    expect((await engine.history(kid.id)).entries.map((e) => e.kind)).toEqual(['created']);
    expect((await engine.cancel(parent.token)).status).toBe('cancel');
    expect((await engine.get(kid.token)).status).toBe('orphan');
  });
});

describe('bytes written per report', () => {
  it('do not grow with the callback’s data: 1 KB reports to a callback holding 100 KB', async () => {
    const measure = async (bulk: number) => {
      const engine = fx.open(fx.db(), { clock: createSimulatedClock() });
      engine.anchor('job');
      const cb = await engine.create('job', { data: { bulk: 'b'.repeat(bulk) } });
      const before = engine.stats().bytesWritten;
      const N = 200;
      for (let i = 0; i < N; i++)
        await engine.dispatch(report(cb.token, 'progress', { [`r${i % 20}`]: 'r'.repeat(1000) }));
      const after = engine.stats().bytesWritten;
      await engine.close();
      return (after - before) / N;
    };
    const small = await measure(10);
    const big = await measure(100_000);
    process.stdout.write(
      `bytes written per 1 KB report: ${small.toFixed(0)} (callback holding 10 B), ${big.toFixed(0)} (holding 100 KB)\n`,
    );
    // About the report itself (1 KB entry), with snapshots amortized; the same for 100 KB of data.
    expect(small).toBeLessThan(3 * 1024);
    expect(big).toBeLessThan(3 * 1024);
    expect(big / small).toBeLessThan(1.5);
  });
});

describe('the memory store’s history is bounded', () => {
  it('keeps the created entry and at least the newest 1,000 of a callback reported to 2,600 times', async () => {
    const { engine } = makeEngine();
    engine.anchor('job');
    const cb = await engine.create('job', { data: { order: 1 } });
    const producers = Array.from({ length: 8 }, async (_, p) => {
      for (let i = 0; i < 325; i++)
        await engine.dispatch(report(cb.token, 'progress', { [`p${p}`]: i }));
    });
    await Promise.all(producers);
    const entries = await allHistory(engine, cb.id, 1000);
    expect(entries[0]).toMatchObject({ seq: 1, kind: 'created' });
    const rest = entries.slice(1);
    expect(rest.length).toBeGreaterThanOrEqual(1000);
    expect(rest.length).toBeLessThanOrEqual(2000);
    // The newest entries, none missing and in order, up to the last report.
    expect(rest.at(-1)!.seq).toBe(2601);
    rest.forEach((e, i) => expect(e.seq).toBe(rest[0]!.seq + i));
    // Every report was applied: the data holds each producer's last value.
    const answer = await engine.get(cb.token);
    for (let p = 0; p < 8; p++) expect(answer.data[`p${p}`]).toBe(324);
    await engine.close();
  });
});
