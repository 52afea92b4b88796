import { afterEach, describe, expect, it } from 'vitest';
import {
  createSimulatedClock,
  type CallbackEngine,
  type EngineEvent,
  type SimulatedClock,
} from '../src/index.js';
import { DurableFixture, report, turn } from './helpers/durable.js';

const MIN = 60_000;

const fx = new DurableFixture();
afterEach(() => fx.cleanup());

/** Step runs per status and callback, across every engine of a test. */
type Counts = Map<string, number>;

/** An engine on `path` whose `timeout` and `orphan` steps count their runs by callbackId. */
function engineOn(path: string, clock: SimulatedClock, runs: Counts, events?: EngineEvent[]) {
  const count = (status: string) => (cb: { id: string }) => {
    const key = `${status}:${cb.id}`;
    runs.set(key, (runs.get(key) ?? 0) + 1);
  };
  const engine = fx.open(path, {
    clock,
    ...(events && { inspect: (e: EngineEvent) => void events.push(e) }),
  });
  engine.anchor('job', { next: { timeout: count('timeout'), orphan: count('orphan') } });
  return engine;
}

/** Lets the scheduler's due timer run and the group commit that follows land. */
async function settle(clock: SimulatedClock, ms = 0): Promise<void> {
  clock.advance(ms);
  await turn();
  await turn();
}

async function statusOf(engine: CallbackEngine, token: string): Promise<string> {
  return (await engine.get(token)).status;
}

