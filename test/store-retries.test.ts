/**
 * Step retries with a durable store (issue 13): the pending retry is stored with the callback
 * (row body and due-time index), so after a restart it runs at its instant with the next attempt
 * number, and reports sent meanwhile wait behind it. SQLite always; PostgreSQL when available.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  createSimulatedClock,
  EngineClosedError,
  type CallbackAnswer,
  type CallbackEngine,
  type SimulatedClock,
} from '../src/index.js';
import { decodeRecord } from '../src/registry/record-codec.js';
import {
  CALLBACK_SELECT,
  toStoredCallback,
  type CallbackSelectRow,
} from '../src/store/sqlite/store.js';
import { DurableFixture, report, turn } from './helpers/durable.js';
import { rejection } from './helpers/engine.js';
import { PgFixture, pgAvailable } from './helpers/postgres.js';
import { openDb } from './helpers/sqlite.js';

const MIN = 60_000;

/** Tries of the `start` step: [engine clock time, attempt]. */
type Tries = [number, number][];

/**
 * Registers anchor `job` on `engine`: its start step fails until try `okOn`, with waits of
 * 1 min, 2 min, 4 min...; its progress step records what it saw.
 */
function anchorJob(engine: CallbackEngine, clock: SimulatedClock, tries: Tries, okOn = 3): void {
  engine.anchor('job', {
    next: {
      start: (cb) => {
        tries.push([clock.now(), cb.attempt]);
        if (cb.attempt < okOn) throw new Error(`try ${cb.attempt} failed`);
        return { okOnTry: cb.attempt };
      },
      progress: (cb) => ({ progressSaw: cb.data.okOnTry ?? null }),
    },
    retry: { attempts: 5, backoff: 'PT1M', factor: 2 },
  });
}

/** Lets the scheduler's due timer run and the group commit that follows land. */
async function settle(clock: SimulatedClock, ms = 0): Promise<void> {
  clock.advance(ms);
  await turn();
  await turn();
}

/** Whether `p` has settled (after a turn). */
async function isSettled(p: Promise<unknown>): Promise<boolean> {
  let done = false;
  p.then(
    () => (done = true),
    () => (done = true),
  );
  await turn();
  return done;
}

