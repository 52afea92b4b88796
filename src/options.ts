/**
 * Option types, frozen defaults and eager validation for the engine, anchors
 * and `create`.
 *
 * @module
 */

import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { systemClock, type Clock } from './clock.js';
import { deadlineAt, describe, durationMs, parseDuration } from './duration.js';
import { DEFAULT_ATTRIBUTES, type AttributeOptions, type ResolvedAttributes } from './answer.js';
import { InvalidArgumentError } from './errors.js';
import { isLogger, warner, type EngineLogger } from './log.js';
import { checkKnownKeys } from './keys.js';
import { resolveRetryOption, type ResolvedRetryMap, type RetryOption } from './retry.js';
import {
  DISPATCH_STATUSES,
  isDispatchStatus,
  STEP_KEYS,
  type DispatchStatus,
} from './lifecycle/statuses.js';
import { isWorkerStep, type PoolOptions } from './pool/worker-step.js';
import {
  resolveSchemas,
  type ReportSchemas,
  type ResolvedSchemas,
  type StandardSchemaV1,
} from './schema.js';
import {
  resolveRelayOptions,
  type RelayOptions,
  type ResolvedRelayOptions,
} from './relay/options.js';
import { isCallbackStore, memoryStore, type CallbackStore } from './store/store.js';
import type { EngineEvent, StepMap } from './types.js';

/** Options of {@link createCallbackEngine}. */
export interface CallbackEngineOptions {
  /**
   * Owner name put in every token; routes tokens across nodes.
   * @default a random id
   */
  node?: string;
  /**
   * HMAC keys for tokens: the first signs, all verify (rotation). At least 16 bytes each is advised.
   * @default one random key per process (warns once: tokens do not survive a restart)
   */
  secrets?: readonly (string | Buffer)[];
  /**
   * Default deadline of new callbacks: ISO 8601 duration, ISO 8601 date-time, or `false`.
   * @default 'PT1H'
   */
  timeout?: string | Date | false;
  /**
   * Default heartbeat window: if no report arrives within it while active, the callback times out.
   * @default none
   */
  heartbeat?: string;
  /**
   * How long an inactive callback is kept: ISO 8601 duration, or `true` for forever.
   * @default 'PT1H'
   */
  retention?: string | true;
  /**
   * Time source for every timer and timestamp.
   * @default {@link systemClock}
   */
  clock?: Clock;
  /** Called with every engine event (spec 13). Must not throw; if it does, the error is reported and ignored. */
  inspect?: (event: EngineEvent) => void;
  /**
   * Largest report (or creation) data accepted, as bytes of JSON.
   * @default 262144 (256 KiB)
   */
  maxDataBytes?: number;
  /**
   * Memory bound on *inactive* retained callbacks; the least recently used beyond it are
   * removed early. Active callbacks are never evicted.
   * @default unbounded (retention alone decides)
   */
  maxRetained?: number;
  /**
   * Bound on live XState actors. Beyond it the least recently used idle actor is
   * passivated: stopped, its state kept in its record, and restarted on its next report
   * or timer. Active callbacks are never lost, whatever the bound.
   * @default 100000
   */
  maxLiveActors?: number;
  /** The worker-thread pool for worker steps; started on first use. */
  pool?: PoolOptions;
  /** Public base URL of the Dispatch Callback Service, for {@link CallbackEngine.callbackUrl}. */
  baseUrl?: string;
  /**
   * Where callbacks live: {@link memoryStore} (nothing on disk) or a durable store such as
   * `sqliteStore({ path })` from `callback-engine/sqlite`. With a durable store, every
   * acknowledgement waits for its commit, a restart restores every callback, and `node` and
   * `secrets` are required (random ones would orphan every stored token).
   * @default memoryStore()
   */
  store?: CallbackStore;
  /**
   * How long a step may run: an ISO 8601 duration, or `false` for no limit. When it passes, the
   * step's `signal` is aborted with a {@link StepTimeoutError} and the step fails like a throwing
   * step (the callback goes to `error`); the mailbox moves on even if the step never settles.
   * Anchors may override it.
   * @default 'PT5M'
   */
  stepTimeout?: string | false;
  /**
   * How long `close()` lets steps in flight finish (their outcome is stored as usual) and the
   * worker pool drain. A step still running then is cut off: with a durable store it stays owed
   * and runs again when the engine next starts; its report is answered with the callback as
   * stored. Then the pool is destroyed and `close()` resolves.
   * @default 'PT10S'
   */
  closeTimeout?: string;
  /**
   * How long a report's deduplication key is kept with its callback (an ISO 8601 duration): a
   * report sent again with the same key within it is applied once (answered `replayed`). Keys
   * belong to one callback: two callbacks may use the same key.
   * @default 'PT24H'
   */
  dedupWindow?: string;
  /**
   * Largest merged data of one callback, as bytes of JSON. A report, creation data or step output
   * that would make it larger is refused with `PayloadTooLargeError` and nothing is applied.
   * @default 1048576 (1 MiB)
   */
  maxCallbackBytes?: number;
  /** Forwarding of reports for relayed tokens (see `engine.relay()`): timeout, answer size, headers. */
  relay?: RelayOptions;
  /**
   * Where warnings go: a pino-compatible logger (`logger.warn({ code, ...fields }, message)`),
   * e.g. `pino()` or a child logger. Each warning has a stable `code` (`CBE_W_...`).
   * @default `process.emitWarning` (type `CallbackEngineWarning`)
   */
  logger?: EngineLogger;
}

