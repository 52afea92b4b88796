/**
 * The callback journal: one append-only list of entries per callback, the
 * engine's one write path. Each entry is a fact (a report accepted, a step
 * owed, a try's outcome, a deadline, a cancel, an orphaning) together with the
 * change it makes to the callback's record; the record is a fold of its
 * entries. The mailbox builds an entry when the machine has decided, applies
 * it to the live record with {@link applyEntry}, and appends it to the turn's
 * group commit; recovery folds the stored tail with the same function
 * (Temporal's Add/Apply pairing, Pekko's event handler).
 *
 * @module
 */

import type { DataVersion } from '../data.js';
import { deepFreeze, type CallbackData } from '../data.js';
import type { HistoryEntry } from '../history.js';
import type { CallbackStatus } from '../lifecycle/statuses.js';
import type { StepError } from '../types.js';

/**
 * A step invocation a callback owes: the step of `step` (its status), try `attempt`, with the
 * report it runs for. Stored with the entry that owes it; cleared by the entry that ends it. An
 * invocation owed and not ended when the engine stopped runs again at the next start (or at the
 * shard's next owner), before any new report.
 */
export interface OwedInvocation {
  /** The status whose step runs (`create`, a reported status, or a terminal status). */
  readonly step: CallbackStatus;
  /** The try number (1 for the first). */
  readonly attempt: number;
  /** The report data the step sees. */
  readonly report: CallbackData;
  /** A retry waiting for its instant (engine clock): the store's due-time index wakes it. */
  readonly at?: number | undefined;
}

/**
 * One journal entry as stored: the public history entry plus what it changes in the record.
 * Absent fields leave the record as it was.
 */
export interface JournalEntry extends HistoryEntry {
  /** `data` is merged into the callback's data. */
  readonly merge?: true;
  /** The invocation owed after this entry (`null`: none). */
  readonly owed?: OwedInvocation | null;
  /** When the record is removed (end of retention), once inactive (`null`: kept forever). */
  readonly removeAt?: number | null;
  /** The latest step failure (`null`: cleared). */
  readonly stepError?: StepError | null;
  /** Canonical JSON of the report that made the callback terminal (recognises a replay). */
  readonly terminalReport?: string;
  /** The entry is outside activity: the heartbeat window starts again at `at`. */
  readonly activity?: true;
}

/** The part of a callback's record a journal entry changes. */
export interface Foldable {
  status: CallbackStatus;
  data: DataVersion;
  owed: OwedInvocation | undefined;
  removeAt?: number | undefined;
  stepError: StepError | undefined;
  terminalReport: string | undefined;
  /** The seq of the newest entry folded in (0: none). */
  head: number;
}

/** A record's state while it is folded from its stored snapshot and journal tail. */
export interface FoldedState extends Foldable {
  /** When it last heard from outside (heartbeat). */
  lastActivity: number;
}

/**
 * Applies one entry to a record: the one rule for the live path and for recovery. The status
 * and data agree with what the machine decided when the entry was made; the live path passes
 * the machine's data as `data` (so the report is not merged twice).
 */
export function applyEntry(state: Foldable, entry: JournalEntry, data?: DataVersion): void {
  state.status = entry.status;
  if (data !== undefined) state.data = data;
  else if (entry.merge && entry.data !== undefined) state.data = state.data.with(entry.data);
  if (entry.owed !== undefined) state.owed = entry.owed ?? undefined;
  if (entry.removeAt !== undefined) state.removeAt = entry.removeAt ?? undefined;
  if (entry.stepError !== undefined) state.stepError = entry.stepError ?? undefined;
  if (entry.terminalReport !== undefined) state.terminalReport = entry.terminalReport;
  state.head = entry.seq;
}

/** Folds stored entries (oldest first; those after `state.head`) into `state`. */
export function foldEntries(state: FoldedState, entries: readonly JournalEntry[]): void {
  for (const entry of entries) {
    if (entry.seq <= state.head) continue;
    applyEntry(state, entry);
    if (entry.activity) state.lastActivity = entry.at;
  }
}

/** An entry as the JSON a store keeps. */
export function encodeEntry(entry: JournalEntry): string {
  return JSON.stringify(entry);
}

/**
 * A memory-store record's journal as entries: kept as a list while the callback is active, packed
 * into one JSON text of its entries' public fields once it is retired.
 */
export function readJournal(kept: JournalEntry[] | string | undefined): JournalEntry[] {
  return typeof kept === 'string' ? (JSON.parse(kept) as JournalEntry[]) : (kept ?? []);
}

/** An entry read back from its JSON (frozen: its data may become the callback's). */
export function decodeEntry(json: string): JournalEntry {
  const entry = JSON.parse(json) as JournalEntry;
  deepFreeze(entry);
  return entry;
}

const PUBLIC_KEYS: readonly (keyof HistoryEntry)[] = [
  'seq',
  'at',
  'kind',
  'status',
  'reported',
  'outcome',
  'data',
  'dedupKey',
  'step',
  'attempt',
  'error',
  'retryAt',
  'durationMs',
  'reason',
];

/**
 * The history entry users read: the public fields of a journal entry. An entry that owes a step
 * names it in `step` and `attempt` unless it ends a try (`stepCompleted`, `stepFailed`).
 */
export function toHistory(entry: JournalEntry): HistoryEntry {
  const out: Record<string, unknown> = {};
  for (const key of PUBLIC_KEYS) {
    const v = entry[key];
    if (v !== undefined) out[key] = v;
  }
  if (
    entry.kind !== 'stepCompleted' &&
    entry.kind !== 'stepFailed' &&
    entry.owed !== undefined &&
    entry.owed !== null
  ) {
    out.step = entry.owed.step;
    out.attempt = entry.owed.attempt;
  }
  return Object.freeze(out) as unknown as HistoryEntry;
}
