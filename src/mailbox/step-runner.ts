/**
 * Runs one step of a callback: in process or on the worker pool, with its
 * lazily made AbortSignal and its time limit (`stepTimeout`). The mailbox
 * decides what a step's result means; this file only runs it and says how it
 * ended, once.
 *
 * @module
 */

import { buildAttributes } from '../answer.js';
import type { Clock, TimerHandle } from '../clock.js';
import type { CallbackData, DataVersion } from '../data.js';
import { StepTimeoutError } from '../errors.js';
import { toStepError } from '../thrown.js';
import type { CallbackStatus } from '../lifecycle/statuses.js';
import type { ResolvedAnchor } from '../options/anchor.js';
import type { LazyPool } from '../pool/lazy-pool.js';
import { isWorkerStep } from '../pool/worker-step.js';
import type { RunningStep } from '../registry/callback-runtime.js';
import type { CallbackAttributes, StepEntry, StepInput, StepOutput } from '../types.js';

/** Whether `v` is a thenable; reading `then` may throw (a hostile object), which the caller catches. */
const isPromiseLike = (v: unknown): v is PromiseLike<unknown> =>
  typeof v === 'object' && v !== null && typeof (v as { then?: unknown }).then === 'function';

/**
 * The abort signal of a step, made only if the step reads it: most steps never
 * do, and an `AbortController` per step is a measurable cost on the hot path.
 */
export class LazyAbort {
  #controller: AbortController | undefined;
  #reason: unknown;
  #aborted = false;