/** Options of {@link CallbackEngine.anchor}. */
export interface AnchorOptions {
  /** Steps by status (spec 6). */
  next?: StepMap;
  /** Output attribute names (spec 7). */
  attributes?: AttributeOptions;
  /** Default deadline of this anchor's callbacks. @default the engine's */
  timeout?: string | Date | false;
  /** Default heartbeat window of this anchor's callbacks. @default the engine's */
  heartbeat?: string;
  /** Default retention of this anchor's callbacks. @default the engine's */
  retention?: string | true;
  /**
   * Creation-data keys that identify a callback of this anchor to CloudEvents: an event whose
   * extension attributes carry all of them (names lower-cased, values compared as strings) reaches it.
   */
  correlate?: readonly string[];
  /** CloudEvent `type` → status, for events that carry no `callbackstatus` extension. */
  eventTypes?: Readonly<Record<string, DispatchStatus>>;
  /**
   * Creation-data keys that reports may change. A report (or a `cancel` with data) that carries
   * another key of the callback's creation data with a different value is refused before
   * anything is applied (`InvalidDataError`, HTTP 400, an issue per key): what `create()` was
   * given, and what typed steps see as `cb.data`, stays as it was. Carrying the same value back
   * (an outside party echoing `orderId`) is allowed. Steps' own output is not restricted.
   * @default [] (no creation field is reportable)
   */
  reportable?: readonly string[];
  /** Time limit of this anchor's steps: ISO 8601 duration or `false`. @default the engine's */
  stepTimeout?: string | false;
  /**
   * A Standard Schema (zod, valibot, arktype, ...) for the creation data: `create()` with data
   * that fails it rejects with `InvalidDataError` listing the issues; its output is the data.
   * Through the handle `anchor()` returns, `create({ data })` and the steps are typed by it.
   */
  data?: StandardSchemaV1;
  /**
   * Standard Schemas for report data, by status or `'*'` (every status without its own): a report
   * whose data fails is refused before anything is applied (`InvalidDataError`, HTTP 400, listing
   * the issues); its output is the data merged. Steps see `cb.report` typed by it.
   */
  reports?: ReportSchemas;
  /**
   * Early events: hold CloudEvents that carry every `correlate` key (and whose status resolves
   * through `callbackstatus` or `eventTypes`) while no callback of this anchor holds that key,
   * answering them `202` (`Callback-Outcome: queued`); the callback created with that key
   * applies them in arrival order before `create()` resolves. `true` takes the defaults.
   * Needs `correlate`.
   * @default off
   */
  early?: boolean | EarlyEventsOptions;
  /**
   * Retries of failing steps: one `RetryPolicy` for every step, or a `RetryMap` by
   * step key (looked up like `next`). A step that throws, rejects or passes `stepTimeout` is tried
   * again after a delay on the engine's clock; the callback's later reports wait behind it. A
   * cancel, timeout or orphan stops the retries at once. After the last try the failure is
   * handled as without retries (the callback moves to `error`).
   * @default no retries
   * @example
   * ```ts
   * engine.anchor('ocr', { next: { start: submit }, retry: { attempts: 4, backoff: 'PT2S', maxDelay: 'PT30S' } });
   * engine.anchor('pay', { next: { active: charge }, retry: { active: { attempts: 3 }, progress: false } });
   * ```
   */
  retry?: RetryOption;
}

