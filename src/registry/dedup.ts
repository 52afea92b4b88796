/**
 * Deduplication keys of reports: a report delivered again with the same key
 * (a retry, a redelivered CloudEvent, the same report through another replica)
 * is applied once. Keys of reports being applied are held here; applied keys
 * are remembered in a bounded set and, with a store that keeps them, in the
 * store (written in the same transaction as the report's effect).
 *
 * @module
 */

import { LRUCache } from 'lru-cache';
import type { Answer } from '../answer.js';
import { toError } from '../errors.js';
import type { DispatchResult } from '../types.js';

/** A report in its callback's mailbox, with the promise of its answer. */
export interface Admitted {
  readonly result: Promise<DispatchResult>;
}

const replayed = (r: DispatchResult): DispatchResult => ({ answer: r.answer, outcome: 'replayed' });

/** Applies each deduplication key once. */
export class Deduplicator {
  readonly #inflight = new Map<string, Promise<DispatchResult>>();
  readonly #seen = new LRUCache<string, true>({ max: 100_000 });
  /** Whether the store has the key (applied before, maybe by another replica). */
  readonly #stored: ((key: string) => Promise<boolean>) | undefined;

  constructor(stored?: (key: string) => Promise<boolean>) {
    this.#stored = stored;
  }

  /**
   * Applies a report once per key: a second delivery while the first runs gets its answer;
   * one after it (or one the store knows) gets the callback's state from `replay`, as
   * `replayed`. `admit` puts the report in its callback's mailbox and hands back the promise
   * of its answer; it is called synchronously when nothing has to be read first.
   */
  async once(
    key: string,
    admit: () => Promise<Admitted>,
    replay: () => Promise<Answer>,
    /** The key was minted for this very delivery: no store can have it yet. */
    fresh = false,
  ): Promise<Admitted> {
    const prior = this.#inflight.get(key);
    if (prior) return { result: prior.then(replayed) };
    // Claimed before anything is awaited: a concurrent delivery of the key waits for this one.
    let settle!: (result: Promise<DispatchResult>) => void;
    const slot = new Promise<DispatchResult>((resolve) => (settle = resolve));
    this.#inflight.set(key, slot);
    slot.then(
      () => {
        this.#inflight.delete(key);
        this.#seen.set(key, true);
      },
      () => this.#inflight.delete(key),
    );
    try {
      if (this.#seen.has(key) || (!fresh && this.#stored && (await this.#stored(key)))) {
        const result = replay().then((answer): DispatchResult => ({ answer, outcome: 'replayed' }));
        settle(result);
        return { result };
      }
      const admitted = await admit();
      settle(admitted.result);
      return admitted;
    } catch (err) {
      settle(Promise.reject(toError(err)));
      throw err;
    }
  }
}
