/**
 * A callback's record to and from what a durable store keeps: the row's
 * indexed columns, its fixed part (`meta`, written once), and its state as a
 * snapshot (the machine's persisted snapshot and the record's mutable fields,
 * folded up to some journal entry) plus the journal entries after it.
 *
 * @module
 */

import { DataVersion, deepFreeze } from '../data.js';
import { persistSnapshot, restoreSnapshot, type PersistedLifecycle } from '../lifecycle/persist.js';
import type { LifecycleSnapshot } from '../lifecycle/machine.js';
import { isTerminal } from '../lifecycle/statuses.js';
import {
  decodeEntry,
  foldEntries,
  type FoldedState,
  type OwedInvocation,
} from '../journal/journal.js';
import type { CallbackRowWrite, StoredCallback } from '../store/store.js';
import type { StepError } from '../types.js';
import { creationKeys, type CallbackRecord } from './record.js';

/** What never changes after creation. */
interface Meta {
  token: string;
  createdAt: number;
  tags?: readonly string[];
  parentToken?: string;
  deadlineAt?: number;
  heartbeatMs?: number;
  /** -1 for forever. */
  retention: number;
  /** The creation data's keys (absent in rows of older versions). */
  keys?: readonly string[];
}

/** A snapshot: the state folded up to entry `head`. */
interface SnapshotBody {
  head: number;
  snapshot: PersistedLifecycle;
  lastActivity: number;
  owed?: OwedInvocation;
  removeAt?: number;
  stepError?: StepError;
  terminalReport?: string;
}

/**
 * The next instant the engine must act on a record: a retry waiting for its instant; while
 * active, its deadline and heartbeat; once inactive and owing nothing, its removal.
 */
export function dueAt(record: CallbackRecord, lastActivity: number): number | null {
  let due = record.owed?.at ?? Infinity;
  if (isTerminal(record.status)) {
    if (record.owed === undefined && record.removeAt !== undefined)
      due = Math.min(due, record.removeAt);
  } else {
    if (record.deadlineAt !== undefined) due = Math.min(due, record.deadlineAt);
    if (record.heartbeatMs !== undefined) due = Math.min(due, lastActivity + record.heartbeatMs);
  }
  return due === Infinity ? null : due;
}

/** The fixed part of a record, as JSON. */
export function encodeMeta(record: CallbackRecord): string {
  const meta: Meta = {
    token: record.token,
    createdAt: record.createdAt,
    retention: record.retention === true ? -1 : record.retention,
  };
  if (record.tags.length > 0) meta.tags = record.tags;
  if (record.parentToken !== undefined) meta.parentToken = record.parentToken;
  if (record.deadlineAt !== undefined) meta.deadlineAt = record.deadlineAt;
  if (record.heartbeatMs !== undefined) meta.heartbeatMs = record.heartbeatMs;
  if (record.createdKeys !== undefined) meta.keys = [...record.createdKeys];
  return JSON.stringify(meta);
}

/** The row of a record: every column on insert; status, due time, head and owed on update. */
export function encodeRow(
  record: CallbackRecord,
  lastActivity: number,
  change: 'insert' | 'update',
  meta: string,
): CallbackRowWrite {
  return {
    change,
    id: record.id,
    seq: record.seq,
    anchor: record.anchor,
    status: record.status,
    dueAt: dueAt(record, lastActivity),
    idempotencyKey: record.idempotencyKey ?? null,
    correlationKey: record.correlationKey ?? null,
    parentId: record.parentId ?? null,
    head: record.head,
    owed: record.owed !== undefined,
    meta,
  };
}

/**
 * The snapshot of a record as it is now (folded up to its newest entry). `snapshot` is the live
 * actor's, if it has one; the persisted shape is the machine's own (`getPersistedSnapshot()`).
 */
export function encodeSnapshot(
  record: CallbackRecord,
  lastActivity: number,
  snapshot: LifecycleSnapshot | undefined,
): string {
  const body: SnapshotBody = {
    head: record.head,
    snapshot: persistSnapshot(record.status, record.data, snapshot),
    lastActivity,
  };
  if (record.owed !== undefined) body.owed = record.owed;
  if (record.removeAt !== undefined) body.removeAt = record.removeAt;
  if (record.stepError !== undefined) body.stepError = record.stepError;
  if (record.terminalReport !== undefined) body.terminalReport = record.terminalReport;
  return JSON.stringify(body);
}

const NO_TAGS: readonly string[] = Object.freeze([]);

/** A decoded row: the record, when it last heard from outside, and the sizes of its stored state. */
export interface DecodedRecord {
  record: CallbackRecord;
  lastActivity: number;
  /** Bytes of its stored snapshot (0: none), and of the journal entries after it, and their count. */
  snapshotBytes: number;
  tailBytes: number;
  tailEntries: number;
}

/** A record read back from its row: the snapshot (or the initial state) with the journal tail folded in. */
export function decodeRecord(row: StoredCallback): DecodedRecord {
  const meta = JSON.parse(row.meta) as Meta;
  let state: FoldedState;
  if (row.snapshot !== null) {
    const body = JSON.parse(row.snapshot) as SnapshotBody;
    const { status, data } = restoreSnapshot(body.snapshot);
    if (body.owed !== undefined) deepFreeze(body.owed);
    state = {
      status,
      data,
      owed: body.owed,
      removeAt: body.removeAt,
      stepError: body.stepError,
      terminalReport: body.terminalReport,
      lastActivity: body.lastActivity,
      head: body.head,
    };
  } else {
    state = {
      status: 'create',
      data: DataVersion.EMPTY,
      owed: undefined,
      removeAt: undefined,
      stepError: undefined,
      terminalReport: undefined,
      lastActivity: meta.createdAt,
      head: 0,
    };
  }
  let tailBytes = 0;
  const entries = row.tail.map((json) => {
    tailBytes += json.length;
    return decodeEntry(json);
  });
  foldEntries(state, entries);
  const record: CallbackRecord = {
    id: row.id,
    token: meta.token,
    anchor: row.anchor,
    seq: row.seq,
    createdAt: meta.createdAt,
    tags: meta.tags ? Object.freeze([...meta.tags]) : NO_TAGS,
    parentId: row.parentId ?? undefined,
    parentToken: meta.parentToken,
    idempotencyKey: row.idempotencyKey ?? undefined,
    correlationKey: row.correlationKey ?? undefined,
    deadlineAt: meta.deadlineAt,
    heartbeatMs: meta.heartbeatMs,
    ...(Array.isArray(meta.keys) ? { createdKeys: creationKeys(meta.keys) } : {}),
    retention: meta.retention === -1 ? true : meta.retention,
    status: state.status,
    data: state.data,
    children: undefined,
    terminalReport: state.terminalReport,
    removeAt: state.removeAt,
    stepError: state.stepError,
    owed: state.owed,
    head: state.head,
  };
  return {
    record,
    lastActivity: state.lastActivity,
    snapshotBytes: row.snapshot?.length ?? 0,
    tailBytes,
    tailEntries: entries.length,
  };
}
