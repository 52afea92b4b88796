import { afterEach, describe, expect, it } from 'vitest';
import { createSimulatedClock, type CallbackEngine, type SimulatedClock } from '../src/index.js';
import { DurableFixture, report } from './helpers/durable.js';

const fx = new DurableFixture();
afterEach(() => fx.cleanup());

const CALLBACKS = 200;
const REPORTS_PER_CALLBACK = 30;
const PRODUCERS = 64;
const MAX_LIVE_ACTORS = 16;

/** A small deterministic PRNG (mulberry32), so a failure can be replayed. */
function prng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** An engine whose `progress` step records the key each report carries, per callback. */
function engineOn(path: string, clock: SimulatedClock, stepOrder: Map<string, string[]>) {
  const engine = fx.open(
    path,
    { clock, maxLiveActors: MAX_LIVE_ACTORS },
    { synchronous: 'normal' },
  );
  engine.anchor('job', {
    next: {
      progress: async (cb) => {
        const key = cb.report.key as string;
        let seen = stepOrder.get(cb.id);
        if (!seen) stepOrder.set(cb.id, (seen = []));
        seen.push(key);
        // Every third step yields, so mailboxes are busy while other reports queue up.
        if (key.endsWith('0') || key.endsWith('3') || key.endsWith('6'))
          await new Promise((r) => setImmediate(r));
      },
    },
  });
  return engine;
}

describe('concurrent producers on the SQLite store (issue 10 items 3, 4, 6)', () => {
  it('loses no acknowledged report, keeps per-callback order, group-commits, and bounds live actors', async () => {
    const path = fx.db();
    const clock = createSimulatedClock();
    const stepOrder = new Map<string, string[]>();
    let engine: CallbackEngine = engineOn(path, clock, stepOrder);
    await engine.ready();
    const created = await Promise.all(
      Array.from({ length: CALLBACKS }, (_, i) =>
        engine.create('job', { timeout: false, data: { i } }),
      ),
    );

    // Every report once, in a random order, shared by the producers.
    const work: { cb: number; n: number }[] = [];
    for (let cb = 0; cb < CALLBACKS; cb++)
      for (let n = 0; n < REPORTS_PER_CALLBACK; n++) work.push({ cb, n });
    const random = prng(10);
    for (let i = work.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      [work[i], work[j]] = [work[j]!, work[i]!];
    }
    const arrival = new Map<string, string[]>();
    const acked = new Map<string, Set<string>>();
    let failures = 0;
    let maxLive = 0;
    const commitsBefore = engine.stats().commits;
    let next = 0;
    const producer = async () => {
      while (next < work.length) {
        const { cb, n } = work[next++]!;
        const { id, token } = created[cb]!;
        const key = `k${cb}-${n}`;
        let arrived = arrival.get(id);
        if (!arrived) arrival.set(id, (arrived = []));
        arrived.push(key); // dispatch() enqueues synchronously: this is the arrival order
        try {
          const answer = await engine.dispatch(report(token, 'progress', { key, [key]: n }));
          expect(answer.status).toBe('progress');
          expect(answer.data[key]).toBe(n);
          let keys = acked.get(id);
          if (!keys) acked.set(id, (keys = new Set()));
          keys.add(key);
        } catch {
          failures++;
        }
        maxLive = Math.max(maxLive, engine.stats().liveActors);
      }
    };
    await Promise.all(Array.from({ length: PRODUCERS }, producer));

    const total = CALLBACKS * REPORTS_PER_CALLBACK;
    const ackedCount = [...acked.values()].reduce((n, s) => n + s.size, 0);
    expect(failures).toBe(0);
    expect(ackedCount).toBe(total);

    const check = async (e: CallbackEngine, status: string) => {
      let found = 0;
      for (const { id, token } of created) {
        const got = await e.get(token);
        expect(got.status).toBe(status);
        for (const key of acked.get(id) ?? []) if (key in got.data) found++;
      }
      expect(found).toBe(ackedCount);
    };
    await check(engine, 'progress');
    // Each callback's steps ran in arrival order, each report exactly once.
    for (const { id } of created) expect(stepOrder.get(id)).toEqual(arrival.get(id));

    const s = engine.stats();
    const commits = s.commits - commitsBefore;
    expect(commits).toBeGreaterThan(0);
    expect(commits).toBeLessThan(total / 4); // group commit: never a transaction per report
    expect(s.rowsWritten).toBeGreaterThanOrEqual(CALLBACKS);
    // Callbacks were passivated and read back cold.
    expect(s.passivations).toBeGreaterThan(0);
    expect(s.activations).toBeGreaterThan(CALLBACKS);
    expect(maxLive).toBeLessThanOrEqual(MAX_LIVE_ACTORS + PRODUCERS);
    expect(s.liveActors).toBeLessThanOrEqual(MAX_LIVE_ACTORS);

    // The same from the file, after a restart.
    await engine.close();
    const replayed = new Map<string, string[]>();
    engine = engineOn(path, clock, replayed);
    await engine.ready();
    await check(engine, 'progress');
    expect(replayed.size).toBe(0); // recovery runs no step again
    expect(engine.stats().byStatus.progress).toBe(CALLBACKS);

    // Everything terminal: no actor is left.
    const ends = await Promise.all(
      created.map(({ token }, i) =>
        i % 2 === 0
          ? engine.dispatch(report(token, 'complete', { done: true }))
          : engine.cancel(token),
      ),
    );
    expect(ends.filter((a) => a.status === 'complete')).toHaveLength(CALLBACKS / 2);
    expect(ends.filter((a) => a.status === 'cancel')).toHaveLength(CALLBACKS / 2);
    await new Promise((r) => setImmediate(r));
    expect(engine.stats()).toMatchObject({ liveActors: 0, active: 0, retained: CALLBACKS });

    // And the terminal states are on file with every acknowledged key.
    await engine.close();
    engine = engineOn(path, clock, replayed);
    await engine.ready();
    let found = 0;
    for (const [i, { id, token }] of created.entries()) {
      const got = await engine.get(token);
      expect(got.status).toBe(i % 2 === 0 ? 'complete' : 'cancel');
      for (const key of acked.get(id) ?? []) if (key in got.data) found++;
    }
    expect(found).toBe(ackedCount);
    expect(engine.stats()).toMatchObject({ liveActors: 0, active: 0, retained: CALLBACKS });
  });
});
