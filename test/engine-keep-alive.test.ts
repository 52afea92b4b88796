/**
 * The process lives while work is awaited on the engine, and only then: real scripts run as child
 * processes (the newcomer's `wait()` on a one-second deadline, retries nobody awaits, an engine
 * left with a pending callback), and the holds counted in process on the simulated clock.
 */
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { internalsOf } from '../src/engine-internals.js';
import type { CallbackEngine } from '../src/index.js';
import { KeepAlive, type KeepAliveHandle } from '../src/keep-alive.js';
import { flush, makeEngine, rejection, report } from './helpers/engine.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const tsx = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
/** Far beyond what any script here needs: a run stopped by it did not exit on its own. */
const KILL_AFTER_MS = 60_000;

/** Runs `test/fixtures/keep-alive/<name>.ts` in its own Node process until it exits. */
function runScript(name: string, ...args: string[]) {
  const r = spawnSync(
    process.execPath,
    ['--import', tsx, join(root, 'test/fixtures/keep-alive', `${name}.ts`), ...args],
    { cwd: root, encoding: 'utf8', timeout: KILL_AFTER_MS, killSignal: 'SIGKILL' },
  );
  return { code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr, error: r.error };
}

describe('a script run with node', () => {
  it('awaiting wait() on a one-second deadline lives until it fires, then exits 0', () => {
    const r = runScript('wait-deadline');
    expect(r.error).toBeUndefined();
    expect(r.signal).toBeNull();
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('timeout {"reason":"deadline"}\n');
  }, 90_000);

  it('runs every retry of a failing step although nothing awaits them, then exits 0', () => {
    const r = runScript('retries');
    expect(r.signal).toBeNull();
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout.split('\n')).toEqual([
      'try 1',
      'created create',
      'try 2',
      'try 3',
      'exit 0',
      '',
    ]);
  }, 90_000);

  for (const store of ['memory', 'sqlite']) {
    it(`with a pending callback nobody awaits (${store} store, no close()) exits on its own`, () => {
      const r = runScript('idle', store);
      // Neither killed by the test's bound (which would leave a signal) nor kept until the
      // callback's one-hour deadline: the process ended by itself, with code 0.
      expect(r.error).toBeUndefined();
      expect(r.signal).toBeNull();
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(r.stdout).toBe('created create\nexit 0\n');
    }, 90_000);
  }
});

const held = (engine: CallbackEngine) => internalsOf(engine).keepAliveCount();

