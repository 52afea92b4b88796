/**
 * `retryStep()`: a terminal callback's failed final step (its `complete` step threw, say) runs
 * again through the callback's mailbox, so it never overlaps another step of it. A retained
 * callback (no longer resident) gets a stand-in mailbox, shared by concurrent retries.
 *
 * @module
 */

import type { CallbackData } from '../data.js';
import { EMPTY_DATA } from '../data.js';
import { NothingToRetryError } from '../errors.js';
import { isTerminal, lookupStep } from '../lifecycle/statuses.js';
import { CallbackRuntime, type Job } from '../registry/callback-runtime.js';
import type { CallbackRecord } from '../registry/record.js';
import type { DispatchResult } from '../types.js';
import type { MailboxCore } from './core.js';
import type { OwedSteps } from './owed-steps.js';

/** Runs failed final steps again. */
export class RetryStep {
  readonly #c: MailboxCore;
  readonly #owed: OwedSteps;
  /** Appends a job to a callback's mailbox (the processor's). */
  readonly #enqueue: (rt: CallbackRuntime, job: Job) => void;
  /** Retained callbacks whose failed final step is being run again: their stand-in mailbox. */
  readonly #retrying = new Map<string, CallbackRuntime>();

  constructor(
    core: MailboxCore,
    owed: OwedSteps,
    enqueue: (rt: CallbackRuntime, job: Job) => void,
  ) {
    this.#c = core;
    this.#owed = owed;
    this.#enqueue = enqueue;
  }

  /**
   * Runs a terminal callback's failed final step again (its `complete` step threw, say), through
   * its mailbox so it never overlaps another step of it. `rt` is its runtime while it is still
   * resident; a retained callback gets a stand-in mailbox, shared by concurrent retries.
   * @returns the answer once the step settled and its effect is committed: without `stepError`
   *   if it succeeded (its output merged), with the new one if it failed again.
   * @throws (rejects) {@link NothingToRetryError} if there is nothing to retry.
   */
  start(
    rt: CallbackRuntime | undefined,
    record: CallbackRecord,
    lastActivity: number | undefined,
  ): Promise<DispatchResult> {
    const c = this.#c;
    const wait = rt?.retry;
    if (rt && wait) {
      // A step waiting for its next try (`retry` option): the try runs now; answered after it.
      const answer = new Promise<DispatchResult>((resolve, reject) =>
        this.#enqueue(rt, {
          kind: 'read',
          status: rt.record.status,
          data: EMPTY_DATA,
          followers: [{ resolve, reject, outcome: 'read' }],
        }),
      );
      wait.fire();
      return answer;
    }
    const why = nothingToRetry(record);
    if (why !== undefined) {
      if (rt) c.registry.settle(rt);
      return Promise.reject(new NothingToRetryError(record.id, why));
    }
    let host = rt ?? this.#retrying.get(record.id);
    if (!host) {
      // Not in the registry: answered and written like a resident callback, but never retired.
      host = new CallbackRuntime(record, lastActivity ?? c.o.clock.now());
      host.committed = true;
      host.meta = '';
      this.#retrying.set(record.id, host);
    }
    const target = host;
    return new Promise<DispatchResult>((resolve, reject) =>
      this.#enqueue(target, {
        kind: 'retry',
        status: record.status,
        data: EMPTY_DATA,
        followers: [{ resolve, reject, outcome: 'applied' }],
      }),
    );
  }

  run(rt: CallbackRuntime, job: Job): Promise<void> | undefined {
    const c = this.#c;
    const record = rt.record;
    const status = record.status;
    const anchor = c.anchors.get(record.anchor);
    const step = anchor && lookupStep(anchor.next, status);
    // Checked again in turn: an earlier retry may have succeeded meanwhile.
    const why =
      nothingToRetry(record) ??
      (step ? undefined : `anchor "${record.anchor}" has no "${status}" step now`);
    const finish = (): void => {
      if (this.#retrying.get(record.id) === rt && rt.pending === 0)
        this.#retrying.delete(record.id);
    };
    if (why !== undefined || !anchor || !step) {
      finish();
      const err = new NothingToRetryError(record.id, why ?? 'nothing to run');
      for (const f of job.followers) f.reject(err);
      return undefined;
    }
    // The step sees the report that ended the callback, as the first time.
    const report =
      record.terminalReport === undefined
        ? EMPTY_DATA
        : (JSON.parse(record.terminalReport) as CallbackData);
    c.record(rt, {
      kind: 'stepRetried',
      owed: { step: status, attempt: 1, report },
    });
    return this.#owed.runOwed(rt, job, () => {
      finish();
      c.answerJob(rt, job);
    });
  }
}

/** Why a callback has no failed step `retryStep()` can run again, or `undefined` if it has one. */
function nothingToRetry(record: CallbackRecord): string | undefined {
  if (!isTerminal(record.status)) return `it is still active (status "${record.status}")`;
  const err = record.stepError;
  if (err === undefined) return 'its steps did not fail';
  if (err.status !== record.status)
    return `its failed "${err.status}" step is not the step of its final status "${record.status}"`;
  return undefined;
}
