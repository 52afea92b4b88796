/**
 * A callback's history: the entries of its journal as users read them
 * (`engine.history()`, the dashboard's detail view, `callback-engine get`).
 * Every accepted report, every step owed and its outcome, every retry,
 * deadline, cancel and orphaning is one entry, appended in the same commit as
 * its effect and kept until the callback's retention ends.
 *
 * @module
 */

import type { CallbackData } from './data.js';
import type { CallbackStatus, DispatchStatus } from './lifecycle/statuses.js';

/**
 * What one history entry records (a fact, named in the past tense):
 * - `created`: the callback was created; `data` is its creation data.
 * - `reported`: an outside party's report; `reported` is the status it sent, `outcome` whether it
 *   moved the callback (`applied`) or changed nothing (`ignored`: a late `accept`/`start`),
 *   `data` its data, `dedupKey` its deduplication key.
 * - `cancelled`: the caller cancelled (`engine.cancel()`, the dashboard); `data` its data.
 * - `timedOut`: the deadline or the heartbeat window passed (`reason`).
 * - `orphaned`: the parent ended while this callback was active (`reason`, `data`).
 * - `stepCompleted`: a step try succeeded; `data` is its output (merged), `durationMs` its time.
 * - `stepFailed`: a step try failed (`error`); with `retryAt` its next try is scheduled, else
 *   the callback moved to `error` (if it was active).
 * - `stepResumed`: a step owed when the engine stopped (crash, `close()`, a shard moving to
 *   another replica) runs again, with nobody resending.
 * - `stepRetried`: a failed final step runs again on request (`engine.retryStep()`).
 *
 * An entry that owes a step names it in `step` and `attempt` (`created`, an applied `reported`,
 * `cancelled`, `timedOut`, `orphaned`, a `stepFailed` that schedules a retry or moves the callback
 * to `error`, `stepResumed`, `stepRetried`); `stepCompleted` and `stepFailed` name the try they end.
 */
export type HistoryKind =
  | 'created'
  | 'reported'
  | 'cancelled'
  | 'timedOut'
  | 'orphaned'
  | 'stepCompleted'
  | 'stepFailed'
  | 'stepResumed'
  | 'stepRetried';

/** One entry of a callback's history. Absent fields do not apply to its kind. */
export interface HistoryEntry {
  /** Its position in the callback's history: 1, 2, 3, ... with no gaps. */
  readonly seq: number;
  /** When it happened (engine clock, ms since the epoch). */
  readonly at: number;
  readonly kind: HistoryKind;
  /** The callback's status after this entry. */
  readonly status: CallbackStatus;
  /** `reported`: the status the outside party sent. */
  readonly reported?: DispatchStatus;
  /** `reported`: whether it moved the callback or changed nothing. */
  readonly outcome?: 'applied' | 'ignored';
  /**
   * The data it carried: the creation data (`created`), the report's data (`reported`,
   * `cancelled`), a step's output (`stepCompleted`), the reason's details (`timedOut`, `orphaned`).
   */
  readonly data?: CallbackData;
  /** `reported`: its deduplication key. */
  readonly dedupKey?: string;
  /** The status whose step this entry owes, or whose try it ends. */
  readonly step?: CallbackStatus;
  /** The try number of that step (1 for the first try). */
  readonly attempt?: number;
  /** `stepFailed`: why the try failed (bounded in size). */
  readonly error?: string;
  /** `stepFailed`: when the next try runs (engine clock), if one is scheduled. */
  readonly retryAt?: number;
  /** `stepCompleted`, `stepFailed`: how long the try ran, in ms. */
  readonly durationMs?: number;
  /** `timedOut`: `deadline` or `heartbeat`; `orphaned`: `parent-inactive`; `stepResumed`: why. */
  readonly reason?: string;
}

/** One page of a callback's history, oldest entry first. */
export interface HistoryPage {
  /** The callback's id. */
  readonly id: string;
  readonly entries: readonly HistoryEntry[];
  /** Pass to the next call for the next page; `undefined` on the last page. */
  readonly cursor: string | undefined;
}

/** Options of `engine.history()`. */
export interface HistoryOptions {
  /** The `cursor` of the previous page. */
  readonly cursor?: string | undefined;
  /** Entries per page, 1 to 1000. @default 100 */
  readonly limit?: number | undefined;
}
