/**
 * The store contract: where callbacks live so that nothing acknowledged is
 * lost. The engine writes through it in batches (group commit) and answers a
 * report only after the batch that holds its effect committed.
 *
 * Two kinds of store: the memory store (the default: callbacks live in the
 * heap, nothing on disk, writes need no commit) and durable stores such as
 * `sqliteStore()` from `callback-engine/sqlite`, which implement
 * {@link DurableStore}.
 *
 * @module
 */

import type { CallbackStatus } from '../lifecycle/statuses.js';

/**
 * One callback as a durable store keeps it: indexed columns, its fixed part as JSON, and its
 * state as a snapshot (a fold of its journal up to some entry) plus the journal entries after it.
 */
export interface StoredCallback {
  /** The callbackId (primary key). */
  readonly id: string;
  /** Creation order, for `list()`. */
  readonly seq: number;
  readonly anchor: string;
  /** The status after its newest journal entry (for counts, filters and listing). */
  readonly status: CallbackStatus;
  /** The next instant the engine must act on it (deadline, heartbeat, a retry, end of retention), or `null`. */
  readonly dueAt: number | null;
  /** Anchor-scoped idempotency key; unique. */
  readonly idempotencyKey: string | null;
  /** Correlation key (anchors with `correlate`). */
  readonly correlationKey: string | null;
  readonly parentId: string | null;
  /** The seq of its newest journal entry. */
  readonly head: number;
  /** What never changes after creation (token, creation time, tags, parent token, deadline, heartbeat, retention), as JSON. */
  readonly meta: string;
  /** Its state folded up to some journal entry, as JSON; `null` when none was written (fold from the first entry). */
  readonly snapshot: string | null;
  /** Its journal entries after the snapshot, oldest first, as JSON. */
  readonly tail: readonly string[];
}

/** A callback's row as a commit writes it. */
export interface CallbackRowWrite {
  /** `insert`: a new row with every column; `update`: only `status`, `dueAt`, `head` and `owed` change. */
  readonly change: 'insert' | 'update';
  readonly id: string;
  readonly seq: number;
  readonly anchor: string;
  readonly status: CallbackStatus;
  readonly dueAt: number | null;
  readonly idempotencyKey: string | null;
  readonly correlationKey: string | null;
  readonly parentId: string | null;
  readonly head: number;
  /** It owes a step invocation (found and resumed at the next start or by the shard's next owner). */
  readonly owed: boolean;
  readonly meta: string;
  /**
   * An update whose status, due time and owed flag are those the row already holds: only the
   * head moved. A store that reads the head from its journal (the newest entry's seq) may skip it.
   */
  readonly headOnly?: boolean;
}

/** One journal entry appended. */
export interface JournalAppend {
  readonly id: string;
  /** Its position in the callback's journal (1, 2, ...); unique per callback. */
  readonly seq: number;
  /** When it happened (engine clock). */
  readonly at: number;
  /** The entry as JSON. */
  readonly entry: string;
}

/** A callback's snapshot, replacing the one stored: its state folded up to entry `seq`. */
export interface SnapshotWrite {
  readonly id: string;
  readonly seq: number;
  readonly body: string;
}

/** A report's deduplication key, stored with the entry of its effect; unique per callback. */
export interface DedupKeyWrite {
  readonly id: string;
  readonly key: string;
  /** When it was applied (engine clock): kept for the deduplication window from then. */
  readonly at: number;
}

/** What the engine hands a store when it opens it. */
export interface StoreOpenContext {
  /** Version of the lifecycle machine (a hash of its definition); a store written by another is refused. */
  readonly machineVersion: string;
  /** The opening engine's node name. */
  readonly node: string;
  /**
   * Fingerprints of the engine's `secrets` (HMAC of a fixed label under each key; never the
   * keys), in order: the first signs. A store shared by replicas refuses to open for a replica
   * whose keys do not match the others' (`SecretMismatchError`).
   */
  readonly keyFingerprints?: readonly string[];
}

/** What a store reports once open, so the engine restores its counters without reading every row. */
export interface StoreRecovery {
  /** Number of callbacks per anchor and status. */
  readonly counts: readonly { anchor: string; status: CallbackStatus; count: number }[];
  /** Highest creation sequence number stored, or -1. */
  readonly maxSeq: number;
  /**
   * Ids of callbacks that owe a step invocation (stores read synchronously; an asynchronous store
   * answers {@link DurableStore.owedAsync} per shard instead).
   */
  readonly owed?: readonly string[];
}

