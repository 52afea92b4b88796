/**
 * The live view behind the dashboard (spec 13): counts per state, dispatch
 * throughput and latency per second, recent transitions, and a bounded
 * history per callback.
 *
 * Engine events arrive at dispatch rate, so they only bump mutable counters
 * and buffers; a tick (4 per second by default) publishes one immutable view
 * into an `@xstate/store` store that the dashboard's SSE clients subscribe to.
 *
 * @module
 */

import { createStore } from '@xstate/store';
import { LRUCache } from 'lru-cache';
import { systemClock, type Clock, type TimerHandle } from '../clock.js';
import { describe } from '../duration.js';
import type { CallbackEngine } from '../engine.js';
import { InvalidArgumentError } from '../errors.js';
import { checkKnownKeys } from '../keys.js';
import { ACTIVE_STATUSES, TERMINAL_STATUSES, type CallbackStatus } from '../lifecycle/statuses.js';
import { decodeToken } from '../token.js';
import type { EngineEvent, EngineStats } from '../types.js';

/** A transition shown in the recent list. */
export interface TransitionRecord {
  readonly at: number;
  readonly id: string;
  readonly anchor: string;
  readonly from: CallbackStatus;
  readonly to: CallbackStatus;
}

/** What the dashboard shows; published on every tick. */
export interface MonitorView {
  /** When it was published (ms since epoch). */
  readonly at: number;
  /** Callbacks in each state now. */
  readonly counts: Readonly<Record<CallbackStatus, number>>;
  /** The engine's counters. */
  readonly stats: EngineStats | undefined;
  /** Dispatches per second, oldest first, one entry per second of the window. */
  readonly throughput: readonly number[];
  /** Dispatch latency per second of the window, ms (0 where nothing was measured). */
  readonly latencyP50: readonly number[];
  readonly latencyP99: readonly number[];
  /** The latest transitions, newest first. */
  readonly recent: readonly TransitionRecord[];
}

/** Options of {@link createMonitor}. */
export interface MonitorOptions {
  /** @default the system clock */
  clock?: Clock;
  /** Seconds of throughput/latency history. @default 60 */
  windowSeconds?: number;
  /** Recent transitions kept. @default 40 */
  recent?: number;
  /** Callbacks whose history is kept (least recently active dropped first). @default 10000 */
  trackedCallbacks?: number;
  /** Events kept per callback. @default 50 */
  eventsPerCallback?: number;
  /** Ms between published views; 0 publishes only on {@link Monitor.tick}. @default 250 */
  tickMs?: number;
  /**
   * Most characters of a report's (or creation's) data kept per history event, as JSON;
   * longer data is cut there and marked `dataTruncated`.
   * @default 2048
   */
  maxPayloadChars?: number;
}

/** An engine event as a callback's history keeps it: its data as (possibly cut) JSON text. */
export interface HistoryEvent extends Omit<EngineEvent, 'data'> {
  /** For `created` and `dispatched`: the data as JSON, at most `maxPayloadChars` long. */
  readonly data?: string;
  /** Whether `data` was cut. */
  readonly dataTruncated?: boolean;
}

/** One callback's story, for the dashboard's search. */
export interface CallbackHistory {
  readonly id: string;
  readonly token: string | undefined;
  readonly status: string;
  readonly events: readonly HistoryEvent[];
}

/** The live view of one engine. */
export interface Monitor {
  /** The engine it watches (the dashboard's list, detail and actions use it). */
  readonly engine: CallbackEngine;
  /** The latest published view. */
  view(): MonitorView;
  /** Called with every published view; returns the function that stops it. */
  subscribe(listener: (view: MonitorView) => void): () => void;
  /** Records one dispatch's latency (the HTTP service measures requests). */
  recordLatency(ms: number): void;
  /** The history of a callback by token or callbackId, if it is tracked. */
  history(tokenOrId: string): Promise<CallbackHistory | undefined>;
  /** Publishes a view now. */
  tick(): MonitorView;
  /** Stops listening and ticking. */
  close(): void;
}

const STATUSES = [...ACTIVE_STATUSES, ...TERMINAL_STATUSES];
const zeroCounts = () =>
  Object.fromEntries(STATUSES.map((s) => [s, 0])) as Record<CallbackStatus, number>;

interface Bucket {
  second: number;
  dispatches: number;
  latencies: number[];
}

const MAX_LATENCY_SAMPLES = 2048;

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

const MONITOR_OPTION_KEYS: readonly string[] = Object.freeze([
  'clock',
  'windowSeconds',
  'recent',
  'trackedCallbacks',
  'eventsPerCallback',
  'tickMs',
  'maxPayloadChars',
]);

function checkEngine(engine: unknown): void {
  const e = engine as Partial<Record<'subscribe' | 'stats' | 'get' | 'findToken', unknown>> | null;
  if (
    typeof e !== 'object' ||
    e === null ||
    typeof e.subscribe !== 'function' ||
    typeof e.stats !== 'function' ||
    typeof e.get !== 'function' ||
    typeof e.findToken !== 'function'
  ) {
    throw new InvalidArgumentError(
      `createMonitor(engine) needs an engine from createCallbackEngine() (got ${describe(engine)})`,
    );
  }
}

function count(name: string, value: unknown, fallback: number, min: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min) {
    throw new InvalidArgumentError(
      `monitor options.${name} must be an integer of at least ${min} (got ${describe(value)})`,
    );
  }
  return value;
}