/** Bounds of an anchor's early events (see {@link AnchorOptions.early}). */
export interface EarlyEventsOptions {
  /** Events held at once for this anchor, over all correlation keys. @default 1000 */
  maxEvents?: number;
  /** Bytes of held event data (as JSON) at once for this anchor. @default 1048576 (1 MiB) */
  maxBytes?: number;
  /** How long an event is held before it expires unclaimed: ISO 8601 duration. @default 'PT10M' */
  retention?: string;
}

/** An anchor's early-event bounds after validation. */
export interface ResolvedEarly {
  readonly maxEvents: number;
  readonly maxBytes: number;
  /** As given (for messages). */
  readonly retention: string;
  readonly retentionMs: number;
}

/** Options of {@link CallbackEngine.create} (spec 5). */
export interface CreateOptions {
  /** Creation data: the base layer of the callback's data. */
  data?: Record<string, unknown>;
  /** Deadline: ISO 8601 duration, date-time, `Date`, or `false`. @default the anchor's */
  timeout?: string | Date | false;
  /** Heartbeat window (ISO 8601 duration). @default the anchor's */
  heartbeat?: string;
  /** Retention after inactive: ISO 8601 duration or `true`. @default the anchor's */
  retention?: string | true;
  /** Makes this callback a child of the (active) callback with this token. */
  parentToken?: string;
  /** A second create at the same anchor with the same key, while retained, returns the existing callback. */
  idempotencyKey?: string;
  /** Up to 10 short strings, for listing and metrics. */
  tags?: readonly string[];
}

export type { AttributeOptions, ResolvedAttributes };

/** Engine options after validation. */
export interface ResolvedEngineOptions {
  readonly node: string;
  readonly secrets: readonly (string | Buffer)[];
  readonly timeout: string | Date | false;
  readonly heartbeat: string | undefined;
  readonly retention: string | true;
  readonly clock: Clock;
  readonly inspect: ((event: EngineEvent) => void) | undefined;
  readonly maxDataBytes: number;
  readonly maxRetained: number | undefined;
  readonly maxLiveActors: number;
  readonly pool: Readonly<Required<PoolOptions>>;
  readonly baseUrl: string | undefined;
  readonly store: CallbackStore;
  /** The step time limit as given (for messages), or `false`. */
  readonly stepTimeout: string | false;
  /** The step time limit in ms, or `false`. */
  readonly stepTimeoutMs: number | false;
  readonly closeTimeoutMs: number;
  readonly dedupWindowMs: number;
  readonly maxCallbackBytes: number;
  readonly relay: ResolvedRelayOptions;
  readonly logger: EngineLogger | undefined;
}

/** Anchor options after validation. */
export interface ResolvedAnchor {
  readonly name: string;
  readonly next: Readonly<StepMap>;
  readonly attributes: ResolvedAttributes;
  readonly timeout: string | Date | false;
  readonly heartbeat: string | undefined;
  readonly retention: string | true;
  readonly correlate: readonly string[];
  readonly eventTypes: Readonly<Record<string, DispatchStatus>>;
  /** Creation-data keys reports may change (`reportable`). */
  readonly reportable: ReadonlySet<string>;
  /** The step time limit as given (for messages), or `false`. */
  readonly stepTimeout: string | false;
  /** The step time limit in ms, or `false`. */
  readonly stepTimeoutMs: number | false;
  /** The `data` and `reports` schemas. */
  readonly schemas: ResolvedSchemas;
  /** Early-event bounds, or `undefined` when the anchor did not opt in. */
  readonly early: ResolvedEarly | undefined;
  /** Retry policies by step key (empty: no retries). */
  readonly retry: ResolvedRetryMap;
}

/**
 * Every key of {@link CallbackEngineOptions}. Includes keys other parts of the
 * engine own (`store`, `stepTimeout`, `closeTimeout`, `maxCallbackBytes`), so
 * that they are never refused as unknown.
 */
export const ENGINE_OPTION_KEYS: readonly string[] = Object.freeze([
  'node',
  'secrets',
  'timeout',
  'heartbeat',
  'retention',
  'clock',
  'inspect',
  'maxDataBytes',
  'maxRetained',
  'maxLiveActors',
  'pool',
  'baseUrl',
  'store',
  'stepTimeout',
  'closeTimeout',
  'dedupWindow',
  'maxCallbackBytes',
  'relay',
  'logger',
]);

