/**
 * The columns of a stored callback as SQL stores (SQLite, PostgreSQL) return them, and their
 * mapping to a {@link StoredCallback}.
 *
 * @module
 */

import type { CallbackStatus } from '../lifecycle/statuses.js';
import type { EarlyEventRow, StoredCallback } from './store.js';

/** The columns of a {@link Row}, as a SQL select list. */
export const ROW_COLUMNS = 'id, seq, anchor, status, due_at, idem_key, corr_key, parent_id, body';

/** One `callbacks` row as read. */
export type Row = {
  id: string;
  seq: number;
  anchor: string;
  status: string;
  due_at: number | null;
  idem_key: string | null;
  corr_key: string | null;
  parent_id: string | null;
  body: string;
};

/** A row as the store contract's {@link StoredCallback}. */
export const toStored = (r: Row): StoredCallback => ({
  id: r.id,
  seq: r.seq,
  anchor: r.anchor,
  status: r.status as CallbackStatus,
  dueAt: r.due_at,
  idempotencyKey: r.idem_key,
  correlationKey: r.corr_key,
  parentId: r.parent_id,
  body: r.body,
});

/** One `early_events` row as read (both SQL stores use these column names). */
export type EarlyRow = {
  seq: number;
  dedup_key: string;
  anchor: string;
  corr_key: string;
  status: CallbackStatus;
  data: string;
  held_at: number;
  expires_at: number;
};

/** An `early_events` row as the store contract's {@link EarlyEventRow}; `key` decodes a stored key. */
export const toEarlyRow = (
  r: EarlyRow,
  key: (stored: string) => string = (k) => k,
): EarlyEventRow => ({
  seq: r.seq,
  dedupKey: r.dedup_key,
  anchor: r.anchor,
  correlationKey: key(r.corr_key),
  status: r.status,
  data: r.data,
  heldAt: r.held_at,
  expiresAt: r.expires_at,
});
