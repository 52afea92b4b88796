/**
 * One timer structure for every deadline of the engine (timeouts, heartbeats,
 * retention): an indexed binary min-heap with a single armed clock timer for
 * its earliest entry. A million pending callbacks cost a million small heap
 * entries, not a million `setTimeout`s, and each fires precisely at its instant.
 *
 * @module
 */

import type { Clock, TimerHandle } from '../clock.js';

/** A scheduled deadline; keep it to {@link DeadlineQueue.cancel} it. */
export interface Deadline {
  /** Absolute instant, ms since epoch. */
  readonly at: number;
  /** @internal insertion order, breaks ties between equal instants. */
  readonly seq: number;
  /** @internal the callback to run. */
  readonly fire: () => void;
  /** @internal position in the heap, -1 once fired or cancelled. */
  index: number;
}

/** Longest delay `setTimeout` accepts; longer waits re-arm on wake-up. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Min-heap of deadlines driven by one clock timer. */
export class DeadlineQueue {
  readonly #clock: Clock;
  readonly #onError: (err: unknown) => void;
  readonly #heap: Deadline[] = [];
  #seq = 0;
  #timer: TimerHandle = undefined;
  #armedAt = Infinity;
  #closed = false;
  #firing = false;

  /**
   * @param clock - the time source; its `setTimeout` is called for one timer at a time.
   * @param onError - receives anything a deadline's callback throws.
   */
  constructor(clock: Clock, onError: (err: unknown) => void) {
    this.#clock = clock;
    this.#onError = onError;
  }

  /** Number of scheduled deadlines. */
  get size(): number {
    return this.#heap.length;
  }

  /**
   * Schedules `fire` to run at the absolute instant `at`.
   *
   * @returns a handle for {@link DeadlineQueue.cancel}.
   */
  schedule(at: number, fire: () => void): Deadline {
    const entry: Deadline = { at, seq: this.#seq++, fire, index: this.#heap.length };
    this.#heap.push(entry);
    this.#siftUp(entry.index);
    if (entry.index === 0 && !this.#firing) this.#arm();
    return entry;
  }

  /** Cancels a deadline; a no-op if it already fired or was cancelled. */
  cancel(entry: Deadline | undefined): void {
    if (!entry || entry.index < 0) return;
    const wasHead = entry.index === 0;
    this.#remove(entry);
    if (wasHead && !this.#firing) this.#arm();
  }

  #remove(entry: Deadline): void {
    const i = entry.index;
    const last = this.#heap.pop()!;
    entry.index = -1;
    if (last !== entry) {
      this.#heap[i] = last;
      last.index = i;
      this.#siftDown(i);
      this.#siftUp(last.index);
    }
  }

  /** Cancels everything and stops the timer; later `schedule` calls are ignored. */
  close(): void {
    this.#closed = true;
    for (const e of this.#heap) e.index = -1;
    this.#heap.length = 0;
    this.#disarm();
  }

  #arm(): void {
    const head = this.#heap[0];
    if (this.#closed || !head) {
      this.#disarm();
      return;
    }
    if (head.at === this.#armedAt && this.#timer !== undefined) return;
    this.#disarm();
    const delay = Math.min(Math.max(0, head.at - this.#clock.now()), MAX_TIMER_MS);
    this.#armedAt = head.at;
    this.#timer = this.#clock.setTimeout(() => this.#wake(), delay);
  }

  #disarm(): void {
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#armedAt = Infinity;
  }

  #wake(): void {
    this.#timer = undefined;
    this.#armedAt = Infinity;
    const now = this.#clock.now();
    this.#firing = true;
    // Fire in (at, seq) order; entries scheduled by a callback for `now` run in this pass too.
    for (let head = this.#heap[0]; head && head.at <= now; head = this.#heap[0]) {
      this.#remove(head);
      try {
        head.fire();
      } catch (err) {
        this.#onError(err);
      }
    }
    this.#firing = false;
    this.#arm();
  }

  #less(a: Deadline, b: Deadline): boolean {
    return a.at < b.at || (a.at === b.at && a.seq < b.seq);
  }

  #siftUp(i: number): void {
    const heap = this.#heap;
    const item = heap[i]!;
    while (i > 0) {
      const p = (i - 1) >> 1;
      const parent = heap[p]!;
      if (!this.#less(item, parent)) break;
      heap[i] = parent;
      parent.index = i;
      i = p;
    }
    heap[i] = item;
    item.index = i;
  }

  #siftDown(i: number): void {
    const heap = this.#heap;
    const n = heap.length;
    const item = heap[i]!;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const c = r < n && this.#less(heap[r]!, heap[l]!) ? r : l;
      const child = heap[c]!;
      if (!this.#less(child, item)) break;
      heap[i] = child;
      child.index = i;
      i = c;
    }
    heap[i] = item;
    item.index = i;
  }
}