/** Every key of {@link AnchorOptions} (with `stepTimeout`, owned by the step-limits work). */
export const ANCHOR_OPTION_KEYS: readonly string[] = Object.freeze([
  'next',
  'attributes',
  'timeout',
  'heartbeat',
  'retention',
  'correlate',
  'eventTypes',
  'reportable',
  'stepTimeout',
  'data',
  'reports',
  'early',
  'retry',
]);

/** Every key of {@link CreateOptions}. */
export const CREATE_OPTION_KEYS: readonly string[] = Object.freeze([
  'data',
  'timeout',
  'heartbeat',
  'retention',
  'parentToken',
  'idempotencyKey',
  'tags',
]);

/** Every key of {@link PoolOptions}. */
export const POOL_OPTION_KEYS: readonly string[] = Object.freeze([
  'minThreads',
  'maxThreads',
  'idleTimeoutMs',
  'maxQueue',
  'close',
]);

/**
 * Refuses unknown keys in `create()` options.
 *
 * @throws {@link InvalidArgumentError} naming the key and the nearest valid one.
 */
export function checkCreateKeys(options: object): void {
  checkKnownKeys('create options', options, CREATE_OPTION_KEYS);
}

/** Frozen defaults. */
export const DEFAULTS = Object.freeze({
  timeout: 'PT1H',
  retention: 'PT1H',
  maxDataBytes: 256 * 1024,
  maxLiveActors: 100_000,
  stepTimeout: 'PT5M',
  closeTimeout: 'PT10S',
  dedupWindow: 'PT24H',
  maxCallbackBytes: 1024 * 1024,
  early: Object.freeze({ maxEvents: 1000, maxBytes: 1024 * 1024, retention: 'PT10M' }),
  attributes: DEFAULT_ATTRIBUTES,
});

/** Limits on names and tags. */
export const LIMITS = Object.freeze({
  nameLength: 128,
  maxTags: 10,
  tagLength: 64,
  idempotencyKeyLength: 256,
});

/** Whether a worker step's `file:` URL names an existing file (other schemes are not checked). */
function workerModuleExists(href: string): boolean {
  const url = new URL(href);
  return url.protocol !== 'file:' || existsSync(url);
}

const NAME_RE = /^[A-Za-z0-9_.:-]+$/;

const warned = new Set<string>();
/** Writes a warning once per code and logger (lru-cache style); `process.emitWarning` without a logger. */
export function warnOncePer(code: string, message: string, logger?: EngineLogger): void {
  const key = logger === undefined ? code : undefined;
  if (key !== undefined) {
    if (warned.has(key)) return;
    warned.add(key);
  } else {
    const seen = warnedBy.get(logger!) ?? new Set<string>();
    if (seen.has(code)) return;
    seen.add(code);
    warnedBy.set(logger!, seen);
  }
  warner(logger)(code, message);
}
const warnedBy = new WeakMap<EngineLogger, Set<string>>();

/** Checks a node or anchor name. */
export function checkName(what: string, value: unknown): string {
  if (
    typeof value !== 'string' ||
    value.length === 0 ||
    value.length > LIMITS.nameLength ||
    !NAME_RE.test(value)
  ) {
    throw new InvalidArgumentError(
      `${what} must be 1-${LIMITS.nameLength} characters of A-Z a-z 0-9 _ . : - (got ${describe(value)})`,
    );
  }
  return value;
}

function checkObject(what: string, value: unknown): Record<string, unknown> {
  if (value === undefined) return {};
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new InvalidArgumentError(`${what} must be an object (got ${describe(value)})`);
  }
  return value as Record<string, unknown>;
}

/** Checks a deadline option (`timeout`) without resolving it. */
export function checkTimeout(what: string, value: unknown): string | Date | false {
  deadlineAt(what, value, Number.NEGATIVE_INFINITY);
  return value as string | Date | false;
}

/** Checks a heartbeat option. */
export function checkHeartbeat(what: string, value: unknown): string | undefined {
  if (value === undefined) return undefined;
  if (durationMs(what, value, 0) <= 0)
    throw new InvalidArgumentError(`${what} must be longer than zero (got ${describe(value)})`);
  return value as string;
}

/** Checks a retention option. */
export function checkRetention(what: string, value: unknown): string | true {
  if (value === true) return true;
  if (typeof value !== 'string' || !parseDuration(value)) {
    throw new InvalidArgumentError(
      `${what} must be true or an ISO 8601 duration such as "PT24H" (got ${describe(value)})`,
    );
  }
  return value;
}

