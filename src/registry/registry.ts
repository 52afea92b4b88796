/**
 * The keyed registry of callbacks: callbackId → runtime (active) or record (retained), the
 * lookups (token, id, idempotency and correlation keys), the bounded live set of virtual actors,
 * and retention (spec 12). It decides no transition and writes no journal entry (the mailbox
 * does); its callbacks' timers are in `timers/`.
 *
 * Two modes, by store:
 * - memory (the default): every callback's record lives in the heap; retained records in an
 *   lru-cache.
 * - durable: the store is the source of truth. Only the *resident* set is in the heap (see
 *   `residency.ts`); a lookup of a cold callback reads its row back.
 *
 * @module
 */

import type { StoreUnavailableError } from '../errors.js';
import { decodeEntry, readJournal, type JournalEntry } from '../journal/journal.js';
import type { LifecycleRunner } from '../lifecycle/runner.js';
import { MACHINE_VERSION } from '../lifecycle/persist.js';
import type { ResolvedEngineOptions } from '../options/engine.js';
import type { DurableStore, Prefetch, StoreRecovery } from '../store/store.js';
import { CallbackTimers } from '../timers/callback-timers.js';
import { decodeToken, safeEqual, type TokenCodec } from '../token.js';
import type { ListPage } from '../types.js';
import { CallbackIndex, type Found, type Known } from './callback-index.js';
import type { CallbackRuntime } from './callback-runtime.js';
import type { EventHub } from './event-hub.js';
import { listCallbacks, listStored, type ListOptions } from './list-callbacks.js';
import { LiveSet } from './live-set.js';
import { decodeRecord } from './record-codec.js';
import type { CallbackRecord } from './record.js';
import { Residency } from './residency.js';
import type { CallbackStore } from './retained-records.js';
import { Retention } from './retention.js';
import type { Stats } from './stats.js';

export type { Found } from './callback-index.js';

/** The timers of the registry's callbacks. */
export type RegistryTimers = CallbackTimers<CallbackRuntime, CallbackRecord>;

/** What the registry needs from the engine. */
export interface RegistryDeps {
  readonly options: ResolvedEngineOptions;
  readonly codec: TokenCodec;
  readonly stats: Stats;
  readonly events: EventHub;
  /**
   * Whether this engine may hold a callback in memory (several replicas: only its owner may;
   * a copy elsewhere would go stale). Absent: always.
   */
  readonly mayHold?: (id: string) => boolean;
  /** An active callback's deadline or heartbeat passed: end it with `timeout`. */
  readonly onTimeout: (rt: CallbackRuntime, reason: 'deadline' | 'heartbeat') => void;
  /**
   * Durable mode: a stored row is due (a deadline, a heartbeat, a retry, the end of retention).
   * @returns whether anything was done.
   */
  readonly onDue: (id: string) => boolean;
  /** A callback dropped after a failed commit: reject what waits in its mailbox. */
  readonly onInvalidated: (rt: CallbackRuntime, err: StoreUnavailableError) => void;
  /**
   * A callback read back from the store owes a step invocation (the engine stopped before it
   * ended, or it waits for its retry); its mailbox runs it before anything else.
   */
  readonly onOwed?: (rt: CallbackRuntime) => void;
}

/** Callbacks by id and token; their actors and retention. */
export class CallbackRegistry {
  /** Every timer of the callbacks (memory: one deadline queue; durable: the store's due times). */
  readonly timers: RegistryTimers;
  readonly #o: ResolvedEngineOptions;
  readonly #codec: TokenCodec;
  readonly #stats: Stats;
  readonly #events: EventHub;
  readonly #index = new CallbackIndex();
  readonly #liveSet: LiveSet;
  readonly #residency: Residency;
  /** Inactive callbacks kept for their retention (memory mode). */
  readonly #retention: Retention;
  /** Their records. */
  readonly #retained: CallbackStore;
  /** The durable store, if any. */
  readonly #durable: DurableStore | undefined;

