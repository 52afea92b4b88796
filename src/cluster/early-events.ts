/**
 * Early events across replicas (`postgresStore()`): CloudEvents held for a
 * callback not created yet live in the shared `early_events` table, not in one
 * replica's memory, so an event held through replica A is claimed by a create
 * on replica B.
 *
 * - A hold inserts the row (bounded per anchor; committed before the `202`),
 *   then looks for the callback again: a create that committed meanwhile may
 *   have read the held rows before this one was there. If the callback exists
 *   now, the event is answered `found` and dispatched as a normal report; its
 *   deduplication key makes it applied once even if the create claimed it too.
 * - A create reads the rows of its correlation key after its record commits
 *   (the engine keeps the mailbox closed until then) and applies them first.
 * - A row leaves in the commit of the report it became (the store deletes the
 *   row of every deduplication key it commits), or when it expires: each
 *   replica sweeps expired rows on the engine clock, a row being deleted (and
 *   counted) by one of them only. A row past its retention whose callback is
 *   active (its claim never committed: the creating replica stopped) is
 *   dispatched instead of expired, as are such rows of the shards a replica
 *   takes over.
 *
 * @module
 */

import { Alarm, type Clock } from '../clock.js';
import type { CallbackData } from '../data.js';
import { EarlyEventsFullError } from '../errors.js';
import { earlyEventJson } from '../registry/early-events.js';
import { isTerminal, type DispatchStatus } from '../lifecycle/statuses.js';
import type { ResolvedAnchor, ResolvedEarly } from '../options/anchor.js';
import type { EventHub } from '../registry/event-hub.js';
import type { CallbackRecord } from '../registry/record.js';
import { decodeRecord } from '../registry/record-codec.js';
import type { PostgresStore, SharedEarlyRow } from '../store/postgres/store.js';
import type { StoredCallback } from '../store/store.js';
import type { EarlyEventStats, EarlyHoldResult } from '../types.js';

/** What the shared early events need from the engine. */
export interface SharedEarlyHost {
  /** Applies a held event to its existing callback as a report with its key (at its owner). */
  dispatch(
    token: string,
    status: DispatchStatus,
    data: CallbackData,
    dedupKey: string,
  ): Promise<{ readonly outcome: string }>;
  /** The shards this replica owns now. */
  ownedShards(): readonly number[];
  /** Parses a stored event's data. */
  parse(json: string): CallbackData;
}

/** A claimed event, ready to be applied. */
export interface ClaimedEarly {
  readonly dedupKey: string;
  readonly anchor: string;
  readonly status: DispatchStatus;
  readonly data: CallbackData;
}

/** A retry delay for a sweep that failed or left stranded rows (engine clock). */
const RETRY_MS = 1000;

/** The early events of every replica, in the shared store. */
export class SharedEarlyEvents {
  readonly #store: PostgresStore;
  readonly #clock: Clock;
  readonly #events: EventHub;
  readonly #host: SharedEarlyHost;
  readonly #alarm: Alarm;
  #sweeping: Promise<void> | undefined;
  #again = false;
  #closed = false;
  #held = 0;
  #heldBytes = 0;
  #claimed = 0;
  #expired = 0;
  #refused = 0;

  constructor(store: PostgresStore, clock: Clock, events: EventHub, host: SharedEarlyHost) {
    this.#store = store;
    this.#clock = clock;
    this.#events = events;
    this.#host = host;
    this.#alarm = new Alarm(clock, () => void this.sweep());
  }

