/**
 * Works through each callback's mailbox: jobs one at a time in arrival order.
 * For each report the machine decides (applied, ignored, or nothing for a
 * settled callback), the decision becomes a journal entry (applied to the
 * record and appended to the turn's group commit), and the step it owes runs
 * (in process or on the worker pool); the step's outcome is the next entry.
 * Answers are released only once the entries they report are committed.
 *
 * Every step is an owed invocation: the entry that owes it records it, the
 * entry that ends it (`stepCompleted`, `stepFailed`, or a terminal transition
 * that pre-empts it) clears it, and one owed when the engine stopped runs
 * again at the next start (`resume` jobs), before any new report. Retries are
 * owed invocations with an instant. Terminal transitions (complete, error,
 * cancel, timeout, orphan) jump the queue and orphan the callback's active
 * subtree in the same turn, so a parent's end and its children's orphaning
 * are one commit.
 *
 * @module
 */

import { Answer, buildAttributes, notFoundAnswer } from '../answer.js';
import {
  admitPatch,
  canonicalJson,
  DataVersion,
  EMPTY_DATA,
  ingestData,
  patchBytesBound,
  type CallbackData,
} from '../data.js';
import { EngineClosedError, NothingToRetryError, toError } from '../errors.js';
import type { HistoryKind } from '../history.js';
import { STATUS_EVENT, statusOf } from '../lifecycle/machine.js';
import {
  isTerminal,
  lookupStep,
  type CallbackStatus,
  type DispatchStatus,
  type TerminalStatus,
} from '../lifecycle/statuses.js';
import { applyEntry, type JournalEntry, type OwedInvocation } from '../mailbox/journal.js';
import { StepRunner } from '../mailbox/step-runner.js';
import type { ResolvedAnchor, ResolvedEngineOptions } from '../options.js';
import { LazyPool } from '../pool/lazy-pool.js';
import { isWorkerStep } from '../pool/worker-step.js';
import { retryDelayMs, retryPolicyFor, type RetryWait } from '../retry.js';
import { Telemetry } from '../telemetry.js';
import type { DispatchResult, StepEntry, StepInput, StepOutput } from '../types.js';
import { CallbackRuntime, type Follower, type Job } from './callback-runtime.js';
import type { EventHub } from './event-hub.js';
import type { CallbackRecord } from './record.js';
import type { CallbackRegistry } from './registry.js';
import type { Stats } from './stats.js';

/** What the processor needs from the engine. */
export interface ProcessorDeps {
  readonly options: ResolvedEngineOptions;
  readonly anchors: ReadonlyMap<string, ResolvedAnchor>;
  readonly registry: CallbackRegistry;
  readonly stats: Stats;
  readonly events: EventHub;
}

/**
 * Longest step error message recorded. The step runner already cuts what a step throws to a
 * documented size (`toStepError`); this bound only guards what reaches the journal otherwise.
 */
const MAX_STEP_ERROR_LENGTH = 4096;

/** A step failure's message, whatever was thrown: never throws, bounded. */
function stepErrorMessage(value: unknown): string {
  const text = toError(value).message;
  return text.length <= MAX_STEP_ERROR_LENGTH ? text : `${text.slice(0, MAX_STEP_ERROR_LENGTH)}…`;
}

/** What an entry carries besides what every entry has (its seq, time and resulting status). */
type EntryFields = Omit<JournalEntry, 'seq' | 'at' | 'status' | 'kind'> & {
  readonly kind: HistoryKind;
  readonly status?: CallbackStatus;
};

/** Why a terminal transition happens: the fields of the entry that records it. */
export type EndCause = Omit<EntryFields, 'status' | 'data' | 'merge' | 'owed' | 'terminalReport'>;

/** Applies jobs to callbacks, one at a time per callback. */
export class MailboxProcessor {
  readonly #o: ResolvedEngineOptions;
  readonly #anchors: ReadonlyMap<string, ResolvedAnchor>;
  readonly #registry: CallbackRegistry;
  readonly #stats: Stats;
  readonly #events: EventHub;
  /** Runs steps (in process or on the worker pool) with their signal and time limit. */
  readonly #steps: StepRunner;
  /** The worker pool, loaded on the first worker step so the root import stays light. */
  readonly #pool: LazyPool;
  /** Retained callbacks whose failed final step is being run again: their stand-in mailbox. */
  readonly #retrying = new Map<string, CallbackRuntime>();
  /** Anchors already warned about a step failing after its callback was terminal. */
  readonly #warnedAnchors = new Set<string>();
  #closed = false;
  /** `close()`'s grace period ended: no step starts any more (what is owed stays owed). */
  #cutOff = false;

  constructor(deps: ProcessorDeps) {
    this.#o = deps.options;
    this.#anchors = deps.anchors;
    this.#registry = deps.registry;
    this.#stats = deps.stats;
    this.#events = deps.events;
    this.#pool = new LazyPool(deps.options.pool, deps.events.log);
    this.#steps = new StepRunner(deps.options.clock, this.#pool, deps.events.warn);
  }

