/**
 * Early events: CloudEvents that arrive before the callback they correlate
 * with exists. An anchor that opts in (`early`) has them held here, under the
 * correlation key they carry, bounded per anchor by count, bytes and a
 * retention time; the callback created with that key claims them and applies
 * them in arrival order. Unclaimed ones expire (one timer for the earliest,
 * on the engine clock) and are counted.
 *
 * Memory is the index; with a durable store every held event is also a row,
 * written in the group commit before its `202` is answered and read back at
 * open, so a restart keeps them. The row of a claimed event is removed in the
 * same transaction as the effect of the report it became (see
 * `CallbackRegistry.dedupThenRelease`).
 *
 * @module
 */

import type { Clock } from '../clock.js';
import type { CallbackData } from '../data.js';
import { EarlyEventsFullError, PayloadTooLargeError } from '../errors.js';
import type { DispatchStatus } from '../lifecycle/statuses.js';
import type { ResolvedAnchor, ResolvedEarly } from '../options/anchor.js';
import type { EarlyEventRow } from '../store/store.js';
import type { EarlyEventStats } from '../types.js';
import { DeadlineQueue, type Deadline } from '../timers/deadline-queue.js';
import type { EventHub } from './event-hub.js';

/** One held event. */
export interface HeldEvent {
  readonly seq: number;
  readonly dedupKey: string;
  readonly anchor: string;
  /** The correlation key it waits for. */
  readonly key: string;
  readonly status: DispatchStatus;
  readonly data: CallbackData;
  /** Its data as JSON (what is stored and what `maxBytes` counts). */
  readonly json: string;
  readonly bytes: number;
  readonly heldAt: number;
  readonly expiresAt: number;
  /** Settles once it is stored (at once without a durable store). */
  committed: Promise<void>;
  deadline: Deadline<HeldEvent> | undefined;
}

/** Where held events are stored (a durable store); absent with the memory store. */
export interface EarlyPersistence {
  /** Stores a held event in the next group commit; `ok` once committed, `fail` if not. */
  add(row: EarlyEventRow, ok: () => void, fail: (err: Error) => void): void;
  /** Removes a held event (expired) in the next group commit. */
  remove(dedupKey: string): void;
}

interface AnchorHold {
  count: number;
  bytes: number;
}

/**
 * An early event's data as JSON and its size, the one size every hold counts.
 * @throws {@link PayloadTooLargeError} when the event alone is over the anchor's `early.maxBytes`
 *   (it could never be held).
 */
export function earlyEventJson(
  anchor: ResolvedAnchor & { readonly early: ResolvedEarly },
  data: CallbackData,
): { json: string; bytes: number } {
  const json = JSON.stringify(data);
  const bytes = Buffer.byteLength(json, 'utf8');
  const { maxBytes } = anchor.early;
  if (bytes > maxBytes)
    throw new PayloadTooLargeError(
      `early event data is ${bytes} bytes of JSON, over anchor "${anchor.name}" early.maxBytes of ${maxBytes}`,
      maxBytes,
    );
  return { json, bytes };
}

/** The early events of every anchor that opted in. */
export class EarlyEvents {
  readonly #clock: Clock;
  readonly #events: EventHub;
  readonly #persistence: EarlyPersistence | undefined;
  /** Correlation key → its held events, in arrival order. */
  readonly #byKey = new Map<string, HeldEvent[]>();
  readonly #byDedup = new Map<string, HeldEvent>();
  readonly #anchors = new Map<string, AnchorHold>();
  readonly #expiry: DeadlineQueue<HeldEvent>;
  #seq = 0;
  #bytes = 0;
  #claimed = 0;
  #expired = 0;
  #refused = 0;

  constructor(clock: Clock, events: EventHub, persistence: EarlyPersistence | undefined) {
    this.#clock = clock;
    this.#events = events;
    this.#persistence = persistence;
    this.#expiry = new DeadlineQueue<HeldEvent>(clock, (ev) => this.#expire(ev), events.warn);
  }

