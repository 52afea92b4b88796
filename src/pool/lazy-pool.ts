/**
 * The engine's worker pool, loaded on the first worker step so that the root
 * import (and engines without worker steps) never load piscina.
 *
 * @module
 */

import type { WarnFn } from '../log.js';
import type { StepInput, StepOutput } from '../types.js';
import type { PoolOptions, StepRunner, WorkerStep } from './worker-step.js';

/** A {@link StepRunner} created on first use. */
export class LazyPool {
  readonly #options: Readonly<Required<PoolOptions>>;
  #loading: Promise<StepRunner> | undefined;
  #ready: StepRunner | undefined;

  readonly #log: WarnFn | undefined;

  constructor(options: Readonly<Required<PoolOptions>>, log?: WarnFn) {
    this.#options = options;
    this.#log = log;
  }

  /** Whether the pool's queue is full (never, before it was loaded). */
  get saturated(): boolean {
    return this.#ready?.saturated ?? false;
  }

  /** Threads, tasks in flight and tasks waiting for a thread; `undefined` before the pool loaded. */
  get stats(): { threads: number; pending: number; queued: number } | undefined {
    const p = this.#ready;
    return p && { threads: p.threads, pending: p.pending, queued: p.queued };
  }

  /** Runs a worker step with the structured-cloneable part of the step input. */
  run(step: WorkerStep, input: StepInput, signal: AbortSignal): Promise<StepOutput> {
    const { status, token, id, data, report, parentToken, attributes, attempt } = input;
    const cloned = { status, token, id, data, report, parentToken, attributes, attempt };
    // Once loaded, call the pool in the same tick, so `saturated` counts every task at once.
    if (this.#ready) return this.#ready.run(step, cloned, signal);
    this.#loading ??= import('./worker-pool.js').then(
      (m) => (this.#ready = m.createWorkerPool(this.#options, this.#log)),
    );
    return this.#loading.then((pool) => pool.run(step, cloned, signal));
  }

  /**
   * Drains or destroys the pool, if it was ever loaded.
   * @param deadline - aborted when draining must stop: the pool is destroyed then.
   */
  async close(deadline?: AbortSignal): Promise<void> {
    if (this.#loading) await (await this.#loading).close(deadline);
  }
}
