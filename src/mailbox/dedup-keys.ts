/**
 * Deduplication keys: a report's key is applied once per callback within the window, and is
 * written only with the effect it deduplicates (the journal entry that carries it). The memory
 * store keeps keys with the record; a durable store keeps a unique `(callback, key)` and is
 * pruned in bounded batches.
 *
 * @module
 */

import type { ResolvedEngineOptions } from '../options/engine.js';
import type { CallbackRuntime } from '../registry/callback-runtime.js';
import type { CallbackRecord } from '../registry/record.js';
import type { DurableStore } from '../store/store.js';

/** Deduplication keys pruned per round, and how often a round runs (engine clock). */
const PRUNE_BATCH = 1000;
const PRUNE_EVERY_MS = 60_000;

/** Which deduplication keys were applied, and their pruning. */
export class DedupKeys {
  readonly #o: ResolvedEngineOptions;
  readonly #durable: DurableStore | undefined;
  readonly #warn: (err: unknown) => void;
  /** When deduplication keys were last pruned (engine clock). */
  #prunedAt = 0;
  #pruning = false;

  constructor(
    options: ResolvedEngineOptions,
    durable: DurableStore | undefined,
    warn: (err: unknown) => void,
  ) {
    this.#o = options;
    this.#durable = durable;
    this.#warn = warn;
  }

  /** Memory store: remembers a key with its callback, dropping keys past the window now and then. */
  remember(record: CallbackRecord, key: string, at: number): void {
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
  has(rt: CallbackRuntime | undefined, record: CallbackRecord, key: string): boolean {
    if (!this.#durable) {
      const at = record.keys?.get(key);
      return at !== undefined && at >= this.#o.clock.now() - this.#o.dedupWindowMs;
    }
    if (rt?.recentKeys?.has(key)) return true;
    return this.#durable.hasKey(record.id, key);
  }

  /**
   * Whether a key was applied to a resident callback since it became resident (no store read):
   * with {@link has} at admission, what a queued report needs when its turn comes.
   */
  hasRecent(rt: CallbackRuntime, key: string): boolean {
    if (!this.#durable) return this.has(rt, rt.record, key);
    return rt.recentKeys?.has(key) ?? false;
  }

  /**
   * Prunes deduplication keys older than the window in bounded batches, at most once a minute,
   * outside any callback's commit (durable stores; the memory store prunes per callback).
   */
  prune(): void {
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
        return this.#warn(err);
      }
      void Promise.resolve(removed).then(
        (n) => {
          // A full batch: more are due; the next round after the engine's next turn.
          if (n >= PRUNE_BATCH) setImmediate(round);
          else this.#pruning = false;
        },
        (err: unknown) => {
          this.#pruning = false;
          this.#warn(err);
        },
      );
    };
    setImmediate(round);
  }
}