describe('pending step retries in the SQLite store', () => {
  const fx = new DurableFixture();
  afterEach(() => fx.cleanup());

  /** The row's due time and the retry the callback owes, as the store holds them. */
  function row(
    path: string,
    id: string,
  ): { due: number | null; retry: Record<string, unknown> | undefined } {
    const db = openDb(path, { readOnly: true });
    try {
      const r = db.prepare(`${CALLBACK_SELECT} WHERE c.id = ?`).get(id) as CallbackSelectRow;
      const owed = decodeRecord(toStoredCallback(r)).record.owed;
      return {
        due: r.due_at,
        retry: owed && {
          status: owed.step,
          attempt: owed.attempt,
          at: owed.at,
          report: owed.report,
        },
      };
    } finally {
      db.close();
    }
  }

  it('survives a restart: runs at its instant with the next attempt; a report sent meanwhile waits behind it', async () => {
    const path = fx.db();
    const clock = createSimulatedClock();
    const t0 = clock.now();
    const tries: Tries = [];
    const open = () => {
      const engine = fx.open(path, { clock });
      anchorJob(engine, clock, tries);
      return engine;
    };

    let engine = open();
    const cb = await engine.create('job', { timeout: false, data: { order: 1 } });
    // Answered after the commit that stores the pending retry.
    const started = await engine.dispatch(report(cb.token, 'start', { s: 1 }));
    expect(started.status).toBe('start');
    expect(started.data).toEqual({ order: 1, s: 1 });
    expect(engine.stats().stepRetries).toBe(1);
    await engine.close();
    // The store holds the pending retry, and its instant is the row's due time.
    let stored = row(path, cb.id);
    expect(stored.retry).toEqual({
      status: 'start',
      attempt: 2,
      at: t0 + MIN,
      report: { s: 1 },
    });
    expect(stored.due).toBe(t0 + MIN);

    await settle(clock, 30_000); // down for 30 s
    engine = open();
    await engine.ready();
    await settle(clock);
    expect(tries).toEqual([[t0, 1]]);
    // A report arriving before the retry's instant waits for it.
    const progress = engine.dispatch(report(cb.token, 'progress', { p: 1 }));
    await settle(clock, t0 + MIN - 1 - clock.now());
    expect(tries).toHaveLength(1);
    expect(await isSettled(progress)).toBe(false);
    expect((await engine.get(cb.token)).data).toEqual({ order: 1, s: 1 });
    await settle(clock, 1);
    expect(tries).toEqual([
      [t0, 1],
      [t0 + MIN, 2],
    ]);
    expect(await isSettled(progress)).toBe(false); // try 3 is due at t0 + 3 min
    await settle(clock, 10_000);
    await engine.close();
    expect(await rejection(progress)).toBeInstanceOf(EngineClosedError); // unacknowledged
    stored = row(path, cb.id);
    expect(stored.retry).toMatchObject({ attempt: 3, at: t0 + 3 * MIN });
    expect(stored.due).toBe(t0 + 3 * MIN);

    // Down past the instant: the retry runs right after the restart, with no traffic.
    await settle(clock, t0 + 5 * MIN - clock.now());
    engine = open();
    await engine.ready();
    await settle(clock);
    expect(tries).toEqual([
      [t0, 1],
      [t0 + MIN, 2],
      [t0 + 5 * MIN, 3],
    ]);
    expect((await engine.get(cb.token)).data).toEqual({ order: 1, s: 1, okOnTry: 3 });
    const applied = await engine.dispatch(report(cb.token, 'progress', { p: 2 }));
    expect(applied.data).toEqual({ order: 1, s: 1, okOnTry: 3, p: 2, progressSaw: 3 });
    await engine.close();
    stored = row(path, cb.id);
    expect(stored.retry).toBeUndefined();
    expect(stored.due).toBeNull();
    // Nothing runs again after another restart.
    engine = open();
    await engine.ready();
    await settle(clock, 60 * MIN);
    expect(tries).toHaveLength(3);
  });

  it('without a restart, the store scheduler wakes each retry at its instant', async () => {
    const path = fx.db();
    const clock = createSimulatedClock();
    const t0 = clock.now();
    const tries: Tries = [];
    const engine = fx.open(path, { clock });
    anchorJob(engine, clock, tries);
    const cb = await engine.create('job', { timeout: false });
    await engine.dispatch(report(cb.token, 'start'));
    const later = engine.dispatch(report(cb.token, 'progress'));
    await settle(clock, MIN - 1);
    expect(tries).toHaveLength(1);
    await settle(clock, 1);
    await settle(clock, 2 * MIN);
    expect(tries).toEqual([
      [t0, 1],
      [t0 + MIN, 2],
      [t0 + 3 * MIN, 3],
    ]);
    expect((await later).data).toEqual({ okOnTry: 3, progressSaw: 3 });
    expect(engine.stats()).toMatchObject({ stepRetries: 2, stepFailures: 0 });
  });

  it('a terminal step is retried too (in memory: its row is final already)', async () => {
    const path = fx.db();
    const clock = createSimulatedClock();
    const tries: Tries = [];
    const engine = fx.open(path, { clock });
    engine.anchor('job', {
      next: {
        complete: (cb) => {
          tries.push([clock.now(), cb.attempt]);
          if (cb.attempt < 2) throw new Error('receipt service down');
          return { receipt: cb.attempt };
        },
      },
      retry: { complete: { attempts: 2, backoff: 'PT1M' } },
    });
    const cb = await engine.create('job');
    const waiting = engine.wait(cb.token);
    const t0 = clock.now();
    // Answered after the terminal row's commit, without waiting for the retry.
    expect((await engine.dispatch(report(cb.token, 'complete'))).status).toBe('complete');
    await settle(clock, MIN - 1);
    expect(tries).toHaveLength(1);
    await settle(clock, 1);
    expect(tries).toEqual([
      [t0, 1],
      [t0 + MIN, 2],
    ]);
    expect((await waiting).data).toEqual({ receipt: 2 });
    expect((await engine.get(cb.token)).stepError).toBeUndefined();
  });

  it('the last try after a restart fails as without retries: error, with the message', async () => {
    const path = fx.db();
    const clock = createSimulatedClock();
    const tries: Tries = [];
    const open = () => {
      const engine = fx.open(path, { clock });
      engine.anchor('job', {
        next: {
          start: (cb) => {
            tries.push([clock.now(), cb.attempt]);
            throw new Error(`try ${cb.attempt} failed`);
          },
        },
        retry: { attempts: 2, backoff: 'PT1M' },
      });
      return engine;
    };
    let engine = open();
    const cb = await engine.create('job', { timeout: false });
    await engine.dispatch(report(cb.token, 'start'));
    await engine.close();
    await settle(clock, 2 * MIN);
    engine = open();
    await engine.ready();
    const waiting = engine.wait(cb.token);
    await settle(clock); // the scheduler's timer for the overdue retry
    const final = await waiting;
    expect(final.status).toBe('error');
    expect(final.data).toEqual({ message: 'try 2 failed' });
    expect(final.stepError).toEqual({ status: 'start', message: 'try 2 failed' });
    expect(tries.map(([, a]) => a)).toEqual([1, 2]);
    expect(engine.stats()).toMatchObject({ stepFailures: 1, byStatus: { error: 1, start: 0 } });
  });

  it('a deadline that passed while down wins over the pending retry: timeout, no further try', async () => {
    const path = fx.db();
    const clock = createSimulatedClock();
    const tries: Tries = [];
    let engine = fx.open(path, { clock });
    anchorJob(engine, clock, tries);
    const cb = await engine.create('job', { timeout: 'PT3M' });
    await engine.dispatch(report(cb.token, 'start')); // retry due in 1 min, deadline in 3
    await engine.close();
    await settle(clock, 10 * MIN);
    engine = fx.open(path, { clock });
    anchorJob(engine, clock, tries);
    await engine.ready();
    await settle(clock);
    expect((await engine.get(cb.token)).status).toBe('timeout');
    await settle(clock, 60 * MIN);
    expect(tries).toHaveLength(1);
  });

  it('cancel after a restart stops the pending retry at once', async () => {
    const path = fx.db();
    const clock = createSimulatedClock();
    const tries: Tries = [];
    let engine = fx.open(path, { clock });
    anchorJob(engine, clock, tries);
    const cb = await engine.create('job', { timeout: false });
    await engine.dispatch(report(cb.token, 'start'));
    await engine.close();
    engine = fx.open(path, { clock });
    anchorJob(engine, clock, tries);
    await engine.ready();
    const queued = engine.dispatch(report(cb.token, 'progress'));
    expect((await engine.cancel(cb.token)).status).toBe('cancel');
    expect((await queued).status).toBe('cancel');
    await settle(clock, 30 * MIN);
    expect(tries).toHaveLength(1);
    await engine.close();
    expect(row(path, cb.id).retry).toBeUndefined();
  });
});

