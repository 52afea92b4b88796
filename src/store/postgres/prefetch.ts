/**
 * What the engine's synchronous path reads on PostgreSQL: PostgreSQL answers
 * asynchronously, so the engine fetches what a report needs first
 * (`prefetch`), then runs its synchronous path on what was fetched, which is
 * kept until the end of that event-loop turn. A read that was not fetched is
 * refused rather than guessed, and a row that a commit wrote while it was
 * being read is not kept (stale: the caller fetches again).
 *
 * @module
 */

import { StoreUnavailableError } from '../../errors.js';
import type { Prefetch, StoreBatch, StoredCallback } from '../store.js';
import type { PgDb } from './db.js';
import {
  BY_CORRELATION,
  byIds,
  encodeKey,
  fromRow,
  SELECT_CALLBACK,
  type CallbackRow as Row,
} from './sql.js';

/** What one prefetch brought in; read by the synchronous calls of the same turn. */
interface Fetched {
  rows: Map<string, StoredCallback | null>;
  children: Map<string, string[]>;
  idem: Map<string, StoredCallback | null>;
  corr: Map<string, StoredCallback | null>;
  /** `callbackId \0 key` → whether it was applied. */
  keys: Map<string, boolean>;
}

const emptyFetched = (): Fetched => ({
  rows: new Map(),
  children: new Map(),
  idem: new Map(),
  corr: new Map(),
  keys: new Map(),
});

/** The rows fetched for this turn, and which reads a commit made stale. */
export class PrefetchCache {
  readonly #db: PgDb;
  /** Fetched rows, valid until the end of the turn that fetched them. */
  #fetched = emptyFetched();
  #clearScheduled = false;
  /** Commits completed; and for ids written while a read was in flight, the commit number. */
  #commitNo = 0;
  #readsInFlight = 0;
  readonly #writtenAt = new Map<string, number>();
  /** Deduplication keys asked for in this turn: one query for all of them (see {@link #applied}). */
  #keyBatch: { keys: { id: string; key: string }[]; done: Promise<Set<string>> } | undefined;

  constructor(db: PgDb) {
    this.#db = db;
  }

  // ---- synchronous reads of what was fetched --------------------------------------------------

