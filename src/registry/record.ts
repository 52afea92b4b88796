/**
 * The plain, serializable state of one callback. Everything needed to answer
 * for it, or to restore its actor, lives here; the live actor and mailbox are
 * runtime-only (see `callback-runtime.ts`).
 *
 * @module
 */

import type { DataVersion } from '../data.js';
import type { CallbackStatus } from '../lifecycle/statuses.js';
import type { JournalEntry, OwedInvocation } from '../journal/journal.js';
import type { Deadline } from '../timers/deadline-queue.js';
import type { CreateLink } from '../telemetry.js';
import type { StepError } from '../types.js';

/** The persisted state of one callback. */
export interface CallbackRecord {
  readonly id: string;
  readonly token: string;
  readonly anchor: string;
  /** Creation order, for stable listing. */
  readonly seq: number;
  readonly createdAt: number;
  readonly tags: readonly string[];
  readonly parentId: string | undefined;
  readonly parentToken: string | undefined;
  readonly idempotencyKey: string | undefined;
  /**
   * The keys of its creation data (shared between callbacks created with the same keys): a
   * report may not change them unless its anchor lists them in `reportable`. `undefined` for a
   * record stored by an older version (then nothing is checked).
   */
  readonly createdKeys?: ReadonlySet<string> | undefined;
  /** Key in the engine's correlation index (anchors with `correlate`). */
  readonly correlationKey: string | undefined;
  /** Absolute deadline, ms since epoch, if any. */
  readonly deadlineAt: number | undefined;
  /** Heartbeat window in ms, if any. */
  readonly heartbeatMs: number | undefined;
  /** Retention after inactive in ms, or `true` for forever. */
  readonly retention: number | true;
  status: CallbackStatus;
  /** The merged data (read `.value` for the plain object). */
  data: DataVersion;
  /** Ids of child callbacks. */
  children: string[] | undefined;
  /** Canonical JSON of the report that made it terminal, to recognise a replay. */
  terminalReport: string | undefined;
  /** When an inactive record is removed (ms since epoch); `undefined` while active or kept forever. */
  removeAt?: number | undefined;
  /** Runtime only, never stored: the retention timer of a record retained in memory. */
  timer?: Deadline<unknown> | undefined;
  /** Runtime only, never stored: the span context of its `create` span, linked from step spans. */
  trace?: CreateLink | undefined;
  /** The latest step failure (shown in answers as `stepError`). */
  stepError: StepError | undefined;
  /**
   * The step invocation it owes: written with the entry that owes it, cleared by the entry that
   * ends it; one owed when the engine stopped runs again at the next start.
   */
  owed: OwedInvocation | undefined;
  /** The seq of its newest journal entry (0: none yet). */
  head: number;
  /**
   * Memory store only: its journal (history), kept with the record until its retention ends;
   * once the callback is retired, packed into one JSON text (a retained record stays small).
   */
  journal?: JournalEntry[] | string | undefined;
  /**
   * Memory store only: deduplication keys of reports applied to it, with when (engine clock);
   * kept for the deduplication window.
   */
  keys?: Map<string, number> | undefined;
}

/** Most distinct creation key sets shared; past it each record keeps its own set. */
const MAX_SHARED_KEY_SETS = 1024;
const sharedKeySets = new Map<string, ReadonlySet<string>>();

/**
 * The set of `keys`, shared with every record created with the same keys (most callbacks of an
 * anchor are created with the same ones), so that keeping it costs a record one reference.
 */
export function creationKeys(keys: readonly string[]): ReadonlySet<string> {
  const id = keys.join('\u0000');
  let set = sharedKeySets.get(id);
  if (set === undefined) {
    set = new Set(keys);
    if (sharedKeySets.size < MAX_SHARED_KEY_SETS) sharedKeySets.set(id, set);
  }
  return set;
}
