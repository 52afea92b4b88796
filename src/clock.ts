/**
 * Time source for the engine. Every timer and every timestamp goes through a
 * {@link Clock}, so tests drive a {@link SimulatedClock} instead of sleeping.
 *
 * @module
 */

/** Opaque handle returned by {@link Clock.setTimeout}. */
export type TimerHandle = unknown;

/** The time source the engine uses for `now()` and for its one deadline timer. */
export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number;
  /** Calls `fn` once after `ms` milliseconds. Must not keep the process alive. */
  setTimeout(fn: () => void, ms: number): TimerHandle;
  /** Cancels a timer made by {@link Clock.setTimeout}. */
  clearTimeout(handle: TimerHandle): void;
}

/** The real clock: `Date.now()` and `unref()`ed `setTimeout`s. */
export const systemClock: Clock = Object.freeze({
  now: () => Date.now(),
  setTimeout(fn: () => void, ms: number): TimerHandle {
    const t = setTimeout(fn, ms);
    t.unref();
    return t;
  },
  clearTimeout(handle: TimerHandle): void {
    clearTimeout(handle as NodeJS.Timeout);
  },
});

/** Longest delay `setTimeout` accepts; a longer wait fires early and is armed again by its owner. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * One clock timer armed for an absolute instant: arming it again replaces the
 * previous one. The engine's deadline structures each keep one, for their
 * earliest entry, instead of a timer per callback.
 */
export class Alarm {
  readonly #clock: Clock;
  readonly #fn: () => void;
  #timer: TimerHandle = undefined;
  /** The instant it is armed for, or `Infinity`. */
  at = Infinity;

  /**
   * @param clock - the time source.
   * @param fn - called when the alarm goes off (it is disarmed by then).
   */
  constructor(clock: Clock, fn: () => void) {
    this.#clock = clock;
    this.#fn = fn;
  }

  /** Whether a timer is pending. */
  get armed(): boolean {
    return this.#timer !== undefined;
  }

  /** Arms it for the absolute instant `at` (ms since epoch), replacing any earlier arming. */
  set(at: number): void {
    this.clear();
    this.at = at;
    const delay = Math.min(Math.max(0, at - this.#clock.now()), MAX_TIMER_MS);
    this.#timer = this.#clock.setTimeout(() => {
      this.#timer = undefined;
      this.at = Infinity;
      this.#fn();
    }, delay);
  }

  /** Disarms it. */
  clear(): void {
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
    this.at = Infinity;
  }
}

/** A clock that only moves when told to; for deterministic tests. */
export interface SimulatedClock extends Clock {
  /**
   * Moves time forward by `ms`, running every timer that falls due on the way,
   * in due order (timers scheduled while advancing run too if they fall due).
   */
  advance(ms: number): void;
  /** Moves time to the absolute instant `at` (never backwards). */
  advanceTo(at: number): void;
  /** Number of timers still scheduled. */
  readonly pending: number;
}

interface SimTimer {
  at: number;
  seq: number;
  fn: () => void;
}

/**
 * Creates a {@link SimulatedClock} starting at `start` (ms since epoch).
 *
 * @param start - initial time; defaults to 2026-01-01T00:00:00Z.
 * @returns a clock whose time only moves through `advance` / `advanceTo`.
 * @example
 * ```ts
 * const clock = createSimulatedClock();
 * const engine = createCallbackEngine({ clock });
 * clock.advance(60_000); // fires every deadline in the next minute
 * ```
 */
export function createSimulatedClock(start = Date.UTC(2026, 0, 1)): SimulatedClock {
  let now = start;
  let seq = 0;
  const timers = new Set<SimTimer>();

  const nextDue = (limit: number): SimTimer | undefined => {
    let best: SimTimer | undefined;
    for (const t of timers) {
      if (t.at > limit) continue;
      if (!best || t.at < best.at || (t.at === best.at && t.seq < best.seq)) best = t;
    }
    return best;
  };

  const advanceTo = (at: number): void => {
    if (at < now) return;
    for (let t = nextDue(at); t; t = nextDue(at)) {
      timers.delete(t);
      now = Math.max(now, t.at);
      t.fn();
    }
    now = at;
  };

  return {
    now: () => now,
    setTimeout(fn, ms) {
      const t: SimTimer = { at: now + Math.max(0, ms), seq: seq++, fn };
      timers.add(t);
      return t;
    },
    clearTimeout(handle) {
      timers.delete(handle as SimTimer);
    },
    advance: (ms) => advanceTo(now + ms),
    advanceTo,
    get pending() {
      return timers.size;
    },
  };
}
