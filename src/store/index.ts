/**
 * `callback-engine/store` (experimental): the contract a durable store implements, for people
 * writing a store. It may change in any minor version; applications never need it (pass a store
 * made by `memoryStore()`, `sqliteStore()` or `postgresStore()` to `createCallbackEngine()`).
 *
 * A durable store opens once ({@link DurableStore.open}), answers the engine's synchronous reads
 * of what it holds (or of what it fetched first, for an asynchronous database: `prefetch`),
 * and commits one {@link StoreBatch} per event-loop turn: rows, journal entries, snapshots and
 * deduplication keys together, acknowledged only once durable.
 *
 * @experimental
 * @module
 */

export { isCallbackStore, memoryStore } from './store.js';
export type {
  CallbackRowWrite,
  CallbackStore,
  CommitResult,
  DedupKeyWrite,
  DurableStore,
  EarlyEventRow,
  InboxEntry,
  JournalAppend,
  MemoryStore,
  Prefetch,
  SnapshotWrite,
  StoreBatch,
  StoredCallback,
  StoreListQuery,
  StoreOpenContext,
  StoreRecovery,
} from './store.js';
