/**
 * `createCallbackEngine()`: the facade users touch first. It checks what callers pass, waits
 * for recovery, and hands each call to the parts that do the work: admission (parsing, data
 * rules, schemas), the routing (local, or the clustered one a shared store supplies), the
 * registry and the mailboxes. It never asks whether it is clustered.
 *
 * Every callback is its own XState actor with a serialized mailbox: reports to one callback are
 * applied one at a time in arrival order, and its steps never overlap; different callbacks
 * proceed concurrently.
 *
 * @module
 */

import type { CallbackEngine, ListOptions } from './callback-engine.js';
import type { Clock } from './clock.js';
import { ingestData, type CallbackData } from './data.js';
import { registerInternals } from './engine-internals.js';
import {
  EngineClosedError,
  InvalidArgumentError,
  InvalidMessageError,
  UnknownAnchorError,
} from './errors.js';
import { toError } from './thrown.js';
import type { HistoryOptions, HistoryPage } from './history.js';
import { anchorDiagram, type DiagramOptions } from './diagrams/anchor-diagram.js';
import { DISPATCH_STATUSES, isDispatchStatus } from './lifecycle/statuses.js';
import { observeDispatch, observing, traceCreate } from './routing/instrument.js';
import { checkCreateKeys, type CreateOptions } from './options/create.js';
import { resolveAnchor, type AnchorOptions, type ResolvedAnchor } from './options/anchor.js';
import {
  resolveOptions,
  type CallbackEngineOptions,
  type ResolvedEngineOptions,
} from './options/engine.js';
import { EarlyEvents } from './registry/early-events.js';
import { EventHub, type XStateInspector } from './registry/event-hub.js';
import { MailboxProcessor } from './mailbox/processor.js';
import { CallbackRegistry } from './registry/registry.js';
import { Stats } from './registry/stats.js';
import { Relay, type RelayTokenOptions } from './relay/relay.js';
import { Admission } from './routing/admit.js';
import { LocalEarly } from './routing/early.js';
import { LocalRouting } from './routing/local.js';
import type { RoutingProvider } from './routing/provider.js';
import type { Routing } from './routing/routing.js';
import { checkSchema } from './schema.js';
import { isTracing, type Measurement, type Span, type Telemetry } from './telemetry.js';
import { KeepAlive } from './keep-alive.js';
import { TokenCodec } from './token.js';
import type { AnchorHandle, AnchorTypes, TypedAnchorOptions } from './typed-anchor.js';
import { anchorHandle } from './typed-engine.js';
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
  WaitOptions,
} from './types.js';

export type { CallbackEngine, ListOptions } from './callback-engine.js';
export type { WaitOptions } from './types.js';
export type { RelayTokenOptions } from './relay/relay.js';
export type { XStateInspector } from './registry/event-hub.js';

const toAnswer = (r: DispatchResult): CallbackAnswer => r.answer;

/** A store that supplies its own routing (replicas sharing it). */
function providerOf(store: unknown): RoutingProvider | undefined {
  const p = store as Partial<RoutingProvider> | null;
  return typeof p?.routing === 'function' ? (p as RoutingProvider) : undefined;
}

class Engine implements CallbackEngine {
  readonly node: string;
  readonly clock: Clock;
  readonly baseUrl: string | undefined;
  readonly #o: ResolvedEngineOptions;
  readonly #anchors = new Map<string, ResolvedAnchor>();
  readonly #stats = new Stats();
  readonly #events: EventHub;
  readonly #telemetry: Telemetry;
  readonly #registry: CallbackRegistry;
  readonly #mailboxes: MailboxProcessor;
  readonly #local: LocalRouting;
  readonly #routing: Routing;
  readonly #admission: Admission;
  /** Forwarding of relayed (wrapped) tokens to their origins. */
  readonly #relay: Relay;
  /** Keeps Node running while a call, a wait, a step or a retry is pending; see `keep-alive.ts`. */
  readonly #keepAlive = new KeepAlive();
  #seq = 0;
  #closed = false;
  /** Recovery from the store: settled once the engine can answer. */
  readonly #ready: Promise<void>;
  #isReady = false;
  #readyError: Error | undefined;
  #closing: Promise<void> | undefined;

