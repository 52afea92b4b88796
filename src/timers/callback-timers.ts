/**
 * Every timer of the engine's callbacks, in one place. With the memory store: one deadline
 * queue for deadlines, heartbeats, retry waits and retention. With a durable store: one
 * scheduler that asks the store what is due next (the due time is a column of the callback's
 * row, written with its commit), and nothing per callback in the heap.
 *
 * It knows callbacks only by the few fields it reads ({@link TimedRuntime}, {@link TimedRecord});
 * what a timer that fires means is its owner's (see {@link TimerHandlers}).
 *
 * @module
 */

import type { Clock } from '../clock.js';
import type { DurableStore } from '../store/store.js';
import { DeadlineQueue, type Deadline } from './deadline-queue.js';
import { StoreScheduler } from './store-scheduler.js';

/** Kinds of deadline in the one deadline queue. */
const DEADLINE = 0;
const HEARTBEAT = 1;
const RETENTION = 2;
const RETRY = 3;

/** What the timers read of a callback's record. */
export interface TimedRecord {
  readonly id: string;
  /** Absolute deadline, ms since epoch, if any. */
  readonly deadlineAt: number | undefined;
  /** Heartbeat window in ms, if any. */
  readonly heartbeatMs: number | undefined;
  /** The step invocation it owes; `at`: a retry waiting for its instant. */
  readonly owed?: { readonly at?: number | undefined } | undefined;
  /** The retention timer of a record retained in memory. */
  timer?: Deadline<unknown> | undefined;
}

/** What the timers read and keep of an active callback's runtime. */
export interface TimedRuntime {
  readonly record: TimedRecord;
  /** When it last heard from outside (the heartbeat window starts there). */
  readonly lastActivity: number;
  deadline: Deadline<unknown> | undefined;
  heartbeat: Deadline<unknown> | undefined;
  /** Memory mode: the deadline that ends the retry wait. */
  retryTimer: Deadline<unknown> | undefined;
  /** A step waiting for its next try. */
  readonly retry: { fire(): void } | undefined;
}

/** What a timer that fires does. */
export interface TimerHandlers<R, C> {
  /** An active callback's deadline or heartbeat passed: end it with `timeout`. */
  timeout(rt: R, reason: 'deadline' | 'heartbeat'): void;
  /** Memory mode: a retained record's retention ended. */
  retained(record: C): void;
  /**
   * Durable mode: the stored row of this callback is due.
   * @returns whether anything was done (so the scheduler knows it is not spinning on it).
   */
  due(id: string): boolean;
}

/**
 * Which of an active callback's times has passed at `now`, if any: its deadline, else its
 * heartbeat window. The one rule for the store's due rows and for reports that reach a
 * callback before its timer ran.
 */
export function overdue(rt: TimedRuntime, now: number): 'deadline' | 'heartbeat' | undefined {
  const { deadlineAt, heartbeatMs } = rt.record;
  if (deadlineAt !== undefined && deadlineAt <= now) return 'deadline';
  if (heartbeatMs !== undefined && rt.lastActivity + heartbeatMs <= now) return 'heartbeat';
  return undefined;
}

/** The deadline queue (memory mode) and the store's scheduler (durable mode). */
export class CallbackTimers<R extends TimedRuntime, C extends TimedRecord> {
  readonly #clock: Clock;
  readonly #handlers: TimerHandlers<R, C>;
  readonly #deadlines: DeadlineQueue<R | C>;
  readonly #scheduler: StoreScheduler | undefined;

  /**
   * @param durable - the durable store whose due-time index is the timer, if any.
   * @param warn - receives what a handler or the store throws.
   */
  constructor(
    clock: Clock,
    durable: DurableStore | undefined,
    handlers: TimerHandlers<R, C>,
    warn: (err: unknown) => void,
  ) {
    this.#clock = clock;
    this.#handlers = handlers;
    this.#deadlines = new DeadlineQueue<R | C>(
      clock,
      (target, kind) => this.#onDeadline(target, kind),
      warn,
    );
    this.#scheduler = durable
      ? new StoreScheduler(clock, durable, (id) => handlers.due(id), warn)
      : undefined;
  }

  /** Arms a new active callback's deadline and heartbeat (memory mode). */
  arm(rt: R): void {
    const record = rt.record;
    if (record.deadlineAt !== undefined)
      rt.deadline = this.#deadlines.schedule(record.deadlineAt, rt, DEADLINE);
    if (record.heartbeatMs !== undefined)
      rt.heartbeat = this.#deadlines.schedule(rt.lastActivity + record.heartbeatMs, rt, HEARTBEAT);
  }

  /** Cancels a callback's deadline and heartbeat (it became terminal). */
  stop(rt: R): void {
    this.#deadlines.cancel(rt.deadline);
    this.#deadlines.cancel(rt.heartbeat);
    rt.deadline = rt.heartbeat = undefined;
  }

  /**
   * Wakes a step's retry wait at `at` (`rt.retry.fire()`). Durable mode: nothing here; the row
   * written with the owed retry carries its instant into the store's due-time index, and the
   * store scheduler wakes it. Memory mode: one entry in the deadline queue.
   */
  armRetry(rt: R, at: number): void {
    if (this.#scheduler && rt.record.owed?.at !== undefined) return;
    this.#deadlines.cancel(rt.retryTimer);
    rt.retryTimer = this.#deadlines.schedule(at, rt, RETRY);
  }

  /** Cancels a retry wait's wake-up (memory mode). */
  disarmRetry(rt: R): void {
    this.#deadlines.cancel(rt.retryTimer);
    rt.retryTimer = undefined;
  }

  /** Removes a retained record at `at` (memory mode). */
  retain(record: C, at: number): void {
    record.timer = this.#deadlines.schedule(at, record, RETENTION);
  }

  /** Cancels a retained record's removal (it leaves now). */
  release(record: C): void {
    this.#deadlines.cancel(record.timer);
    record.timer = undefined;
  }

  /** Durable mode: arms the scheduler at the earliest due time (what passed while down fires now). */
  start(): void {
    this.#scheduler?.start();
  }

  /** Durable mode: re-reads the earliest due time (a commit landed, or the owned shards changed). */
  poke(): void {
    this.#scheduler?.poke();
  }

  /** Stops every timer: nothing fires afterwards. */
  close(): void {
    this.#deadlines.close();
    this.#scheduler?.stop();
  }

  #onDeadline(target: R | C, kind: number): void {
    if (kind === DEADLINE) this.#handlers.timeout(target as R, 'deadline');
    else if (kind === HEARTBEAT) this.#onHeartbeat(target as R);
    else if (kind === RETRY) {
      const rt = target as R;
      rt.retryTimer = undefined;
      rt.retry?.fire();
    } else {
      const record = target as C;
      record.timer = undefined;
      this.#handlers.retained(record);
    }
  }

  #onHeartbeat(rt: R): void {
    const due = rt.lastActivity + rt.record.heartbeatMs!;
    if (due > this.#clock.now()) {
      rt.heartbeat = this.#deadlines.schedule(due, rt, HEARTBEAT);
      return;
    }
    rt.heartbeat = undefined;
    this.#handlers.timeout(rt, 'heartbeat');
  }
}
