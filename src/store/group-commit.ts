/**
 * Group commit: the writes of one event-loop turn go to the store in one
 * transaction, and the answers that wait for them are released only after
 * COMMIT. Batches commit one at a time, in order, so per-callback order holds.
 *
 * @module
 */

import { StoreUnavailableError, toError } from '../errors.js';
import type { CommitResult, DurableStore, EarlyEventRow, StoredCallback } from './store.js';

const CHANGE_RANK = { body: 0, index: 1, insert: 2 } as const;

/** The change that covers both (`undefined`: unknown, so a full upsert). */
function strongerChange(
  a: StoredCallback['change'],
  b: StoredCallback['change'],
): StoredCallback['change'] {
  if (a === undefined || b === undefined) return undefined;
  return CHANGE_RANK[a] >= CHANGE_RANK[b] ? a : b;
}

/** Something whose writes are tracked: a callback's runtime. */
export interface CommitMember {
  /** The newest batch holding one of its writes, until that batch committed or failed. */
  batch: CommitBatch | undefined;
}

type Waiter = { ok: () => void; fail: (err: Error) => void; member: CommitMember | undefined };

/** One batch of writes. */
export class CommitBatch {
  readonly rows = new Map<string, StoredCallback>();
  readonly deletes = new Set<string>();
  readonly members: CommitMember[] = [];
  readonly waiters: Waiter[] = [];
  /** Deduplication keys of reports whose effect is in this batch. */
  readonly dedup: { key: string; id: string }[] = [];
  /** Inbox entries applied. */
  readonly inboxDone: number[] = [];
  /** Early events held, and early events done (by dedup key). */
  readonly earlyAdds: EarlyEventRow[] = [];
  readonly earlyDone: string[] = [];
  bytes = 0;
  /** `performance.now()` when it went to the store (only while commits are timed). */
  started = 0;
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
  /** A commit's rows (written or removed), whether it succeeded, and how long it took. */
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
  /** Batches committed, and rows written: for stats and benchmarks. */
  commits = 0;
  rowsWritten = 0;

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

  /** Adds a row (the member's state now) to the open batch. */
  write(member: CommitMember, row: StoredCallback): void {
    const b = this.#batch();
    const prev = b.rows.get(row.id);
    if (prev) {
      b.bytes -= prev.body.length;
      // The store still holds the row before `prev`: keep the stronger change of the two.
      const change = strongerChange(prev.change, row.change);
      if (change !== row.change) row = { ...row, change };
    }
    b.rows.set(row.id, row);
    b.deletes.delete(row.id);
    b.bytes += row.body.length;
    if (member.batch !== b) {
      member.batch = b;
      b.members.push(member);
    }
    // Full: commit at the end of this synchronous run (not now: a deduplication key of the
    // report whose effect this row is still joins the same batch).
    if (b.rows.size >= this.#limits.maxRows || b.bytes >= this.#limits.maxBytes) this.#flushSoon();
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

  /**
   * Whether a deduplication key recorded now lands in the same transaction as every write of
   * `member` not yet committed: it has none, or only in the open batch.
   */
  canDedup(member: CommitMember): boolean {
    return member.batch === undefined || member.batch === this.#open;
  }

  /**
   * Records a report's deduplication key with its effect: in the open batch, which holds the
   * member's writes not yet committed (check {@link canDedup} first).
   */
  dedup(member: CommitMember, key: string, id: string): void {
    const b = this.#batch();
    b.dedup.push({ key, id });
    if (member.batch !== b) {
      member.batch = b;
      b.members.push(member);
    }
  }

  /**
   * A member's earlier batch failed: its writes in the open batch were made on state the
   * store does not have, so they leave that batch, and whoever waits for them gets `err`.
   */
  discard(member: CommitMember, id: string, err: Error): void {
    const b = this.#open;
    if (!b || member.batch !== b) return;
    const row = b.rows.get(id);
    if (row) {
      b.bytes -= row.body.length;
      b.rows.delete(id);
    }
    for (let i = b.dedup.length - 1; i >= 0; i--) if (b.dedup[i]!.id === id) b.dedup.splice(i, 1);
    member.batch = undefined;
    const gone = b.waiters.filter((w) => w.member === member);
    const keep = b.waiters.filter((w) => w.member !== member);
    b.waiters.length = 0;
    b.waiters.push(...keep);
    for (const w of gone) w.fail(err);
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
    if (member.batch !== b) {
      member.batch = b;
      b.members.push(member);
    }
  }

  /**
   * Removes a held early event in the open batch: the batch that also holds the effect of the
   * report it became (see {@link dedup}), or the next one.
   */
  earlyDone(dedupKey: string): void {
    this.#batch().earlyDone.push(dedupKey);
  }

  /** Removes a callback's row in the open batch. */
  remove(id: string, member?: CommitMember): void {
    const b = this.#batch();
    const prev = b.rows.get(id);
    if (prev) {
      b.bytes -= prev.body.length;
      b.rows.delete(id);
    }
    b.deletes.add(id);
    if (member && member.batch !== b) {
      member.batch = b;
      b.members.push(member);
    }
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
        upserts: [...b.rows.values()],
        deletes: [...b.deletes],
        ...(b.dedup.length > 0 ? { dedup: b.dedup } : {}),
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
      this.#hooks.measured?.(
        b.rows.size + b.deletes.size,
        err === undefined,
        (performance.now() - b.started) / 1000,
      );
    if (err === undefined) {
      this.commits++;
      this.rowsWritten += b.rows.size + b.deletes.size;
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
