/**
 * The engine's worker-thread pool: a piscina pool that runs worker steps
 * (spec 6). Loaded by the engine on the first worker step, so importing the
 * package does not load piscina.
 *
 * @module
 */

import { warner, type WarnFn } from '../log.js';
import { existsSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { Piscina } from 'piscina';
import { EngineClosedError } from '../errors.js';
import { toError, toStepError } from '../thrown.js';
import type { StepOutput } from '../types.js';
import type { WorkerTask } from './worker.js';
import type { PoolOptions, StepRunner, WorkerStep, WorkerStepInput } from './worker-step.js';

/** The engine's pool, with read-only gauges for tests and benchmarks. */
export interface WorkerPool extends StepRunner {
  /** Threads currently alive (busy or idle). */
  readonly threads: number;
  /** Tasks accepted and not yet settled: running plus queued. */
  readonly pending: number;
  /** `maxThreads + maxQueue`: how many tasks may be pending before the pool reports `saturated`. */
  readonly capacity: number;
}

/**
 * How long `close()` in `'drain'` mode waits for pending tasks before it destroys the pool anyway,
 * so a step that never returns cannot keep `close()` (and the process) from ending.
 */
export const DRAIN_TIMEOUT_MS = 30_000;

/**
 * Creates the worker pool that runs worker steps.
 *
 * Admission: `saturated` turns true once `maxThreads + maxQueue` tasks are pending, and the engine
 * then refuses new reports that would run a worker step (`CBE_ERR_POOL_SATURATED`, before anything is
 * applied). `run()` itself never refuses a task for capacity: it is called for reports the engine
 * already accepted and applied, and failing those would turn a busy pool into callbacks in `error`.
 * A callback has at most one step in flight, so the overshoot is bounded by the callbacks whose
 * reports were accepted just before saturation.
 *
 * Faults: a step that throws rejects with what it threw; a thread that crashes (`process.exit`, an
 * uncaught error) rejects only the task it was running, and piscina starts a new thread. An aborted
 * `signal` rejects with `signal.reason`; a running task's thread is terminated and replaced. If no
 * thread can start at all (a broken entry, `tsx` missing when running from sources), pending tasks
 * fail with the reason instead of waiting forever.
 *
 * Close: `'drain'` waits for every pending task (until the `deadline` signal given to `close()`
 * aborts, or at most {@link DRAIN_TIMEOUT_MS} without one), then terminates the threads, even one
 * spinning in a busy loop; `'destroy'` terminates them at once, rejecting whatever is running or
 * queued.
 *
 * The entry is `worker.js` next to this module (the built package), or `worker-dev.js`, which loads
 * `worker.ts` through `tsx`, when running from the TypeScript sources. Bundling this module into
 * another file breaks that lookup.
 *
 * @param options - the resolved `pool` options of the engine.
 * @returns the pool.
 * @throws Error when the worker entry cannot be found.
 */
export function createWorkerPool(
  options: Readonly<Required<PoolOptions>>,
  log: WarnFn = warner(undefined),
): WorkerPool {
  return new PiscinaStepRunner(options, log);
}

/** A task handed to piscina: its outcome, and the controller that can abort it. */
interface PendingTask {
  readonly result: Promise<StepOutput>;
  readonly controller: AbortController;
}

class PiscinaStepRunner implements WorkerPool {
  readonly capacity: number;
  readonly #piscina: Piscina<WorkerTask | null, StepOutput>;
  readonly #closeMode: 'drain' | 'destroy';
  readonly #pending = new Set<PendingTask>();
  /** Whether any thread ever finished starting; until then, a thread error means none can start. */
  #started = false;
  #closing: Promise<void> | undefined;
  readonly #log: WarnFn;

  #warn(message: string): void {
    this.#log('CBE_W_POOL', `worker pool: ${message}`);
  }

  constructor(options: Readonly<Required<PoolOptions>>, log: WarnFn) {
    this.#log = log;
    this.capacity = options.maxThreads + options.maxQueue;
    this.#closeMode = options.close;
    this.#piscina = new Piscina({
      filename: resolveEntry(),
      minThreads: options.minThreads,
      maxThreads: options.maxThreads,
      idleTimeout: options.idleTimeoutMs,
      // No piscina `maxQueue`: it does not count tasks that carry a signal (all of ours), and
      // admission belongs to dispatch time anyway (see createWorkerPool).
    });
    this.#piscina.on('workerCreate', () => (this.#started = true));
    // piscina emits 'error' for a thread that fails with no task to blame; unhandled, it would throw.
    this.#piscina.on('error', (err: unknown) => this.#onThreadError(toError(err)));
  }

  get saturated(): boolean {
    return this.#pending.size >= this.capacity;
  }

  get threads(): number {
    return this.#piscina.threads.length;
  }

  get pending(): number {
    return this.#pending.size;
  }

  get queued(): number {
    return this.#piscina.queueSize;
  }

  run(step: WorkerStep, input: WorkerStepInput, signal: AbortSignal): Promise<StepOutput> {
    if (this.#closing) return Promise.reject(new EngineClosedError());
    const task: WorkerTask = { module: step.module, exportName: step.exportName, input };
    // Our own controller, so the pool can also fail a task itself (threads that cannot start).
    const controller = new AbortController();
    const forward = (): void => controller.abort(signal.reason);
    if (signal.aborted) forward();
    else signal.addEventListener('abort', forward, { once: true });
    const result = this.#piscina.run(task, { signal: controller.signal }).catch((err: unknown) => {
      // Like fetch(): an aborted task rejects with the abort reason (cancel, timeout, close).
      // Anything else arrives bounded, whatever crossed the thread boundary.
      throw controller.signal.aborted ? toError(controller.signal.reason) : toStepError(err);
    });
    const pending: PendingTask = { result, controller };
    this.#pending.add(pending);
    const settled = (): void => {
      signal.removeEventListener('abort', forward);
      this.#pending.delete(pending);
    };
    result.then(settled, () => {
      settled();
      this.#restartIfStalled();
    });
    return result;
  }

  close(deadline?: AbortSignal): Promise<void> {
    this.#closing ??= this.#close(deadline);
    return this.#closing;
  }

  async #close(deadline: AbortSignal | undefined): Promise<void> {
    if (this.#closeMode === 'drain' && this.#pending.size > 0 && !deadline?.aborted) {
      const timer = new AbortController();
      const timedOut = deadline
        ? new Promise<boolean>((resolve) =>
            deadline.addEventListener('abort', () => resolve(true), { once: true }),
          )
        : sleep(DRAIN_TIMEOUT_MS, true, { ref: false, signal: timer.signal }).catch(() => false);
      const drained = Promise.allSettled([...this.#pending].map((p) => p.result)).then(() => false);
      if (await Promise.race([drained, timedOut])) {
        this.#warn('tasks still running when the drain time ran out; terminating them');
      }
      timer.abort();
    }
    // Terminates every thread; whatever is still running or queued rejects.
    await this.#piscina.destroy();
  }

  #onThreadError(err: Error): void {
    this.#warn(err.message);
    if (this.#started) return;
    // No thread ever started (a broken entry, a missing tsx): piscina would keep the tasks queued
    // forever, so fail them, each with the reason.
    const reason = new Error(`worker pool threads cannot start: ${err.message}`, { cause: err });
    for (const pending of this.#pending) pending.controller.abort(reason);
  }

  /**
   * piscina replaces a thread lost to an abort or a crash only up to `minThreads`: with
   * `minThreads: 0`, queued tasks would wait for the next `run()`. A no-op task makes it start one.
   */
  #restartIfStalled(): void {
    if (this.#closing || this.#piscina.threads.length > 0 || this.#piscina.queueSize === 0) return;
    this.#piscina.run(null, { name: 'ping' }).catch(() => undefined);
  }
}

/**
 * Finds the worker entry next to this module: `worker.js` in the built package; `worker-dev.js`
 * (which loads `worker.ts` through `tsx`) when running from the TypeScript sources.
 */
function resolveEntry(): string {
  for (const name of ['./worker.js', './worker-dev.js']) {
    const url = new URL(name, import.meta.url);
    if (existsSync(url)) return url.href;
  }
  throw new Error(`callback-engine worker entry not found next to ${import.meta.url}`);
}