  #hold(anchor: string): AnchorHold {
    let h = this.#anchors.get(anchor);
    if (!h) this.#anchors.set(anchor, (h = { count: 0, bytes: 0 }));
    return h;
  }

  /** The held event with this identity, if any (a redelivery is held once). */
  held(dedupKey: string): HeldEvent | undefined {
    return this.#byDedup.get(dedupKey);
  }

  /**
   * Holds an event for `anchor` under correlation key `key`.
   * @returns the held event; its `committed` settles once it is stored.
   * @throws {@link EarlyEventsFullError} when the anchor's count or byte bound would be passed
   *   (nothing is held); {@link PayloadTooLargeError} when the event alone is over `maxBytes`.
   */
  hold(
    anchor: ResolvedAnchor & { readonly early: ResolvedEarly },
    key: string,
    status: DispatchStatus,
    data: CallbackData,
    dedupKey: string,
  ): HeldEvent {
    const { maxEvents, maxBytes, retentionMs } = anchor.early;
    const { json, bytes } = earlyEventJson(anchor, data);
    const h = this.#hold(anchor.name);
    if (h.count + 1 > maxEvents || h.bytes + bytes > maxBytes) {
      this.#refused++;
      const bound = h.count + 1 > maxEvents ? 'maxEvents' : 'maxBytes';
      this.#events.early(anchor.name, 'refused', status);
      throw new EarlyEventsFullError(
        anchor.name,
        bound,
        bound === 'maxEvents'
          ? `anchor "${anchor.name}" holds ${h.count} early events already (early.maxEvents ${maxEvents}); retry later`
          : `anchor "${anchor.name}" holds ${h.bytes} bytes of early events already; ${bytes} more would pass early.maxBytes ${maxBytes}; retry later`,
      );
    }
    const now = this.#clock.now();
    const ev: HeldEvent = {
      seq: this.#seq++,
      dedupKey,
      anchor: anchor.name,
      key,
      status,
      data,
      json,
      bytes,
      heldAt: now,
      expiresAt: now + retentionMs,
      committed: Promise.resolve(),
      deadline: undefined,
    };
    this.#insert(ev);
    const store = this.#persistence;
    if (store) {
      ev.committed = new Promise<void>((resolve, reject) =>
        store.add(
          {
            seq: ev.seq,
            dedupKey,
            anchor: ev.anchor,
            correlationKey: key,
            status,
            data: json,
            heldAt: ev.heldAt,
            expiresAt: ev.expiresAt,
          },
          resolve,
          (err) => {
            // Not stored, so not held: memory stays equal to the store.
            if (this.#byDedup.get(dedupKey) === ev) this.#take(ev);
            reject(err);
          },
        ),
      );
    }
    this.#events.early(anchor.name, 'held', status);
    return ev;
  }

  #insert(ev: HeldEvent): void {
    let list = this.#byKey.get(ev.key);
    if (!list) this.#byKey.set(ev.key, (list = []));
    list.push(ev);
    this.#byDedup.set(ev.dedupKey, ev);
    const h = this.#hold(ev.anchor);
    h.count++;
    h.bytes += ev.bytes;
    this.#bytes += ev.bytes;
    ev.deadline = this.#expiry.schedule(ev.expiresAt, ev);
  }

  /** Takes an event out of memory (claimed, expired, or never stored). */
  #take(ev: HeldEvent): void {
    this.#byDedup.delete(ev.dedupKey);
    const list = this.#byKey.get(ev.key);
    if (list) {
      const i = list.indexOf(ev);
      if (i >= 0) list.splice(i, 1);
      if (list.length === 0) this.#byKey.delete(ev.key);
    }
    const h = this.#hold(ev.anchor);
    h.count--;
    h.bytes -= ev.bytes;
    this.#bytes -= ev.bytes;
    this.#expiry.cancel(ev.deadline);
    ev.deadline = undefined;
  }

  /**
   * Claims every event held under `key` for the callback just created with it.
   * @returns them in arrival order (empty when none is held).
   */
  claim(key: string): HeldEvent[] {
    const list = this.#byKey.get(key);
    if (!list) return [];
    const out = [...list];
    for (const ev of out) {
      this.#take(ev);
      this.#claimed++;
      this.#events.early(ev.anchor, 'claimed', ev.status);
    }
    return out;
  }

  /** Whether any event is held under `key`. */
  has(key: string): boolean {
    return this.#byKey.has(key);
  }

  #expire(ev: HeldEvent): void {
    ev.deadline = undefined;
    if (this.#byDedup.get(ev.dedupKey) !== ev) return;
    this.#take(ev);
    this.#expired++;
    this.#persistence?.remove(ev.dedupKey);
    this.#events.early(ev.anchor, 'expired', ev.status);
  }

  /**
   * Restores the events a durable store holds (at open), in arrival order; those whose
   * retention passed while the engine was down expire at once.
   */
  load(rows: readonly EarlyEventRow[], parse: (row: EarlyEventRow) => CallbackData): void {
    for (const row of rows) {
      if (this.#byDedup.has(row.dedupKey)) continue;
      const data = parse(row);
      this.#insert({
        seq: row.seq,
        dedupKey: row.dedupKey,
        anchor: row.anchor,
        key: row.correlationKey,
        status: row.status as DispatchStatus,
        data,
        json: row.data,
        bytes: Buffer.byteLength(row.data, 'utf8'),
        heldAt: row.heldAt,
        expiresAt: row.expiresAt,
        committed: Promise.resolve(),
        deadline: undefined,
      });
      this.#seq = Math.max(this.#seq, row.seq + 1);
    }
  }

  /** Correlation keys with held events (for recovery: which callbacks exist already). */
  keys(): IterableIterator<string> {
    return this.#byKey.keys();
  }

  /** Counters for `stats().early`. */
  stats(): EarlyEventStats {
    return {
      held: this.#byDedup.size,
      heldBytes: this.#bytes,
      claimed: this.#claimed,
      expired: this.#expired,
      refused: this.#refused,
    };
  }

  /** Stops the expiry timer (the engine closed). */
  close(): void {
    this.#expiry.close();
  }
}
