/**
 * Retention (spec 12): how long an inactive callback is kept, and its leaving for good. With
 * the memory store, a retired record is folded small and kept in the retained records until its
 * retention ends; a durable store keeps it as a row whose due time is its removal.
 *
 * @module
 */

import type { Clock } from '../clock.js';
import { DataVersion } from '../data.js';
import { toHistory } from '../journal/journal.js';
import type { CallbackTimers } from '../timers/callback-timers.js';
import type { CallbackIndex } from './callback-index.js';
import type { CallbackRuntime } from './callback-runtime.js';
import type { EventHub } from './event-hub.js';
import type { CallbackRecord } from './record.js';
import { createMemoryStore, type CallbackStore } from './retained-records.js';
import type { Stats } from './stats.js';

/** What retention needs. */
export interface RetentionDeps {
  readonly clock: Clock;
  /** Memory bound of the retained records (`maxRetained`). */
  readonly maxRetained: number | undefined;
  readonly index: CallbackIndex;
  readonly stats: Stats;
  readonly events: EventHub;
  readonly timers: CallbackTimers<CallbackRuntime, CallbackRecord>;
}

/** Inactive callbacks, each kept for its retention. */
export class Retention {
  readonly #clock: Clock;
  readonly #index: CallbackIndex;
  readonly #stats: Stats;
  readonly #events: EventHub;
  readonly #timers: CallbackTimers<CallbackRuntime, CallbackRecord>;
  /** Inactive records, each removed after its retention (memory mode). */
  readonly records: CallbackStore;

  constructor(deps: RetentionDeps) {
    this.#clock = deps.clock;
    this.#index = deps.index;
    this.#stats = deps.stats;
    this.#events = deps.events;
    this.#timers = deps.timers;
    this.records = createMemoryStore({
      clock: deps.clock,
      maxRecords: deps.maxRetained,
      onRemove: (record, reason) => this.forget(record, reason),
    });
  }

  /** When a callback that just became inactive is removed (`undefined`: kept forever). */
  removeAt(record: CallbackRecord): number | undefined {
    return record.retention === true ? undefined : this.#clock.now() + record.retention;
  }

  /** Memory mode: keeps a retired callback's record for its retention. */
  keep(record: CallbackRecord): void {
    // Fold the patch log into one frozen object, and pack the journal into one text.
    record.data = DataVersion.of(record.data.value);
    if (Array.isArray(record.journal))
      record.journal = JSON.stringify(record.journal.map(toHistory));
    if (record.retention === true) return void this.records.set(record, undefined);
    if (record.retention <= 0) return this.forget(record, 'retention');
    this.records.set(record, record.retention);
    this.#timers.retain(record, record.removeAt ?? this.#clock.now() + record.retention);
  }

  /** A retained record's retention timer fired (memory mode). */
  ended(record: CallbackRecord): void {
    // A late timer may find lru-cache already expired it (and told forget); else remove it now.
    if (this.records.get(record.id) === record && this.records.delete(record.id)) {
      this.forget(record, 'retention');
    }
  }

  /** A record leaves the engine for good. */
  forget(record: CallbackRecord, reason: string): void {
    // Without its timer, an evicted record is garbage at once (maxRetained bounds memory).
    this.#timers.release(record);
    this.#index.dropKeys(record);
    this.#stats.remove(record.anchor, record.status);
    this.#stats.evicted++;
    this.#events.emit('evicted', record, { reason });
  }
}
