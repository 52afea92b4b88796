import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { workerStep } from '../src/index.js';
import { openGate } from './fixtures/steps/gate.js';
import { flush, makeEngine, report } from './helpers/engine.js';
import { GATE } from './helpers/steps.js';

const ROOT = new URL('../', import.meta.url);

/**
 * A real process: worker steps are running on the pool when `engine.close()` is called. It must
 * resolve, and the process must then exit on its own (no thread or handle left behind).
 */
function closeInChildProcess(mode: 'drain' | 'destroy'): {
  status: number | null;
  stdout: string;
  stderr: string;
} {
  const src = (path: string) => JSON.stringify(new URL(path, ROOT).href);
  const script = `
    import { createCallbackEngine, workerStep } from ${src('src/index.ts')};
    import { openGate } from ${src('test/fixtures/steps/gate.ts')};
    const GATE = new URL(${src('test/fixtures/steps/gate.ts')});
    const engine = createCallbackEngine({
      secrets: ['close-test-secret-0123456789'],
      pool: { minThreads: 2, maxThreads: 2, close: '${mode}' },
      // A spinning step is let run this long, then cut off (destroy).
      closeTimeout: 'PT2S',
    });
    const gate = openGate();
    engine.anchor('holder', { next: { progress: workerStep(GATE, 'hold') } });
    engine.anchor('spinner', { next: { progress: workerStep(GATE, 'spin') } });
    const held = await engine.create('holder', { timeout: false });
    const other = await engine.create('${mode === 'destroy' ? 'spinner' : 'holder'}', { timeout: false });
    for (const [i, cb] of [held, other].entries()) {
      const data = { channel: gate.channel, key: 'k' + i };
      engine.dispatch({ type: 'CALLBACK', callbackToken: cb.token, callbackStatus: 'progress', callbackData: data }).catch(() => {});
    }
    await gate.waitStarted('k0');
    await gate.waitStarted('k1');
    const closing = engine.close();
    gate.release('k0');
    gate.release('k1');
    await closing;
    gate.close();
    console.log('closed');
  `;
  const dir = mkdtempSync(join(tmpdir(), 'cbe-pool-close-'));
  const file = join(dir, 'close.mts');
  writeFileSync(file, script);
  try {
    const child = spawnSync(process.execPath, ['--import', 'tsx', file], {
      cwd: ROOT,
      encoding: 'utf8',
      timeout: 25_000,
    });
    return { status: child.status, stdout: child.stdout, stderr: child.stderr };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('engine.close() and the pool', () => {
  it.each(['drain', 'destroy'] as const)(
    "'%s': close() resolves with steps on the pool and the process exits on its own",
    (mode) => {
      const child = closeInChildProcess(mode);
      expect(child.stderr).not.toMatch(/Error|Warning/);
      expect(child.stdout).toContain('closed');
      expect(child.status).toBe(0);
    },
  );

  it('an engine that never ran a worker step closes without starting the pool', async () => {
    const { engine } = makeEngine({ pool: { minThreads: 4 } });
    engine.anchor('job', { next: { progress: () => ({ inProcess: true }) } });
    const cb = await engine.create('job');
    expect((await engine.dispatch(report(cb.token, 'progress'))).data.inProcess).toBe(true);
    await engine.close();
  });

  // close() lets running steps finish (up to closeTimeout) whatever the pool's close mode: the
  // report is answered with the step's output.
  it.each(['drain', 'destroy'] as const)(
    "'%s': a report whose worker step ends within closeTimeout is answered with its output",
    async (mode) => {
      const { engine } = makeEngine({ pool: { minThreads: 1, maxThreads: 1, close: mode } });
      const gate = openGate();
      try {
        engine.anchor('holder', { next: { progress: workerStep(GATE, 'hold') } });
        const cb = await engine.create('holder', { timeout: false });
        let outcome: unknown = 'pending';
        const answer = engine.dispatch(
          report(cb.token, 'progress', { channel: gate.channel, key: 'a' }),
        );
        answer.then(
          (a) => (outcome = a.data.releasedKey),
          (err: unknown) => (outcome = err),
        );
        await gate.waitStarted('a');
        const closing = engine.close();
        gate.release('a');
        await closing;
        for (let i = 0; i < 5; i++) await flush();
        expect(outcome).toBe('a');
      } finally {
        gate.close();
      }
    },
  );
});
