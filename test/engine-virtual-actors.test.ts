import { afterEach, describe, expect, it } from 'vitest';
import type { CallbackEngine, SimulatedClock } from '../src/index.js';
import { makeEngine, report } from './helpers/engine.js';

let engine: CallbackEngine;
let clock: SimulatedClock;
afterEach(() => engine.close());

describe('virtual actors (spec 12)', () => {
  it('creating a callback starts no actor; the first report activates one', async () => {
    ({ engine } = makeEngine());
    engine.anchor('job');
    const cbs = await Promise.all(Array.from({ length: 100 }, () => engine.create('job')));
    expect(engine.stats()).toMatchObject({ active: 100, liveActors: 0, activations: 0 });
    await engine.dispatch(report(cbs[0]!.token, 'start'));
    expect(engine.stats()).toMatchObject({ liveActors: 1, activations: 1 });
  });

  it('keeps at most maxLiveActors live; passivated callbacks lose nothing and resume in order', async () => {
    ({ engine } = makeEngine({ maxLiveActors: 8 }));
    const seen = new Map<string, number[]>();
    engine.anchor('job', {
      next: {
        progress: (cb) => {
          const list = seen.get(cb.id) ?? [];
          list.push(cb.report.n as number);
          seen.set(cb.id, list);
          return { last: cb.report.n };
        },
      },
    });
    const cbs = await Promise.all(Array.from({ length: 200 }, () => engine.create('job')));
    const R = 20;
    const all: Promise<unknown>[] = [];
    for (let n = 0; n < R; n++) {
      for (const cb of cbs)
        all.push(engine.dispatch(report(cb.token, 'progress', { n, [`k${n}`]: n })));
    }
    await Promise.all(all);
    const stats = engine.stats();
    expect(stats.liveActors).toBeLessThanOrEqual(8);
    expect(stats.passivations).toBeGreaterThan(1000);
    for (const cb of cbs) {
      expect(seen.get(cb.id)).toEqual(Array.from({ length: R }, (_, n) => n));
      const { status, data } = await engine.get(cb.token);
      expect(status).toBe('progress');
      expect(data.last).toBe(R - 1);
      for (let n = 0; n < R; n++) expect(data[`k${n}`]).toBe(n);
    }
    // A forward-only rule still holds after reactivation: a passivated 'progress' ignores 'accept'.
    expect((await engine.deliver(report(cbs[0]!.token, 'accept'))).outcome).toBe('ignored');
  });

  it('never passivates an actor in the middle of a step', async () => {
    ({ engine } = makeEngine({ maxLiveActors: 1 }));
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    engine.anchor('job', {
      next: {
        progress: async (cb) =>
          cb.report.slow ? (await gate, { slowDone: true }) : { fast: true },
      },
    });
    const slow = await engine.create('job');
    const other = await engine.create('job');
    const pSlow = engine.dispatch(report(slow.token, 'progress', { slow: true }));
    const pSlow2 = engine.dispatch(report(slow.token, 'progress', { again: 1 }));
    await engine.dispatch(report(other.token, 'progress', {}));
    release();
    expect((await pSlow).data).toMatchObject({ slow: true, slowDone: true });
    expect((await pSlow2).data).toMatchObject({ slowDone: true, again: 1, fast: true });
    // The evicted actor is stopped when its mailbox drains, just after it answered.
    await new Promise((r) => setImmediate(r));
    expect(engine.stats().liveActors).toBeLessThanOrEqual(1);
  });

  it('timers of passivated callbacks still fire on time', async () => {
    ({ engine, clock } = makeEngine({ maxLiveActors: 2 }));
    engine.anchor('job');
    const cbs = [];
    for (let i = 0; i < 50; i++) {
      const cb = await engine.create('job', { timeout: `PT${i + 1}S` });
      await engine.dispatch(report(cb.token, 'start'));
      cbs.push(cb);
    }
    expect(engine.stats().liveActors).toBeLessThanOrEqual(2);
    for (let i = 0; i < 50; i++) {
      clock.advance(1000);
      expect((await engine.wait(cbs[i]!.token)).status).toBe('timeout');
      if (i + 1 < 50) expect((await engine.get(cbs[i + 1]!.token)).status).toBe('start');
    }
    expect(engine.stats().timedOut).toBe(50);
  });

  it('validates maxLiveActors', async () => {
    const { createCallbackEngine } = await import('../src/index.js');
    expect(() =>
      createCallbackEngine({ secrets: ['0123456789abcdef0'], maxLiveActors: 0 }),
    ).toThrow(/options\.maxLiveActors must be a positive integer/);
    ({ engine } = makeEngine());
  });
});

describe('XState inspection API', () => {
  it('an attached inspector sees actor, event and snapshot events of callback actors', async () => {
    ({ engine } = makeEngine());
    engine.anchor('job');
    const cb = await engine.create('job');
    await engine.dispatch(report(cb.token, 'accept')); // live before attaching: passivated by inspect()
    const seen: { type: string; event?: { type: string }; sessionId?: string }[] = [];
    const detach = engine.inspect({ next: (e) => seen.push(e) });
    expect(engine.stats().liveActors).toBe(0);
    await engine.dispatch(report(cb.token, 'start', { a: 1 }));
    expect(seen.some((e) => e.type === '@xstate.actor')).toBe(true);
    expect(seen.some((e) => e.type === '@xstate.event' && e.event?.type === 'START')).toBe(true);
    const snaps = seen.filter((e) => e.type === '@xstate.snapshot') as unknown as {
      snapshot: { value: unknown };
    }[];
    expect(snaps.at(-1)!.snapshot.value).toEqual({ active: 'start' });
    detach();
    const fn: string[] = [];
    engine.inspect((e) => fn.push(e.type));
    const other = await engine.create('job');
    await engine.dispatch(report(other.token, 'progress'));
    expect(fn).toContain('@xstate.event');
    expect(() => engine.inspect(42 as never)).toThrow(
      /inspector must be a function or an observer/,
    );
  });
});