/** Checks a step time limit: a positive ISO 8601 duration or `false`; returns it in ms. */
export function checkStepTimeout(what: string, value: unknown): number | false {
  if (value === false) return false;
  const d = typeof value === 'string' ? parseDuration(value) : undefined;
  const ms = d ? durationMs(what, value, 0) : 0;
  if (!d || ms <= 0) {
    throw new InvalidArgumentError(
      `${what} must be false or an ISO 8601 duration longer than zero such as "PT30S" (got ${describe(value)})`,
    );
  }
  return ms;
}

/** Checks `closeTimeout`: an ISO 8601 duration (zero allowed: do not wait); returns it in ms. */
function checkCloseTimeout(what: string, value: unknown): number {
  if (typeof value !== 'string' || !parseDuration(value)) {
    throw new InvalidArgumentError(
      `${what} must be an ISO 8601 duration such as "PT10S" (got ${describe(value)})`,
    );
  }
  return durationMs(what, value, 0);
}

/** Checks `dedupWindow`: an ISO 8601 duration longer than zero; returns it in ms. */
function checkDedupWindow(value: unknown): number {
  if (typeof value !== 'string' || !parseDuration(value)) {
    throw new InvalidArgumentError(
      `options.dedupWindow must be an ISO 8601 duration such as "PT24H" (got ${describe(value)})`,
    );
  }
  const ms = durationMs('options.dedupWindow', value, 0);
  if (!(ms > 0)) throw new InvalidArgumentError('options.dedupWindow must be longer than zero');
  return ms;
}

function checkPositiveInt(what: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) {
    throw new InvalidArgumentError(`${what} must be a positive integer (got ${describe(value)})`);
  }
  return value;
}

/**
 * Validates engine options once, eagerly.
 *
 * @throws {@link InvalidArgumentError} naming the first bad option and its value.
 */
export function resolveOptions(input: CallbackEngineOptions | undefined): ResolvedEngineOptions {
  const o = checkObject('options', input) as CallbackEngineOptions;
  checkKnownKeys('engine options', o, ENGINE_OPTION_KEYS);
  const store = o.store ?? memoryStore();
  if (!isCallbackStore(store))
    throw new InvalidArgumentError(
      `options.store must be memoryStore() or a durable store such as sqliteStore() (got ${describe(o.store)})`,
    );
  if (store.kind === 'durable') {
    // Stored tokens name this node and are signed with these keys: random ones would orphan them.
    for (const key of ['node', 'secrets'] as const)
      if (o[key] === undefined)
        throw new InvalidArgumentError(
          `options.${key} is required with a durable store (${store.name}): tokens minted before a restart must still verify`,
        );
  }
  if (o.logger !== undefined && !isLogger(o.logger))
    throw new InvalidArgumentError(
      `options.logger must be a logger with a warn(obj, msg) method, such as pino() (got ${describe(o.logger)})`,
    );
  const warnOnce = (code: string, message: string) => warnOncePer(code, message, o.logger);
  const node =
    o.node === undefined
      ? `node-${randomBytes(6).toString('hex')}`
      : checkName('options.node', o.node);
  let secrets: readonly (string | Buffer)[];
  if (o.secrets === undefined) {
    warnOnce(
      'CBE_W_RANDOM_SECRET',
      'callback-engine: no options.secrets given; using a random key, so tokens will not verify after a restart',
    );
    secrets = [randomBytes(32)];
  } else {
    if (!Array.isArray(o.secrets) || o.secrets.length === 0) {
      throw new InvalidArgumentError(
        `options.secrets must be a non-empty array of strings or Buffers (got ${describe(o.secrets)})`,
      );
    }
    (o.secrets as readonly unknown[]).forEach((s, i) => {
      if (!((typeof s === 'string' || Buffer.isBuffer(s)) && s.length > 0)) {
        throw new InvalidArgumentError(
          `options.secrets[${i}] must be a non-empty string or Buffer (got ${describe(s)})`,
        );
      }
      if (s.length < 16)
        warnOnce(
          'CBE_W_SHORT_SECRET',
          'callback-engine: a secret shorter than 16 bytes makes tokens easier to forge',
        );
    });
    secrets = [...(o.secrets as readonly (string | Buffer)[])];
  }
  const clock = o.clock ?? systemClock;
  if (
    typeof clock.now !== 'function' ||
    typeof clock.setTimeout !== 'function' ||
    typeof clock.clearTimeout !== 'function'
  ) {
    throw new InvalidArgumentError(
      'options.clock must have now(), setTimeout() and clearTimeout() methods',
    );
  }
  if (o.inspect !== undefined && typeof o.inspect !== 'function') {
    throw new InvalidArgumentError(
      `options.inspect must be a function (got ${describe(o.inspect)})`,
    );
  }
  return Object.freeze({
    node,
    secrets,
    timeout:
      o.timeout === undefined ? DEFAULTS.timeout : checkTimeout('options.timeout', o.timeout),
    heartbeat: checkHeartbeat('options.heartbeat', o.heartbeat),
    retention:
      o.retention === undefined
        ? DEFAULTS.retention
        : checkRetention('options.retention', o.retention),
    clock,
    inspect: o.inspect,
    maxDataBytes:
      o.maxDataBytes === undefined
        ? DEFAULTS.maxDataBytes
        : checkPositiveInt('options.maxDataBytes', o.maxDataBytes),
    maxRetained:
      o.maxRetained === undefined
        ? undefined
        : checkPositiveInt('options.maxRetained', o.maxRetained),
    maxLiveActors:
      o.maxLiveActors === undefined
        ? DEFAULTS.maxLiveActors
        : checkPositiveInt('options.maxLiveActors', o.maxLiveActors),
    pool: resolvePool(o.pool),
    baseUrl: checkBaseUrl(o.baseUrl),
    store,
    stepTimeout: o.stepTimeout ?? DEFAULTS.stepTimeout,
    stepTimeoutMs: checkStepTimeout('options.stepTimeout', o.stepTimeout ?? DEFAULTS.stepTimeout),
    closeTimeoutMs: checkCloseTimeout(
      'options.closeTimeout',
      o.closeTimeout ?? DEFAULTS.closeTimeout,
    ),
    dedupWindowMs: checkDedupWindow(o.dedupWindow ?? DEFAULTS.dedupWindow),
    maxCallbackBytes:
      o.maxCallbackBytes === undefined
        ? DEFAULTS.maxCallbackBytes
        : checkPositiveInt('options.maxCallbackBytes', o.maxCallbackBytes),
    relay: resolveRelayOptions(o.relay),
    logger: o.logger,
  });
}

