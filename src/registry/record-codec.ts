/**
 * A callback's record to and from the store's row: indexed columns plus a
 * JSON body holding the machine's persisted snapshot and the record's times.
 *
 * @module
 */

import { deepFreeze } from '../data.js';
import { persistSnapshot, restoreSnapshot, type PersistedLifecycle } from '../lifecycle/persist.js';
import type { LifecycleSnapshot } from '../lifecycle/machine.js';
import { isTerminal } from '../lifecycle/statuses.js';
import type { PendingRetry } from '../retry.js';
import type { StoredCallback } from '../store/store.js';
import type { StepError } from '../types.js';
import type { CallbackRecord } from './record.js';

/** The body of a stored row. */
interface Body {
  token: string;
  createdAt: number;
  tags?: readonly string[];
  parentToken?: string;
  deadlineAt?: number;
  heartbeatMs?: number;
  /** -1 for forever. */
  retention: number;
  terminalReport?: string;
  lastActivity: number;
  removeAt?: number;
  stepError?: StepError;
  /** A step waiting for its next try (active callbacks only). */
  retry?: PendingRetry;
  snapshot: PersistedLifecycle;
}

/**
 * The next instant the engine must act on a record: its deadline, heartbeat or pending retry
 * while active, its removal once inactive.
 */
export function dueAt(record: CallbackRecord, lastActivity: number): number | null {
  if (isTerminal(record.status)) return record.removeAt ?? null;
  let due = record.deadlineAt ?? Infinity;
  if (record.heartbeatMs !== undefined) due = Math.min(due, lastActivity + record.heartbeatMs);
  if (record.retry !== undefined) due = Math.min(due, record.retry.at);
  return due === Infinity ? null : due;
}

/**
 * The row of a record. `snapshot` is the live actor's snapshot if it has one;
 * the persisted snapshot is the machine's own (`getPersistedSnapshot()`).
 * `storedStatus` and `storedDue` describe the row the store holds (none: a new
 * row), so the store can update only what changed.
 */
export function encodeRecord(
  record: CallbackRecord,
  lastActivity: number,
  snapshot: LifecycleSnapshot | undefined,
  storedStatus?: string,
  storedDue: number | null = null,
): StoredCallback {
  const body: Body = {
    token: record.token,
    createdAt: record.createdAt,
    retention: record.retention === true ? -1 : record.retention,
    lastActivity,
    snapshot: persistSnapshot(record.status, record.data, snapshot),
  };
  if (record.tags.length > 0) body.tags = record.tags;
  if (record.parentToken !== undefined) body.parentToken = record.parentToken;
  if (record.deadlineAt !== undefined) body.deadlineAt = record.deadlineAt;
  if (record.heartbeatMs !== undefined) body.heartbeatMs = record.heartbeatMs;
  if (record.terminalReport !== undefined) body.terminalReport = record.terminalReport;
  if (record.removeAt !== undefined) body.removeAt = record.removeAt;
  if (record.stepError !== undefined) body.stepError = record.stepError;
  if (record.retry !== undefined && !isTerminal(record.status)) body.retry = record.retry;
  const due = dueAt(record, lastActivity);
  return {
    change:
      storedStatus === undefined
        ? 'insert'
        : storedStatus !== record.status || storedDue !== due
          ? 'index'
          : 'body',
    id: record.id,
    seq: record.seq,
    anchor: record.anchor,
    status: record.status,
    dueAt: due,
    idempotencyKey: record.idempotencyKey ?? null,
    correlationKey: record.correlationKey ?? null,
    parentId: record.parentId ?? null,
    body: JSON.stringify(body),
  };
}

const NO_TAGS: readonly string[] = Object.freeze([]);

/** A record read back from its row, and when it last heard from the outside. */
export function decodeRecord(row: StoredCallback): {
  record: CallbackRecord;
  lastActivity: number;
} {
  const body = JSON.parse(row.body) as Body;
  const { status, data } = restoreSnapshot(body.snapshot);
  const record: CallbackRecord = {
    id: row.id,
    token: body.token,
    anchor: row.anchor,
    seq: row.seq,
    createdAt: body.createdAt,
    tags: body.tags ? Object.freeze([...body.tags]) : NO_TAGS,
    parentId: row.parentId ?? undefined,
    parentToken: body.parentToken,
    idempotencyKey: row.idempotencyKey ?? undefined,
    correlationKey: row.correlationKey ?? undefined,
    deadlineAt: body.deadlineAt,
    heartbeatMs: body.heartbeatMs,
    retention: body.retention === -1 ? true : body.retention,
    status,
    data,
    children: undefined,
    terminalReport: body.terminalReport,
    removeAt: body.removeAt,
    stepError: body.stepError,
  };
  if (body.retry !== undefined && !isTerminal(status)) {
    deepFreeze(body.retry.report);
    record.retry = body.retry;
  }
  return { record, lastActivity: body.lastActivity };
}
