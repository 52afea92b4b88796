/**
 * The runtime of one active callback: its XState actor, its serialized
 * mailbox, its timers and waiters. Lives only while the callback is active
 * (and while its mailbox drains); the record outlives it.
 *
 * @module
 */

import type { RetryWait } from '../retry.js';
import type { StoreUnavailableError } from '../errors.js';
import type { CommitBatch, CommitMember } from '../store/group-commit.js';
import type { CallbackData } from '../data.js';
import type { LifecycleRunner } from '../lifecycle/runner.js';
import type { CallbackStatus } from '../lifecycle/statuses.js';
import type { DispatchOutcome, DispatchResult } from '../types.js';
import type { TraceContext } from '../telemetry.js';
import type { Deadline } from '../timers/deadline-queue.js';
import type { CallbackRecord } from './record.js';

/** Someone waiting for a job's answer. */
export interface Follower {
  readonly resolve: (result: DispatchResult) => void;
  readonly reject: (err: Error) => void;
  readonly outcome: DispatchOutcome;
}

/**
 * A follower that becomes a promise only when it has to: when the mailbox
 * answers synchronously (idle mailbox, no async step), {@link Pending.promise}
 * returns an already-settled promise and no executor or closures are made.
 */
export class Pending<T> implements Follower {
  readonly outcome: DispatchOutcome;
  readonly #map: (result: DispatchResult) => T;
  #result: DispatchResult | undefined;
  #error: Error | undefined;
  #resolve: ((value: T) => void) | undefined;
  #reject: ((err: Error) => void) | undefined;

  constructor(outcome: DispatchOutcome, map: (result: DispatchResult) => T) {
    this.outcome = outcome;
    this.#map = map;
  }

