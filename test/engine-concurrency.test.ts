import { afterEach, describe, expect, it } from 'vitest';
import type { CallbackEngine } from '../src/index.js';
import { makeEngine, report } from './helpers/engine.js';

let engine: CallbackEngine;
afterEach(() => engine.close());

/** A step that yields to the event loop, so reports really do pile up and race. */
const yieldNow = () => new Promise<void>((resolve) => setImmediate(resolve));

describe('serialized mailbox under concurrency (spec 1)', () => {
  it('10,000 concurrent progress reports to one callback: every key kept, the step ran 10,000 times in arrival order, never overlapping', async () => {
    ({ engine } = makeEngine());
    const order: number[] = [];
    let running = 0;
    let maxRunning = 0;
    engine.anchor('job', {
      next: {
        progress: async (cb) => {
          running++;
          maxRunning = Math.max(maxRunning, running);
          // `report` is this report's own data: reading it does not build the 10,000-key object.
          if ((cb.report.seq as number) % 100 === 0) await yieldNow();
          order.push(cb.report.seq as number);
          running--;
        },
      },
    });
    const cb = await engine.create('job');
    const N = 10_000;
    const answers = await Promise.all(
      Array.from({ length: N }, (_, i) =>
        engine.dispatch(report(cb.token, 'progress', { seq: i, [`k${i}`]: i })),
      ),
    );
    expect(order).toEqual(Array.from({ length: N }, (_, i) => i));
    expect(maxRunning).toBe(1);
    const final = await engine.get(cb.token);
    for (let i = 0; i < N; i++) expect(final.data[`k${i}`]).toBe(i);
    expect(Object.keys(final.data)).toHaveLength(N + 1);
    // Each answer is the state right after its own report: it already holds its own key, not later ones.
    expect(answers[4_999]!.data.seq).toBe(4_999);
    expect(answers[4_999]!.data.k5000).toBeUndefined();
    expect(answers.every((a) => a.status === 'progress')).toBe(true);
  });

  it('1,000 callbacks x 100 reports interleaved: nothing lost or reordered, callbacks proceed concurrently', async () => {
    ({ engine } = makeEngine());
    const C = 1_000;
    const R = 100;
    const seen = new Map<string, number[]>();
    let inFlight = 0;
    let maxInFlight = 0;
    engine.anchor('job', {
      next: {
        progress: async (cb) => {
          inFlight++;
          maxInFlight = Math.max(maxInFlight, inFlight);
          await Promise.resolve();
          let list = seen.get(cb.id);
          if (!list) seen.set(cb.id, (list = []));
          list.push(cb.report.n as number);
          inFlight--;
          return { last: cb.report.n };
        },
      },
    });
    const cbs = await Promise.all(
      Array.from({ length: C }, (_, i) => engine.create('job', { data: { i } })),
    );
    const pending: Promise<unknown>[] = [];
    for (let n = 0; n < R; n++) {
      for (const cb of cbs)
        pending.push(engine.dispatch(report(cb.token, 'progress', { n, [`r${n}`]: true })));
    }
    await Promise.all(pending);
    expect(maxInFlight).toBeGreaterThan(1);
    const expected = Array.from({ length: R }, (_, n) => n);
    for (const cb of cbs) {
      expect(seen.get(cb.id)).toEqual(expected);
      const { data } = await engine.get(cb.token);
      expect(data.last).toBe(R - 1);
      for (let n = 0; n < R; n++) expect(data[`r${n}`]).toBe(true);
    }
    expect(engine.stats().byStatus.progress).toBe(C);
    expect(engine.stats().dispatched).toBe(C * R);
  });

  it('racing terminal reports: exactly one wins, the rest learn the winner', async () => {
    ({ engine } = makeEngine());
    let completes = 0;
    engine.anchor('job', {
      next: { complete: () => void completes++, error: () => void completes++ },
    });
    const cbs = await Promise.all(Array.from({ length: 200 }, () => engine.create('job')));
    await Promise.all(
      cbs.flatMap((cb) => [
        engine.dispatch(report(cb.token, 'complete', { by: 'a' })),
        engine.dispatch(report(cb.token, 'error', { message: 'b' })),
        engine.dispatch(report(cb.token, 'complete', { by: 'c' })),
      ]),
    );
    expect(completes).toBe(200);
    for (const cb of cbs) {
      const a = await engine.get(cb.token);
      expect(a.status).toBe('complete');
      expect(a.data).toEqual({ by: 'a' });
    }
  });
});
