/**
 * `createCallbackEngine()`: the facade users touch first.
 *
 * Every callback is its own XState actor with a serialized mailbox: reports to
 * one callback are applied one at a time in arrival order, and its steps never
 * overlap; different callbacks proceed concurrently.
 *
 * @module
 */

import { LRUCache } from 'lru-cache';
import { createActor, type Actor, type InspectionEvent, type Observer } from 'xstate';
import { Answer, CreatedAnswer, buildAttributes, notFoundAnswer } from './answer.js';
import { canonicalJson, DataVersion, EMPTY_DATA, ingestData, type CallbackData } from './data.js';
import { deadlineAt, durationMs } from './duration.js';
import {
  EngineClosedError,
  InvalidArgumentError,
  PoolSaturatedError,
  ParentInactiveError,
  ParentNotFoundError,
  UnknownAnchorError,
  toError,
} from './errors.js';
import {
  lifecycleMachine,
  STATUS_EVENT,
  statusOf,
  valueOf,
  type LifecycleMachine,
} from './lifecycle/machine.js';
import {
  isTerminal,
  lookupStep,
  type CallbackStatus,
  type DispatchStatus,
  type TerminalStatus,
} from './lifecycle/statuses.js';
import { parseMessage } from './message.js';
import { isWorkerStep, type StepRunner, type WorkerStep } from './pool/worker-step.js';
import {
  checkIdempotencyKey,
  checkTags,
  resolveAnchor,
  resolveOptions,
  type AnchorOptions,
  type CallbackEngineOptions,
  type CreateOptions,
  type ResolvedAnchor,
  type ResolvedEngineOptions,
} from './options.js';
import {
  CallbackRuntime,
  LazyAbort,
  Pending,
  type Follower,
  type Job,
} from './registry/callback-runtime.js';
import { DeadlineQueue } from './registry/deadline-queue.js';
import type { CallbackRecord } from './registry/record.js';
import { Stats } from './registry/stats.js';
import { createMemoryStore, type CallbackStore } from './store/callback-store.js';
import { decodeToken, newCallbackId, safeEqual, TokenCodec } from './token.js';
import type {
  CallbackAnswer,
  CallbackMessage,
  CreatedCallback,
  DispatchResult,
  EngineEvent,
  EngineEventType,
  EngineStats,
  ListedCallback,
  ListPage,
  StepInput,
  StepOutput,
} from './types.js';

/** An XState inspector: a function or an observer of XState inspection events. */
export type XStateInspector =
  ((event: InspectionEvent) => void) | Partial<Observer<InspectionEvent>>;

/** Options of {@link CallbackEngine.wait}. */
export interface WaitOptions {
  /** Aborting it rejects the wait with the signal's reason. */
  signal?: AbortSignal;
  /** Also wait until every child (and their children) is terminal. @default false */
  children?: boolean;
}

/** Filters and paging of {@link CallbackEngine.list}. */
export interface ListOptions {
  status?: CallbackStatus | readonly CallbackStatus[];
  anchor?: string;
  /** Callbacks carrying all of these tags. */
  tags?: readonly string[];
  /** The `cursor` of the previous page. */
  cursor?: string;
  /** Page size, 1-1000. @default 100 */
  limit?: number;
}

/** The callback engine. Create one with {@link createCallbackEngine}. */
export interface CallbackEngine {
  /** This engine's node name (in every token it mints). */
  readonly node: string;
  /**
   * Registers an anchor: what runs when its callbacks change status (spec 6).
   * @throws {@link InvalidArgumentError} for a bad or duplicate name or a bad option.
   */
  anchor(name: string, options?: AnchorOptions): void;
  /**
   * Creates a callback at an anchor and runs the anchor's `create` step.
   * @returns the callback, with its token, after the create step settled.
   * @throws {@link UnknownAnchorError}, {@link InvalidArgumentError}, {@link ParentNotFoundError},
   *   {@link ParentInactiveError}, `InvalidDataError`, `PayloadTooLargeError`, {@link EngineClosedError}.
   */
  create(anchor: string, options?: CreateOptions): Promise<CreatedCallback>;
  /**
   * Delivers a CALLBACK message (spec 11.1): a report or a `getCallback` read.
   * @returns the answer: the status after handling, which may differ from what was sent.
   * @throws `InvalidMessageError`, `InvalidDataError`, `PayloadTooLargeError`, {@link EngineClosedError}.
   *   A bad token is never thrown: it is answered as `notFound`.
   */
  dispatch(message: CallbackMessage): Promise<CallbackAnswer>;
  /** Like {@link CallbackEngine.dispatch}, also telling how the report was handled. */
  deliver(message: CallbackMessage): Promise<DispatchResult>;
  /** Reads a callback: `{ status, token, data }`, or status `notFound`. */
  get(token: string): Promise<CallbackAnswer>;
  /** Whether a token names a known callback. */
  exists(token: string): Promise<'exists' | 'notFound'>;
  /** Resolves with the final answer once the callback is terminal; event-driven, no cap. */
  wait(token: string, options?: WaitOptions): Promise<CallbackAnswer>;
  /** Caller-side cancel: takes effect at once, aborting a running step (spec 3). */
  cancel(token: string, data?: Record<string, unknown>): Promise<CallbackAnswer>;
  /** Pages of callbacks in creation order. */
  list(options?: ListOptions): ListPage;
  /** Counters by status and anchor (spec 13). */
  stats(): EngineStats;
  /** Listens to engine events; returns the function that stops listening. */
  subscribe(listener: (event: EngineEvent) => void): () => void;
  /**
   * Attaches an XState inspector (XState's inspection API: a function or an observer with
   * `next`, such as `createBrowserInspector().inspect` from `@statelyai/inspect`). Every
   * callback actor activated from now on reports to it; idle live actors are passivated so
   * their next activation is inspected too.
   * @returns the function that detaches it.
   */
  inspect(inspector: XStateInspector): () => void;
  /**
   * The callback URL of a token: `POST {baseUrl}/callbacks/{token}/{status}` with the report data as JSON.
   * @throws {@link InvalidArgumentError} if the engine has no `baseUrl` option.
   */
  callbackUrl(token: string): string;
  /** The token of a known callback by its callbackId (instance-id correlation), or `undefined`. */
  tokenOf(id: string): string | undefined;
  /**
   * The token of the callback whose creation data matches these attributes on every key of its
   * anchor's `correlate` list (keys lower-cased, values compared as strings), or `undefined`.
   */
  correlate(attributes: Readonly<Record<string, unknown>>): string | undefined;
  /** The status an anchor's `eventTypes` maps a CloudEvent type to, or `undefined`. */
  eventStatus(anchor: string, type: string): DispatchStatus | undefined;
  /** Stops every timer and actor; later calls reject with {@link EngineClosedError}. */
  close(): Promise<void>;
}

