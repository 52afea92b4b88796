/**
 * Early events on PostgreSQL: CloudEvents held in the shared `early_events`
 * table until the callback holding their correlation key exists, bounded per
 * anchor across every replica. A held row leaves in the commit of the report
 * it became (see `buildCommit`), or when its retention passed.
 *
 * @module
 */

import { toEarlyRow, type EarlyRow } from '../row.js';
import type { EarlyEventRow, StoredCallback } from '../store.js';
import type { PgDb } from './db.js';
import type { PrefetchCache } from './prefetch.js';
import { TERMINAL_SQL } from './schema.js';
import { CALLBACK_COLUMNS, decodeKey, encodeKey, fromRow, type CallbackRow as Row } from './sql.js';

/** An early event as the PostgreSQL store holds it (`seq` is cluster-wide arrival order). */
export type SharedEarlyRow = EarlyEventRow;

/** What {@link SharedEarlyTable.hold} did. */
export type HoldEarlyOutcome =
  | { readonly kind: 'held' }
  /** Held already (a redelivery): the row that holds it. */
  | { readonly kind: 'duplicate'; readonly anchor: string; readonly expiresAt: number }
  /** The anchor's bound would be passed: what it holds now. */
  | { readonly kind: 'full'; readonly count: number; readonly bytes: number };

const EARLY_COLUMNS =
  'e.seq::float8 AS seq, e.dedup_key, e.anchor, e.corr_key, e.status, e.data, e.held_at::float8 AS held_at, e.expires_at::float8 AS expires_at';

const fromEarly = (r: EarlyRow): SharedEarlyRow => toEarlyRow(r, (k) => decodeKey(k)!);

/** An active callback holding the correlation key of the early row `e`. */
const ACTIVE_HOLDER = `SELECT 1 FROM callbacks c WHERE c.corr_key = e.corr_key AND c.status NOT IN (${TERMINAL_SQL})`;

/** The `early_events` table of one store's schema. */
export class SharedEarlyTable {
  readonly #db: PgDb;
  readonly #cache: PrefetchCache;
  readonly #schema: string;

  constructor(db: PgDb, cache: PrefetchCache, schema: string) {
    this.#db = db;
    this.#cache = cache;
    this.#schema = schema;
  }

