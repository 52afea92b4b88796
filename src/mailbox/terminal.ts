/**
 * Terminal transitions (complete, error, cancel, timeout, orphan): applied and journaled at
 * once, owing the terminal step; a running step is aborted and a waiting retry stopped; the
 * callback's active subtree is orphaned in the same turn (the parent's end and its children's
 * orphaning are one commit); and a terminal job (the terminal step, then finalize) jumps to the
 * front of the mailbox.
 *
 * @module
 */

import { canonicalJson, patchBytesBound, type CallbackData } from '../data.js';
import { toError } from '../thrown.js';
import { STATUS_EVENT } from '../lifecycle/machine.js';
import { isTerminal, type CallbackStatus, type TerminalStatus } from '../lifecycle/statuses.js';
import type { CallbackRuntime, Follower, Job } from '../registry/callback-runtime.js';
import type { EndCause, MailboxCore } from './core.js';

/** Ends callbacks. */
export class Terminal {
  readonly #c: MailboxCore;
  /** Works through a callback's mailbox (the processor's). */
  readonly #drain: (rt: CallbackRuntime) => void;

  constructor(core: MailboxCore, drain: (rt: CallbackRuntime) => void) {
    this.#c = core;
    this.#drain = drain;
  }

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
    const c = this.#c;
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
        const child = c.registry.runtime(childId);
        if (!child || isTerminal(child.record.status)) continue;
        subtree.push({ rt: child, parentStatus });
        queue.push({ ids: child.record.children ?? [], parentStatus: 'orphan' });
      }
    }
    this.#apply(rt, status, data, followers, cause);
    for (const { rt: child, parentStatus } of subtree)
      this.#apply(child, 'orphan', { reason: 'parent-inactive', parentStatus }, [], {
        kind: 'orphaned',
        reason: 'parent-inactive',
      });
    if (!rt.busy && !c.closed) this.#drain(rt);
    for (const { rt: r } of subtree) if (!r.busy && !c.closed) this.#drain(r);
  }

  /**
   * Like {@link end}, for a store read asynchronously: the callback's active subtree is fetched
   * first when it has children (the rows fetched for its report are gone by the time its step
   * fails). Resolves once it ended.
   */
  endFetched(
    rt: CallbackRuntime,
    status: TerminalStatus,
    data: CallbackData,
    followers: Follower[],
    cause: EndCause,
  ): Promise<void> | undefined {
    const c = this.#c;
    if (!c.registry.prefetching || !rt.record.children?.length) {
      this.end(rt, status, data, followers, cause);
      return undefined;
    }
    return c.registry.warm({ ids: [rt.record.id], subtree: true }).then(
      () => {
        if (!isTerminal(rt.record.status)) this.end(rt, status, data, followers, cause);
        else c.answerJob(rt, { kind: 'read', status, data, followers });
      },
      (err: unknown) => {
        // Not ended: its step failure is not recorded, and the invocation stays owed.
        for (const f of followers) f.reject(toError(err));
        c.events.warn(err);
      },
    );
  }

  #apply(
    rt: CallbackRuntime,
    status: TerminalStatus,
    data: CallbackData,
    followers: Follower[],
    cause: EndCause,
  ): void {
    const c = this.#c;
    const record = rt.record;
    const actor = c.registry.activate(rt);
    actor.send({ type: STATUS_EVENT[status], data });
    const owed = c.owes(record, status, data);
    const removeAt = owed ? undefined : c.registry.removeAt(record);
    c.record(
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
    c.timers.stop(rt);
    if (status === 'timeout') {
      c.stats.timedOut++;
      c.events.emit('timedOut', record, {
        reason: typeof data.reason === 'string' ? data.reason : 'deadline',
      });
    } else if (status === 'orphan') {
      c.stats.orphaned++;
      c.events.emit('orphaned', record, undefined);
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

  /** The terminal step ran (or there was none): the callback is done; its waiters are answered. */
  finalize(rt: CallbackRuntime, job: Job): void {
    const c = this.#c;
    rt.finalized = true;
    const record = rt.record;
    if (record.retention !== true && record.retention <= 0) c.journal.removeNow(rt);
    c.registry.passivate(rt);
    c.answerJob(rt, job);
    const waiters = rt.waiters;
    rt.waiters = undefined;
    if (waiters) c.answerJob(rt, { ...job, followers: waiters });
  }
}
