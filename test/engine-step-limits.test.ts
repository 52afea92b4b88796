import { afterEach, describe, expect, it } from 'vitest';
import {
  EngineClosedError,
  StepTimeoutError,
  workerStep,
  type CallbackAnswer,
  type CallbackEngine,
  type EngineEvent,
  type SimulatedClock,
  type StepInput,
} from '../src/index.js';
import { openGate } from './fixtures/steps/gate.js';
import { flush, makeEngine, report } from './helpers/engine.js';
import { GATE } from './helpers/steps.js';

/** A step that never settles and ignores its abort signal; `inputs` collects what it was given. */
function hangingStep(inputs: StepInput[] = []): (input: StepInput) => Promise<never> {
  return (input) => {
    inputs.push(input);
    return new Promise<never>(() => undefined);
  };
}

/** Tracks a promise's outcome without awaiting it. */
function track<T>(promise: Promise<T>): { value?: T; error?: unknown; settled: boolean } {
  const state: { value?: T; error?: unknown; settled: boolean } = { settled: false };
  promise.then(
    (value) => Object.assign(state, { value, settled: true }),
    (error: unknown) => Object.assign(state, { error, settled: true }),
  );
  return state;
}

async function settle(times = 5): Promise<void> {
  for (let i = 0; i < times; i++) await flush();
}

let engine: CallbackEngine | undefined;
let clock: SimulatedClock | undefined;
afterEach(async () => {
  const closing = engine?.close();
  // Steps left hanging on purpose: let closeTimeout pass.
  clock?.advance(3_600_000);
  engine = clock = undefined;
  await closing;
});

