/**
 * The keyed registry of callbacks: callbackId → runtime (active) or record
 * (retained), the token index, virtual actors (activation, passivation, the
 * bounded live set), every deadline, and retention (spec 12).
 *
 * Two modes, by store:
 * - memory (the default): every callback's record lives in the heap; deadlines
 *   in one in-memory heap; retained records in an lru-cache.
 * - durable: the store is the source of truth. Only the *resident* set (live
 *   actors, plus callbacks that are busy, waited on, or have writes not yet
 *   committed) is in the heap; a report to a cold callback reads its row back;
 *   deadlines come from the store's due-time index; every change is written in
 *   the turn's group commit and answers are released after COMMIT.
 *
 * @module
 */

import { LRUCache } from 'lru-cache';
import { createActor, type Actor } from 'xstate';
import { DataVersion } from '../data.js';
import { DuplicateKeyError, StoreUnavailableError } from '../errors.js';
import { lifecycleMachine, type LifecycleMachine } from '../lifecycle/machine.js';
import { actorSnapshot, MACHINE_VERSION } from '../lifecycle/persist.js';
import { isTerminal } from '../lifecycle/statuses.js';
import type { ResolvedEngineOptions } from '../options.js';
import { createMemoryStore, type CallbackStore } from './retained-records.js';
import { GroupCommit, type CommitBatch, type CommitMember } from '../store/group-commit.js';
import type {
  DurableStore,
  EarlyEventRow,
  Prefetch,
  StoredCallback,
  StoreRecovery,
} from '../store/store.js';
import { decodeEntry, encodeEntry, toHistory, type JournalEntry } from '../mailbox/journal.js';

/** A packed journal read back (a retired record's: its entries' public fields). */
const unpack = (json: string): JournalEntry[] => JSON.parse(json) as JournalEntry[];
import type { EarlyPersistence } from './early-events.js';
import { StoreScheduler } from '../timers/store-scheduler.js';
import { decodeToken, safeEqual, type TokenCodec } from '../token.js';
import type { ListPage } from '../types.js';
import { CallbackRuntime } from './callback-runtime.js';
import { DeadlineQueue } from './deadline-queue.js';
import type { EventHub } from './event-hub.js';
import { listCallbacks, listStored, type ListOptions } from './list-callbacks.js';
import {
  decodeRecord,
  encodeMeta,
  encodeRow,
  encodeSnapshot,
  type DecodedRecord,
} from './record-codec.js';
import type { CallbackRecord } from './record.js';
import type { Stats } from './stats.js';

/** What a token names. */
export type Found =
  | { kind: 'live'; rt: CallbackRuntime }
  | { kind: 'retained'; record: CallbackRecord }
  | { kind: 'notFound'; anchor: string | undefined; id: string | undefined };

/** Kinds of deadline in the one deadline queue. */
const DEADLINE = 0;
const HEARTBEAT = 1;
const RETENTION = 2;
const RETRY = 3;

/** Rows and entries of one group commit at most, and bytes of entries and snapshots. */
const BATCH_ROWS = 2048;
const BATCH_BYTES = 8 * 1024 * 1024;

/**
 * A callback's snapshot is rewritten once the journal entries after it weigh more than it does
 * (at least this many bytes), or are this many: the bytes written per report stay those of the
 * report (amortized at most twice), whatever the size of the callback's data, and reading a
 * callback back folds a bounded tail.
 */
const SNAPSHOT_MIN_BYTES = 4096;
const SNAPSHOT_MAX_ENTRIES = 256;

/** Deduplication keys pruned per round, and how often a round runs (engine clock). */
const PRUNE_BATCH = 1000;
const PRUNE_EVERY_MS = 60_000;

/** What the registry needs from the engine. */
export interface RegistryDeps {
  readonly options: ResolvedEngineOptions;
  readonly codec: TokenCodec;
  readonly stats: Stats;
  readonly events: EventHub;
  /**
   * Whether this engine may hold a callback in memory (several replicas: only its owner may;
   * a copy elsewhere would go stale). Absent: always.
   */
  readonly mayHold?: (id: string) => boolean;
  /** An active callback's deadline or heartbeat passed: end it with `timeout`. */
  readonly onTimeout: (rt: CallbackRuntime, reason: 'deadline' | 'heartbeat') => void;
  /** A callback dropped after a failed commit: reject what waits in its mailbox. */
  readonly onInvalidated: (rt: CallbackRuntime, err: StoreUnavailableError) => void;
  /**
   * A callback read back from the store owes a step invocation (the engine stopped before it
   * ended, or it waits for its retry); its mailbox runs it before anything else.
   */
  readonly onOwed?: (rt: CallbackRuntime) => void;
}

