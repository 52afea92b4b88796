/**
 * The engine's public face: the {@link CallbackEngine} interface (what `createCallbackEngine()`
 * returns) and its options. Kept apart from the implementation (`engine.ts`) so that the HTTP
 * layer, the client and the observers depend on what an engine does, not on how.
 *
 * @module
 */

import type { Clock } from './clock.js';
import type { HistoryOptions, HistoryPage } from './history.js';
import type { DiagramOptions } from './diagrams/anchor-diagram.js';
import type { AnchorOptions } from './options/anchor.js';
import type { CreateOptions } from './options/create.js';
import type { ListOptions } from './registry/list-callbacks.js';
import type { XStateInspector } from './registry/event-hub.js';
import type { RelayTokenOptions } from './relay/relay.js';
import type { ReportSchemas, StandardSchemaV1 } from './schema.js';
import type { Measurement } from './telemetry.js';
import type {
  AnchorHandle,
  AnchorTypes,
  NameOf,
  SchemaTypes,
  TypedAnchorOptions,
  TypedStepMap,
} from './typed-anchor.js';
import type {
  CallbackAnswer,
  CallbackDetails,
  CallbackMessage,
  CreatedCallback,
  DispatchResult,
  EngineEvent,
  EngineStats,
  ListPage,
  WaitOptions,
} from './types.js';

export type { ListOptions } from './registry/list-callbacks.js';
export type { RelayTokenOptions } from './relay/relay.js';
export type { XStateInspector } from './registry/event-hub.js';

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
   * @throws `InvalidArgumentError` for a bad or duplicate name or a bad option.
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
    const N extends string,
    const TData extends StandardSchemaV1 | undefined = undefined,
    const TReports extends ReportSchemas | undefined = undefined,
    const TReportable extends string = never,
  >(
    name: N,
    options?: Omit<AnchorOptions, 'next' | 'data' | 'reports' | 'reportable'> & {
      data?: TData;
      reports?: TReports;
      reportable?: readonly TReportable[];
      next?: TypedStepMap<SchemaTypes<TData, TReports> & { reportable: TReportable }>;
    },
  ): AnchorHandle<SchemaTypes<TData, TReports> & { reportable: TReportable }, N>;
  /**
   * Registers an anchor typed by its type argument:
   * `engine.anchor<{ name: 'order'; data: { orderId: number }; reports: { progress: { pct: number } } }>('order', ...)`.
   * Give `name` (the same as the first argument) so that its tokens are `Token<'order'>`, and
   * `reportable` (a union of keys) for the creation fields its `reportable` option lists.
   * Only the creation fields are checked at run time (a report cannot change them unless
   * reportable); the rest is types only unless schemas are given too.
   */
  anchor<T extends AnchorTypes>(
    name: NameOf<T>,
    options?: TypedAnchorOptions<T>,
  ): AnchorHandle<T, NameOf<T>>;
  /**
   * Creates a callback at an anchor and runs the anchor's `create` step.
   * @returns the callback, with its token, after the create step settled.
   * @throws `UnknownAnchorError`, `InvalidArgumentError`, `ParentNotFoundError`,
   *   `ParentInactiveError`, `InvalidDataError`, `PayloadTooLargeError`, `EngineClosedError`.
   */
  create(anchor: string, options?: CreateOptions): Promise<CreatedCallback>;
  /**
   * Delivers a CALLBACK message (spec 11.1): a report or a `getCallback` read.
   * @returns the answer: the status after handling, which may differ from what was sent.
   * @throws `InvalidMessageError`, `InvalidDataError`, `PayloadTooLargeError`, `EngineClosedError`.
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
   * Resolves with the final answer once the callback is terminal; event-driven, no cap. The
   * process stays alive until it settles (a deadline it waits for fires even in a bare script).
   * @throws `InvalidArgumentError` for a relayed (wrapped) token: its callback lives at the
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
   * @throws `InvalidArgumentError` for a malformed token, a `to` that is not a plain http(s)
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
   * @throws (rejects) `NothingToRetryError` (409) when the callback is unknown, still
   *   active, or has no failed final step; `EngineClosedError`. With `postgresStore()` the
   *   replica that owns the callback runs it.
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
   * @throws (rejects) `InvalidArgumentError` for a bad `cursor` or `limit`;
   *   `StoreUnavailableError` if the store cannot be read; `EngineClosedError`.
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
   * A page of callbacks in creation order (`order: 'newest'`: newest first), for support views
   * and the dashboard; `total: true` also counts every callback the filters match. With a durable
   * store it reads the store, so it sees every callback (from any replica).
   * @throws (rejects) `InvalidArgumentError` for a bad filter, `limit` or `cursor`;
   *   `StoreUnavailableError` if the store cannot be read; `EngineClosedError`.
   * @example
   * ```ts
   * const page = await engine.list({ anchor: 'order', status: 'progress', order: 'newest', total: true });
   * console.log(`${page.items.length} of ${page.total}`);
   * for (const cb of page.items) console.log(cb.id, cb.status);
   * ```
   */
  list(options?: ListOptions): Promise<ListPage>;
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
   * @throws `UnknownAnchorError` if no anchor has this name; `InvalidArgumentError`
   *   for an unknown format.
   * @example
   * ```ts
   * writeFileSync('order.svg', engine.diagram('order', { format: 'svg' }));
   * ```
   */
  diagram(anchor: string, options?: DiagramOptions): string;
  /**
   * The callback URL of a token: `POST {baseUrl}/callbacks/{token}/{status}` with the report data as JSON.
   * @throws `InvalidArgumentError` if the engine has no `baseUrl` option.
   */
  callbackUrl(token: string): string;
  /**
   * The token of a callback, found by its callbackId (`{ id }`) or by correlation attributes
   * (`{ attributes }`: the callback whose creation data matches them on every key of its
   * anchor's `correlate` list; keys lower-cased, values compared as strings). With a durable
   * store it reads the store, so it finds callbacks of every replica.
   * @returns the token, or `undefined` if no callback matches (or its record was removed).
   * @throws (rejects) `StoreUnavailableError` if the store cannot be read; `EngineClosedError`.
   * @example
   * ```ts
   * const token = await engine.findToken({ attributes: { orderid: 'A-42' } });
   * ```
   */
  findToken(
    query: { readonly id: string } | { readonly attributes: Readonly<Record<string, unknown>> },
  ): Promise<string | undefined>;
  /**
   * Stops every timer and actor; later calls reject with `EngineClosedError`. Afterwards the
   * engine no longer keeps the process alive (while open it does so only while a call, a
   * `wait()`, a step or a retry is pending).
   */
  close(): Promise<void>;
}
