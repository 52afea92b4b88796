import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { workerStep, type CallbackEngine } from '../src/index.js';
import { score } from './fixtures/steps/score.js';
import { makeEngine, report } from './helpers/engine.js';
import { SCORE } from './helpers/steps.js';

let engine: CallbackEngine;
afterEach(() => engine.close());

describe('worker steps merge like in-process steps (spec 6)', () => {
  it('a worker step returns the same merged data and answer as the same function run in-process', async () => {
    ({ engine } = makeEngine({ pool: { minThreads: 1, maxThreads: 2 } }));
    engine.anchor('onWorker', { next: { progress: workerStep(SCORE, 'score') } });
    engine.anchor('inProcess', { next: { progress: (cb) => score(cb) } });
    const a = await engine.create('onWorker', { data: { order: 7 } });
    const b = await engine.create('inProcess', { data: { order: 7 } });

    const onWorker = await engine.dispatch(report(a.token, 'progress', { value: 21 }));
    const inProcess = await engine.dispatch(report(b.token, 'progress', { value: 21 }));

    expect(onWorker.status).toBe('progress');
    expect(onWorker.data).toEqual({
      order: 7,
      value: 21,
      score: 42,
      scoredStatus: 'progress',
      sawOwnToken: true,
      sawOwnId: true,
      sawParent: null,
    });
    expect(onWorker.data).toEqual(inProcess.data);
    expect((await engine.get(a.token)).data).toEqual(onWorker.data);
    // Later reports build on the merged data, exactly as in-process.
    const again = await engine.dispatch(report(a.token, 'progress', { value: 5 }));
    expect(again.data).toMatchObject({ order: 7, value: 5, score: 10 });
  });

  it('runs on a pool thread, not on the main thread, and async steps and empty results work', async () => {
    ({ engine } = makeEngine());
    engine.anchor('job', {
      next: {
        create: workerStep(SCORE, 'whereAmI'),
        progress: workerStep(SCORE, 'scoreLater'),
        complete: workerStep(SCORE, 'nothing'),
      },
    });
    const cb = await engine.create('job');
    expect(cb.data.isMainThread).toBe(false);
    expect(cb.data.threadId).toBeGreaterThan(0);
    const progressed = await engine.dispatch(report(cb.token, 'progress', { value: 4 }));
    expect(progressed.data.score).toBe(8);
    const done = await engine.dispatch(report(cb.token, 'complete', { final: true }));
    expect(done.status).toBe('complete');
    expect(done.data).toEqual({ ...progressed.data, final: true });
  });

  it('a module without that function export moves the callback to error with a clear message', async () => {
    ({ engine } = makeEngine());
    engine.anchor('job', { next: { progress: workerStep(SCORE, 'notAFunction') } });
    const cb = await engine.create('job');
    const answer = await engine.dispatch(report(cb.token, 'progress'));
    expect(answer.status).toBe('error');
    expect(answer.data.message).toBe(
      `worker step module ${SCORE.href} has no function export "notAFunction"`,
    );
  });

  it('a module that does not exist is refused by anchor(); one removed later moves the callback to error and the pool keeps serving', async () => {
    ({ engine } = makeEngine());
    const missing = new URL('./fixtures/steps/does-not-exist.ts', import.meta.url);
    expect(() =>
      engine.anchor('refused', { next: { progress: workerStep(missing, 'score') } }),
    ).toThrow(/worker step module .*does-not-exist\.ts does not exist/);
    const dir = mkdtempSync(join(tmpdir(), 'cbe-missing-'));
    const removed = join(dir, 'does-not-exist.mjs');
    writeFileSync(removed, 'export function score() { return {}; }\n');
    engine.anchor('broken', { next: { progress: workerStep(removed, 'score') } });
    rmSync(dir, { recursive: true, force: true });
    engine.anchor('fine', { next: { progress: workerStep(SCORE, 'score') } });
    const bad = await engine.create('broken');
    const good = await engine.create('fine');
    const failed = await engine.dispatch(report(bad.token, 'progress'));
    expect(failed.status).toBe('error');
    expect(String(failed.data.message)).toMatch(/does-not-exist\.mjs/);
    expect((await engine.dispatch(report(good.token, 'progress', { value: 1 }))).data.score).toBe(
      2,
    );
  });
});