/**
 * One group commit: every write of one event-loop turn, in one transaction (all or nothing).
 * A callback's journal entries, its row, its snapshot and the deduplication keys of its reports
 * go together, so what the store holds is always a fold of what it journaled.
 */
export interface StoreBatch {
  /** Rows to insert or update (at most one per id). */
  readonly rows: readonly CallbackRowWrite[];
  /** Journal entries to append, in order. */
  readonly entries: readonly JournalAppend[];
  /** Snapshots to write (at most one per id). */
  readonly snapshots: readonly SnapshotWrite[];
  /** Deduplication keys of reports applied in this batch. */
  readonly dedup: readonly DedupKeyWrite[];
  /** Callbacks to remove, with their journal, snapshot and keys (end of retention). */
  readonly deletes: readonly string[];
  /** Queued reports applied in this batch, to take out of the inbox. */
  readonly inboxDone?: readonly number[];
  /** Early events held in this batch (stores with {@link DurableStore.loadEarly}). */
  readonly earlyAdds?: readonly EarlyEventRow[];
  /** Early events to remove (claimed and applied, expired, or refused by their callback), by dedup key. */
  readonly earlyDone?: readonly string[];
}

/**
 * A held early event: a CloudEvent that arrived before the callback holding its correlation
 * key, kept until that callback is created or the event expires.
 */
export interface EarlyEventRow {
  /** Arrival order. */
  readonly seq: number;
  /** The event's identity (CloudEvent `source` + `id`); unique. */
  readonly dedupKey: string;
  readonly anchor: string;
  /** The correlation key it waits for (`anchor \0 value...`). */
  readonly correlationKey: string;
  /** The status it reports. */
  readonly status: CallbackStatus;
  /** Its data as JSON. */
  readonly data: string;
  /** When it was held, and when it expires (engine clock, ms since epoch). */
  readonly heldAt: number;
  readonly expiresAt: number;
}

/** What a commit reports back. */
export interface CommitResult {
  /**
   * Ids of inserted rows the store refused because a unique key (idempotency, correlation) is
   * held by another callback; the rest of the batch committed.
   */
  readonly conflicts?: readonly string[];
}

/** What an asynchronous store fetches before the engine's synchronous reads. */
export interface Prefetch {
  /** Rows by id, with the ids of their children. */
  readonly ids?: readonly string[];
  /** Also every active descendant of these ids (before a terminal transition orphans them). */
  readonly subtree?: boolean;
  readonly idempotencyKey?: string;
  readonly correlationKey?: string;
  /** Deduplication keys to look up, each scoped to its callback. */
  readonly keys?: readonly { readonly id: string; readonly key: string }[];
}

/** A report queued durably for the owner of its callback. */
export interface InboxEntry {
  /** Queue order. */
  readonly seq: number;
  readonly callbackId: string;
  readonly dedupKey: string;
  /** The report as JSON: `{ token, status, data }`. */
  readonly message: string;
}

/** Filters of a store listing, in creation order (newest first when `beforeSeq` is set). */
export interface StoreListQuery {
  /** Only rows with `seq` greater than this (ignored when `beforeSeq` is set). */
  readonly afterSeq: number;
  /** Newest first: only rows with `seq` less than this, in descending `seq`. */
  readonly beforeSeq?: number | undefined;
  readonly anchor: string | undefined;
  readonly statuses: readonly CallbackStatus[] | undefined;
  /** At most this many rows. */
  readonly limit: number;
}

/** Filters of a store count: what a listing with these filters holds on all its pages. */
export interface StoreCountQuery {
  readonly anchor: string | undefined;
  readonly statuses: readonly CallbackStatus[] | undefined;
  /** Rows whose tags include every one of these. */
  readonly tags: readonly string[];
}

/**
 * A durable store. Reads are synchronous point reads (an embedded database
 * answers them in microseconds); `commit` writes one batch in one transaction
 * and may be synchronous or return a promise. Batches are committed one at a
 * time, in order. A failed commit must throw (or reject) and leave nothing of
 * the batch behind.
 */
