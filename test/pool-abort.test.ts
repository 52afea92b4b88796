import { afterEach, describe, expect, it } from 'vitest';
import {
  workerStep,
  type CallbackEngine,
  type EngineEvent,
  type SimulatedClock,
} from '../src/index.js';
import { openGate, type GateControl } from './fixtures/steps/gate.js';
import { makeEngine, report } from './helpers/engine.js';
import { GATE, SCORE } from './helpers/steps.js';

let engine: CallbackEngine;
let clock: SimulatedClock;
let gate: GateControl;
let events: EngineEvent[];

afterEach(async () => {
  gate.close();
  await engine.close();
});

/** One thread only: if an aborted task kept its thread, no later step could ever run. */
function setup(): void {
  ({ engine, clock } = makeEngine({ pool: { minThreads: 1, maxThreads: 1 } }));
  gate = openGate();
  events = [];
  engine.subscribe((e) => events.push(e));
  engine.anchor('spinner', { next: { progress: workerStep(GATE, 'spin') } });
  engine.anchor('holder', { next: { progress: workerStep(GATE, 'hold') } });
  engine.anchor('scorer', { next: { progress: workerStep(SCORE, 'score') } });
}

/** A worker step of another callback completes: the single thread is free again. */
async function expectPoolServes(): Promise<void> {
  const other = await engine.create('scorer', { timeout: false });
  const answer = await engine.dispatch(report(other.token, 'progress', { value: 3 }));
  expect(answer.data.score).toBe(6);
}

describe('cancel and timeout abort worker steps (spec 6)', () => {
  it('cancel fires the signal, terminates the running task, and the callback stays cancelled', async () => {
    setup();
    const cb = await engine.create('spinner', { timeout: false });
    const running = engine.dispatch(
      report(cb.token, 'progress', { channel: gate.channel, key: 'spin' }),
    );
    await gate.waitStarted('spin');

    const cancelled = await engine.cancel(cb.token, { by: 'caller' });
    expect(cancelled.status).toBe('cancel');
    // The report whose step was running is answered with the status after handling.
    expect((await running).status).toBe('cancel');
    // A step preempted by cancel is aborted, not failed: no stepFailed, nothing counted.
    expect(events.some((e) => e.type === 'stepFailed')).toBe(false);
    expect(engine.stats().stepFailures).toBe(0);
    await expectPoolServes();
    const after = await engine.get(cb.token);
    expect(after.status).toBe('cancel');
    expect(after.data).toEqual({ channel: gate.channel, key: 'spin', by: 'caller' });
  });

  it('a timeout (simulated clock) aborts the running task and the callback stays timed out', async () => {
    setup();
    const cb = await engine.create('spinner', { timeout: 'PT1M' });
    const running = engine.dispatch(
      report(cb.token, 'progress', { channel: gate.channel, key: 'spin' }),
    );
    await gate.waitStarted('spin');

    clock.advance(59_999);
    expect((await engine.get(cb.token)).status).toBe('progress');
    clock.advance(1);
    expect((await running).status).toBe('timeout');
    // A step preempted by timeout is aborted, not failed: no stepFailed, nothing counted.
    expect(events.some((e) => e.type === 'stepFailed')).toBe(false);
    expect(engine.stats().stepFailures).toBe(0);
    await expectPoolServes();
    const after = await engine.get(cb.token);
    expect(after.status).toBe('timeout');
    expect(after.data.reason).toBe('deadline');
    expect(after.data.message).toBeUndefined();
  });

  it('cancelling a callback whose task is still queued removes the task: it never runs', async () => {
    setup();
    const a = await engine.create('holder', { timeout: false });
    const b = await engine.create('holder', { timeout: false });
    const c = await engine.create('holder', { timeout: false });
    const ra = engine.dispatch(report(a.token, 'progress', { channel: gate.channel, key: 'a' }));
    await gate.waitStarted('a');
    // The only thread is busy with a: b's and c's tasks wait in the pool queue, b first.
    const rb = engine.dispatch(report(b.token, 'progress', { channel: gate.channel, key: 'b' }));
    const rc = engine.dispatch(report(c.token, 'progress', { channel: gate.channel, key: 'c' }));

    expect((await engine.cancel(b.token)).status).toBe('cancel');
    expect((await rb).status).toBe('cancel');
    gate.release('a');
    expect((await ra).status).toBe('progress');
    await gate.waitStarted('c');
    gate.release('c');
    expect((await rc).data.releasedKey).toBe('c');
    // FIFO: had b's task stayed queued, it would have started before c.
    expect(gate.started).toEqual(['a', 'c']);
    expect((await engine.get(b.token)).status).toBe('cancel');
  });
});