  /** The callback holding a correlation key, as committed (active or the newest). */
  async #holder(key: string): Promise<CallbackRecord | undefined> {
    const row = await this.#store.readByCorrelation(key);
    return row && decodeRecord(row).record;
  }

  /**
   * Holds an event for `anchor` under correlation key `key` (see {@link CallbackEngine.holdEarly}).
   * @returns `queued` once the row is committed; `found` when the callback exists (before or
   *   right after the hold: dispatch the event to it, with its `dedupKey`).
   * @throws {@link EarlyEventsFullError} when a bound would be passed; `PayloadTooLargeError`
   *   when the event alone is over `maxBytes`; `StoreUnavailableError`.
   */
  async hold(
    anchor: ResolvedAnchor & { readonly early: ResolvedEarly },
    key: string,
    status: DispatchStatus,
    data: CallbackData,
    dedupKey: string,
  ): Promise<EarlyHoldResult> {
    const before = await this.#holder(key);
    if (before) return { kind: 'found', token: before.token };
    const { maxEvents, maxBytes, retentionMs } = anchor.early;
    const { json, bytes } = earlyEventJson(anchor, data);
    const heldAt = this.#clock.now();
    const out = await this.#store.holdEarly(
      {
        dedupKey,
        anchor: anchor.name,
        correlationKey: key,
        status,
        data: json,
        heldAt,
        expiresAt: heldAt + retentionMs,
      },
      anchor.early,
    );
    if (out.kind === 'full') {
      this.#refused++;
      this.#events.early(anchor.name, 'refused', status);
      const bound = out.count + 1 > maxEvents ? 'maxEvents' : 'maxBytes';
      throw new EarlyEventsFullError(
        anchor.name,
        bound,
        bound === 'maxEvents'
          ? `anchor "${anchor.name}" holds ${out.count} early events already (early.maxEvents ${maxEvents}); retry later`
          : `anchor "${anchor.name}" holds ${out.bytes} bytes of early events already; ${bytes} more would pass early.maxBytes ${maxBytes}; retry later`,
      );
    }
    if (out.kind === 'held') {
      this.#events.early(anchor.name, 'held', status);
      this.#arm(heldAt + retentionMs);
    }
    // A create that committed meanwhile may have read the held rows before this one: the
    // callback exists now, so the event is dispatched to it (applied once, by its key).
    const after = await this.#holder(key);
    if (after) {
      // An ended callback will never claim it: the row must not wait for a later one.
      if (isTerminal(after.status)) await this.#store.dropEarly(dedupKey);
      return { kind: 'found', token: after.token };
    }
    this.#refresh();
    return out.kind === 'held'
      ? { kind: 'queued', anchor: anchor.name, expiresAt: heldAt + retentionMs, duplicate: false }
      : { kind: 'queued', anchor: out.anchor, expiresAt: out.expiresAt, duplicate: true };
  }

  /**
   * The events held under `key`, in arrival order, for the callback just committed with it
   * (their rows go with the commit that applies them).
   */
  async claim(key: string): Promise<ClaimedEarly[]> {
    const rows = await this.#store.claimEarly(key);
    if (rows.length > 0) this.#refresh();
    return rows.map((r) => this.#claimed0(r));
  }

  #claimed0(r: SharedEarlyRow): ClaimedEarly {
    return {
      dedupKey: r.dedupKey,
      anchor: r.anchor,
      status: r.status as DispatchStatus,
      data: this.#host.parse(r.data),
    };
  }

  /** A claimed event was applied to its callback. */
  applied(ev: ClaimedEarly): void {
    this.#claimed++;
    this.#events.early(ev.anchor, 'claimed', ev.status);
  }

  /**
   * Runs one expiry sweep now: deletes (and counts) expired rows without an active callback,
   * dispatches expired ones whose callback is active, and arms the alarm for the next expiry.
   */
  sweep(): Promise<void> {
    if (this.#sweeping) {
      this.#again = true;
      return this.#sweeping;
    }
    this.#sweeping = this.#sweep().finally(() => {
      this.#sweeping = undefined;
      if (this.#again && !this.#closed) {
        this.#again = false;
        void this.sweep();
      }
    });
    return this.#sweeping;
  }

  async #sweep(): Promise<void> {
    if (this.#closed) return;
    const now = this.#clock.now();
    try {
      for (const row of await this.#store.expireEarly(now)) {
        this.#expired++;
        this.#events.early(row.anchor, 'expired', row.status);
      }
      await this.#apply(await this.#store.earlyWithCallbacks({ expiredBy: now }));
      await this.#rearm(now);
    } catch (err) {
      if (this.#closed) return;
      this.#events.warn(err);
      this.#arm(now + RETRY_MS);
    }
  }

  /**
   * Applies the held rows whose callback is active in the shards this replica owns (taken over,
   * or owned at start): their claim did not commit before the creating replica stopped.
   */
  async reclaim(): Promise<void> {
    if (this.#closed) return;
    try {
      const shards = this.#host.ownedShards();
      if (shards.length > 0) await this.#apply(await this.#store.earlyWithCallbacks({ shards }));
      await this.#rearm(this.#clock.now());
    } catch (err) {
      if (!this.#closed) this.#events.warn(err);
    }
  }

  /** Dispatches held events to their callbacks: in arrival order per callback. */
  async #apply(rows: { event: SharedEarlyRow; callback: StoredCallback }[]): Promise<void> {
    const byCallback = new Map<string, { event: SharedEarlyRow; token: string }[]>();
    for (const { event, callback } of rows) {
      let list = byCallback.get(callback.id);
      if (!list) byCallback.set(callback.id, (list = []));
      list.push({ event, token: decodeRecord(callback).record.token });
    }
    await Promise.all(
      [...byCallback.values()].map(async (list) => {
        for (const { event, token } of list) {
          if (this.#closed) return;
          const ev = this.#claimed0(event);
          const r = await this.#host.dispatch(token, ev.status, ev.data, ev.dedupKey);
          if (r.outcome === 'applied') this.applied(ev);
        }
      }),
    );
  }

  /** Reads the totals and arms the alarm for the earliest expiry (not before a retry delay). */
  async #rearm(now: number): Promise<void> {
    const s = await this.#store.earlySummary();
    this.#held = s.held;
    this.#heldBytes = s.bytes;
    if (s.nextExpiry === undefined || this.#closed) return;
    // Rows past their retention that are still here wait for their callback's owner: retry later.
    this.#arm(s.nextExpiry <= now ? now + RETRY_MS : s.nextExpiry);
  }

  #arm(at: number): void {
    if (!this.#closed && at < this.#alarm.at) this.#alarm.set(at);
  }

  /** Re-reads the totals for stats (in the background). */
  #refresh(): void {
    this.#store.earlySummary().then(
      (s) => {
        this.#held = s.held;
        this.#heldBytes = s.bytes;
      },
      (err: unknown) => {
        if (!this.#closed) this.#events.warn(err);
      },
    );
  }

  /**
   * Counters for `stats().early`: `held` and `heldBytes` are the table's totals (every replica)
   * as of this replica's last look; `claimed`, `expired` and `refused` count this replica's work.
   */
  stats(): EarlyEventStats {
    return {
      held: this.#held,
      heldBytes: this.#heldBytes,
      claimed: this.#claimed,
      expired: this.#expired,
      refused: this.#refused,
    };
  }

  /** Stops the alarm (the engine closed). */
  close(): void {
    this.#closed = true;
    this.#alarm.clear();
  }
}
