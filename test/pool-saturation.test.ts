import { afterEach, describe, expect, it } from 'vitest';
import {
  PoolSaturatedError,
  workerStep,
  type CallbackAnswer,
  type CallbackEngine,
} from '../src/index.js';
import { openGate, type GateControl } from './fixtures/steps/gate.js';
import { flush, makeEngine, report } from './helpers/engine.js';
import { GATE, SCORE } from './helpers/steps.js';

let engine: CallbackEngine;
let gate: GateControl;
afterEach(async () => {
  gate.close();
  await engine.close();
});

describe('a full pool queue refuses dispatches (maxQueue)', () => {
  it('refuses worker-step reports with a retryable PoolSaturatedError before applying them; accepted ones are not lost', async () => {
    // One thread and two queue places: three tasks may be pending.
    ({ engine } = makeEngine({ pool: { minThreads: 1, maxThreads: 1, maxQueue: 2 } }));
    gate = openGate();
    const { channel } = gate;
    engine.anchor('holder', { next: { progress: workerStep(GATE, 'hold') } });
    engine.anchor('scorer', { next: { create: workerStep(SCORE, 'whereAmI') } });
    await engine.create('scorer'); // starts the pool

    const cbs = await Promise.all(
      Array.from({ length: 6 }, () => engine.create('holder', { timeout: false })),
    );
    const accepted: Promise<CallbackAnswer>[] = [];
    const refused: unknown[] = [];
    for (const [i, cb] of cbs.entries()) {
      const dispatch = engine.dispatch(report(cb.token, 'progress', { channel, key: `k${i}` }));
      dispatch.catch((err: unknown) => refused.push(err));
      accepted.push(dispatch);
      // Reports arrive on separate turns of the event loop, as over HTTP.
      await flush();
    }
    expect(refused).toHaveLength(3);
    for (const err of refused) {
      expect(err).toBeInstanceOf(PoolSaturatedError);
      expect(err).toMatchObject({
        code: 'CBE_ERR_POOL_SATURATED',
        retryable: true,
        statusCode: 503,
      });
    }
    // Refused reports changed nothing: the outside party can simply retry.
    for (const cb of cbs.slice(3)) {
      const now = await engine.get(cb.token);
      expect(now.status).toBe('create');
      expect(now.data).toEqual({});
    }
    // Reports that run no worker step are not refused while the pool is full.
    expect((await engine.dispatch(report(cbs[4]!.token, 'accept'))).status).toBe('accept');

    // Drain the accepted three; each one completes with its step's output.
    for (const i of [0, 1, 2]) {
      await gate.waitStarted(`k${i}`);
      gate.release(`k${i}`);
      const answer = await accepted[i]!;
      expect(answer.status).toBe('progress');
      expect(answer.data).toMatchObject({ key: `k${i}`, releasedKey: `k${i}` });
    }
    // The pool has room again: the retries are accepted and complete too.
    const retries = cbs
      .slice(3)
      .map((cb, j) => engine.dispatch(report(cb.token, 'progress', { channel, key: `k${j + 3}` })));
    for (const i of [3, 4, 5]) {
      await gate.waitStarted(`k${i}`);
      gate.release(`k${i}`);
    }
    const retried = await Promise.all(retries);
    retried.forEach((answer, j) =>
      expect(answer.data).toMatchObject({ key: `k${j + 3}`, releasedKey: `k${j + 3}` }),
    );
    expect(gate.started).toEqual(['k0', 'k1', 'k2', 'k3', 'k4', 'k5']);
  });
});
