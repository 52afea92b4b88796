/**
 * Options of one anchor (`engine.anchor(name, options)`): steps, attribute
 * names, deadlines, correlation keys, event types, schemas, early events and
 * retries; their validated form, and `resolveAnchor`, which checks them once
 * and fills the engine's defaults.
 *
 * @module
 */

import { existsSync } from 'node:fs';
import type { AttributeOptions, ResolvedAttributes } from '../answer.js';
import { describe, durationMs, parseDuration } from '../duration.js';
import { InvalidArgumentError } from '../errors.js';
import { checkKnownKeys } from '../keys.js';
import {
  DISPATCH_STATUSES,
  isDispatchStatus,
  STEP_KEYS,
  type DispatchStatus,
} from '../lifecycle/statuses.js';
import { isWorkerStep } from '../pool/worker-step.js';
import { resolveRetryOption, type ResolvedRetryMap, type RetryOption } from '../retry.js';
import {
  resolveSchemas,
  type ReportSchemas,
  type ResolvedSchemas,
  type StandardSchemaV1,
} from '../schema.js';
import type { StepMap } from '../types.js';
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
import type { ResolvedEngineOptions } from './engine.js';

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

/** Whether a worker step's `file:` URL names an existing file (other schemes are not checked). */
function workerModuleExists(href: string): boolean {
  const url = new URL(href);
  return url.protocol !== 'file:' || existsSync(url);
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