export interface DurableStore {
  readonly kind: 'durable';
  /** A short name for messages, e.g. `sqlite:/var/lib/app/callbacks.db`. */
  readonly name: string;
  /**
   * Opens the store: checks versions, takes the lock, reads what recovery needs.
   * @throws `StoreLockedError` if another engine holds it; `StoreIncompatibleError` for another
   *   machine version or a newer schema; `StoreUnavailableError` if it cannot be opened.
   */
  open(context: StoreOpenContext): Promise<StoreRecovery>;
  /** The row of a callback (with its snapshot and journal tail), or `undefined`. */
  load(id: string): StoredCallback | undefined;
  /** The row created with this idempotency key, or `undefined`. */
  findByIdempotencyKey(key: string): StoredCallback | undefined;
  /** The newest row with this correlation key, or `undefined`. */
  findByCorrelationKey(key: string): StoredCallback | undefined;
  /** Ids of a callback's children, in creation order. */
  childrenOf(id: string): string[];
  /** Whether a report with this deduplication key was applied to this callback (within the window). */
  hasKey(id: string, key: string): boolean;
  /** The earliest `dueAt` stored, or `undefined`. */
  nextDueAt(): number | undefined;
  /** Ids of rows due at or before `now`, earliest first, at most `limit`. */
  dueIds(now: number, limit: number): string[];
  /** A page of rows in creation order. */
  list(query: StoreListQuery): StoredCallback[];
  /** How many rows match `query` (optional: without it, `list({ total: true })` gives no total). */
  count?(query: StoreCountQuery): number;
  /** A callback's journal entries (JSON) with seq greater than `afterSeq`, oldest first, at most `limit`. */
  history(id: string, afterSeq: number, limit: number): string[] | Promise<string[]>;
  /**
   * Removes deduplication keys applied before `before` (engine clock), at most `limit` of them.
   * @returns how many were removed.
   */
  pruneKeys(before: number, limit: number): number | Promise<number>;
  /** Writes one batch in one transaction. */
  commit(batch: StoreBatch): void | CommitResult | Promise<void | CommitResult>;
  /**
   * For a store whose reads are asynchronous: fetches what the next synchronous reads of this
   * turn need; resolves `false` if a row changed while it was read (fetch again).
   */
  prefetch?(request: Prefetch): Promise<boolean>;
  /** For an asynchronous store: the earliest due time (in place of {@link nextDueAt}). */
  nextDueAsync?(): Promise<number | undefined>;
  /**
   * For an asynchronous store: ids due at `now`, earliest first, at most `limit`, with their
   * rows fetched for the synchronous path (in place of {@link dueIds}).
   */
  dueAsync?(now: number, limit: number): Promise<string[]>;
  /**
   * For an asynchronous store: ids of callbacks in these shards that owe a step invocation,
   * with their rows fetched (in place of {@link StoreRecovery.owed}).
   */
  owedAsync?(shards: readonly number[]): Promise<string[]>;
  /**
   * Every held early event, in arrival order (read once, at open: they are bounded per anchor
   * and the engine keeps them in memory). A store without it cannot hold early events.
   */
  loadEarly?(): EarlyEventRow[];
  /** Releases the store (and its lock). */
  close(): void | Promise<void>;
}

/** The memory store: callbacks live in the engine's heap; nothing survives a restart. */
export interface MemoryStore {
  readonly kind: 'memory';
}

/** Where the engine keeps callbacks: {@link memoryStore} (the default) or a {@link DurableStore}. */
export type CallbackStore = MemoryStore | DurableStore;

const MEMORY: MemoryStore = Object.freeze({ kind: 'memory' as const });

/**
 * The memory store, the default: nothing on disk, nothing survives a restart,
 * no commit on the answer path.
 *
 * @returns the memory store.
 * @example
 * ```ts
 * const engine = createCallbackEngine({ store: memoryStore() });
 * ```
 */
export function memoryStore(): MemoryStore {
  return MEMORY;
}

/** Whether `value` looks like a store (for option validation). */
export function isCallbackStore(value: unknown): value is CallbackStore {
  if (typeof value !== 'object' || value === null) return false;
  const kind = (value as { kind?: unknown }).kind;
  if (kind === 'memory') return true;
  if (kind !== 'durable') return false;
  const s = value as Record<string, unknown>;
  return [
    'open',
    'load',
    'commit',
    'close',
    'dueIds',
    'nextDueAt',
    'list',
    'hasKey',
    'history',
    'pruneKeys',
  ].every((m) => typeof s[m] === 'function');
}
