/**
 * Engine counters (spec 13): plain integers updated on the hot path, copied
 * out on demand.
 *
 * @module
 */

import { ACTIVE_STATUSES, TERMINAL_STATUSES, type CallbackStatus } from '../lifecycle/statuses.js';
import type { EngineStats } from '../types.js';

type Counts = Record<CallbackStatus, number>;

const zero = (): Counts =>
  Object.fromEntries([...ACTIVE_STATUSES, ...TERMINAL_STATUSES].map((s) => [s, 0])) as Counts;

/** Mutable counters behind {@link EngineStats}. */
export class Stats {
  readonly #byStatus = zero();
  readonly #byAnchor = new Map<string, Counts>();
  created = 0;
  dispatched = 0;
  notFound = 0;
  forgedTokens = 0;
  stepFailures = 0;
  stepRetries = 0;
  timedOut = 0;
  orphaned = 0;
  evicted = 0;
  activations = 0;
  passivations = 0;

  #anchor(anchor: string): Counts {
    let counts = this.#byAnchor.get(anchor);
    if (!counts) this.#byAnchor.set(anchor, (counts = zero()));
    return counts;
  }

  /** A callback appeared with `status`. */
  add(anchor: string, status: CallbackStatus): void {
    this.#byStatus[status]++;
    this.#anchor(anchor)[status]++;
  }

  /** `count` callbacks of an anchor are in `status` (recovery from a store). */
  addMany(anchor: string, status: CallbackStatus, count: number): void {
    if (!(status in this.#byStatus)) return;
    this.#byStatus[status] += count;
    this.#anchor(anchor)[status] += count;
  }

  /** Replaces every count by status (a replica's shards changed). */
  resetCounts(counts: readonly { anchor: string; status: CallbackStatus; count: number }[]): void {
    for (const k of Object.keys(this.#byStatus) as CallbackStatus[]) this.#byStatus[k] = 0;
    this.#byAnchor.clear();
    for (const c of counts) this.addMany(c.anchor, c.status, c.count);
  }

  /** Numbers of active and of inactive callbacks, from the counts by status. */
  activeInactive(): [active: number, inactive: number] {
    let active = 0;
    for (const s of ACTIVE_STATUSES) active += this.#byStatus[s];
    let inactive = 0;
    for (const s of TERMINAL_STATUSES) inactive += this.#byStatus[s];
    return [active, inactive];
  }

  /** A callback moved from `from` to `to`. */
  move(anchor: string, from: CallbackStatus, to: CallbackStatus): void {
    const a = this.#anchor(anchor);
    this.#byStatus[from]--;
    this.#byStatus[to]++;
    a[from]--;
    a[to]++;
  }

  /** A callback left the engine. */
  remove(anchor: string, status: CallbackStatus): void {
    this.#byStatus[status]--;
    this.#anchor(anchor)[status]--;
  }

  /** A frozen copy. */
  snapshot(
    active: number,
    retained: number,
    liveActors: number,
    store: { commits: number; rows: number; bytes: number } = { commits: 0, rows: 0, bytes: 0 },
  ): EngineStats {
    const byAnchor: Record<string, Partial<Counts>> = {};
    for (const [name, counts] of this.#byAnchor) byAnchor[name] = { ...counts };
    return Object.freeze({
      byStatus: { ...this.#byStatus },
      byAnchor,
      active,
      retained,
      liveActors,
      activations: this.activations,
      passivations: this.passivations,
      created: this.created,
      dispatched: this.dispatched,
      notFound: this.notFound,
      forgedTokens: this.forgedTokens,
      stepFailures: this.stepFailures,
      stepRetries: this.stepRetries,
      timedOut: this.timedOut,
      orphaned: this.orphaned,
      evicted: this.evicted,
      commits: store.commits,
      rowsWritten: store.rows,
      bytesWritten: store.bytes,
    });
  }
}