function checkBaseUrl(value: unknown): string | undefined {
  if (value === undefined) return undefined;
  let url: URL | undefined;
  try {
    url = typeof value === 'string' ? new URL(value) : undefined;
  } catch {
    url = undefined;
  }
  if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:')) {
    throw new InvalidArgumentError(
      `options.baseUrl must be an http(s) URL (got ${describe(value)})`,
    );
  }
  return url.href.replace(/\/+$/, '');
}

function resolvePool(input: PoolOptions | undefined): Readonly<Required<PoolOptions>> {
  const p = checkObject('options.pool', input) as PoolOptions;
  checkKnownKeys('options.pool', p, POOL_OPTION_KEYS);
  const int = (name: keyof PoolOptions, value: unknown, fallback: number, min: number): number => {
    if (value === undefined) return fallback;
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min) {
      throw new InvalidArgumentError(
        `options.pool.${name} must be an integer of at least ${min} (got ${describe(value)})`,
      );
    }
    return value;
  };
  const cpus = Math.max(1, availableParallelism());
  const minThreads = int('minThreads', p.minThreads, 1, 0);
  const maxThreads = int('maxThreads', p.maxThreads, Math.max(cpus, minThreads), 1);
  if (minThreads > maxThreads) {
    throw new InvalidArgumentError(
      `options.pool.minThreads (${minThreads}) must not exceed options.pool.maxThreads (${maxThreads})`,
    );
  }
  if (p.close !== undefined && p.close !== 'drain' && p.close !== 'destroy') {
    throw new InvalidArgumentError(
      `options.pool.close must be "drain" or "destroy" (got ${describe(p.close)})`,
    );
  }
  return Object.freeze({
    minThreads,
    maxThreads,
    idleTimeoutMs: int('idleTimeoutMs', p.idleTimeoutMs, 30_000, 0),
    maxQueue: int('maxQueue', p.maxQueue, 1024, 0),
    close: p.close ?? 'drain',
  });
}

/**
 * Validates an anchor's options, filling engine defaults.
 *
 * @throws {@link InvalidArgumentError} naming the first bad option and its value.
 */