  /** The step's signal; already aborted if the step was aborted before asking. */
  get signal(): AbortSignal {
    if (!this.#controller) {
      this.#controller = new AbortController();
      if (this.#aborted) this.#controller.abort(this.#reason);
    }
    return this.#controller.signal;
  }

  /** Aborts the step (once). */
  abort(reason: unknown): void {
    if (this.#aborted) return;
    this.#aborted = true;
    this.#reason = reason;
    this.#controller?.abort(reason);
  }
}

/**
 * What a step receives, made once per step: a class, so its lazy parts (`data`, `attributes`,
 * `signal`) are getters on the prototype rather than three closures and accessors per step.
 */
class StepCall implements StepInput {
  readonly status: CallbackStatus;
  readonly token: string;
  readonly id: string;
  readonly report: CallbackData;
  readonly parentToken: string | undefined;
  readonly attempt: number;
  readonly #record: StepHost['record'];
  readonly #version: DataVersion;
  readonly #anchor: ResolvedAnchor;
  readonly #abort: LazyAbort;

  constructor(
    record: StepHost['record'],
    anchor: ResolvedAnchor,
    status: CallbackStatus,
    report: CallbackData,
    abort: LazyAbort,
    attempt: number,
  ) {
    this.status = status;
    this.token = record.token;
    this.id = record.id;
    this.report = report;
    this.parentToken = record.parentToken;
    this.attempt = attempt;
    this.#record = record;
    this.#version = record.data;
    this.#anchor = anchor;
    this.#abort = abort;
  }

  /** The merged data when the step started (frozen; built on first read). */
  get data(): CallbackData {
    return this.#version.value;
  }

  get attributes(): CallbackAttributes {
    const r = this.#record;
    return buildAttributes(
      this.#anchor.attributes,
      r.status,
      r.token,
      r.id,
      this.#version.value,
      r.parentToken,
    );
  }

  get signal(): AbortSignal {
    return this.#abort.signal;
  }

  /** The plain fields, so `JSON.stringify(cb)` and logging show what the step got. */
  toJSON(): Omit<StepInput, 'signal'> {
    const { status, token, id, data, report, parentToken, attributes, attempt } = this;
    return { status, token, id, data, report, parentToken, attributes, attempt };
  }
}

/** What a step runs for: a callback's runtime (its record, and where its running step is kept). */
export interface StepHost {
  readonly record: {
    readonly id: string;
    readonly token: string;
    readonly status: CallbackStatus;
    readonly data: DataVersion;
    readonly parentToken: string | undefined;
  };
  step: RunningStep | undefined;
}

/**
 * How a step ended: `ok` with its output, or not with an `Error` saying why. Whatever the step
 * threw, rejected with or was stopped for arrives as a safe, bounded `Error` (see
 * `toStepError`): its message is a string of at most `MAX_STEP_ERROR_CHARS` characters, and
 * reading it never throws.
 */
export type StepSettle = (ok: boolean, value: unknown) => void;

/** Runs steps with their signal and time limit. */
export class StepRunner {
  readonly #clock: Clock;
  readonly #warn: (err: unknown) => void;
  /** The worker pool, loaded on the first worker step so the root import stays light. */
  readonly pool: LazyPool;

  constructor(clock: Clock, pool: LazyPool, warn: (err: unknown) => void) {
    this.#clock = clock;
    this.pool = pool;
    this.#warn = warn;
  }

  /**
   * Runs `step` for `status` on `rt` (recorded as `rt.step` while it runs) and calls `settle`
   * once. Returns a promise only when the step is asynchronous; it resolves once the step
   * settled, timed out, or was released by a terminal transition or `close()`.
   * `attempt`: which try this is (1 for the first; retries are the mailbox's).
   */
  run(
    rt: StepHost,
    anchor: ResolvedAnchor,
    step: Exclude<StepEntry, false>,
    status: CallbackStatus,
    report: CallbackData,
    settle: StepSettle,
    attempt = 1,
  ): Promise<void> | undefined {
    const abort = new LazyAbort();
    const running: RunningStep = { status, abort, onPool: isWorkerStep(step), release: undefined };
    rt.step = running;
    const input = new StepCall(rt.record, anchor, status, report, abort, attempt);
    const done: StepSettle = (ok, value) => {
      if (rt.step === running) rt.step = undefined;
      // Converted here, once: the mailbox only ever sees a bounded Error that is safe to read.
      settle(ok, ok ? value : toStepError(value));
    };
    let out: StepOutput | Promise<StepOutput>;
    let thenable: boolean;
    try {
      out = isWorkerStep(step) ? this.pool.run(step, input, abort.signal) : step(input);
      thenable = isPromiseLike(out);
    } catch (err) {
      return void done(false, err);
    }
    if (!thenable) return void done(true, out);
    return this.#await(running, out as PromiseLike<StepOutput>, anchor, done);
  }

  /**
   * Waits for a pending step, at most the anchor's `stepTimeout` (one timer, armed only for
   * steps that return a pending promise). Only the first of settle, time-out or release counts.
   */
  #await(
    running: RunningStep,
    out: PromiseLike<StepOutput>,
    anchor: ResolvedAnchor,
    settle: StepSettle,
  ): Promise<void> {
    const clock = this.#clock;
    return new Promise<void>((resolve) => {
      let timer: TimerHandle;
      let armed = false;
      let open = true;
      const finish = (ok: boolean, value: unknown): void => {
        if (!open) return;
        open = false;
        running.release = undefined;
        if (armed) clock.clearTimeout(timer);
        try {
          settle(ok, value);
        } catch (err) {
          this.#warn(err);
        }
        resolve();
      };
      running.release = (err) => finish(err === undefined, err);
      try {
        out.then(
          (v) => finish(true, v),
          (e: unknown) => finish(false, e),
        );
      } catch (err) {
        // A hostile thenable whose `then` throws: the step failed with that.
        finish(false, err);
      }
      if (open && anchor.stepTimeoutMs !== false) {
        armed = true;
        timer = clock.setTimeout(() => {
          armed = false;
          const reason = new StepTimeoutError(running.status, String(anchor.stepTimeout));
          running.abort.abort(reason);
          finish(false, reason);
        }, anchor.stepTimeoutMs);
      }
    });
  }
}