  /** The worker pool's load, once it was started. */
  get poolStats(): { threads: number; pending: number; queued: number } | undefined {
    return this.#pool.stats;
  }

  /** Whether a report with `status` would run a worker step while the pool's queue is full. */
  wouldSaturate(rt: CallbackRuntime, status: CallbackStatus): boolean {
    return (
      this.#pool.saturated &&
      isWorkerStep(lookupStep(this.#anchors.get(rt.record.anchor)!.next, status))
    );
  }

  /** Appends a job to a callback's mailbox and works through it if the callback is idle. */
  enqueue(rt: CallbackRuntime, job: Job): void {
    rt.push(job);
    if (!rt.busy) this.#drain(rt);
  }

  // ---- the journal ----------------------------------------------------------------------------

  /**
   * Records one entry: built from the machine's decision, applied to the record (the machine's
   * data, when it merged the report itself, is passed as `data`), appended to the journal.
   */
  #record(rt: CallbackRuntime, fields: EntryFields, data?: DataVersion): JournalEntry {
    const record = rt.record;
    const from = record.status;
    const entry = {
      ...fields,
      seq: record.head + 1,
      at: this.#o.clock.now(),
      status: fields.status ?? from,
    } as JournalEntry;
    applyEntry(record, entry, data);
    this.#registry.append(rt, entry);
    if (entry.status !== from) {
      this.#stats.move(record.anchor, from, entry.status);
      this.#events.emit('transitioned', record, { from });
    }
    return entry;
  }

  /** The invocation of `status`'s step for this report, if the anchor has a step for it. */
  #owes(
    record: CallbackRecord,
    status: CallbackStatus,
    report: CallbackData,
  ): OwedInvocation | undefined {
    const anchor = this.#anchors.get(record.anchor);
    const step = anchor && lookupStep(anchor.next, status);
    return step ? { step: status, attempt: 1, report } : undefined;
  }

  /**
   * The `created` entry of a new callback (the registry appends it with the row's insert): it
   * owes the anchor's `create` step, if there is one.
   */
  createdEntry(record: CallbackRecord, data: CallbackData): JournalEntry {
    const owed = this.#owes(record, 'create', EMPTY_DATA);
    const entry: JournalEntry = {
      seq: 1,
      at: record.createdAt,
      kind: 'created',
      status: 'create',
      data,
      merge: true,
      ...(owed ? { owed } : {}),
    };
    record.owed = owed;
    record.head = 1;
    return entry;
  }

  // ---- answers ------------------------------------------------------------------------------

  /** The answer for a callback as it is now. */
  answer(record: CallbackRecord): Answer {
    const anchor = this.#anchors.get(record.anchor);
    return new Answer(
      record.status,
      record.token,
      record.data,
      anchor?.attributes,
      record.id,
      record.parentToken,
      record.stepError,
    );
  }

  /** Answer to a report reaching a terminal callback: a replay of its terminal report, or a conflict. */
  settledAnswer(
    record: CallbackRecord,
    status: CallbackStatus,
    data: CallbackData,
  ): DispatchResult {
    const replay = status === record.status && record.terminalReport === canonicalJson(data);
    return { answer: this.answer(record), outcome: replay ? 'replayed' : 'conflict' };
  }

