/**
 * Where inactive callbacks are retained (spec 12). The engine talks to this
 * small interface only, so a durable store can replace the memory one.
 *
 * @module
 */

import { LRUCache } from 'lru-cache';
import type { Clock } from '../clock.js';
import type { CallbackRecord } from './record.js';

/** Why a retained record left the store. */
export type RemovalReason = 'expired' | 'evicted' | 'deleted';

/** Storage of retained (inactive) callback records. */
export interface CallbackStore {
  /** The record with this id, or `undefined` (also once its retention passed). */
  get(id: string): CallbackRecord | undefined;
  /** Keeps a record for `ttlMs` (or forever with `undefined`). */
  set(record: CallbackRecord, ttlMs: number | undefined): void;
  /** Removes a record now. */
  delete(id: string): boolean;
  /** Every retained record, in no particular order. */
  values(): Iterable<CallbackRecord>;
  /** Number of retained records. */
  readonly size: number;
  /** Removes every record. */
  clear(): void;
}

/** Options of {@link createMemoryStore}. */
export interface MemoryStoreOptions {
  /** Time source for TTLs (the engine's clock). */
  clock: Clock;
  /** Memory bound: beyond it, the least recently used records are evicted early. */
  maxRecords?: number | undefined;
  /** Told of every record that leaves the store other than by {@link CallbackStore.delete} or `set`. */
  onRemove?: (record: CallbackRecord, reason: RemovalReason) => void;
}

/**
 * The in-memory store: an lru-cache with a TTL per record, timed by the
 * engine's clock, and an optional LRU bound.
 */
export function createMemoryStore(options: MemoryStoreOptions): CallbackStore {
  const { clock, maxRecords, onRemove } = options;
  const cache = new LRUCache<string, CallbackRecord>({
    // maxSize (not max) keeps storage growing on demand instead of preallocating.
    maxSize: maxRecords ?? Number.MAX_SAFE_INTEGER,
    sizeCalculation: () => 1,
    ttlResolution: 0,
    perf: { now: () => clock.now() },
    ...(onRemove && {
      dispose: (record: CallbackRecord, _id: string, reason: LRUCache.DisposeReason) => {
        if (reason === 'evict') onRemove(record, 'evicted');
        else if (reason === 'expire') onRemove(record, 'expired');
      },
    }),
  });
  return {
    get: (id) => cache.get(id),
    set: (record, ttlMs) => void cache.set(record.id, record, { ttl: ttlMs ?? 0 }),
    delete: (id) => cache.delete(id),
    values: () => cache.values(),
    get size() {
      return cache.size;
    },
    clear: () => cache.clear(),
  };
}
