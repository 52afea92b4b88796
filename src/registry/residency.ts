/**
 * Which callbacks are in the heap (durable mode): the store is the source of truth, and only
 * the resident set (live actors, plus callbacks that are busy, waited on, pinned, or have writes
 * not yet committed) is in memory. A report to a cold callback reads its row back; a resident
 * one leaves once nothing holds it; one whose write failed is dropped and read back on its next
 * use; a replica that no longer owns a callback lets it go.
 *
 * @module
 */

import type { StoreUnavailableError } from '../errors.js';
import { isTerminal } from '../lifecycle/statuses.js';
import type { DurableStore, Prefetch, StoredCallback } from '../store/store.js';
import { CallbackRuntime } from './callback-runtime.js';
import type { CallbackIndex, Known } from './callback-index.js';
import type { LiveSet } from './live-set.js';
import { decodeRecord, type DecodedRecord } from './record-codec.js';
import type { Stats } from './stats.js';

/** What residency needs. */
export interface ResidencyDeps {
  readonly durable: DurableStore | undefined;
  readonly index: CallbackIndex;
  readonly liveSet: LiveSet;
  readonly stats: Stats;
  /** Receives what cannot be thrown (a row that cannot be read back). */
  readonly warn: (err: unknown) => void;
  /** Whether this engine may hold a callback in memory (several replicas: only its owner may). */
  readonly mayHold: (id: string) => boolean;
  /** A callback dropped after a failed commit: reject what waits in its mailbox. */
  readonly onInvalidated: (rt: CallbackRuntime, err: StoreUnavailableError) => void;
  /** A callback read back from the store owes a step invocation: its mailbox runs it first. */
  readonly onOwed?: ((rt: CallbackRuntime) => void) | undefined;
}

/** Reads callbacks back into the heap, and lets them leave it. */
export class Residency {
  readonly #durable: DurableStore | undefined;
  readonly #index: CallbackIndex;
  readonly #liveSet: LiveSet;
  readonly #d: ResidencyDeps;

  constructor(deps: ResidencyDeps) {
    this.#durable = deps.durable;
    this.#index = deps.index;
    this.#liveSet = deps.liveSet;
    this.#d = deps;
  }

  /** Whether the store's reads are asynchronous (fetch before the synchronous path). */
  get prefetching(): boolean {
    return this.#durable?.prefetch !== undefined;
  }

  /**
   * Makes the callbacks with these ids resident (their rows are readable now: a synchronous
   * store, or fetched), so each one's owed invocation runs before anything else reaches it.
   */
  resumeOwed(ids: readonly string[]): void {
    for (const id of ids) {
      try {
        const rt = this.#index.live.get(id);
        if (rt) this.#d.onOwed?.(rt);
        else this.load(id);
      } catch (err) {
        this.#d.warn(err);
      }
    }
  }

  /**
   * Fetches what the next synchronous lookups need from an asynchronous store: rows of callbacks
   * not resident, or a key. Retries a read that raced a commit.
   */
  async warm(request: Prefetch): Promise<void> {
    const store = this.#durable;
    if (!store?.prefetch) return;
    const index = this.#index;
    // The subtree of a resident callback may hold callbacks that are not: fetch it whole.
    const ids = request.subtree ? request.ids : request.ids?.filter((id) => !index.live.has(id));
    const idem =
      request.idempotencyKey !== undefined && !index.idempotency.has(request.idempotencyKey)
        ? request.idempotencyKey
        : undefined;
    const corr =
      request.correlationKey !== undefined && !index.correlation.has(request.correlationKey)
        ? request.correlationKey
        : undefined;
    const keys = request.keys?.filter((k) => !index.live.get(k.id)?.recentKeys?.has(k.key));
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
    const rt = this.#index.live.get(id);
    if (!rt) return () => {};
    rt.pins++;
    return () => {
      if (--rt.pins === 0) this.release(rt);
    };
  }

  /** Reads a callback's row: a resident runtime for an active one, the record for a retained one. */
  load(id: string): Known | undefined {
    const row = this.#durable!.load(id);
    return row && this.fromRow(row);
  }

