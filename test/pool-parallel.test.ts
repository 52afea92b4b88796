import { afterEach, describe, expect, it } from 'vitest';
import { workerStep, type CallbackAnswer, type CallbackEngine } from '../src/index.js';
import { checksum } from './fixtures/steps/cpu.js';
import { openGate, type GateControl } from './fixtures/steps/gate.js';
import { makeEngine, report } from './helpers/engine.js';
import { CPU, GATE, ORDER } from './helpers/steps.js';

let engines: CallbackEngine[] = [];
let gate: GateControl | undefined;
afterEach(async () => {
  gate?.close();
  gate = undefined;
  await Promise.all(engines.map((e) => e.close()));
  engines = [];
});

function engineWith(maxThreads: number): CallbackEngine {
  const { engine } = makeEngine({ pool: { minThreads: maxThreads, maxThreads } });
  engines.push(engine);
  return engine;
}

describe('CPU work on two threads', () => {
  // ~65 ms of work per task on this kind of machine: a 1-thread + 2-thread pair is ~0.4 s.
  const ITERATIONS = 15_000_000;
  const TASKS = 4;

  interface Burned {
    checksum: number;
    burnedOn: number;
    startedAt: number;
    endedAt: number;
  }

  /** An engine whose pool has `threads` threads, warmed up, with TASKS callbacks ready to burn. */
  async function cpuEngine(threads: number): Promise<() => Promise<{ burned: Burned[] }>> {
    const engine = engineWith(threads);
    engine.anchor('cpu', { next: { progress: workerStep(CPU, 'burn') } });
    const cbs = await Promise.all(
      Array.from({ length: TASKS }, () => engine.create('cpu', { timeout: false })),
    );
    // Warm-up: threads started, module loaded, loop compiled.
    await Promise.all(
      cbs.map((cb) => engine.dispatch(report(cb.token, 'progress', { iterations: 100_000 }))),
    );
    return async () => {
      const answers = await Promise.all(
        cbs.map((cb) => engine.dispatch(report(cb.token, 'progress', { iterations: ITERATIONS }))),
      );
      return { burned: answers.map((a) => a.data as unknown as Burned) };
    };
  }

  it('two threads share a CPU load: both do work, at the same time, with correct results', async () => {
    // Speed is measured in bench/pool.bench.ts, not asserted here: on a busy 2-core machine a
    // wall-clock ratio is noise. What must hold anywhere: the work is split over both threads,
    // runs on them concurrently, and every result is right.
    const expected = checksum(ITERATIONS);
    const runOne = await cpuEngine(1);
    const runTwo = await cpuEngine(2);
    const one = await runOne();
    const two = await runTwo();
    for (const b of [...one.burned, ...two.burned]) expect(b.checksum).toBe(expected);
    expect(new Set(one.burned.map((b) => b.burnedOn)).size).toBe(1);
    const [a, b] = [...new Set(two.burned.map((x) => x.burnedOn))];
    expect(b).toBeDefined();
    const onA = two.burned.filter((x) => x.burnedOn === a);
    const onB = two.burned.filter((x) => x.burnedOn === b);
    expect(onA.length + onB.length).toBe(TASKS);
    expect(
      onA.some((x) =>
        onB.some((y) => Math.max(x.startedAt, y.startedAt) < Math.min(x.endedAt, y.endedAt)),
      ),
    ).toBe(true);
  });
});

describe('ordering under concurrency (spec 6)', () => {
  it('many concurrent reports to one callback run their worker steps one at a time, in arrival order', async () => {
    const engine = engineWith(2);
    engine.anchor('job', { next: { progress: workerStep(ORDER, 'append') } });
    const cb = await engine.create('job', { timeout: false });
    const N = 40;
    const answers = await Promise.all(
      Array.from({ length: N }, (_, n) =>
        engine.dispatch(report(cb.token, 'progress', { n, work: 20_000 })),
      ),
    );
    // Each answer shows the data right after its own step: every earlier step, in order, none missing.
    answers.forEach((answer, n) => {
      expect(answer.status).toBe('progress');
      expect(answer.data.seen).toEqual(Array.from({ length: n + 1 }, (_, i) => i));
    });
    expect((await engine.get(cb.token)).data.seen).toHaveLength(N);
  });

  it('steps of different callbacks interleave across threads while each callback keeps its order', async () => {
    const engine = engineWith(2);
    engine.anchor('job', { next: { progress: workerStep(ORDER, 'append') } });
    const CALLBACKS = 4;
    const REPORTS = 25;
    const cbs = await Promise.all(
      Array.from({ length: CALLBACKS }, () => engine.create('job', { timeout: false })),
    );
    const pending: Promise<CallbackAnswer>[] = [];
    for (let n = 0; n < REPORTS; n++) {
      for (const cb of cbs)
        pending.push(engine.dispatch(report(cb.token, 'progress', { n, work: 50_000 })));
    }
    const answers = await Promise.all(pending);
    expect(answers.every((a) => a.status === 'progress')).toBe(true);
    const threads = new Set<number>();
    for (const cb of cbs) {
      const { data } = await engine.get(cb.token);
      expect(data.seen).toEqual(Array.from({ length: REPORTS }, (_, i) => i));
      for (const t of data.threads as number[]) threads.add(t);
    }
    expect(threads.size).toBe(2);
  });

  it('a held step blocks only its own callback: the idle thread serves another callback meanwhile', async () => {
    const engine = engineWith(2);
    gate = openGate();
    const { channel } = gate;
    engine.anchor('job', { next: { progress: workerStep(GATE, 'hold') } });
    const a = await engine.create('job', { timeout: false });
    const b = await engine.create('job', { timeout: false });

    const a1 = engine.dispatch(report(a.token, 'progress', { channel, key: 'a1' }));
    const a2 = engine.dispatch(report(a.token, 'progress', { channel, key: 'a2' }));
    await gate.waitStarted('a1');
    const b1 = engine.dispatch(report(b.token, 'progress', { channel, key: 'b1' }));
    await gate.waitStarted('b1');
    // Both callbacks' steps run at the same time, on the two threads...
    expect(gate.threadOf.get('a1')).not.toBe(gate.threadOf.get('b1'));
    // ...but a2, sent before b1, waits for a1: steps of one callback never overlap.
    expect(gate.started).toEqual(['a1', 'b1']);

    gate.release('a1');
    expect((await a1).data.releasedKey).toBe('a1');
    await gate.waitStarted('a2');
    expect(gate.started).toEqual(['a1', 'b1', 'a2']);
    gate.release('a2');
    gate.release('b1');
    const [ra2, rb1] = await Promise.all([a2, b1]);
    expect(ra2.data).toMatchObject({ key: 'a2', releasedKey: 'a2' });
    expect(rb1.data).toMatchObject({ key: 'b1', releasedKey: 'b1' });
  });
});