  #miss(what: string): never {
    throw new StoreUnavailableError(
      `${this.#db.name}: ${what} was read without being fetched first (an engine bug); retry`,
    );
  }

  load(id: string): StoredCallback | undefined {
    const row = this.#fetched.rows.get(id);
    if (row === undefined) this.#miss(`callback ${id}`);
    return row ?? undefined;
  }

  findByIdempotencyKey(key: string): StoredCallback | undefined {
    const row = this.#fetched.idem.get(key);
    if (row === undefined) this.#miss('an idempotency key');
    return row ?? undefined;
  }

  findByCorrelationKey(key: string): StoredCallback | undefined {
    const row = this.#fetched.corr.get(key);
    if (row === undefined) this.#miss('a correlation key');
    return row ?? undefined;
  }

  childrenOf(id: string): string[] {
    const ids = this.#fetched.children.get(id);
    if (ids === undefined) this.#miss(`the children of ${id}`);
    return [...ids];
  }

  hasKey(id: string, key: string): boolean {
    const applied = this.#fetched.keys.get(`${id}\u0000${key}`);
    if (applied === undefined) this.#miss(`a deduplication key of ${id}`);
    return applied;
  }

  /** A listing is never fetched (listings are read asynchronously). */
  list(): never {
    this.#miss('a listing');
  }

  /** Whether the row of `id` was fetched (and is not stale). */
  has(id: string): boolean {
    return this.#fetched.rows.has(id);
  }

  // ---- reads and commits ----------------------------------------------------------------------

  /**
   * Runs a read; `since` is the number of commits completed when it started, for
   * {@link stale}. A failure is a typed, retryable error.
   */
  async fresh<T>(read: () => Promise<T>): Promise<{ value: T; since: number }> {
    const since = this.#commitNo;
    this.#readsInFlight++;
    try {
      return { value: await read(), since };
    } catch (err) {
      throw this.#db.unavailable('reading', err);
    } finally {
      if (--this.#readsInFlight === 0) this.#writtenAt.clear();
    }
  }

  /** Whether a commit completed after `since` wrote the row of `id` (what was read is stale). */
  #stale(id: string, since: number): boolean {
    const at = this.#writtenAt.get(id);
    return at !== undefined && at > since;
  }

  /** A batch committed: its rows are read again, its deduplication keys are known applied. */
  committed(batch: StoreBatch): void {
    this.#commitNo++;
    const written = (id: string) => {
      if (this.#readsInFlight > 0) this.#writtenAt.set(id, this.#commitNo);
      this.#fetched.rows.delete(id);
    };
    for (const r of batch.rows) written(r.id);
    for (const id of batch.deletes) written(id);
    for (const d of batch.dedup) this.#fetched.keys.set(`${d.id}\u0000${d.key}`, true);
  }

  /** Keeps what was fetched until the end of this turn. */
  #keep(): void {
    if (this.#clearScheduled) return;
    this.#clearScheduled = true;
    setImmediate(() => {
      this.#clearScheduled = false;
      this.#fetched = emptyFetched();
    });
  }

  /**
   * Which of these deduplication keys were applied (`callbackId \0 key`). Every report with a
   * key asks before it is applied; the keys asked for in one event-loop turn (a burst of
   * reports) go to PostgreSQL in one query, not one round trip each.
   */
  #applied(keys: readonly { id: string; key: string }[]): Promise<Set<string>> {
    let batch = this.#keyBatch;
    if (!batch) {
      const pending: { id: string; key: string }[] = [];
      const done = new Promise<Set<string>>((resolve, reject) => {
        setImmediate(() => {
          this.#keyBatch = undefined;
          this.#db
            .q<{ callback_id: string; key: string }>(
              `SELECT d.callback_id, d.key FROM dedup d
               JOIN unnest($1::text[], $2::text[]) AS k(id, key)
                 ON d.callback_id = k.id AND d.key = k.key`,
              [pending.map((k) => k.id), pending.map((k) => k.key)],
            )
            .then(
              (rows) => resolve(new Set(rows.map((a) => `${a.callback_id}\u0000${a.key}`))),
              reject,
            );
        });
      });
      batch = this.#keyBatch = { keys: pending, done };
    }
    batch.keys.push(...keys);
    return batch.done;
  }

  /**
   * Fetches what the engine's next synchronous reads need: rows by id (with their children),
   * by idempotency key or by correlation key.
   * @returns `false` if a row changed while it was read (fetch again).
   */
  async prefetch(request: Prefetch): Promise<boolean> {
    const q = this.#db.q;
    const ids = request.ids ?? [];
    const keys = request.keys ?? [];
    const none = Promise.resolve([] as Row[]);
    const { value, since } = await this.fresh(async () => {
      const [rows, idem, corr, applied] = await Promise.all([
        ids.length === 0 ? none : q<Row>(byIds(request.subtree === true), [ids]),
        request.idempotencyKey === undefined
          ? none
          : q<Row>(
              `${SELECT_CALLBACK} WHERE c.idem_key = $1
               UNION ALL ${SELECT_CALLBACK}
               WHERE c.parent_id = (SELECT id FROM callbacks WHERE idem_key = $1)`,
              [encodeKey(request.idempotencyKey)],
            ),
        request.correlationKey === undefined
          ? none
          : q<Row>(BY_CORRELATION, [encodeKey(request.correlationKey)]),
        keys.length === 0 ? Promise.resolve(new Set<string>()) : this.#applied(keys),
      ]);
      return { rows, idem, corr, applied };
    });
    const f = this.#fetched;
    let fresh = true;
    const asked = new Set(ids);
    const kids = new Map<string, { seq: number; id: string }[]>();
    for (const id of ids) {
      f.rows.set(id, null);
      kids.set(id, []);
    }
    if (request.subtree) for (const r of value.rows) if (!kids.has(r.id)) kids.set(r.id, []);
    for (const r of value.rows) {
      if (this.#stale(r.id, since)) {
        fresh = false;
        f.rows.delete(r.id);
        continue;
      }
      if (asked.has(r.id) || request.subtree) f.rows.set(r.id, fromRow(r));
      const siblings = r.parent_id === null ? undefined : kids.get(r.parent_id);
      if (siblings && !siblings.some((k) => k.id === r.id)) {
        siblings.push({ seq: r.seq, id: r.id });
        if (!f.rows.has(r.id)) f.rows.set(r.id, fromRow(r));
      }
    }
    for (const [id, list] of kids) {
      // A parent written meanwhile may have gained children: not fresh.
      if (this.#stale(id, since)) {
        fresh = false;
        f.rows.delete(id);
      }
      f.children.set(
        id,
        list.sort((x, y) => x.seq - y.seq).map((k) => k.id),
      );
    }
    if (request.idempotencyKey !== undefined) {
      // The row with the key first, then its children (in creation order).
      const key = encodeKey(request.idempotencyKey);
      const r = value.idem.find((x) => x.idem_key === key);
      if (r && this.#stale(r.id, since)) fresh = false;
      else f.idem.set(request.idempotencyKey, r ? fromRow(r) : null);
      if (r && !this.#stale(r.id, since) && !f.children.has(r.id)) {
        f.rows.set(r.id, fromRow(r));
        f.children.set(
          r.id,
          value.idem
            .filter((x) => x.parent_id === r.id)
            .sort((x, y) => x.seq - y.seq)
            .map((x) => x.id),
        );
      }
    }
    if (request.correlationKey !== undefined) {
      const r = value.corr[0];
      if (r && this.#stale(r.id, since)) fresh = false;
      else f.corr.set(request.correlationKey, r ? fromRow(r) : null);
    }
    for (const k of keys) {
      const id = `${k.id}\u0000${k.key}`;
      f.keys.set(id, value.applied.has(id));
    }
    this.#keep();
    return fresh;
  }
}
