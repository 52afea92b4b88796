/**
 * Owed step invocations: every step is owed by the entry that records the transition; it
 * starts only once that entry is committed (commit, then act), its outcome is the next entry
 * (output merged, or the error), a failure its retry policy covers is owed again with an
 * instant (the timers wake it), and an invocation a crash or a takeover cut off runs again
 * (`resume` jobs), at least once, before any new report.
 *
 * @module
 */

import {
  admitPatch,
  ingestData,
  patchBytesBound,
  type CallbackData,
  type DataVersion,
} from '../data.js';
import { EngineClosedError } from '../errors.js';
import { isTerminal, lookupStep } from '../lifecycle/statuses.js';
import type { ResolvedAnchor } from '../options/anchor.js';
import { retryDelayMs, retryPolicyFor, type RetryWait } from '../retry.js';
import type { CallbackRuntime, Job } from '../registry/callback-runtime.js';
import { Telemetry } from '../telemetry.js';
import type { StepEntry, StepOutput } from '../types.js';
import { stepErrorMessage, type MailboxCore } from './core.js';
import type { OwedInvocation } from '../journal/journal.js';
import type { StepRunner } from './step-runner.js';
import type { Terminal } from './terminal.js';

/** Runs what callbacks owe. */
export class OwedSteps {
  readonly #c: MailboxCore;
  /** Runs steps (in process or on the worker pool) with their signal and time limit. */
  readonly #steps: StepRunner;
  readonly #terminal: Terminal;
  /** Anchors already warned about a step failing after its callback was terminal. */
  readonly #warnedAnchors = new Set<string>();

  constructor(core: MailboxCore, steps: StepRunner, terminal: Terminal) {
    this.#c = core;
    this.#steps = steps;
    this.#terminal = terminal;
  }

