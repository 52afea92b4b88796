/**
 * The inbox: reports queued durably for the next owner of a shard that has no
 * live owner (its replica died or froze past its lease). The new owner applies
 * them first, in queue order; each leaves the inbox in the commit that applies
 * it (`StoreBatch.inboxDone`).
 *
 * @module
 */

import { shardOf } from '../shards.js';
import type { InboxEntry } from '../store.js';
import type { PgDb } from './db.js';
import type { PrefetchCache } from './prefetch.js';

/** A report to queue (see {@link Inbox.enqueue}). */
export interface InboxReport {
  readonly callbackId: string;
  readonly dedupKey: string;
  readonly message: string;
  /** Wall-clock ms: refused (a stale replica) if the database's clock is past it. */
  readonly notAfter?: number;
}

/** The inbox of one store; `heldShards` are the shards this replica holds now. */
export class Inbox {
  readonly #db: PgDb;
  readonly #cache: PrefetchCache;
  readonly #shards: number;
  readonly #heldShards: () => number[];

  constructor(db: PgDb, cache: PrefetchCache, shards: number, heldShards: () => number[]) {
    this.#db = db;
    this.#cache = cache;
    this.#shards = shards;
    this.#heldShards = heldShards;
  }

  /**
   * Queues a report durably for the next owner of its callback's shard (committed when this
   * resolves). Only while the shard has no live owner: a report queued behind the back of a
   * live owner could be overtaken by a later report sent to that owner directly. The shard's
   * row is share-locked, so a takeover waits for the report and then finds it in the inbox.
   * @returns `queued`; `duplicate` if this deduplication key was queued or applied already;
   *   `owned` if the shard has a live owner (forward to it instead); `stale` if the database's
   *   clock is past `notAfter` (nothing was queued).
   */
  async enqueue(entry: InboxReport): Promise<'queued' | 'duplicate' | 'owned' | 'stale'> {
    const shard = shardOf(entry.callbackId, this.#shards);
    try {
      return await this.#db.tx(async (q) => {
        const free = await q(
          `SELECT shard FROM shards
           WHERE shard = $1 AND (owner IS NULL OR expires_at <= now()) FOR SHARE`,
          [shard],
        );
        if (free.length === 0) return 'owned' as const;
        if (entry.notAfter !== undefined) {
          const late = await q<{ late: boolean }>(
            'SELECT now() > to_timestamp($1::float8 / 1000) AS late',
            [entry.notAfter],
          );
          if (late[0]?.late) return 'stale' as const;
        }
        const rows = await q(
          `INSERT INTO inbox (shard, callback_id, dedup_key, message)
           SELECT $1, $2, $3, $4
           WHERE NOT EXISTS (SELECT 1 FROM dedup WHERE callback_id = $2 AND key = $3)
           ON CONFLICT (callback_id, dedup_key) DO NOTHING RETURNING seq`,
          [shard, entry.callbackId, entry.dedupKey, entry.message],
        );
        return rows.length > 0 ? ('queued' as const) : ('duplicate' as const);
      });
    } catch (err) {
      throw this.#db.unavailable('queueing a report', err);
    }
  }

  /** The live owner of a shard, as the database has it now. */
  async ownerOf(shard: number): Promise<string | undefined> {
    const { value } = await this.#cache.fresh(() =>
      this.#db.q<{ owner: string }>(
        'SELECT owner FROM shards WHERE shard = $1 AND owner IS NOT NULL AND expires_at > now()',
        [shard],
      ),
    );
    return value[0]?.owner;
  }

  /** Queued reports of the given shards (default: every held shard), oldest first. */
  async entries(limit: number, only?: readonly number[]): Promise<InboxEntry[]> {
    const shards = only ? [...only] : this.#heldShards();
    if (shards.length === 0) return [];
    const { value } = await this.#cache.fresh(() =>
      this.#db.q<{ seq: number; callback_id: string; dedup_key: string; message: string }>(
        `SELECT seq::float8 AS seq, callback_id, dedup_key, message FROM inbox
         WHERE shard = ANY($1::int[]) ORDER BY seq LIMIT $2`,
        [shards, limit],
      ),
    );
    return value.map((r) => ({
      seq: r.seq,
      callbackId: r.callback_id,
      dedupKey: r.dedup_key,
      message: r.message,
    }));
  }
}
