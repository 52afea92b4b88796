/**
 * Early events behind one interface: CloudEvents that arrive before the callback holding their
 * correlation key exists are held, then applied by the create that makes it. Held in the
 * engine's memory (the memory store, or committed first to a SQLite store), or in a table every
 * replica shares (PostgreSQL, supplied by the clustered routing).
 *
 * @module
 */

import type { CallbackData } from '../data.js';
import { toError } from '../thrown.js';
import { isTerminal, type DispatchStatus } from '../lifecycle/statuses.js';
import type { ResolvedAnchor } from '../options/anchor.js';
import type { CallbackRuntime, Job } from '../registry/callback-runtime.js';
import type { EarlyEvents } from '../registry/early-events.js';
import type { EventHub } from '../registry/event-hub.js';
import type { JournalWriter } from '../mailbox/journal-writer.js';
import type { CallbackRegistry } from '../registry/registry.js';
import type { DispatchResult, EarlyEventStats, EarlyHoldResult } from '../types.js';
import type { ReportOptions } from './routing.js';

/** An anchor that opted in to early events. */
export type EarlyAnchor = ResolvedAnchor & { readonly early: NonNullable<ResolvedAnchor['early']> };

/** An early event ready to be applied as a report. */
export interface ClaimedEvent {
  readonly dedupKey: string;
  readonly status: DispatchStatus;
  readonly data: CallbackData;
}

/** Where early events are held. */
export interface EarlyBackend {
  /** After recovery: loads what the store holds, applies what a crash left unapplied. */
  start(): void;
  /** Holds an event for `key` (or says the callback exists now). */
  hold(
    anchor: EarlyAnchor,
    key: string,
    status: DispatchStatus,
    data: CallbackData,
    dedupKey: string,
  ): Promise<EarlyHoldResult>;
  /**
   * A callback was just created with `key` and its create job queued: held events go into its
   * mailbox now, behind the create job. Resolves with the last one's result once all settled.
   */
  claimNow(rt: CallbackRuntime, key: string): Promise<DispatchResult | undefined> | undefined;
  /**
   * The same once the create is committed (events held by any replica are read then), for a
   * mailbox kept closed until then; the backend opens it. `undefined`: this backend claims now.
   */
  claimAfterCommit(
    rt: CallbackRuntime,
    createJob: Job,
    key: string,
    open: () => void,
  ): Promise<DispatchResult | undefined> | undefined;
  stats(): EarlyEventStats;
  close(): void;
}

/** How a held event becomes a report: the local report path. */
export type ReportHere = (
  token: string,
  status: DispatchStatus,
  data: CallbackData,
  options: ReportOptions,
) => Promise<DispatchResult>;

/**
 * Applies one claimed early event to the callback of `token` as a report with its dedup key,
 * admitted synchronously: an event is held once per key and claimed once, so no store read is
 * needed (its key cannot have been applied). A report the callback refuses (over
 * `maxCallbackBytes`, say) is dropped with a `rejected` event.
 */
export function applyHeld(
  report: ReportHere,
  journal: JournalWriter,
  events: EventHub,
  token: string,
  ev: ClaimedEvent,
  applied?: (r: DispatchResult) => void,
): Promise<DispatchResult | undefined> {
  journal.claimEarly(ev.dedupKey);
  let reported: Promise<DispatchResult>;
  try {
    reported = report(token, ev.status, ev.data, { dedupKey: ev.dedupKey, freshKey: true });
  } catch (err) {
    reported = Promise.reject(toError(err));
  }
  return reported.then(
    (r): DispatchResult | undefined => {
      applied?.(r);
      return r;
    },
    (err: unknown) => {
      journal.dropEarly(ev.dedupKey);
      events.rejected(`early event ${ev.dedupKey}: ${toError(err).message}`);
      return undefined;
    },
  );
}

/** The last result of events applied in order. */
const last = (all: (DispatchResult | undefined)[]) => all.findLast((r) => r !== undefined);

/** Early events in this engine's memory (and, with a SQLite store, committed before answering). */
export class LocalEarly implements EarlyBackend {
  readonly #held: EarlyEvents;
  readonly #registry: CallbackRegistry;
  readonly #journal: JournalWriter;
  readonly #events: EventHub;
  readonly #report: ReportHere;
  readonly #parse: (json: string) => CallbackData;

  constructor(
    held: EarlyEvents,
    registry: CallbackRegistry,
    journal: JournalWriter,
    events: EventHub,
    report: ReportHere,
    parse: (json: string) => CallbackData,
  ) {
    this.#held = held;
    this.#registry = registry;
    this.#journal = journal;
    this.#events = events;
    this.#report = report;
    this.#parse = parse;
  }

