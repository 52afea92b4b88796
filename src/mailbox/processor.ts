/**
 * Works through each callback's mailbox: jobs one at a time in arrival order. For each report
 * the machine decides (applied, ignored, or nothing for a settled callback), the decision
 * becomes a journal entry (applied to the record and appended to the turn's group commit), and
 * the step it owes runs (see `owed-steps.ts`); the step's outcome is the next entry. Answers are
 * released only once the entries they report are committed. Terminal transitions jump the queue
 * (see `terminal.ts`).
 *
 * @module
 */

import { Answer, buildAttributes, notFoundAnswer } from '../answer.js';
import {
  canonicalJson,
  DataVersion,
  EMPTY_DATA,
  ingestData,
  patchBytesBound,
  admitPatch,
  type CallbackData,
} from '../data.js';
import { EngineClosedError } from '../errors.js';
import { toError } from '../thrown.js';
import { STATUS_EVENT, statusOf } from '../lifecycle/machine.js';
import {
  isTerminal,
  lookupStep,
  type CallbackStatus,
  type DispatchStatus,
  type TerminalStatus,
} from '../lifecycle/statuses.js';
import { LazyPool } from '../pool/lazy-pool.js';
import { isWorkerStep } from '../pool/worker-step.js';
import type { JournalEntry } from '../journal/journal.js';
import type { CallbackRuntime, Follower, Job } from '../registry/callback-runtime.js';
import type { CallbackRecord } from '../registry/record.js';
import { overdue } from '../timers/callback-timers.js';
import type { DispatchResult, StepInput, StepOutput } from '../types.js';
import { MailboxCore, type EndCause, type ProcessorDeps } from './core.js';
import { DueRows } from './due.js';
import type { JournalWriter } from './journal-writer.js';
import { OwedSteps } from './owed-steps.js';
import { RetryStep } from './retry-step.js';
import { closeMailboxes, quiesce } from './shutdown.js';
import { StepRunner } from './step-runner.js';
import { Terminal } from './terminal.js';

export type { EndCause, ProcessorDeps } from './core.js';

/** Applies jobs to callbacks, one at a time per callback. */
export class MailboxProcessor {
  readonly #c: MailboxCore;
  readonly #terminal: Terminal;
  readonly #owed: OwedSteps;
  readonly #retryStep: RetryStep;
  readonly #due: DueRows;

  constructor(deps: ProcessorDeps) {
    const pool = new LazyPool(deps.options.pool, deps.events.log);
    const core = (this.#c = new MailboxCore(deps, pool));
    this.#terminal = new Terminal(core, (rt) => this.#drain(rt));
    this.#owed = new OwedSteps(
      core,
      new StepRunner(deps.options.clock, pool, deps.events.warn),
      this.#terminal,
    );
    this.#retryStep = new RetryStep(core, this.#owed, (rt, job) => this.enqueue(rt, job));
    this.#due = new DueRows(core, (rt, reason) => this.timeout(rt, reason));
  }

  /** The write path: journal entries to the store, answers released after COMMIT. */
  get journal(): JournalWriter {
    return this.#c.journal;
  }

  /** The worker pool's load, once it was started. */
  get poolStats(): { threads: number; pending: number; queued: number } | undefined {
    return this.#c.pool.stats;
  }

