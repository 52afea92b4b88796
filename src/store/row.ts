/**
 * The columns of a stored callback as SQL stores (SQLite, PostgreSQL) return them, and their
 * mapping to a {@link StoredCallback}.
 *
 * @module
 */

import type { CallbackStatus } from '../lifecycle/statuses.js';
import type { StoredCallback } from './store.js';

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
