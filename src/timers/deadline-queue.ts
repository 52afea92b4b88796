/**
 * One timer structure for every deadline of the engine (timeouts, heartbeats,
 * retention): an indexed binary min-heap with a single armed clock timer for
 * its earliest entry. A million pending callbacks cost a million small heap
 * entries, not a million `setTimeout`s, and each fires precisely at its instant.
 *
 * @module
 */

import { Alarm, type Clock } from '../clock.js';

/**
 * A scheduled deadline; keep it to {@link DeadlineQueue.cancel} it. It holds a
 * target and a kind rather than a closure: at a million pending callbacks, a
 * closure per deadline is memory that buys nothing.
 */
export interface Deadline<T = unknown> {
  /** Absolute instant, ms since epoch. */
  readonly at: number;
  /** @internal insertion order, breaks ties between equal instants. */
  readonly seq: number;
  /** What the deadline is about (handed to the queue's `fire`). */
  readonly target: T;
  /** Which deadline of the target it is (handed to the queue's `fire`). */
  readonly kind: number;
  /** @internal position in the heap, -1 once fired or cancelled. */
  index: number;
}

/** Min-heap of deadlines driven by one clock timer. */
export class DeadlineQueue<T> {
  readonly #clock: Clock;
  readonly #fire: (target: T, kind: number) => void;
  readonly #onError: (err: unknown) => void;
  readonly #heap: Deadline<T>[] = [];
  #seq = 0;
  readonly #alarm: Alarm;
  #closed = false;
  #firing = false;

  /**
   * @param clock - the time source; its `setTimeout` is called for one timer at a time.
   * @param fire - called with a due deadline's target and kind.
   * @param onError - receives anything `fire` throws.
   */
  constructor(
    clock: Clock,
    fire: (target: T, kind: number) => void,
    onError: (err: unknown) => void,
  ) {
    this.#clock = clock;
    this.#fire = fire;
    this.#onError = onError;
    this.#alarm = new Alarm(clock, () => this.#wake());
  }

  /** Number of scheduled deadlines. */
  get size(): number {
    return this.#heap.length;
  }

  /**
   * Schedules the queue's `fire(target, kind)` at the absolute instant `at`.
   *
   * @returns a handle for {@link DeadlineQueue.cancel}.
   */
  schedule(at: number, target: T, kind = 0): Deadline<T> {
    const entry: Deadline<T> = { at, seq: this.#seq++, target, kind, index: this.#heap.length };
    this.#heap.push(entry);
    this.#siftUp(entry.index);
    if (entry.index === 0 && !this.#firing) this.#arm();
    return entry;
  }

  /** Cancels a deadline; a no-op if it already fired or was cancelled. */
  cancel(entry: Deadline<unknown> | undefined): void {
    if (!entry || entry.index < 0) return;
    const wasHead = entry.index === 0;
    this.#remove(entry);
    if (wasHead && !this.#firing) this.#arm();
  }

  #remove(entry: Deadline<unknown>): void {
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
    this.#alarm.clear();
  }

  #arm(): void {
    const head = this.#heap[0];
    if (this.#closed || !head) {
      this.#alarm.clear();
      return;
    }
    if (head.at === this.#alarm.at && this.#alarm.armed) return;
    this.#alarm.set(head.at);
  }

  #wake(): void {
    const now = this.#clock.now();
    this.#firing = true;
    // Fire in (at, seq) order; entries scheduled by a callback for `now` run in this pass too.
    for (let head = this.#heap[0]; head && head.at <= now; head = this.#heap[0]) {
      this.#remove(head);
      try {
        this.#fire(head.target, head.kind);
      } catch (err) {
        this.#onError(err);
      }
    }
    this.#firing = false;
    this.#arm();
  }

  #less(a: Deadline<T>, b: Deadline<T>): boolean {
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
