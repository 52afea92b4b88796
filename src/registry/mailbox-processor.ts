/**
 * Works through each callback's mailbox: jobs one at a time in arrival order,
 * each report sent to the callback's actor, the anchor's step run (in-process
 * or on the worker pool) and its output merged before the next job starts.
 * A failing step with a retry policy is tried again after its delay; the
 * mailbox waits for it (later jobs stay queued, in order).
 * Terminal transitions (complete, error, cancel, timeout, orphan) jump the
 * queue and orphan the callback's active subtree.
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
import { STATUS_EVENT, statusOf } from '../lifecycle/machine.js';
import {
  isTerminal,
  lookupStep,
  type CallbackStatus,
  type TerminalStatus,
} from '../lifecycle/statuses.js';
import type { ResolvedAnchor, ResolvedEngineOptions } from '../options.js';
import { LazyPool } from '../pool/lazy-pool.js';
import { retryDelayMs, retryPolicyFor, type RetryWait } from '../retry.js';
import { StepRunner } from '../mailbox/step-runner.js';
import { isWorkerStep } from '../pool/worker-step.js';
import type { DispatchResult, StepEntry, StepInput, StepOutput } from '../types.js';
import { CallbackRuntime, type Follower, type Job } from './callback-runtime.js';
import { Telemetry } from '../telemetry.js';
import type { EventHub } from './event-hub.js';
import type { CallbackRecord } from './record.js';
import { dueAt } from './record-codec.js';
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
   * Answers followers once the callback's writes so far are committed (at once in memory mode).
   * With a durable store nothing is answered as done before it is in the store.
   */
  #resolve(rt: CallbackRuntime, followers: readonly Follower[], result: DispatchResult): void {
    if (!this.#registry.durable) {
      for (const f of followers) f.resolve(result);
      return;
    }
    this.#afterCommit(rt, followers, (f) => f.resolve(result));
  }

  /** Durable mode: runs `answer` for each follower once `rt`'s writes are committed; else rejects them. */
  #afterCommit(
    rt: CallbackRuntime,
    followers: readonly Follower[],
    answer: (f: Follower) => void,
  ): void {
    if (followers.length === 0) return;
    const keys: string[] = [];
    for (const f of followers) if (f.dedupKey !== undefined) keys.push(f.dedupKey);
    this.#registry.dedupThenRelease(
      rt,
      keys,
      () => {
        for (const f of followers) answer(f);
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
    };
    pending.then(next, (err: unknown) => {
      this.#events.warn(err);
      next();
    });
  }

  #process(rt: CallbackRuntime, job: Job): Promise<void> | undefined {
    const record = rt.record;
    if (job.kind === 'retry') return this.#retry(rt, job);
    if (job.kind === 'terminal')
      return this.#runStep(rt, job.status, job, () => this.#finalize(rt, job));
    if (job.kind === 'create')
      return this.#runStep(rt, 'create', job, () => this.#answerJob(rt, job, true));
    if (job.kind === 'read') return void this.#answerJob(rt, job, false);
    if (isTerminal(record.status)) {
      const result = this.settledAnswer(record, job.status, job.data);
      this.#resolve(rt, job.followers, result);
      this.#events.emit('dispatched', record, {
        reported: job.status,
        outcome: result.outcome,
        data: job.data,
      });
      return undefined;
    }
    if (isTerminal(job.status)) {
      if (this.admit(rt, job.status, job.data, 'callbackData', job.followers) < 0) return undefined;
      // complete / error: the transition jumps to the front; this report is answered after its step.
      this.#events.emit('dispatched', record, {
        reported: job.status,
        outcome: 'applied',
        data: job.data,
      });
      this.end(rt, job.status, job.data, job.followers);
      return undefined;
    }
    const from = record.status;
    const patchBytes = this.admit(rt, job.status, job.data, 'callbackData', job.followers);
    if (patchBytes < 0) return undefined;
    const actor = this.#registry.activate(rt);
    actor.send({ type: STATUS_EVENT[job.status as keyof typeof STATUS_EVENT], data: job.data });
    const snapshot = actor.getSnapshot();
    const to = statusOf(snapshot.value);
    const applied = to !== from || job.status === 'progress';
    this.#events.emit('dispatched', record, {
      reported: job.status,
      outcome: applied ? 'applied' : 'ignored',
      data: job.data,
    });
    if (!applied) {
      const result: DispatchResult = { answer: this.answer(record), outcome: 'ignored' };
      this.#resolve(rt, job.followers, result);
      return undefined;
    }
    this.#setStatus(rt, to, snapshot.context.data);
    if (rt.dataBytes !== undefined) rt.dataBytes += patchBytes;
    return this.#runStep(rt, to, job, () => this.#answerJob(rt, job, true));
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

  /** Answers a job's followers; `write`: its effect goes to the store first (durable mode). */
  #answerJob(rt: CallbackRuntime, job: Job, write: boolean): void {
    if (write) this.#registry.write(rt);
    const answer = this.answer(rt.record);
    if (!this.#registry.durable) {
      for (const f of job.followers) f.resolve({ answer, outcome: f.outcome });
      return;
    }
    this.#afterCommit(rt, job.followers, (f) => f.resolve({ answer, outcome: f.outcome }));
  }

  // ---- steps --------------------------------------------------------------------------------

  /**
   * Runs the anchor's step for `status` (if any), merges its output, then calls `done`.
   * Returns a promise only when the step is asynchronous or waits for a retry.
   */
  #runStep(
    rt: CallbackRuntime,
    status: CallbackStatus,
    job: Job,
    done: () => void,
  ): Promise<void> | undefined {
    const anchor = this.#anchors.get(rt.record.anchor)!;
    const step = lookupStep(anchor.next, status);
    if (!step) return void done();
    return this.#try(rt, anchor, step, status, job, done, 1);
  }

  /**
   * Try number `attempt` of a step. A failure its retry policy covers schedules the next try;
   * the returned promise then settles once the last try did (or the wait was stopped).
   */
  #try(
    rt: CallbackRuntime,
    anchor: ResolvedAnchor,
    step: Exclude<StepEntry, false>,
    status: CallbackStatus,
    job: Job,
    done: () => void,
    attempt: number,
  ): Promise<void> | undefined {
    let retrying: Promise<void> | undefined;
    const telemetry = this.#events.telemetry;
    const record = rt.record;
    const measuring = telemetry.measuring;
    const started = measuring ? performance.now() : 0;
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
      if (measuring) {
        telemetry.measure({
          kind: 'step',
          anchor: record.anchor,
          status,
          ok,
          attempt,
          seconds: (performance.now() - started) / 1000,
        });
      }
      Telemetry.end(span, ok ? undefined : value);
      // This try settled: a stored pending retry is spent (a new one is stored if it failed again).
      rt.record.retry = undefined;
      if (ok) return this.#stepDone(rt, status, value as StepOutput, job, done);
      retrying = this.#retryLater(rt, anchor, step, status, value, job, done, attempt);
      if (!retrying) this.#stepFailed(rt, status, value, job, done);
    };
    const pending = this.#steps.run(rt, anchor, step, status, job.data, settle, attempt);
    if (!pending) return retrying;
    return pending.then(() => retrying);
  }

  /**
   * A try failed: if the step's retry policy has tries left, schedules the next one and answers
   * the job's followers now (durable mode: after the commit that stores the pending retry), with
   * the status and data so far, rather than after the wait. Not for a step preempted by a
   * terminal transition, nor after `close()` or a failed commit.
   * @returns the promise of the rest of the tries, or `undefined` when the failure stands.
   */
  #retryLater(
    rt: CallbackRuntime,
    anchor: ResolvedAnchor,
    step: Exclude<StepEntry, false>,
    status: CallbackStatus,
    err: unknown,
    job: Job,
    done: () => void,
    attempt: number,
  ): Promise<void> | undefined {
    const record = rt.record;
    if (this.#closed || rt.invalid) return undefined;
    if (isTerminal(record.status) && !isTerminal(status)) return undefined;
    const policy = retryPolicyFor(anchor.retry, step, status);
    if (!policy || attempt >= policy.attempts) return undefined;
    const next = attempt + 1;
    const delayMs = retryDelayMs(policy, next);
    const at = this.#o.clock.now() + delayMs;
    const message = toError(err).message;
    this.#stats.stepRetries++;
    this.#events.emit('stepRetried', record, { reported: status, attempt, delayMs, message });
    // A terminal step's retry is kept in memory only; its callback's row is final already.
    if (isTerminal(status)) record.removeAt ??= this.#registry.removeAt(record);
    else record.retry = { status, attempt: next, at, report: job.data };
    this.#answerJob(rt, { ...job, followers: job.followers.splice(0) }, true);
    return this.#waitRetry(rt, anchor, step, status, job, done, next, at);
  }

  /**
   * Waits until `at` (the registry wakes it: a deadline in memory mode, the store's due-time index
   * in durable mode), then runs try `attempt`. The mailbox stays busy meanwhile, but no step runs
   * and no pool slot is held. The promise settles once the last try did, or the wait was stopped.
   */
  #waitRetry(
    rt: CallbackRuntime,
    anchor: ResolvedAnchor,
    step: Exclude<StepEntry, false>,
    status: CallbackStatus,
    job: Job,
    done: () => void,
    attempt: number,
    at: number,
  ): Promise<void> {
    return new Promise<void>((resolve) => {
      const leave = (): boolean => {
        if (rt.retry !== wait) return false;
        rt.retry = undefined;
        this.#registry.disarmRetry(rt);
        return true;
      };
      const wait: RetryWait = {
        status,
        at,
        fire: () => {
          if (!leave()) return;
          if (this.#closed || rt.invalid) return resolve();
          let pending: Promise<void> | undefined;
          try {
            pending = this.#try(rt, anchor, step, status, job, done, attempt);
          } catch (err) {
            this.#events.warn(err);
          }
          resolve(pending);
        },
        stop: (preempted) => {
          if (!leave()) return;
          if (preempted) {
            // Like a step aborted by the transition: no failure; the job ends here.
            rt.record.retry = undefined;
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

  /**
   * Durable mode: a callback read back from the store has a step waiting for its retry (stored
   * before a restart, or by the replica that owned it before). Its mailbox waits for that try
   * (at its instant, at once if that passed) before anything else is applied; the attempt count
   * goes on.
   */
  resumeRetry(rt: CallbackRuntime): void {
    const pending = rt.record.retry;
    if (!pending || rt.busy || rt.retry || this.#closed) return;
    const anchor = this.#anchors.get(rt.record.anchor);
    const step = anchor && lookupStep(anchor.next, pending.status);
    if (!anchor || !step) {
      // The anchor has no step for it any more: nothing to try (the next write drops it).
      rt.record.retry = undefined;
      return;
    }
    const job: Job = {
      kind: pending.status === 'create' ? 'create' : 'report',
      status: pending.status,
      data: pending.report,
      followers: [],
    };
    const done = () => this.#answerJob(rt, job, true);
    rt.busy = true;
    this.#pause(
      rt,
      this.#waitRetry(rt, anchor, step, pending.status, job, done, pending.attempt, pending.at),
    );
  }

  #stepDone(
    rt: CallbackRuntime,
    status: CallbackStatus,
    out: StepOutput,
    job: Job,
    done: () => void,
  ): void {
    const record = rt.record;
    // A step preempted by cancel/timeout/orphan: its output no longer applies.
    if (isTerminal(record.status) && !isTerminal(status)) return void done();
    if (out !== undefined && out !== null) {
      let data: CallbackData;
      try {
        data = ingestData(`output of the "${status}" step`, out, this.#o.maxDataBytes);
      } catch (err) {
        return this.#stepFailed(rt, status, err, job, done);
      }
      const patchBytes = patchBytesBound(data);
      try {
        rt.dataBytes = admitPatch(
          `the output of the "${status}" step`,
          record.data,
          rt.dataBytes,
          data,
          patchBytes,
          this.#o.maxCallbackBytes,
        );
      } catch (err) {
        return this.#stepFailed(rt, status, err, job, done);
      }
      if (isTerminal(record.status)) {
        // The actor is done once final; the record carries the terminal step's output.
        record.data = record.data.with(data);
      } else {
        const actor = this.#registry.activate(rt);
        actor.send({ type: 'MERGE', data });
        record.data = actor.getSnapshot().context.data;
      }
      rt.dataBytes += patchBytes;
    }
    done();
  }

  #stepFailed(
    rt: CallbackRuntime,
    status: CallbackStatus,
    err: unknown,
    job: Job,
    done: () => void,
  ): void {
    if (this.#closed) {
      const closed = new EngineClosedError();
      for (const f of job.followers.splice(0)) f.reject(closed);
      return void done();
    }
    // A step aborted because cancel/timeout/orphan preempted it did not fail.
    if (isTerminal(rt.record.status) && !isTerminal(status)) return void done();
    const message = toError(err).message;
    const record = rt.record;
    record.stepError = { status, message };
    this.#stats.stepFailures++;
    this.#events.emit('stepFailed', record, { message, reported: status });
    if (isTerminal(record.status)) {
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
    // The callback moves to error; this job's followers are answered after the error step.
    this.end(rt, 'error', { message }, job.followers.splice(0));
    done();
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
      host.storedStatus = record.status;
      host.storedDue = dueAt(record, host.lastActivity);
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
    const done = (): void => {
      finish();
      this.#answerJob(rt, job, true);
    };
    return this.#steps.run(rt, anchor, step, status, report, (ok, value) => {
      if (!ok) return this.#stepFailed(rt, status, value, job, done);
      record.stepError = undefined;
      this.#stepDone(rt, status, value as StepOutput, job, done);
    });
  }

  // ---- terminal transitions -----------------------------------------------------------------

  /**
   * Moves an active callback to a terminal status at once: the transition is applied now, a
   * running step is aborted, timers stop, active children are orphaned, and a terminal job
   * (terminal step, then finalize) goes to the front of the mailbox; `followers` get its answer.
   */
  end(
    rt: CallbackRuntime,
    status: TerminalStatus,
    data: CallbackData,
    followers: Follower[],
  ): void {
    this.#applyTerminal(rt, status, data, followers);
    // Orphan the whole subtree iteratively: deep trees must not grow the stack.
    const ended = [rt];
    for (let i = 0; i < ended.length; i++) {
      const parent = ended[i]!;
      for (const childId of parent.record.children ?? []) {
        const child = this.#registry.runtime(childId);
        if (!child || isTerminal(child.record.status)) continue;
        this.#applyTerminal(
          child,
          'orphan',
          { reason: 'parent-inactive', parentStatus: parent.record.status },
          [],
        );
        ended.push(child);
      }
    }
    for (const r of ended) if (!r.busy && !this.#closed) this.#drain(r);
  }

  #applyTerminal(
    rt: CallbackRuntime,
    status: TerminalStatus,
    data: CallbackData,
    followers: Follower[],
  ): void {
    const record = rt.record;
    const actor = this.#registry.activate(rt);
    actor.send({ type: STATUS_EVENT[status], data });
    this.#setStatus(rt, status, actor.getSnapshot().context.data);
    if (rt.dataBytes !== undefined) rt.dataBytes += patchBytesBound(data);
    record.terminalReport = canonicalJson(data);
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
    // A pending retry of an active step is dropped: the callback ended.
    record.retry = undefined;
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
    rt.record.removeAt = this.#registry.removeAt(rt.record);
    this.#registry.passivate(rt);
    this.#answerJob(rt, job, true);
    const waiters = rt.waiters;
    rt.waiters = undefined;
    if (waiters) this.#answerJob(rt, { ...job, followers: waiters }, false);
  }

  #setStatus(rt: CallbackRuntime, to: CallbackStatus, data: DataVersion): void {
    const record = rt.record;
    const from = record.status;
    record.data = data;
    if (from === to) return;
    record.status = to;
    this.#stats.move(record.anchor, from, to);
    this.#events.emit('transitioned', record, { from });
  }

  // ---- shutdown -----------------------------------------------------------------------------

  /**
   * Stops processing: every running step is aborted (pool steps are let finish when the pool
   * drains on close), every queued job rejected with {@link EngineClosedError}. Waits at most
   * `closeTimeout` (on the engine clock) for steps in flight and the pool's drain; then stops
   * waiting for steps that ignored their abort (their followers and the callback's waiters
   * reject with {@link EngineClosedError}) and destroys the pool.
   */
  async close(): Promise<void> {
    this.#closed = true;
    const closed = new EngineClosedError();
    const inFlight: Promise<unknown>[] = [];
    const stepping: CallbackRuntime[] = [];
    for (const rt of this.#registry.runtimes()) {
      // No further try; a durable store keeps the pending retry for the next start.
      rt.retry?.stop(false);
      if (!(this.#o.pool.close === 'drain' && rt.step?.onPool)) rt.step?.abort.abort(closed);
      for (const job of rt.drainAll()) for (const f of job.followers) f.reject(closed);
      if (rt.stepPromise) {
        // Its waiters may still be answered: a terminal step in flight finalizes the callback.
        inFlight.push(rt.stepPromise);
        stepping.push(rt);
      } else {
        for (const w of rt.waiters ?? []) w.reject(closed);
        rt.waiters = undefined;
      }
    }
    const clock = this.#o.clock;
    const expired = new AbortController();
    const timer = clock.setTimeout(() => expired.abort(closed), this.#o.closeTimeoutMs);
    const timedOut = new Promise<void>((resolve) =>
      expired.signal.addEventListener('abort', () => resolve(), { once: true }),
    );
    try {
      if (inFlight.length > 0) await Promise.race([Promise.allSettled(inFlight), timedOut]);
      for (const rt of stepping) {
        rt.step?.release?.(closed);
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
