/**
 * The bounded live set: virtual actors. A callback's XState actor exists only while it is in
 * the set; the least recently used one beyond `maxLiveActors` is passivated (its record keeps
 * status and data, so nothing is lost) and restored from its persisted snapshot when next used.
 * Memory mode: the set holds callbacks with a live actor. Durable mode: every resident callback;
 * an evicted one also leaves the heap once nothing pins it (its row is in the store).
 *
 * @module
 */

import { LRUCache } from 'lru-cache';
import { createActor } from 'xstate';
import { lifecycleMachine } from '../lifecycle/machine.js';
import { actorSnapshot } from '../lifecycle/persist.js';
import { SnapshotRunner, type LifecycleRunner } from '../lifecycle/runner.js';
import { isTerminal } from '../lifecycle/statuses.js';
import type { CallbackRuntime } from './callback-runtime.js';
import type { EventHub } from './event-hub.js';
import type { Stats } from './stats.js';

/** What the live set needs. */
export interface LiveSetDeps {
  /** How many callbacks the set holds at most (`maxLiveActors`). */
  readonly max: number;
  /** Durable mode: the set holds every resident callback. */
  readonly durable: boolean;
  readonly stats: Stats;
  readonly events: EventHub;
  /** Durable mode: an evicted (and passivated) runtime may leave the heap. */
  readonly evicted: (rt: CallbackRuntime) => void;
}

/** Live actors, bounded, least recently used first out. */
export class LiveSet {
  readonly #durable: boolean;
  readonly #stats: Stats;
  readonly #events: EventHub;
  readonly #lru: LRUCache<string, CallbackRuntime>;
  /** Live XState actors. */
  #actors = 0;
  #recencyTick = 0;
  /** The runtime the set is evicting right now (its entry is already gone). */
  #evicting: CallbackRuntime | undefined;

  constructor(deps: LiveSetDeps) {
    this.#durable = deps.durable;
    this.#stats = deps.stats;
    this.#events = deps.events;
    this.#lru = new LRUCache<string, CallbackRuntime>({
      // maxSize (not max): with max, lru-cache preallocates arrays of that length and deleting
      // its last entry clears them all, O(maxLiveActors) each time a lone callback finishes.
      maxSize: deps.max,
      sizeCalculation: () => 1,
      dispose: (rt, _id, reason) => {
        if (reason !== 'evict') return;
        this.passivate(rt, true);
        if (this.#durable) {
          this.#evicting = rt;
          deps.evicted(rt);
          this.#evicting = undefined;
        }
      },
    });
  }

  /** Live XState actors. */
  get actors(): number {
    return this.#actors;
  }

  /** The runtime the set is evicting right now (its entry is already gone). */
  get evicting(): CallbackRuntime | undefined {
    return this.#evicting;
  }

  has(id: string): boolean {
    return this.#lru.has(id);
  }

  /** Adds (or bumps) a runtime; the least recently used one beyond the bound is evicted. */
  set(rt: CallbackRuntime): void {
    this.#lru.set(rt.record.id, rt);
  }

  delete(id: string): void {
    this.#lru.delete(id);
  }

  clear(): void {
    this.#lru.clear();
  }

  /** The callback's live actor, restored from its persisted snapshot if it was passivated (or never started). */
  activate(rt: CallbackRuntime): LifecycleRunner {
    const live = rt.actor;
    if (live) {
      // Sampled recency (approximate LRU, as Redis does): a busy callback is still bumped often,
      // and most reports skip the cache's bookkeeping.
      if ((++this.#recencyTick & 7) === 0) this.#lru.get(rt.record.id);
      return live;
    }
    const { status, data } = rt.record;
    // An XState actor only where its inspection events have a listener (the live diagrams);
    // otherwise the machine's transition function over the snapshot does the same for less.
    let actor: LifecycleRunner;
    if (this.#events.inspected) {
      const a = createActor(lifecycleMachine, {
        snapshot: actorSnapshot(status, data),
        input: { data },
        ...this.#events.actorOptions(rt.record.id),
      });
      a.start();
      actor = a;
    } else actor = new SnapshotRunner(status, data);
    rt.actor = actor;
    this.#actors++;
    this.#stats.activations++;
    this.#lru.set(rt.record.id, rt);
    return actor;
  }

  /** Stops a runtime's actor, if it has one (its record keeps status and data). */
  stopActor(rt: CallbackRuntime): void {
    const actor = rt.actor;
    if (!actor) return;
    rt.actor = undefined;
    this.#actors--;
    actor.stop();
  }

  /**
   * Stops a live actor; its record keeps status and data, so nothing is lost. A busy one is
   * passivated once its mailbox drains. `evicted`: called from the set's own eviction, which
   * must not be re-entered.
   */
  passivate(rt: CallbackRuntime, evicted = false): void {
    if (!rt.actor) return;
    if (rt.busy || rt.pending > 0) {
      rt.evictPending = true;
      return;
    }
    rt.evictPending = false;
    this.stopActor(rt);
    if (!evicted && !this.#durable) this.#lru.delete(rt.record.id);
    if (!isTerminal(rt.record.status)) this.#stats.passivations++;
  }
}