  constructor(deps: RegistryDeps) {
    this.#o = deps.options;
    this.#codec = deps.codec;
    this.#stats = deps.stats;
    this.#events = deps.events;
    const store = this.#o.store;
    this.#durable = store.kind === 'durable' ? store : undefined;
    this.timers = new CallbackTimers<CallbackRuntime, CallbackRecord>(
      this.#o.clock,
      this.#durable,
      {
        timeout: deps.onTimeout,
        retained: (record) => this.#retention.ended(record),
        due: deps.onDue,
      },
      deps.events.warn,
    );
    this.#retention = new Retention({
      clock: this.#o.clock,
      maxRetained: this.#o.maxRetained,
      index: this.#index,
      stats: deps.stats,
      events: deps.events,
      timers: this.timers,
    });
    this.#retained = this.#retention.records;
    this.#liveSet = new LiveSet({
      max: this.#o.maxLiveActors,
      durable: this.#durable !== undefined,
      stats: deps.stats,
      events: deps.events,
      evicted: (rt) => this.#residency.release(rt),
    });
    this.#residency = new Residency({
      durable: this.#durable,
      index: this.#index,
      liveSet: this.#liveSet,
      stats: deps.stats,
      warn: deps.events.warn,
      mayHold: deps.mayHold ?? (() => true),
      onInvalidated: deps.onInvalidated,
      onOwed: deps.onOwed,
    });
  }

  /** Whether callbacks live in a durable store (answers wait for commits). */
  get durable(): boolean {
    return this.#durable !== undefined;
  }

  /** Whether the store's reads are asynchronous (fetch before the synchronous path). */
  get prefetching(): boolean {
    return this.#residency.prefetching;
  }

  // ---- recovery and residency (durable mode) -------------------------------------------------

  /**
   * Opens the durable store: counters from its rows, the creation sequence, and the
   * scheduler armed at the earliest due time (deadlines that passed while down fire now).
   * Callbacks that owe a step invocation (the engine stopped before it ended) are made resident,
   * so their mailboxes run it before any report that arrives after `ready()`.
   * @returns the next creation sequence number.
   */
  async recover(): Promise<number> {
    const store = this.#durable;
    if (!store) return 0;
    const recovery: StoreRecovery = await store.open({
      machineVersion: MACHINE_VERSION,
      node: this.#o.node,
      keyFingerprints: this.#codec.fingerprints,
    });
    for (const c of recovery.counts) this.#stats.addMany(c.anchor, c.status, c.count);
    this.resumeOwed(recovery.owed ?? []);
    this.timers.start();
    return recovery.maxSeq + 1;
  }

  /** See {@link Residency.resumeOwed}. */
  resumeOwed(ids: readonly string[]): void {
    this.#residency.resumeOwed(ids);
  }

  /** See {@link Residency.warm}. */
  warm(request: Prefetch): Promise<void> {
    return this.#residency.warm(request);
  }

  /** See {@link Residency.pin}. */
  pin(id: string): () => void {
    return this.#residency.pin(id);
  }

  /** A runtime's mailbox drained, its waiters left or its writes committed: it may leave the heap. */
  settle(rt: CallbackRuntime): void {
    if (this.#durable) this.#residency.release(rt);
  }

  /** Whether this very runtime is the one in memory for its callback. */
  holds(rt: CallbackRuntime): boolean {
    return this.#index.live.get(rt.record.id) === rt;
  }

  /** A commit of `rt` failed (`rt.invalid`): it leaves the heap; see {@link Residency.invalidate}. */
  invalidate(rt: CallbackRuntime): void {
    this.#residency.invalidate(rt);
  }

  /** See {@link Residency.disown}; due times are read again. */
  disown(owned: (id: string) => boolean, err: StoreUnavailableError): void {
    this.#residency.disown(owned, err);
    this.timers.poke();
  }

  // ---- membership ---------------------------------------------------------------------------

  /**
   * Registers a new active callback (no actor yet: a virtual actor) and arms its timers (a
   * durable store's row, written with its `created` entry, holds its due time).
   */
  add(rt: CallbackRuntime, parent: CallbackRuntime | undefined): void {
    // Several replicas: a correlation key is unique, so a second one is refused at commit and
    // must not take the index from the callback that holds it.
    this.#index.put(rt, this.prefetching);
    if (parent) (parent.record.children ??= []).push(rt.record.id);
    if (this.#durable) this.#liveSet.set(rt);
    else this.timers.arm(rt);
  }

  /** See {@link Retention.removeAt}. */
  removeAt(record: CallbackRecord): number | undefined {
    return this.#retention.removeAt(record);
  }

  /** The mailbox of a finalized callback drained: keep its record for its retention. */
  retire(rt: CallbackRuntime): void {
    const record = rt.record;
    // A finished callback holds no actor.
    this.#liveSet.stopActor(rt);
    this.#liveSet.delete(record.id);
    if (this.#durable) {
      // Its terminal row was written at finalize; the runtime leaves once that commit lands.
      return this.#residency.release(rt);
    }
    this.#index.remove(rt);
    this.#retention.keep(record);
  }

  /** See {@link Retention.forget}. */
  forget(record: CallbackRecord, reason: string): void {
    this.#retention.forget(record, reason);
  }

  // ---- lookup -------------------------------------------------------------------------------

  /** The record of a resident callback (no store read). */
  resident(id: string): CallbackRecord | undefined {
    return this.#index.live.get(id)?.record;
  }

  /** The token of the resident callback holding a correlation key (no store read). */
  residentByCorrelation(key: string): string | undefined {
    const id = this.#index.correlation.get(key);
    return id === undefined ? undefined : this.#index.live.get(id)?.record.token;
  }

  /** The runtime of an active (or still draining) callback; durable mode reads a cold one back. */
  runtime(id: string): CallbackRuntime | undefined {
    const rt = this.#index.live.get(id);
    if (rt || !this.#durable) return rt;
    const found = this.#residency.load(id);
    return found?.kind === 'live' ? found.rt : undefined;
  }

  /**
   * Durable mode: a callback by id, its resident runtime or its row read back (a resident
   * runtime for an active one, the record for a retained one).
   */
  load(id: string): Known | undefined {
    const rt = this.#index.live.get(id);
    return rt ? { kind: 'live', rt } : this.#residency.load(id);
  }

  /** The record of a known callback, active or retained. */
  record(id: string): CallbackRecord | undefined {
    const rt = this.#index.live.get(id);
    if (rt) return rt.record;
    if (!this.#durable) return this.#retained.get(id);
    const row = this.#durable.load(id);
    return row && decodeRecord(row).record;
  }

  /**
   * A known callback's record, when it last heard from outside (if known) and its children's ids,
   * for admin views. Reads the store in durable mode, but never makes a callback resident.
   */
  details(
    id: string,
  ): { record: CallbackRecord; lastActivity: number | undefined; children: string[] } | undefined {
    const rt = this.#index.live.get(id);
    if (rt)
      return {
        record: rt.record,
        lastActivity: rt.lastActivity,
        children: [...(rt.record.children ?? [])],
      };
    if (!this.#durable) {
      const record = this.#retained.get(id);
      return record && { record, lastActivity: undefined, children: [...(record.children ?? [])] };
    }
    const row = this.#durable.load(id);
    if (!row) return undefined;
    const { record, lastActivity } = decodeRecord(row);
    return { record, lastActivity, children: this.#durable.childrenOf(id) };
  }

  /** The record of the callback created with this (anchor-scoped) idempotency key, if still known. */
  byIdempotencyKey(key: string): CallbackRecord | undefined {
    const id = this.#index.idempotency.get(key);
    if (id === undefined) {
      const row = this.#durable?.findByIdempotencyKey(key);
      const found = row && this.#residency.fromRow(row);
      return found && (found.kind === 'live' ? found.rt.record : found.record);
    }
    const record = this.record(id);
    if (!record) this.#index.idempotency.delete(key);
    return record;
  }

  /** The callback whose creation data produced this correlation key. */
  byCorrelationKey(key: string): string | undefined {
    return this.#index.correlation.get(key) ?? this.#durable?.findByCorrelationKey(key)?.id;
  }

  /** Resident runtimes, in insertion order. */
  runtimes(): IterableIterator<CallbackRuntime> {
    return this.#index.live.values();
  }

  /** Pages of callbacks in creation order (from the store in durable mode: what is committed). */
  list(options: ListOptions): ListPage {
    if (this.#durable) {
      const store = this.#durable;
      return listStored(
        options,
        (q) => store.list(q),
        (row) => decodeRecord(row).record,
        store.count ? (q) => store.count?.(q) ?? 0 : undefined,
      );
    }
    const active = (function* (live: Map<string, CallbackRuntime>) {
      for (const rt of live.values()) yield rt.record;
    })(this.#index.live);
    return listCallbacks([active, this.#retained.values()], options);
  }

  /** Sizes for {@link Stats.snapshot}: active, retained, live actors. */
  get sizes(): readonly [active: number, retained: number, liveActors: number] {
    if (this.#durable) {
      const [active, inactive] = this.#stats.activeInactive();
      return [active, inactive, this.#liveSet.actors];
    }
    return [this.#index.live.size, this.#retained.size, this.#liveSet.actors];
  }

  /**
   * A page of a callback's journal: entries with seq greater than `afterSeq`, oldest first. The
   * memory store keeps them with the record; a durable store reads what it committed.
   */
  async history(id: string, afterSeq: number, limit: number): Promise<JournalEntry[]> {
    if (!this.#durable) {
      const journal = readJournal(
        this.#index.live.get(id)?.record.journal ?? this.#retained.get(id)?.journal,
      );
      const from = journal.findIndex((e) => e.seq > afterSeq);
      return from < 0 ? [] : journal.slice(from, from + limit);
    }
    const rows = await this.#durable.history(id, afterSeq, limit);
    return rows.map(decodeEntry);
  }

  /**
   * The id and anchor a token names, if it is authentic: a callback in memory by its exact token
   * (byte-identical to the one stored with it: no decoding, no HMAC), any other token decoded and
   * its signature checked. Counts nothing; `undefined` for a malformed or forged token.
   */
  verifiedFields(token: string): { id: string; anchor: string } | undefined {
    const resident = this.#index.byToken.get(token)?.record;
    if (resident) return resident;
    const fields = decodeToken(token);
    return fields && this.#codec.verify(fields) ? fields : undefined;
  }

  /** Resolves a token: an exact minted token by map, anything else decoded and HMAC-verified. */
  find(token: unknown): Found {
    const hit = typeof token === 'string' ? this.#index.byToken.get(token) : undefined;
    if (hit) return { kind: 'live', rt: hit };
    const fields = decodeToken(token);
    if (!fields) {
      this.#stats.notFound++;
      this.#events.rejected('malformed token');
      return { kind: 'notFound', anchor: undefined, id: undefined };
    }
    let found: Known | undefined;
    const rt = this.#index.live.get(fields.id);
    if (rt) found = { kind: 'live', rt };
    else if (this.#durable) {
      // Verify before reading the store: a forged token costs no I/O.
      if (!this.#codec.verify(fields)) return this.#forged();
      found = this.#residency.load(fields.id);
      if (!found) {
        this.#stats.notFound++;
        return { kind: 'notFound', anchor: fields.anchor, id: fields.id };
      }
      const record = found.kind === 'live' ? found.rt.record : found.record;
      if (record.anchor !== fields.anchor) return this.#forged();
      return found;
    } else {
      const record = this.#retained.get(fields.id);
      if (record) found = { kind: 'retained', record };
    }
    const record =
      found === undefined ? undefined : found.kind === 'live' ? found.rt.record : found.record;
    // A byte-identical token is one this engine minted; anything else must verify its HMAC.
    const authentic =
      record !== undefined && fields.node === this.#codec.node
        ? safeEqual(token as string, record.token) ||
          (fields.anchor === record.anchor && this.#codec.verify(fields))
        : this.#codec.verify(fields);
    if (!authentic) return this.#forged();
    if (found) return found;
    this.#stats.notFound++;
    return { kind: 'notFound', anchor: fields.anchor, id: fields.id };
  }

  #forged(): Found {
    this.#stats.forgedTokens++;
    this.#stats.notFound++;
    this.#events.rejected('token signature does not verify');
    return { kind: 'notFound', anchor: undefined, id: undefined };
  }

  // ---- virtual actors ----------------------------------------------------------------------

  /** See {@link LiveSet.activate}. */
  activate(rt: CallbackRuntime): LifecycleRunner {
    return this.#liveSet.activate(rt);
  }

  /** See {@link LiveSet.passivate}. */
  passivate(rt: CallbackRuntime): void {
    this.#liveSet.passivate(rt);
  }

  /** Passivates every idle live actor (so the next activation picks up new inspectors). */
  passivateIdle(): void {
    for (const rt of this.#index.live.values())
      if (rt.actor && !rt.busy && rt.pending === 0) this.#liveSet.passivate(rt);
  }

  /** Stops every live actor and forgets everything. */
  clear(): void {
    for (const rt of this.#index.live.values()) this.#liveSet.stopActor(rt);
    this.#index.clear();
    this.#liveSet.clear();
    this.#retained.clear();
  }
}