  /**
   * Runs the step invocation the callback owes (if any), records its outcome, then calls `done`.
   * Returns a promise only when the step is asynchronous or waits for a retry.
   */
  runOwed(rt: CallbackRuntime, job: Job, done: () => void): Promise<void> | undefined {
    const c = this.#c;
    const owed = rt.record.owed;
    if (!owed) return void done();
    const anchor = c.anchors.get(rt.record.anchor);
    const step = anchor && lookupStep(anchor.next, owed.step);
    if (!anchor || !step) {
      // Owed by an earlier version of the anchor, which had a step here: nothing runs now.
      c.record(rt, {
        kind: 'stepCompleted',
        step: owed.step,
        attempt: owed.attempt,
        reason: 'no-step',
        owed: null,
        ...c.endOfTerminalStep(rt.record, owed),
      });
      return void done();
    }
    // Commit, then act: the step starts once the entry that owes it is in the store, so a crash
    // inside the step leaves it owed (it runs again at the next start), never lost.
    if (!c.registry.durable || rt.batch === undefined)
      return this.#try(rt, anchor, step, owed, job, done);
    return new Promise<void>((resolve) => {
      c.journal.release(
        rt,
        () => {
          // Pre-empted while committing (a cancel, a deadline), or `close()`'s grace period is
          // over: the step does not start (owed still, it runs at the next start).
          if (rt.record.owed !== owed || c.cutOff || rt.invalid) {
            done();
            return resolve();
          }
          let pending: Promise<void> | undefined;
          try {
            pending = this.#try(rt, anchor, step, owed, job, done);
          } catch (err) {
            c.events.warn(err);
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
    const c = this.#c;
    let retrying: Promise<void> | undefined;
    const telemetry = c.events.telemetry;
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
    const c = this.#c;
    const record = rt.record;
    if (rt.invalid) return undefined;
    const policy = retryPolicyFor(anchor.retry, step, owed.step);
    if (!policy || owed.attempt >= policy.attempts) return undefined;
    const attempt = owed.attempt + 1;
    const delayMs = retryDelayMs(policy, attempt);
    const at = c.o.clock.now() + delayMs;
    const message = stepErrorMessage(err);
    c.stats.stepRetries++;
    c.events.emit('stepRetried', record, {
      reported: owed.step,
      attempt: owed.attempt,
      delayMs,
      message,
    });
    const next: OwedInvocation = { step: owed.step, attempt, report: owed.report, at };
    c.record(rt, {
      kind: 'stepFailed',
      step: owed.step,
      attempt: owed.attempt,
      error: message,
      retryAt: at,
      durationMs,
      owed: next,
    });
    c.answerJob(rt, { ...job, followers: job.followers.splice(0) });
    // Closing: the retry stays owed (with its instant) for the next start.
    if (c.closed) return Promise.resolve();
    return this.waitRetry(rt, anchor, step, next, job, done);
  }

  /**
   * Waits until the owed retry's instant (the timers wake it: a deadline in memory mode, the
   * store's due-time index in durable mode), then runs it. The mailbox stays busy meanwhile, but
   * no step runs and no pool slot is held. The promise settles once the last try did, or the
   * wait was stopped.
   */
  waitRetry(
    rt: CallbackRuntime,
    anchor: ResolvedAnchor,
    step: Exclude<StepEntry, false>,
    owed: OwedInvocation,
    job: Job,
    done: () => void,
  ): Promise<void> {
    const c = this.#c;
    const at = owed.at ?? c.o.clock.now();
    return new Promise<void>((resolve) => {
      const leave = (): boolean => {
        if (rt.retry !== wait) return false;
        rt.retry = undefined;
        c.timers.disarmRetry(rt);
        return true;
      };
      const wait: RetryWait = {
        status: owed.step,
        at,
        fire: () => {
          if (!leave()) return;
          if (c.closed || rt.invalid || rt.record.owed !== owed) return resolve();
          let pending: Promise<void> | undefined;
          try {
            pending = this.#try(rt, anchor, step, owed, job, done);
          } catch (err) {
            c.events.warn(err);
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
              c.events.warn(err);
            }
          }
          resolve();
        },
      };
      rt.retry = wait;
      c.timers.armRetry(rt, at);
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
    const c = this.#c;
    const record = rt.record;
    const status = owed.step;
    let data: CallbackData | undefined;
    let patchBytes = 0;
    if (out !== undefined && out !== null) {
      try {
        data = ingestData(`output of the "${status}" step`, out, c.o.maxDataBytes);
        patchBytes = patchBytesBound(data);
        rt.dataBytes = admitPatch(
          `the output of the "${status}" step`,
          record.data,
          rt.dataBytes,
          data,
          patchBytes,
          c.o.maxCallbackBytes,
        );
      } catch (err) {
        return this.#stepFailed(rt, owed, err, durationMs, job, done);
      }
      if (Object.keys(data).length === 0) data = undefined;
    }
    let merged: DataVersion | undefined;
    if (data !== undefined && !isTerminal(record.status)) {
      // The machine merges it (the actor is done once final: then the entry's fold merges it).
      const actor = c.registry.activate(rt);
      actor.send({ type: 'MERGE', data });
      merged = actor.getSnapshot().context.data;
    }
    c.record(
      rt,
      {
        kind: 'stepCompleted',
        step: status,
        attempt: owed.attempt,
        durationMs,
        owed: null,
        ...(data !== undefined ? { data, merge: true } : {}),
        ...(record.stepError !== undefined && job.kind === 'retry' ? { stepError: null } : {}),
        ...c.endOfTerminalStep(record, owed),
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
    const c = this.#c;
    // Cut off by `close()` after its grace period. A durable store keeps it owed (it runs again
    // at the next start) and its report is answered with the callback as stored; in memory it
    // is gone with the engine.
    if (c.closed && err instanceof EngineClosedError) {
      if (!c.registry.durable) for (const f of job.followers.splice(0)) f.reject(err);
      return void done();
    }
    const message = stepErrorMessage(err);
    const record = rt.record;
    const status = owed.step;
    const stepError = { status, message };
    c.stats.stepFailures++;
    if (isTerminal(record.status)) {
      c.record(rt, {
        kind: 'stepFailed',
        step: status,
        attempt: owed.attempt,
        error: message,
        durationMs,
        stepError,
        owed: null,
        ...c.endOfTerminalStep(record, owed),
      });
      c.events.emit('stepFailed', record, { message, reported: status });
      // Nothing else shows it: the status is final. Recorded on the callback; warned once per anchor.
      if (!this.#warnedAnchors.has(record.anchor)) {
        this.#warnedAnchors.add(record.anchor);
        c.events.log(
          'CBE_W_STEP_FAILED_AFTER_TERMINAL',
          `callback-engine: the "${status}" step of anchor "${record.anchor}" failed after the callback became "${record.status}": ${message} (kept as the callback's stepError; warned once per anchor)`,
          { anchor: record.anchor, status, id: record.id },
        );
      }
      return void done();
    }
    c.events.emit('stepFailed', record, { message, reported: status });
    // The callback moves to error; this job's followers are answered after the error step.
    const ended = this.#terminal.endFetched(rt, 'error', { message }, job.followers.splice(0), {
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

  resume(rt: CallbackRuntime, job: Job): Promise<void> | undefined {
    const c = this.#c;
    const record = rt.record;
    const owed = record.owed;
    const done = () =>
      owed && isTerminal(owed.step) ? this.#terminal.finalize(rt, job) : c.answerJob(rt, job);
    if (!owed) return void c.answerJob(rt, job);
    const anchor = c.anchors.get(record.anchor);
    const step = anchor && lookupStep(anchor.next, owed.step);
    if (anchor && step && owed.at !== undefined && owed.at > c.o.clock.now())
      // A retry waiting for its instant: the wait goes on.
      return this.waitRetry(rt, anchor, step, owed, job, done);
    // Its try was cut off: it runs again, with nobody resending (at least once).
    c.record(rt, {
      kind: 'stepResumed',
      reason: 'recovered',
      owed: { step: owed.step, attempt: owed.attempt, report: owed.report },
    });
    return this.runOwed(rt, job, done);
  }
}