  /** Whether a report with `status` would run a worker step while the pool's queue is full. */
  wouldSaturate(rt: CallbackRuntime, status: CallbackStatus): boolean {
    return (
      this.#c.pool.saturated &&
      isWorkerStep(lookupStep(this.#c.anchors.get(rt.record.anchor)!.next, status))
    );
  }

  /** Appends a job to a callback's mailbox and works through it if the callback is idle. */
  enqueue(rt: CallbackRuntime, job: Job): void {
    rt.push(job);
    if (!rt.busy) this.#drain(rt);
  }

  /** See {@link MailboxCore.createdEntry}. */
  createdEntry(record: CallbackRecord, data: CallbackData): JournalEntry {
    return this.#c.createdEntry(record, data);
  }

  /** The answer for a callback as it is now. */
  answer(record: CallbackRecord): Answer {
    return this.#c.answer(record);
  }

  /** See {@link Terminal.end}. */
  end(
    rt: CallbackRuntime,
    status: TerminalStatus,
    data: CallbackData,
    followers: Follower[],
    cause: EndCause,
  ): void {
    this.#terminal.end(rt, status, data, followers, cause);
  }

  /** An active callback's deadline or heartbeat passed: it ends with `timeout`. */
  timeout(rt: CallbackRuntime, reason: 'deadline' | 'heartbeat'): void {
    this.#terminal.end(rt, 'timeout', { reason }, [], { kind: 'timedOut', reason });
  }

  /** See {@link DueRows.due}. */
  due(id: string): boolean {
    return this.#due.due(id);
  }

  /** See {@link RetryStep.start}. */
  retryStep(
    rt: CallbackRuntime | undefined,
    record: CallbackRecord,
    lastActivity: number | undefined,
  ): Promise<DispatchResult> {
    return this.#retryStep.start(rt, record, lastActivity);
  }

  /** See {@link quiesce}. */
  quiesce(owned: (id: string) => boolean, timeoutMs: number): Promise<void> {
    return quiesce(this.#c.registry, owned, timeoutMs);
  }

  /** See {@link closeMailboxes}. */
  close(): Promise<void> {
    return closeMailboxes(this.#c);
  }

  /** Answer to a report reaching a terminal callback: a replay of its terminal report, or a conflict. */
  settledAnswer(
    record: CallbackRecord,
    status: CallbackStatus,
    data: CallbackData,
  ): DispatchResult {
    const replay = status === record.status && record.terminalReport === canonicalJson(data);
    return { answer: this.#c.answer(record), outcome: replay ? 'replayed' : 'conflict' };
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
      this.#c.events.emitRaw({
        type: 'dispatched',
        at: this.#c.o.clock.now(),
        anchor: anchorName,
        reported,
        outcome: 'notFound',
        status: 'notFound',
      });
    }
    const anchor = anchorName === undefined ? undefined : this.#c.anchors.get(anchorName);
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
      .then(() => (isWorkerStep(step) ? this.#c.pool.run(step, input, input.signal) : step(input)))
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
      return out ? ingestData('step output', out, this.#c.o.maxDataBytes) : undefined;
    } catch {
      return undefined;
    }
  }

  /** A callback dropped after a failed commit: every report queued on it gets the store error. */
  invalidated(rt: CallbackRuntime, err: Error): void {
    for (const job of rt.drainAll()) for (const f of job.followers) f.reject(err);
  }

  /** Works through a callback's mailbox if it is idle (after a create's commit barrier). */
  kick(rt: CallbackRuntime): void {
    if (!rt.busy && !this.#c.closed) this.#drain(rt);
  }

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
    if (rt.finalized && !this.#c.closed) this.#c.registry.retire(rt);
    else if (rt.evictPending) this.#c.registry.passivate(rt);
    this.#c.registry.settle(rt);
  }

  /**
   * The mailbox waits for `pending` (a step in flight, or waiting for its retry), then goes on.
   * The process stays alive meanwhile: the retry's timer and the step's time limit do not hold it.
   */
  #pause(rt: CallbackRuntime, pending: Promise<void>): void {
    rt.stepPromise = pending;
    const keepAlive = this.#c.keepAlive;
    keepAlive.hold();
    const next = () => {
      keepAlive.release();
      rt.stepPromise = undefined;
      if (!this.#c.closed) this.#drain(rt);
      else this.#settleClosed(rt);
    };
    pending.then(next, (err: unknown) => {
      this.#c.events.warn(err);
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
      if (job.kind === 'terminal') this.#c.answerJob(rt, job);
      else for (const f of job.followers) f.reject(closed);
    }
    rt.busy = false;
  }

  #process(rt: CallbackRuntime, job: Job): Promise<void> | undefined {
    const record = rt.record;
    switch (job.kind) {
      case 'retry':
        return this.#retryStep.run(rt, job);
      case 'resume':
        return this.#owed.resume(rt, job);
      case 'terminal':
        return this.#owed.runOwed(rt, job, () => this.#terminal.finalize(rt, job));
      case 'create':
        return this.#owed.runOwed(rt, job, () => this.#c.answerJob(rt, job));
      case 'read':
        return void this.#c.answerJob(rt, job);
      case 'report':
        break;
    }
    const key = job.dedupKey;
    const seen =
      key !== undefined &&
      !job.freshKey &&
      (job.keyStored === true || this.#c.journal.keys.hasRecent(rt, key));
    if (isTerminal(record.status)) {
      const result = seen
        ? { answer: this.#c.answer(record), outcome: 'replayed' as const }
        : this.settledAnswer(record, job.status, job.data);
      this.#c.resolve(rt, job.followers, result);
      this.#c.events.emit('dispatched', record, {
        reported: job.status,
        outcome: result.outcome,
        data: job.data,
      });
      return undefined;
    }
    if (seen) {
      // Applied already (a retry, a redelivery): answered as the callback is, once committed.
      this.#c.resolve(rt, job.followers, { answer: this.#c.answer(record), outcome: 'replayed' });
      this.#c.events.emit('dispatched', record, {
        reported: job.status,
        outcome: 'replayed',
        data: job.data,
      });
      return undefined;
    }
    if (isTerminal(job.status)) {
      if (this.admit(rt, job.status, job.data, 'callbackData', job.followers) < 0) return undefined;
      // complete / error / cancel: the transition jumps to the front; this report is answered after its step.
      this.#c.events.emit('dispatched', record, {
        reported: job.status,
        outcome: 'applied',
        data: job.data,
      });
      this.#terminal.end(rt, job.status, job.data, job.followers, {
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
    const actor = this.#c.registry.activate(rt);
    const before = actor.getSnapshot();
    actor.send({ type: STATUS_EVENT[job.status as keyof typeof STATUS_EVENT], data: job.data });
    const after = actor.getSnapshot();
    // The machine decides: a report with no transition leaves its snapshot as it was.
    const applied = after !== before;
    const to = statusOf(after.value);
    this.#c.events.emit('dispatched', record, {
      reported: job.status,
      outcome: applied ? 'applied' : 'ignored',
      data: job.data,
    });
    const owed = applied ? this.#c.owes(record, to, job.data) : undefined;
    this.#c.record(
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
      this.#c.resolve(rt, job.followers, { answer: this.#c.answer(record), outcome: 'ignored' });
      return undefined;
    }
    if (rt.dataBytes !== undefined) rt.dataBytes += patchBytes;
    return this.#owed.runOwed(rt, job, () => this.#c.answerJob(rt, job));
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
        this.#c.o.maxCallbackBytes,
      );
    } catch (err) {
      // A report the machine would ignore (a late accept/start) changes nothing: not refused.
      const event = { type: STATUS_EVENT[status as keyof typeof STATUS_EVENT], data: patch };
      if (!this.#c.registry.activate(rt).getSnapshot().can(event)) return 0;
      for (const f of followers) f.reject(toError(err));
      this.#c.events.rejected(toError(err).message);
      return -1;
    }
    return patchBytes;
  }

  /**
   * Durable mode: a callback read back from the store owes a step invocation (the engine
   * stopped before it ended, or it waits for its retry). Its mailbox runs it (at its instant, at
   * once if none or past) before anything else; the attempt count goes on.
   */
  resumeOwed(rt: CallbackRuntime): void {
    const owed = rt.record.owed;
    if (!owed || rt.busy || rt.retry || this.#c.closed) return;
    if (!isTerminal(rt.record.status)) {
      // A deadline that passed while the engine was down wins: the callback times out, which
      // replaces what it owed with its timeout step.
      const reason = overdue(rt, this.#c.o.clock.now());
      if (reason !== undefined)
        return this.#terminal.end(rt, 'timeout', { reason }, [], { kind: 'timedOut', reason });
    }
    rt.busy = true;
    rt.pushFront({ kind: 'resume', status: owed.step, data: owed.report, followers: [] });
    this.#drain(rt);
  }
}
