/**
 * `callback-engine/metrics`: Prometheus metrics of an engine with
 * `prom-client` (an optional peer dependency: install it to use this entry),
 * and `GET /metrics` mounted beside the Dispatch Callback Service, behind the same
 * auth as its routes.
 *
 * Counters come from engine events and measurements, gauges are read from
 * `engine.stats()` at scrape time, histograms from `engine.onMeasure()`.
 * Labels are bounded: `anchor` is a registered anchor's name (else
 * `(unknown)`), `status` and `outcome` are the engine's own words.
 *
 * @module
 */

import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { describe } from '../duration.js';
import type { CallbackEngine } from '../engine.js';
import { InvalidArgumentError } from '../errors.js';
import { checkKnownKeys } from '../keys.js';
import type { Measurement } from '../telemetry.js';
import type { EngineEvent } from '../types.js';
import { rememberEngine } from './metrics-route.js';

export { withMetrics } from './metrics-route.js';
export type { MetricsSource, WithMetricsOptions } from './metrics-route.js';

/** Options of {@link createMetrics}. */
export interface MetricsOptions {
  /** The prom-client registry to register in (e.g. prom-client's default `register`). @default a new one */
  register?: Registry;
  /** Prefix of every metric name. @default 'callback_engine_' */
  prefix?: string;
  /** Buckets of the dispatch and step duration histograms, in seconds. */
  durationBuckets?: readonly number[];
  /** Buckets of the commit latency histogram, in seconds. */
  commitBuckets?: readonly number[];
  /** Labels added to every metric (e.g. `{ replica: 'r1' }`). */
  defaultLabels?: Readonly<Record<string, string>>;
}

/** An engine's metrics: its registry, a scrape, and the `/metrics` route. */
export interface EngineMetrics {
  /** The prom-client registry holding the engine's metrics. */
  readonly register: Registry;
  /** The Prometheus text exposition (what `GET /metrics` answers). */
  scrape(): Promise<string>;
  /** Stops listening to the engine (the metrics stay registered with their last values). */
  close(): void;
}

const DURATION_BUCKETS = [
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];
const COMMIT_BUCKETS = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];
const ROW_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024];
const OPTION_KEYS = ['register', 'prefix', 'durationBuckets', 'commitBuckets', 'defaultLabels'];

function buckets(name: string, value: unknown, fallback: number[]): number[] {
  if (value === undefined) return fallback;
  if (
    !Array.isArray(value) ||
    value.length === 0 ||
    !value.every((v, i) => typeof v === 'number' && v > 0 && (i === 0 || v > value[i - 1]))
  ) {
    throw new InvalidArgumentError(
      `metrics options.${name} must be a non-empty increasing array of positive numbers (got ${describe(value)})`,
    );
  }
  return [...(value as number[])];
}

/**
 * Registers an engine's metrics (Prometheus naming: `_total` counters, `_seconds` durations).
 *
 * - counters: `dispatches_total{anchor,status,outcome}`, `creates_total{anchor}`,
 *   `timeouts_total{anchor}`, `orphans_total{anchor}`, `forged_tokens_total`,
 *   `step_failures_total{anchor,status}`, `step_retries_total{anchor,status}`;
 * - gauges: `callbacks_active`, `callbacks_retained`, `live_actors`, `pool_threads`,
 *   `pool_queue_depth`;
 * - histograms: `dispatch_duration_seconds{anchor,outcome}`,
 *   `step_duration_seconds{anchor,status,result}`, and with a durable store
 *   `commit_duration_seconds` and `commit_rows`.
 *
 * @throws {@link InvalidArgumentError} for a bad option, or a metric name already registered.
 * @example
 * ```ts
 * import { createMetrics, withMetrics } from 'callback-engine/metrics';
 * const metrics = createMetrics(engine);
 * createServer(withMetrics(createDispatchHandler(engine, { auth }), metrics)).listen(8080);
 * ```
 */
