/**
 * Handing shards over and shutting down: waiting until no step of the callbacks handed over
 * runs, and `close()`: no new job starts, steps in flight may finish within `closeTimeout`, then
 * they are cut off (a durable store keeps them owed), and the pool drains.
 *
 * @module
 */

import { EngineClosedError } from '../errors.js';
import type { CallbackRuntime } from '../registry/callback-runtime.js';
import type { CallbackRegistry } from '../registry/registry.js';
import type { MailboxCore } from './core.js';

/**
 * Waits until no step of a resident callback matching `owned` runs (real time, at most
 * `timeoutMs`): a replica handing shards over lets those steps end and commit here. A retry
 * waiting for its instant does not count: it stays owed, for the next owner.
 */
export async function quiesce(
  registry: CallbackRegistry,
  owned: (id: string) => boolean,
  timeoutMs: number,
): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  let expired = false;
  const timeout = new Promise<void>((resolve) => {
    timer = setTimeout(() => {
      expired = true;
      resolve();
    }, timeoutMs);
    timer.unref();
  });
  try {
    for (;;) {
      const running: Promise<unknown>[] = [];
      for (const rt of registry.runtimes())
        if (rt.step !== undefined && rt.stepPromise && owned(rt.record.id))
          running.push(rt.stepPromise);
      if (running.length === 0 || expired) return;
      await Promise.race([Promise.allSettled(running), timeout]);
    }
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Stops processing: no new job starts; queued jobs are refused with {@link EngineClosedError};
 * steps in flight may finish for up to `closeTimeout` (on the engine clock), and their outcome
 * is journaled as usual. A step still running then is aborted and cut off: it stays owed, and
 * runs again at the next start of a durable engine; its report is answered with the callback
 * as journaled. Then the pool drains (or is destroyed).
 */
export async function closeMailboxes(c: MailboxCore): Promise<void> {
  c.closed = true;
  const closed = new EngineClosedError();
  const inFlight: Promise<unknown>[] = [];
  const stepping: CallbackRuntime[] = [];
  for (const rt of c.registry.runtimes()) {
    // No further try: the retry stays owed for the next start.
    rt.retry?.stop(false);
    for (const job of rt.drainAll()) {
      if (job.kind === 'terminal') rt.push(job);
      else for (const f of job.followers) f.reject(closed);
    }
    if (rt.stepPromise) {
      // Its waiters may still be answered: a terminal step in flight finalizes the callback.
      inFlight.push(rt.stepPromise);
      stepping.push(rt);
    } else {
      for (const job of rt.drainAll()) c.answerJob(rt, job);
      for (const w of rt.waiters ?? []) w.reject(closed);
      rt.waiters = undefined;
    }
  }
  const clock = c.o.clock;
  const expired = new AbortController();
  const timer = clock.setTimeout(() => {
    c.cutOff = true;
    expired.abort(closed);
  }, c.o.closeTimeoutMs);
  const timedOut = new Promise<void>((resolve) =>
    expired.signal.addEventListener('abort', () => resolve(), { once: true }),
  );
  try {
    if (inFlight.length > 0) await Promise.race([Promise.allSettled(inFlight), timedOut]);
    c.cutOff = true;
    for (const rt of stepping) {
      const step = rt.step;
      if (step && !(c.o.pool.close === 'drain' && step.onPool)) step.abort.abort(closed);
      step?.release?.(closed);
      for (const w of rt.waiters ?? []) w.reject(closed);
      rt.waiters = undefined;
    }
    await c.pool.close(expired.signal);
  } finally {
    clock.clearTimeout(timer);
  }
}
