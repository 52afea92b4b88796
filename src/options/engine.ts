/**
 * Options of the engine itself (`createCallbackEngine(options)`): their type,
 * their validated form, the worker-pool bounds, and `resolveOptions`, which
 * checks them once and eagerly. Warnings about risky choices (a random or a
 * short secret) are written here, once per logger.
 *
 * @module
 */

import { randomBytes } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { systemClock, type Clock } from '../clock.js';
import { describe, durationMs, parseDuration } from '../duration.js';
import { InvalidArgumentError } from '../errors.js';
import { isLogger, warner, type EngineLogger } from '../log.js';
import { checkKnownKeys } from '../keys.js';
import type { PoolOptions } from '../pool/worker-step.js';
import {
  resolveRelayOptions,
  type RelayOptions,
  type ResolvedRelayOptions,
} from '../relay/options.js';
import { isCallbackStore, memoryStore, type CallbackStore } from '../store/store.js';
import type { EngineEvent } from '../types.js';
import {
  checkHeartbeat,
  checkName,
  checkObject,
  checkPositiveInt,
  checkRetention,
  checkStepTimeout,
  checkTimeout,
} from './checks.js';
import { DEFAULTS } from './defaults.js';

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
   * Bound on live callbacks: callbacks whose state machine is running (an XState actor while
   * an inspector is attached). Beyond it the least recently used idle one is passivated:
   * stopped, its state kept in its record, and brought back on its next report or timer.
   * Active callbacks are never lost, whatever the bound.
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

/** Every key of {@link PoolOptions}. */
export const POOL_OPTION_KEYS: readonly string[] = Object.freeze([
  'minThreads',
  'maxThreads',
  'idleTimeoutMs',
  'maxQueue',
  'close',
]);

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
