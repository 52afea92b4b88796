import { getHeapStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterEach, describe, expect, it } from 'vitest';
import type { CallbackEngine, SimulatedClock } from '../src/index.js';
import { makeEngine, report } from './helpers/engine.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/** Heap in use after several full collections (weak refs and finalizers need more than one). */
async function heapUsed(): Promise<number> {
  for (let i = 0; i < 4; i++) {
    gc();
    await new Promise((r) => setImmediate(r));
  }
  return getHeapStatistics().used_heap_size;
}

let engine: CallbackEngine;
let clock: SimulatedClock;
afterEach(() => engine.close());

/**
 * Creates and completes `n` callbacks in chunks. Returns weak references to the final data of
 * every `sample`-th one (the object the retained record holds), to see whether records are freed.
 */
async function createAndComplete(
  e: CallbackEngine,
  n: number,
  sample = 0,
): Promise<WeakRef<object>[]> {
  const refs: WeakRef<object>[] = [];
  const chunk = 500;
  for (let done = 0; done < n; done += chunk) {
    await Promise.all(
      Array.from({ length: Math.min(chunk, n - done) }, async (_, k) => {
        const i = done + k;
        const cb = await e.create('job', { data: { i } });
        const end = await e.dispatch(report(cb.token, 'complete', { ok: true }));
        if (sample > 0 && i % sample === 0) refs.push(new WeakRef(end.data));
      }),
    );
  }
  return refs;
}

const alive = (refs: readonly WeakRef<object>[]) =>
  refs.filter((r) => r.deref() !== undefined).length;

const KB = 1024;

describe('memory regressions of the memory store (issue 10 item 10)', () => {
  it('a finished callback holds no actor: liveActors is 0 after 5,000 complete', async () => {
    ({ engine, clock } = makeEngine());
    // Every kind of ending, with and without steps (async ones keep the mailbox busy at finalize).
    engine.anchor('job', {
      next: {
        progress: async () => ({ p: 1 }),
        complete: async () => {
          await new Promise((r) => setImmediate(r));
          return { finished: true };
        },
      },
    });
    const N = 5000;
    for (let done = 0; done < N; done += 500) {
      await Promise.all(
        Array.from({ length: 500 }, async (_, k) => {
          const cb = await engine.create('job', { data: { i: done + k } });
          await engine.dispatch(report(cb.token, 'progress'));
          const kind = k % 4;
          if (kind === 0) await engine.dispatch(report(cb.token, 'complete'));
          else if (kind === 1) await engine.dispatch(report(cb.token, 'error', { message: 'x' }));
          else if (kind === 2) await engine.cancel(cb.token);
          else {
            // A report queued behind the terminal one, answered after the callback finished.
            const [end, late] = await Promise.all([
              engine.dispatch(report(cb.token, 'complete')),
              engine.dispatch(report(cb.token, 'progress')),
            ]);
            expect(end.status).toBe('complete');
            expect(late.status).toBe('complete');
          }
        }),
      );
    }
    const s = engine.stats();
    expect(s.active).toBe(0);
    expect(s.retained).toBe(N);
    expect(s.liveActors).toBe(0);
    expect(s.activations).toBeGreaterThanOrEqual(N);
  });

  it('finished actors do not push active ones out of the live set', async () => {
    ({ engine, clock } = makeEngine({ maxLiveActors: 100 }));
    engine.anchor('job');
    const hot = await Promise.all(Array.from({ length: 50 }, () => engine.create('job')));
    for (const cb of hot) await engine.dispatch(report(cb.token, 'start'));
    expect(engine.stats().liveActors).toBe(50);
    const passivationsBefore = engine.stats().passivations;
    await createAndComplete(engine, 1000);
    // The 50 active actors are still live: the 1,000 finished ones never took their place.
    expect(engine.stats()).toMatchObject({ liveActors: 50, active: 50 });
    expect(engine.stats().passivations).toBe(passivationsBefore);
  });

  it('holds at most 1.375 KB of heap per retained callback (history included), and nothing once retention passed', async () => {
    ({ engine, clock } = makeEngine({ retention: 'PT1H' }));
    engine.anchor('job');
    // Warm up code paths and caches so the baseline is not inflated by one-time allocations.
    await createAndComplete(engine, 500);
    clock.advance(3_600_000);
    const N = 10_000;
    const baseline = await heapUsed();
    const refs = await createAndComplete(engine, N, 50);
    expect(engine.stats()).toMatchObject({ retained: N, liveActors: 0, active: 0 });
    const retainedHeap = (await heapUsed()) - baseline;
    // About 1 KB of record, plus its history (two entries, packed into one JSON text at retirement).
    expect(retainedHeap / N).toBeLessThanOrEqual(1.375 * KB);
    // Sanity: the measure sees the records at all.
    expect(retainedHeap / N).toBeGreaterThan(50);
    expect(alive(refs)).toBe(refs.length);

    clock.advance(3_600_000);
    expect(engine.stats()).toMatchObject({ retained: 0, evicted: 500 + N });
    const leftover = (await heapUsed()) - baseline;
    // Every record is garbage; what is left is index capacity, a fraction of what records took.
    expect(alive(refs)).toBe(0);
    expect(leftover).toBeLessThan(retainedHeap / 4);
  });

  it('maxRetained bounds memory: records evicted by the bound are garbage at once', async () => {
    ({ engine, clock } = makeEngine({ retention: 'PT1H', maxRetained: 1000 }));
    engine.anchor('job');
    await createAndComplete(engine, 500);
    clock.advance(3_600_000);
    const N = 20_000;
    const baseline = await heapUsed();
    const refs = await createAndComplete(engine, N, 100);
    expect(engine.stats().retained).toBeLessThanOrEqual(1000);
    expect(engine.stats().evicted).toBeGreaterThanOrEqual(500 + N - 1000);
    const grown = (await heapUsed()) - baseline;
    // Within retention, only the bound removed records, and they are freed: at most the last
    // 1,000 callbacks (10 samples) are still reachable.
    expect(alive(refs)).toBeLessThanOrEqual(10);
    // 1,000 retained records at <= 1 KB each, plus slack; 20,000 kept alive would cost ~10x more.
    expect(grown).toBeLessThan(2 * 1000 * KB);
    expect(grown / N).toBeLessThan(100);
  });
});
