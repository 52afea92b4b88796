/**
 * The write path: each journal entry a job records goes to the store here. The memory store
 * keeps a callback's entries (and deduplication keys) with its record; a durable store gets them
 * in this turn's group commit, together with the callback's row (status, due time, head, owed),
 * the report's deduplication key, and, when the entries since the last snapshot outweigh it, a
 * new snapshot. Answers are released only once what they report is committed.
 *
 * @module
 */

import { DuplicateKeyError, StoreUnavailableError } from '../errors.js';
import { encodeEntry, readJournal, type JournalEntry } from '../journal/journal.js';
import type { ResolvedEngineOptions } from '../options/engine.js';
import { CallbackRuntime } from '../registry/callback-runtime.js';
import type { EarlyPersistence } from '../registry/early-events.js';
import type { EventHub } from '../registry/event-hub.js';
import { encodeMeta, encodeRow, encodeSnapshot } from '../registry/record-codec.js';
import type { CallbackRegistry } from '../registry/registry.js';
import { GroupCommit, type CommitBatch, type CommitMember } from '../store/group-commit.js';
import type { CallbackRowWrite, DurableStore, EarlyEventRow } from '../store/store.js';
import { DedupKeys } from './dedup-keys.js';

/** Rows and entries of one group commit at most, and bytes of entries and snapshots. */
const BATCH_ROWS = 2048;
const BATCH_BYTES = 8 * 1024 * 1024;
/**
 * The memory store keeps a callback's `created` entry and at least its newest this many entries
 * (trimmed when twice as many piled up, so appending stays constant time): a callback reported to
 * for days must not grow without bound. A durable store keeps every entry.
 */
const MEMORY_HISTORY_KEEP = 1000;

/**
 * A callback's snapshot is rewritten once the journal entries after it weigh more than it does
 * (at least this many bytes), or are this many: the bytes written per report stay those of the
 * report (amortized at most twice), whatever the size of the callback's data, and reading a
 * callback back folds a bounded tail.
 */
const SNAPSHOT_MIN_BYTES = 4096;
const SNAPSHOT_MAX_ENTRIES = 256;

/** What the write path needs from the engine. */
export interface JournalWriterDeps {
  readonly options: ResolvedEngineOptions;
  readonly registry: CallbackRegistry;
  readonly events: EventHub;
}

/** Appends journal entries (group commit in durable mode) and releases answers after COMMIT. */
export class JournalWriter {
  readonly #registry: CallbackRegistry;
  readonly #durable: DurableStore | undefined;
  readonly #commit: GroupCommit | undefined;
  /** Deduplication keys: remembered with their entries, pruned after commits. */
  readonly keys: DedupKeys;
  /** Dedup keys of claimed early events whose rows go with their report's effect. */
  readonly #claimedEarly = new Set<string>();

  constructor(deps: JournalWriterDeps) {
    this.#registry = deps.registry;
    const store = deps.options.store;
    this.#durable = store.kind === 'durable' ? store : undefined;
    this.keys = new DedupKeys(deps.options, this.#durable, deps.events.warn);
    if (this.#durable)
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
  }

  /** The group commit's counters (durable mode). */
  get commits(): { commits: number; rows: number; bytes: number } {
    return {
      commits: this.#commit?.commits ?? 0,
      rows: this.#commit?.rowsWritten ?? 0,
      bytes: this.#commit?.bytesWritten ?? 0,
    };
  }

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
      const journal = readJournal(record.journal);
      journal.push(entry);
      if (journal.length > 2 * MEMORY_HISTORY_KEEP + 1)
        journal.splice(1, journal.length - 1 - MEMORY_HISTORY_KEEP);
      record.journal = journal;
      if (entry.dedupKey !== undefined) this.keys.remember(record, entry.dedupKey, entry.at);
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
    let row: CallbackRowWrite;
    if (rt.meta === undefined) {
      rt.meta = encodeMeta(record);
      row = encodeRow(record, rt.lastActivity, 'insert', rt.meta);
    } else {
      row = encodeRow(record, rt.lastActivity, 'update', '');
      // Only the head moved: a store that reads the head from its journal skips the row.
      if (row.status === rt.rowStatus && row.dueAt === rt.rowDueAt && row.owed === rt.rowOwed)
        row = { ...row, headOnly: true };
    }
    rt.rowStatus = row.status;
    rt.rowDueAt = row.dueAt;
    rt.rowOwed = row.owed;
    commit.row(rt, row);
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

  /**
   * Removes a retained callback whose retention ended (durable mode: its row, journal and keys,
   * in this turn's group commit); `ok` once that is committed, `fail` if it failed.
   */
  removeRetained(id: string, ok: () => void, fail: (err: Error) => void): void {
    const member = { batch: undefined };
    this.#commit!.remove(id, member);
    this.#commit!.after(member, ok, fail);
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

  /** Resolves once every pending write is committed. */
  async flush(): Promise<void> {
    await this.#commit?.drain();
  }

  /** Commits every pending write, then closes the durable store. */
  async close(): Promise<void> {
    if (!this.#durable) return;
    try {
      await this.#commit!.drain();
    } finally {
      await this.#durable.close();
    }
  }

  #committed(batch: CommitBatch): void {
    for (const rt of batch.members) {
      // Members are runtimes, except the placeholder of a retention removal.
      if (!(rt instanceof CallbackRuntime)) continue;
      if (rt.batch === undefined) {
        rt.committed = true;
        this.#registry.settle(rt);
      }
    }
    // Re-read the earliest due time: arming only at this batch's rows would skip earlier rows
    // that were due but not yet rewritten when the scheduler last woke (it does not re-arm then).
    this.#registry.timers.poke();
    this.keys.prune();
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

  /** A batch failed: nothing of it is stored, so memory goes back to what is. */
  #failed(batch: CommitBatch, err: StoreUnavailableError): void {
    for (const rt of batch.members) {
      if (!(rt instanceof CallbackRuntime) || !this.#registry.holds(rt)) continue;
      rt.invalid = err;
      // Writes made since, on top of what failed, must not be committed either.
      this.#commit!.discard(rt, rt.record.id, err);
      // A runtime in the middle of its mailbox is dropped when the mailbox drains; the rest now.
      if (!rt.busy) this.#registry.invalidate(rt);
      else rt.retry?.stop(false);
    }
    this.#registry.timers.poke();
  }

  // ---- early events and the inbox (durable mode) -----------------------------------------------

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
}
