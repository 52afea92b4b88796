/**
 * The keyed registry of callbacks: callbackId → runtime (active) or record
 * (retained), the token index, virtual actors (activation, passivation, the
 * bounded live set), every deadline, and retention (spec 12).
 *
 * @module
 */

import { LRUCache } from 'lru-cache';
import { createActor, type Actor } from 'xstate';
import { DataVersion } from '../data.js';
import { lifecycleMachine, valueOf, type LifecycleMachine } from '../lifecycle/machine.js';
import { isTerminal } from '../lifecycle/statuses.js';
import type { ResolvedEngineOptions } from '../options.js';
import { createMemoryStore, type CallbackStore } from '../store/callback-store.js';
import { decodeToken, safeEqual, type TokenCodec } from '../token.js';
import type { CallbackRuntime } from './callback-runtime.js';
import { DeadlineQueue } from './deadline-queue.js';
import { warn, type EventHub } from './event-hub.js';
import type { CallbackRecord } from './record.js';
import type { Stats } from './stats.js';

/** What a token names. */
export type Found =
  | { kind: 'live'; rt: CallbackRuntime }
  | { kind: 'retained'; record: CallbackRecord }
  | { kind: 'notFound'; anchor: string | undefined; id: string | undefined };

/** Kinds of deadline in the one deadline queue. */
const DEADLINE = 0;
const HEARTBEAT = 1;
const RETENTION = 2;

/** What the registry needs from the engine. */
export interface RegistryDeps {
  readonly options: ResolvedEngineOptions;
  readonly codec: TokenCodec;
  readonly stats: Stats;
  readonly events: EventHub;
  /** An active callback's deadline or heartbeat passed: end it with `timeout`. */
  readonly onTimeout: (rt: CallbackRuntime, reason: 'deadline' | 'heartbeat') => void;
}

/** Callbacks by id and token; their actors, timers and retention. */
export class CallbackRegistry {
  readonly #o: ResolvedEngineOptions;
  readonly #codec: TokenCodec;
  readonly #stats: Stats;
  readonly #events: EventHub;
  readonly #onTimeout: RegistryDeps['onTimeout'];
  readonly #live = new Map<string, CallbackRuntime>();
  /** Exact token → active callback: a byte-identical token is one this engine minted, so no decode or HMAC. */
  readonly #byToken = new Map<string, CallbackRuntime>();
  /** The bounded set of live actors; an evicted idle one is passivated (spec 12). */
  readonly #liveActors: LRUCache<string, CallbackRuntime>;
  /** Inactive records, each removed after its retention. */
  readonly #store: CallbackStore;
  readonly #deadlines: DeadlineQueue<CallbackRuntime | CallbackRecord>;
  readonly #idempotency = new Map<string, string>();
  /** `anchor \0 value \0 value...` → callbackId, for anchors that declare `correlate`. */
  readonly #correlation = new Map<string, string>();
  #recencyTick = 0;

