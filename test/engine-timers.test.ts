import { afterEach, describe, expect, it } from 'vitest';
import type { CallbackEngine, EngineEvent, SimulatedClock } from '../src/index.js';
import { flush, makeEngine, report } from './helpers/engine.js';

let engine: CallbackEngine;
let clock: SimulatedClock;
afterEach(() => engine.close());

describe('timeouts and heartbeats (spec 5)', () => {
  it('times out at the deadline exactly, through the injected clock, and resumes the anchor', async () => {
    const events: EngineEvent[] = [];
    ({ engine, clock } = makeEngine({ inspect: (e) => events.push(e) }));
    const ran: string[] = [];
    engine.anchor('job', {
      next: { timeout: (cb) => void ran.push(`${cb.status}:${String(cb.data.reason)}`) },
    });
    const cb = await engine.create('job', { timeout: 'PT10M' });
    clock.advance(10 * 60_000 - 1);
    expect((await engine.get(cb.token)).status).toBe('create');
    clock.advance(1);
    const final = await engine.wait(cb.token);
    expect(final.status).toBe('timeout');
    expect(final.data).toEqual({ reason: 'deadline' });
    expect(ran).toEqual(['timeout:deadline']);
    expect(events.find((e) => e.type === 'timedOut')).toMatchObject({
      id: cb.id,
      reason: 'deadline',
      at: clock.now(),
    });
    expect((await engine.dispatch(report(cb.token, 'complete'))).status).toBe('timeout');
  });

  it('uses the anchor default, then the engine default (PT1H), and timeout: false means never', async () => {
    ({ engine, clock } = makeEngine());
    engine.anchor('fast', { timeout: 'PT0.5S' });
    engine.anchor('plain');
    const fast = await engine.create('fast');
    const plain = await engine.create('plain');
    const never = await engine.create('plain', { timeout: false });
    clock.advance(500);
    await flush();
    expect((await engine.get(fast.token)).status).toBe('timeout');
    expect((await engine.get(plain.token)).status).toBe('create');
    clock.advance(3_600_000);
    await flush();
    expect((await engine.get(plain.token)).status).toBe('timeout');
    clock.advance(365 * 86_400_000);
    await flush();
    expect((await engine.get(never.token)).status).toBe('create');
  });

  it('accepts an absolute date as the deadline', async () => {
    ({ engine, clock } = makeEngine());
    engine.anchor('job');
    const at = new Date(clock.now() + 1234).toISOString();
    const cb = await engine.create('job', { timeout: at });
    clock.advance(1233);
    expect((await engine.get(cb.token)).status).toBe('create');
    clock.advance(1);
    expect((await engine.wait(cb.token)).status).toBe('timeout');
  });

  it('a heartbeat window restarts with every report and times out with reason heartbeat', async () => {
    ({ engine, clock } = makeEngine());
    engine.anchor('job', { heartbeat: 'PT30S' });
    const cb = await engine.create('job');
    for (let i = 0; i < 5; i++) {
      clock.advance(29_000);
      await engine.dispatch(report(cb.token, 'progress', { i }));
    }
    expect((await engine.get(cb.token)).status).toBe('progress');
    clock.advance(29_999);
    expect((await engine.get(cb.token)).status).toBe('progress');
    clock.advance(1);
    const final = await engine.wait(cb.token);
    expect(final.status).toBe('timeout');
    expect(final.data.reason).toBe('heartbeat');
  });

  it('a terminal callback stops its timers', async () => {
    ({ engine, clock } = makeEngine());
    engine.anchor('job');
    const cb = await engine.create('job', { timeout: 'PT1M', heartbeat: 'PT10S' });
    await engine.dispatch(report(cb.token, 'complete'));
    clock.advance(3_600_000 - 1); // just inside the default retention
    expect((await engine.get(cb.token)).status).toBe('complete');
    expect(engine.stats().timedOut).toBe(0);
  });

  it('timeout aborts a running step, keeps the terminal status and discards the stale output', async () => {
    ({ engine, clock } = makeEngine());
    let aborted: unknown;
    engine.anchor('job', {
      next: {
        progress: (cb) =>
          new Promise((resolve) => {
            cb.signal.addEventListener('abort', () => {
              aborted = cb.signal.reason;
              resolve({ late: true });
            });
          }),
      },
    });
    const cb = await engine.create('job', { timeout: 'PT1S' });
    const pending = engine.dispatch(report(cb.token, 'progress', { p: 1 }));
    const queued = engine.dispatch(report(cb.token, 'progress', { p: 2 }));
    clock.advance(1000);
    expect((await pending).status).toBe('timeout');
    expect((await queued).status).toBe('timeout');
    expect((aborted as Error).message).toMatch(/ended with status "timeout"/);
    expect((await engine.get(cb.token)).data).toEqual({ p: 1, reason: 'deadline' });
  });

  it('refuses bad durations with the option name and value', async () => {
    ({ engine, clock } = makeEngine());
    engine.anchor('job');
    await expect(engine.create('job', { timeout: '1 hour' })).rejects.toThrow(
      /options\.timeout must be an ISO 8601 duration .*"1 hour"/,
    );
    await expect(engine.create('job', { heartbeat: 'PT0S' })).rejects.toThrow(
      /options\.heartbeat must be longer than zero/,
    );
    await expect(engine.create('job', { retention: 'forever' as never })).rejects.toMatchObject({
      code: 'CBE_ERR_INVALID_ARGUMENT',
    });
    await expect(engine.create('job', { timeout: '2001-01-01T00:00:00Z' })).rejects.toThrow(
      /in the past/,
    );
  });
});
