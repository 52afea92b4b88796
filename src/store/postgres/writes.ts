/**
 * The writes of the PostgreSQL store: each group commit as the one statement
 * `buildCommit` makes of it (fenced by the leases held, run again after a
 * deadlock, which wrote nothing), and the pruning of old deduplication keys.
 *
 * @module
 */

import { LeaseLostError } from '../../errors.js';
import type { CommitResult, StoreBatch } from '../store.js';
import { buildCommit, type FenceContext } from './commit.js';
import { pgCode, type PgDb } from './db.js';
import type { PrefetchCache } from './prefetch.js';

/** Commits of one store; `fence` is what they are fenced by now. */
export class Writes {
  readonly #db: PgDb;
  readonly #cache: PrefetchCache;
  readonly #fence: () => FenceContext;
  /** Commits refused by the fence (a lease lost or taken over), for stats and tests. */
  fencedOut = 0;

  constructor(db: PgDb, cache: PrefetchCache, fence: () => FenceContext) {
    this.#db = db;
    this.#cache = cache;
    this.#fence = fence;
  }

  /**
   * One group commit in one statement: the fence (share-locks the leases of every shard
   * touched, raises if one is not held at its epoch) and every write as data-modifying CTEs,
   * so the batch is one round trip and one implicit transaction.
   */
  async commit(batch: StoreBatch): Promise<CommitResult> {
    let statement;
    try {
      statement = buildCommit(batch, this.#fence());
    } catch (err) {
      this.fencedOut++;
      throw err instanceof LeaseLostError
        ? new LeaseLostError(`${err.message} (${this.#db.name})`, { cause: err })
        : err;
    }
    let result: { fenced: number; inserted: string[] | null }[] | undefined;
    for (let attempt = 1; !result; attempt++) {
      try {
        result = await this.#db.q(statement.text, statement.params);
      } catch (err) {
        const code = pgCode(err);
        // A deadlock (another replica's commit on the same keys) rolled the statement back:
        // nothing of it is written, so it is simply run again.
        if ((code === '40P01' || code === '40001') && attempt < 3) continue;
        if (code === 'CB001') this.fencedOut++;
        throw this.#db.unavailable('commit', err);
      }
    }
    this.#cache.committed(batch);
    if (statement.inserted.length === 0) return {};
    const inserted = new Set(result[0]?.inserted ?? []);
    const conflicts = statement.inserted.filter((id) => !inserted.has(id));
    return conflicts.length > 0 ? { conflicts } : {};
  }

  /**
   * Removes deduplication keys applied before `before`, at most `limit` (any replica may run
   * it: outside every lease transaction, and what it removes is past every owner's window).
   */
  async pruneKeys(before: number, limit: number): Promise<number> {
    try {
      const rows = await this.#db.q<{ n: number }>(
        `WITH gone AS (DELETE FROM dedup WHERE ctid = ANY(ARRAY(
           SELECT ctid FROM dedup WHERE at < $1 LIMIT $2)) RETURNING 1)
         SELECT count(*)::int AS n FROM gone`,
        [before, limit],
      );
      return rows[0]?.n ?? 0;
    } catch (err) {
      throw this.#db.unavailable('pruning deduplication keys', err);
    }
  }
}
