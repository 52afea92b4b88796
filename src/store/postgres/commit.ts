/**
 * One group commit as one PostgreSQL statement: the fence first, then every
 * write as a data-modifying CTE over `unnest` arrays, so a batch is one round
 * trip and one implicit transaction whatever its size. A pure function of the
 * batch and the leases held: tested without a database.
 *
 * @module
 */

import { LeaseLostError } from '../../errors.js';
import { shardOf } from '../shards.js';
import type { CallbackRowWrite, StoreBatch } from '../store.js';
import { encodeKey } from './sql.js';

/** The statement of one commit. */
export interface CommitStatement {
  readonly text: string;
  readonly params: unknown[];
  /** Ids of the rows it inserts: a row the database refuses (a unique key) is left out with its writes. */
  readonly inserted: readonly string[];
}

/** What the fence checks: this replica's name and the epoch of every shard it holds. */
export interface FenceContext {
  readonly node: string;
  readonly shards: number;
  readonly held: ReadonlyMap<number, number>;
}

/** The order rows are inserted in: by idempotency key, correlation key, then id. */
function keyOrder(x: CallbackRowWrite, y: CallbackRowWrite): number {
  for (const [a, b] of [
    [x.idempotencyKey, y.idempotencyKey],
    [x.correlationKey, y.correlationKey],
    [x.id, y.id],
  ] as const) {
    if (a === b) continue;
    if (a === null) return 1;
    if (b === null) return -1;
    return a < b ? -1 : 1;
  }
  return 0;
}

/**
 * Builds the statement of one commit: `fenced` (1 if the fence returned no row: never, it
 * raises) and `inserted` (the ids inserted) come back as its one row.
 * @throws {@link LeaseLostError} if the batch touches a shard this replica does not hold.
 */