  start(): void {
    this.#held.load(this.#journal.loadEarly(), (row) => this.#parse(row.data));
    // Events whose callback was created but which were not applied before the engine stopped
    // (their rows go with the reports' effects) are applied now.
    for (const key of [...this.#held.keys()]) {
      let id: string | undefined;
      try {
        id = this.#registry.byCorrelationKey(key);
      } catch {
        continue; // the store cannot be read now: they stay held (and expire in time)
      }
      const rt = id === undefined ? undefined : this.#registry.runtime(id);
      if (rt && !isTerminal(rt.record.status)) void this.claimNow(rt, key);
    }
  }

  async hold(
    anchor: EarlyAnchor,
    key: string,
    status: DispatchStatus,
    data: CallbackData,
    dedupKey: string,
  ): Promise<EarlyHoldResult> {
    // Created since the caller looked: not early any more.
    const id = this.#registry.byCorrelationKey(key);
    const token = id === undefined ? undefined : this.#registry.record(id)?.token;
    if (token !== undefined) return { kind: 'found', token };
    const prior = this.#held.held(dedupKey);
    const ev = prior ?? this.#held.hold(anchor, key, status, data, dedupKey);
    await ev.committed;
    return {
      kind: 'queued',
      anchor: ev.anchor,
      expiresAt: ev.expiresAt,
      duplicate: prior !== undefined,
    };
  }

  claimNow(rt: CallbackRuntime, key: string): Promise<DispatchResult | undefined> | undefined {
    if (!this.#held.has(key)) return undefined;
    const token = rt.record.token;
    const results = this.#held
      .claim(key)
      .map((ev) => applyHeld(this.#report, this.#journal, this.#events, token, ev));
    return Promise.all(results).then(last);
  }

  claimAfterCommit(): undefined {
    return undefined;
  }

  stats(): EarlyEventStats {
    return this.#held.stats();
  }

  close(): void {
    this.#held.close();
  }
}

/** What a shared hold (PostgreSQL) offers the create path. */
export interface SharedHold {
  hold(
    anchor: EarlyAnchor,
    key: string,
    status: DispatchStatus,
    data: CallbackData,
    dedupKey: string,
  ): Promise<EarlyHoldResult>;
  claim(key: string): Promise<ClaimedEvent[]>;
  applied(ev: ClaimedEvent): void;
  reclaim(): Promise<void>;
  stats(): EarlyEventStats;
  close(): void;
}

/** Early events in a table every replica shares: claimed once the create committed. */
export class SharedEarly implements EarlyBackend {
  readonly #shared: SharedHold;
  readonly #journal: JournalWriter;
  readonly #events: EventHub;
  readonly #report: ReportHere;

  constructor(shared: SharedHold, journal: JournalWriter, events: EventHub, report: ReportHere) {
    this.#shared = shared;
    this.#journal = journal;
    this.#events = events;
    this.#report = report;
  }

  start(): void {
    void this.#shared.reclaim();
  }

  hold(
    anchor: EarlyAnchor,
    key: string,
    status: DispatchStatus,
    data: CallbackData,
    dedupKey: string,
  ): Promise<EarlyHoldResult> {
    return this.#shared.hold(anchor, key, status, data, dedupKey);
  }

  claimNow(): undefined {
    return undefined;
  }

  /**
   * The create of `rt` committed; its mailbox is still closed (`busy`). Reads the events held for
   * `key` by any replica and puts them right behind the create job, before any report that
   * arrived meanwhile, then opens the mailbox. A hold that committed after this read finds the
   * callback itself and dispatches its event (see the shared hold).
   */
  async claimAfterCommit(
    rt: CallbackRuntime,
    createJob: Job,
    key: string,
    open: () => void,
  ): Promise<DispatchResult | undefined> {
    let held: ClaimedEvent[] = [];
    try {
      held = await this.#shared.claim(key);
    } catch (err) {
      // Still held: dispatched to the callback by the expiry sweep once their retention passed.
      this.#events.rejected(`early events for a new callback: ${toError(err).message}`);
    }
    const token = rt.record.token;
    const jobs = rt.drainAll();
    const at = jobs.indexOf(createJob) + 1;
    for (const job of jobs.slice(0, at)) rt.push(job);
    const results = held.map((ev) =>
      applyHeld(this.#report, this.#journal, this.#events, token, ev, (r) => {
        if (r.outcome === 'applied') this.#shared.applied(ev);
      }),
    );
    for (const job of jobs.slice(at)) rt.push(job);
    open();
    return Promise.all(results).then(last);
  }

  stats(): EarlyEventStats {
    return this.#shared.stats();
  }

  close(): void {
    this.#shared.close();
  }
}