  /**
   * A stored row: a resident runtime for an active callback, the record for a retained one, or
   * for one this engine may not hold (another replica owns it): its record, read-only.
   */
  fromRow(row: StoredCallback): Known {
    const decoded = decodeRecord(row);
    const record = decoded.record;
    // A terminal callback that still owes its final step is resident until that step ended.
    if ((isTerminal(record.status) && record.owed === undefined) || !this.#d.mayHold(record.id))
      return { kind: 'retained', record };
    return { kind: 'live', rt: this.#resident(decoded, row) };
  }

  /** Makes a stored active callback resident. */
  #resident(decoded: DecodedRecord, row: StoredCallback): CallbackRuntime {
    const record = decoded.record;
    const rt = new CallbackRuntime(record, decoded.lastActivity);
    rt.committed = true;
    rt.meta = row.meta;
    // What its row holds: a later write that changes none of it moves only the head.
    rt.rowStatus = row.status;
    rt.rowDueAt = row.dueAt;
    rt.rowOwed = record.owed !== undefined;
    rt.snapshotBytes = decoded.snapshotBytes;
    rt.tailBytes = decoded.tailBytes;
    rt.tailEntries = decoded.tailEntries;
    record.children = this.#durable!.childrenOf(record.id);
    if (record.children.length === 0) record.children = undefined;
    this.#index.put(rt);
    this.#liveSet.set(rt);
    if (record.owed !== undefined) this.#d.onOwed?.(rt);
    return rt;
  }

  /** Lets a resident runtime leave the heap if nothing pins it (durable mode). */
  release(rt: CallbackRuntime): void {
    if (this.#index.live.get(rt.record.id) !== rt) return;
    if (rt.invalid && !rt.busy) return this.invalidate(rt);
    if (rt.busy || rt.pending > 0 || rt.waiters?.length || rt.batch !== undefined || rt.pins > 0)
      return;
    if (rt.finalized || this.#liveSet.evicting === rt || !this.#liveSet.has(rt.record.id))
      this.#drop(rt);
  }

  /** Drops a runtime whose state is not the store's; its next use reads the row back. */
  invalidate(rt: CallbackRuntime): void {
    const err = rt.invalid!;
    const record = rt.record;
    const stats = this.#d.stats;
    // wait() has no cap: waiters move to the callback as stored, not to the failed write.
    const waiters = rt.waiters;
    rt.waiters = undefined;
    this.#d.onInvalidated(rt, err);
    let row: StoredCallback | undefined;
    try {
      // An asynchronous store cannot be read here: the callback is read back on its next use.
      row = this.prefetching ? undefined : this.#durable!.load(record.id);
    } catch {
      row = undefined;
    }
    const decoded = row && decodeRecord(row);
    const stored = decoded?.record;
    if (stored) stats.move(record.anchor, record.status, stored.status);
    else if (!rt.committed) {
      stats.remove(record.anchor, record.status);
      if (record.parentId !== undefined) {
        const parent = this.#index.live.get(record.parentId);
        if (parent?.record.children)
          parent.record.children = parent.record.children.filter((c) => c !== record.id);
      }
    }
    this.#drop(rt);
    if (!waiters?.length) return;
    // The callback as stored, made resident again from the row just read, keeps the waiters.
    if (row && decoded && !isTerminal(decoded.record.status)) {
      const fresh = this.#resident(decoded, row);
      (fresh.waiters ??= []).push(...waiters);
    } else for (const w of waiters) w.reject(err);
  }

  #drop(rt: CallbackRuntime): void {
    const record = rt.record;
    this.#liveSet.stopActor(rt);
    this.#index.remove(rt);
    if (this.#liveSet.evicting !== rt) this.#liveSet.delete(record.id);
    this.#index.dropKeys(record);
  }

  /**
   * This replica no longer owns these callbacks (a lease was lost or handed over): their
   * resident runtimes leave at once (a busy one once its mailbox drains); nothing more of
   * theirs is committed here.
   */
  disown(owned: (id: string) => boolean, err: StoreUnavailableError): void {
    for (const rt of [...this.#index.live.values()]) {
      if (owned(rt.record.id)) continue;
      rt.invalid ??= err;
      if (!rt.busy) this.invalidate(rt);
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
    this.#index.rekey();
  }
}