/** Callbacks by id and token; their actors, timers and retention. */
export class CallbackRegistry {
  readonly #o: ResolvedEngineOptions;
  readonly #codec: TokenCodec;
  readonly #stats: Stats;
  readonly #events: EventHub;
  readonly #onTimeout: RegistryDeps['onTimeout'];
  readonly #onInvalidated: RegistryDeps['onInvalidated'];
  readonly #onOwed: RegistryDeps['onOwed'];
  readonly #mayHold: (id: string) => boolean;
  /** Active (memory mode) or resident (durable mode) callbacks by id. */
  readonly #live = new Map<string, CallbackRuntime>();
  /** Exact token → resident callback: a byte-identical token is one this engine minted, so no decode or HMAC. */
  readonly #byToken = new Map<string, CallbackRuntime>();
  /**
   * The bounded live set. Memory mode: callbacks with a live actor; an evicted idle one is
   * passivated. Durable mode: every resident callback; an evicted one is passivated and, once
   * nothing pins it, leaves the heap (its row is in the store).
   */
  readonly #liveActors: LRUCache<string, CallbackRuntime>;
  /** Live XState actors. */
  #actors = 0;
  /** Inactive records, each removed after its retention (memory mode). */
  readonly #store: CallbackStore;
  readonly #deadlines: DeadlineQueue<CallbackRuntime | CallbackRecord>;
  /** Idempotency and correlation keys of every callback (memory mode) or of resident ones (durable). */
  readonly #idempotency = new Map<string, string>();
  /** `anchor \0 value \0 value...` → callbackId, for anchors that declare `correlate`. */
  readonly #correlation = new Map<string, string>();
  #recencyTick = 0;
  /** The runtime the live set is evicting right now (its entry is already gone). */
  #evicting: CallbackRuntime | undefined;
  /** The durable store, if any. */
  readonly #durable: DurableStore | undefined;
  readonly #commit: GroupCommit | undefined;
  readonly #scheduler: StoreScheduler | undefined;
  /** Ids whose removal (end of retention) is being committed. */
  readonly #removing = new Set<string>();
  /** Dedup keys of claimed early events whose rows go with their report's effect. */
  readonly #claimedEarly = new Set<string>();
  /** When deduplication keys were last pruned (engine clock). */
  #prunedAt = 0;
  #pruning = false;

