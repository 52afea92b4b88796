import { afterEach, describe, expect, it } from 'vitest';
import { createMonitor, type Monitor } from '../src/observe/monitor.js';
import type { CallbackEngine, SimulatedClock } from '../src/index.js';
import { makeEngine, report } from './helpers/engine.js';

let engine: CallbackEngine;
let clock: SimulatedClock;
let monitor: Monitor;
afterEach(async () => {
  monitor.close();
  await engine.close();
});

describe('monitor: the live view behind the dashboard', () => {
  it('publishes counts per state, throughput per second, latency percentiles and recent transitions', async () => {
    ({ engine, clock } = makeEngine());
    monitor = createMonitor(engine, { clock, tickMs: 0, windowSeconds: 5 });
    engine.anchor('job');
    const views: number[] = [];
    monitor.subscribe((v) => views.push(v.counts.progress));
    const cbs = await Promise.all(Array.from({ length: 10 }, () => engine.create('job')));
    for (const cb of cbs.slice(0, 6)) await engine.dispatch(report(cb.token, 'progress'));
    for (let i = 1; i <= 100; i++) monitor.recordLatency(i);
    clock.advance(1000);
    for (const cb of cbs.slice(0, 2)) await engine.dispatch(report(cb.token, 'complete'));
    const view = monitor.tick();
    expect(view.counts).toMatchObject({ create: 4, progress: 4, complete: 2 });
    expect(view.throughput).toEqual([0, 0, 0, 6, 2]);
    expect(view.latencyP50.at(-2)).toBe(51);
    expect(view.latencyP99.at(-2)).toBe(100);
    expect(view.recent[0]).toMatchObject({ from: 'progress', to: 'complete', id: cbs[1]!.id });
    expect(view.recent).toHaveLength(8);
    expect(views).toEqual([4]);
    expect(monitor.view()).toBe(view);
  });

  it('keeps a bounded history per callback, found by token or id', async () => {
    ({ engine, clock } = makeEngine());
    monitor = createMonitor(engine, { clock, tickMs: 0, eventsPerCallback: 4 });
    engine.anchor('job');
    const cb = await engine.create('job');
    await engine.dispatch(report(cb.token, 'start'));
    const h = await monitor.history(cb.token);
    expect(h).toMatchObject({ id: cb.id, token: cb.token, status: 'start' });
    expect(h!.events.map((e) => e.type)).toEqual(['created', 'dispatched', 'transitioned']);
    for (let i = 0; i < 5; i++) await engine.dispatch(report(cb.token, 'progress'));
    expect((await monitor.history(cb.id))!.events).toHaveLength(4);
    expect(await monitor.history('unknown')).toBeUndefined();
  });

  it('ticks on the clock until closed', async () => {
    ({ engine, clock } = makeEngine());
    monitor = createMonitor(engine, { clock, tickMs: 250 });
    let published = 0;
    monitor.subscribe(() => published++);
    clock.advance(1000);
    expect(published).toBe(4);
    monitor.close();
    clock.advance(1000);
    expect(published).toBe(4);
    expect(clock.pending).toBe(0);
  });
});