  /**
   * Holds an early event: inserts its row, committed when this resolves, unless its anchor would
   * pass `maxEvents` or `maxBytes` or the event is held already (same `dedupKey`). Holds of one
   * anchor are serialized across replicas (a transaction-scoped advisory lock on the anchor, then
   * the count read in a snapshot taken after it), so concurrent holds never overshoot the bounds;
   * a claim or expiry committing meanwhile can only make a hold be refused early (retryable).
   */
  async hold(
    row: Omit<SharedEarlyRow, 'seq'>,
    bounds: { readonly maxEvents: number; readonly maxBytes: number },
  ): Promise<HoldEarlyOutcome> {
    const bytes = Buffer.byteLength(row.data, 'utf8');
    try {
      return await this.#db.tx(async (q) => {
        await q('SELECT pg_advisory_xact_lock(hashtext($1), hashtext($2))', [
          `callback-engine-early:${this.#schema}`,
          row.anchor,
        ]);
        const [r] = await q<{
          seq: number | null;
          prior_anchor: string | null;
          prior_expires: number | null;
          n: number;
          b: number;
        }>(
          `WITH prior AS (SELECT anchor, expires_at::float8 AS expires_at FROM early_events
             WHERE dedup_key = $1::text),
           cur AS (SELECT count(*)::int AS n, coalesce(sum(bytes), 0)::float8 AS b
             FROM early_events WHERE anchor = $2::text),
           ins AS (INSERT INTO early_events
               (dedup_key, anchor, corr_key, status, data, bytes, held_at, expires_at)
             SELECT $1::text, $2::text, $3::text, $4::text, $5::text, $6::int, $7::bigint, $8::bigint
             FROM cur WHERE NOT EXISTS (SELECT 1 FROM prior)
               AND cur.n + 1 <= $9::int AND cur.b + $6::int <= $10::float8
             ON CONFLICT (dedup_key) DO NOTHING RETURNING seq::float8 AS seq)
           SELECT (SELECT seq FROM ins) AS seq, (SELECT anchor FROM prior) AS prior_anchor,
             (SELECT expires_at FROM prior) AS prior_expires, cur.n, cur.b FROM cur`,
          [
            row.dedupKey,
            row.anchor,
            encodeKey(row.correlationKey),
            row.status,
            row.data,
            bytes,
            row.heldAt,
            row.expiresAt,
            bounds.maxEvents,
            bounds.maxBytes,
          ],
        );
        if (r!.seq !== null) return { kind: 'held' as const };
        if (r!.prior_anchor !== null)
          return {
            kind: 'duplicate' as const,
            anchor: r!.prior_anchor,
            expiresAt: r!.prior_expires!,
          };
        if (r!.n + 1 <= bounds.maxEvents && r!.b + bytes <= bounds.maxBytes)
          // Held by a concurrent delivery of the same event (under another anchor's lock).
          return { kind: 'duplicate' as const, anchor: row.anchor, expiresAt: row.expiresAt };
        return { kind: 'full' as const, count: r!.n, bytes: r!.b };
      });
    } catch (err) {
      throw this.#db.unavailable('holding an early event', err);
    }
  }

  /**
   * The early events held under a correlation key, in arrival order, for the callback just
   * committed with it. Their rows stay until the commit that applies them; the row locks taken
   * here only make the read wait for an expiry deleting them right now (then they are gone).
   */
  async claim(correlationKey: string): Promise<SharedEarlyRow[]> {
    const { value } = await this.#cache.fresh(() =>
      this.#db.q<EarlyRow>(
        `SELECT ${EARLY_COLUMNS} FROM early_events e
         WHERE e.corr_key = $1 AND NOT EXISTS (
           SELECT 1 FROM callbacks k JOIN dedup d ON d.callback_id = k.id
           WHERE k.corr_key = e.corr_key AND d.key = e.dedup_key)
         ORDER BY e.seq FOR UPDATE OF e`,
        [encodeKey(correlationKey)],
      ),
    );
    return value.map(fromEarly);
  }

  /** Removes one held early event (no callback will apply it). */
  async drop(dedupKey: string): Promise<void> {
    try {
      await this.#db.q('DELETE FROM early_events WHERE dedup_key = $1', [dedupKey]);
    } catch (err) {
      throw this.#db.unavailable('removing an early event', err);
    }
  }

  /**
   * Deletes the early events whose retention passed at `now` and for which no active callback
   * exists (those are applied instead, see {@link withCallbacks}). Every replica may run it:
   * a row is deleted, and so returned, by one of them only.
   * @returns the expired events.
   */
  async expire(now: number): Promise<SharedEarlyRow[]> {
    try {
      const rows = await this.#db.q<EarlyRow>(
        `DELETE FROM early_events e WHERE e.expires_at <= $1 AND NOT EXISTS (${ACTIVE_HOLDER})
         RETURNING ${EARLY_COLUMNS}`,
        [now],
      );
      return rows.map(fromEarly).sort((x, y) => x.seq - y.seq);
    } catch (err) {
      throw this.#db.unavailable('expiring early events', err);
    }
  }

  /**
   * Held early events whose callback exists and is active (their claim did not commit: the
   * creating replica stopped, or a hold raced the create), with that callback's row, in arrival
   * order: those past their retention at `expiredBy`, or those whose callback is in `shards`.
   */
  async withCallbacks(
    query: { readonly expiredBy: number } | { readonly shards: readonly number[] },
  ): Promise<{ event: SharedEarlyRow; callback: StoredCallback }[]> {
    const where = 'expiredBy' in query ? 'e.expires_at <= $1::bigint' : 'c.shard = ANY($1::int[])';
    const param = 'expiredBy' in query ? query.expiredBy : [...query.shards];
    const { value } = await this.#cache.fresh(() =>
      this.#db.q<Row & { e: EarlyRow }>(
        `SELECT ${CALLBACK_COLUMNS},
           json_build_object('seq', e.seq::float8, 'dedup_key', e.dedup_key, 'anchor', e.anchor,
             'corr_key', e.corr_key, 'status', e.status, 'data', e.data,
             'held_at', e.held_at::float8, 'expires_at', e.expires_at::float8) AS e
         FROM early_events e JOIN callbacks c
           ON c.corr_key = e.corr_key AND c.status NOT IN (${TERMINAL_SQL})
           LEFT JOIN snapshots s ON s.id = c.id
         WHERE ${where} ORDER BY e.seq LIMIT 1000`,
        [param],
      ),
    );
    return value.map((r) => ({ event: fromEarly(r.e), callback: fromRow(r) }));
  }

  /** Totals of the held early events and the earliest expiry (as committed). */
  async summary(): Promise<{ held: number; bytes: number; nextExpiry: number | undefined }> {
    const { value } = await this.#cache.fresh(() =>
      this.#db.q<{ n: number; b: number; next: number | null }>(
        `SELECT count(*)::int AS n, coalesce(sum(bytes), 0)::float8 AS b,
           min(expires_at)::float8 AS next FROM early_events`,
      ),
    );
    const r = value[0]!;
    return { held: r.n, bytes: r.b, nextExpiry: r.next ?? undefined };
  }
}
