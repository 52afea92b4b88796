/**
 * Worker-step descriptors (spec 6). Light on purpose: importing this does not
 * load piscina; the engine starts its pool the first time a worker step runs.
 *
 * @module
 */

import { pathToFileURL } from 'node:url';
import { InvalidArgumentError } from '../errors.js';
import { checkKnownKeys } from '../keys.js';
import type { CallbackData } from '../data.js';
import type { CallbackStatus } from '../lifecycle/statuses.js';
import { checkRetryPolicy, type WorkerStepOptions } from '../retry.js';
import type { CallbackAttributes, StepOutput, WorkerStep } from '../types.js';

export type { WorkerStep } from '../types.js';
export type { WorkerStepOptions } from '../retry.js';

/** What a worker step's function receives: the step input without the signal (structured-cloned). */
export interface WorkerStepInput {
  readonly status: CallbackStatus | 'notFound';
  readonly token: string;
  readonly id: string;
  readonly data: CallbackData;
  /** The data of the report that resumed the anchor. */
  readonly report: CallbackData;
  readonly parentToken: string | undefined;
  readonly attributes: CallbackAttributes;
  /** Which try of this step this is: 1 for the first, 2 for the first retry. */
  readonly attempt: number;
}

/** Runs worker steps; the engine owns one, created on first use. */
export interface StepRunner {
  /**
   * Runs `step` with `input` on a worker thread. Never refuses for capacity: admission
   * happens earlier, when the engine checks {@link StepRunner.saturated} before applying a report.
   */
  run(step: WorkerStep, input: WorkerStepInput, signal: AbortSignal): Promise<StepOutput>;
  /** Whether the queue is full, so a new dispatch should be refused. */
  readonly saturated: boolean;
  /** Worker threads running now. */
  readonly threads: number;
  /** Tasks accepted and not settled (running or waiting for a thread). */
  readonly pending: number;
  /** Tasks waiting for a thread. */
  readonly queued: number;
  /**
   * Drains or destroys the pool, as configured. Idempotent: every call returns the same promise.
   * @param deadline - when it aborts, draining stops and the threads are terminated.
   */
  close(deadline?: AbortSignal): Promise<void>;
}

/** Options of the engine's worker pool (`createCallbackEngine({ pool })`). */
export interface PoolOptions {
  /** @default 1 */
  minThreads?: number;
  /** @default the number of CPUs, at least 1 */
  maxThreads?: number;
  /** Ms an idle thread is kept before it exits. @default 30000 */
  idleTimeoutMs?: number;
  /** Tasks that may wait for a thread; beyond it dispatches are refused with `CBE_ERR_POOL_SATURATED`. @default 1024 */
  maxQueue?: number;
  /** On `engine.close()`: `'drain'` finishes queued tasks, `'destroy'` terminates threads at once. @default 'drain' */
  close?: 'drain' | 'destroy';
}

/**
 * Declares a step that runs on the worker-thread pool.
 *
 * @param module - the step module: a `URL` (usually `new URL('./steps/score.js', import.meta.url)`) or an absolute path.
 * @param exportName - the export to call with the step input. @default 'default'
 * @param options - `retry`: this step's own retry policy, or `false` for none (else the anchor's applies).
 * @returns a descriptor to put in an anchor's `next` map.
 * @throws {@link InvalidArgumentError} for a relative path, an empty export name or a bad retry policy.
 * @example
 * ```ts
 * engine.anchor('ocr', { next: { complete: workerStep(new URL('./steps/score.js', import.meta.url), 'score') } });
 * const upload = workerStep(new URL('./steps/upload.js', import.meta.url), 'upload', {
 *   retry: { attempts: 3, backoff: 'PT5S' },
 * });
 * ```
 */
export function workerStep(
  module: URL | string,
  exportName = 'default',
  options?: WorkerStepOptions,
): WorkerStep {
  let href: string;
  if (module instanceof URL) href = module.href;
  else if (typeof module === 'string' && module.startsWith('file:')) href = new URL(module).href;
  else if (typeof module === 'string' && module.startsWith('/')) href = pathToFileURL(module).href;
  else {
    throw new InvalidArgumentError(
      `workerStep module must be a URL or an absolute path (got ${JSON.stringify(String(module))})`,
    );
  }
  if (typeof exportName !== 'string' || exportName.length === 0) {
    throw new InvalidArgumentError('workerStep exportName must be a non-empty string');
  }
  if (options === undefined) return Object.freeze({ kind: 'worker', module: href, exportName });
  if (typeof options !== 'object' || options === null)
    throw new InvalidArgumentError('workerStep options must be an object');
  checkKnownKeys('workerStep options', options, ['retry']);
  const retry = options.retry;
  if (retry === undefined) return Object.freeze({ kind: 'worker', module: href, exportName });
  if (retry !== false) checkRetryPolicy('workerStep options.retry', retry);
  return Object.freeze({
    kind: 'worker',
    module: href,
    exportName,
    retry: retry === false ? false : Object.freeze({ ...retry }),
  });
}

/** Whether a step entry is a worker step. */
export function isWorkerStep(step: unknown): step is WorkerStep {
  return (
    typeof step === 'object' && step !== null && (step as { kind?: unknown }).kind === 'worker'
  );
}
