import { spawnSync } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { workerStep, type CallbackEngine, type PoolOptions } from '../src/index.js';
import { openGate, type GateControl } from './fixtures/steps/gate.js';
import { makeEngine, report } from './helpers/engine.js';
import { FAULTS, GATE, SCORE } from './helpers/steps.js';

let engine: CallbackEngine;
let gate: GateControl;
afterEach(async () => {
  gate.close();
  await engine.close();
});

function setup(pool: PoolOptions): void {
  ({ engine } = makeEngine({ pool }));
  gate = openGate();
  engine.anchor('thrower', { next: { progress: workerStep(FAULTS, 'fail') } });
  engine.anchor('exiter', { next: { progress: workerStep(FAULTS, 'exit') } });
  engine.anchor('lateThrower', { next: { progress: workerStep(FAULTS, 'throwLater') } });
  engine.anchor('unclonable', { next: { progress: workerStep(FAULTS, 'unclonable') } });
  engine.anchor('holder', { next: { progress: workerStep(GATE, 'hold') } });
  engine.anchor('where', { next: { create: workerStep(SCORE, 'whereAmI') } });
  engine.anchor('scorer', { next: { progress: workerStep(SCORE, 'score') } });
}

/** The thread a fresh callback's create step runs on. */
async function threadOfNextStep(): Promise<number> {
  const cb = await engine.create('where', { timeout: false });
  return cb.data.threadId as number;
}

describe('faults in worker steps (spec 6)', () => {
  it('a step that throws in the worker moves its callback to error with the message; the pool keeps serving', async () => {
    setup({ minThreads: 1, maxThreads: 1 });
    const cb = await engine.create('thrower', { timeout: false });
    const answer = await engine.dispatch(
      report(cb.token, 'progress', { message: 'score service said no' }),
    );
    expect(answer.status).toBe('error');
    expect(answer.data.message).toBe('score service said no');
    const before = await threadOfNextStep();
    // A thrown error is an ordinary task failure: the thread is not replaced.
    expect(await threadOfNextStep()).toBe(before);
  });

  it.each([
    ['process.exit in the thread', 'exiter', { code: 3 }, 'worker exited with code: 3'],
    [
      'an uncaught asynchronous error in the thread',
      'lateThrower',
      { message: 'async boom' },
      'async boom',
    ],
  ])(
    '%s fails only that step; the thread is replaced and other callbacks carry on',
    async (_name, anchor, data, message) => {
      setup({ minThreads: 2, maxThreads: 2 });
      // b holds one thread for the whole test...
      const b = await engine.create('holder', { timeout: false });
      const rb = engine.dispatch(report(b.token, 'progress', { channel: gate.channel, key: 'b' }));
      await gate.waitStarted('b');
      // ...so every other step runs on the other thread.
      const doomed = await threadOfNextStep();
      expect(doomed).not.toBe(gate.threadOf.get('b'));

      const cb = await engine.create(anchor, { timeout: false });
      const crashed = await engine.dispatch(report(cb.token, 'progress', data));
      expect(crashed.status).toBe('error');
      expect(crashed.data.message).toBe(message);

      const replacement = await threadOfNextStep();
      expect([doomed, gate.threadOf.get('b')]).not.toContain(replacement);
      // The callback on the surviving thread was not disturbed.
      gate.release('b');
      const held = await rb;
      expect(held.status).toBe('progress');
      expect(held.data.releasedKey).toBe('b');
      expect((await engine.get(cb.token)).status).toBe('error');
    },
  );

  it('a result structured clone cannot copy fails that step with a clear message; the thread survives', async () => {
    setup({ minThreads: 1, maxThreads: 1 });
    const before = await threadOfNextStep();
    const cb = await engine.create('unclonable', { timeout: false });
    const answer = await engine.dispatch(report(cb.token, 'progress'));
    expect(answer.status).toBe('error');
    expect(answer.data.message).toMatch(
      /^worker step "unclonable" of .*faults\.ts returned a value that cannot be sent back: .*could not be cloned/,
    );
    expect(await threadOfNextStep()).toBe(before);
  });

  it.each([
    ['an abort', 'holder'],
    ['a crash', 'exiter'],
  ])(
    'with minThreads 0, a task queued behind %s still runs (the pool starts a thread for it)',
    async (_name, anchor) => {
      setup({ minThreads: 0, maxThreads: 1 });
      const a = await engine.create(anchor, { timeout: false });
      const ra = engine.dispatch(
        report(a.token, 'progress', { channel: gate.channel, key: 'a', code: 1 }),
      );
      if (anchor === 'holder') await gate.waitStarted('a');
      const q = await engine.create('scorer', { timeout: false });
      const rq = engine.dispatch(report(q.token, 'progress', { value: 5 }));
      if (anchor === 'holder') await engine.cancel(a.token);
      expect((await ra).status).toBe(anchor === 'holder' ? 'cancel' : 'error');
      const queued = await rq;
      expect(queued.status).toBe('progress');
      expect(queued.data.score).toBe(10);
    },
    10_000,
  );

  it.each([0, 1])(
    'threads that cannot start fail the step with the reason instead of leaving it queued (minThreads %i)',
    (minThreads) => {
      setup({}); // unused here; keeps afterEach uniform
      // Node refuses to start worker threads in a process run with --input-type (they inherit
      // it): a real way for every thread of the pool to fail while starting.
      const index = JSON.stringify(new URL('../src/index.ts', import.meta.url).href);
      const script = `
        import { createCallbackEngine, workerStep } from ${index};
        const engine = createCallbackEngine({ secrets: ['bootstrap-test-secret-0123456789'], pool: { minThreads: ${minThreads} } });
        engine.anchor('job', { next: { progress: workerStep(${JSON.stringify(SCORE.href)}, 'score') } });
        const cb = await engine.create('job', { timeout: false });
        const answer = await engine.dispatch({ type: 'CALLBACK', callbackToken: cb.token, callbackStatus: 'progress' });
        console.log(JSON.stringify({ status: answer.status, message: answer.data.message }));
        await engine.close();
      `;
      const child = spawnSync(
        process.execPath,
        ['--import', 'tsx', '--input-type=module', '-e', script],
        {
          cwd: new URL('../', import.meta.url),
          encoding: 'utf8',
          timeout: 25_000,
        },
      );
      expect(child.status).toBe(0);
      const answer = JSON.parse(child.stdout) as { status: string; message: string };
      expect(answer.status).toBe('error');
      expect(answer.message).toMatch(/--input-type can only be used/);
    },
  );
});