describe('what holds the process, counted', () => {
  it('an engine with pending callbacks and nothing awaited holds nothing', async () => {
    const { engine, clock } = makeEngine();
    engine.anchor('payment', { next: { start: () => ({ started: true }) } });
    expect(held(engine)).toBe(0);
    const cb = await engine.create('payment', { timeout: 'PT1M' });
    await engine.dispatch(report(cb.token, 'start'));
    await flush();
    expect(held(engine)).toBe(0);
    // Its deadline is armed on the clock, but nobody waits for it.
    expect(clock.pending).toBeGreaterThan(0);
    await engine.close();
  });

  it('a wait() holds until its deadline fires', async () => {
    const { engine, clock } = makeEngine();
    engine.anchor('payment');
    const cb = await engine.create('payment', { timeout: 'PT1S' });
    const waiting = engine.wait(cb.token);
    await flush();
    expect(held(engine)).toBe(1);
    clock.advance(999);
    await flush();
    expect(held(engine)).toBe(1);
    clock.advance(1);
    expect((await waiting).status).toBe('timeout');
    await flush();
    expect(held(engine)).toBe(0);
    await engine.close();
  });

  it('a step waiting for its retry holds until its last try, with nothing awaited', async () => {
    const { engine, clock } = makeEngine();
    const tries: number[] = [];
    engine.anchor('ocr', {
      next: {
        create: (cb) => {
          tries.push(cb.attempt);
          if (cb.attempt < 3) throw new Error('busy');
          return { ok: true };
        },
      },
      retry: { attempts: 3, backoff: 'PT1S', factor: 2 },
    });
    await engine.create('ocr');
    await flush();
    expect(tries).toEqual([1]);
    expect(held(engine)).toBe(1);
    clock.advance(1000);
    await flush();
    expect(tries).toEqual([1, 2]);
    expect(held(engine)).toBe(1);
    clock.advance(2000);
    await flush();
    expect(tries).toEqual([1, 2, 3]);
    expect(held(engine)).toBe(0);
    await engine.close();
  });

  it('a running step and the report waiting for it hold until the step ends', async () => {
    const { engine } = makeEngine();
    let finish!: (out: { done: boolean }) => void;
    engine.anchor('job', {
      next: { start: () => new Promise<{ done: boolean }>((resolve) => (finish = resolve)) },
    });
    const cb = await engine.create('job');
    const answered = engine.dispatch(report(cb.token, 'start'));
    await flush();
    // The pending dispatch and the mailbox waiting for its step.
    expect(held(engine)).toBe(2);
    finish({ done: true });
    expect((await answered).data).toEqual({ done: true });
    await flush();
    expect(held(engine)).toBe(0);
    await engine.close();
  });

  it('a call that rejects releases its hold and still rejects with its error', async () => {
    const { engine } = makeEngine();
    engine.anchor('payment');
    const err = await rejection(engine.dispatch({ type: 'CALLBACK' } as never));
    expect(err.code).toBe('CBE_ERR_INVALID_MESSAGE');
    await flush();
    expect(held(engine)).toBe(0);
    await engine.close();
  });

  it('close() ends every hold: a pending wait is refused and nothing holds afterwards', async () => {
    const { engine } = makeEngine();
    engine.anchor('payment');
    const cb = await engine.create('payment', { timeout: 'PT1H' });
    const waiting = engine.wait(cb.token);
    await flush();
    expect(held(engine)).toBe(1);
    await engine.close();
    expect((await rejection(waiting)).code).toBe('CBE_ERR_ENGINE_CLOSED');
    expect(held(engine)).toBe(0);
    await rejection(engine.get(cb.token));
    expect(held(engine)).toBe(0);
  });
});

/** A handle that records whether it is ref'd. */
function fakeTimers() {
  const made: { refed: boolean; cleared: boolean }[] = [];
  return {
    made,
    timers: {
      create(): KeepAliveHandle {
        const h = {
          refed: true,
          cleared: false,
          ref: () => (h.refed = true),
          unref: () => (h.refed = false),
        };
        made.push(h);
        return h;
      },
      clear(handle: KeepAliveHandle) {
        (handle as unknown as { cleared: boolean }).cleared = true;
      },
    },
  };
}

describe('KeepAlive', () => {
  it('makes one handle, ref’d while held and unref’d at zero, cleared by close()', () => {
    const { made, timers } = fakeTimers();
    const k = new KeepAlive(timers);
    expect(made).toHaveLength(0);
    k.hold();
    k.hold();
    expect(made).toHaveLength(1);
    expect(made[0]!.refed).toBe(true);
    k.release();
    expect(made[0]!.refed).toBe(true);
    k.release();
    expect(made[0]!.refed).toBe(false);
    // An extra release does not go below zero.
    k.release();
    expect(k.count).toBe(0);
    k.hold();
    expect(made).toHaveLength(1);
    expect(made[0]!.refed).toBe(true);
    k.close();
    expect(made[0]!.cleared).toBe(true);
    expect(k.count).toBe(0);
    k.hold();
    expect(k.count).toBe(0);
    expect(made).toHaveLength(1);
  });

  it('track() holds until the promise settles and passes its outcome on', async () => {
    const { made, timers } = fakeTimers();
    const k = new KeepAlive(timers);
    const ok = k.track(Promise.resolve(7));
    const boom = new Error('boom');
    const failed = k.track(Promise.reject(boom));
    expect(k.count).toBe(2);
    expect(await ok).toBe(7);
    await expect(failed).rejects.toBe(boom);
    expect(k.count).toBe(0);
    expect(made[0]!.refed).toBe(false);
  });

  it("with Node's timers: one ref'd timer while held, none once released or closed", () => {
    const refTimers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
    const before = refTimers();
    const k = new KeepAlive();
    k.hold();
    expect(refTimers()).toBe(before + 1);
    k.release();
    expect(refTimers()).toBe(before);
    k.hold();
    expect(refTimers()).toBe(before + 1);
    k.close();
    expect(refTimers()).toBe(before);
  });
});
