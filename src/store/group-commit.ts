/**
 * Group commit: the writes of one event-loop turn go to the store in one
 * transaction, and the answers that wait for them are released only after
 * COMMIT. Batches commit one at a time, in order, so per-callback order holds.
 * A batch holds each callback's journal entries, its row, its snapshot and
 * its reports' deduplication keys together: all of them commit, or none.
 *
 * @module
 */

import { StoreUnavailableError } from '../errors.js';
import { toError } from '../thrown.js';
import type {
  CallbackRowWrite,
  CommitResult,
  DedupKeyWrite,
  DurableStore,
  EarlyEventRow,
  JournalAppend,
  SnapshotWrite,
} from './store.js';

/** Something whose writes are tracked: a callback's runtime. */
export interface CommitMember {
  /** The newest batch holding one of its writes, until that batch committed or failed. */
  batch: CommitBatch | undefined;
}

type Waiter = { ok: () => void; fail: (err: Error) => void; member: CommitMember | undefined };

/** One batch of writes. */
export class CommitBatch {
  readonly rows = new Map<string, CallbackRowWrite>();
  readonly entries: JournalAppend[] = [];
  readonly snapshots = new Map<string, SnapshotWrite>();
  readonly dedup: DedupKeyWrite[] = [];
  readonly deletes = new Set<string>();
  readonly members: CommitMember[] = [];
  readonly waiters: Waiter[] = [];
  /** Inbox entries applied. */
  readonly inboxDone: number[] = [];
  /** Early events held, and early events done (by dedup key). */
  readonly earlyAdds: EarlyEventRow[] = [];
  readonly earlyDone: string[] = [];
  bytes = 0;
  /** `performance.now()` when it went to the store (only while commits are timed). */
  started = 0;

  /** Rows, entries and deletes: what a commit's size is counted in. */
  get size(): number {
    return this.rows.size + this.entries.length + this.deletes.size;
  }
}

/** What the group commit tells the engine after each batch. */
export interface GroupCommitHooks {
  /** A batch committed (its waiters were released just before). */
  committed(batch: CommitBatch): void;
  /** A batch failed: nothing of it is in the store; its waiters got `err`. */
  failed(batch: CommitBatch, err: StoreUnavailableError): void;
  /**
   * The store refused some inserted rows (a unique key held elsewhere): the error for each of
   * their members, whose waiters fail with it (called before any waiter is released).
   */
  conflicts?(batch: CommitBatch, ids: readonly string[]): Map<CommitMember, Error>;
  /** Whether commits are timed (someone listens to measurements). */
  measuring?(): boolean;
  /** A commit's size (rows, entries, removals), whether it succeeded, and how long it took. */
  measured?(rows: number, ok: boolean, seconds: number): void;
}

/** Bounds of one batch: when either is reached, the batch commits without waiting for the turn's end. */
export interface GroupCommitLimits {
  readonly maxRows: number;
  readonly maxBytes: number;
}

/** Collects writes and commits them in batches. */
export class GroupCommit {
  readonly #store: DurableStore;
  readonly #hooks: GroupCommitHooks;
  readonly #limits: GroupCommitLimits;
  #open: CommitBatch | undefined;
  /** The batch being committed by an asynchronous store. */
  #inflight: Promise<void> | undefined;
  #scheduled = false;
  /** Batches committed, rows and entries written, and bytes of entries and snapshots: for stats and benchmarks. */
  commits = 0;
  rowsWritten = 0;
  bytesWritten = 0;

  constructor(store: DurableStore, hooks: GroupCommitHooks, limits: GroupCommitLimits) {
    this.#store = store;
    this.#hooks = hooks;
    this.#limits = limits;
  }

  #batch(): CommitBatch {
    let b = this.#open;
    if (!b) {
      b = this.#open = new CommitBatch();
      if (!this.#scheduled) {
        this.#scheduled = true;
        setImmediate(this.#onTurnEnd);
      }
    }
    return b;
  }

