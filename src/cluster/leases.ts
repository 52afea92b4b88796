/**
 * A replica's shard leases: which shards it holds and at which epoch (what
 * every commit of its store is fenced by), until when that is known to hold,
 * and which shards it is handing over. `Leases` is the one writer of that
 * state; the store reads the held epochs through it, the cluster and the
 * routing ask it what this replica owns.
 *
 * Ownership is a local belief with a deadline: a replica that has not renewed
 * its leases within their TTL (paused, cut off from the database) stops
 * believing it owns anything before anyone else may take over, and the fence
 * in every commit makes sure nothing it still tries is written.
 *
 * @module
 */

import { LeaseLostError, StoreUnavailableError } from '../errors.js';
import type { LeaseRound } from '../store/postgres/store.js';
import { shardOf, type HeldShards, type ShardLease } from '../store/shards.js';
import { newCallbackId } from '../token.js';

/** A lease as (shard, epoch). */
type Lease = readonly [shard: number, epoch: number];

/** The lease statements a store runs for its replica (see `store/postgres/lease-table.ts`). */
export interface LeaseStore {
  readonly cluster: { readonly shards: number; readonly leaseTtlMs: number };
  /** Fences the store's commits by these leases. */
  fenceBy(leases: HeldShards): void;
  /** One lease round for a replica that holds `held` now (changes nothing in memory). */
  leaseRound(held: readonly Lease[], give: boolean): Promise<LeaseRound>;
  /** Ends these leases now. */
  releaseLeases(leases: readonly Lease[]): Promise<void>;
  /** Removes the replica's heartbeat. */
  leaveMembers(): Promise<void>;
}

/** The error of a report whose callback this replica no longer owns. */
export const notOwned = (): LeaseLostError =>
  new LeaseLostError('this replica no longer owns the callback; retry');

/** One replica's leases (one per store: it fences the store's commits). */
export class Leases implements HeldShards {
  readonly #store: LeaseStore;
  readonly #shards: number;
  readonly #ttl: number;
  /** Shards this replica holds, with their epochs. */
  readonly #held = new Map<number, number>();
  /** Shards being handed over: no new work is taken for them. */
  readonly #yielding = new Set<number>();
  /** Until when (performance.now) the held leases are known valid. */
  #validUntil = 0;
  /** When this replica's view of the cluster last lapsed (performance.now; 0: never). */
  #lapsedAt = 0;

  constructor(store: LeaseStore) {
    this.#store = store;
    this.#shards = store.cluster.shards;
    this.#ttl = store.cluster.leaseTtlMs;
    store.fenceBy(this);
  }

  // ---- reads ----------------------------------------------------------------------------------

  /** The shards this replica holds and their epochs (a lease may still have ended). */
  held(): ReadonlyMap<number, number> {
    return this.#held;
  }

  /** Whether this replica holds the shard of `id` (its lease may still have ended). */
  holds(id: string): boolean {
    return this.#held.has(shardOf(id, this.#shards));
  }

  /** Whether this replica may commit for the shard (a held, unexpired, not yielding lease). */
  ownsShard(shard: number): boolean {
    return this.#held.has(shard) && !this.#yielding.has(shard) && !this.expired();
  }

