import { describe, expect, it } from 'vitest';
import { createSimulatedClock } from '../src/clock.js';
import { DeadlineQueue } from '../src/timers/deadline-queue.js';

describe('deadline queue', () => {
  it('fires every deadline at its instant, in order, on one clock timer', () => {
    const clock = createSimulatedClock(0);
    const q = new DeadlineQueue<() => void>(
      clock,
      (fn) => fn(),
      (e) => {
        throw e;
      },
    );
    const fired: [number, number][] = [];
    const ats = Array.from({ length: 2000 }, (_, i) => ((i * 7919) % 1000) + 1);
    ats.forEach((at, i) => q.schedule(at, () => fired.push([clock.now(), i])));
    expect(clock.pending).toBe(1);
    clock.advance(1000);
    expect(fired).toHaveLength(2000);
    for (const [now, i] of fired) expect(now).toBe(ats[i]);
    const order = fired.map(([now]) => now);
    expect(order).toEqual([...order].sort((a, b) => a - b));
    expect(q.size).toBe(0);
    expect(clock.pending).toBe(0);
  });

  it('cancels entries anywhere in the heap, including the head', () => {
    const clock = createSimulatedClock(0);
    const q = new DeadlineQueue<() => void>(
      clock,
      (fn) => fn(),
      () => {},
    );
    const fired: number[] = [];
    const entries = Array.from({ length: 100 }, (_, i) =>
      q.schedule(i + 1, () => fired.push(i + 1)),
    );
    for (const e of entries) if (e.at % 3 === 0 || e.at === 1) q.cancel(e);
    q.cancel(entries[5]); // twice is a no-op
    clock.advance(100);
    expect(fired).toEqual(entries.map((e) => e.at).filter((at) => at % 3 !== 0 && at !== 1));
  });

  it('runs deadlines scheduled while firing and survives a throwing callback', () => {
    const clock = createSimulatedClock(0);
    const errors: unknown[] = [];
    const q = new DeadlineQueue<() => void>(
      clock,
      (fn) => fn(),
      (e) => errors.push(e),
    );
    const fired: string[] = [];
    q.schedule(10, () => {
      fired.push('a');
      q.schedule(10, () => fired.push('same-instant'));
      q.schedule(20, () => fired.push('later'));
      throw new Error('boom');
    });
    clock.advance(10);
    expect(fired).toEqual(['a', 'same-instant']);
    expect(errors).toHaveLength(1);
    clock.advance(10);
    expect(fired).toEqual(['a', 'same-instant', 'later']);
  });

  it('re-arms for waits longer than setTimeout allows, and close() stops everything', () => {
    const clock = createSimulatedClock(0);
    const q = new DeadlineQueue<() => void>(
      clock,
      (fn) => fn(),
      () => {},
    );
    let fired = false;
    const far = 40 * 86_400_000; // past 2^31-1 ms
    q.schedule(far, () => (fired = true));
    clock.advance(2 ** 31 - 1);
    expect(fired).toBe(false);
    clock.advance(far);
    expect(fired).toBe(true);
    q.schedule(far * 3, () => {});
    q.close();
    expect(q.size).toBe(0);
    expect(clock.pending).toBe(0);
  });
});