export function resolveAnchor(
  name: unknown,
  input: AnchorOptions | undefined,
  engine: ResolvedEngineOptions,
): ResolvedAnchor {
  const anchor = checkName('anchor name', name);
  const o = checkObject(`anchor "${anchor}" options`, input) as AnchorOptions;
  checkKnownKeys(`anchor "${anchor}" options`, o, ANCHOR_OPTION_KEYS);
  const next = checkObject(`anchor "${anchor}" options.next`, o.next) as StepMap;
  for (const [key, step] of Object.entries(next)) {
    if (!STEP_KEYS.has(key)) {
      throw new InvalidArgumentError(
        `anchor "${anchor}" options.next has unknown key "${key}"; use a status, "active", "error" or "*"`,
      );
    }
    if (step !== false && typeof step !== 'function' && !isWorkerStep(step)) {
      throw new InvalidArgumentError(
        `anchor "${anchor}" options.next.${key} must be a function, a workerStep() or false (got ${describe(step)})`,
      );
    }
    // The export can only be checked by importing the module, which the worker does; a file that
    // is not there is caught now rather than at the first report.
    if (isWorkerStep(step) && !workerModuleExists(step.module)) {
      throw new InvalidArgumentError(
        `anchor "${anchor}" options.next.${key}: worker step module ${step.module} does not exist`,
      );
    }
  }
  const a = checkObject(`anchor "${anchor}" options.attributes`, o.attributes);
  const attributes = { ...DEFAULTS.attributes } as {
    -readonly [K in keyof ResolvedAttributes]: ResolvedAttributes[K];
  };
  checkKnownKeys(`anchor "${anchor}" options.attributes`, a, Object.keys(DEFAULTS.attributes));
  for (const [key, value] of Object.entries(a)) {
    if (value === undefined) continue;
    if (typeof value !== 'string' || value.length === 0 || value === '__proto__') {
      throw new InvalidArgumentError(
        `anchor "${anchor}" options.attributes.${key} must be a non-empty string (got ${describe(value)})`,
      );
    }
    (attributes as Record<string, string>)[key] = value;
  }
  const correlate = checkCorrelate(anchor, o.correlate);
  const names = Object.values(attributes).filter((v) => v !== undefined);
  if (new Set(names).size !== names.length) {
    throw new InvalidArgumentError(
      `anchor "${anchor}" options.attributes gives two attributes the same name`,
    );
  }
  return Object.freeze({
    name: anchor,
    next: Object.freeze({ ...next }),
    attributes: Object.freeze(attributes),
    timeout:
      o.timeout === undefined
        ? engine.timeout
        : checkTimeout(`anchor "${anchor}" options.timeout`, o.timeout),
    heartbeat:
      o.heartbeat === undefined
        ? engine.heartbeat
        : checkHeartbeat(`anchor "${anchor}" options.heartbeat`, o.heartbeat),
    retention:
      o.retention === undefined
        ? engine.retention
        : checkRetention(`anchor "${anchor}" options.retention`, o.retention),
    correlate,
    eventTypes: checkEventTypes(anchor, o.eventTypes),
    reportable: checkReportable(anchor, o.reportable),
    stepTimeout: o.stepTimeout === undefined ? engine.stepTimeout : o.stepTimeout,
    stepTimeoutMs:
      o.stepTimeout === undefined
        ? engine.stepTimeoutMs
        : checkStepTimeout(`anchor "${anchor}" options.stepTimeout`, o.stepTimeout),
    schemas: resolveSchemas(anchor, o.data, o.reports),
    early: checkEarly(anchor, o.early, correlate),
    retry: resolveRetryOption(`anchor "${anchor}" options.retry`, o.retry),
  });
}

/** Early-event option keys. */
const EARLY_OPTION_KEYS: readonly string[] = Object.freeze(['maxEvents', 'maxBytes', 'retention']);

