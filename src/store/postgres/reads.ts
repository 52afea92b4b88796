/**
 * Reads of the PostgreSQL store as committed: a callback for a replica that
 * does not own it, listings, a journal page, what is due in the shards this
 * replica holds, and the step invocations owed in shards just taken over
 * (those fetched whole, for the synchronous path, through the prefetch cache).
 *
 * @module
 */

import type { CallbackStatus } from '../../lifecycle/statuses.js';
import type { StoreCountQuery, StoredCallback, StoreListQuery } from '../store.js';
import type { PgDb } from './db.js';
import type { PrefetchCache } from './prefetch.js';
import {
  BY_CORRELATION,
  encodeKey,
  fromRow,
  SELECT_CALLBACK,
  type CallbackRow as Row,
} from './sql.js';

/** Asynchronous reads as committed; `heldShards` are the shards this replica holds now. */
export class CommittedReads {
  readonly #db: PgDb;
  readonly #cache: PrefetchCache;
  readonly #heldShards: () => number[];

  constructor(db: PgDb, cache: PrefetchCache, heldShards: () => number[]) {
    this.#db = db;
    this.#cache = cache;
    this.#heldShards = heldShards;
  }

  /** Runs one statement as a read (see {@link PrefetchCache.fresh}). */
  async #read<R>(text: string, params: unknown[] = []): Promise<R[]> {
    return (await this.#cache.fresh(() => this.#db.q<R>(text, params))).value;
  }

  /** Reads one row as committed (no prefetch bookkeeping): for replicas that do not own it. */
  async read(id: string): Promise<StoredCallback | undefined> {
    const [row] = await this.#read<Row>(`${SELECT_CALLBACK} WHERE c.id = $1`, [id]);
    return row && fromRow(row);
  }

  /** Rows of a callback's children, in creation order, as committed. */
  async childrenRows(id: string): Promise<StoredCallback[]> {
    const rows = await this.#read<Row>(`${SELECT_CALLBACK} WHERE c.parent_id = $1 ORDER BY c.seq`, [
      id,
    ]);
    return rows.map(fromRow);
  }

  /** The active callback holding this correlation key (or the newest), as committed. */
  async readByCorrelation(key: string): Promise<StoredCallback | undefined> {
    const [row] = await this.#read<Row>(BY_CORRELATION, [encodeKey(key)]);
    return row && fromRow(row);
  }

  /** A page of rows in creation order, as committed. */
  async list(query: StoreListQuery): Promise<StoredCallback[]> {
    const newest = query.beforeSeq !== undefined;
    const where = [newest ? 'c.seq < $1' : 'c.seq > $1'];
    const params: unknown[] = [newest ? query.beforeSeq : query.afterSeq];
    if (query.anchor !== undefined) {
      params.push(query.anchor);
      where.push(`c.anchor = $${params.length}`);
    }
    if (query.statuses && query.statuses.length > 0) {
      params.push([...query.statuses]);
      where.push(`c.status = ANY($${params.length}::text[])`);
    }
    params.push(query.limit);
    const text = `${SELECT_CALLBACK} WHERE ${where.join(' AND ')} ORDER BY c.seq${newest ? ' DESC' : ''} LIMIT $${params.length}`;
    return (await this.#read<Row>(text, params)).map(fromRow);
  }

  /** How many rows a listing with these filters holds, as committed. */
  async count(query: StoreCountQuery): Promise<number> {
    const where: string[] = [];
    const params: unknown[] = [];
    if (query.anchor !== undefined) {
      params.push(query.anchor);
      where.push(`anchor = $${params.length}`);
    }
    if (query.statuses && query.statuses.length > 0) {
      params.push([...query.statuses]);
      where.push(`status = ANY($${params.length}::text[])`);
    }
    if (query.tags.length > 0) {
      // jsonb holds no NUL: a row whose fixed part escapes one (or such a tag) matches no tag.
      if (query.tags.some((t) => t.includes('\u0000'))) return 0;
      params.push(JSON.stringify(query.tags));
      where.push(
        `(CASE WHEN strpos(meta, '\\u0000') = 0 THEN (meta::jsonb -> 'tags') @> $${params.length}::jsonb END)`,
      );
    }
    const text = `SELECT count(*)::int AS n FROM callbacks${where.length > 0 ? ` WHERE ${where.join(' AND ')}` : ''}`;
    const [row] = await this.#read<{ n: number }>(text, params);
    return row?.n ?? 0;
  }

  /** The earliest due time among the shards this replica holds. */
  async nextDue(): Promise<number | undefined> {
    const shards = this.#heldShards();
    if (shards.length === 0) return undefined;
    const [r] = await this.#read<{ at: number | null }>(
      `SELECT due_at::float8 AS at FROM callbacks
       WHERE due_at IS NOT NULL AND shard = ANY($1::int[]) ORDER BY due_at LIMIT 1`,
      [shards],
    );
    return r?.at ?? undefined;
  }

  /** Ids due at `now` in the held shards, fetched (rows and children) for the synchronous path. */
  async due(now: number, limit: number): Promise<string[]> {
    const shards = this.#heldShards();
    if (shards.length === 0) return [];
    const rows = await this.#read<{ id: string }>(
      `SELECT id FROM callbacks
       WHERE due_at IS NOT NULL AND due_at <= $1 AND shard = ANY($2::int[])
       ORDER BY due_at LIMIT $3`,
      [now, shards, limit],
    );
    // A due callback may time out, which orphans its active subtree: fetch it whole. A stale
    // row is simply due again next time.
    return this.#fetchWhole(rows.map((r) => r.id));
  }

  /**
   * Ids of callbacks in these shards that owe a step invocation, with their rows (and active
   * subtrees) fetched: after a takeover, the new owner runs each before anything else.
   */
  async owed(shards: readonly number[]): Promise<string[]> {
    if (shards.length === 0) return [];
    const rows = await this.#read<{ id: string }>(
      'SELECT id FROM callbacks WHERE owed AND shard = ANY($1::int[]) ORDER BY seq',
      [[...shards]],
    );
    return this.#fetchWhole(rows.map((r) => r.id));
  }

  /** Fetches rows with their active subtrees; returns the ids whose rows are fresh. */
  async #fetchWhole(ids: string[]): Promise<string[]> {
    if (ids.length === 0) return ids;
    const fresh = await this.#cache.prefetch({ ids, subtree: true });
    return fresh ? ids : ids.filter((id) => this.#cache.has(id));
  }

  /** A callback's journal entries (JSON) after `afterSeq`, oldest first, as committed. */
  async history(id: string, afterSeq: number, limit: number): Promise<string[]> {
    const rows = await this.#read<{ entry: string }>(
      'SELECT entry FROM journal WHERE callback_id = $1 AND seq > $2 ORDER BY seq LIMIT $3',
      [id, afterSeq, limit],
    );
    return rows.map((r) => r.entry);
  }

  /** Counts per anchor and status of the given shards (as committed). */
  async shardCounts(
    shards: readonly number[],
  ): Promise<{ anchor: string; status: CallbackStatus; count: number }[]> {
    if (shards.length === 0) return [];
    return this.#read<{ anchor: string; status: CallbackStatus; count: number }>(
      `SELECT anchor, status, count(*)::int AS count FROM callbacks
       WHERE shard = ANY($1::int[]) GROUP BY anchor, status`,
      [[...shards]],
    );
  }
}