/** The event as a history keeps it: data as JSON text, cut to `max` characters. */
function historyEvent(event: EngineEvent, max: number): HistoryEvent {
  const { data, ...rest } = event;
  if (data === undefined) return rest;
  let json: string;
  try {
    json = JSON.stringify(data);
  } catch {
    return rest;
  }
  return json.length > max
    ? { ...rest, data: json.slice(0, max), dataTruncated: true }
    : { ...rest, data: json };
}

/**
 * Starts watching an engine.
 *
 * @param engine - the engine to watch.
 * @param options - clock, window, history sizes, tick interval.
 * @returns the monitor; `close()` it when done.
 * @throws `InvalidArgumentError` when `engine` is not an engine, or for an unknown or invalid option.
 * @example
 * ```ts
 * const monitor = createMonitor(engine);
 * monitor.subscribe((view) => console.log(view.counts.progress));
 * ```
 */
export function createMonitor(engine: CallbackEngine, options: MonitorOptions = {}): Monitor {
  checkEngine(engine);
  if (typeof options !== 'object' || options === null || Array.isArray(options))
    throw new InvalidArgumentError(
      `createMonitor options must be an object (got ${describe(options)})`,
    );
  checkKnownKeys('monitor options', options, MONITOR_OPTION_KEYS);
  const clock = options.clock ?? systemClock;
  if (typeof clock.now !== 'function' || typeof clock.setTimeout !== 'function')
    throw new InvalidArgumentError(
      'monitor options.clock must have now(), setTimeout() and clearTimeout() methods',
    );
  const windowSeconds = count('windowSeconds', options.windowSeconds, 60, 1);
  const recentMax = count('recent', options.recent, 40, 1);
  const perCallback = count('eventsPerCallback', options.eventsPerCallback, 50, 1);
  const tickMs = count('tickMs', options.tickMs, 250, 0);
  const tracked = count('trackedCallbacks', options.trackedCallbacks, 10_000, 1);
  const maxPayloadChars = count('maxPayloadChars', options.maxPayloadChars, 2048, 16);

  const buckets: Bucket[] = [];
  const recent: TransitionRecord[] = [];
  const histories = new LRUCache<string, HistoryEvent[]>({
    max: tracked,
  });

  const bucket = (): Bucket => {
    const second = Math.floor(clock.now() / 1000);
    let last = buckets.at(-1);
    if (!last || last.second !== second) {
      last = { second, dispatches: 0, latencies: [] };
      buckets.push(last);
      while (buckets.length > windowSeconds + 1) buckets.shift();
    }
    return last;
  };

  const onEvent = (event: EngineEvent) => {
    if (event.type === 'dispatched') bucket().dispatches++;
    if (event.type === 'transitioned' && event.id && event.anchor && event.from && event.status) {
      recent.push({
        at: event.at,
        id: event.id,
        anchor: event.anchor,
        from: event.from,
        to: event.status as CallbackStatus,
      });
      if (recent.length > recentMax * 2) recent.splice(0, recent.length - recentMax);
    }
    if (event.id) {
      let list = histories.get(event.id);
      if (!list) histories.set(event.id, (list = []));
      list.push(historyEvent(event, maxPayloadChars));
      if (list.length > perCallback) list.shift();
    }
  };
  const unsubscribe = engine.subscribe(onEvent);

  const compute = (): MonitorView => {
    const stats = engine.stats();
    const now = Math.floor(clock.now() / 1000);
    const throughput: number[] = [];
    const p50: number[] = [];
    const p99: number[] = [];
    for (let s = now - windowSeconds + 1; s <= now; s++) {
      const b = buckets.find((x) => x.second === s);
      throughput.push(b?.dispatches ?? 0);
      const sorted = b ? [...b.latencies].sort((x, y) => x - y) : [];
      p50.push(percentile(sorted, 50));
      p99.push(percentile(sorted, 99));
    }
    return {
      at: clock.now(),
      counts: { ...zeroCounts(), ...stats.byStatus },
      stats,
      throughput,
      latencyP50: p50,
      latencyP99: p99,
      recent: recent.slice(-recentMax).reverse(),
    };
  };

  const initial: MonitorView = {
    at: clock.now(),
    counts: zeroCounts(),
    stats: undefined,
    throughput: [],
    latencyP50: [],
    latencyP99: [],
    recent: [],
  };
  const store = createStore({
    context: initial,
    on: { publish: (_context: MonitorView, event: { view: MonitorView }) => event.view },
  });

  let timer: TimerHandle = undefined;
  let closed = false;
  const tick = (): MonitorView => {
    const view = compute();
    store.trigger.publish({ view });
    return view;
  };
  const schedule = () => {
    if (closed || tickMs <= 0) return;
    timer = clock.setTimeout(() => {
      tick();
      schedule();
    }, tickMs);
  };
  schedule();

  return {
    engine,
    view: () => store.getSnapshot().context,
    subscribe(listener) {
      const sub = store.subscribe((snapshot) => listener(snapshot.context));
      return () => sub.unsubscribe();
    },
    recordLatency(ms) {
      const b = bucket();
      if (b.latencies.length < MAX_LATENCY_SAMPLES) b.latencies.push(ms);
      else b.latencies[Math.floor(Math.random() * MAX_LATENCY_SAMPLES)] = ms;
    },
    async history(tokenOrId) {
      const id = decodeToken(tokenOrId)?.id ?? tokenOrId;
      const events = histories.peek(id);
      if (!events) return undefined;
      const token = await engine.findToken({ id });
      const status = token === undefined ? 'notFound' : (await engine.get(token)).status;
      return { id, token, status, events: [...events] };
    },
    tick,
    close() {
      closed = true;
      if (timer !== undefined) clock.clearTimeout(timer);
      unsubscribe();
    },
  };
}