function checkEarly(
  anchor: string,
  value: unknown,
  correlate: readonly string[],
): ResolvedEarly | undefined {
  if (value === undefined || value === false) return undefined;
  const what = `anchor "${anchor}" options.early`;
  if (value !== true && (typeof value !== 'object' || value === null || Array.isArray(value)))
    throw new InvalidArgumentError(
      `${what} must be true, false or an object { maxEvents, maxBytes, retention } (got ${describe(value)})`,
    );
  if (correlate.length === 0)
    throw new InvalidArgumentError(
      `${what} needs options.correlate: early events are held under the anchor's correlation keys`,
    );
  const o = (value === true ? {} : value) as EarlyEventsOptions;
  checkKnownKeys(what, o, EARLY_OPTION_KEYS);
  const d = DEFAULTS.early;
  const maxEvents =
    o.maxEvents === undefined ? d.maxEvents : checkPositiveInt(`${what}.maxEvents`, o.maxEvents);
  const maxBytes =
    o.maxBytes === undefined ? d.maxBytes : checkPositiveInt(`${what}.maxBytes`, o.maxBytes);
  const retention = o.retention ?? d.retention;
  const parsed = typeof retention === 'string' ? parseDuration(retention) : undefined;
  const retentionMs = parsed ? durationMs(`${what}.retention`, retention, 0) : 0;
  if (!parsed || !(retentionMs > 0))
    throw new InvalidArgumentError(
      `${what}.retention must be an ISO 8601 duration longer than zero such as "PT10M" (got ${describe(retention)})`,
    );
  return Object.freeze({ maxEvents, maxBytes, retention, retentionMs });
}

function checkReportable(anchor: string, value: unknown): ReadonlySet<string> {
  if (value === undefined) return NOTHING_REPORTABLE;
  if (!Array.isArray(value))
    throw new InvalidArgumentError(
      `anchor "${anchor}" options.reportable must be an array of creation-data keys (got ${describe(value)})`,
    );
  value.forEach((k: unknown, i) => {
    if (typeof k !== 'string' || k.length === 0 || k.length > 200)
      throw new InvalidArgumentError(
        `anchor "${anchor}" options.reportable[${i}] must be a key of 1-200 characters (got ${describe(k)})`,
      );
  });
  return value.length === 0 ? NOTHING_REPORTABLE : new Set(value as string[]);
}

const NOTHING_REPORTABLE: ReadonlySet<string> = new Set();

function checkCorrelate(anchor: string, value: unknown): readonly string[] {
  if (value === undefined) return [];
  if (!Array.isArray(value) || value.length === 0 || value.length > 10) {
    throw new InvalidArgumentError(
      `anchor "${anchor}" options.correlate must be an array of 1-10 creation-data keys (got ${describe(value)})`,
    );
  }
  value.forEach((k: unknown, i) => {
    if (typeof k !== 'string' || !/^[A-Za-z0-9]{1,20}$/.test(k)) {
      throw new InvalidArgumentError(
        `anchor "${anchor}" options.correlate[${i}] must be 1-20 letters or digits, as CloudEvents extension names are (got ${describe(k)})`,
      );
    }
  });
  return Object.freeze([...(value as string[])]);
}

function checkEventTypes(anchor: string, value: unknown): Readonly<Record<string, DispatchStatus>> {
  const map = checkObject(`anchor "${anchor}" options.eventTypes`, value);
  const out: Record<string, DispatchStatus> = Object.create(null) as Record<string, DispatchStatus>;
  for (const [type, status] of Object.entries(map)) {
    if (!isDispatchStatus(status)) {
      throw new InvalidArgumentError(
        `anchor "${anchor}" options.eventTypes["${type}"] must be one of ${DISPATCH_STATUSES.join(', ')} (got ${describe(status)})`,
      );
    }
    out[type] = status;
  }
  return Object.freeze(out);
}

/** Checks `create`'s tags. */
const NO_TAGS: readonly string[] = Object.freeze([]);

export function checkTags(value: unknown): readonly string[] {
  if (value === undefined || (Array.isArray(value) && value.length === 0)) return NO_TAGS;
  if (!Array.isArray(value) || value.length > LIMITS.maxTags) {
    throw new InvalidArgumentError(
      `options.tags must be an array of at most ${LIMITS.maxTags} strings (got ${describe(value)})`,
    );
  }
  value.forEach((t: unknown, i) => {
    if (typeof t !== 'string' || t.length === 0 || t.length > LIMITS.tagLength) {
      throw new InvalidArgumentError(
        `options.tags[${i}] must be a string of 1-${LIMITS.tagLength} characters (got ${describe(t)})`,
      );
    }
  });
  return Object.freeze([...(value as string[])]);
}

/** Checks `create`'s idempotency key. */
export function checkIdempotencyKey(value: unknown): string | undefined {
  if (value === undefined) return undefined;
  if (
    typeof value !== 'string' ||
    value.length === 0 ||
    value.length > LIMITS.idempotencyKeyLength
  ) {
    throw new InvalidArgumentError(
      `options.idempotencyKey must be a string of 1-${LIMITS.idempotencyKeyLength} characters (got ${describe(value)})`,
    );
  }
  return value;
}