type Found =
  | { kind: 'live'; rt: CallbackRuntime }
  | { kind: 'retained'; record: CallbackRecord }
  | { kind: 'notFound'; anchor: string | undefined };

const isPromiseLike = (v: unknown): v is PromiseLike<unknown> =>
  typeof v === 'object' && v !== null && typeof (v as { then?: unknown }).then === 'function';

/** The correlation index key of a callback's creation data, if its anchor declares `correlate`. */
function correlationKey(anchor: ResolvedAnchor, data: CallbackData): string | undefined {
  if (anchor.correlate.length === 0) return undefined;
  const values: string[] = [];
  for (const key of anchor.correlate) {
    const v = data[key];
    if (v === undefined || v === null || typeof v === 'object') return undefined;
    values.push(String(v));
  }
  return `${anchor.name}\u0000${values.join('\u0000')}`;
}

/** Kinds of deadline in the engine's one deadline queue. */
const DEADLINE = 0;
const HEARTBEAT = 1;
const RETENTION = 2;

const toAnswer = (r: DispatchResult): CallbackAnswer => r.answer;
const toResult = (r: DispatchResult): DispatchResult => r;

class Engine implements CallbackEngine {
  readonly node: string;
  readonly #o: ResolvedEngineOptions;
  readonly #codec: TokenCodec;
  readonly #anchors = new Map<string, ResolvedAnchor>();
  readonly #live = new Map<string, CallbackRuntime>();
  /** Exact token → active callback: a byte-identical token is one this engine minted, so no decode or HMAC. */
  readonly #byToken = new Map<string, CallbackRuntime>();
  /** The bounded set of live actors; an evicted idle one is passivated (spec 12). */
  readonly #liveActors: LRUCache<string, CallbackRuntime>;
  readonly #store: CallbackStore;
  readonly #deadlines: DeadlineQueue<CallbackRuntime | CallbackRecord>;
  readonly #idempotency = new Map<string, string>();
  /** `anchor \0 value \0 value...` → callbackId, for anchors that declare `correlate`. */
  readonly #correlation = new Map<string, string>();
  readonly #listeners = new Set<(event: EngineEvent) => void>();
  readonly #stats = new Stats();
  #seq = 0;
  #recencyTick = 0;
  #closed = false;
  readonly #inspectors = new Set<XStateInspector>();
  /** Passed to createActor only while inspectors are attached (no cost otherwise). */
  readonly #inspectAll = (event: InspectionEvent): void => {
    for (const inspector of this.#inspectors) {
      try {
        if (typeof inspector === 'function') inspector(event);
        else inspector.next?.(event);
      } catch (err) {
        this.#warn(err);
      }
    }
  };
  /** The worker pool, loaded on the first worker step so the root import stays light. */
  #pool: Promise<StepRunner> | undefined;
  #poolReady: StepRunner | undefined;

  constructor(options: CallbackEngineOptions | undefined) {
    this.#o = resolveOptions(options);
    this.node = this.#o.node;
    this.#codec = new TokenCodec(this.node, this.#o.secrets);
    this.#deadlines = new DeadlineQueue<CallbackRuntime | CallbackRecord>(
      this.#o.clock,
      (target, kind) => this.#onDeadline(target, kind),
      (err) => this.#warn(err),
    );
    this.#store = createMemoryStore({
      clock: this.#o.clock,
      maxRecords: this.#o.maxRetained,
      onRemove: (record, reason) => this.#forget(record, reason),
    });
    this.#liveActors = new LRUCache<string, CallbackRuntime>({
      max: this.#o.maxLiveActors,
      dispose: (rt, _id, reason) => {
        if (reason === 'evict') this.#passivate(rt, true);
      },
    });
    if (this.#o.inspect) this.#listeners.add(this.#o.inspect);
  }

  // ---- registration and creation -------------------------------------------------------------

  anchor(name: string, options?: AnchorOptions): void {
    this.#assertOpen();
    const anchor = resolveAnchor(name, options, this.#o);
    if (this.#anchors.has(anchor.name))
      throw new InvalidArgumentError(`anchor "${anchor.name}" is already registered`);
    this.#anchors.set(anchor.name, anchor);
  }

  async create(anchorName: string, options: CreateOptions = {}): Promise<CreatedCallback> {
    this.#assertOpen();
    const anchor = this.#anchors.get(anchorName);
    if (!anchor) throw new UnknownAnchorError(String(anchorName));
    if (typeof options !== 'object' || options === null)
      throw new InvalidArgumentError('create options must be an object');
    const tags = checkTags(options.tags);
    const idempotencyKey = checkIdempotencyKey(options.idempotencyKey);
    const idemKey =
      idempotencyKey === undefined ? undefined : `${anchor.name}\u0000${idempotencyKey}`;
    if (idemKey !== undefined) {
      const existing = this.#existingByIdempotency(idemKey, anchor);
      if (existing) return existing;
    }
    const parent =
      options.parentToken === undefined ? undefined : this.#parentFor(options.parentToken);
    const now = this.#o.clock.now();
    const deadline = deadlineAt('options.timeout', options.timeout ?? anchor.timeout, now);
    const heartbeatOpt = options.heartbeat ?? anchor.heartbeat;
    const heartbeatMs =
      heartbeatOpt === undefined ? undefined : durationMs('options.heartbeat', heartbeatOpt, now);
    if (heartbeatMs !== undefined && heartbeatMs <= 0)
      throw new InvalidArgumentError('options.heartbeat must be longer than zero');
    const retentionOpt = options.retention ?? anchor.retention;
    const retention =
      retentionOpt === true ? true : durationMs('options.retention', retentionOpt, now);
    const createData = ingestData('options.data', options.data, this.#o.maxDataBytes);
    const data = DataVersion.of(createData);

    const id = newCallbackId();
    const record: CallbackRecord = {
      id,
      token: this.#codec.mint(anchor.name, id),
      anchor: anchor.name,
      seq: this.#seq++,
      createdAt: now,
      tags,
      parentId: parent?.record.id,
      parentToken: parent?.record.token,
      idempotencyKey: idemKey,
      correlationKey: correlationKey(anchor, createData),
      deadlineAt: deadline,
      heartbeatMs,
      retention,
      status: 'create',
      data,
      children: undefined,
      terminalReport: undefined,
    };
    // No actor yet: it is activated by the first report that needs a transition (virtual actor).
    const rt = new CallbackRuntime(record, now);
    this.#live.set(id, rt);
    this.#byToken.set(record.token, rt);
    if (parent) (parent.record.children ??= []).push(id);
    if (idemKey !== undefined) this.#idempotency.set(idemKey, id);
    if (record.correlationKey !== undefined) this.#correlation.set(record.correlationKey, id);
    this.#stats.add(record.anchor, 'create');
    this.#stats.created++;
    this.#emit('created', record, undefined);
    if (deadline !== undefined) {
      rt.deadline = this.#deadlines.schedule(deadline, rt, DEADLINE);
    }
    if (heartbeatMs !== undefined)
      rt.heartbeat = this.#deadlines.schedule(now + heartbeatMs, rt, HEARTBEAT);

    const result = await new Promise<DispatchResult>((resolve, reject) => {
      this.#enqueue(rt, {
        kind: 'create',
        status: 'create',
        data: createData,
        followers: [{ resolve, reject, outcome: 'applied' }],
      });
    });
    return new CreatedAnswer(result.answer as Answer, id, anchor.attributes, record.parentToken);
  }

  #existingByIdempotency(
    key: string,
    anchor: ResolvedAnchor,
  ): Promise<CreatedCallback> | undefined {
    const id = this.#idempotency.get(key);
    if (id === undefined) return undefined;
    const rt = this.#live.get(id);
    const record = rt?.record ?? this.#store.get(id);
    if (!record) {
      this.#idempotency.delete(key);
      return undefined;
    }
    const make = () =>
      new CreatedAnswer(this.#answer(record), id, anchor.attributes, record.parentToken);
    // While the first create's step is still running, answer once the mailbox reaches this read.
    if (rt && (rt.busy || rt.pending > 0)) {
      return new Promise<DispatchResult>((resolve, reject) => {
        this.#enqueue(rt, {
          kind: 'read',
          status: 'create',
          data: EMPTY_DATA,
          followers: [{ resolve, reject, outcome: 'read' }],
        });
      }).then(make);
    }
    return Promise.resolve(make());
  }

  #parentFor(parentToken: unknown): CallbackRuntime {
    const found = this.#find(parentToken);
    if (found.kind === 'notFound') throw new ParentNotFoundError();
    const status = found.kind === 'live' ? found.rt.record.status : found.record.status;
    if (found.kind !== 'live' || isTerminal(status)) throw new ParentInactiveError(status);
    return found.rt;
  }

  // ---- call-in points ------------------------------------------------------------------------

  dispatch(message: CallbackMessage): Promise<CallbackAnswer> {
    return this.#deliver(message, toAnswer);
  }

  deliver(message: CallbackMessage): Promise<DispatchResult> {
    return this.#deliver(message, toResult);
  }

  #deliver<T>(message: CallbackMessage, map: (result: DispatchResult) => T): Promise<T> {
    if (this.#closed) return Promise.reject(new EngineClosedError());
    let parsed;
    let data: CallbackData = {};
    try {
      parsed = parseMessage(message);
      if (parsed.kind === 'report')
        data = ingestData('callbackData', parsed.data, this.#o.maxDataBytes);
    } catch (err) {
      this.#emitRaw({ type: 'rejected', at: this.#o.clock.now(), reason: (err as Error).message });
      return Promise.reject(toError(err));
    }
    if (parsed.kind === 'read') {
      const answer = this.#read(parsed.token);
      const outcome = answer.status === 'notFound' ? 'notFound' : 'read';
      return Promise.resolve(map({ answer, outcome }));
    }
    return this.#report(parsed.token, parsed.status, data, map);
  }

  /** Errors from timers and listeners: never thrown into the engine; surfaced as a process warning. */
  #warn(err: unknown): void {
    process.emitWarning(toError(err).message, {
      type: 'CallbackEngineWarning',
      code: 'CBE_W_LISTENER',
    });
  }

  #report<T>(
    token: string,
    status: CallbackStatus,
    data: CallbackData,
    map: (result: DispatchResult) => T,
  ): Promise<T> {
    this.#stats.dispatched++;
    const found = this.#find(token);
    if (found.kind === 'notFound') return this.#notFound(token, found.anchor, status).then(map);
    if (found.kind === 'retained') {
      return Promise.resolve(map(this.#settledAnswer(found.record, status, data)));
    }
    const rt = found.rt;
    if (!isTerminal(rt.record.status)) rt.lastActivity = this.#o.clock.now();
    const pending = new Pending('applied', map);
    if (status === 'cancel') {
      this.#cancelLive(rt, data, pending);
      return pending.promise();
    }
    if (
      this.#poolReady?.saturated &&
      isWorkerStep(lookupStep(this.#anchors.get(rt.record.anchor)!.next, status))
    ) {
      // Refuse before anything is applied, so the outside party can simply retry.
      return Promise.reject(new PoolSaturatedError());
    }
    this.#enqueue(rt, { kind: 'report', status, data, followers: [pending] });
    return pending.promise();
  }

  cancel(token: string, data?: Record<string, unknown>): Promise<CallbackAnswer> {
    if (this.#closed) return Promise.reject(new EngineClosedError());
    let ingested: CallbackData;
    try {
      ingested = ingestData('cancel data', data, this.#o.maxDataBytes);
    } catch (err) {
      return Promise.reject(toError(err));
    }
    const found = this.#find(token);
    if (found.kind === 'notFound') return Promise.resolve(notFoundAnswer(token));
    if (found.kind === 'retained')
      return Promise.resolve(this.#settledAnswer(found.record, 'cancel', ingested).answer);
    const pending = new Pending('applied', toAnswer);
    this.#cancelLive(found.rt, ingested, pending);
    return pending.promise();
  }

  #cancelLive(rt: CallbackRuntime, data: CallbackData, follower: Follower): void {
    if (isTerminal(rt.record.status))
      follower.resolve(this.#settledAnswer(rt.record, 'cancel', data));
    else this.#end(rt, 'cancel', data, [follower]);
  }

  get(token: string): Promise<CallbackAnswer> {
    if (this.#closed) return Promise.reject(new EngineClosedError());
    return Promise.resolve(this.#read(token));
  }

  exists(token: string): Promise<'exists' | 'notFound'> {
    if (this.#closed) return Promise.reject(new EngineClosedError());
    return Promise.resolve(this.#find(token).kind === 'notFound' ? 'notFound' : 'exists');
  }

  async wait(token: string, options: WaitOptions = {}): Promise<CallbackAnswer> {
    this.#assertOpen();
    const found = this.#find(token);
    if (found.kind === 'notFound') return notFoundAnswer(token);
    const record = found.kind === 'live' ? found.rt.record : found.record;
    const answer = await this.#waitFor(record.id, options.signal);
    if (options.children) await this.#waitChildren(record, options.signal);
    return answer;
  }

  async #waitChildren(record: CallbackRecord, signal: AbortSignal | undefined): Promise<void> {
    const children = record.children ?? [];
    await Promise.all(
      children.map(async (id) => {
        await this.#waitFor(id, signal);
        const child = this.#live.get(id)?.record ?? this.#store.get(id);
        if (child) await this.#waitChildren(child, signal);
      }),
    );
  }

  #waitFor(id: string, signal: AbortSignal | undefined): Promise<CallbackAnswer> {
    const rt = this.#live.get(id);
    if (!rt || rt.finalized) {
      const record = rt?.record ?? this.#store.get(id);
      return Promise.resolve(record ? this.#answer(record) : notFoundAnswer(''));
    }
    signal?.throwIfAborted();
    return new Promise<CallbackAnswer>((resolve, reject) => {
      const onAbort = () => {
        rt.waiters = rt.waiters?.filter((w) => w !== waiter);
        reject(toError(signal?.reason));
      };
      const waiter: Follower = {
        resolve: (r) => {
          signal?.removeEventListener('abort', onAbort);
          resolve(r.answer);
        },
        reject: (e) => {
          signal?.removeEventListener('abort', onAbort);
          reject(e);
        },
        outcome: 'read',
      };
      (rt.waiters ??= []).push(waiter);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  list(options: ListOptions = {}): ListPage {
    this.#assertOpen();
    const limit = options.limit ?? 100;
    if (!Number.isSafeInteger(limit) || limit < 1 || limit > 1000) {
      throw new InvalidArgumentError(
        `options.limit must be an integer from 1 to 1000 (got ${String(limit)})`,
      );
    }
    let after = -1;
    if (options.cursor !== undefined) {
      after = Number.parseInt(String(options.cursor), 36);
      if (!/^[0-9a-z]{1,12}$/.test(String(options.cursor)) || Number.isNaN(after)) {
        throw new InvalidArgumentError(
          `options.cursor is not a cursor from a previous page (got ${JSON.stringify(options.cursor)})`,
        );
      }
    }
    const statuses =
      options.status === undefined ? undefined : new Set<string>([options.status].flat());
    const tags = options.tags ?? [];
    const matches: CallbackRecord[] = [];
    const consider = (r: CallbackRecord) => {
      if (r.seq <= after) return;
      if (statuses && !statuses.has(r.status)) return;
      if (options.anchor !== undefined && r.anchor !== options.anchor) return;
      if (!tags.every((t) => r.tags.includes(t))) return;
      matches.push(r);
    };
    for (const rt of this.#live.values()) consider(rt.record);
    for (const r of this.#store.values()) consider(r);
    matches.sort((a, b) => a.seq - b.seq);
    const page = matches.slice(0, limit);
    const items: ListedCallback[] = page.map((r) => ({
      id: r.id,
      token: r.token,
      anchor: r.anchor,
      status: r.status,
      tags: r.tags,
      createdAt: r.createdAt,
      data: r.data.value,
    }));
    const last = page.at(-1);
    return matches.length > limit && last ? { items, cursor: last.seq.toString(36) } : { items };
  }

  callbackUrl(token: string): string {
    if (this.#o.baseUrl === undefined)
      throw new InvalidArgumentError('callbackUrl() needs the engine option baseUrl');
    if (typeof token !== 'string' || token.length === 0)
      throw new InvalidArgumentError('callbackUrl() needs a token');
    return `${this.#o.baseUrl}/callbacks/${encodeURIComponent(token)}`;
  }

  tokenOf(id: string): string | undefined {
    if (typeof id !== 'string') return undefined;
    return (this.#live.get(id)?.record ?? this.#store.get(id))?.token;
  }

  correlate(attributes: Readonly<Record<string, unknown>>): string | undefined {
    for (const anchor of this.#anchors.values()) {
      if (anchor.correlate.length === 0) continue;
      const values: string[] = [];
      for (const key of anchor.correlate) {
        const v = attributes[key.toLowerCase()];
        if (typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean') break;
        values.push(String(v));
      }
      if (values.length !== anchor.correlate.length) continue;
      const id = this.#correlation.get(`${anchor.name}\u0000${values.join('\u0000')}`);
      const token = id === undefined ? undefined : this.tokenOf(id);
      if (token !== undefined) return token;
    }
    return undefined;
  }

  eventStatus(anchor: string, type: string): DispatchStatus | undefined {
    return this.#anchors.get(anchor)?.eventTypes[type];
  }

  stats(): EngineStats {
    return this.#stats.snapshot(this.#live.size, this.#store.size, this.#liveActors.size);
  }

  inspect(inspector: XStateInspector): () => void {
    const ok =
      typeof inspector === 'function' ||
      (typeof inspector === 'object' && inspector !== null && typeof inspector.next === 'function');
    if (!ok)
      throw new InvalidArgumentError('inspector must be a function or an observer with next()');
    this.#inspectors.add(inspector);
    for (const rt of this.#live.values())
      if (rt.actor && !rt.busy && rt.pending === 0) this.#passivate(rt);
    return () => void this.#inspectors.delete(inspector);
  }

  subscribe(listener: (event: EngineEvent) => void): () => void {
    if (typeof listener !== 'function')
      throw new InvalidArgumentError('listener must be a function');
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#deadlines.close();
    const closed = new EngineClosedError();
    const inFlight: Promise<unknown>[] = [];
    for (const rt of this.#live.values()) {
      // 'drain' lets pool steps finish; everything else is aborted.
      if (!(this.#o.pool.close === 'drain' && rt.step?.onPool)) rt.step?.abort.abort(closed);
      if (rt.stepPromise) inFlight.push(rt.stepPromise);
      for (const job of rt.drainAll()) for (const f of job.followers) f.reject(closed);
      for (const w of rt.waiters ?? []) w.reject(closed);
      rt.waiters = undefined;
    }
    await Promise.allSettled(inFlight);
    // Stop actors only after in-flight steps settled: their results may still be merged.
    for (const rt of this.#live.values()) rt.actor?.stop();
    if (this.#pool) await (await this.#pool).close();
    this.#live.clear();
    this.#byToken.clear();
    this.#store.clear();
    this.#idempotency.clear();
    this.#correlation.clear();
  }

  // ---- lookup -------------------------------------------------------------------------------

  #find(token: unknown): Found {
    const hit = typeof token === 'string' ? this.#byToken.get(token) : undefined;
    if (hit) return { kind: 'live', rt: hit };
    const fields = decodeToken(token);
    if (!fields) {
      this.#stats.notFound++;
      this.#emitRaw({ type: 'rejected', at: this.#o.clock.now(), reason: 'malformed token' });
      return { kind: 'notFound', anchor: undefined };
    }
    const rt = this.#live.get(fields.id);
    const record = rt?.record ?? this.#store.get(fields.id);
    // A byte-identical token is one this engine minted; anything else must verify its HMAC.
    const authentic =
      record !== undefined && fields.node === this.node
        ? safeEqual(token as string, record.token) ||
          (fields.anchor === record.anchor && this.#codec.verify(fields))
        : this.#codec.verify(fields);
    if (!authentic) {
      this.#stats.forgedTokens++;
      this.#stats.notFound++;
      this.#emitRaw({
        type: 'rejected',
        at: this.#o.clock.now(),
        reason: 'token signature does not verify',
      });
      return { kind: 'notFound', anchor: undefined };
    }
    if (rt) return { kind: 'live', rt };
    if (record) return { kind: 'retained', record };
    this.#stats.notFound++;
    return { kind: 'notFound', anchor: fields.anchor };
  }

  #read(token: string): Answer {
    const found = this.#find(token);
    if (found.kind === 'notFound') return notFoundAnswer(token);
    return this.#answer(found.kind === 'live' ? found.rt.record : found.record);
  }

  #answer(record: CallbackRecord): Answer {
    const anchor = this.#anchors.get(record.anchor);
    return new Answer(
      record.status,
      record.token,
      record.data,
      anchor?.attributes,
      record.id,
      record.parentToken,
    );
  }

  /** Answer to a report reaching a terminal callback: a replay of its terminal report, or a conflict. */
  #settledAnswer(
    record: CallbackRecord,
    status: CallbackStatus,
    data: CallbackData,
  ): DispatchResult {
    const replay = status === record.status && record.terminalReport === canonicalJson(data);
    return { answer: this.#answer(record), outcome: replay ? 'replayed' : 'conflict' };
  }

  /** A signed token whose record is gone (or unknown): resume the anchor on `notFound`. */
  #notFound(
    token: string,
    anchorName: string | undefined,
    reported: string,
  ): Promise<DispatchResult> {
    // Malformed and forged tokens were reported as `rejected`; a signed one whose record is gone is a dispatch.
    if (anchorName !== undefined) {
      this.#emitRaw({
        type: 'dispatched',
        at: this.#o.clock.now(),
        anchor: anchorName,
        reported,
        outcome: 'notFound',
        status: 'notFound',
      });
    }
    const anchor = anchorName === undefined ? undefined : this.#anchors.get(anchorName);
    const step = anchor && lookupStep(anchor.next, 'notFound');
    const answer = notFoundAnswer(token);
    if (!step || !anchor) return Promise.resolve({ answer, outcome: 'notFound' });
    const input: StepInput = {
      status: 'notFound',
      token,
      id: decodeToken(token)?.id ?? '',
      data: answer.data,
      report: EMPTY_DATA,
      parentToken: undefined,
      attributes: buildAttributes(
        anchor.attributes,
        'notFound',
        token,
        undefined,
        answer.data,
        undefined,
      ),
      signal: new AbortController().signal,
    };
    return Promise.resolve()
      .then(() => (isWorkerStep(step) ? this.#runWorker(step, input, input.signal) : step(input)))
      .then(
        (out) => ({
          answer: new Answer(
            'notFound',
            token,
            DataVersion.of(this.#safeIngest(out) ?? EMPTY_DATA),
            anchor.attributes,
          ),
          outcome: 'notFound' as const,
        }),
        () => ({ answer, outcome: 'notFound' as const }),
      );
  }

  #safeIngest(out: StepOutput): CallbackData | undefined {
    try {
      return out ? ingestData('step output', out, this.#o.maxDataBytes) : undefined;
    } catch {
      return undefined;
    }
  }

  // ---- the mailbox --------------------------------------------------------------------------

  #enqueue(rt: CallbackRuntime, job: Job): void {
    rt.push(job);
    if (!rt.busy) this.#drain(rt);
  }

  /** Processes jobs one at a time; pauses while a step is pending and resumes when it settles. */
  #drain(rt: CallbackRuntime): void {
    rt.busy = true;
    for (let job = rt.shift(); job; job = rt.shift()) {
      let pending: Promise<void> | undefined;
      try {
        pending = this.#process(rt, job);
      } catch (err) {
        for (const f of job.followers) f.reject(toError(err));
      }
      if (pending) {
        rt.stepPromise = pending;
        const next = () => {
          rt.stepPromise = undefined;
          if (!this.#closed) this.#drain(rt);
        };
        pending.then(next, (err: unknown) => {
          this.#warn(err);
          next();
        });
        return;
      }
    }
    rt.busy = false;
    if (rt.finalized && !this.#closed) this.#retire(rt);
    else if (rt.evictPending) this.#passivate(rt);
  }

  #process(rt: CallbackRuntime, job: Job): Promise<void> | undefined {
    const record = rt.record;
    if (job.kind === 'terminal')
      return this.#runStep(rt, job.status, job, () => this.#finalize(rt, job));
    if (job.kind === 'create')
      return this.#runStep(rt, 'create', job, () => this.#answerJob(rt, job));
    if (job.kind === 'read') return void this.#answerJob(rt, job);
    if (isTerminal(record.status)) {
      const result = this.#settledAnswer(record, job.status, job.data);
      for (const f of job.followers) f.resolve(result);
      this.#emit('dispatched', record, { reported: job.status, outcome: result.outcome });
      return undefined;
    }
    if (isTerminal(job.status)) {
      // complete / error: the transition jumps to the front; this report is answered after its step.
      this.#emit('dispatched', record, { reported: job.status, outcome: 'applied' });
      this.#end(rt, job.status, job.data, job.followers);
      return undefined;
    }
    const from = record.status;
    const actor = this.#activate(rt);
    actor.send({ type: STATUS_EVENT[job.status as keyof typeof STATUS_EVENT], data: job.data });
    const snapshot = actor.getSnapshot();
    const to = statusOf(snapshot.value);
    const applied = to !== from || job.status === 'progress';
    this.#emit('dispatched', record, {
      reported: job.status,
      outcome: applied ? 'applied' : 'ignored',
    });
    if (!applied) {
      const result: DispatchResult = { answer: this.#answer(record), outcome: 'ignored' };
      for (const f of job.followers) f.resolve(result);
      return undefined;
    }
    this.#setStatus(rt, to, snapshot.context.data);
    return this.#runStep(rt, to, job, () => this.#answerJob(rt, job));
  }

  #answerJob(rt: CallbackRuntime, job: Job): void {
    const answer = this.#answer(rt.record);
    for (const f of job.followers) f.resolve({ answer, outcome: f.outcome });
  }

  /**
   * Runs the anchor's step for `status` (if any), merges its output, then calls `done`.
   * Returns a promise only when the step is asynchronous.
   */
  #runStep(
    rt: CallbackRuntime,
    status: CallbackStatus,
    job: Job,
    done: () => void,
  ): Promise<void> | undefined {
    const anchor = this.#anchors.get(rt.record.anchor)!;
    const step = lookupStep(anchor.next, status);
    if (!step) return void done();
    const abort = new LazyAbort();
    rt.step = { status, abort, onPool: isWorkerStep(step) };
    const record = rt.record;
    const version = record.data;
    const input: StepInput = {
      status,
      token: record.token,
      id: record.id,
      get data() {
        return version.value;
      },
      report: job.data,
      parentToken: record.parentToken,
      get attributes() {
        return buildAttributes(
          anchor.attributes,
          record.status,
          record.token,
          record.id,
          version.value,
          record.parentToken,
        );
      },
      get signal() {
        return abort.signal;
      },
    };
    const settle = (ok: boolean, value: unknown) => {
      rt.step = undefined;
      if (ok) this.#stepDone(rt, status, value as StepOutput, job, done);
      else this.#stepFailed(rt, status, value, job, done);
    };
    let out: StepOutput | Promise<StepOutput>;
    try {
      out = isWorkerStep(step) ? this.#runWorker(step, input, abort.signal) : step(input);
    } catch (err) {
      return void settle(false, err);
    }
    if (!isPromiseLike(out)) return void settle(true, out);
    return Promise.resolve(out).then(
      (v) => settle(true, v),
      (e: unknown) => settle(false, e),
    );
  }

  #stepDone(
    rt: CallbackRuntime,
    status: CallbackStatus,
    out: StepOutput,
    job: Job,
    done: () => void,
  ): void {
    const record = rt.record;
    // A step preempted by cancel/timeout/orphan: its output no longer applies.
    if (isTerminal(record.status) && !isTerminal(status)) return void done();
    if (out !== undefined && out !== null) {
      let data: CallbackData;
      try {
        data = ingestData(`output of the "${status}" step`, out, this.#o.maxDataBytes);
      } catch (err) {
        return this.#stepFailed(rt, status, err, job, done);
      }
      if (isTerminal(record.status)) {
        // The actor is done once final; the record carries the terminal step's output.
        record.data = record.data.with(data);
      } else {
        const actor = this.#activate(rt);
        actor.send({ type: 'MERGE', data });
        record.data = actor.getSnapshot().context.data;
      }
    }
    done();
  }

  #stepFailed(
    rt: CallbackRuntime,
    status: CallbackStatus,
    err: unknown,
    job: Job,
    done: () => void,
  ): void {
    if (this.#closed) {
      const closed = new EngineClosedError();
      for (const f of job.followers.splice(0)) f.reject(closed);
      return void done();
    }
    // A step aborted because cancel/timeout/orphan preempted it did not fail.
    if (isTerminal(rt.record.status) && !isTerminal(status)) return void done();
    const message = toError(err).message;
    this.#stats.stepFailures++;
    this.#emit('stepFailed', rt.record, { message, reported: status });
    if (isTerminal(rt.record.status)) return void done();
    // The callback moves to error; this job's followers are answered after the error step.
    this.#end(rt, 'error', { message }, job.followers.splice(0));
    done();
  }

  #runWorker(step: WorkerStep, input: StepInput, signal: AbortSignal): Promise<StepOutput> {
    const { status, token, id, data, report, parentToken, attributes } = input;
    const cloned = { status, token, id, data, report, parentToken, attributes };
    // Once loaded, call the pool in the same tick, so `saturated` counts every task at once.
    if (this.#poolReady) return this.#poolReady.run(step, cloned, signal);
    this.#pool ??= import('./pool/worker-pool.js').then(
      (m) => (this.#poolReady = m.createWorkerPool(this.#o.pool)),
    );
    return this.#pool.then((pool) => pool.run(step, cloned, signal));
  }

  // ---- virtual actors ----------------------------------------------------------------------

  /** The callback's live actor, activated from its record if it was passivated (or never started). */
  #activate(rt: CallbackRuntime): Actor<LifecycleMachine> {
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
      ...(this.#inspectors.size > 0 && { inspect: this.#inspectAll, id: rt.record.id }),
    });
    actor.start();
    rt.actor = actor;
    this.#stats.activations++;
    this.#liveActors.set(rt.record.id, rt);
    return actor;
  }

  /**
   * Stops a live actor; its record keeps status and data, so nothing is lost.
   * `evicted`: called from the live set's own eviction, which must not be re-entered.
   */
  #passivate(rt: CallbackRuntime, evicted = false): void {
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

  // ---- terminal transitions -----------------------------------------------------------------

  /**
   * Moves an active callback to a terminal status at once: the transition is applied now, a
   * running step is aborted, timers stop, active children are orphaned, and a terminal job
   * (terminal step, then finalize) goes to the front of the mailbox.
   *
   * @returns the terminal job, so callers can wait for its answer.
   */
  #end(
    rt: CallbackRuntime,
    status: TerminalStatus,
    data: CallbackData,
    followers: Follower[],
  ): void {
    this.#applyTerminal(rt, status, data, followers);
    // Orphan the whole subtree iteratively: deep trees must not grow the stack.
    const ended = [rt];
    for (let i = 0; i < ended.length; i++) {
      const parent = ended[i]!;
      for (const childId of parent.record.children ?? []) {
        const child = this.#live.get(childId);
        if (!child || isTerminal(child.record.status)) continue;
        this.#applyTerminal(
          child,
          'orphan',
          { reason: 'parent-inactive', parentStatus: parent.record.status },
          [],
        );
        ended.push(child);
      }
    }
    for (const r of ended) if (!r.busy && !this.#closed) this.#drain(r);
  }

  #applyTerminal(
    rt: CallbackRuntime,
    status: TerminalStatus,
    data: CallbackData,
    followers: Follower[],
  ): void {
    const record = rt.record;
    const actor = this.#activate(rt);
    actor.send({ type: STATUS_EVENT[status], data });
    this.#setStatus(rt, status, actor.getSnapshot().context.data);
    record.terminalReport = canonicalJson(data);
    this.#deadlines.cancel(rt.deadline);
    this.#deadlines.cancel(rt.heartbeat);
    rt.deadline = rt.heartbeat = undefined;
    if (status === 'timeout') {
      this.#stats.timedOut++;
      this.#emit('timedOut', record, {
        reason: typeof data.reason === 'string' ? data.reason : 'deadline',
      });
    } else if (status === 'orphan') {
      this.#stats.orphaned++;
      this.#emit('orphaned', record, undefined);
    }
    const running = rt.step;
    if (running && !isTerminal(running.status)) {
      const reason = new Error(`callback ended with status "${status}"`);
      reason.name = 'AbortError';
      running.abort.abort(reason);
    }
    rt.pushFront({ kind: 'terminal', status, data, followers });
  }

  #finalize(rt: CallbackRuntime, job: Job): void {
    rt.finalized = true;
    this.#passivate(rt);
    this.#answerJob(rt, job);
    const waiters = rt.waiters;
    rt.waiters = undefined;
    if (waiters) this.#answerJob(rt, { ...job, followers: waiters });
  }

  /** The mailbox of a finalized callback drained: keep its record for its retention. */
  #retire(rt: CallbackRuntime): void {
    const record = rt.record;
    this.#live.delete(record.id);
    this.#byToken.delete(record.token);
    // Fold the patch log into one frozen object: retained records hold no history.
    record.data = DataVersion.of(record.data.value);
    const now = this.#o.clock.now();
    if (record.retention === true) return void this.#store.set(record, undefined);
    if (record.retention <= 0) return this.#forget(record, 'retention');
    this.#store.set(record, record.retention);
    this.#deadlines.schedule(now + record.retention, record, RETENTION);
  }

  /** A record leaves the engine for good. */
  #forget(record: CallbackRecord, reason: string): void {
    const corrKey = record.correlationKey;
    if (corrKey !== undefined && this.#correlation.get(corrKey) === record.id)
      this.#correlation.delete(corrKey);
    if (
      record.idempotencyKey !== undefined &&
      this.#idempotency.get(record.idempotencyKey) === record.id
    ) {
      this.#idempotency.delete(record.idempotencyKey);
    }
    this.#stats.remove(record.anchor, record.status);
    this.#stats.evicted++;
    this.#emit('evicted', record, { reason });
  }

  #onDeadline(target: CallbackRuntime | CallbackRecord, kind: number): void {
    if (kind === DEADLINE)
      this.#end(target as CallbackRuntime, 'timeout', { reason: 'deadline' }, []);
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
    const hb = rt.record.heartbeatMs!;
    const due = rt.lastActivity + hb;
    if (due > this.#o.clock.now()) {
      rt.heartbeat = this.#deadlines.schedule(due, rt, HEARTBEAT);
      return;
    }
    rt.heartbeat = undefined;
    this.#end(rt, 'timeout', { reason: 'heartbeat' }, []);
  }

  #setStatus(rt: CallbackRuntime, to: CallbackStatus, data: DataVersion): void {
    const record = rt.record;
    const from = record.status;
    record.data = data;
    if (from === to) return;
    record.status = to;
    this.#stats.move(record.anchor, from, to);
    this.#emit('transitioned', record, { from });
  }

  // ---- events -------------------------------------------------------------------------------

  #emit(
    type: EngineEventType,
    record: CallbackRecord,
    extra: Omit<Partial<EngineEvent>, 'type' | 'at' | 'id' | 'anchor' | 'status'> | undefined,
  ): void {
    if (this.#listeners.size === 0) return;
    this.#emitRaw({
      type,
      at: this.#o.clock.now(),
      id: record.id,
      anchor: record.anchor,
      status: record.status,
      ...extra,
    });
  }

  #emitRaw(event: EngineEvent): void {
    for (const listener of this.#listeners) {
      try {
        listener(event);
      } catch (err) {
        this.#warn(err);
      }
    }
  }

  #assertOpen(): void {
    if (this.#closed) throw new EngineClosedError();
  }
}

/**
 * Creates a callback engine.
 *
 * @param options - node name, secrets, default timeout/heartbeat/retention, clock, inspect hook.
 * @returns the engine.
 * @throws {@link InvalidArgumentError} naming the first invalid option.
 * @example
 * ```ts
 * const engine = createCallbackEngine({ node: 'orders-1', secrets: [process.env.CALLBACK_SECRET!] });
 * engine.anchor('payment', { next: { complete: (cb) => console.log('paid', cb.data) } });
 * const cb = await engine.create('payment', { data: { orderId: 7 } });
 * await engine.dispatch({ type: 'CALLBACK', callbackToken: cb.token, callbackStatus: 'complete' });
 * ```
 */
export function createCallbackEngine(options?: CallbackEngineOptions): CallbackEngine {
  return new Engine(options);
}