  constructor(deps: RegistryDeps) {
    this.#o = deps.options;
    this.#codec = deps.codec;
    this.#stats = deps.stats;
    this.#events = deps.events;
    this.#onTimeout = deps.onTimeout;
    this.#deadlines = new DeadlineQueue<CallbackRuntime | CallbackRecord>(
      this.#o.clock,
      (target, kind) => this.#onDeadline(target, kind),
      warn,
    );
    this.#store = createMemoryStore({
      clock: this.#o.clock,
      maxRecords: this.#o.maxRetained,
      onRemove: (record, reason) => this.#forget(record, reason),
    });
    this.#liveActors = new LRUCache<string, CallbackRuntime>({
      max: this.#o.maxLiveActors,
      dispose: (rt, _id, reason) => {
        if (reason === 'evict') this.passivate(rt, true);
      },
    });
  }

  // ---- membership ---------------------------------------------------------------------------

  /** Registers a new active callback (no actor yet: a virtual actor) and arms its timers. */
  add(rt: CallbackRuntime, parent: CallbackRuntime | undefined): void {
    const record = rt.record;
    this.#live.set(record.id, rt);
    this.#byToken.set(record.token, rt);
    if (parent) (parent.record.children ??= []).push(record.id);
    if (record.idempotencyKey !== undefined)
      this.#idempotency.set(record.idempotencyKey, record.id);
    if (record.correlationKey !== undefined)
      this.#correlation.set(record.correlationKey, record.id);
    if (record.deadlineAt !== undefined)
      rt.deadline = this.#deadlines.schedule(record.deadlineAt, rt, DEADLINE);
    if (record.heartbeatMs !== undefined)
      rt.heartbeat = this.#deadlines.schedule(rt.lastActivity + record.heartbeatMs, rt, HEARTBEAT);
  }

  /** The runtime of an active (or still draining) callback. */
  runtime(id: string): CallbackRuntime | undefined {
    return this.#live.get(id);
  }

  /** The record of a known callback, active or retained. */
  record(id: string): CallbackRecord | undefined {
    return this.#live.get(id)?.record ?? this.#store.get(id);
  }

  /** The record of the callback created with this (anchor-scoped) idempotency key, if still known. */
  byIdempotencyKey(key: string): CallbackRecord | undefined {
    const id = this.#idempotency.get(key);
    if (id === undefined) return undefined;
    const record = this.record(id);
    if (!record) this.#idempotency.delete(key);
    return record;
  }

  /** The callback whose creation data produced this correlation key. */
  byCorrelationKey(key: string): string | undefined {
    return this.#correlation.get(key);
  }

  /** Active runtimes, in insertion order. */
  runtimes(): IterableIterator<CallbackRuntime> {
    return this.#live.values();
  }

  /** Records of active callbacks, in creation order. */
  *activeRecords(): Generator<CallbackRecord> {
    for (const rt of this.#live.values()) yield rt.record;
  }

  /** Retained (inactive) records. */
  retained(): Iterable<CallbackRecord> {
    return this.#store.values();
  }

  /** Sizes for {@link Stats.snapshot}: active, retained, live actors. */
  get sizes(): readonly [active: number, retained: number, liveActors: number] {
    return [this.#live.size, this.#store.size, this.#liveActors.size];
  }

  // ---- lookup -------------------------------------------------------------------------------

  /** Resolves a token: an exact minted token by map, anything else decoded and HMAC-verified. */
  find(token: unknown): Found {
    const hit = typeof token === 'string' ? this.#byToken.get(token) : undefined;
    if (hit) return { kind: 'live', rt: hit };
    const fields = decodeToken(token);
    if (!fields) {
      this.#stats.notFound++;
      this.#events.rejected('malformed token');
      return { kind: 'notFound', anchor: undefined, id: undefined };
    }
    const rt = this.#live.get(fields.id);
    const record = rt?.record ?? this.#store.get(fields.id);
    // A byte-identical token is one this engine minted; anything else must verify its HMAC.
    const authentic =
      record !== undefined && fields.node === this.#codec.node
        ? safeEqual(token as string, record.token) ||
          (fields.anchor === record.anchor && this.#codec.verify(fields))
        : this.#codec.verify(fields);
    if (!authentic) {
      this.#stats.forgedTokens++;
      this.#stats.notFound++;
      this.#events.rejected('token signature does not verify');
      return { kind: 'notFound', anchor: undefined, id: undefined };
    }
    if (rt) return { kind: 'live', rt };
    if (record) return { kind: 'retained', record };
    this.#stats.notFound++;
    return { kind: 'notFound', anchor: fields.anchor, id: fields.id };
  }

  // ---- virtual actors ----------------------------------------------------------------------

  /** The callback's live actor, activated from its record if it was passivated (or never started). */
  activate(rt: CallbackRuntime): Actor<LifecycleMachine> {
    const live = rt.actor;
    if (live) {
      // Sampled recency (approximate LRU, as Redis does): a busy callback is still bumped often,
      // and most reports skip the cache's bookkeeping.
      if ((++this.#recencyTick & 7) === 0) this.#liveActors.get(rt.record.id);
      return live;
    }
    const { status, data } = rt.record;
    const snapshot = lifecycleMachine.resolveState({ value: valueOf(status), context: { data } });
    const actor = createActor(lifecycleMachine, {
      snapshot,
      input: { data },
      ...this.#events.actorOptions(rt.record.id),
    });
    actor.start();
    rt.actor = actor;
    this.#stats.activations++;
    this.#liveActors.set(rt.record.id, rt);
    return actor;
  }

  /**
   * Stops a live actor; its record keeps status and data, so nothing is lost. A busy one is
   * passivated once its mailbox drains. `evicted`: called from the live set's own eviction,
   * which must not be re-entered.
   */
  passivate(rt: CallbackRuntime, evicted = false): void {
    const actor = rt.actor;
    if (!actor) return;
    if (rt.busy || rt.pending > 0) {
      rt.evictPending = true;
      return;
    }
    rt.actor = undefined;
    rt.evictPending = false;
    actor.stop();
    if (!evicted) this.#liveActors.delete(rt.record.id);
    if (!isTerminal(rt.record.status)) this.#stats.passivations++;
  }

  /** Passivates every idle live actor (so the next activation picks up new inspectors). */
  passivateIdle(): void {
    for (const rt of this.#live.values())
      if (rt.actor && !rt.busy && rt.pending === 0) this.passivate(rt);
  }

  // ---- timers and retention ----------------------------------------------------------------

  /** Cancels a callback's deadline and heartbeat (it became terminal). */
  stopTimers(rt: CallbackRuntime): void {
    this.#deadlines.cancel(rt.deadline);
    this.#deadlines.cancel(rt.heartbeat);
    rt.deadline = rt.heartbeat = undefined;
  }

  /** The mailbox of a finalized callback drained: keep its record for its retention. */
  retire(rt: CallbackRuntime): void {
    const record = rt.record;
    this.#live.delete(record.id);
    this.#byToken.delete(record.token);
    // Fold the patch log into one frozen object: retained records hold no history.
    record.data = DataVersion.of(record.data.value);
    if (record.retention === true) return void this.#store.set(record, undefined);
    if (record.retention <= 0) return this.#forget(record, 'retention');
    this.#store.set(record, record.retention);
    this.#deadlines.schedule(this.#o.clock.now() + record.retention, record, RETENTION);
  }

  /** A record leaves the engine for good. */
  #forget(record: CallbackRecord, reason: string): void {
    const corrKey = record.correlationKey;
    if (corrKey !== undefined && this.#correlation.get(corrKey) === record.id)
      this.#correlation.delete(corrKey);
    const idemKey = record.idempotencyKey;
    if (idemKey !== undefined && this.#idempotency.get(idemKey) === record.id)
      this.#idempotency.delete(idemKey);
    this.#stats.remove(record.anchor, record.status);
    this.#stats.evicted++;
    this.#events.emit('evicted', record, { reason });
  }

  #onDeadline(target: CallbackRuntime | CallbackRecord, kind: number): void {
    if (kind === DEADLINE) this.#onTimeout(target as CallbackRuntime, 'deadline');
    else if (kind === HEARTBEAT) this.#onHeartbeat(target as CallbackRuntime);
    else {
      const record = target as CallbackRecord;
      // A late timer may find lru-cache already expired it (and told #forget); else remove it now.
      if (this.#store.get(record.id) === record && this.#store.delete(record.id)) {
        this.#forget(record, 'retention');
      }
    }
  }

  #onHeartbeat(rt: CallbackRuntime): void {
    const due = rt.lastActivity + rt.record.heartbeatMs!;
    if (due > this.#o.clock.now()) {
      rt.heartbeat = this.#deadlines.schedule(due, rt, HEARTBEAT);
      return;
    }
    rt.heartbeat = undefined;
    this.#onTimeout(rt, 'heartbeat');
  }

  // ---- shutdown -----------------------------------------------------------------------------

  /** Stops the deadline timer (no deadline fires afterwards). */
  stopClock(): void {
    this.#deadlines.close();
  }

  /** Stops every live actor and forgets everything. */
  clear(): void {
    for (const rt of this.#live.values()) rt.actor?.stop();
    this.#live.clear();
    this.#byToken.clear();
    this.#store.clear();
    this.#idempotency.clear();
    this.#correlation.clear();
  }
}
