/**
 * One scheduler for every deadline of a durable store: it asks the store what
 * is due next (an index on due time) and arms one clock timer for it. No
 * heap entry and no timer per callback, so a million pending callbacks cost
 * nothing here; each still fires at its instant.
 *
 * @module
 */

import { Alarm, type Clock } from '../clock.js';
import type { DurableStore } from '../store/store.js';

/** Due rows handled per wake-up; the rest in the next turn. */
const DUE_PER_WAKE = 512;

/** Arms one timer at the store's earliest due time and hands due ids to `fire`. */
export class StoreScheduler {
  readonly #clock: Clock;
  readonly #store: DurableStore;
  /** Handles a due id; returns whether it did anything (else it waits for a commit to re-arm). */
  readonly #fire: (id: string) => boolean;
  /** Receives what the store or `fire` throws: never thrown into the engine. */
  readonly #warn: (err: unknown) => void;
  readonly #alarm: Alarm;
  #running = false;

  constructor(
    clock: Clock,
    store: DurableStore,
    fire: (id: string) => boolean,
    warn: (err: unknown) => void,
  ) {
    this.#clock = clock;
    this.#store = store;
    this.#fire = fire;
    this.#warn = warn;
    this.#alarm = new Alarm(clock, () => this.#wake());
  }

  /** Starts: arms for the earliest due row (rows that fell due while down fire at once). */
  start(): void {
    this.#running = true;
    this.poke();
  }

  /** Re-reads the earliest due time from the store and arms for it. */
  poke(): void {
    if (!this.#running) return;
    if (this.#store.nextDueAsync) {
      void this.#store.nextDueAsync().then(
        (next) => {
          if (next !== undefined) this.armAt(next);
        },
        (err: unknown) => {
          this.#warn(err);
          this.armAt(this.#clock.now() + 1000);
        },
      );
      return;
    }
    let next: number | undefined;
    try {
      next = this.#store.nextDueAt();
    } catch (err) {
      this.#warn(err);
      return;
    }
    if (next !== undefined) this.armAt(next);
  }

  /** Makes sure the timer fires no later than `at`. */
  armAt(at: number): void {
    if (!this.#running || at >= this.#alarm.at) return;
    this.#alarm.set(at);
  }

  #wake(): void {
    if (!this.#running) return;
    if (this.#store.dueAsync) {
      void this.#wakeAsync();
      return;
    }
    const now = this.#clock.now();
    let ids: string[];
    try {
      ids = this.#store.dueIds(now, DUE_PER_WAKE);
    } catch (err) {
      // The store is unreadable: try again in a second rather than spin.
      this.#warn(err);
      this.armAt(now + 1000);
      return;
    }
    const progressed = this.#fireAll(ids);
    // Rows still due that nobody could act on wait for the commit that rewrites them (it re-arms).
    if (progressed || ids.length === 0) {
      const next = this.#safeNext();
      if (next !== undefined && next > now) this.armAt(next);
      else if (next !== undefined && ids.length === DUE_PER_WAKE) this.armAt(now);
    }
  }

  /** The same for a store read asynchronously: due rows are fetched, then fired in one turn. */
  async #wakeAsync(): Promise<void> {
    const now = this.#clock.now();
    let ids: string[];
    try {
      ids = await this.#store.dueAsync!(now, DUE_PER_WAKE);
    } catch (err) {
      this.#warn(err);
      this.armAt(now + 1000);
      return;
    }
    if (!this.#running) return;
    const progressed = this.#fireAll(ids);
    if (ids.length === DUE_PER_WAKE) this.armAt(now);
    else if (progressed || ids.length === 0) {
      // Rows still due that nobody could act on wait for the commit that rewrites them.
      const next = await this.#store.nextDueAsync!().catch(() => undefined);
      if (next !== undefined && next > now) this.armAt(next);
    }
  }

  /** Fires each due id. @returns whether any of them did something. */
  #fireAll(ids: readonly string[]): boolean {
    let progressed = false;
    for (const id of ids) {
      try {
        if (this.#fire(id)) progressed = true;
      } catch (err) {
        this.#warn(err);
      }
    }
    return progressed;
  }

  #safeNext(): number | undefined {
    try {
      return this.#store.nextDueAt();
    } catch {
      return undefined;
    }
  }

  /** Stops: no deadline fires afterwards. */
  stop(): void {
    this.#running = false;
    this.#alarm.clear();
  }
}