describe('stepTimeout (issue 11, finding 4)', () => {
  it('fails a step that never settles after stepTimeout: signal aborted, callback in error, the mailbox moves on', async () => {
    const made = makeEngine({ stepTimeout: 'PT30S' });
    engine = made.engine;
    clock = made.clock;
    const sim = made.clock;
    const inputs: StepInput[] = [];
    let release: ((v: Record<string, unknown>) => void) | undefined;
    const errors: string[] = [];
    const events: EngineEvent[] = [];
    engine.subscribe((e) => events.push(e));
    engine.anchor('job', {
      next: {
        progress: (input) => {
          inputs.push(input);
          return new Promise((resolve) => (release = resolve));
        },
        error: (cb) => void errors.push(String(cb.data.message)),
      },
    });
    const cb = await engine.create('job', { timeout: false });
    const first = track(engine.dispatch(report(cb.token, 'progress', { n: 1 })));
    const second = track(engine.dispatch(report(cb.token, 'progress', { n: 2 })));
    await settle();
    expect(first.settled).toBe(false);
    sim.advance(29_999);
    await settle();
    expect(first.settled).toBe(false);
    sim.advance(1);
    await settle();
    const message = 'the "progress" step did not settle within PT30S';
    expect(first.value).toMatchObject({ status: 'error', data: { message } });
    expect(inputs[0]!.signal.aborted).toBe(true);
    expect(inputs[0]!.signal.reason).toBeInstanceOf(StepTimeoutError);
    expect(inputs[0]!.signal.reason).toMatchObject({ code: 'CBE_ERR_STEP_TIMEOUT', message });
    // The queued report reached a terminal callback: answered with its status at once.
    expect(second.value).toMatchObject({ status: 'error' });
    expect(errors).toEqual([message]);
    expect(engine.stats().stepFailures).toBe(1);
    expect(events.find((e) => e.type === 'stepFailed')).toMatchObject({ message });
    // A late settle of the timed-out step is ignored.
    release!({ late: true });
    await settle();
    const now = await engine.get(cb.token);
    expect(now.data.late).toBeUndefined();
    expect(now.stepError).toEqual({ status: 'progress', message });
  });

  it('arms no timer for a step that returns synchronously', async () => {
    const made = makeEngine({ stepTimeout: 'PT1S' });
    engine = made.engine;
    clock = made.clock;
    engine.anchor('job', { next: { progress: () => ({ ok: true }) } });
    const cb = await engine.create('job', { timeout: false });
    const before = made.clock.pending;
    await engine.dispatch(report(cb.token, 'progress'));
    expect(made.clock.pending).toBe(before);
  });

  it('an anchor overrides it; false disables it', async () => {
    const made = makeEngine({ stepTimeout: 'PT1H' });
    engine = made.engine;
    clock = made.clock;
    engine.anchor('short', { stepTimeout: 'PT1S', next: { progress: hangingStep() } });
    engine.anchor('never', { stepTimeout: false, next: { progress: hangingStep() } });
    const a = await engine.create('short', { timeout: false });
    const b = await engine.create('never', { timeout: false });
    const ra = track(engine.dispatch(report(a.token, 'progress')));
    const rb = track(engine.dispatch(report(b.token, 'progress')));
    made.clock.advance(1_000);
    await settle();
    expect(ra.value?.status).toBe('error');
    made.clock.advance(7 * 24 * 3600_000);
    await settle();
    expect(rb.settled).toBe(false);
  });

  it('cancel answers at once while a step hangs ignoring its abort; the hung report and wait() get cancel', async () => {
    const made = makeEngine({ stepTimeout: false });
    engine = made.engine;
    clock = made.clock;
    const inputs: StepInput[] = [];
    const ran: string[] = [];
    engine.anchor('job', {
      next: { progress: hangingStep(inputs), cancel: () => void ran.push('cancel') },
    });
    const cb = await engine.create('job', { timeout: false });
    const hung = track(engine.dispatch(report(cb.token, 'progress')));
    const queued = track(engine.dispatch(report(cb.token, 'progress', { q: 1 })));
    const waited = track(engine.wait(cb.token));
    await settle();
    const cancelled = track(engine.cancel(cb.token, { by: 'user' }));
    await settle();
    expect(cancelled.value).toMatchObject({ status: 'cancel', data: { by: 'user' } });
    expect(hung.value?.status).toBe('cancel');
    expect(queued.value?.status).toBe('cancel');
    expect(waited.value?.status).toBe('cancel');
    expect(ran).toEqual(['cancel']);
    expect(inputs[0]!.signal.aborted).toBe(true);
  });

  it('the deadline and the heartbeat fire while a step hangs; wait() resolves with timeout', async () => {
    const made = makeEngine({ stepTimeout: false });
    engine = made.engine;
    clock = made.clock;
    engine.anchor('job', { next: { progress: hangingStep() } });
    const a = await engine.create('job', { timeout: 'PT10S' });
    const b = await engine.create('job', { timeout: false, heartbeat: 'PT5S' });
    const ra = track(engine.dispatch(report(a.token, 'progress')));
    const rb = track(engine.dispatch(report(b.token, 'progress')));
    const wa = track(engine.wait(a.token));
    const wb = track(engine.wait(b.token));
    made.clock.advance(10_000);
    await settle();
    expect(ra.value?.status).toBe('timeout');
    expect(rb.value?.status).toBe('timeout');
    expect((wa.value as CallbackAnswer).data).toMatchObject({ reason: 'deadline' });
    expect((wb.value as CallbackAnswer).data).toMatchObject({ reason: 'heartbeat' });
  });

  it('a child whose step hangs is orphaned at once when its parent ends', async () => {
    const made = makeEngine({ stepTimeout: false });
    engine = made.engine;
    clock = made.clock;
    engine.anchor('parent');
    engine.anchor('child', { next: { progress: hangingStep() } });
    const parent = await engine.create('parent', { timeout: false });
    const child = await engine.create('child', { timeout: false, parentToken: parent.token });
    const hung = track(engine.dispatch(report(child.token, 'progress')));
    const waited = track(engine.wait(child.token));
    await settle();
    await engine.dispatch(report(parent.token, 'complete'));
    await settle();
    expect(hung.value?.status).toBe('orphan');
    expect(waited.value?.status).toBe('orphan');
  });

  it('a worker step past stepTimeout is aborted on the pool (its thread ends) and the callback goes to error', async () => {
    const made = makeEngine({ stepTimeout: 'PT2S', pool: { minThreads: 1, maxThreads: 1 } });
    engine = made.engine;
    clock = made.clock;
    const gate = openGate();
    try {
      engine.anchor('spinner', { next: { progress: workerStep(GATE, 'spin') } });
      engine.anchor('holder', { next: { progress: workerStep(GATE, 'hold') } });
      const cb = await engine.create('spinner', { timeout: false });
      const answer = track(
        engine.dispatch(report(cb.token, 'progress', { channel: gate.channel, key: 's' })),
      );
      await gate.waitStarted('s');
      made.clock.advance(2_000);
      await settle();
      expect(answer.value).toMatchObject({
        status: 'error',
        data: { message: 'the "progress" step did not settle within PT2S' },
      });
      // The only thread was spinning: the pool serves again only if the abort ended it.
      const other = await engine.create('holder', { timeout: false });
      const held = engine.dispatch(
        report(other.token, 'progress', { channel: gate.channel, key: 'h' }),
      );
      await gate.waitStarted('h');
      gate.release('h');
      expect((await held).data.releasedKey).toBe('h');
    } finally {
      gate.close();
    }
  });
});

