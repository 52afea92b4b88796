/**
 * The columns of a held early event as both SQL stores (SQLite, PostgreSQL) return them, and
 * their mapping to an {@link EarlyEventRow}.
 *
 * @module
 */

import type { CallbackStatus } from '../lifecycle/statuses.js';
import type { EarlyEventRow } from './store.js';

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