export function createMetrics(engine: CallbackEngine, options: MetricsOptions = {}): EngineMetrics {
  if (typeof options !== 'object' || options === null)
    throw new InvalidArgumentError(`metrics options must be an object (got ${describe(options)})`);
  checkKnownKeys('metrics options', options, OPTION_KEYS);
  const prefix = options.prefix ?? 'callback_engine_';
  if (typeof prefix !== 'string' || !/^[a-zA-Z_:][a-zA-Z0-9_:]*$/.test(prefix))
    throw new InvalidArgumentError(
      `metrics options.prefix must be a valid Prometheus metric name prefix (got ${describe(prefix)})`,
    );
  const register = options.register ?? new Registry();
  if (options.defaultLabels !== undefined) register.setDefaultLabels({ ...options.defaultLabels });
  const durations = buckets('durationBuckets', options.durationBuckets, DURATION_BUCKETS);
  const commitBuckets = buckets('commitBuckets', options.commitBuckets, COMMIT_BUCKETS);
  const registers = [register];
  const stats = () => engine.stats();

  let made: ReturnType<typeof make>;
  try {
    made = make();
  } catch (err) {
    throw new InvalidArgumentError(`metrics: ${(err as Error).message}`, { cause: err });
  }
  function make() {
    return {
      dispatches: new Counter({
        name: `${prefix}dispatches_total`,
        help: 'Dispatches (reports and reads) answered, by anchor, reported status and outcome.',
        labelNames: ['anchor', 'status', 'outcome'],
        registers,
      }),
      creates: new Counter({
        name: `${prefix}creates_total`,
        help: 'Callbacks created, by anchor.',
        labelNames: ['anchor'],
        registers,
      }),
      timeouts: new Counter({
        name: `${prefix}timeouts_total`,
        help: 'Callbacks timed out (deadline or heartbeat), by anchor.',
        labelNames: ['anchor'],
        registers,
      }),
      orphans: new Counter({
        name: `${prefix}orphans_total`,
        help: 'Callbacks orphaned by their parent ending, by anchor.',
        labelNames: ['anchor'],
        registers,
      }),
      stepFailures: new Counter({
        name: `${prefix}step_failures_total`,
        help: 'Steps that failed for good (after their retries), by anchor and status.',
        labelNames: ['anchor', 'status'],
        registers,
      }),
      stepRetries: new Counter({
        name: `${prefix}step_retries_total`,
        help: 'Failed step tries that were retried, by anchor and status.',
        labelNames: ['anchor', 'status'],
        registers,
      }),
      forged: new Counter({
        name: `${prefix}forged_tokens_total`,
        help: 'Tokens whose signature did not verify.',
        registers,
        collect() {
          this.reset();
          this.inc(stats().forgedTokens);
        },
      }),
      active: new Gauge({
        name: `${prefix}callbacks_active`,
        help: 'Active callbacks.',
        registers,
        collect() {
          this.set(stats().active);
        },
      }),
      retained: new Gauge({
        name: `${prefix}callbacks_retained`,
        help: 'Inactive callbacks still retained.',
        registers,
        collect() {
          this.set(stats().retained);
        },
      }),
      live: new Gauge({
        name: `${prefix}live_actors`,
        help: 'Active callbacks whose XState actor is live (the rest are passivated).',
        registers,
        collect() {
          this.set(stats().liveActors);
        },
      }),
      poolThreads: new Gauge({
        name: `${prefix}pool_threads`,
        help: 'Worker threads of the step pool (0 before a worker step started it).',
        registers,
        collect() {
          this.set(stats().pool?.threads ?? 0);
        },
      }),
      poolQueue: new Gauge({
        name: `${prefix}pool_queue_depth`,
        help: 'Worker-step tasks waiting for a thread.',
        registers,
        collect() {
          this.set(stats().pool?.queued ?? 0);
        },
      }),
      dispatchSeconds: new Histogram({
        name: `${prefix}dispatch_duration_seconds`,
        help: 'Time from a dispatch arriving at the engine to its answer, by anchor and outcome.',
        labelNames: ['anchor', 'outcome'],
        buckets: durations,
        registers,
      }),
      stepSeconds: new Histogram({
        name: `${prefix}step_duration_seconds`,
        help: 'Duration of one step try, by anchor, status and result (ok or failed).',
        labelNames: ['anchor', 'status', 'result'],
        buckets: durations,
        registers,
      }),
      commitSeconds: new Histogram({
        name: `${prefix}commit_duration_seconds`,
        help: 'Duration of one group commit of the durable store, by result.',
        labelNames: ['result'],
        buckets: commitBuckets,
        registers,
      }),
      commitRows: new Histogram({
        name: `${prefix}commit_rows`,
        help: 'Rows written or removed by one group commit of the durable store.',
        buckets: ROW_BUCKETS,
        registers,
      }),
    };
  }
  const m = made;

  const onEvent = (e: EngineEvent): void => {
    const anchor = e.anchor ?? '(unknown)';
    switch (e.type) {
      case 'created':
        m.creates.inc({ anchor });
        break;
      case 'timedOut':
        m.timeouts.inc({ anchor });
        break;
      case 'orphaned':
        m.orphans.inc({ anchor });
        break;
      case 'stepFailed':
        m.stepFailures.inc({ anchor, status: e.reported ?? '(unknown)' });
        break;
      case 'stepRetried':
        m.stepRetries.inc({ anchor, status: e.reported ?? '(unknown)' });
        break;
      default:
        break;
    }
  };
  const onMeasure = (x: Measurement): void => {
    if (x.kind === 'dispatch') {
      m.dispatches.inc({ anchor: x.anchor, status: x.reported, outcome: x.outcome });
      m.dispatchSeconds.observe({ anchor: x.anchor, outcome: x.outcome }, x.seconds);
    } else if (x.kind === 'step') {
      m.stepSeconds.observe(
        { anchor: x.anchor, status: x.status, result: x.ok ? 'ok' : 'failed' },
        x.seconds,
      );
    } else {
      m.commitSeconds.observe({ result: x.ok ? 'ok' : 'failed' }, x.seconds);
      if (x.ok) m.commitRows.observe(x.rows);
    }
  };
  const unsubscribe = engine.subscribe(onEvent);
  const unmeasure = engine.onMeasure(onMeasure);
  const metrics: EngineMetrics = Object.freeze({
    register,
    scrape: () => register.metrics(),
    close() {
      unsubscribe();
      unmeasure();
    },
  });
  rememberEngine(metrics, engine);
  return metrics;
}
