/**
 * The runtime of one active callback: its XState actor, its serialized
 * mailbox, its timers and waiters. Lives only while the callback is active
 * (and while its mailbox drains); the record outlives it.
 *
 * @module
 */

import type { Actor } from 'xstate';
import type { CallbackData } from '../data.js';
import type { LifecycleMachine } from '../lifecycle/machine.js';
import type { CallbackStatus } from '../lifecycle/statuses.js';
import type { DispatchOutcome, DispatchResult } from '../types.js';
import type { Deadline } from './deadline-queue.js';
import type { CallbackRecord } from './record.js';

/** Someone waiting for a job's answer. */
export interface Follower {
  readonly resolve: (result: DispatchResult) => void;
  readonly reject: (err: Error) => void;
  readonly outcome: DispatchOutcome;
}

/** One entry of the mailbox. */
export interface Job {
  /**
   * `create`: run the create step; `report`: apply an outside report; `terminal`: run the
   * terminal step and finalize; `read`: answer the current state once the jobs before it are done.
   */
  readonly kind: 'create' | 'report' | 'terminal' | 'read';
  readonly status: CallbackStatus;
  readonly data: CallbackData;
  /** Who gets the answer once the job (and anything it hands over to) is done. */
  readonly followers: Follower[];
}

/** A step in flight. */
export interface RunningStep {
  readonly status: CallbackStatus;
  readonly controller: AbortController;
}

/** Runtime state of one active callback. */
export class CallbackRuntime {
  readonly record: CallbackRecord;
  readonly actor: Actor<LifecycleMachine>;
  /** Mailbox: jobs from `head` on are pending. */
  #queue: (Job | undefined)[] = [];
  #head = 0;
  /** A job is being processed (possibly awaiting its step). */
  busy = false;
  /** The terminal step ran: the callback waits only for its mailbox to drain before it retires. */
  finalized = false;
  step: RunningStep | undefined;
  /** Settles when the step in flight settles; for `close()`. */
  stepPromise: Promise<unknown> | undefined;
  lastActivity: number;
  deadline: Deadline | undefined;
  heartbeat: Deadline | undefined;
  waiters: Follower[] | undefined;

  constructor(record: CallbackRecord, actor: Actor<LifecycleMachine>, now: number) {
    this.record = record;
    this.actor = actor;
    this.lastActivity = now;
  }

  /** Number of pending jobs. */
  get pending(): number {
    return this.#queue.length - this.#head;
  }

  push(job: Job): void {
    this.#queue.push(job);
  }

  /** Puts a job before every pending one (terminal transitions jump the queue). */
  pushFront(job: Job): void {
    if (this.#head > 0) this.#queue[--this.#head] = job;
    else this.#queue.unshift(job);
  }

  shift(): Job | undefined {
    if (this.#head >= this.#queue.length) {
      if (this.#head > 0) {
        this.#queue = [];
        this.#head = 0;
      }
      return undefined;
    }
    const job = this.#queue[this.#head];
    this.#queue[this.#head++] = undefined;
    return job;
  }

  /** Removes and returns every pending job. */
  drainAll(): Job[] {
    const jobs = this.#queue.slice(this.#head).filter((j): j is Job => j !== undefined);
    this.#queue = [];
    this.#head = 0;
    return jobs;
  }
}