  /** The shards this replica owns now (where its new callbacks go). */
  get ownedShards(): number[] {
    return [...this.#held.keys()].filter((s) => this.ownsShard(s));
  }

  /** Whether the held leases may have ended (not renewed within their TTL). */
  expired(): boolean {
    return performance.now() >= this.#validUntil;
  }

  /** Whether the shard is held past the leases' validity (a SIGSTOP, a long GC: step down). */
  lapsed(shard: number): boolean {
    return this.#held.has(shard) && this.expired();
  }

  /** Wall-clock ms at which this replica's view of the cluster ends (unless renewed). */
  viewEnd(): number {
    return Date.now() + (this.#validUntil - performance.now());
  }

  /**
   * Refuses a request that arrived at `arrivedAt` (`performance.now()`) if this replica's view of
   * the cluster (its leases, renewed by every lease round) has lapsed since: the replica froze
   * or lost its database while the request waited, so other replicas may have applied reports
   * sent after it. Such a request is never applied or forwarded late: a retryable
   * `StoreUnavailableError`. (A request that arrives while the view is lapsed, before the next
   * round noticed, is stopped later: a forward carries the view's end in `notAfter`, which its
   * owner checks; a queued report is refused by the database past it; this replica applies
   * nothing itself without a valid lease.)
   */
  checkFresh(arrivedAt: number): void {
    if (this.#lapsedAt < arrivedAt) return;
    throw new StoreUnavailableError(
      'this replica was cut off from the cluster (paused, or without its database) while the report waited; it was not applied: retry',
    );
  }

  /**
   * A new callbackId in a shard this replica owns (the parent's shard for a child).
   * @throws {@link LeaseLostError} when it owns none (or not the parent's).
   */
  newId(parentId: string | undefined): string {
    const n = this.#shards;
    const owned = new Set(this.ownedShards);
    const want = parentId === undefined ? undefined : shardOf(parentId, n);
    if (owned.size === 0 || (want !== undefined && !owned.has(want))) throw notOwned();
    // Expected tries: shards / owned shards (or shards, for a child); each is a few hundred ns.
    for (;;) {
      const id = newCallbackId();
      const shard = shardOf(id, n);
      if (want === undefined ? owned.has(shard) : shard === want) return id;
    }
  }

  // ---- changes --------------------------------------------------------------------------------

  /**
   * One lease round: heartbeat, renew what is held, take a fair share of free or expired
   * shards (when `give`), and name what exceeds the fair share (a replica joined). Lost shards
   * are dropped; gained ones are {@link adopt}ed by the caller, with whatever must precede
   * their use. A renewal extends the view of the cluster from the round's start.
   * @throws `StoreUnavailableError` when the database cannot be reached (nothing changes).
   */
  async round(options: { give: boolean }): Promise<LeaseRound> {
    const started = performance.now();
    const round = await this.#store.leaseRound([...this.#held.entries()], options.give);
    // The view had lapsed before this round (the replica froze, or lost the database): requests
    // that arrived before now may have waited past it.
    if (this.#validUntil > 0 && started >= this.#validUntil) this.#lapsedAt = this.#validUntil;
    this.#validUntil = started + this.#ttl - Math.min(500, this.#ttl / 10);
    for (const s of round.lost) this.#held.delete(s);
    return round;
  }

  /** Starts committing for shards a lease round gained, at their epochs. */
  adopt(leases: readonly ShardLease[]): void {
    for (const g of leases) this.#held.set(g.shard, g.epoch);
  }

  /**
   * Stops committing for every shard (locally, at once): the leases are treated as lost.
   * @returns whether any shard was held.
   */
  dropAll(): boolean {
    if (this.#held.size === 0) return false;
    this.#held.clear();
    return true;
  }

  /**
   * Hands shards over: no new work is taken for them while `settle` runs (their steps end,
   * their writes commit), then their leases end at once, so another replica takes them
   * without waiting for expiry.
   */
  async handOver(shards: readonly number[], settle: () => Promise<void>): Promise<void> {
    for (const s of shards) this.#yielding.add(s);
    try {
      await settle();
      await this.#release(shards);
    } finally {
      for (const s of shards) this.#yielding.delete(s);
    }
  }

  /** Leaves the cluster: no new work while `settle` runs, then every lease ends at once. */
  async leave(settle: () => Promise<void>): Promise<void> {
    for (const s of this.#held.keys()) this.#yielding.add(s);
    await settle();
    await this.#release([...this.#held.keys()]);
    await this.#store.leaveMembers();
  }

  /** Ends these leases now (locally first: nothing more commits for them). */
  async #release(shards: readonly number[]): Promise<void> {
    const leases = shards
      .map((s) => [s, this.#held.get(s)] as const)
      .filter((x): x is Lease => x[1] !== undefined);
    for (const s of shards) this.#held.delete(s);
    if (leases.length > 0) await this.#store.releaseLeases(leases);
  }
}
