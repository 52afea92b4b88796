/**
 * `createCallbackEngine()`: the facade users touch first.
 *
 * Every callback is its own XState actor with a serialized mailbox: reports to
 * one callback are applied one at a time in arrival order, and its steps never
 * overlap; different callbacks proceed concurrently.
 *
 * @module
 */

import type { Clock } from './clock.js';
import { Answer, CreatedAnswer, notFoundAnswer } from './answer.js';
import { Replica, type ReplicaHost } from './cluster/replica.js';
import {
  admitPatch,
  DataVersion,
  EMPTY_DATA,
  ingestData,
  patchBytesBound,
  type CallbackData,
} from './data.js';
import { deadlineAt, durationMs } from './duration.js';
import {
  DuplicateKeyError,
  EngineClosedError,
  InvalidArgumentError,
  InvalidMessageError,
  NothingToRetryError,
  PoolSaturatedError,
  ParentInactiveError,
  ParentNotFoundError,
  UnknownAnchorError,
  toError,
} from './errors.js';
import {
  DISPATCH_STATUSES,
  isDispatchStatus,
  isTerminal,
  type CallbackStatus,
  type DispatchStatus,
} from './lifecycle/statuses.js';
import { anchorDiagram, type DiagramOptions } from './lifecycle/anchor-diagram.js';
import { parseMessage, type ParsedMessage, type ReadAction } from './message.js';
import {
  checkCreateKeys,
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
import { CallbackRuntime, Pending, type Follower, type Job } from './registry/callback-runtime.js';
import { EarlyEvents } from './registry/early-events.js';
import { SharedEarlyEvents, type ClaimedEarly } from './cluster/early-events.js';
import { EventHub, type XStateInspector } from './registry/event-hub.js';
import { listStoredAsync, type ListOptions } from './registry/list-callbacks.js';
import { MailboxProcessor, type EndCause } from './registry/mailbox-processor.js';
import type { CallbackRecord } from './registry/record.js';
import { decodeRecord } from './registry/record-codec.js';
import { CallbackRegistry } from './registry/registry.js';
import { Stats } from './registry/stats.js';
import { checkSchema, reportSchema, type ReportSchemas, type StandardSchemaV1 } from './schema.js';
import { Relay, type RelayTokenOptions } from './relay/relay.js';
import { isPostgresStore, type PostgresStore } from './store/postgres.js';
import {
  isTracing,
  Telemetry,
  withTraceContext,
  type Measurement,
  type Span,
  type TraceContext,
} from './telemetry.js';
import { decodeToken, newCallbackId, TokenCodec } from './token.js';
import {
  anchorHandle,
  type AnchorHandle,
  type AnchorTypes,
  type SchemaTypes,
  type TypedAnchorOptions,
  type TypedStepMap,
} from './typed-anchor.js';
import type { HistoryOptions, HistoryPage } from './history.js';
import { toHistory } from './mailbox/journal.js';
import type {
  CallbackAnswer,
  CallbackDetails,
  CallbackMessage,
  CreatedCallback,
  DispatchResult,
  EarlyEventInput,
  EarlyHoldResult,
  EngineEvent,
  EngineStats,
  ListPage,
} from './types.js';

export type { ListOptions } from './registry/list-callbacks.js';
export type { RelayTokenOptions } from './relay/relay.js';
export type { XStateInspector } from './registry/event-hub.js';

/** Options of {@link CallbackEngine.wait}. */
export interface WaitOptions {
  /** Aborting it rejects the wait with the signal's reason. */
  signal?: AbortSignal;
  /** Also wait until every child (and their children) is terminal. @default false */
  children?: boolean;
}

/** The callback engine. Create one with {@link createCallbackEngine}. */
export interface CallbackEngine {
  /** This engine's node name (in every token it mints). */
  readonly node: string;
  /** The engine's time source (the `clock` option); the HTTP layer checks signature timestamps on it. */
  readonly clock: Clock;
  /** The public base URL of the Dispatch Callback Service (the `baseUrl` option), if given. */
  readonly baseUrl: string | undefined;
  /**
   * Resolves once the engine is ready: at once with the memory store; with a durable store,
   * once recovery is done (every stored callback is back, deadlines re-armed). Creates and
   * reports that arrive earlier wait for it instead of answering `notFound`.
   * @throws `StoreLockedError`, `StoreIncompatibleError` or `StoreUnavailableError` if the
   *   store cannot be opened (every later call rejects with the same error).
   */
  ready(): Promise<void>;
  /**
   * Registers an anchor: what runs when its callbacks change status (spec 6). The data types come
   * from its `data` and `reports` Standard Schemas (which also check the data at run time).
   * @returns the anchor's handle: `create({ data })` and `report()` type-checked, steps typed.
   * @throws {@link InvalidArgumentError} for a bad or duplicate name or a bad option.
   * @example
   * ```ts
   * const order = engine.anchor('order', {
   *   data: z.object({ orderId: z.number() }),
   *   reports: { progress: z.object({ pct: z.number() }) },
   *   next: { progress: (cb) => console.log(cb.data.orderId, cb.report.pct) },
   * });
   * await order.create({ data: { orderId: 1 } });
   * ```
   */
  anchor<
    const TData extends StandardSchemaV1 | undefined = undefined,
    const TReports extends ReportSchemas | undefined = undefined,
  >(
    name: string,
    options?: Omit<AnchorOptions, 'next' | 'data' | 'reports'> & {
      data?: TData;
      reports?: TReports;
      next?: TypedStepMap<SchemaTypes<TData, TReports>>;
    },
  ): AnchorHandle<SchemaTypes<TData, TReports>>;
  /**
   * Registers an anchor typed by its type argument:
   * `engine.anchor<{ data: { orderId: number }; reports: { progress: { pct: number } } }>('order', ...)`.
   * Types only: nothing is checked at run time unless schemas are given too.
   */
  anchor<T extends AnchorTypes>(name: string, options?: TypedAnchorOptions<T>): AnchorHandle<T>;
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
  /** Whether a token names a known callback (for a relayed token: at its origin). */
  exists(token: string): Promise<'exists' | 'notFound'>;
  /**
   * Resolves with the final answer once the callback is terminal; event-driven, no cap.
   * @throws {@link InvalidArgumentError} for a relayed (wrapped) token: its callback lives at the
   *   origin, which has no event stream for it; read it with {@link CallbackEngine.get}.
   */
  wait(token: string, options?: WaitOptions): Promise<CallbackAnswer>;
  /** Caller-side cancel: takes effect at once, aborting a running step (spec 3). */
  cancel(token: string, data?: Record<string, unknown>): Promise<CallbackAnswer>;
  /**
   * The channel hop (spec 4): wraps a token received from another engine (the origin) into a
   * token of this engine, `{ useTransport: true, node, anchor, id, transport: [{ url, token }],
   * sig }`, to hand to a party that reaches this engine but not the origin. A report, read,
   * `exists` or `cancel` with the wrapped token is forwarded over HTTP to the origin's
   * Dispatch Callback Service (`POST {url}/callbacks`, `GET {url}/callbacks/{token}`), one at a
   * time per callback, in arrival order, and the origin's answer comes back with the wrapped
   * token: the far party learns of a `cancel` or `timeout` at the origin.
   *
   * Nothing is stored: the hop travels in the token, under this engine's HMAC over every field
   * (the URL cannot be changed: a tampered token is `notFound` and counted as forged), so any
   * engine with the same node name and secrets forwards it. Relaying is deterministic, and a
   * wrapped token can be relayed again (each engine forwards to the previous one).
   *
   * An origin that cannot be reached or answers 5xx: `OriginUnavailableError` (503,
   * retryable; nothing was applied here, so a retry loses nothing). An origin's 4xx error:
   * `OriginRefusedError` carrying the origin's status and `{ code, message }`.
   *
   * @param token - the origin's token (as it handed it out; not verified here: only the origin can).
   * @param options - `to`: the origin's callback URL for this token, or its base URL.
   * @returns the wrapped token.
   * @throws {@link InvalidArgumentError} for a malformed token, a `to` that is not a plain http(s)
   *   URL (credentials, query or fragment are refused), or a wrapped token that would be longer
   *   than `MAX_TOKEN_LENGTH` (4096) characters.
   * @example
   * ```ts
   * const wrapped = engine.relay(originToken, { to: 'https://orders.internal/hooks' });
   * await engine.dispatch({ type: 'CALLBACK', callbackToken: wrapped, callbackStatus: 'start' });
   * ```
   */
  relay(token: string, options: RelayTokenOptions): string;
  /**
   * Runs a callback's failed step again. Today that is the step of its final status which failed
   * after the callback became terminal (its `complete` step threw, say): it runs through the
   * callback's mailbox with the report that ended it, its output is merged and `stepError`
   * cleared; if it fails again, the answer carries the new `stepError`.
   * @param tokenOrId - the callback's token or its callbackId.
   * @returns the answer once the step settled (and, with a durable store, its effect committed).
   * @throws (rejects) {@link NothingToRetryError} (409) when the callback is unknown, still
   *   active, or has no failed final step; {@link InvalidArgumentError} with `postgresStore()`
   *   (not supported there yet); {@link EngineClosedError}.
   * @example
   * ```ts
   * const answer = await engine.retryStep(cb.id);
   * if (answer.stepError === undefined) console.log('the complete step went through this time');
   * ```
   */
  retryStep(tokenOrId: string): Promise<CallbackAnswer>;
  /**
   * A callback's record by id, for admin views (the dashboard): status, data, timings, parent
   * and children, the latest step error. Works with every store.
   * @returns its details, or `undefined` if no callback has this id (or its record was removed).
   */
  details(id: string): Promise<CallbackDetails | undefined>;
  /**
   * A page of a callback's history, oldest entry first: every report it received (with its
   * data, outcome and deduplication key), every step owed and each try's outcome (output or
   * error, attempt, duration), retries, its deadline or heartbeat passing, a cancel, its
   * orphaning. With a durable store it is read from the store, so it survives restarts and is
   * the same from every replica; it is kept until the callback's retention ends.
   * @param tokenOrId - the callback's token (verified) or its callbackId.
   * @returns the page; an unknown callback, or one whose retention ended, has an empty history.
   * @throws (rejects) {@link InvalidArgumentError} for a bad `cursor` or `limit`;
   *   `StoreUnavailableError` if the store cannot be read; {@link EngineClosedError}.
   * @example
   * ```ts
   * for (let page = await engine.history(token); ; page = await engine.history(token, { cursor: page.cursor })) {
   *   for (const e of page.entries) console.log(new Date(e.at).toISOString(), e.kind, e.status, e.data);
   *   if (page.cursor === undefined) break;
   * }
   * ```
   */
  history(tokenOrId: string, options?: HistoryOptions): Promise<HistoryPage>;
  /**
   * Pages of callbacks in creation order.
   * @throws {@link InvalidArgumentError} with `postgresStore()`, whose reads are asynchronous:
   *   use {@link CallbackEngine.listAsync}.
   */
  list(options?: ListOptions): ListPage;
  /** Pages of callbacks in creation order; works with every store (from any replica). */
  listAsync(options?: ListOptions): Promise<ListPage>;
  /** Counters by status and anchor (spec 13). */
  stats(): EngineStats;
  /**
   * Listens to measurements (dispatch latency, step duration, commit latency and size), for
   * metrics exporters such as `createMetrics()` from `callback-engine/metrics`. Nothing is
   * measured while nobody listens.
   * @returns the function that stops listening.
   */
  onMeasure(listener: (m: Measurement) => void): () => void;
  /** Listens to engine events; returns the function that stops listening. */
  subscribe(listener: (event: EngineEvent) => void): () => void;
  /**
   * Attaches an XState inspector (XState's inspection API: a function or an observer with
   * `next`, such as `createWebSocketInspector({ url }).inspect` from `@statelyai/inspect` in Node). Every
   * callback actor activated from now on reports to it; idle live actors are passivated so
   * their next activation is inspected too.
   * @returns the function that detaches it.
   */
  inspect(inspector: XStateInspector): () => void;
  /**
   * An anchor's diagram: the callback lifecycle annotated with what this anchor does on each
   * status (the step that runs and the `next` entry it comes from, its retry policy) and its
   * deadline and heartbeat.
   * @param anchor - a registered anchor's name.
   * @param options - `format`: `mermaid` (default), `svg`, or `json` (a machine config that
   *   XState's `createMachine()` builds and Stately Studio imports, with the annotations as
   *   state descriptions).
   * @returns the diagram as text.
   * @throws {@link UnknownAnchorError} if no anchor has this name; {@link InvalidArgumentError}
   *   for an unknown format.
   * @example
   * ```ts
   * writeFileSync('order.svg', engine.diagram('order', { format: 'svg' }));
   * ```
   */
  diagram(anchor: string, options?: DiagramOptions): string;
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
  /**
   * Like {@link CallbackEngine.tokenOf} and {@link CallbackEngine.correlate}, for every store:
   * with `postgresStore()` it reads the database, so it finds callbacks of every replica.
   */
  findToken(
    query: { readonly id: string } | { readonly attributes: Readonly<Record<string, unknown>> },
  ): Promise<string | undefined>;
  /** The status an anchor's `eventTypes` maps a CloudEvent type to, or `undefined`. */
  eventStatus(anchor: string, type: string): DispatchStatus | undefined;
  /**
   * Offers a CloudEvent that found no callback to the anchors that opted in to early events
   * (`early`): the first registered such anchor whose `correlate` keys the event carries and
   * whose status resolves (`status`, else the anchor's `eventTypes`) holds it until the
   * callback with that correlation key is created (which applies it before `create()`
   * resolves) or its retention passes. With a durable store it resolves once the event is
   * stored. A redelivery (same `dedupKey`) is held once.
   * @returns `queued`, `found` (a callback with the key exists now: dispatch to it), or
   *   `unmatched` (answer `notFound`).
   * @throws `EarlyEventsFullError` (503, retryable) when the anchor's hold is full;
   *   `PayloadTooLargeError`, `InvalidDataError`, `InvalidMessageError` for a bad event;
   *   `StoreUnavailableError` if it could not be stored; {@link EngineClosedError}.
   */
  holdEarly(event: EarlyEventInput): Promise<EarlyHoldResult>;
  /** Stops every timer and actor; later calls reject with {@link EngineClosedError}. */
  close(): Promise<void>;
}

/**
 * The correlation index key of a callback (`anchor \0 value \0 value...`), if its anchor declares
 * `correlate` and `valueOf` gives a scalar for every correlated key.
 */
function correlationKey(
  anchor: ResolvedAnchor,
  valueOf: (key: string) => unknown,
): string | undefined {
  if (anchor.correlate.length === 0) return undefined;
  const values: string[] = [];
  for (const key of anchor.correlate) {
    const v = valueOf(key);
    if (typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean') return undefined;
    values.push(String(v));
  }
  return `${anchor.name}\u0000${values.join('\u0000')}`;
}

const toAnswer = (r: DispatchResult): CallbackAnswer => r.answer;
const READ_ACTIONS: ReadonlySet<string> = new Set(['getCallback', 'exists']);

/** The answer to a read action: `getCallback` as is; `exists` says `exists` with no data. */
function readAnswer(answer: CallbackAnswer, action: ReadAction): CallbackAnswer {
  if (action === 'getCallback' || answer.status === 'notFound') return answer;
  return new Answer('exists', answer.token, DataVersion.EMPTY);
}
const toResult = (r: DispatchResult): DispatchResult => r;

class Engine implements CallbackEngine {
  readonly node: string;
  readonly clock: Clock;
  readonly baseUrl: string | undefined;
  readonly #o: ResolvedEngineOptions;
  readonly #codec: TokenCodec;
  readonly #anchors = new Map<string, ResolvedAnchor>();
  readonly #stats = new Stats();
  readonly #events: EventHub;
  readonly #registry: CallbackRegistry;
  readonly #mailboxes: MailboxProcessor;
  #seq = 0;
  #closed = false;
  readonly #telemetry: Telemetry;
  /** Whether an OpenTelemetry SDK records spans (checked per create/dispatch; cheap). */
  get #tracing(): boolean {
    return isTracing();
  }
  /** The context of the dispatch span being delivered (synchronous part only), for its job. */
  #traceCtx: TraceContext | undefined;
  /** Whether some anchor has report schemas (else reports skip the schema path). */
  #checksReports = false;
  /** Per token: the turn of the last report that waits for an asynchronous schema check. */
  readonly #gates = new Map<string, Promise<void>>();
  /** The store of several replicas (`postgresStore()`), and this engine's part in them. */
  readonly #pg: PostgresStore | undefined;
  readonly #replica: Replica | undefined;
  /** CloudEvents held for callbacks not created yet (anchors with `early`). */
  readonly #early: EarlyEvents;
  /** With `postgresStore()`: early events in the shared table, seen by every replica. */
  readonly #shared: SharedEarlyEvents | undefined;
  #earlyOn = false;
  /** Forwarding of relayed (wrapped) tokens to their origins. */
  readonly #relay: Relay;
  /** Recovery from the store: settled once the engine can answer. */
  readonly #ready: Promise<void>;
  #isReady = false;
  #readyError: Error | undefined;
  #closing: Promise<void> | undefined;

  constructor(options: CallbackEngineOptions | undefined) {
    this.#o = resolveOptions(options);
    this.node = this.#o.node;
    this.clock = this.#o.clock;
    this.baseUrl = this.#o.baseUrl;
    const store = this.#o.store;
    const pg = (this.#pg = isPostgresStore(store) ? store : undefined);
    // Replicas share secrets: a token minted by any of them verifies on every one.
    this.#codec = new TokenCodec(this.node, this.#o.secrets, { anyNode: pg !== undefined });
    this.#events = new EventHub(this.#o.clock, this.#o.logger);
    this.#telemetry = this.#events.telemetry;
    this.#registry = new CallbackRegistry({
      options: this.#o,
      codec: this.#codec,
      stats: this.#stats,
      events: this.#events,
      onTimeout: (rt, reason) =>
        this.#mailboxes.end(rt, 'timeout', { reason }, [], { kind: 'timedOut', reason }),
      onInvalidated: (rt, err) => this.#mailboxes.invalidated(rt, err),
      onOwed: (rt) => this.#mailboxes.resumeOwed(rt),
      ...(pg ? { mayHold: (id: string) => this.#replica?.ownsShardOf(id) ?? false } : {}),
    });
    this.#mailboxes = new MailboxProcessor({
      options: this.#o,
      anchors: this.#anchors,
      registry: this.#registry,
      stats: this.#stats,
      events: this.#events,
    });
    this.#early = new EarlyEvents(this.#o.clock, this.#events, this.#registry.earlyPersistence());
    this.#replica = pg && new Replica(pg, this.#replicaHost());
    this.#shared =
      pg &&
      new SharedEarlyEvents(pg, this.#o.clock, this.#events, {
        dispatch: (token, status, data, dedupKey) =>
          this.#replica!.report(token, status, data, dedupKey),
        ownedShards: () => this.#replica!.ownedShards,
        parse: (json) => ingestData('early event data', JSON.parse(json), Number.MAX_SAFE_INTEGER),
      });
    this.#relay = new Relay({
      codec: this.#codec,
      clock: this.#o.clock,
      options: this.#o.relay,
      forged: () => {
        this.#stats.forgedTokens++;
        this.#stats.notFound++;
        this.#events.rejected('token signature does not verify');
      },
    });
    if (this.#o.inspect) this.#events.subscribe(this.#o.inspect);
    if (this.#registry.durable) {
      this.#ready = this.#registry.recover().then(
        async (seq) => {
          this.#seq = seq;
          this.#early.load(this.#registry.loadEarly(), (row) =>
            ingestData('early event data', JSON.parse(row.data), Number.MAX_SAFE_INTEGER),
          );
          await this.#replica?.start();
          this.#isReady = true;
          this.#reclaimEarly();
          if (this.#earlyOn) void this.#shared?.reclaim();
        },
        (err: unknown) => {
          this.#readyError = toError(err);
          throw this.#readyError;
        },
      );
      // Surfaced through ready() and every later call, never as an unhandled rejection.
      this.#ready.catch(() => {});
    } else {
      this.#isReady = true;
      this.#ready = Promise.resolve();
    }
  }

  ready(): Promise<void> {
    return this.#ready;
  }

  /** Runs `fn` once recovery is done (the durable store's; at once otherwise). */
  #afterReady<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#readyError) return Promise.reject(this.#readyError);
    return this.#ready.then(fn);
  }

  // ---- registration and creation -------------------------------------------------------------

  anchor(name: string, options?: AnchorOptions | TypedAnchorOptions<AnchorTypes>): AnchorHandle {
    this.#assertOpen();
    const anchor = resolveAnchor(name, options as AnchorOptions | undefined, this.#o);
    if (this.#anchors.has(anchor.name))
      throw new InvalidArgumentError(`anchor "${anchor.name}" is already registered`);
    if (anchor.early && !this.#registry.earlyCapable && !this.#pg)
      throw new InvalidArgumentError(
        `anchor "${anchor.name}" options.early needs a store that keeps early events: memoryStore(), sqliteStore() or postgresStore() (${this.#o.store.kind === 'durable' ? this.#o.store.name : 'this store'} does not)`,
      );
    this.#anchors.set(anchor.name, anchor);
    if (anchor.early) this.#earlyOn = true;
    if (anchor.schemas.reports !== undefined) this.#checksReports = true;
    return anchorHandle(this, anchor.name);
  }

  create(anchorName: string, options: CreateOptions = {}): Promise<CreatedCallback> {
    if (!this.#tracing) return this.#create(anchorName, options, undefined);
    const span = this.#telemetry.start('callback.create', {
      'callback.anchor': String(anchorName).slice(0, 100),
    });
    return this.#create(anchorName, options, span).then(
      (created) => {
        Telemetry.end(span, undefined, {
          'callback.id': created.id,
          'callback.status': created.status,
        });
        return created;
      },
      (err: unknown) => {
        Telemetry.end(span, err);
        throw err;
      },
    );
  }

  async #create(
    anchorName: string,
    options: CreateOptions,
    span: Span | undefined,
  ): Promise<CreatedCallback> {
    this.#assertOpen();
    if (!this.#isReady) {
      await this.#afterReady(() => Promise.resolve());
      this.#assertOpen(); // closed while recovery ran
    }
    const anchor = this.#anchors.get(anchorName);
    if (!anchor) throw new UnknownAnchorError(String(anchorName));
    if (typeof options !== 'object' || options === null)
      throw new InvalidArgumentError('create options must be an object');
    checkCreateKeys(options);
    let checkedData: CallbackData | undefined;
    if (anchor.schemas.data !== undefined) {
      const raw = ingestData('options.data', options.data, this.#o.maxDataBytes);
      checkedData = await checkSchema(
        'options.data',
        anchor.schemas.data,
        raw,
        this.#o.maxDataBytes,
      );
      this.#assertOpen();
    }
    const tags = checkTags(options.tags);
    const idempotencyKey = checkIdempotencyKey(options.idempotencyKey);
    const idemKey =
      idempotencyKey === undefined ? undefined : `${anchor.name}\u0000${idempotencyKey}`;
    if (this.#replica) {
      // The parent's owner creates the child (same shard: one owner for the family).
      const parentId = decodeToken(options.parentToken)?.id;
      if (parentId !== undefined && !this.#replica.owns(parentId))
        return this.#replica.createAt(parentId, anchorName, options);
    }
    if (this.#registry.prefetching)
      await this.#registry.warm({
        ...(options.parentToken !== undefined
          ? { ids: [decodeToken(options.parentToken)?.id ?? ''] }
          : {}),
        ...(idemKey !== undefined ? { idempotencyKey: idemKey } : {}),
      });
    if (idemKey !== undefined) {
      const existing = this.#existingByIdempotency(idemKey, anchor, anchorName, options);
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
    const createData =
      checkedData ?? ingestData('options.data', options.data, this.#o.maxDataBytes);
    const createBytes = patchBytesBound(createData);
    // The base `{}` is 2 bytes; the bound of a merged patch covers its entries and commas.
    const dataBytes =
      admitPatch(
        'options.data',
        DataVersion.EMPTY,
        2,
        createData,
        createBytes,
        this.#o.maxCallbackBytes,
      ) + createBytes;

    const id = this.#replica ? this.#replica.newId(parent?.record.id) : newCallbackId();
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
      correlationKey: correlationKey(anchor, (key) => createData[key]),
      deadlineAt: deadline,
      heartbeatMs,
      retention,
      status: 'create',
      data: DataVersion.of(createData),
      children: undefined,
      terminalReport: undefined,
      stepError: undefined,
      owed: undefined,
      head: 0,
      ...(span ? { trace: span.spanContext() } : {}),
    };
    // No actor yet: it is activated by the first report that needs a transition (virtual actor).
    const rt = new CallbackRuntime(record, now);
    rt.dataBytes = dataBytes;
    this.#registry.add(rt, parent, this.#mailboxes.createdEntry(record, createData));
    this.#stats.add(record.anchor, 'create');
    this.#stats.created++;
    this.#events.emit('created', record, { data: createData });

    // postgresStore(): the held events are read once the record is committed (see #claimShared).
    let claimed: Promise<DispatchResult | undefined> | undefined;
    const sharedKey =
      this.#shared && anchor.early ? (record.correlationKey ?? undefined) : undefined;
    const creating = new Promise<DispatchResult>((resolve, reject) => {
      const job: Job = {
        kind: 'create',
        status: 'create',
        data: createData,
        followers: [{ resolve, reject, outcome: 'applied' }],
        ...(span ? { trace: Telemetry.contextOf(span) } : {}),
      };
      if (!this.#registry.durable) return this.#mailboxes.enqueue(rt, job);
      // The record is committed before the create step runs: the token it hands out exists.
      rt.busy = true;
      rt.push(job);
      this.#registry.release(
        rt,
        () => {
          if (sharedKey !== undefined)
            return void (claimed = this.#claimShared(rt, job, sharedKey));
          rt.busy = false;
          this.#mailboxes.kick(rt);
        },
        (err) => {
          rt.busy = false;
          // First: settling drops the runtime and rejects its queued jobs with the store's error.
          reject(err);
          this.#registry.settle(rt);
        },
      );
    });
    // Early events held for this correlation key go into the mailbox right behind the create job.
    const early =
      anchor.early && record.correlationKey !== undefined && !this.#shared
        ? this.#applyEarly(record.token, record.correlationKey)
        : undefined;
    const result = await creating.catch(async (err: unknown) => {
      // Another replica created it first with the same idempotency key: that one is the answer.
      if (!(err instanceof DuplicateKeyError) || idemKey === undefined) throw err;
      await this.#registry.warm({ idempotencyKey: idemKey });
      const existing = this.#existingByIdempotency(idemKey, anchor, anchorName, options);
      if (!existing) throw err;
      return existing;
    });
    if (!('outcome' in result)) return result;
    // create() resolves once the early events were applied (and, durable, committed): its
    // answer shows the callback after them.
    const applied = (early && (await early)) ?? (claimed && (await claimed));
    const answer = (applied ?? result).answer as Answer;
    return new CreatedAnswer(answer, id, anchor.attributes, record.parentToken);
  }

  /**
   * Claims the early events held under `key` and puts them in the callback's mailbox as
   * reports, in arrival order, synchronously (so nothing overtakes them).
   * @returns the result of the last one applied, once every one settled; `undefined` if none.
   */
  #applyEarly(token: string, key: string): Promise<DispatchResult | undefined> | undefined {
    if (!this.#early.has(key)) return undefined;
    const results = this.#early.claim(key).map((ev) => this.#applyHeld(token, ev));
    return Promise.all(results).then((all) => all.findLast((r) => r !== undefined));
  }

  /**
   * Applies one claimed early event to the callback of `token` as a report with its dedup key,
   * admitted synchronously: a held event is held once per key, and a shared claim skips applied
   * keys, so no store read is needed. A report the callback refuses (over `maxCallbackBytes`,
   * say) is dropped with a `rejected` event.
   */
  #applyHeld(
    token: string,
    ev: { readonly dedupKey: string; readonly status: DispatchStatus; readonly data: CallbackData },
    applied?: (r: DispatchResult) => void,
  ): Promise<DispatchResult | undefined> {
    this.#registry.claimEarly(ev.dedupKey);
    let reported: Promise<DispatchResult>;
    try {
      // Held once per key and claimed once: no earlier report can carry the key (no lookup).
      reported = this.#report(token, ev.status, ev.data, toResult, ev.dedupKey, true);
    } catch (err) {
      reported = Promise.reject(toError(err));
    }
    return reported.then(
      (r): DispatchResult | undefined => {
        applied?.(r);
        return r;
      },
      (err: unknown) => {
        this.#registry.dropEarly(ev.dedupKey);
        this.#events.rejected(`early event ${ev.dedupKey}: ${toError(err).message}`);
        return undefined;
      },
    );
  }

  /**
   * postgresStore(): the create of `rt` committed; its mailbox is still closed (`busy`). Reads the
   * events held for `key` by any replica and puts them right behind the create job, before any
   * report that arrived meanwhile, then opens the mailbox. A hold that committed after this
   * read finds the callback itself and dispatches its event (see SharedEarlyEvents.hold).
   * @returns the result of the last one applied, once every one settled; `undefined` if none.
   */
  async #claimShared(
    rt: CallbackRuntime,
    createJob: Job,
    key: string,
  ): Promise<DispatchResult | undefined> {
    let held: ClaimedEarly[] = [];
    try {
      held = await this.#shared!.claim(key);
    } catch (err) {
      // Still held: dispatched to the callback by the expiry sweep once their retention passed.
      this.#events.rejected(`early events for a new callback: ${toError(err).message}`);
    }
    const token = rt.record.token;
    const jobs = rt.drainAll();
    const at = jobs.indexOf(createJob) + 1;
    for (const job of jobs.slice(0, at)) rt.push(job);
    const results = held.map((ev) =>
      this.#applyHeld(token, ev, (r) => {
        if (r.outcome === 'applied') this.#shared!.applied(ev);
      }),
    );
    for (const job of jobs.slice(at)) rt.push(job);
    rt.busy = false;
    this.#mailboxes.kick(rt);
    return Promise.all(results).then((all) => all.findLast((r) => r !== undefined));
  }

  /**
   * After a restart: early events whose callback was created but which were not applied
   * before the engine stopped (their rows go with the reports' effects) are applied now.
   */
  #reclaimEarly(): void {
    for (const key of [...this.#early.keys()]) {
      let id: string | undefined;
      try {
        id = this.#registry.byCorrelationKey(key);
      } catch {
        continue; // the store cannot be read now: they stay held (and expire in time)
      }
      const rt = id === undefined ? undefined : this.#registry.runtime(id);
      if (rt && !isTerminal(rt.record.status)) void this.#applyEarly(rt.record.token, key);
    }
  }

  #existingByIdempotency(
    key: string,
    anchor: ResolvedAnchor,
    anchorName: string,
    options: CreateOptions,
  ): Promise<CreatedCallback> | undefined {
    const record = this.#registry.byIdempotencyKey(key);
    if (!record) return undefined;
    const { id } = record;
    // Another replica owns it and its create step is still owed: its owner answers, once that
    // step ran (a retry of a create cut off by a crash waits for it, whichever replica it reaches).
    if (this.#replica && record.owed !== undefined && !this.#replica.owns(id))
      return this.#replica.createAt(id, anchorName, options);
    const rt = this.#registry.runtime(id);
    const make = () =>
      new CreatedAnswer(this.#mailboxes.answer(record), id, anchor.attributes, record.parentToken);
    // While the first create's step is still running, answer once the mailbox reaches this read.
    if (rt && (rt.busy || rt.pending > 0 || rt.batch !== undefined)) {
      return new Promise<DispatchResult>((resolve, reject) => {
        this.#mailboxes.enqueue(rt, {
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
    const found = this.#registry.find(parentToken);
    if (found.kind === 'notFound') throw new ParentNotFoundError();
    const status = found.kind === 'live' ? found.rt.record.status : found.record.status;
    if (found.kind !== 'live' || isTerminal(status)) throw new ParentInactiveError(status);
    return found.rt;
  }

  // ---- call-in points ------------------------------------------------------------------------

  dispatch(message: CallbackMessage): Promise<CallbackAnswer> {
    if (this.#telemetry.measuring || this.#tracing) return this.#observed(message).then(toAnswer);
    return this.#deliver(message, toAnswer);
  }

  deliver(message: CallbackMessage): Promise<DispatchResult> {
    if (this.#telemetry.measuring || this.#tracing) return this.#observed(message);
    return this.#deliver(message, toResult);
  }

  onMeasure(listener: (m: Measurement) => void): () => void {
    return this.#telemetry.onMeasure(listener);
  }

  /** A registered anchor's name from a token, for labels (never an outsider's string). */
  #anchorLabel(token: unknown): string {
    const name = decodeToken(token)?.anchor;
    return name !== undefined && this.#anchors.has(name) ? name : '(unknown)';
  }

  /** A dispatch measured (`onMeasure`) and traced (a `callback.dispatch` span). */
  #observed(message: CallbackMessage): Promise<DispatchResult> {
    const started = performance.now();
    const m = message as unknown as Partial<Record<string, unknown>> | null;
    // A label: only the engine's own words (an outsider's string would grow the series).
    const said = m?.callbackStatus ?? m?.callbackAction;
    const reported =
      typeof said === 'string' && (isDispatchStatus(said) || READ_ACTIONS.has(said))
        ? said
        : '(invalid)';
    // Measured but not traced (no SDK): no span at all, not even a no-op one.
    const span = this.#tracing
      ? this.#telemetry.start('callback.dispatch', { 'callback.reported_status': reported })
      : undefined;
    let result: Promise<DispatchResult>;
    if (span) {
      const ctx = Telemetry.contextOf(span)!;
      this.#traceCtx = ctx;
      try {
        result = withTraceContext(ctx, () => this.#deliver(message, toResult));
      } finally {
        this.#traceCtx = undefined;
      }
    } else {
      result = this.#deliver(message, toResult);
    }
    const done = (r: DispatchResult | undefined, err?: unknown): void => {
      // Only a verified callback names its anchor: a forged or unknown token is '(unknown)'.
      const anchor =
        r === undefined || r.outcome === 'notFound'
          ? '(unknown)'
          : this.#anchorLabel(r.answer.token);
      const outcome = r ? r.outcome : 'error';
      if (this.#telemetry.measuring) {
        this.#telemetry.measure({
          kind: 'dispatch',
          anchor,
          reported,
          outcome,
          seconds: (performance.now() - started) / 1000,
        });
      }
      Telemetry.end(span, err, {
        'callback.anchor': anchor,
        'callback.outcome': outcome,
        ...(r ? { 'callback.status': r.answer.status } : {}),
      });
    };
    return result.then(
      (r) => {
        done(r);
        return r;
      },
      (err: unknown) => {
        done(undefined, err);
        throw err;
      },
    );
  }

  #deliver<T>(message: CallbackMessage, map: (result: DispatchResult) => T): Promise<T> {
    if (this.#closed) return Promise.reject(new EngineClosedError());
    if (!this.#isReady) return this.#afterReady(() => this.#deliver(message, map));
    let parsed;
    let data: CallbackData = {};
    try {
      parsed = parseMessage(message);
      if (parsed.kind === 'report')
        data = ingestData('callbackData', parsed.data, this.#o.maxDataBytes);
    } catch (err) {
      this.#events.rejected((err as Error).message);
      return Promise.reject(toError(err));
    }
    if (Relay.claims(parsed.token)) {
      return (
        parsed.kind === 'read'
          ? this.#relay.read(parsed.token, parsed.action)
          : this.#relay.report(parsed.token, parsed.status, data, parsed.dedupKey)
      ).then(map);
    }
    if (parsed.kind === 'read') {
      const action = parsed.action;
      const read = (answer: CallbackAnswer): T =>
        map({
          answer: readAnswer(answer, action),
          outcome: answer.status === 'notFound' ? 'notFound' : 'read',
        });
      if (this.#replica) return this.#replica.read(parsed.token).then(read);
      try {
        return Promise.resolve(read(this.#read(parsed.token)));
      } catch (err) {
        return Promise.reject(toError(err));
      }
    }
    if (this.#checksReports) {
      // Schemas at the edge: refused before anything is applied.
      const schema = this.#reportSchema(parsed.token, parsed.status);
      let checked: CallbackData | Promise<CallbackData> = data;
      try {
        if (schema) checked = checkSchema('callbackData', schema, data, this.#o.maxDataBytes);
      } catch (err) {
        this.#events.rejected((err as Error).message);
        return Promise.reject(toError(err));
      }
      const gate = this.#gates.get(parsed.token);
      if (gate !== undefined || checked instanceof Promise)
        return this.#inOrder(parsed.token, gate, checked, (d) => this.#route(parsed, d, map));
      data = checked;
    }
    return this.#route(parsed, data, map);
  }

  /** The report schema of a verified token's anchor for `status`, if it has one. */
  #reportSchema(token: string, status: DispatchStatus): StandardSchemaV1 | undefined {
    // A live callback's exact token names its anchor; any other token must verify first.
    let name = this.#registry.liveAnchor(token);
    if (name === undefined) {
      const fields = decodeToken(token);
      if (fields === undefined || !this.#codec.verify(fields)) return undefined;
      name = fields.anchor;
    }
    const anchor = this.#anchors.get(name);
    return anchor && reportSchema(anchor.schemas, status);
  }

  /**
   * A report whose schema validates asynchronously, or that follows one: it goes on once every
   * earlier report to the same token went on, so one callback's reports keep their order.
   */
  #inOrder<T>(
    token: string,
    gate: Promise<void> | undefined,
    checked: CallbackData | Promise<CallbackData>,
    route: (data: CallbackData) => Promise<T>,
  ): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const turn = (gate ?? Promise.resolve())
        .then(() => checked)
        .then(
          (data) => {
            if (this.#closed) return reject(new EngineClosedError());
            route(data).then(resolve, reject);
          },
          (err: unknown) => {
            this.#events.rejected(toError(err).message);
            reject(toError(err));
          },
        );
      this.#gates.set(token, turn);
      void turn.then(() => {
        if (this.#gates.get(token) === turn) this.#gates.delete(token);
      });
    });
  }

  #route<T>(
    parsed: ParsedMessage & { kind: 'report' },
    data: CallbackData,
    map: (result: DispatchResult) => T,
  ): Promise<T> {
    try {
      if (this.#replica)
        return this.#replica.report(parsed.token, parsed.status, data, parsed.dedupKey).then(map);
      return this.#report(parsed.token, parsed.status, data, map, parsed.dedupKey);
    } catch (err) {
      // A durable store that cannot be read (a cold callback's point read): reject, never throw.
      return Promise.reject(toError(err));
    }
  }

  #report<T>(
    token: string,
    status: CallbackStatus,
    data: CallbackData,
    map: (result: DispatchResult) => T,
    dedupKey?: string,
    freshKey = false,
    caller = false,
  ): Promise<T> {
    this.#stats.dispatched++;
    const found = this.#registry.find(token);
    if (found.kind === 'notFound')
      return this.#mailboxes.notFound(token, found.anchor, found.id, status).then(map);
    if (found.kind === 'retained') {
      const record = found.record;
      // A key applied to it (before it ended) makes the report a replay; else its outcome stands.
      const replay =
        dedupKey !== undefined && !freshKey && this.#registry.hasKey(undefined, record, dedupKey);
      return Promise.resolve(
        map(
          replay
            ? { answer: this.#mailboxes.answer(record), outcome: 'replayed' }
            : this.#mailboxes.settledAnswer(record, status, data),
        ),
      );
    }
    const rt = found.rt;
    if (!isTerminal(rt.record.status)) this.#touch(rt);
    const pending = new Pending('applied', map);
    // Read now, while what an asynchronous store fetched for this report is at hand.
    const keyStored =
      dedupKey !== undefined && !freshKey && this.#registry.hasKey(rt, rt.record, dedupKey);
    if (status === 'cancel') {
      // A cancel takes effect at once (it does not wait behind a running step).
      if (keyStored) {
        const answer = this.#mailboxes.answer(rt.record);
        this.#registry.release(
          rt,
          () => pending.resolve({ answer, outcome: 'replayed' }),
          (e) => pending.reject(e),
        );
      } else
        this.#cancelLive(
          rt,
          data,
          pending,
          caller
            ? { kind: 'cancelled' }
            : {
                kind: 'reported',
                reported: 'cancel',
                outcome: 'applied',
                activity: true,
                ...(dedupKey !== undefined ? { dedupKey } : {}),
              },
        );
      return pending.promise();
    }
    // Refuse before anything is applied, so the outside party can simply retry.
    if (this.#mailboxes.wouldSaturate(rt, status)) return Promise.reject(new PoolSaturatedError());
    this.#mailboxes.enqueue(rt, {
      kind: 'report',
      status,
      data,
      followers: [pending],
      ...(dedupKey !== undefined ? { dedupKey, keyStored } : {}),
      ...(freshKey ? { freshKey } : {}),
      ...(this.#traceCtx ? { trace: this.#traceCtx } : {}),
    });
    return pending.promise();
  }

  /** A report reached an active callback: it times out first if its time is up, else it heard from outside. */
  #touch(rt: CallbackRuntime): void {
    const now = this.#o.clock.now();
    if (!this.#overdue(rt, now)) rt.lastActivity = now;
  }

  /**
   * Ends an active callback whose deadline or heartbeat window already passed (its timer has not
   * run yet, e.g. right after a restart): a report must not be applied after the deadline.
   * @returns whether it timed out.
   */
  #overdue(rt: CallbackRuntime, now: number): boolean {
    const reason = this.#registry.overdue(rt, now);
    if (reason === undefined) return false;
    this.#mailboxes.end(rt, 'timeout', { reason }, [], { kind: 'timedOut', reason });
    return true;
  }

  cancel(token: string, data?: Record<string, unknown>): Promise<CallbackAnswer> {
    if (this.#closed) return Promise.reject(new EngineClosedError());
    if (!this.#isReady) return this.#afterReady(() => this.cancel(token, data));
    let ingested: CallbackData;
    try {
      ingested = ingestData('cancel data', data, this.#o.maxDataBytes);
    } catch (err) {
      return Promise.reject(toError(err));
    }
    if (Relay.claims(token))
      return this.#relay.report(token, 'cancel', ingested, undefined).then(toAnswer);
    if (this.#replica)
      return this.#replica.report(token, 'cancel', ingested, undefined, true).then(toAnswer);
    let found;
    try {
      found = this.#registry.find(token);
    } catch (err) {
      return Promise.reject(toError(err));
    }
    if (found.kind === 'notFound') return Promise.resolve(notFoundAnswer(token));
    if (found.kind === 'retained')
      return Promise.resolve(
        this.#mailboxes.settledAnswer(found.record, 'cancel', ingested).answer,
      );
    const pending = new Pending('applied', toAnswer);
    if (!isTerminal(found.rt.record.status)) this.#overdue(found.rt, this.#o.clock.now());
    this.#cancelLive(found.rt, ingested, pending);
    return pending.promise();
  }

  #cancelLive(
    rt: CallbackRuntime,
    data: CallbackData,
    follower: Follower,
    cause: EndCause = { kind: 'cancelled' },
  ): void {
    if (isTerminal(rt.record.status)) {
      const result = this.#mailboxes.settledAnswer(rt.record, 'cancel', data);
      this.#registry.release(
        rt,
        () => follower.resolve(result),
        (e) => follower.reject(e),
      );
    } else if (this.#mailboxes.admit(rt, 'cancel', data, 'cancel data', [follower]) >= 0)
      this.#mailboxes.end(rt, 'cancel', data, [follower], cause);
  }

  retryStep(tokenOrId: string): Promise<CallbackAnswer> {
    if (this.#closed) return Promise.reject(new EngineClosedError());
    if (!this.#isReady) return this.#afterReady(() => this.retryStep(tokenOrId));
    if (typeof tokenOrId !== 'string' || tokenOrId.length === 0)
      return Promise.reject(
        new InvalidArgumentError('retryStep() needs a callback token or callbackId'),
      );
    if (this.#replica)
      return Promise.reject(
        new InvalidArgumentError('retryStep() does not work with postgresStore() yet'),
      );
    try {
      const fields = decodeToken(tokenOrId);
      // A token must verify; an id is taken as it is (the caller is trusted, like list()).
      if (fields && this.#registry.find(tokenOrId).kind === 'notFound')
        throw new NothingToRetryError(fields.id, 'it is unknown or its record was removed');
      const id = fields?.id ?? tokenOrId;
      const found = this.#registry.details(id);
      if (!found) throw new NothingToRetryError(id, 'it is unknown or its record was removed');
      const rt = this.#registry.runtime(id);
      return this.#mailboxes
        .retryStep(rt, rt?.record ?? found.record, found.lastActivity)
        .then(toAnswer);
    } catch (err) {
      return Promise.reject(toError(err));
    }
  }

  async details(id: string): Promise<CallbackDetails | undefined> {
    this.#assertOpen();
    if (!this.#isReady) await this.#afterReady(() => Promise.resolve());
    if (typeof id !== 'string' || id.length === 0) return undefined;
    let found: ReturnType<CallbackRegistry['details']>;
    const pg = this.#pg;
    if (pg) {
      // Another replica may hold it: read it as committed.
      if (this.#registry.resident(id) !== undefined) found = this.#registry.details(id);
      else {
        const row = await pg.read(id);
        const children = row && (await pg.childrenRows(id)).map((r) => r.id);
        found = row && children && { ...decodeRecord(row), children };
      }
    } else found = this.#registry.details(id);
    if (!found) return undefined;
    const { record, lastActivity, children } = found;
    return {
      id: record.id,
      token: record.token,
      anchor: record.anchor,
      status: record.status,
      data: record.data.value,
      tags: record.tags,
      createdAt: record.createdAt,
      lastActivityAt: lastActivity,
      deadlineAt: record.deadlineAt,
      heartbeatMs: record.heartbeatMs,
      removeAt: record.removeAt,
      parentId: record.parentId,
      children,
      stepError: record.stepError,
      pendingRetry:
        record.owed?.at === undefined
          ? undefined
          : { status: record.owed.step, attempt: record.owed.attempt, at: record.owed.at },
    };
  }

  async history(tokenOrId: string, options: HistoryOptions = {}): Promise<HistoryPage> {
    this.#assertOpen();
    if (typeof tokenOrId !== 'string' || tokenOrId.length === 0)
      throw new InvalidArgumentError('history() needs a callback token or callbackId');
    if (typeof options !== 'object' || options === null)
      throw new InvalidArgumentError('history() options must be an object');
    const limit = options.limit ?? 100;
    if (!Number.isSafeInteger(limit) || limit < 1 || limit > 1000)
      throw new InvalidArgumentError(
        `history() options.limit must be an integer from 1 to 1000 (got ${String(limit)})`,
      );
    const cursor = options.cursor;
    if (cursor !== undefined && (typeof cursor !== 'string' || !/^[0-9]{1,15}$/.test(cursor)))
      throw new InvalidArgumentError(
        `history() options.cursor must be the cursor of a previous page (got ${JSON.stringify(String(cursor)).slice(0, 60)})`,
      );
    if (!this.#isReady) await this.#afterReady(() => Promise.resolve());
    const fields = decodeToken(tokenOrId);
    // A token must verify; an id is taken as it is (the caller is trusted, like details()).
    const id = fields ? (this.#codec.verify(fields) ? fields.id : undefined) : tokenOrId;
    if (id === undefined) return { id: '', entries: [], cursor: undefined };
    const after = cursor === undefined ? 0 : Number(cursor);
    const entries = await this.#registry.history(id, after, limit + 1);
    const page = entries.slice(0, limit).map(toHistory);
    return {
      id,
      entries: page,
      cursor: entries.length > limit ? String(page[page.length - 1]!.seq) : undefined,
    };
  }

  get(token: string): Promise<CallbackAnswer> {
    if (this.#closed) return Promise.reject(new EngineClosedError());
    if (!this.#isReady) return this.#afterReady(() => this.get(token));
    if (Relay.claims(token)) return this.#relay.read(token, 'getCallback').then(toAnswer);
    if (this.#replica) return this.#replica.read(token);
    try {
      return Promise.resolve(this.#read(token));
    } catch (err) {
      return Promise.reject(toError(err));
    }
  }

  exists(token: string): Promise<'exists' | 'notFound'> {
    if (this.#closed) return Promise.reject(new EngineClosedError());
    if (!this.#isReady) return this.#afterReady(() => this.exists(token));
    if (Relay.claims(token))
      return this.#relay
        .read(token, 'exists')
        .then((r) => (r.answer.status === 'exists' ? 'exists' : 'notFound'));
    if (this.#replica)
      return this.#replica
        .read(token)
        .then((a) => (a.status === 'notFound' ? 'notFound' : 'exists'));
    try {
      const found = this.#registry.find(token);
      if (found.kind === 'live') this.#registry.settle(found.rt);
      return Promise.resolve(found.kind === 'notFound' ? 'notFound' : 'exists');
    } catch (err) {
      return Promise.reject(toError(err));
    }
  }

  #read(token: string): Answer {
    const found = this.#registry.find(token);
    if (found.kind === 'notFound') return notFoundAnswer(token);
    if (found.kind === 'retained') return this.#mailboxes.answer(found.record);
    const answer = this.#mailboxes.answer(found.rt.record);
    this.#registry.settle(found.rt);
    return answer;
  }

  relay(token: string, options: RelayTokenOptions): string {
    this.#assertOpen();
    return this.#relay.wrap(token, options);
  }

  // ---- waiting ------------------------------------------------------------------------------

  async wait(token: string, options: WaitOptions = {}): Promise<CallbackAnswer> {
    this.#assertOpen();
    if (!this.#isReady) await this.#afterReady(() => Promise.resolve());
    if (Relay.claims(token))
      throw new InvalidArgumentError(
        'wait() is not supported for a relayed token: its callback lives at the origin engine, which has no event stream for it; read it with get(), or wait at the origin',
      );
    if (this.#replica) return this.#replica.wait(token, options);
    const found = this.#registry.find(token);
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
        const child = this.#registry.record(id);
        if (child) await this.#waitChildren(child, signal);
      }),
    );
  }

  #waitFor(id: string, signal: AbortSignal | undefined): Promise<CallbackAnswer> {
    const rt = this.#registry.runtime(id);
    if (!rt || rt.finalized) {
      const record = rt?.record ?? this.#registry.record(id);
      const answer = record ? this.#mailboxes.answer(record) : notFoundAnswer('');
      return new Promise((resolve, reject) =>
        this.#registry.release(rt, () => resolve(answer), reject),
      );
    }
    signal?.throwIfAborted();
    return new Promise<CallbackAnswer>((resolve, reject) => {
      const onAbort = () => {
        rt.waiters = rt.waiters?.filter((w) => w !== waiter);
        this.#registry.settle(rt);
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

  // ---- reading and correlation ---------------------------------------------------------------

  list(options: ListOptions = {}): ListPage {
    this.#assertOpen();
    if (this.#pg)
      throw new InvalidArgumentError(
        'list() reads synchronously; with postgresStore() use listAsync()',
      );
    return this.#registry.list(options);
  }

  async listAsync(options: ListOptions = {}): Promise<ListPage> {
    this.#assertOpen();
    if (!this.#isReady) await this.#afterReady(() => Promise.resolve());
    const pg = this.#pg;
    if (!pg) return this.#registry.list(options);
    return listStoredAsync(
      options,
      (q) => pg.listAsync(q),
      (row) => decodeRecord(row).record,
    );
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
    // A replica answers synchronously only for callbacks in its memory: see findToken().
    if (this.#pg) return this.#registry.resident(id)?.token;
    return this.#registry.record(id)?.token;
  }

  async findToken(
    query: { readonly id: string } | { readonly attributes: Readonly<Record<string, unknown>> },
  ): Promise<string | undefined> {
    this.#assertOpen();
    if (!this.#isReady) await this.#afterReady(() => Promise.resolve());
    const pg = this.#pg;
    if ('id' in query) {
      if (typeof query.id !== 'string') return undefined;
      if (!pg) return this.tokenOf(query.id);
      const row = await pg.read(query.id);
      return row && decodeRecord(row).record.token;
    }
    if (!pg) return this.correlate(query.attributes);
    for (const anchor of this.#anchors.values()) {
      const key = correlationKey(anchor, (k) => query.attributes[k.toLowerCase()]);
      const row = key === undefined ? undefined : await pg.readByCorrelation(key);
      if (row) return decodeRecord(row).record.token;
    }
    return undefined;
  }

  correlate(attributes: Readonly<Record<string, unknown>>): string | undefined {
    if (this.#pg) {
      for (const anchor of this.#anchors.values()) {
        const key = correlationKey(anchor, (k) => attributes[k.toLowerCase()]);
        const token = key === undefined ? undefined : this.#registry.residentByCorrelation(key);
        if (token !== undefined) return token;
      }
      return undefined;
    }
    for (const anchor of this.#anchors.values()) {
      const key = correlationKey(anchor, (k) => attributes[k.toLowerCase()]);
      const id = key === undefined ? undefined : this.#registry.byCorrelationKey(key);
      const token = id === undefined ? undefined : this.tokenOf(id);
      if (token !== undefined) return token;
    }
    return undefined;
  }

  eventStatus(anchor: string, type: string): DispatchStatus | undefined {
    return this.#anchors.get(anchor)?.eventTypes[type];
  }

  async holdEarly(event: EarlyEventInput): Promise<EarlyHoldResult> {
    this.#assertOpen();
    if (!this.#isReady) await this.#afterReady(() => Promise.resolve());
    if (typeof event !== 'object' || event === null)
      throw new InvalidArgumentError('holdEarly() needs an event object');
    const { attributes, type, status, dedupKey } = event;
    if (typeof attributes !== 'object' || attributes === null)
      throw new InvalidArgumentError('holdEarly() event.attributes must be an object');
    if (typeof dedupKey !== 'string' || dedupKey.length === 0)
      throw new InvalidArgumentError('holdEarly() event.dedupKey must be a non-empty string');
    if (status !== undefined && !isDispatchStatus(status))
      throw new InvalidMessageError(
        `callbackStatus must be one of ${DISPATCH_STATUSES.join(', ')} (got ${JSON.stringify(String(status).slice(0, 40))})`,
      );
    if (!this.#earlyOn) return { kind: 'unmatched' };
    for (const anchor of this.#anchors.values()) {
      const early = anchor.early;
      if (!early) continue;
      const key = correlationKey(anchor, (k) => attributes[k.toLowerCase()]);
      const st = status ?? anchor.eventTypes[type];
      if (key === undefined || st === undefined) continue;
      if (this.#shared)
        return this.#shared.hold(
          { ...anchor, early },
          key,
          st,
          ingestData('event data', event.data, this.#o.maxDataBytes),
          dedupKey,
        );
      // Created since the caller looked: not early any more.
      const id = this.#registry.byCorrelationKey(key);
      const token = id === undefined ? undefined : this.#registry.record(id)?.token;
      if (token !== undefined) return { kind: 'found', token };
      const prior = this.#early.held(dedupKey);
      const ev =
        prior ??
        this.#early.hold(
          { ...anchor, early },
          key,
          st,
          ingestData('event data', event.data, this.#o.maxDataBytes),
          dedupKey,
        );
      await ev.committed;
      return {
        kind: 'queued',
        anchor: ev.anchor,
        expiresAt: ev.expiresAt,
        duplicate: prior !== undefined,
      };
    }
    return { kind: 'unmatched' };
  }

  // ---- observing ----------------------------------------------------------------------------

  stats(): EngineStats {
    let stats = this.#stats.snapshot(...this.#registry.sizes, this.#registry.commits);
    if (this.#earlyOn) stats = { ...stats, early: (this.#shared ?? this.#early).stats() };
    const pool = this.#mailboxes.poolStats;
    if (pool) stats = { ...stats, pool };
    return this.#replica ? { ...stats, cluster: this.#replica.stats } : stats;
  }

  inspect(inspector: XStateInspector): () => void {
    const ok =
      typeof inspector === 'function' ||
      (typeof inspector === 'object' && inspector !== null && typeof inspector.next === 'function');
    if (!ok)
      throw new InvalidArgumentError('inspector must be a function or an observer with next()');
    const detach = this.#events.addInspector(inspector);
    this.#registry.passivateIdle();
    return detach;
  }

  diagram(anchor: string, options?: DiagramOptions): string {
    const resolved = this.#anchors.get(anchor);
    if (!resolved) throw new UnknownAnchorError(String(anchor));
    return anchorDiagram(resolved, options);
  }

  subscribe(listener: (event: EngineEvent) => void): () => void {
    if (typeof listener !== 'function')
      throw new InvalidArgumentError('listener must be a function');
    return this.#events.subscribe(listener);
  }

  close(): Promise<void> {
    // Idempotent: every call shares the first call's promise.
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#closed = true;
    this.#relay.close();
    this.#registry.stopClock();
    this.#early.close();
    this.#shared?.close();
    await this.#mailboxes.close();
    // Stop actors only after in-flight steps settled: their results may still be merged.
    try {
      // A close during recovery waits for it, so the store's lock is released.
      await this.#ready.catch(() => {});
      // A replica hands its shards over at once, once its writes are committed.
      if (this.#isReady) await this.#replica?.leave();
      if (this.#isReady) await this.#registry.closeStore();
    } finally {
      await this.#replica?.close();
      this.#registry.clear();
    }
  }

  /** What this engine's part in a cluster needs of it. */
  #replicaHost(): ReplicaHost {
    // eslint-disable-next-line @typescript-eslint/no-this-alias -- a getter below reads the live flag
    const engine = this;
    return {
      node: this.node,
      registry: this.#registry,
      stats: this.#stats,
      warn: this.#events.warn,
      codec: this.#codec,
      maxDataBytes: this.#o.maxDataBytes,
      report: (token, status, data, dedupKey, freshKey, caller) =>
        this.#report(token, status, data, toResult, dedupKey, freshKey, caller),
      read: (token) => this.#read(token),
      answer: (record) => this.#mailboxes.answer(record),
      waitLocal: (id, signal) => this.#waitFor(id, signal),
      create: (anchor, options) => this.create(anchor, options),
      attributes: (anchor) => this.#anchors.get(anchor)?.attributes,
      quiesce: (owned, timeoutMs) => this.#mailboxes.quiesce(owned, timeoutMs),
      closeTimeoutMs: this.#o.closeTimeoutMs,
      // Held events whose callback is in a shard taken over (its claim never committed).
      ownershipChanged: () => {
        if (this.#earlyOn) void this.#shared?.reclaim();
      },
      get closed() {
        return engine.#closed;
      },
    };
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