describe('closeTimeout and close() (issue 11 finding 4, issue 10 item 10)', () => {
  it('a step that ignores its abort is let run for closeTimeout, then cut off: its report, waiters and a create behind it reject with EngineClosedError (memory store)', async () => {
    const made = makeEngine({ stepTimeout: false, closeTimeout: 'PT10S' });
    const e = made.engine;
    const inputs: StepInput[] = [];
    e.anchor('job', { next: { progress: hangingStep(inputs) } });
    e.anchor('slow', { next: { create: hangingStep() } });
    const cb = await e.create('job', { timeout: false });
    const hung = track(e.dispatch(report(cb.token, 'progress')));
    const waited = track(e.wait(cb.token));
    const creating = track(e.create('slow', { timeout: false }));
    await settle();
    const closing = track(e.close());
    await settle();
    // Running steps may finish within closeTimeout: not aborted yet.
    expect(inputs[0]!.signal.aborted).toBe(false);
    expect(closing.settled).toBe(false);
    expect(waited.settled).toBe(false);
    made.clock.advance(9_999);
    await settle();
    expect(closing.settled).toBe(false);
    made.clock.advance(1);
    await settle();
    expect(inputs[0]!.signal.aborted).toBe(true);
    expect(closing.settled).toBe(true);
    expect(closing.error).toBeUndefined();
    expect(hung.error).toBeInstanceOf(EngineClosedError);
    expect(waited.error).toBeInstanceOf(EngineClosedError);
    expect(creating.error).toBeInstanceOf(EngineClosedError);
  });

  it('close() is idempotent: a second call returns the same promise, which waits like the first', async () => {
    const made = makeEngine({ stepTimeout: false, closeTimeout: 'PT1S' });
    const e = made.engine;
    e.anchor('job', { next: { progress: hangingStep() } });
    const cb = await e.create('job', { timeout: false });
    void e.dispatch(report(cb.token, 'progress')).catch(() => undefined);
    await settle();
    const first = e.close();
    const second = e.close();
    expect(second).toBe(first);
    const state = track(second);
    await settle();
    expect(state.settled).toBe(false);
    made.clock.advance(1_000);
    await settle();
    expect(state.settled).toBe(true);
  });

  it('a waiter is still answered when the terminal step in flight finishes within closeTimeout', async () => {
    const made = makeEngine({ closeTimeout: 'PT10S' });
    const e = made.engine;
    let finish: (() => void) | undefined;
    e.anchor('job', {
      next: { complete: () => new Promise<undefined>((r) => (finish = () => r(undefined))) },
    });
    const cb = await e.create('job', { timeout: false });
    const done = track(e.dispatch(report(cb.token, 'complete')));
    const waited = track(e.wait(cb.token));
    await settle();
    const closing = e.close();
    finish!();
    await closing;
    expect(done.value?.status).toBe('complete');
    expect(waited.value?.status).toBe('complete');
  });

  it("'drain' mode: a worker step spinning forever does not keep close() open past closeTimeout", async () => {
    const made = makeEngine({
      stepTimeout: false,
      closeTimeout: 'PT5S',
      pool: { minThreads: 1, maxThreads: 1, close: 'drain' },
    });
    const e = made.engine;
    const gate = openGate();
    try {
      e.anchor('spinner', { next: { progress: workerStep(GATE, 'spin') } });
      const cb = await e.create('spinner', { timeout: false });
      const answer = track(
        e.dispatch(report(cb.token, 'progress', { channel: gate.channel, key: 'x' })),
      );
      await gate.waitStarted('x');
      const closing = track(e.close());
      await settle();
      expect(closing.settled).toBe(false);
      made.clock.advance(5_000);
      await e.close();
      await settle();
      expect(answer.error).toBeInstanceOf(EngineClosedError);
    } finally {
      gate.close();
    }
  });
});
