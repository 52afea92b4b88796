/**
 * Keeping the process alive while work is awaited on the engine. The engine's own timers are
 * `unref()`ed (an idle engine never keeps Node running), so something else must hold the event
 * loop open while a caller awaits a deadline, a retry or a step: one counter of holds, and one
 * ref'd handle that exists only while the count is above zero.
 *
 * @module
 */

/** How long the interval that holds the process waits between (empty) ticks. */
const TICK_MS = 2 ** 30;

/** A timer handle that can be told to keep the process alive or not. */
export interface KeepAliveHandle {
  ref(): unknown;
  unref(): unknown;
}

/** What {@link KeepAlive} uses to make and clear its handle (Node's timers by default). */
export interface KeepAliveTimers {
  create(): KeepAliveHandle;
  clear(handle: KeepAliveHandle): void;
}

const nodeTimers: KeepAliveTimers = {
  create: () => setInterval(() => {}, TICK_MS),
  clear: (handle) => clearInterval(handle as NodeJS.Timeout),
};

/**
 * Counts what is awaited on the engine: while the count is above zero one ref'd interval keeps
 * Node running; at zero it is `unref()`ed (not cleared: holds come and go with every call, and
 * flipping a flag is cheaper than a timer), and {@link close} clears it for good.
 */
export class KeepAlive {
  readonly #timers: KeepAliveTimers;
  #handle: KeepAliveHandle | undefined;
  #count = 0;
  #closed = false;
  /** Release one hold and pass the outcome on: shared by every {@link track}ed promise. */
  readonly #passValue = <T>(value: T): T => {
    this.release();
    return value;
  };
  readonly #passError = (err: unknown): never => {
    this.release();
    throw err;
  };

  /** @param timers - how the handle is made; Node's `setInterval` unless a test injects one. */
  constructor(timers: KeepAliveTimers = nodeTimers) {
    this.#timers = timers;
  }

  /** How many holds are outstanding. */
  get count(): number {
    return this.#count;
  }

  /** Whether the process is being kept alive now. */
  get holding(): boolean {
    return this.#count > 0;
  }

  /** Keeps the process alive until a matching {@link release} (a no-op once closed). */
  hold(): void {
    if (this.#closed) return;
    if (this.#count++ > 0) return;
    if (this.#handle === undefined) this.#handle = this.#timers.create();
    else this.#handle.ref();
  }

  /** Ends one {@link hold}; at zero the process may exit. Extra releases are ignored. */
  release(): void {
    if (this.#count === 0) return;
    if (--this.#count === 0) this.#handle?.unref();
  }

  /**
   * Holds until `promise` settles. Returns a promise that settles the same way, once the hold is
   * released (a rejection nobody handles is still reported as unhandled).
   */
  track<T>(promise: Promise<T>): Promise<T> {
    if (this.#closed) return promise;
    this.hold();
    return promise.then(this.#passValue, this.#passError);
  }

  /**
   * {@link track}, mapping the value in the same step: one promise instead of two on a hot path.
   */
  trackMap<T, U>(promise: Promise<T>, map: (value: T) => U): Promise<U> {
    if (this.#closed) return promise.then(map);
    this.hold();
    return promise.then((value) => {
      this.release();
      return map(value);
    }, this.#passError);
  }

  /** Drops every hold and clears the handle; later holds are ignored. */
  close(): void {
    this.#closed = true;
    this.#count = 0;
    if (this.#handle !== undefined) this.#timers.clear(this.#handle);
    this.#handle = undefined;
  }
}
