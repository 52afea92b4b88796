/**
 * The lease statements of one schema: the `shards` table (each shard's owner,
 * epoch and lease expiry) and the `members` table (each replica's heartbeat).
 * These functions hold no state: the shards this replica holds, and their
 * epochs, are passed in and kept by the cluster's lease owner
 * (`cluster/leases.ts`), the one writer of that state.
 *
 * @module
 */

import { StoreLockedError } from '../../errors.js';
import type { ShardLease } from '../shards.js';
import type { Query } from './db.js';

/** What one lease round found and did. */
export interface LeaseRound {
  /** Held shards whose lease could not be renewed (expired, or taken over). */
  readonly lost: number[];
  /** Shards taken, at their new epochs (not yet adopted). */
  readonly gained: ShardLease[];
  /** Held shards beyond the fair share, to give back (a replica joined). */
  readonly released: number[];
  /** Live replicas, by name. */
  readonly members: string[];
  /** The live owner of every owned shard. */
  readonly owners: Map<number, string>;
}

/** The settings a lease round needs. */
export interface LeaseSettings {
  readonly node: string;
  readonly shards: number;
  readonly leaseTtlMs: number;
}

/**
 * Registers this replica's heartbeat at open.
 * @throws `StoreLockedError` if another live replica has the same name.
 */
export async function joinMembers(q: Query, name: string, s: LeaseSettings): Promise<void> {
  const live = await q<{ node: string }>(
    `SELECT node FROM members WHERE node = $1 AND seen_at > now() - $2 * interval '1 millisecond'`,
    [s.node, s.leaseTtlMs],
  );
  if (live.length > 0)
    throw new StoreLockedError(
      `another live replica is named ${JSON.stringify(s.node)} in ${name} (node names must be distinct)`,
    );
  await q(
    `INSERT INTO members (node, seen_at) VALUES ($1, now())
     ON CONFLICT (node) DO UPDATE SET seen_at = now()`,
    [s.node],
  );
}

/**
 * One lease round, in one transaction (`tx`): heartbeat, renew the `held` leases (shard and
 * epoch), take a fair share of free or expired shards when `give`, and name the excess over
 * the fair share (a replica joined). Changes nothing in memory.
 */
export async function leaseRound(
  tx: <T>(fn: (q: Query) => Promise<T>) => Promise<T>,
  s: LeaseSettings,
  held: readonly (readonly [shard: number, epoch: number])[],
  give: boolean,
): Promise<LeaseRound> {
  const { node, leaseTtlMs: ttl } = s;
  let lost: number[] = [];
  let gained: ShardLease[] = [];
  let released: number[] = [];
  let members: string[] = [];
  const owners = new Map<number, string>();
  await tx(async (q) => {
    await q("SELECT set_config('lock_timeout', $1, true)", [
      String(Math.max(200, Math.floor(ttl / 4))),
    ]);
    await q(
      `INSERT INTO members (node, seen_at) VALUES ($1, now())
       ON CONFLICT (node) DO UPDATE SET seen_at = now()`,
      [node],
    );
    const renewed = await q<{ shard: number }>(
      `UPDATE shards SET expires_at = now() + $1 * interval '1 millisecond'
       FROM unnest($2::int[], $3::bigint[]) AS h(shard, epoch)
       WHERE shards.shard = h.shard AND shards.epoch = h.epoch AND shards.owner = $4
         AND shards.expires_at > now()
       RETURNING shards.shard`,
      [ttl, held.map((h) => h[0]), held.map((h) => h[1]), node],
    );
    const kept = new Set(renewed.map((r) => r.shard));
    lost = held.map((h) => h[0]).filter((x) => !kept.has(x));
    members = (
      await q<{ node: string }>(
        `SELECT node FROM members WHERE seen_at > now() - $1 * interval '1 millisecond'
         ORDER BY node`,
        [ttl],
      )
    ).map((r) => r.node);
    const fair = Math.ceil(s.shards / Math.max(1, members.length));
    const want = give ? fair - kept.size : 0;
    if (want > 0) {
      gained = await q<{ shard: number; epoch: number }>(
        `UPDATE shards SET owner = $1, epoch = epoch + 1,
           expires_at = now() + $2 * interval '1 millisecond'
         WHERE shard IN (
           SELECT shard FROM shards WHERE owner IS NULL OR expires_at <= now()
           ORDER BY shard LIMIT $3 FOR UPDATE SKIP LOCKED)
         RETURNING shard, epoch::float8 AS epoch`,
        [node, ttl, want],
      );
    } else if (give && kept.size > fair) {
      // Another replica joined: give back the excess (the highest shards).
      released = [...kept].sort((x, y) => y - x).slice(0, kept.size - fair);
    }
    for (const r of await q<{ shard: number; owner: string }>(
      'SELECT shard, owner FROM shards WHERE owner IS NOT NULL AND expires_at > now()',
    ))
      owners.set(r.shard, r.owner);
    // Now and then: replicas not seen for a day are forgotten.
    if (Math.random() < 0.01)
      await q("DELETE FROM members WHERE seen_at < now() - interval '1 day'");
  });
  return { lost, gained, released, members, owners };
}

/** Ends these leases now (shard and epoch, still this replica's): another replica may take them. */
export async function releaseLeases(
  q: Query,
  node: string,
  leases: readonly (readonly [shard: number, epoch: number])[],
): Promise<void> {
  if (leases.length === 0) return;
  await q(
    `UPDATE shards SET owner = NULL, expires_at = '-infinity'
     FROM unnest($1::int[], $2::bigint[]) AS h(shard, epoch)
     WHERE shards.shard = h.shard AND shards.epoch = h.epoch AND shards.owner = $3`,
    [leases.map((x) => x[0]), leases.map((x) => x[1]), node],
  );
}

/** Removes this replica's heartbeat (it left). */
export async function leaveMembers(q: Query, node: string): Promise<void> {
  await q('DELETE FROM members WHERE node = $1', [node]);
}