describe('deadlines from the SQLite store (issue 10 items 6-7)', () => {
  it('a deadline that passed while the engine was down fires once, right after ready()', async () => {
    const path = fx.db();
    const clock = createSimulatedClock();
    const runs: Counts = new Map();
    let engine = engineOn(path, clock, runs);
    await engine.ready();
    const cb = await engine.create('job', { timeout: 'PT10M', data: { a: 1 } });
    const other = await engine.create('job', { timeout: 'PT1H' });
    await engine.close();

    clock.advance(20 * MIN); // down while the deadline passes
    const events: EngineEvent[] = [];
    engine = engineOn(path, clock, runs, events);
    await engine.ready();
    await settle(clock);
    expect(await engine.get(cb.token)).toMatchObject({
      status: 'timeout',
      data: { a: 1, reason: 'deadline' },
    });
    expect(runs.get(`timeout:${cb.id}`)).toBe(1);
    expect(events.filter((e) => e.type === 'timedOut')).toHaveLength(1);
    expect(await statusOf(engine, other.token)).toBe('create');
    expect(engine.stats()).toMatchObject({ timedOut: 1, byStatus: { timeout: 1, create: 1 } });

    // Never again: neither later on this engine nor after the next restart.
    await settle(clock, 5 * MIN);
    await engine.close();
    engine = engineOn(path, clock, runs);
    await engine.ready();
    await settle(clock);
    expect(await statusOf(engine, cb.token)).toBe('timeout');
    expect(runs.get(`timeout:${cb.id}`)).toBe(1);
    expect(engine.stats().byStatus.timeout).toBe(1);
  });

  it('a heartbeat window that passed while down times the callback out once (reason heartbeat)', async () => {
    const path = fx.db();
    const clock = createSimulatedClock();
    const runs: Counts = new Map();
    let engine = engineOn(path, clock, runs);
    const cb = await engine.create('job', { timeout: false, heartbeat: 'PT5M' });
    clock.advance(2 * MIN);
    await engine.dispatch(report(cb.token, 'progress', { p: 1 }));
    await engine.close();

    clock.advance(30 * MIN);
    engine = engineOn(path, clock, runs);
    await engine.ready();
    await settle(clock);
    expect(await engine.get(cb.token)).toMatchObject({
      status: 'timeout',
      data: { p: 1, reason: 'heartbeat' },
    });
    expect(runs.get(`timeout:${cb.id}`)).toBe(1);
    await settle(clock, 10 * MIN);
    expect(runs.get(`timeout:${cb.id}`)).toBe(1);
    expect(engine.stats().timedOut).toBe(1);
  });

  it('a heartbeat extended by a report before the restart fires at its absolute instant after it', async () => {
    const path = fx.db();
    const clock = createSimulatedClock();
    const t0 = clock.now();
    const runs: Counts = new Map();
    let engine = engineOn(path, clock, runs);
    const cb = await engine.create('job', { timeout: false, heartbeat: 'PT5M' });
    clock.advance(4 * MIN);
    await engine.dispatch(report(cb.token, 'progress')); // heartbeat now due at t0 + 9 min
    await engine.close();

    clock.advance(3 * MIN); // t0 + 7 min: the first window (t0 + 5 min) passed, the second has not
    engine = engineOn(path, clock, runs);
    await engine.ready();
    await settle(clock);
    expect(await statusOf(engine, cb.token)).toBe('progress');
    await settle(clock, t0 + 9 * MIN - 1 - clock.now());
    expect(await statusOf(engine, cb.token)).toBe('progress');
    await settle(clock, 1);
    expect(await statusOf(engine, cb.token)).toBe('timeout');
    expect(runs.get(`timeout:${cb.id}`)).toBe(1);
  });

  it('a deadline still in the future after the restart fires at its absolute instant, not earlier, not later', async () => {
    const path = fx.db();
    const clock = createSimulatedClock();
    const t0 = clock.now();
    const runs: Counts = new Map();
    let engine = engineOn(path, clock, runs);
    const cb = await engine.create('job', { timeout: 'PT10M' });
    const later = await engine.create('job', { timeout: 'PT30M' });
    clock.advance(3 * MIN);
    await engine.close();

    clock.advance(2 * MIN); // t0 + 5 min
    engine = engineOn(path, clock, runs);
    await engine.ready();
    await settle(clock);
    expect(await statusOf(engine, cb.token)).toBe('create');
    // A fresh PT10M from the restart would fire at t0 + 15 min; the stored one is t0 + 10 min.
    await settle(clock, t0 + 10 * MIN - 1 - clock.now());
    expect(await statusOf(engine, cb.token)).toBe('create');
    await settle(clock, 1);
    expect(await statusOf(engine, cb.token)).toBe('timeout');
    expect(await statusOf(engine, later.token)).toBe('create');
    await settle(clock, t0 + 30 * MIN - 1 - clock.now());
    expect(await statusOf(engine, later.token)).toBe('create');
    await settle(clock, 1);
    expect(await statusOf(engine, later.token)).toBe('timeout');
    expect(runs.get(`timeout:${cb.id}`)).toBe(1);
    expect(runs.get(`timeout:${later.id}`)).toBe(1);
  });

  it('a retained record is removed after its remaining retention, not a fresh full one', async () => {
    const path = fx.db();
    const clock = createSimulatedClock();
    const runs: Counts = new Map();
    let engine = engineOn(path, clock, runs);
    const cb = await engine.create('job', { retention: 'PT1H', data: { kept: true } });
    await engine.dispatch(report(cb.token, 'complete'));
    const t0 = clock.now(); // became inactive: removed at t0 + 1 h
    clock.advance(40 * MIN);
    await engine.close();

    clock.advance(10 * MIN); // t0 + 50 min
    engine = engineOn(path, clock, runs);
    await engine.ready();
    await settle(clock);
    expect(await engine.get(cb.token)).toMatchObject({ status: 'complete', data: { kept: true } });
    await settle(clock, t0 + 60 * MIN - 1 - clock.now());
    expect(await statusOf(engine, cb.token)).toBe('complete');
    expect(engine.stats().retained).toBe(1);
    await settle(clock, 1);
    expect(await statusOf(engine, cb.token)).toBe('notFound');
    expect((await engine.deliver(report(cb.token, 'complete'))).outcome).toBe('notFound');
    expect(engine.stats()).toMatchObject({ retained: 0, evicted: 1, byStatus: { complete: 0 } });

    // The removal was committed: the next engine does not bring it back.
    await engine.close();
    engine = engineOn(path, clock, runs);
    await engine.ready();
    expect(await statusOf(engine, cb.token)).toBe('notFound');
    expect(engine.stats().retained).toBe(0);
  });

  it('a retention that ended while the engine was down removes the record right after ready()', async () => {
    const path = fx.db();
    const clock = createSimulatedClock();
    const runs: Counts = new Map();
    let engine = engineOn(path, clock, runs);
    const gone = await engine.create('job', { retention: 'PT1H' });
    const kept = await engine.create('job', { retention: 'PT3H' });
    await engine.dispatch(report(gone.token, 'complete'));
    await engine.dispatch(report(kept.token, 'complete'));
    await engine.close();

    clock.advance(2 * 60 * MIN);
    engine = engineOn(path, clock, runs);
    await engine.ready();
    await settle(clock);
    expect(await statusOf(engine, gone.token)).toBe('notFound');
    expect(await statusOf(engine, kept.token)).toBe('complete');
    expect(engine.stats()).toMatchObject({ retained: 1, byStatus: { complete: 1 } });
    expect((await engine.list()).items.map((c) => c.id)).toEqual([kept.id]);
  });

  it('retention: true keeps a record forever, across restarts', async () => {
    const path = fx.db();
    const clock = createSimulatedClock();
    const runs: Counts = new Map();
    let engine = engineOn(path, clock, runs);
    const cb = await engine.create('job', { retention: true, data: { forever: 1 } });
    await engine.dispatch(report(cb.token, 'error', { message: 'no' }));
    await engine.close();

    clock.advance(10 * 365 * 24 * 60 * MIN);
    engine = engineOn(path, clock, runs);
    await engine.ready();
    await settle(clock);
    await settle(clock, 365 * 24 * 60 * MIN);
    expect(await engine.get(cb.token)).toMatchObject({
      status: 'error',
      data: { forever: 1, message: 'no' },
    });
    expect(engine.stats().retained).toBe(1);
  });

  it('fires deadlines and heartbeats at their instant in durable mode without a restart', async () => {
    const path = fx.db();
    const clock = createSimulatedClock();
    const t0 = clock.now();
    const runs: Counts = new Map();
    const engine = engineOn(path, clock, runs);
    await engine.ready();
    const byMinute = [];
    for (let m = 1; m <= 5; m++) byMinute.push(await engine.create('job', { timeout: `PT${m}M` }));
    const beat = await engine.create('job', { timeout: false, heartbeat: 'PT2M' });
    const parent = await engine.create('job', { timeout: 'PT7M' });
    const child = await engine.create('job', { timeout: false, parentToken: parent.token });

    for (let m = 1; m <= 5; m++) {
      await settle(clock, t0 + m * MIN - 1 - clock.now());
      expect(await statusOf(engine, byMinute[m - 1]!.token)).toBe('create');
      if (m === 5) expect(await statusOf(engine, beat.token)).toBe('progress');
      await settle(clock, 1);
      const statuses = await Promise.all(byMinute.map((cb) => statusOf(engine, cb.token)));
      expect(statuses.filter((s) => s === 'timeout')).toHaveLength(m);
      expect(statuses[m - 1]).toBe('timeout');
      // Keep the heartbeat callback alive with a report every minute until minute 3.
      if (m <= 3) await engine.dispatch(report(beat.token, 'progress'));
    }
    // Last report at t0 + 3 min: the heartbeat fires at t0 + 5 min exactly.
    expect(await statusOf(engine, beat.token)).toBe('timeout');
    expect((await engine.get(beat.token)).data.reason).toBe('heartbeat');
    await settle(clock, t0 + 7 * MIN - clock.now());
    expect(await statusOf(engine, parent.token)).toBe('timeout');
    expect(await statusOf(engine, child.token)).toBe('orphan');
    for (const cb of [...byMinute, beat, parent]) expect(runs.get(`timeout:${cb.id}`)).toBe(1);
    expect(runs.get(`orphan:${child.id}`)).toBe(1);
    expect(engine.stats()).toMatchObject({ timedOut: 7, orphaned: 1 });
  });
  it('a report that reaches an overdue callback before its timer ran is not applied: it times out first', async () => {
    const path = fx.db();
    const clock = createSimulatedClock();
    const runs: Counts = new Map();
    let engine = engineOn(path, clock, runs);
    await engine.ready();
    const cb = await engine.create('job', { timeout: 'PT1M' });
    await engine.close();

    clock.advance(2 * MIN);
    engine = engineOn(path, clock, runs);
    // Sent before recovery is done: it waits for ready(), then meets a callback whose deadline passed.
    const early = engine.deliver(report(cb.token, 'complete', { late: true }));
    await engine.ready();
    const r = await early;
    expect(r.answer.status).toBe('timeout');
    expect(r.outcome).toBe('conflict');
    expect(r.answer.data).not.toHaveProperty('late');
    await settle(clock);
    expect(runs.get(`timeout:${cb.id}`)).toBe(1);
    expect(await statusOf(engine, cb.token)).toBe('timeout');
  });
});