  readonly #onTurnEnd = (): void => {
    this.#scheduled = false;
    this.flush();
  };

  #join(member: CommitMember, b: CommitBatch): void {
    if (member.batch !== b) {
      member.batch = b;
      b.members.push(member);
    }
  }

  /** Full: commit at the end of this synchronous run (not now: the rest of the entry's writes still join). */
  #checkFull(b: CommitBatch): void {
    if (b.size >= this.#limits.maxRows || b.bytes >= this.#limits.maxBytes) this.#flushSoon();
  }

  /** Writes a callback's row in the open batch (an update after an insert stays an insert). */
  row(member: CommitMember, row: CallbackRowWrite): void {
    const b = this.#batch();
    const prev = b.rows.get(row.id);
    if (prev?.change === 'insert' && row.change === 'update')
      row = { ...prev, ...row, change: 'insert', meta: prev.meta, headOnly: false };
    // A head-only update after a full one in the same batch: the full one's columns still change.
    else if (prev !== undefined && prev.headOnly !== true && row.headOnly === true)
      row = { ...row, headOnly: false };
    b.rows.set(row.id, row);
    b.deletes.delete(row.id);
    this.#join(member, b);
    this.#checkFull(b);
  }

  /** Appends a journal entry in the open batch. */
  entry(member: CommitMember, entry: JournalAppend): void {
    const b = this.#batch();
    b.entries.push(entry);
    b.bytes += entry.entry.length;
    this.#join(member, b);
    this.#checkFull(b);
  }

  /** Writes a callback's snapshot in the open batch (replacing one written earlier in it). */
  snapshot(member: CommitMember, snapshot: SnapshotWrite): void {
    const b = this.#batch();
    const prev = b.snapshots.get(snapshot.id);
    if (prev) b.bytes -= prev.body.length;
    b.snapshots.set(snapshot.id, snapshot);
    b.bytes += snapshot.body.length;
    this.#join(member, b);
  }

  /** Records a report's deduplication key in the open batch: the batch of its entry. */
  dedup(member: CommitMember, key: DedupKeyWrite): void {
    const b = this.#batch();
    b.dedup.push(key);
    this.#join(member, b);
  }

  /**
   * A member's earlier batch failed: its writes in the open batch were made on state the
   * store does not have, so they leave that batch, and whoever waits for them gets `err`.
   */
  discard(member: CommitMember, id: string, err: Error): void {
    const b = this.#open;
    if (!b || member.batch !== b) return;
    this.#dropWrites(b, id);
    member.batch = undefined;
    const gone = b.waiters.filter((w) => w.member === member);
    const keep = b.waiters.filter((w) => w.member !== member);
    b.waiters.length = 0;
    b.waiters.push(...keep);
    for (const w of gone) w.fail(err);
  }

  /** Takes a callback's pending writes out of a batch. */
  #dropWrites(b: CommitBatch, id: string): void {
    b.rows.delete(id);
    const snap = b.snapshots.get(id);
    if (snap) {
      b.bytes -= snap.body.length;
      b.snapshots.delete(id);
    }
    for (let i = b.entries.length - 1; i >= 0; i--) {
      const e = b.entries[i]!;
      if (e.id !== id) continue;
      b.bytes -= e.entry.length;
      b.entries.splice(i, 1);
    }
    for (let i = b.dedup.length - 1; i >= 0; i--) if (b.dedup[i]!.id === id) b.dedup.splice(i, 1);
  }

  /** Takes an applied report out of the inbox in the next batch. */
  inboxDone(seq: number): void {
    this.#batch().inboxDone.push(seq);
  }

  /** Stores a held early event in the open batch; `member` waits for its commit. */
  earlyAdd(member: CommitMember, row: EarlyEventRow): void {
    const b = this.#batch();
    b.earlyAdds.push(row);
    b.bytes += row.data.length;
    this.#join(member, b);
  }

  /**
   * Removes a held early event in the open batch: the batch that also holds the effect of the
   * report it became, or the next one.
   */
  earlyDone(dedupKey: string): void {
    this.#batch().earlyDone.push(dedupKey);
  }

  /** Removes a callback (row, journal, snapshot, keys) in the open batch. */
  remove(id: string, member?: CommitMember): void {
    const b = this.#batch();
    this.#dropWrites(b, id);
    b.deletes.add(id);
    if (member) this.#join(member, b);
  }

  /**
   * Calls `ok` once every write of `member` so far is committed (at once if none is pending),
   * or `fail` if its batch failed.
   */
  after(member: CommitMember | undefined, ok: () => void, fail: (err: Error) => void): void {
    const b = member?.batch;
    if (b) b.waiters.push({ ok, fail, member });
    else ok();
  }

  /** Whether anything waits to be committed. */
  get idle(): boolean {
    return this.#open === undefined && this.#inflight === undefined;
  }

  #flushQueued = false;
  #flushSoon(): void {
    if (this.#flushQueued) return;
    this.#flushQueued = true;
    queueMicrotask(() => {
      this.#flushQueued = false;
      this.flush();
    });
  }

  /** Commits the open batch now (after the batch in flight, if the store is asynchronous). */
  flush(): void {
    if (this.#inflight) return; // the in-flight batch's completion flushes the next one
    const b = this.#open;
    if (!b) return;
    this.#open = undefined;
    if (this.#hooks.measuring?.()) b.started = performance.now();
    let result: void | CommitResult | Promise<void | CommitResult>;
    try {
      result = this.#store.commit({
        rows: [...b.rows.values()],
        entries: b.entries,
        snapshots: [...b.snapshots.values()],
        dedup: b.dedup,
        deletes: [...b.deletes],
        ...(b.inboxDone.length > 0 ? { inboxDone: b.inboxDone } : {}),
        ...(b.earlyAdds.length > 0 ? { earlyAdds: b.earlyAdds } : {}),
        ...(b.earlyDone.length > 0 ? { earlyDone: b.earlyDone } : {}),
      });
    } catch (err) {
      this.#settle(b, err, undefined);
      return;
    }
    if (result && typeof (result as Promise<unknown>).then === 'function') {
      this.#inflight = (result as Promise<void | CommitResult>).then(
        (r) => this.#settle(b, undefined, r),
        (err: unknown) => this.#settle(b, err ?? new Error('commit failed'), undefined),
      );
      return;
    }
    this.#settle(b, undefined, result as void | CommitResult);
  }

  #settle(b: CommitBatch, err: unknown, result: void | CommitResult): void {
    this.#inflight = undefined;
    for (const m of b.members) if (m.batch === b) m.batch = undefined;
    if (b.started !== 0)
      this.#hooks.measured?.(b.size, err === undefined, (performance.now() - b.started) / 1000);
    if (err === undefined) {
      this.commits++;
      this.rowsWritten += b.size;
      this.bytesWritten += b.bytes;
      const conflicts = result?.conflicts;
      const refused =
        conflicts && conflicts.length > 0 ? this.#hooks.conflicts?.(b, conflicts) : undefined;
      for (const w of b.waiters) {
        const e = refused && w.member ? refused.get(w.member) : undefined;
        if (e) w.fail(e);
        else w.ok();
      }
      this.#hooks.committed(b);
    } else {
      const e =
        err instanceof StoreUnavailableError
          ? err
          : new StoreUnavailableError(`commit failed: ${toError(err).message}`, { cause: err });
      for (const w of b.waiters) w.fail(e);
      this.#hooks.failed(b, e);
    }
    if (this.#open && !this.#scheduled) this.flush();
  }

  /** Commits everything pending and resolves once the store has it. */
  async drain(): Promise<void> {
    for (let i = 0; i < 1000 && !this.idle; i++) {
      this.flush();
      if (this.#inflight) await this.#inflight;
    }
  }
}
