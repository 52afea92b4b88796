/**
 * What every PostgreSQL statement of the store shares: how keys are encoded
 * (PostgreSQL text cannot hold NUL), the select list of a callback with its
 * snapshot and journal tail, and the mapping of its rows.
 *
 * @module
 */

import type { CallbackStatus } from '../../lifecycle/statuses.js';
import type { StoredCallback } from '../store.js';
import { TERMINAL_SQL } from './schema.js';

/**
 * PostgreSQL text cannot hold NUL, which the engine's keys use as a separator
 * (`anchor \0 key`): keys are stored with `\` doubled and NUL as `\0`.
 */
export const encodeKey = (key: string | null): string | null =>
  key === null ? null : key.replaceAll('\\', '\\\\').replaceAll('\u0000', '\\0');

/** The inverse of {@link encodeKey}. */
export const decodeKey = (key: string | null): string | null =>
  key === null ? null : key.replace(/\\(\\|0)/g, (_, c: string) => (c === '0' ? '\u0000' : '\\'));

/**
 * A callback's columns, its snapshot and the journal entries after it (a JSON array of their
 * texts), from `callbacks c` joined to `snapshots s`. The row's `head` is rewritten only when its
 * status, due time or owed flag changes: the head is the newest of it, the snapshot's and the
 * journal's.
 */
export const CALLBACK_COLUMNS = `c.id, c.seq::float8 AS seq, c.anchor, c.status,
  c.due_at::float8 AS due_at, c.idem_key, c.corr_key, c.parent_id,
  greatest(c.head, coalesce(s.seq, 0), coalesce((SELECT max(j.seq) FROM journal j
    WHERE j.callback_id = c.id), 0))::float8 AS head,
  c.meta, s.body AS snap,
  (SELECT coalesce(json_agg(j.entry ORDER BY j.seq), '[]'::json) FROM journal j
    WHERE j.callback_id = c.id AND j.seq > coalesce(s.seq, 0)) AS tail`;

/** `SELECT` of {@link CALLBACK_COLUMNS} from the two tables; add a `WHERE`. */
export const SELECT_CALLBACK = `SELECT ${CALLBACK_COLUMNS} FROM callbacks c LEFT JOIN snapshots s ON s.id = c.id`;

/** One row of {@link SELECT_CALLBACK}. */
export interface CallbackRow {
  id: string;
  seq: number;
  anchor: string;
  status: string;
  due_at: number | null;
  idem_key: string | null;
  corr_key: string | null;
  parent_id: string | null;
  head: number;
  meta: string;
  snap: string | null;
  tail: string[];
}

/** A row as the store contract's {@link StoredCallback} (its keys decoded). */
export const fromRow = (r: CallbackRow): StoredCallback => ({
  id: r.id,
  seq: r.seq,
  anchor: r.anchor,
  status: r.status as CallbackStatus,
  dueAt: r.due_at,
  idempotencyKey: decodeKey(r.idem_key),
  correlationKey: decodeKey(r.corr_key),
  parentId: r.parent_id,
  head: r.head,
  meta: r.meta,
  snapshot: r.snap,
  tail: r.tail,
});

/** The newest callback holding a correlation key (unique among active callbacks). */
export const BY_CORRELATION = `${SELECT_CALLBACK} WHERE c.corr_key = $1 ORDER BY c.seq DESC LIMIT 1`;

/**
 * Callbacks by id with their children (`$1`: ids), or, with `subtree`, with every descendant
 * reached through active callbacks: what a terminal transition reads before it orphans them.
 */
export const byIds = (subtree: boolean): string =>
  subtree
    ? `WITH RECURSIVE sub AS (
         SELECT id, status FROM callbacks WHERE id = ANY($1::text[])
         UNION
         SELECT k.id, k.status FROM callbacks k JOIN sub ON k.parent_id = sub.id
           WHERE sub.status NOT IN (${TERMINAL_SQL}))
       ${SELECT_CALLBACK} WHERE c.id IN (SELECT id FROM sub)
       UNION ALL ${SELECT_CALLBACK} WHERE c.parent_id IN (SELECT id FROM sub)
         AND c.id NOT IN (SELECT id FROM sub)`
    : `${SELECT_CALLBACK} WHERE c.id = ANY($1::text[])
       UNION ALL ${SELECT_CALLBACK} WHERE c.parent_id = ANY($1::text[])`;