  /**
   * A signed token whose record is gone (or unknown): resume the anchor on `notFound`.
   * `anchorName` and `id` come from the token; both are `undefined` for a malformed or forged one.
   */
  notFound(
    token: string,
    anchorName: string | undefined,
    id: string | undefined,
    reported: string,
  ): Promise<DispatchResult> {
    // Malformed and forged tokens were reported as `rejected`; a signed one whose record is gone is a dispatch.
    if (anchorName !== undefined) {
      this.#events.emitRaw({
        type: 'dispatched',
        at: this.#o.clock.now(),
        anchor: anchorName,
        reported,
        outcome: 'notFound',
        status: 'notFound',
      });
    }
    const anchor = anchorName === undefined ? undefined : this.#anchors.get(anchorName);
    const step = anchor && lookupStep(anchor.next, 'notFound');
    const answer = notFoundAnswer(token);
    if (!step || !anchor) return Promise.resolve({ answer, outcome: 'notFound' });
    const input: StepInput = {
      status: 'notFound',
      token,
      id: id ?? '',
      data: answer.data,
      report: EMPTY_DATA,
      parentToken: undefined,
      attributes: buildAttributes(
        anchor.attributes,
        'notFound',
        token,
        undefined,
        answer.data,
        undefined,
      ),
      signal: new AbortController().signal,
      attempt: 1,
    };
    return Promise.resolve()
      .then(() => (isWorkerStep(step) ? this.#pool.run(step, input, input.signal) : step(input)))
      .then(
        (out) => ({
          answer: new Answer(
            'notFound',
            token,
            DataVersion.of(this.#safeIngest(out) ?? EMPTY_DATA),
            anchor.attributes,
          ),
          outcome: 'notFound' as const,
        }),
        () => ({ answer, outcome: 'notFound' as const }),
      );
  }

  #safeIngest(out: StepOutput): CallbackData | undefined {
    try {
      return out ? ingestData('step output', out, this.#o.maxDataBytes) : undefined;
    } catch {
      return undefined;
    }
  }

  /**
   * Answers followers once the callback's entries so far are committed (at once in memory
   * mode): nothing is answered as done before it is in the store.
   */
  #resolve(rt: CallbackRuntime, followers: readonly Follower[], result: DispatchResult): void {
    if (followers.length === 0) return;
    if (!this.#registry.durable) {
      for (const f of followers) f.resolve(result);
      return;
    }
    this.#registry.release(
      rt,
      () => {
        for (const f of followers) f.resolve(result);
      },
      (err) => {
        for (const f of followers) f.reject(err);
      },
    );
  }

  /** Answers a job's followers with the callback as it is, once its entries are committed. */
  #answerJob(rt: CallbackRuntime, job: Job): void {
    const followers = job.followers;
    if (followers.length === 0) return;
    const answer = this.answer(rt.record);
    if (!this.#registry.durable) {
      for (const f of followers) f.resolve({ answer, outcome: f.outcome });
      return;
    }
    this.#registry.release(
      rt,
      () => {
        for (const f of followers) f.resolve({ answer, outcome: f.outcome });
      },
      (err) => {
        for (const f of followers) f.reject(err);
      },
    );
  }

  /** A callback dropped after a failed commit: every report queued on it gets the store error. */
  invalidated(rt: CallbackRuntime, err: Error): void {
    for (const job of rt.drainAll()) for (const f of job.followers) f.reject(err);
  }

  /** Works through a callback's mailbox if it is idle (after a create's commit barrier). */
  kick(rt: CallbackRuntime): void {
    if (!rt.busy && !this.#closed) this.#drain(rt);
  }

  // ---- the mailbox --------------------------------------------------------------------------

  /** Processes jobs one at a time; pauses while a step is pending and resumes when it settles. */
  #drain(rt: CallbackRuntime): void {
    rt.busy = true;
    for (let job = rt.shift(); job; job = rt.shift()) {
      if (rt.invalid) {
        // A commit of this callback failed: its memory is not the store's; nothing more applies.
        for (const f of job.followers) f.reject(rt.invalid);
        continue;
      }
      let pending: Promise<void> | undefined;
      try {
        pending = this.#process(rt, job);
      } catch (err) {
        for (const f of job.followers) f.reject(toError(err));
      }
      if (pending) return this.#pause(rt, pending);
    }
    rt.busy = false;
    if (rt.finalized && !this.#closed) this.#registry.retire(rt);
    else if (rt.evictPending) this.#registry.passivate(rt);
    this.#registry.settle(rt);
  }

  /** The mailbox waits for `pending` (a step in flight, or waiting for its retry), then goes on. */
  #pause(rt: CallbackRuntime, pending: Promise<void>): void {
    rt.stepPromise = pending;
    const next = () => {
      rt.stepPromise = undefined;
      if (!this.#closed) this.#drain(rt);
      else this.#settleClosed(rt);
    };
    pending.then(next, (err: unknown) => {
      this.#events.warn(err);
      next();
    });
  }

  /**
   * After `close()`: jobs left in a mailbox once its step settled. A terminal job's transition is
   * journaled already (its step, if any, stays owed for the next start): its followers get the
   * callback as it is; reports not yet applied are refused.
   */
  #settleClosed(rt: CallbackRuntime): void {
    const closed = new EngineClosedError();
    for (const job of rt.drainAll()) {
      if (job.kind === 'terminal') this.#answerJob(rt, job);
      else for (const f of job.followers) f.reject(closed);
    }
    rt.busy = false;
  }

  #process(rt: CallbackRuntime, job: Job): Promise<void> | undefined {
    const record = rt.record;
    switch (job.kind) {
      case 'retry':
        return this.#retry(rt, job);
      case 'resume':
        return this.#resume(rt, job);
      case 'terminal':
        return this.#runOwed(rt, job, () => this.#finalize(rt, job));
      case 'create':
        return this.#runOwed(rt, job, () => this.#answerJob(rt, job));
      case 'read':
        return void this.#answerJob(rt, job);
      case 'report':
        break;
    }
    const key = job.dedupKey;
    const seen =
      key !== undefined &&
      !job.freshKey &&
      (job.keyStored === true || this.#registry.hasRecentKey(rt, key));
    if (isTerminal(record.status)) {
      const result = seen
        ? { answer: this.answer(record), outcome: 'replayed' as const }
        : this.settledAnswer(record, job.status, job.data);
      this.#resolve(rt, job.followers, result);
      this.#events.emit('dispatched', record, {
        reported: job.status,
        outcome: result.outcome,
        data: job.data,
      });
      return undefined;
    }
    if (seen) {
      // Applied already (a retry, a redelivery): answered as the callback is, once committed.
      this.#resolve(rt, job.followers, { answer: this.answer(record), outcome: 'replayed' });
      this.#events.emit('dispatched', record, {
        reported: job.status,
        outcome: 'replayed',
        data: job.data,
      });
      return undefined;
    }
    if (isTerminal(job.status)) {
      if (this.admit(rt, job.status, job.data, 'callbackData', job.followers) < 0) return undefined;
      // complete / error / cancel: the transition jumps to the front; this report is answered after its step.
      this.#events.emit('dispatched', record, {
        reported: job.status,
        outcome: 'applied',
        data: job.data,
      });
      this.end(rt, job.status, job.data, job.followers, {
        kind: 'reported',
        reported: job.status as DispatchStatus,
        outcome: 'applied',
        activity: true,
        ...(key !== undefined ? { dedupKey: key } : {}),
      });
      return undefined;
    }
    const patchBytes = this.admit(rt, job.status, job.data, 'callbackData', job.followers);
    if (patchBytes < 0) return undefined;
    const actor = this.#registry.activate(rt);
    const before = actor.getSnapshot();
    actor.send({ type: STATUS_EVENT[job.status as keyof typeof STATUS_EVENT], data: job.data });
    const after = actor.getSnapshot();
    // The machine decides: a report with no transition leaves its snapshot as it was.
    const applied = after !== before;
    const to = statusOf(after.value);
    this.#events.emit('dispatched', record, {
      reported: job.status,
      outcome: applied ? 'applied' : 'ignored',
      data: job.data,
    });
    const owed = applied ? this.#owes(record, to, job.data) : undefined;
    this.#record(
      rt,
      {
        kind: 'reported',
        status: to,
        reported: job.status as DispatchStatus,
        outcome: applied ? 'applied' : 'ignored',
        data: job.data,
        activity: true,
        ...(applied ? { merge: true } : {}),
        ...(owed ? { owed } : {}),
        ...(key !== undefined ? { dedupKey: key } : {}),
      },
      applied ? after.context.data : undefined,
    );
    if (!applied) {
      this.#resolve(rt, job.followers, { answer: this.answer(record), outcome: 'ignored' });
      return undefined;
    }
    if (rt.dataBytes !== undefined) rt.dataBytes += patchBytes;
    return this.#runOwed(rt, job, () => this.#answerJob(rt, job));
  }

  /**
   * `maxCallbackBytes`: refuses a report whose data would make the callback's merged data too
   * large; its followers get `PayloadTooLargeError` and nothing is applied. A report that would be
   * ignored anyway (a late `accept`/`start`) is not refused.
   * @returns the size bound the report's data adds once merged, or -1 if it was refused.
   */
  admit(
    rt: CallbackRuntime,
    status: CallbackStatus,
    patch: CallbackData,
    what: string,
    followers: readonly Follower[],
  ): number {
    const patchBytes = patchBytesBound(patch);
    try {
      rt.dataBytes = admitPatch(
        what,
        rt.record.data,
        rt.dataBytes,
        patch,
        patchBytes,
        this.#o.maxCallbackBytes,
      );
    } catch (err) {
      // A report the machine would ignore (a late accept/start) changes nothing: not refused.
      const event = { type: STATUS_EVENT[status as keyof typeof STATUS_EVENT], data: patch };
      if (!this.#registry.activate(rt).getSnapshot().can(event)) return 0;
      for (const f of followers) f.reject(toError(err));
      this.#events.rejected(toError(err).message);
      return -1;
    }
    return patchBytes;
  }

  // ---- owed invocations -----------------------------------------------------------------------

  /**
   * Runs the step invocation the callback owes (if any), records its outcome, then calls `done`.
   * Returns a promise only when the step is asynchronous or waits for a retry.
   */
  #runOwed(rt: CallbackRuntime, job: Job, done: () => void): Promise<void> | undefined {
    const owed = rt.record.owed;
    if (!owed) return void done();
    const anchor = this.#anchors.get(rt.record.anchor);
    const step = anchor && lookupStep(anchor.next, owed.step);
    if (!anchor || !step) {
      // Owed by an earlier version of the anchor, which had a step here: nothing runs now.
      this.#record(rt, {
        kind: 'stepCompleted',
        step: owed.step,
        attempt: owed.attempt,
        reason: 'no-step',
        owed: null,
        ...this.#endOfTerminalStep(rt.record, owed),
      });
      return void done();
    }
    // Commit, then act: the step starts once the entry that owes it is in the store, so a crash
    // inside the step leaves it owed (it runs again at the next start), never lost.
    if (!this.#registry.durable || rt.batch === undefined)
      return this.#try(rt, anchor, step, owed, job, done);
    return new Promise<void>((resolve) => {
      this.#registry.release(
        rt,
        () => {
          // Pre-empted while committing (a cancel, a deadline), or `close()`'s grace period is
          // over: the step does not start (owed still, it runs at the next start).
          if (rt.record.owed !== owed || this.#cutOff || rt.invalid) {
            done();
            return resolve();
          }
          let pending: Promise<void> | undefined;
          try {
            pending = this.#try(rt, anchor, step, owed, job, done);
          } catch (err) {
            this.#events.warn(err);
          }
          if (pending) pending.then(resolve, resolve);
          else resolve();
        },
        (err) => {
          for (const f of job.followers.splice(0)) f.reject(err);
          resolve();
        },
      );
    });
  }

  /** For the step of a terminal status: the record's removal time once that step ended. */
  #endOfTerminalStep(record: CallbackRecord, owed: OwedInvocation): { removeAt?: number } {
    if (!isTerminal(owed.step) || record.removeAt !== undefined) return {};
    const at = this.#registry.removeAt(record);
    return at === undefined ? {} : { removeAt: at };
  }

  /**
   * One try of an owed invocation. A failure its retry policy covers records the next try (with
   * its instant) and waits for it; the returned promise settles once the last try did (or the
   * wait was stopped).
   */
  #try(
    rt: CallbackRuntime,
    anchor: ResolvedAnchor,
    step: Exclude<StepEntry, false>,
    owed: OwedInvocation,
    job: Job,
    done: () => void,
  ): Promise<void> | undefined {
    let retrying: Promise<void> | undefined;
    const telemetry = this.#events.telemetry;
    const record = rt.record;
    const measuring = telemetry.measuring;
    const started = performance.now();
    const status = owed.step;
    const attempt = owed.attempt;
    const span =
      job.trace || record.trace
        ? telemetry.start(
            'callback.step',
            {
              'callback.id': record.id,
              'callback.anchor': record.anchor,
              'callback.step_status': status,
              'callback.attempt': attempt,
            },
            job.trace,
            record.trace ? [{ context: record.trace }] : undefined,
          )
        : undefined;
    const settle = (ok: boolean, value: unknown): void => {
      const ms = performance.now() - started;
      if (measuring) {
        telemetry.measure({
          kind: 'step',
          anchor: record.anchor,
          status,
          ok,
          attempt,
          seconds: ms / 1000,
        });
      }
      Telemetry.end(span, ok ? undefined : value);
      const durationMs = Math.round(ms * 1000) / 1000;
      // Pre-empted (a terminal transition, a lost lease, `close()` cutting it off): this try's
      // outcome no longer applies; whatever it owes now is the record's.
      if (rt.record.owed !== owed || rt.invalid) return done();
      if (ok) {
        retrying = this.#stepDone(rt, owed, value as StepOutput, durationMs, job, done);
        return;
      }
      retrying = this.#retryLater(rt, anchor, step, owed, value, durationMs, job, done);
      retrying ??= this.#stepFailed(rt, owed, value, durationMs, job, done);
    };
    const pending = this.#steps.run(rt, anchor, step, status, owed.report, settle, attempt);
    if (!pending) return retrying;
    return pending.then(() => retrying);
  }

  /**
   * A try failed: if the step's retry policy has tries left, records the next try (owed, with
   * its instant) and answers the job's followers now (after that entry is committed), with the
   * status and data so far, rather than after the wait. Not after `close()` or a failed commit.
   * @returns the promise of the rest of the tries, or `undefined` when the failure stands.
   */
  #retryLater(
    rt: CallbackRuntime,
    anchor: ResolvedAnchor,
    step: Exclude<StepEntry, false>,
    owed: OwedInvocation,
    err: unknown,
    durationMs: number,
    job: Job,
    done: () => void,
  ): Promise<void> | undefined {
    const record = rt.record;
    if (rt.invalid) return undefined;
    const policy = retryPolicyFor(anchor.retry, step, owed.step);
    if (!policy || owed.attempt >= policy.attempts) return undefined;
    const attempt = owed.attempt + 1;
    const delayMs = retryDelayMs(policy, attempt);
    const at = this.#o.clock.now() + delayMs;
    const message = stepErrorMessage(err);
    this.#stats.stepRetries++;
    this.#events.emit('stepRetried', record, {
      reported: owed.step,
      attempt: owed.attempt,
      delayMs,
      message,
    });
    const next: OwedInvocation = { step: owed.step, attempt, report: owed.report, at };
    this.#record(rt, {
      kind: 'stepFailed',
      step: owed.step,
      attempt: owed.attempt,
      error: message,
      retryAt: at,
      durationMs,
      owed: next,
    });
    this.#answerJob(rt, { ...job, followers: job.followers.splice(0) });
    // Closing: the retry stays owed (with its instant) for the next start.
    if (this.#closed) return Promise.resolve();
    return this.#waitRetry(rt, anchor, step, next, job, done);
  }

  /**
   * Waits until the owed retry's instant (the registry wakes it: a deadline in memory mode, the
   * store's due-time index in durable mode), then runs it. The mailbox stays busy meanwhile, but
   * no step runs and no pool slot is held. The promise settles once the last try did, or the
   * wait was stopped.
   */
  #waitRetry(
    rt: CallbackRuntime,
    anchor: ResolvedAnchor,
    step: Exclude<StepEntry, false>,
    owed: OwedInvocation,
    job: Job,
    done: () => void,
  ): Promise<void> {
    const at = owed.at ?? this.#o.clock.now();
    return new Promise<void>((resolve) => {
      const leave = (): boolean => {
        if (rt.retry !== wait) return false;
        rt.retry = undefined;
        this.#registry.disarmRetry(rt);
        return true;
      };
      const wait: RetryWait = {
        status: owed.step,
        at,
        fire: () => {
          if (!leave()) return;
          if (this.#closed || rt.invalid || rt.record.owed !== owed) return resolve();
          let pending: Promise<void> | undefined;
          try {
            pending = this.#try(rt, anchor, step, owed, job, done);
          } catch (err) {
            this.#events.warn(err);
          }
          resolve(pending);
        },
        stop: (preempted) => {
          if (!leave()) return;
          if (preempted) {
            // A terminal transition ended the callback: the job ends here, with no failure.
            try {
              done();
            } catch (err) {
              this.#events.warn(err);
            }
          }
          resolve();
        },
      };
      rt.retry = wait;
      this.#registry.armRetry(rt, at);
    });
  }

  #stepDone(
    rt: CallbackRuntime,
    owed: OwedInvocation,
    out: StepOutput,
    durationMs: number,
    job: Job,
    done: () => void,
  ): Promise<void> | undefined {
    const record = rt.record;
    const status = owed.step;
    let data: CallbackData | undefined;
    let patchBytes = 0;
    if (out !== undefined && out !== null) {
      try {
        data = ingestData(`output of the "${status}" step`, out, this.#o.maxDataBytes);
        patchBytes = patchBytesBound(data);
        rt.dataBytes = admitPatch(
          `the output of the "${status}" step`,
          record.data,
          rt.dataBytes,
          data,
          patchBytes,
          this.#o.maxCallbackBytes,
        );
      } catch (err) {
        return this.#stepFailed(rt, owed, err, durationMs, job, done);
      }
      if (Object.keys(data).length === 0) data = undefined;
    }
    let merged: DataVersion | undefined;
    if (data !== undefined && !isTerminal(record.status)) {
      // The machine merges it (the actor is done once final: then the entry's fold merges it).
      const actor = this.#registry.activate(rt);
      actor.send({ type: 'MERGE', data });
      merged = actor.getSnapshot().context.data;
    }
    this.#record(
      rt,
      {
        kind: 'stepCompleted',
        step: status,
        attempt: owed.attempt,
        durationMs,
        owed: null,
        ...(data !== undefined ? { data, merge: true } : {}),
        ...(record.stepError !== undefined && job.kind === 'retry' ? { stepError: null } : {}),
        ...this.#endOfTerminalStep(record, owed),
      },
      merged,
    );
    if (data !== undefined && rt.dataBytes !== undefined) rt.dataBytes += patchBytes;
    done();
    return undefined;
  }

  #stepFailed(
    rt: CallbackRuntime,
    owed: OwedInvocation,
    err: unknown,
    durationMs: number,
    job: Job,
    done: () => void,
  ): Promise<void> | undefined {
    // Cut off by `close()` after its grace period. A durable store keeps it owed (it runs again
    // at the next start) and its report is answered with the callback as stored; in memory it
    // is gone with the engine.
    if (this.#closed && err instanceof EngineClosedError) {
      if (!this.#registry.durable) for (const f of job.followers.splice(0)) f.reject(err);
      return void done();
    }
    const message = stepErrorMessage(err);
    const record = rt.record;
    const status = owed.step;
    const stepError = { status, message };
    this.#stats.stepFailures++;
    if (isTerminal(record.status)) {
      this.#record(rt, {
        kind: 'stepFailed',
        step: status,
        attempt: owed.attempt,
        error: message,
        durationMs,
        stepError,
        owed: null,
        ...this.#endOfTerminalStep(record, owed),
      });
      this.#events.emit('stepFailed', record, { message, reported: status });
      // Nothing else shows it: the status is final. Recorded on the callback; warned once per anchor.
      if (!this.#warnedAnchors.has(record.anchor)) {
        this.#warnedAnchors.add(record.anchor);
        this.#events.log(
          'CBE_W_STEP_FAILED_AFTER_TERMINAL',
          `callback-engine: the "${status}" step of anchor "${record.anchor}" failed after the callback became "${record.status}": ${message} (kept as the callback's stepError; warned once per anchor)`,
          { anchor: record.anchor, status, id: record.id },
        );
      }
      return void done();
    }
    this.#events.emit('stepFailed', record, { message, reported: status });
    // The callback moves to error; this job's followers are answered after the error step.
    const ended = this.#endFetched(rt, 'error', { message }, job.followers.splice(0), {
      kind: 'stepFailed',
      step: status,
      attempt: owed.attempt,
      error: message,
      durationMs,
      stepError,
    });
    if (!ended) return void done();
    return ended.then(done);
  }

  /**
   * Durable mode: a callback read back from the store owes a step invocation (the engine
   * stopped before it ended, or it waits for its retry). Its mailbox runs it (at its instant, at
   * once if none or past) before anything else; the attempt count goes on.
   */
  resumeOwed(rt: CallbackRuntime): void {
    const owed = rt.record.owed;
    if (!owed || rt.busy || rt.retry || this.#closed) return;
    if (!isTerminal(rt.record.status)) {
      // A deadline that passed while the engine was down wins: the callback times out, which
      // replaces what it owed with its timeout step.
      const reason = this.#registry.overdue(rt, this.#o.clock.now());
      if (reason !== undefined)
        return this.end(rt, 'timeout', { reason }, [], { kind: 'timedOut', reason });
    }
    rt.busy = true;
    rt.pushFront({ kind: 'resume', status: owed.step, data: owed.report, followers: [] });
    this.#drain(rt);
  }

  #resume(rt: CallbackRuntime, job: Job): Promise<void> | undefined {
    const record = rt.record;
    const owed = record.owed;
    const done = () =>
      owed && isTerminal(owed.step) ? this.#finalize(rt, job) : this.#answerJob(rt, job);
    if (!owed) return void this.#answerJob(rt, job);
    const anchor = this.#anchors.get(record.anchor);
    const step = anchor && lookupStep(anchor.next, owed.step);
    if (anchor && step && owed.at !== undefined && owed.at > this.#o.clock.now())
      // A retry waiting for its instant: the wait goes on.
      return this.#waitRetry(rt, anchor, step, owed, job, done);
    // Its try was cut off: it runs again, with nobody resending (at least once).
    this.#record(rt, {
      kind: 'stepResumed',
      reason: 'recovered',
      owed: { step: owed.step, attempt: owed.attempt, report: owed.report },
    });
    return this.#runOwed(rt, job, done);
  }

  // ---- retrying a failed final step ---------------------------------------------------------

  /**
   * Runs a terminal callback's failed final step again (its `complete` step threw, say), through
   * its mailbox so it never overlaps another step of it. `rt` is its runtime while it is still
   * resident; a retained callback gets a stand-in mailbox, shared by concurrent retries.
   * @returns the answer once the step settled and its effect is committed: without `stepError`
   *   if it succeeded (its output merged), with the new one if it failed again.
   * @throws (rejects) {@link NothingToRetryError} if there is nothing to retry.
   */
  retryStep(
    rt: CallbackRuntime | undefined,
    record: CallbackRecord,
    lastActivity: number | undefined,
  ): Promise<DispatchResult> {
    const wait = rt?.retry;
    if (rt && wait) {
      // A step waiting for its next try (`retry` option): the try runs now; answered after it.
      const answer = new Promise<DispatchResult>((resolve, reject) =>
        this.enqueue(rt, {
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
      if (rt) this.#registry.settle(rt);
      return Promise.reject(new NothingToRetryError(record.id, why));
    }
    let host = rt ?? this.#retrying.get(record.id);
    if (!host) {
      // Not in the registry: answered and written like a resident callback, but never retired.
      host = new CallbackRuntime(record, lastActivity ?? this.#o.clock.now());
      host.committed = true;
      host.meta = '';
      this.#retrying.set(record.id, host);
    }
    const target = host;
    return new Promise<DispatchResult>((resolve, reject) =>
      this.enqueue(target, {
        kind: 'retry',
        status: record.status,
        data: EMPTY_DATA,
        followers: [{ resolve, reject, outcome: 'applied' }],
      }),
    );
  }

  #retry(rt: CallbackRuntime, job: Job): Promise<void> | undefined {
    const record = rt.record;
    const status = record.status;
    const anchor = this.#anchors.get(record.anchor);
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
    this.#record(rt, {
      kind: 'stepRetried',
      owed: { step: status, attempt: 1, report },
    });
    return this.#runOwed(rt, job, () => {
      finish();
      this.#answerJob(rt, job);
    });
  }

  // ---- terminal transitions -----------------------------------------------------------------

  /**
   * Moves an active callback to a terminal status at once: the transition is applied and
   * journaled now (owing the terminal step), a running step is aborted, timers stop, active
   * children are orphaned in the same turn (one commit), and a terminal job (terminal step, then
   * finalize) goes to the front of the mailbox; `followers` get its answer. `cause` says what
   * the entry records (a report, a cancel, a deadline, a step failure).
   */
  end(
    rt: CallbackRuntime,
    status: TerminalStatus,
    data: CallbackData,
    followers: Follower[],
    cause: EndCause,
  ): void {
    // The active subtree is read first (iteratively: deep trees must not grow the stack), so a
    // store that cannot read it changes nothing; then the parent's end and every orphaning are
    // applied in this one turn: one commit.
    const subtree: { rt: CallbackRuntime; parentStatus: CallbackStatus }[] = [];
    const queue: { ids: readonly string[]; parentStatus: CallbackStatus }[] = [
      { ids: rt.record.children ?? [], parentStatus: status },
    ];
    for (let i = 0; i < queue.length; i++) {
      const { ids, parentStatus } = queue[i]!;
      for (const childId of ids) {
        const child = this.#registry.runtime(childId);
        if (!child || isTerminal(child.record.status)) continue;
        subtree.push({ rt: child, parentStatus });
        queue.push({ ids: child.record.children ?? [], parentStatus: 'orphan' });
      }
    }
    this.#applyTerminal(rt, status, data, followers, cause);
    for (const { rt: child, parentStatus } of subtree)
      this.#applyTerminal(child, 'orphan', { reason: 'parent-inactive', parentStatus }, [], {
        kind: 'orphaned',
        reason: 'parent-inactive',
      });
    if (!rt.busy && !this.#closed) this.#drain(rt);
    for (const { rt: r } of subtree) if (!r.busy && !this.#closed) this.#drain(r);
  }

  /**
   * Like {@link end}, for a store read asynchronously: the callback's active subtree is fetched
   * first when it has children (the rows fetched for its report are gone by the time its step
   * fails). Resolves once it ended.
   */
  #endFetched(
    rt: CallbackRuntime,
    status: TerminalStatus,
    data: CallbackData,
    followers: Follower[],
    cause: EndCause,
  ): Promise<void> | undefined {
    if (!this.#registry.prefetching || !rt.record.children?.length) {
      this.end(rt, status, data, followers, cause);
      return undefined;
    }
    return this.#registry.warm({ ids: [rt.record.id], subtree: true }).then(
      () => {
        if (!isTerminal(rt.record.status)) this.end(rt, status, data, followers, cause);
        else this.#answerJob(rt, { kind: 'read', status, data, followers });
      },
      (err: unknown) => {
        // Not ended: its step failure is not recorded, and the invocation stays owed.
        for (const f of followers) f.reject(toError(err));
        this.#events.warn(err);
      },
    );
  }

  #applyTerminal(
    rt: CallbackRuntime,
    status: TerminalStatus,
    data: CallbackData,
    followers: Follower[],
    cause: EndCause,
  ): void {
    const record = rt.record;
    const actor = this.#registry.activate(rt);
    actor.send({ type: STATUS_EVENT[status], data });
    const owed = this.#owes(record, status, data);
    const removeAt = owed ? undefined : this.#registry.removeAt(record);
    this.#record(
      rt,
      {
        ...cause,
        status,
        data,
        merge: true,
        terminalReport: canonicalJson(data),
        owed: owed ?? null,
        ...(removeAt !== undefined ? { removeAt } : {}),
      },
      actor.getSnapshot().context.data,
    );
    if (rt.dataBytes !== undefined) rt.dataBytes += patchBytesBound(data);
    this.#registry.stopTimers(rt);
    if (status === 'timeout') {
      this.#stats.timedOut++;
      this.#events.emit('timedOut', record, {
        reason: typeof data.reason === 'string' ? data.reason : 'deadline',
      });
    } else if (status === 'orphan') {
      this.#stats.orphaned++;
      this.#events.emit('orphaned', record, undefined);
    }
    const running = rt.step;
    rt.pushFront({ kind: 'terminal', status, data, followers });
    const waiting = rt.retry;
    if (waiting && !isTerminal(waiting.status)) waiting.stop(true);
    if (running && !isTerminal(running.status)) {
      const reason = new Error(`callback ended with status "${status}"`);
      reason.name = 'AbortError';
      running.abort.abort(reason);
      // Do not wait for the aborted step: one that ignores its signal must not hold the terminal
      // step, the answer and wait() back. Its report is answered now (with the terminal status);
      // whatever it returns later is ignored.
      running.release?.();
    }
  }

  #finalize(rt: CallbackRuntime, job: Job): void {
    rt.finalized = true;
    const record = rt.record;
    if (record.retention !== true && record.retention <= 0) this.#registry.removeNow(rt);
    this.#registry.passivate(rt);
    this.#answerJob(rt, job);
    const waiters = rt.waiters;
    rt.waiters = undefined;
    if (waiters) this.#answerJob(rt, { ...job, followers: waiters });
  }

  // ---- handover and shutdown ------------------------------------------------------------------

  /**
   * Waits until no step of a resident callback matching `owned` runs (real time, at most
   * `timeoutMs`): a replica handing shards over lets those steps end and commit here. A retry
   * waiting for its instant does not count: it stays owed, for the next owner.
   */
  async quiesce(owned: (id: string) => boolean, timeoutMs: number): Promise<void> {
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
        for (const rt of this.#registry.runtimes())
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
  async close(): Promise<void> {
    this.#closed = true;
    const closed = new EngineClosedError();
    const inFlight: Promise<unknown>[] = [];
    const stepping: CallbackRuntime[] = [];
    for (const rt of this.#registry.runtimes()) {
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
        for (const job of rt.drainAll()) this.#answerJob(rt, job);
        for (const w of rt.waiters ?? []) w.reject(closed);
        rt.waiters = undefined;
      }
    }
    const clock = this.#o.clock;
    const expired = new AbortController();
    const timer = clock.setTimeout(() => {
      this.#cutOff = true;
      expired.abort(closed);
    }, this.#o.closeTimeoutMs);
    const timedOut = new Promise<void>((resolve) =>
      expired.signal.addEventListener('abort', () => resolve(), { once: true }),
    );
    try {
      if (inFlight.length > 0) await Promise.race([Promise.allSettled(inFlight), timedOut]);
      this.#cutOff = true;
      for (const rt of stepping) {
        const step = rt.step;
        if (step && !(this.#o.pool.close === 'drain' && step.onPool)) step.abort.abort(closed);
        step?.release?.(closed);
        for (const w of rt.waiters ?? []) w.reject(closed);
        rt.waiters = undefined;
      }
      await this.#pool.close(expired.signal);
    } finally {
      clock.clearTimeout(timer);
    }
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
