/**
 * A stored row fell due (durable mode: the store's scheduler hands over its id). What is due
 * becomes the callback's next job: its deadline or heartbeat ends it with `timeout`, a retry
 * wait ends, a retained callback whose retention ended is removed, and a row whose due time is
 * stale (activity since) is written again.
 *
 * @module
 */

import { isTerminal } from '../lifecycle/statuses.js';
import type { CallbackRuntime } from '../registry/callback-runtime.js';
import { overdue } from '../timers/callback-timers.js';
import type { MailboxCore } from './core.js';

/** Acts on due rows. */
export class DueRows {
  readonly #c: MailboxCore;
  readonly #timeout: (rt: CallbackRuntime, reason: 'deadline' | 'heartbeat') => void;
  /** Ids whose removal (end of retention) is being committed. */
  readonly #removing = new Set<string>();

  constructor(
    core: MailboxCore,
    timeout: (rt: CallbackRuntime, reason: 'deadline' | 'heartbeat') => void,
  ) {
    this.#c = core;
    this.#timeout = timeout;
  }

  /**
   * The stored row of callback `id` is due.
   * @returns whether anything was done (so the scheduler knows it is not spinning on it).
   */
  due(id: string): boolean {
    const c = this.#c;
    const now = c.o.clock.now();
    const found = c.registry.load(id);
    if (!found) return false;
    if (found.kind === 'retained') {
      const record = found.record;
      if (record.removeAt === undefined || record.removeAt > now || this.#removing.has(id))
        return false;
      // Counted as removed once the delete is committed (a failed one is retried when due).
      this.#removing.add(id);
      c.journal.removeRetained(
        id,
        () => {
          this.#removing.delete(id);
          c.registry.forget(record, 'retention');
        },
        () => this.#removing.delete(id),
      );
      return true;
    }
    const rt = found.rt;
    const record = rt.record;
    // A callback with writes in flight writes its row again; that commit re-arms.
    if (rt.batch !== undefined) return false;
    if (!isTerminal(record.status)) {
      const reason = overdue(rt, now);
      if (reason !== undefined) {
        this.#timeout(rt, reason);
        return true;
      }
    }
    if (record.owed?.at !== undefined) {
      // Its step is being tried (or resumed): the row is written again when that try ends.
      if (rt.retry === undefined) return false;
      // A step waits for its retry: the wait ends now (else the stored due time is stale).
      if (rt.retry.at <= now) {
        rt.retry.fire();
        return true;
      }
    }
    if (isTerminal(record.status)) return false;
    // The stored due time is stale (activity since): store the right one.
    c.journal.touchRow(rt);
    return true;
  }
}