  resolve(result: DispatchResult): void {
    if (this.#resolve) this.#resolve(this.#map(result));
    else this.#result = result;
  }

  reject(err: Error): void {
    if (this.#reject) this.#reject(err);
    else this.#error = err;
  }

  /** The promise of the answer; call once, after the job was enqueued. */
  promise(): Promise<T> {
    if (this.#result) return Promise.resolve(this.#map(this.#result));
    if (this.#error) return Promise.reject(this.#error);
    return new Promise<T>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
  }
}

/** A step in flight: started by the mailbox's step runner, kept by its callback's runtime. */
export interface RunningStep {
  readonly status: CallbackStatus;
  /** Aborts the step's signal (once). */
  readonly abort: { abort(reason: unknown): void };
  /** Runs on the worker pool (so `close()` with `pool.close: 'drain'` lets it finish). */
  readonly onPool: boolean;
  /**
   * Set while an asynchronous step is pending: stops waiting for it, as if it had returned
   * nothing (`err` undefined) or failed with `err`, and lets the mailbox move on. Whatever the
   * step does later is ignored. For terminal transitions and `close()`, which must not wait for a
   * step that ignores its abort signal.
   */
  release: ((err?: Error) => void) | undefined;
}

/** One entry of the mailbox. */
export interface Job {
  /**
   * `create`: run the create step; `report`: apply an outside report; `terminal`: run the
   * terminal step and finalize; `read`: answer the current state once the jobs before it are done;
   * `retry`: run a terminal callback's failed final step again (`engine.retryStep()`);
   * `resume`: run the step invocation the callback owes (after a restart or a takeover).
   */
  readonly kind: 'create' | 'report' | 'terminal' | 'read' | 'retry' | 'resume';
  readonly status: CallbackStatus;
  readonly data: CallbackData;
  /** A report's deduplication key: applied once per callback, stored with its effect. */
  readonly dedupKey?: string | undefined;
  /** The key was minted for this very delivery: no earlier report can have it (no lookup). */
  readonly freshKey?: boolean | undefined;
  /**
   * The store had the key when the report was admitted (read then: an asynchronous store's
   * fetched rows are gone by the time a queued job runs). Keys applied since are in memory.
   */
  readonly keyStored?: boolean | undefined;
  /** Who gets the answer once the job (and anything it hands over to) is done. */
  readonly followers: Follower[];
  /** The OpenTelemetry context of the dispatch or create that made the job (when traced). */
  readonly trace?: TraceContext | undefined;
}

/** Runtime state of one active callback. */
export class CallbackRuntime implements CommitMember {
  readonly record: CallbackRecord;
  /**
   * Its live machine (an XState actor when inspected), or `undefined` while passivated (the
   * record holds the state).
   */
  actor: LifecycleRunner | undefined;
  /** Evicted from the live set while busy: passivate once the mailbox drains. */
  evictPending = false;
  /** Mailbox: jobs from `head` on are pending. Allocated on first use: most callbacks are idle. */
  #queue: (Job | undefined)[] | undefined;
  #head = 0;
  /** A job is being processed (possibly awaiting its step). */
  busy = false;
  /** The terminal step ran: the callback waits only for its mailbox to drain before it retires. */
  finalized = false;
  step: RunningStep | undefined;
  /** A step waiting for its next try (the mailbox stays busy meanwhile). */
  retry: RetryWait | undefined = undefined;
  /** Memory mode: the deadline that ends the retry wait. */
  retryTimer: Deadline<unknown> | undefined = undefined;
  /** Settles when the step in flight settles; for `close()`. */
  stepPromise: Promise<unknown> | undefined;
  lastActivity: number;
  /**
   * An upper bound of the JSON size of the merged data (`maxCallbackBytes`), grown by each
   * merged patch's bound and measured exactly only when it passes the limit; `undefined` until known.
   */
  dataBytes: number | undefined;
  deadline: Deadline<unknown> | undefined;
  heartbeat: Deadline<unknown> | undefined;
  waiters: Follower[] | undefined;
  /** Durable mode: the newest batch holding a write of this callback, until it committed. */
  batch: CommitBatch | undefined = undefined;
  /** Durable mode: the store has a row of it (its create committed). */
  committed = false;
  /** Durable mode: its fixed part as written in its row (`undefined`: no row written yet). */
  meta: string | undefined = undefined;
  /**
   * Durable mode: the status, due time and owed flag its row holds once the batches written so
   * far commit (`rowStatus` `undefined`: not known, the next write rewrites them all).
   */
  rowStatus: string | undefined = undefined;
  rowDueAt: number | null = null;
  rowOwed = false;
  /** Durable mode: bytes of its stored snapshot, and of the journal entries written after it. */
  snapshotBytes = 0;
  tailBytes = 0;
  tailEntries = 0;
  /** Admissions that keep it resident while they await the store (see `registry.pin()`). */
  pins = 0;
  /** Durable mode: deduplication keys of reports applied while it is resident. */
  recentKeys: Set<string> | undefined = undefined;
  /** Durable mode: a commit of its state failed; it is dropped once its mailbox drains. */
  invalid: StoreUnavailableError | undefined = undefined;

  constructor(record: CallbackRecord, now: number) {
    this.record = record;
    this.lastActivity = now;
    this.dataBytes = undefined;
  }

  /** Number of pending jobs. */
  get pending(): number {
    return this.#queue ? this.#queue.length - this.#head : 0;
  }

  push(job: Job): void {
    (this.#queue ??= []).push(job);
  }

  /** Puts a job before every pending one (terminal transitions jump the queue). */
  pushFront(job: Job): void {
    if (this.#queue && this.#head > 0) this.#queue[--this.#head] = job;
    else (this.#queue ??= []).unshift(job);
  }

  shift(): Job | undefined {
    const queue = this.#queue;
    if (!queue) return undefined;
    if (this.#head >= queue.length) {
      this.#queue = undefined;
      this.#head = 0;
      return undefined;
    }
    const job = queue[this.#head];
    queue[this.#head++] = undefined;
    return job;
  }

  /** Removes and returns every pending job. */
  drainAll(): Job[] {
    const jobs = (this.#queue ?? []).slice(this.#head).filter((j): j is Job => j !== undefined);
    this.#queue = undefined;
    this.#head = 0;
    return jobs;
  }
}