  constructor(options: CallbackEngineOptions | undefined) {
    const o = (this.#o = resolveOptions(options));
    this.node = o.node;
    this.clock = o.clock;
    this.baseUrl = o.baseUrl;
    const provider = providerOf(o.store);
    // Replicas share secrets: a token minted by any of them verifies on every one.
    const codec = new TokenCodec(this.node, o.secrets, {
      anyNode: provider?.tokensFromAnyNode === true,
    });
    const events = (this.#events = new EventHub(o.clock, o.logger));
    this.#telemetry = events.telemetry;
    const registry = (this.#registry = new CallbackRegistry({
      options: o,
      codec,
      stats: this.#stats,
      events,
      onTimeout: (rt, reason) => this.#mailboxes.timeout(rt, reason),
      onDue: (id) => this.#mailboxes.due(id),
      onInvalidated: (rt, err) => this.#mailboxes.invalidated(rt, err),
      onOwed: (rt) => this.#mailboxes.resumeOwed(rt),
      ...(provider ? { mayHold: (id: string) => this.#routing.mayHold?.(id) ?? true } : {}),
    }));
    const mailboxes = (this.#mailboxes = new MailboxProcessor({
      options: o,
      anchors: this.#anchors,
      registry,
      stats: this.#stats,
      events,
      keepAlive: this.#keepAlive,
    }));
    const local = (this.#local = new LocalRouting({
      options: o,
      codec,
      anchors: this.#anchors,
      stats: this.#stats,
      events,
      registry,
      mailboxes,
      nextSeq: () => this.#seq++,
    }));
    this.#routing = provider
      ? provider.routing(local, {
          node: this.node,
          options: o,
          anchors: this.#anchors,
          codec,
          stats: this.#stats,
          events,
          registry,
          mailboxes,
          closed: () => this.#closed,
        })
      : local;
    // Early events in memory (committed first with a SQLite store), unless the routing shares them.
    if (local.early === undefined && mailboxes.journal.earlyCapable)
      local.early = new LocalEarly(
        new EarlyEvents(o.clock, events, mailboxes.journal.earlyPersistence()),
        registry,
        mailboxes.journal,
        events,
        (token, status, data, how) => local.report(token, status, data, how),
        (json) => ingestData('early event data', JSON.parse(json), Number.MAX_SAFE_INTEGER),
      );
    this.#relay = new Relay({
      codec,
      clock: o.clock,
      options: o.relay,
      forged: () => {
        this.#stats.forgedTokens++;
        this.#stats.notFound++;
        events.rejected('token signature does not verify');
      },
    });
    this.#admission = new Admission({
      options: o,
      anchors: this.#anchors,
      registry,
      events,
      routing: this.#routing,
      relay: this.#relay,
      closed: () => this.#closed,
    });
    if (o.inspect) events.subscribe(o.inspect);
    registerInternals(this, {
      holdEarly: (event) => this.#holdEarly(event),
      eventStatus: (anchor, type) => this.#anchors.get(anchor)?.eventTypes[type],
      keepAliveCount: () => this.#keepAlive.count,
    });
    if (registry.durable) {
      this.#ready = registry.recover().then(
        async (seq) => {
          this.#seq = seq;
          await this.#routing.start();
          this.#isReady = true;
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

  /**
   * Runs `fn` once the engine can answer: at once when it is ready (the common path stays
   * synchronous), after recovery otherwise; rejects once closed or if recovery failed. The
   * process stays alive until the returned promise settles.
   */
  #whenReady<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#closed) return Promise.reject(new EngineClosedError());
    if (this.#isReady) {
      try {
        return this.#keepAlive.track(fn());
      } catch (err) {
        return Promise.reject(toError(err));
      }
    }
    if (this.#readyError) return Promise.reject(this.#readyError);
    return this.#keepAlive.track(
      this.#ready.then(() => {
        if (this.#closed) throw new EngineClosedError();
        return fn();
      }),
    );
  }

  // ---- registration and creation -------------------------------------------------------------

  anchor(
    name: string,
    options?: AnchorOptions | TypedAnchorOptions<AnchorTypes>,
  ): AnchorHandle<never, never> {
    this.#assertOpen();
    const anchor = resolveAnchor(name, options as AnchorOptions | undefined, this.#o);
    if (this.#anchors.has(anchor.name))
      throw new InvalidArgumentError(`anchor "${anchor.name}" is already registered`);
    if (anchor.early && this.#local.early === undefined)
      throw new InvalidArgumentError(
        `anchor "${anchor.name}" options.early needs a store that keeps early events: memoryStore(), sqliteStore() or postgresStore() (${this.#o.store.kind === 'durable' ? this.#o.store.name : 'this store'} does not)`,
      );
    this.#anchors.set(anchor.name, anchor);
    if (anchor.schemas.reports !== undefined) this.#admission.checksReports = true;
    return anchorHandle(this, anchor.name);
  }

  create(anchorName: string, options: CreateOptions = {}): Promise<CreatedCallback> {
    if (!isTracing()) return this.#whenReady(() => this.#create(anchorName, options, undefined));
    return this.#whenReady(() =>
      traceCreate(this.#telemetry, anchorName, (span) => this.#create(anchorName, options, span)),
    );
  }

  async #create(
    anchorName: string,
    options: CreateOptions,
    span: Span | undefined,
  ): Promise<CreatedCallback> {
    const anchor = this.#anchors.get(anchorName);
    if (!anchor) throw new UnknownAnchorError(String(anchorName));
    if (typeof options !== 'object' || options === null)
      throw new InvalidArgumentError('create options must be an object');
    checkCreateKeys(options);
    let checked: CallbackData | undefined;
    if (anchor.schemas.data !== undefined) {
      const raw = ingestData('options.data', options.data, this.#o.maxDataBytes);
      checked = await checkSchema('options.data', anchor.schemas.data, raw, this.#o.maxDataBytes);
      this.#assertOpen();
    }
    return this.#routing.create(anchor, options, checked, span);
  }

  // ---- call-in points ------------------------------------------------------------------------

  dispatch(message: CallbackMessage): Promise<CallbackAnswer> {
    if (this.#closed || !this.#isReady) return this.deliver(message).then(toAnswer);
    return this.#keepAlive.trackMap(this.#deliver(message), toAnswer);
  }

  deliver(message: CallbackMessage): Promise<DispatchResult> {
    if (this.#closed || !this.#isReady) return this.#whenReady(() => this.#deliver(message));
    return this.#keepAlive.track(this.#deliver(message));
  }

  #deliver(message: CallbackMessage): Promise<DispatchResult> {
    if (!observing(this.#telemetry)) return this.#admission.deliver(message);
    return observeDispatch(
      this.#telemetry,
      (name) => this.#anchors.has(name),
      message,
      (trace) => this.#admission.deliver(message, trace),
    );
  }

  get(token: string): Promise<CallbackAnswer> {
    return this.#whenReady(() =>
      Relay.claims(token)
        ? this.#relay.read(token, 'getCallback').then(toAnswer)
        : this.#routing.read(token),
    );
  }

  exists(token: string): Promise<'exists' | 'notFound'> {
    return this.#whenReady(() =>
      Relay.claims(token)
        ? this.#relay
            .read(token, 'exists')
            .then((r) => (r.answer.status === 'exists' ? 'exists' : 'notFound'))
        : this.#routing.read(token).then((a) => (a.status === 'notFound' ? 'notFound' : 'exists')),
    );
  }

  wait(token: string, options: WaitOptions = {}): Promise<CallbackAnswer> {
    return this.#whenReady(async () => {
      if (Relay.claims(token))
        throw new InvalidArgumentError(
          'wait() is not supported for a relayed token: its callback lives at the origin engine, which has no event stream for it; read it with get(), or wait at the origin',
        );
      if (typeof options !== 'object' || options === null)
        throw new InvalidArgumentError('wait() options must be an object');
      return this.#routing.wait(token, options);
    });
  }

  cancel(token: string, data?: Record<string, unknown>): Promise<CallbackAnswer> {
    return this.#whenReady(() => {
      const ingested = ingestData('cancel data', data, this.#o.maxDataBytes);
      if (Relay.claims(token))
        return this.#relay.report(token, 'cancel', ingested, undefined).then(toAnswer);
      return this.#routing.report(token, 'cancel', ingested, { caller: true }).then(toAnswer);
    });
  }

  relay(token: string, options: RelayTokenOptions): string {
    this.#assertOpen();
    return this.#relay.wrap(token, options);
  }

  retryStep(tokenOrId: string): Promise<CallbackAnswer> {
    return this.#whenReady(() => {
      if (typeof tokenOrId !== 'string' || tokenOrId.length === 0)
        throw new InvalidArgumentError('retryStep() needs a callback token or callbackId');
      return this.#routing.retryStep(tokenOrId);
    });
  }

  // ---- reading -------------------------------------------------------------------------------

  details(id: string): Promise<CallbackDetails | undefined> {
    return this.#whenReady(() => this.#routing.details(id));
  }

  history(tokenOrId: string, options: HistoryOptions = {}): Promise<HistoryPage> {
    return this.#whenReady(() => {
      if (typeof tokenOrId !== 'string' || tokenOrId.length === 0)
        throw new InvalidArgumentError('history() needs a callback token or callbackId');
      if (typeof options !== 'object' || options === null)
        throw new InvalidArgumentError('history() options must be an object');
      return this.#routing.history(tokenOrId, options);
    });
  }

  list(options: ListOptions = {}): Promise<ListPage> {
    return this.#whenReady(() => this.#routing.list(options));
  }

  findToken(
    query: { readonly id: string } | { readonly attributes: Readonly<Record<string, unknown>> },
  ): Promise<string | undefined> {
    return this.#whenReady(() => {
      const q = query as unknown as Partial<Record<'id' | 'attributes', unknown>> | null;
      const ok =
        typeof q === 'object' &&
        q !== null &&
        (typeof q.id === 'string' || (typeof q.attributes === 'object' && q.attributes !== null));
      if (!ok)
        throw new InvalidArgumentError(
          'findToken() needs { id: string } or { attributes: object }',
        );
      return this.#routing.findToken(query);
    });
  }

  callbackUrl(token: string): string {
    if (this.#o.baseUrl === undefined)
      throw new InvalidArgumentError('callbackUrl() needs the engine option baseUrl');
    if (typeof token !== 'string' || token.length === 0)
      throw new InvalidArgumentError('callbackUrl() needs a token');
    return `${this.#o.baseUrl}/callbacks/${encodeURIComponent(token)}`;
  }

  /** See {@link EngineInternals.holdEarly}. */
  #holdEarly(event: EarlyEventInput): Promise<EarlyHoldResult> {
    return this.#whenReady(() => {
      if (typeof event !== 'object' || event === null)
        throw new InvalidArgumentError('holdEarly() needs an event object');
      const { attributes, status, dedupKey } = event;
      if (typeof attributes !== 'object' || attributes === null)
        throw new InvalidArgumentError('holdEarly() event.attributes must be an object');
      if (typeof dedupKey !== 'string' || dedupKey.length === 0)
        throw new InvalidArgumentError('holdEarly() event.dedupKey must be a non-empty string');
      if (status !== undefined && !isDispatchStatus(status))
        throw new InvalidMessageError(
          `callbackStatus must be one of ${DISPATCH_STATUSES.join(', ')} (got ${JSON.stringify(String(status).slice(0, 40))})`,
        );
      if (![...this.#anchors.values()].some((a) => a.early))
        return Promise.resolve({ kind: 'unmatched' } as const);
      const data = ingestData('event data', event.data, this.#o.maxDataBytes);
      return this.#routing.holdEarly({ ...event, data }, status);
    });
  }

  // ---- observing ----------------------------------------------------------------------------

  stats(): EngineStats {
    const pool = this.#mailboxes.poolStats;
    return {
      ...this.#stats.snapshot(...this.#registry.sizes, this.#mailboxes.journal.commits),
      ...this.#routing.stats(),
      ...(pool ? { pool } : {}),
    };
  }

  onMeasure(listener: (m: Measurement) => void): () => void {
    return this.#telemetry.onMeasure(listener);
  }

  subscribe(listener: (event: EngineEvent) => void): () => void {
    if (typeof listener !== 'function')
      throw new InvalidArgumentError('listener must be a function');
    return this.#events.subscribe(listener);
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

  // ---- closing ------------------------------------------------------------------------------

  close(): Promise<void> {
    // Idempotent: every call shares the first call's promise.
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#closed = true;
    // Held while closing (its grace period runs on unref'd timers); then nothing holds any more.
    this.#keepAlive.hold();
    this.#relay.close();
    this.#registry.timers.close();
    // Steps in flight settle (or are cut off) first: their results may still be merged.
    await this.#mailboxes.close();
    try {
      // A close during recovery waits for it, so the store's lock is released.
      await this.#ready.catch(() => {});
      // A replica hands its shards over at once, once its writes are committed.
      if (this.#isReady) await this.#routing.leave();
      if (this.#isReady) await this.#mailboxes.journal.close();
    } finally {
      try {
        await this.#routing.close();
        this.#registry.clear();
      } finally {
        this.#keepAlive.close();
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
