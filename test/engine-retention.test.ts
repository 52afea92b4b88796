import { afterEach, describe, expect, it } from 'vitest';
import type { CallbackEngine, EngineEvent, SimulatedClock } from '../src/index.js';
import { makeEngine, report } from './helpers/engine.js';

let engine: CallbackEngine;
let clock: SimulatedClock;
afterEach(() => engine.close());

describe('retention (spec 12)', () => {
  it('keeps an inactive record for its retention, then removes it; a later report answers notFound', async () => {
    const events: EngineEvent[] = [];
    ({ engine, clock } = makeEngine({ retention: 'PT1H', inspect: (e) => events.push(e) }));
    engine.anchor('job');
    const cb = await engine.create('job', { data: { a: 1 } });
    await engine.dispatch(report(cb.token, 'complete'));
    clock.advance(3_600_000 - 1);
    expect(await engine.get(cb.token)).toMatchObject({ status: 'complete', data: { a: 1 } });
    expect(engine.stats().retained).toBe(1);
    clock.advance(1);
    expect((await engine.dispatch(report(cb.token, 'complete'))).status).toBe('notFound');
    expect(await engine.exists(cb.token)).toBe('notFound');
    expect(engine.stats()).toMatchObject({ retained: 0, evicted: 1, byStatus: { complete: 0 } });
    expect(events.find((e) => e.type === 'evicted')).toMatchObject({
      id: cb.id,
      reason: 'retention',
    });
  });

  it('retention: true keeps records forever; per-anchor and per-create retention override', async () => {
    ({ engine, clock } = makeEngine());
    engine.anchor('forever', { retention: true });
    engine.anchor('short', { retention: 'PT1M' });
    const f = await engine.create('forever');
    const s = await engine.create('short');
    const custom = await engine.create('short', { retention: 'PT2M' });
    for (const cb of [f, s, custom]) await engine.dispatch(report(cb.token, 'complete'));
    clock.advance(60_000);
    expect((await engine.get(s.token)).status).toBe('notFound');
    expect((await engine.get(custom.token)).status).toBe('complete');
    clock.advance(10 * 365 * 86_400_000);
    expect((await engine.get(f.token)).status).toBe('complete');
    expect((await engine.get(custom.token)).status).toBe('notFound');
  });

  it('never evicts an active callback, whatever the memory bound; bounds only inactive ones', async () => {
    ({ engine, clock } = makeEngine({ maxRetained: 5 }));
    engine.anchor('job');
    const active = await Promise.all(
      Array.from({ length: 50 }, () => engine.create('job', { timeout: false })),
    );
    const ended = await Promise.all(Array.from({ length: 20 }, () => engine.create('job')));
    for (const cb of ended) await engine.dispatch(report(cb.token, 'complete'));
    clock.advance(59 * 60_000); // within retention: only the bound removes inactive records
    for (const cb of active) expect((await engine.get(cb.token)).status).toBe('create');
    expect(engine.stats().retained).toBe(5);
    expect((await engine.get(ended.at(-1)!.token)).status).toBe('complete');
    expect((await engine.get(ended[0]!.token)).status).toBe('notFound');
    expect(engine.stats().active).toBe(50);
  });

  it('an idempotency key returns the existing callback while it is retained, and a new one after', async () => {
    ({ engine, clock } = makeEngine({ retention: 'PT1M' }));
    let creates = 0;
    engine.anchor('job', { next: { create: async () => ({ n: ++creates }) } });
    const [a, b] = await Promise.all([
      engine.create('job', { idempotencyKey: 'order-7', data: { first: true } }),
      engine.create('job', { idempotencyKey: 'order-7', data: { second: true } }),
    ]);
    expect(b.id).toBe(a.id);
    expect(b.data).toEqual({ first: true, n: 1 });
    expect(creates).toBe(1);
    await engine.dispatch(report(a.token, 'complete'));
    expect((await engine.create('job', { idempotencyKey: 'order-7' })).status).toBe('complete');
    clock.advance(60_000);
    const c = await engine.create('job', { idempotencyKey: 'order-7' });
    expect(c.id).not.toBe(a.id);
    expect(c.status).toBe('create');
  });
});