  constructor(deps: RegistryDeps) {
    this.#o = deps.options;
    this.#codec = deps.codec;
    this.#stats = deps.stats;
    this.#events = deps.events;
    this.#onTimeout = deps.onTimeout;
    this.#onInvalidated = deps.onInvalidated;
    this.#onOwed = deps.onOwed;
    this.#mayHold = deps.mayHold ?? (() => true);
    this.#deadlines = new DeadlineQueue<CallbackRuntime | CallbackRecord>(
      this.#o.clock,
      (target, kind) => this.#onDeadline(target, kind),
      deps.events.warn,
    );
    this.#store = createMemoryStore({
      clock: this.#o.clock,
      maxRecords: this.#o.maxRetained,
      onRemove: (record, reason) => this.#forget(record, reason),
    });
    const store = this.#o.store;
    this.#durable = store.kind === 'durable' ? store : undefined;
    if (this.#durable) {
      this.#commit = new GroupCommit(
        this.#durable,
        {
          committed: (batch) => this.#committed(batch),
          failed: (batch, err) => this.#failed(batch, err),
          conflicts: (batch, ids) => this.#conflicts(batch, ids),
          measuring: () => deps.events.telemetry.measuring,
          measured: (rows, ok, seconds) =>
            deps.events.telemetry.measure({ kind: 'commit', rows, ok, seconds }),
        },
        { maxRows: BATCH_ROWS, maxBytes: BATCH_BYTES },
      );
      this.#scheduler = new StoreScheduler(
        this.#o.clock,
        this.#durable,
        (id) => this.#onDue(id),
        deps.events.warn,
      );
    }
    this.#liveActors = new LRUCache<string, CallbackRuntime>({
      // maxSize (not max): with max, lru-cache preallocates arrays of that length and deleting
      // its last entry clears them all, O(maxLiveActors) each time a lone callback finishes.
      maxSize: this.#o.maxLiveActors,
      sizeCalculation: () => 1,
      dispose: (rt, _id, reason) => {
        if (reason !== 'evict') return;
        this.passivate(rt, true);
        if (this.#durable) {
          this.#evicting = rt;
          this.#release(rt);
          this.#evicting = undefined;
        }
      },
    });
  }

  /** Whether callbacks live in a durable store (answers wait for commits). */
  get durable(): boolean {
    return this.#durable !== undefined;
  }

  /** The group commit's counters (durable mode). */
  get commits(): { commits: number; rows: number; bytes: number } {
    return {
      commits: this.#commit?.commits ?? 0,
      rows: this.#commit?.rowsWritten ?? 0,
      bytes: this.#commit?.bytesWritten ?? 0,
    };
  }

  // ---- recovery ------------------------------------------------------------------------------

  /**
   * Opens the durable store: counters from its rows, the creation sequence, and the
   * scheduler armed at the earliest due time (deadlines that passed while down fire now).
   * Callbacks that owe a step invocation (the engine stopped before it ended) are made resident,
   * so their mailboxes run it before any report that arrives after `ready()`.
   * @returns the next creation sequence number.
   */
  async recover(): Promise<number> {
    const store = this.#durable;
    if (!store) return 0;
    const recovery: StoreRecovery = await store.open({
      machineVersion: MACHINE_VERSION,
      node: this.#o.node,
      keyFingerprints: this.#codec.fingerprints,
    });
    for (const c of recovery.counts) this.#stats.addMany(c.anchor, c.status, c.count);
    this.resumeOwed(recovery.owed ?? []);
    this.#scheduler!.start();
    return recovery.maxSeq + 1;
  }

  /**
   * Makes the callbacks with these ids resident (their rows are readable now: a synchronous
   * store, or fetched), so each one's owed invocation runs before anything else reaches it.
   */
  resumeOwed(ids: readonly string[]): void {
    for (const id of ids) {
      try {
        const rt = this.#live.get(id);
        if (rt) this.#onOwed?.(rt);
        else this.#loadStored(id);
      } catch (err) {
        this.#events.warn(err);
      }
    }
  }

  // ---- writes (durable mode) -----------------------------------------------------------------

  /**
   * Appends a journal entry, already applied to the callback's record. The memory store keeps
   * it with the record; a durable store gets it in this turn's group commit, together with the
   * callback's row (status, due time, head, owed), the report's deduplication key, and, when the
   * entries since the last snapshot outweigh it, a new snapshot.
   */
  append(rt: CallbackRuntime, entry: JournalEntry): void {
    const record = rt.record;
    const commit = this.#commit;
    if (!commit) {
      const journal =
        typeof record.journal === 'string' ? unpack(record.journal) : (record.journal ?? []);
      journal.push(entry);
      record.journal = journal;
      if (entry.dedupKey !== undefined) this.#rememberKey(record, entry.dedupKey, entry.at);
      return;
    }
    if (rt.invalid) return;
    const json = encodeEntry(entry);
    commit.entry(rt, { id: record.id, seq: entry.seq, at: entry.at, entry: json });
    if (entry.dedupKey !== undefined) {
      commit.dedup(rt, { id: record.id, key: entry.dedupKey, at: entry.at });
      (rt.recentKeys ??= new Set()).add(entry.dedupKey);
      if (this.#claimedEarly.delete(entry.dedupKey)) commit.earlyDone(entry.dedupKey);
    }
    rt.tailBytes += json.length;
    rt.tailEntries++;
    this.#writeRow(rt);
  }

  /** The callback's row in this turn's group commit; a snapshot too when its tail outweighs it. */
  #writeRow(rt: CallbackRuntime): void {
    const commit = this.#commit!;
    const record = rt.record;
    if (rt.meta === undefined) {
      rt.meta = encodeMeta(record);
      commit.row(rt, encodeRow(record, rt.lastActivity, 'insert', rt.meta));
    } else commit.row(rt, encodeRow(record, rt.lastActivity, 'update', ''));
    if (
      rt.tailEntries >= SNAPSHOT_MAX_ENTRIES ||
      rt.tailBytes > Math.max(SNAPSHOT_MIN_BYTES, rt.snapshotBytes)
    ) {
      const body = encodeSnapshot(record, rt.lastActivity, rt.actor?.getSnapshot());
      commit.snapshot(rt, { id: record.id, seq: record.head, body });
      rt.snapshotBytes = body.length;
      rt.tailBytes = 0;
      rt.tailEntries = 0;
    }
  }

  /**
   * Rewrites a callback's row without a new entry: its due time changed (activity since the row
   * was written moved its heartbeat). Durable mode only.
   */
  touchRow(rt: CallbackRuntime): void {
    if (this.#commit && !rt.invalid && rt.meta !== undefined) this.#writeRow(rt);
  }

  /**
   * Removes an inactive callback whose retention is zero at once (durable mode: its row, journal
   * and keys, in this turn's group commit).
   */
  removeNow(rt: CallbackRuntime): void {
    if (this.#commit && !rt.invalid) this.#commit.remove(rt.record.id, rt);
  }

  // ---- deduplication keys --------------------------------------------------------------------

  /** Memory store: remembers a key with its callback, dropping keys past the window now and then. */
  #rememberKey(record: CallbackRecord, key: string, at: number): void {
    const keys = (record.keys ??= new Map());
    keys.set(key, at);
    // Amortized: a pass over the keys whenever their number doubles since the last pass.
    if (keys.size >= 64 && (keys.size & (keys.size - 1)) === 0) {
      const before = at - this.#o.dedupWindowMs;
      for (const [k, t] of keys) if (t < before) keys.delete(k);
    }
  }

  /**
   * Whether a report with this deduplication key was applied to the callback within the window:
   * the memory store keeps keys with the record; a durable store is asked (an asynchronous one
   * answers from what was fetched).
   */
  hasKey(rt: CallbackRuntime | undefined, record: CallbackRecord, key: string): boolean {
    if (!this.#durable) {
      const at = record.keys?.get(key);
      return at !== undefined && at >= this.#o.clock.now() - this.#o.dedupWindowMs;
    }
    if (rt?.recentKeys?.has(key)) return true;
    return this.#durable.hasKey(record.id, key);
  }

  /**
   * Whether a key was applied to a resident callback since it became resident (no store read):
   * with {@link hasKey} at admission, what a queued report needs when its turn comes.
   */
  hasRecentKey(rt: CallbackRuntime, key: string): boolean {
    if (!this.#durable) return this.hasKey(rt, rt.record, key);
    return rt.recentKeys?.has(key) ?? false;
  }

  /**
   * Prunes deduplication keys older than the window in bounded batches, at most once a minute,
   * outside any callback's commit (durable stores; the memory store prunes per callback).
   */
  #pruneKeys(): void {
    const store = this.#durable;
    if (!store || this.#pruning) return;
    const now = this.#o.clock.now();
    if (now - this.#prunedAt < PRUNE_EVERY_MS) return;
    this.#prunedAt = now;
    this.#pruning = true;
    const before = now - this.#o.dedupWindowMs;
    const round = (): void => {
      let removed: number | Promise<number>;
      try {
        removed = store.pruneKeys(before, PRUNE_BATCH);
      } catch (err) {
        this.#pruning = false;
        return this.#events.warn(err);
      }
      void Promise.resolve(removed).then(
        (n) => {
          // A full batch: more are due; the next round after the engine's next turn.
          if (n >= PRUNE_BATCH) setImmediate(round);
          else this.#pruning = false;
        },
        (err: unknown) => {
          this.#pruning = false;
          this.#events.warn(err);
        },
      );
    };
    setImmediate(round);
  }

  // ---- history -------------------------------------------------------------------------------

  /**
   * A page of a callback's journal: entries with seq greater than `afterSeq`, oldest first. The
   * memory store keeps them with the record; a durable store reads what it committed.
   */
  async history(id: string, afterSeq: number, limit: number): Promise<JournalEntry[]> {
    if (!this.#durable) {
      const kept = this.#live.get(id)?.record.journal ?? this.#store.get(id)?.journal ?? [];
      const journal = typeof kept === 'string' ? unpack(kept) : kept;
      const from = journal.findIndex((e) => e.seq > afterSeq);
      return from < 0 ? [] : journal.slice(from, from + limit);
    }
    const rows = await this.#durable.history(id, afterSeq, limit);
    return rows.map(decodeEntry);
  }

  /**
   * Calls `ok` once everything written for `rt` so far is committed (at once in memory mode
   * or when nothing is pending), or `fail` if that commit failed.
   */
  release(rt: CallbackRuntime | undefined, ok: () => void, fail: (err: Error) => void): void {
    if (!this.#commit) return ok();
    // A callback whose commit failed answers nothing more as done.
    if (rt?.invalid) return fail(rt.invalid);
    this.#commit.after(rt, ok, fail);
  }

  #committed(batch: CommitBatch): void {
    for (const rt of batch.members) {
      // Members are runtimes, except the placeholder of a retention removal.
      if (!(rt instanceof CallbackRuntime)) continue;
      if (rt.batch === undefined) {
        rt.committed = true;
        this.#release(rt);
      }
    }
    // Re-read the earliest due time: arming only at this batch's rows would skip earlier rows
    // that were due but not yet rewritten when the scheduler last woke (it does not re-arm then).
    this.#scheduler?.poke();
    this.#pruneKeys();
  }

  /** Inserted callbacks the store refused (a unique key is held by another callback). */
  #conflicts(batch: CommitBatch, ids: readonly string[]): Map<CommitMember, Error> {
    const refused = new Set(ids);
    const out = new Map<CommitMember, Error>();
    for (const rt of batch.members) {
      if (!(rt instanceof CallbackRuntime) || !refused.has(rt.record.id)) continue;
      const err = new DuplicateKeyError(
        'another callback holds the same idempotency or correlation key',
      );
      // Never stored: the runtime leaves; its waiters learn why.
      rt.invalid = new StoreUnavailableError(err.message);
      out.set(rt, err);
    }
    return out;
  }

  // ---- asynchronous stores (cluster) ---------------------------------------------------------

  /** Whether the store's reads are asynchronous (fetch before the synchronous path). */
  get prefetching(): boolean {
    return this.#durable?.prefetch !== undefined;
  }

  /**
   * Fetches what the next synchronous lookups need from an asynchronous store: rows of callbacks
   * not resident, or a key. Retries a read that raced a commit.
   */
  async warm(request: Prefetch): Promise<void> {
    const store = this.#durable;
    if (!store?.prefetch) return;
    // The subtree of a resident callback may hold callbacks that are not: fetch it whole.
    const ids = request.subtree ? request.ids : request.ids?.filter((id) => !this.#live.has(id));
    const idem =
      request.idempotencyKey !== undefined && !this.#idempotency.has(request.idempotencyKey)
        ? request.idempotencyKey
        : undefined;
    const corr =
      request.correlationKey !== undefined && !this.#correlation.has(request.correlationKey)
        ? request.correlationKey
        : undefined;
    const keys = request.keys?.filter((k) => !this.#live.get(k.id)?.recentKeys?.has(k.key));
    if (!ids?.length && idem === undefined && corr === undefined && !keys?.length) return;
    const req: Prefetch = {
      ...(ids?.length ? { ids, ...(request.subtree ? { subtree: true } : {}) } : {}),
      ...(idem !== undefined ? { idempotencyKey: idem } : {}),
      ...(corr !== undefined ? { correlationKey: corr } : {}),
      ...(keys?.length ? { keys } : {}),
    };
    for (let i = 0; i < 3; i++) if (await store.prefetch(req)) return;
  }

  /**
   * Keeps a resident callback in memory until the returned function is called: what its next
   * report reads is then in memory, although the report first awaits the store (its key, say),
   * during which its last commit could otherwise let it leave.
   */
  pin(id: string): () => void {
    const rt = this.#live.get(id);
    if (!rt) return () => {};
    rt.pins++;
    return () => {
      if (--rt.pins === 0) this.#release(rt);
    };
  }

  /** The record of a resident callback (no store read). */
  resident(id: string): CallbackRecord | undefined {
    return this.#live.get(id)?.record;
  }

  /** The token of the resident callback holding a correlation key (no store read). */
  residentByCorrelation(key: string): string | undefined {
    const id = this.#correlation.get(key);
    return id === undefined ? undefined : this.#live.get(id)?.record.token;
  }

  /** Resolves once every pending write is committed. */
  async flush(): Promise<void> {
    await this.#commit?.drain();
  }

  // ---- early events (durable mode) -------------------------------------------------------------

  /** Whether the store can keep early events (the memory store, or a store with `loadEarly`). */
  get earlyCapable(): boolean {
    return !this.#durable || typeof this.#durable.loadEarly === 'function';
  }

  /** Where held early events are written (durable mode), or `undefined`. */
  earlyPersistence(): EarlyPersistence | undefined {
    const commit = this.#commit;
    if (!commit) return undefined;
    return {
      add: (row, ok, fail) => {
        const member = { batch: undefined };
        commit.earlyAdd(member, row);
        commit.after(member, ok, fail);
      },
      remove: (key) => commit.earlyDone(key),
    };
  }

  /** The early events the store holds (read at open). */
  loadEarly(): EarlyEventRow[] {
    return this.#durable?.loadEarly?.() ?? [];
  }

  /**
   * A held early event became a report with this dedup key: its row is removed in the commit
   * that records the key with the report's effect.
   */
  claimEarly(dedupKey: string): void {
    if (this.#commit) this.#claimedEarly.add(dedupKey);
  }

  /** A claimed early event was refused by its callback (nothing applied): remove its row. */
  dropEarly(dedupKey: string): void {
    if (this.#claimedEarly.delete(dedupKey)) this.#commit?.earlyDone(dedupKey);
  }

  /** A queued report was applied: take it out of the inbox. */
  inboxDone(seq: number): void {
    this.#commit?.inboxDone(seq);
  }

  /**
   * This replica no longer owns these callbacks (a lease was lost or handed over): their
   * resident runtimes leave at once (a busy one once its mailbox drains); nothing more of
   * theirs is committed here.
   */
  disown(owned: (id: string) => boolean, err: StoreUnavailableError): void {
    for (const rt of [...this.#live.values()]) {
      if (owned(rt.record.id)) continue;
      rt.invalid ??= err;
      if (!rt.busy) this.#invalidate(rt);
      else {
        // A step waiting for its retry, or still running: the next owner runs it (the store
        // keeps it owed); nothing of it is committed here any more.
        rt.retry?.stop(false);
        const step = rt.step;
        if (step) {
          step.abort.abort(err);
          step.release?.(err);
        }
      }
    }
    this.#idempotency.clear();
    this.#correlation.clear();
    for (const rt of this.#live.values()) {
      const r = rt.record;
      if (r.idempotencyKey !== undefined) this.#idempotency.set(r.idempotencyKey, r.id);
      if (r.correlationKey !== undefined) this.#correlation.set(r.correlationKey, r.id);
    }
    this.#scheduler?.poke();
  }

  /** Re-reads due times (the set of owned shards changed). */
  pokeScheduler(): void {
    this.#scheduler?.poke();
  }

  /** A batch failed: nothing of it is stored, so memory goes back to what is. */
  #failed(batch: CommitBatch, err: StoreUnavailableError): void {
    for (const rt of batch.members) {
      if (!(rt instanceof CallbackRuntime) || this.#live.get(rt.record.id) !== rt) continue;
      rt.invalid = err;
      // Writes made since, on top of what failed, must not be committed either.
      this.#commit!.discard(rt, rt.record.id, err);
      // A runtime in the middle of its mailbox is dropped when the mailbox drains; the rest now.
      if (!rt.busy) this.#invalidate(rt);
      else rt.retry?.stop(false);
    }
    this.#scheduler?.poke();
  }

  /** Drops a runtime whose state is not the store's; its next use reads the row back. */
  #invalidate(rt: CallbackRuntime): void {
    const err = rt.invalid!;
    const record = rt.record;
    // wait() has no cap: waiters move to the callback as stored, not to the failed write.
    const waiters = rt.waiters;
    rt.waiters = undefined;
    this.#onInvalidated(rt, err);
    let row: StoredCallback | undefined;
    try {
      // An asynchronous store cannot be read here: the callback is read back on its next use.
      row = this.prefetching ? undefined : this.#durable!.load(record.id);
    } catch {
      row = undefined;
    }
    const decoded = row && decodeRecord(row);
    const stored = decoded?.record;
    if (stored) this.#stats.move(record.anchor, record.status, stored.status);
    else if (!rt.committed) {
      this.#stats.remove(record.anchor, record.status);
      if (record.parentId !== undefined) {
        const parent = this.#live.get(record.parentId);
        if (parent?.record.children)
          parent.record.children = parent.record.children.filter((c) => c !== record.id);
      }
    }
    this.#drop(rt);
    if (!waiters?.length) return;
    // The callback as stored, made resident again from the row just read, keeps the waiters.
    if (row && decoded && !isTerminal(decoded.record.status)) {
      const fresh = this.#resident(decoded, row.meta);
      (fresh.waiters ??= []).push(...waiters);
    } else for (const w of waiters) w.reject(err);
  }

  /** Lets a resident runtime leave the heap if nothing pins it (durable mode). */
  #release(rt: CallbackRuntime): void {
    if (this.#live.get(rt.record.id) !== rt) return;
    if (rt.invalid && !rt.busy) return this.#invalidate(rt);
    if (rt.busy || rt.pending > 0 || rt.waiters?.length || rt.batch !== undefined || rt.pins > 0)
      return;
    if (rt.finalized || this.#evicting === rt || !this.#liveActors.has(rt.record.id))
      this.#drop(rt);
  }

  /** A runtime's mailbox drained or its waiters left: it may leave the heap. */
  settle(rt: CallbackRuntime): void {
    if (this.#durable) this.#release(rt);
  }

  #drop(rt: CallbackRuntime): void {
    const record = rt.record;
    this.#stopActor(rt);
    this.#live.delete(record.id);
    this.#byToken.delete(record.token);
    if (this.#evicting !== rt) this.#liveActors.delete(record.id);
    if (
      record.idempotencyKey !== undefined &&
      this.#idempotency.get(record.idempotencyKey) === record.id
    )
      this.#idempotency.delete(record.idempotencyKey);
    if (
      record.correlationKey !== undefined &&
      this.#correlation.get(record.correlationKey) === record.id
    )
      this.#correlation.delete(record.correlationKey);
  }

  /** Makes a stored active callback resident. */
  #resident(decoded: DecodedRecord, meta: string): CallbackRuntime {
    const record = decoded.record;
    const rt = new CallbackRuntime(record, decoded.lastActivity);
    rt.committed = true;
    rt.meta = meta;
    rt.snapshotBytes = decoded.snapshotBytes;
    rt.tailBytes = decoded.tailBytes;
    rt.tailEntries = decoded.tailEntries;
    record.children = this.#durable!.childrenOf(record.id);
    if (record.children.length === 0) record.children = undefined;
    this.#live.set(record.id, rt);
    this.#byToken.set(record.token, rt);
    if (record.idempotencyKey !== undefined)
      this.#idempotency.set(record.idempotencyKey, record.id);
    if (record.correlationKey !== undefined)
      this.#correlation.set(record.correlationKey, record.id);
    this.#liveActors.set(record.id, rt);
    if (record.owed !== undefined) this.#onOwed?.(rt);
    return rt;
  }

  /** Reads a callback's row: a resident runtime for an active one, the record for a retained one. */
  #loadStored(id: string): Exclude<Found, { kind: 'notFound' }> | undefined {
    const row = this.#durable!.load(id);
    return row && this.#fromRow(row);
  }

  /**
   * A stored row: a resident runtime for an active callback, the record for a retained one, or
   * for one this engine may not hold (another replica owns it): its record, read-only.
   */
  #fromRow(row: StoredCallback): Exclude<Found, { kind: 'notFound' }> {
    const decoded = decodeRecord(row);
    const record = decoded.record;
    // A terminal callback that still owes its final step is resident until that step ended.
    if ((isTerminal(record.status) && record.owed === undefined) || !this.#mayHold(record.id))
      return { kind: 'retained', record };
    return { kind: 'live', rt: this.#resident(decoded, row.meta) };
  }

  // ---- membership ---------------------------------------------------------------------------

  /**
   * Registers a new active callback (no actor yet: a virtual actor), appends its `created`
   * entry (a durable store inserts its row in this turn's group commit) and arms its timers.
   */
  add(rt: CallbackRuntime, parent: CallbackRuntime | undefined, created: JournalEntry): void {
    const record = rt.record;
    this.#live.set(record.id, rt);
    this.#byToken.set(record.token, rt);
    if (parent) (parent.record.children ??= []).push(record.id);
    if (record.idempotencyKey !== undefined)
      this.#idempotency.set(record.idempotencyKey, record.id);
    // Several replicas: a correlation key is unique, so a second one is refused at commit and
    // must not take the index from the callback that holds it.
    if (
      record.correlationKey !== undefined &&
      !(this.prefetching && this.#correlation.has(record.correlationKey))
    )
      this.#correlation.set(record.correlationKey, record.id);
    this.append(rt, created);
    if (this.#durable) {
      this.#liveActors.set(record.id, rt);
      return;
    }
    if (record.deadlineAt !== undefined)
      rt.deadline = this.#deadlines.schedule(record.deadlineAt, rt, DEADLINE);
    if (record.heartbeatMs !== undefined)
      rt.heartbeat = this.#deadlines.schedule(rt.lastActivity + record.heartbeatMs, rt, HEARTBEAT);
  }

  /** The runtime of an active (or still draining) callback; durable mode reads a cold one back. */
  runtime(id: string): CallbackRuntime | undefined {
    const rt = this.#live.get(id);
    if (rt || !this.#durable) return rt;
    const found = this.#loadStored(id);
    return found?.kind === 'live' ? found.rt : undefined;
  }

  /** The record of a known callback, active or retained. */
  record(id: string): CallbackRecord | undefined {
    const rt = this.#live.get(id);
    if (rt) return rt.record;
    if (!this.#durable) return this.#store.get(id);
    const row = this.#durable.load(id);
    return row && decodeRecord(row).record;
  }

  /**
   * A known callback's record, when it last heard from outside (if known) and its children's ids,
   * for admin views. Reads the store in durable mode, but never makes a callback resident.
   */
  details(
    id: string,
  ): { record: CallbackRecord; lastActivity: number | undefined; children: string[] } | undefined {
    const rt = this.#live.get(id);
    if (rt)
      return {
        record: rt.record,
        lastActivity: rt.lastActivity,
        children: [...(rt.record.children ?? [])],
      };
    if (!this.#durable) {
      const record = this.#store.get(id);
      return record && { record, lastActivity: undefined, children: [...(record.children ?? [])] };
    }
    const row = this.#durable.load(id);
    if (!row) return undefined;
    const { record, lastActivity } = decodeRecord(row);
    return { record, lastActivity, children: this.#durable.childrenOf(id) };
  }

  /** The record of the callback created with this (anchor-scoped) idempotency key, if still known. */
  byIdempotencyKey(key: string): CallbackRecord | undefined {
    const id = this.#idempotency.get(key);
    if (id === undefined) {
      const row = this.#durable?.findByIdempotencyKey(key);
      const found = row && this.#fromRow(row);
      return found && (found.kind === 'live' ? found.rt.record : found.record);
    }
    const record = this.record(id);
    if (!record) this.#idempotency.delete(key);
    return record;
  }

  /** The callback whose creation data produced this correlation key. */
  byCorrelationKey(key: string): string | undefined {
    return this.#correlation.get(key) ?? this.#durable?.findByCorrelationKey(key)?.id;
  }

  /** Resident runtimes, in insertion order. */
  runtimes(): IterableIterator<CallbackRuntime> {
    return this.#live.values();
  }

  /** Pages of callbacks in creation order (from the store in durable mode: what is committed). */
  list(options: ListOptions): ListPage {
    if (this.#durable) {
      const store = this.#durable;
      return listStored(
        options,
        (q) => store.list(q),
        (row) => decodeRecord(row).record,
        store.count ? (q) => store.count?.(q) ?? 0 : undefined,
      );
    }
    const active = (function* (live: Map<string, CallbackRuntime>) {
      for (const rt of live.values()) yield rt.record;
    })(this.#live);
    return listCallbacks([active, this.#store.values()], options);
  }

  /** Sizes for {@link Stats.snapshot}: active, retained, live actors. */
  get sizes(): readonly [active: number, retained: number, liveActors: number] {
    if (this.#durable) {
      const [active, inactive] = this.#stats.activeInactive();
      return [active, inactive, this.#actors];
    }
    return [this.#live.size, this.#store.size, this.#actors];
  }

  // ---- lookup -------------------------------------------------------------------------------

  /** Resolves a token: an exact minted token by map, anything else decoded and HMAC-verified. */
  /** The anchor of the live callback holding exactly this token (no decoding, no HMAC), if any. */
  liveAnchor(token: string): string | undefined {
    return this.#byToken.get(token)?.record.anchor;
  }

  find(token: unknown): Found {
    const hit = typeof token === 'string' ? this.#byToken.get(token) : undefined;
    if (hit) return { kind: 'live', rt: hit };
    const fields = decodeToken(token);
    if (!fields) {
      this.#stats.notFound++;
      this.#events.rejected('malformed token');
      return { kind: 'notFound', anchor: undefined, id: undefined };
    }
    let found: Exclude<Found, { kind: 'notFound' }> | undefined;
    const rt = this.#live.get(fields.id);
    if (rt) found = { kind: 'live', rt };
    else if (this.#durable) {
      // Verify before reading the store: a forged token costs no I/O.
      if (!this.#codec.verify(fields)) return this.#forged();
      found = this.#loadStored(fields.id);
      if (!found) {
        this.#stats.notFound++;
        return { kind: 'notFound', anchor: fields.anchor, id: fields.id };
      }
      const record = found.kind === 'live' ? found.rt.record : found.record;
      if (record.anchor !== fields.anchor) return this.#forged();
      return found;
    } else {
      const record = this.#store.get(fields.id);
      if (record) found = { kind: 'retained', record };
    }
    const record =
      found === undefined ? undefined : found.kind === 'live' ? found.rt.record : found.record;
    // A byte-identical token is one this engine minted; anything else must verify its HMAC.
    const authentic =
      record !== undefined && fields.node === this.#codec.node
        ? safeEqual(token as string, record.token) ||
          (fields.anchor === record.anchor && this.#codec.verify(fields))
        : this.#codec.verify(fields);
    if (!authentic) return this.#forged();
    if (found) return found;
    this.#stats.notFound++;
    return { kind: 'notFound', anchor: fields.anchor, id: fields.id };
  }

  #forged(): Found {
    this.#stats.forgedTokens++;
    this.#stats.notFound++;
    this.#events.rejected('token signature does not verify');
    return { kind: 'notFound', anchor: undefined, id: undefined };
  }

  // ---- virtual actors ----------------------------------------------------------------------

  /** The callback's live actor, restored from its persisted snapshot if it was passivated (or never started). */
  activate(rt: CallbackRuntime): Actor<LifecycleMachine> {
    const live = rt.actor;
    if (live) {
      // Sampled recency (approximate LRU, as Redis does): a busy callback is still bumped often,
      // and most reports skip the cache's bookkeeping.
      if ((++this.#recencyTick & 7) === 0) this.#liveActors.get(rt.record.id);
      return live;
    }
    const { status, data } = rt.record;
    const actor = createActor(lifecycleMachine, {
      snapshot: actorSnapshot(status, data),
      input: { data },
      ...this.#events.actorOptions(rt.record.id),
    });
    actor.start();
    rt.actor = actor;
    this.#actors++;
    this.#stats.activations++;
    this.#liveActors.set(rt.record.id, rt);
    return actor;
  }

  #stopActor(rt: CallbackRuntime): void {
    const actor = rt.actor;
    if (!actor) return;
    rt.actor = undefined;
    this.#actors--;
    actor.stop();
  }

  /**
   * Stops a live actor; its record keeps status and data, so nothing is lost. A busy one is
   * passivated once its mailbox drains. `evicted`: called from the live set's own eviction,
   * which must not be re-entered.
   */
  passivate(rt: CallbackRuntime, evicted = false): void {
    if (!rt.actor) return;
    if (rt.busy || rt.pending > 0) {
      rt.evictPending = true;
      return;
    }
    rt.evictPending = false;
    this.#stopActor(rt);
    if (!evicted && !this.#durable) this.#liveActors.delete(rt.record.id);
    if (!isTerminal(rt.record.status)) this.#stats.passivations++;
  }

  /** Passivates every idle live actor (so the next activation picks up new inspectors). */
  passivateIdle(): void {
    for (const rt of this.#live.values())
      if (rt.actor && !rt.busy && rt.pending === 0) this.passivate(rt);
  }

  // ---- timers and retention ----------------------------------------------------------------

  /** Cancels a callback's deadline and heartbeat (it became terminal). */
  stopTimers(rt: CallbackRuntime): void {
    this.#deadlines.cancel(rt.deadline);
    this.#deadlines.cancel(rt.heartbeat);
    rt.deadline = rt.heartbeat = undefined;
  }

  /**
   * Wakes a step's retry wait at `at` (`rt.retry.fire()`). Durable mode: nothing here; the row
   * written with the owed retry carries its instant into the store's due-time index, and the
   * store scheduler wakes it. Memory mode: one entry in the deadline queue.
   */
  armRetry(rt: CallbackRuntime, at: number): void {
    if (this.#durable && rt.record.owed?.at !== undefined) return;
    this.#deadlines.cancel(rt.retryTimer);
    rt.retryTimer = this.#deadlines.schedule(at, rt, RETRY);
  }

  /** Cancels a retry wait's wake-up (memory mode). */
  disarmRetry(rt: CallbackRuntime): void {
    this.#deadlines.cancel(rt.retryTimer);
    rt.retryTimer = undefined;
  }

  /** When a callback that just became inactive is removed (`undefined`: kept forever). */
  removeAt(record: CallbackRecord): number | undefined {
    return record.retention === true ? undefined : this.#o.clock.now() + record.retention;
  }

  /** The mailbox of a finalized callback drained: keep its record for its retention. */
  retire(rt: CallbackRuntime): void {
    const record = rt.record;
    // A finished callback holds no actor.
    this.#stopActor(rt);
    this.#liveActors.delete(record.id);
    if (this.#durable) {
      // Its terminal row was written at finalize; the runtime leaves once that commit lands.
      return this.#release(rt);
    }
    this.#live.delete(record.id);
    this.#byToken.delete(record.token);
    // Fold the patch log into one frozen object, and pack the journal into one text.
    record.data = DataVersion.of(record.data.value);
    if (Array.isArray(record.journal))
      record.journal = JSON.stringify(record.journal.map(toHistory));
    if (record.retention === true) return void this.#store.set(record, undefined);
    if (record.retention <= 0) return this.#forget(record, 'retention');
    this.#store.set(record, record.retention);
    record.timer = this.#deadlines.schedule(
      record.removeAt ?? this.#o.clock.now() + record.retention,
      record,
      RETENTION,
    );
  }

  /** A record leaves the engine for good. */
  #forget(record: CallbackRecord, reason: string): void {
    // Without its timer, an evicted record is garbage at once (maxRetained bounds memory).
    this.#deadlines.cancel(record.timer);
    record.timer = undefined;
    const corrKey = record.correlationKey;
    if (corrKey !== undefined && this.#correlation.get(corrKey) === record.id)
      this.#correlation.delete(corrKey);
    const idemKey = record.idempotencyKey;
    if (idemKey !== undefined && this.#idempotency.get(idemKey) === record.id)
      this.#idempotency.delete(idemKey);
    this.#stats.remove(record.anchor, record.status);
    this.#stats.evicted++;
    this.#events.emit('evicted', record, { reason });
  }

  #onDeadline(target: CallbackRuntime | CallbackRecord, kind: number): void {
    if (kind === DEADLINE) this.#onTimeout(target as CallbackRuntime, 'deadline');
    else if (kind === HEARTBEAT) this.#onHeartbeat(target as CallbackRuntime);
    else if (kind === RETRY) {
      const rt = target as CallbackRuntime;
      rt.retryTimer = undefined;
      rt.retry?.fire();
    } else {
      const record = target as CallbackRecord;
      record.timer = undefined;
      // A late timer may find lru-cache already expired it (and told #forget); else remove it now.
      if (this.#store.get(record.id) === record && this.#store.delete(record.id)) {
        this.#forget(record, 'retention');
      }
    }
  }

  #onHeartbeat(rt: CallbackRuntime): void {
    const due = rt.lastActivity + rt.record.heartbeatMs!;
    if (due > this.#o.clock.now()) {
      rt.heartbeat = this.#deadlines.schedule(due, rt, HEARTBEAT);
      return;
    }
    rt.heartbeat = undefined;
    this.#onTimeout(rt, 'heartbeat');
  }

  /**
   * Which of an active callback's times has passed at `now`, if any: its deadline, else its
   * heartbeat window. The one rule for the store's due rows and for reports that reach a
   * callback before its timer ran.
   */
  overdue(rt: CallbackRuntime, now: number): 'deadline' | 'heartbeat' | undefined {
    const { deadlineAt, heartbeatMs } = rt.record;
    if (deadlineAt !== undefined && deadlineAt <= now) return 'deadline';
    if (heartbeatMs !== undefined && rt.lastActivity + heartbeatMs <= now) return 'heartbeat';
    return undefined;
  }

  /**
   * A stored row is due (durable mode).
   * @returns whether anything was done (so the scheduler knows it is not spinning on it).
   */
  #onDue(id: string): boolean {
    const now = this.#o.clock.now();
    let rt = this.#live.get(id);
    if (!rt) {
      const found = this.#loadStored(id);
      if (!found) return false;
      if (found.kind === 'retained') {
        const record = found.record;
        if (record.removeAt === undefined || record.removeAt > now || this.#removing.has(id))
          return false;
        // Counted as removed once the delete is committed (a failed one is retried when due).
        const member = { batch: undefined };
        this.#removing.add(id);
        this.#commit!.remove(id, member);
        this.#commit!.after(
          member,
          () => {
            this.#removing.delete(id);
            this.#forget(record, 'retention');
          },
          () => this.#removing.delete(id),
        );
        return true;
      }
      rt = found.rt;
    }
    const record = rt.record;
    // A callback with writes in flight writes its row again; that commit re-arms.
    if (rt.batch !== undefined) return false;
    if (!isTerminal(record.status)) {
      const reason = this.overdue(rt, now);
      if (reason !== undefined) {
        this.#onTimeout(rt, reason);
        return true;
      }
    }
    if (record.owed?.at !== undefined) {
      // Its step is being tried (or resumed): the row is written again when that try ends.
      if (rt.retry === undefined) return false;
      // A step waits for its retry: the wait ends now (else the stored due time is stale).
      if (rt.retry.at <= now) {
        rt.retry.fire();
        return true;
      }
    }
    if (isTerminal(record.status)) return false;
    // The stored due time is stale (activity since): store the right one.
    this.touchRow(rt);
    return true;
  }

  // ---- shutdown -----------------------------------------------------------------------------

  /** Stops the deadline timer (no deadline fires afterwards). */
  stopClock(): void {
    this.#deadlines.close();
    this.#scheduler?.stop();
  }

  /** Commits every pending write, then closes the durable store. */
  async closeStore(): Promise<void> {
    if (!this.#durable) return;
    try {
      await this.#commit!.drain();
    } finally {
      await this.#durable.close();
    }
  }

  /** Stops every live actor and forgets everything. */
  clear(): void {
    for (const rt of this.#live.values()) this.#stopActor(rt);
    this.#live.clear();
    this.#byToken.clear();
    this.#liveActors.clear();
    this.#store.clear();
    this.#idempotency.clear();
    this.#correlation.clear();
  }
}