export function buildCommit(batch: StoreBatch, fence: FenceContext): CommitStatement {
  const n = fence.shards;
  const shards = new Set<number>();
  const ins: CallbackRowWrite[] = [];
  const upd: CallbackRowWrite[] = [];
  for (const r of batch.rows) {
    shards.add(shardOf(r.id, n));
    // Status, due time and owed as the row holds them: reads take the head from the journal.
    if (r.change === 'update' && r.headOnly === true) continue;
    (r.change === 'insert' ? ins : upd).push(r);
  }
  for (const e of batch.entries) shards.add(shardOf(e.id, n));
  for (const s of batch.snapshots) shards.add(shardOf(s.id, n));
  for (const d of batch.dedup) shards.add(shardOf(d.id, n));
  for (const id of batch.deletes) shards.add(shardOf(id, n));
  // Two replicas inserting the same unique keys in opposite orders would deadlock on the
  // unique indexes: every replica inserts in one order (by key, then id).
  ins.sort(keyOrder);
  const fenceShards: number[] = [];
  const fenceEpochs: number[] = [];
  for (const s of [...shards].sort((a, b) => a - b)) {
    const epoch = fence.held.get(s);
    if (epoch === undefined) throw new LeaseLostError(`this replica does not own shard ${s}`);
    fenceShards.push(s);
    fenceEpochs.push(epoch);
  }
  const params: unknown[] = [];
  const p = (v: unknown) => `$${params.push(v)}`;
  const ctes: string[] = [
    `f AS (SELECT fence(${p(fence.node)}, ${p(fenceShards)}::int[], ${p(fenceEpochs)}::bigint[]) AS ok)`,
  ];
  const inserted = ins.map((r) => r.id);
  if (ins.length > 0)
    ctes.push(
      `ins AS (INSERT INTO callbacks
          (id, shard, anchor, status, due_at, idem_key, corr_key, parent_id, head, owed, meta)
        SELECT * FROM unnest(${p(inserted)}::text[], ${p(ins.map((r) => shardOf(r.id, n)))}::int[],
          ${p(ins.map((r) => r.anchor))}::text[], ${p(ins.map((r) => r.status))}::text[],
          ${p(ins.map((r) => r.dueAt))}::bigint[], ${p(ins.map((r) => encodeKey(r.idempotencyKey)))}::text[],
          ${p(ins.map((r) => encodeKey(r.correlationKey)))}::text[], ${p(ins.map((r) => r.parentId))}::text[],
          ${p(ins.map((r) => r.head))}::bigint[], ${p(ins.map((r) => r.owed || null))}::boolean[],
          ${p(ins.map((r) => r.meta))}::text[])
        ON CONFLICT DO NOTHING RETURNING id)`,
    );
  // Writes of a callback whose insert the database refused are left out with it.
  const kept = (col: string): string =>
    ins.length === 0
      ? 'true'
      : `(NOT (${col} = ANY(${p(inserted)}::text[])) OR ${col} IN (SELECT id FROM ins))`;
  if (upd.length > 0)
    ctes.push(
      `upd AS (UPDATE callbacks AS t SET status = u.status, due_at = u.due_at, head = u.head, owed = u.owed
        FROM unnest(${p(upd.map((r) => r.id))}::text[], ${p(upd.map((r) => r.status))}::text[],
          ${p(upd.map((r) => r.dueAt))}::bigint[], ${p(upd.map((r) => r.head))}::bigint[],
          ${p(upd.map((r) => r.owed || null))}::boolean[]) AS u(id, status, due_at, head, owed)
        WHERE t.id = u.id RETURNING 1)`,
    );
  const entries = batch.entries;
  if (entries.length > 0)
    ctes.push(
      `jn AS (INSERT INTO journal (callback_id, seq, at, entry)
        SELECT * FROM unnest(${p(entries.map((e) => e.id))}::text[], ${p(entries.map((e) => e.seq))}::bigint[],
          ${p(entries.map((e) => e.at))}::bigint[], ${p(entries.map((e) => e.entry))}::text[])
          AS e(callback_id, seq, at, entry)
        WHERE ${kept('e.callback_id')} RETURNING 1)`,
    );
  const snaps = batch.snapshots;
  if (snaps.length > 0)
    ctes.push(
      `sn AS (INSERT INTO snapshots (id, seq, body)
        SELECT * FROM unnest(${p(snaps.map((s) => s.id))}::text[], ${p(snaps.map((s) => s.seq))}::bigint[],
          ${p(snaps.map((s) => s.body))}::text[]) AS s(id, seq, body)
        WHERE ${kept('s.id')}
        ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, body = excluded.body RETURNING 1)`,
    );
  const dedup = batch.dedup;
  if (dedup.length > 0)
    ctes.push(
      `dd AS (INSERT INTO dedup (callback_id, key, at)
        SELECT * FROM unnest(${p(dedup.map((d) => d.id))}::text[], ${p(dedup.map((d) => d.key))}::text[],
          ${p(dedup.map((d) => d.at))}::bigint[]) AS d(callback_id, key, at)
        WHERE ${kept('d.callback_id')}
        ON CONFLICT DO NOTHING RETURNING 1)`,
    );
  if (batch.deletes.length > 0) {
    const ids = p([...batch.deletes]);
    ctes.push(
      `del AS (DELETE FROM callbacks WHERE id = ANY(${ids}::text[]) RETURNING 1)`,
      `dels AS (DELETE FROM snapshots WHERE id = ANY(${ids}::text[]) RETURNING 1)`,
      `delj AS (DELETE FROM journal WHERE callback_id = ANY(${ids}::text[]) RETURNING 1)`,
      `deld AS (DELETE FROM dedup WHERE callback_id = ANY(${ids}::text[]) RETURNING 1)`,
    );
  }
  const done = batch.inboxDone ?? [];
  if (done.length > 0)
    ctes.push(`ib AS (DELETE FROM inbox WHERE seq = ANY(${p([...done])}::bigint[]) RETURNING 1)`);
  // A held early event leaves with the report it became: any report applied with its
  // deduplication key consumes it (claimed by a create, or dispatched once its callback
  // existed), in this very transaction; `earlyDone` adds the ones refused by their callback.
  const early = [...new Set([...(batch.earlyDone ?? []), ...dedup.map((d) => d.key)])];
  if (early.length > 0)
    ctes.push(
      `ed AS (DELETE FROM early_events WHERE dedup_key = ANY(${p(early)}::text[]) RETURNING 1)`,
    );
  // The fence is referenced, so it runs; the data-modifying CTEs always run.
  const text = `WITH ${ctes.join(',\n')}
    SELECT (SELECT count(*) FROM f WHERE ok IS NULL)::int AS fenced,
      ${ins.length > 0 ? '(SELECT array_agg(id) FROM ins)' : 'NULL::text[]'} AS inserted`;
  return { text, params, inserted };
}
