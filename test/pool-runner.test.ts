import { afterEach, describe, expect, it } from 'vitest';
import {
  EngineClosedError,
  workerStep,
  type PoolOptions,
  type WorkerStepInput,
} from '../src/index.js';
import { createWorkerPool, type WorkerPool } from '../src/pool/worker-pool.js';
import { openGate, type GateControl } from './fixtures/steps/gate.js';
import { GATE, SCORE } from './helpers/steps.js';

const hold = workerStep(GATE, 'hold');
const spin = workerStep(GATE, 'spin');
const score = workerStep(SCORE, 'score');

let pool: WorkerPool | undefined;
let gate: GateControl;
afterEach(async () => {
  gate.close();
  await pool?.close();
  pool = undefined;
});

function open(options: Partial<PoolOptions>): WorkerPool {
  gate = openGate();
  pool = createWorkerPool({
    minThreads: 1,
    maxThreads: 1,
    idleTimeoutMs: 30_000,
    maxQueue: 16,
    close: 'drain',
    ...options,
  });
  return pool;
}

function input(data: Record<string, unknown>): WorkerStepInput {
  return {
    status: 'progress',
    token: 'token',
    id: 'id',
    data: data as WorkerStepInput['data'],
    report: {},
    parentToken: undefined,
    attributes: {},
    attempt: 1,
  };
}

const signal = () => new AbortController().signal;

describe('the worker pool', () => {
  it('reports saturated once maxThreads + maxQueue tasks are pending; run() itself never refuses', async () => {
    const p = open({ maxThreads: 1, maxQueue: 1 });
    expect(p.capacity).toBe(2);
    const a = p.run(hold, input({ channel: gate.channel, key: 'a' }), signal());
    expect(p.saturated).toBe(false);
    const b = p.run(hold, input({ channel: gate.channel, key: 'b' }), signal());
    expect(p.pending).toBe(2);
    expect(p.saturated).toBe(true);
    // Reports the engine already accepted still get their step run, even past the mark.
    const c = p.run(score, input({ value: 1 }), signal());
    expect(p.pending).toBe(3);
    await gate.waitStarted('a');
    gate.release('a');
    await gate.waitStarted('b');
    gate.release('b');
    expect(await Promise.all([a, b, c])).toEqual([
      { heldOn: expect.any(Number) as number, releasedKey: 'a' },
      { heldOn: expect.any(Number) as number, releasedKey: 'b' },
      expect.objectContaining({ score: 2 }) as object,
    ]);
    expect(p.pending).toBe(0);
    expect(p.saturated).toBe(false);
  });

  it('an aborted signal rejects the task with the signal reason and frees its thread', async () => {
    const p = open({ maxThreads: 1 });
    const controller = new AbortController();
    const running = p.run(spin, input({ channel: gate.channel, key: 's' }), controller.signal);
    await gate.waitStarted('s');
    const reason = new Error('stop it');
    controller.abort(reason);
    await expect(running).rejects.toBe(reason);
    // Already aborted: rejected without running.
    await expect(p.run(score, input({ value: 1 }), controller.signal)).rejects.toBe(reason);
    expect(await p.run(score, input({ value: 2 }), signal())).toMatchObject({ score: 4 });
  });

  it("close() in 'drain' mode finishes running and queued tasks, then ends every thread", async () => {
    const p = open({ maxThreads: 1, close: 'drain' });
    const a = p.run(hold, input({ channel: gate.channel, key: 'a' }), signal());
    const b = p.run(hold, input({ channel: gate.channel, key: 'b' }), signal());
    const c = p.run(score, input({ value: 3 }), signal());
    await gate.waitStarted('a');
    let closed = false;
    const closing = p.close().then(() => (closed = true));
    await expect(p.run(score, input({ value: 1 }), signal())).rejects.toBeInstanceOf(
      EngineClosedError,
    );
    gate.release('a');
    await gate.waitStarted('b');
    // b is still running: close() cannot have finished.
    expect(closed).toBe(false);
    gate.release('b');
    expect(await a).toMatchObject({ releasedKey: 'a' });
    expect(await b).toMatchObject({ releasedKey: 'b' });
    expect(await c).toMatchObject({ score: 6 });
    await closing;
    expect(p.threads).toBe(0);
    expect(p.close()).toBe(p.close());
  });

  it("close() in 'destroy' mode ends running and queued tasks at once", async () => {
    const p = open({ maxThreads: 1, close: 'destroy' });
    const running = p.run(spin, input({ channel: gate.channel, key: 's' }), signal());
    const queued = p.run(score, input({ value: 3 }), signal());
    await gate.waitStarted('s');
    await p.close();
    await expect(running).rejects.toThrow('Terminating worker thread');
    await expect(queued).rejects.toThrow('Terminating worker thread');
    expect(p.threads).toBe(0);
    expect(p.pending).toBe(0);
  });

  it('starts no thread before it is needed when minThreads is 0', async () => {
    const p = open({ minThreads: 0, maxThreads: 2 });
    expect(p.threads).toBe(0);
    expect(await p.run(score, input({ value: 5 }), signal())).toMatchObject({ score: 10 });
    expect(p.threads).toBe(1);
    expect(p.pending).toBe(0);
  });
});