describe.skipIf(!pgAvailable)('pending step retries in the PostgreSQL store', () => {
  const fx = new PgFixture();
  beforeEach(() => {
    fx.fresh();
  });
  afterEach(() => fx.cleanup());
  const poll = { timeout: 10_000, interval: 20 };

  it('one engine closed and reopened on the same schema runs the pending retry at its instant, before a waiting report', async () => {
    const clock = createSimulatedClock();
    const t0 = clock.now();
    const tries: Tries = [];
    const open = async () => {
      const engine = fx.engine('solo', { nats: false, store: { shards: 4 }, engine: { clock } });
      anchorJob(engine, clock, tries, 2);
      await engine.ready();
      return engine;
    };
    let engine = await open();
    const cb = await engine.create('job', { timeout: false });
    expect((await engine.dispatch(report(cb.token, 'start', { s: 1 }))).status).toBe('start');
    await engine.close();
    const [stored] = await fx.sql<{ due: number; owed: boolean; entry: string }>(
      `SELECT c.due_at::float8 AS due, c.owed, j.entry FROM callbacks c
       JOIN journal j ON j.callback_id = c.id WHERE c.id = $1 ORDER BY j.seq DESC LIMIT 1`,
      [cb.id],
    );
    expect(stored!.due).toBe(t0 + MIN);
    expect(stored!.owed).toBe(true);
    // The newest entry: the failed try, owing the next one at its instant.
    expect(JSON.parse(stored!.entry)).toMatchObject({
      kind: 'stepFailed',
      owed: { step: 'start', attempt: 2, at: t0 + MIN },
    });

    engine = await open();
    const progress: Promise<CallbackAnswer> = engine.dispatch(report(cb.token, 'progress'));
    await new Promise((r) => setTimeout(r, 100));
    expect(tries).toHaveLength(1);
    expect(await isSettled(progress)).toBe(false);
    clock.advance(MIN);
    await vi.waitFor(
      () =>
        expect(tries).toEqual([
          [t0, 1],
          [t0 + MIN, 2],
        ]),
      poll,
    );
    const applied = await progress;
    expect(applied.data).toEqual({ s: 1, okOnTry: 2, progressSaw: 2 });
  });

  it("the shard's next owner runs a pending retry at its instant, with the next attempt", async () => {
    const clock = createSimulatedClock();
    const t0 = clock.now();
    const ran: [string, number, number][] = [];
    const open = async (node: 'a' | 'b') => {
      const engine = fx.engine(node, { nats: false, store: { shards: 4 }, engine: { clock } });
      engine.anchor('job', {
        next: {
          start: (cb) => {
            ran.push([node, clock.now(), cb.attempt]);
            if (cb.attempt < 2) throw new Error('flaky');
            return { okOnTry: cb.attempt, on: node };
          },
        },
        retry: { attempts: 3, backoff: 'PT1M' },
      });
      await engine.ready();
      return engine;
    };
    const a = await open('a');
    const b = await open('b');
    const cb = await a.create('job', { timeout: false });
    await a.dispatch(report(cb.token, 'start'));
    expect(ran).toEqual([['a', t0, 1]]);
    await a.close(); // hands its shards over
    await vi.waitFor(() => expect(b.stats().cluster?.shards).toBe(4), poll);
    await new Promise((r) => setTimeout(r, 100));
    expect(ran).toHaveLength(1); // not before its instant
    clock.advance(MIN);
    await vi.waitFor(
      () =>
        expect(ran).toEqual([
          ['a', t0, 1],
          ['b', t0 + MIN, 2],
        ]),
      poll,
    );
    await vi.waitFor(
      async () => expect((await b.get(cb.token)).data).toEqual({ okOnTry: 2, on: 'b' }),
      poll,
    );
  });
});
