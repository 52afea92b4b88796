/**
 * Which shard a callback belongs to. A cluster splits callbacks into a fixed
 * number of shards by a hash of the callbackId; each shard is leased by one
 * replica at a time (its owner).
 *
 * @module
 */

/** Default number of shards of a cluster (fixed per schema). */
export const DEFAULT_SHARDS = 64;

/**
 * The shard of a callbackId: FNV-1a of its characters, modulo `shards`. The
 * same on every replica and stable across versions (it is stored with each row).
 */
export function shardOf(id: string, shards: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < id.length; i++) {
    h ^= id.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0) % shards;
}

/** One shard leased by this replica, with the epoch its lease was taken at. */
export interface ShardLease {
  readonly shard: number;
  readonly epoch: number;
}

/**
 * The shards a replica holds and the epoch of each: what every commit of its store is fenced
 * by. Kept by the cluster's lease owner (the one writer); the store only reads it.
 */
export interface HeldShards {
  held(): ReadonlyMap<number, number>;
}
