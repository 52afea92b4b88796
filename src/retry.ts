/**
 * Step retries: the `retry` option (a policy, or a map from step keys to
 * policies), its eager checks, the delay before each try, and the shapes the
 * mailbox keeps while a step waits for its next try. The mailbox owns the
 * loop (`registry/mailbox-processor.ts`); this file only says what a policy
 * means.
 *
 * @module
 */

import { describe, durationMs, parseDuration } from './duration.js';
import { InvalidArgumentError } from './errors.js';
import { checkKnownKeys } from './keys.js';
import { lookupStep, STEP_KEYS, type CallbackStatus, type StepKey } from './lifecycle/statuses.js';

/**
 * How a failing step is tried again. The delay before try `n` (n ≥ 2) is
 * `min(backoff × factor^(n-2), maxDelay)`, on the engine's clock.
 *
 * @example
 * ```ts
 * // Up to 5 tries: waits of 1 s, 2 s, 4 s, then 5 s (capped).
 * engine.anchor('ocr', { next: { start: run }, retry: { attempts: 5, backoff: 'PT1S', maxDelay: 'PT5S' } });
 * ```
 */
export interface RetryPolicy {
  /** Tries in all, the first one included: an integer from 1 to 100 (1: no retry). */
  attempts: number;
  /**
   * Wait before the second try: an ISO 8601 duration (zero allowed).
   * @default 'PT1S'
   */
  backoff?: string;
  /**
   * Each further wait is the previous one times this: a finite number, at least 1 (1: constant waits).
   * @default 2
   */
  factor?: number;
  /**
   * Longest wait between two tries: an ISO 8601 duration. Waits are never longer than
   * 24.8 days (2^31 - 1 ms) in any case.
   * @default none
   */
  maxDelay?: string;
}

/**
 * Retry policies by step key, looked up like steps (spec 6): the exact status, then the group
 * default (`active` or `error`), then `*`. `false` means "never retry" for that key.
 */
export type RetryMap = Partial<Record<StepKey, RetryPolicy | false>>;

/** The `retry` option of an anchor: one policy for every step, or policies by step key. */
export type RetryOption = RetryPolicy | RetryMap;

/** Options of `workerStep()`. */
export interface WorkerStepOptions {
  /**
   * How this step is retried when it fails; `false`: never. Takes precedence over the anchor's
   * `retry` option.
   * @default the anchor's
   */
  retry?: RetryPolicy | false;
}

/** A retry policy after validation, in ms. */
export interface ResolvedRetry {
  readonly attempts: number;
  readonly backoffMs: number;
  readonly factor: number;
  readonly maxDelayMs: number;
}

/** An anchor's retry policies after validation, by step key. */
export type ResolvedRetryMap = Readonly<Partial<Record<StepKey, ResolvedRetry | false>>>;

/** A step waiting for its next try, as its callback's runtime holds it. */
export interface RetryWait {
  readonly status: CallbackStatus;
  /** When the next try runs (ms since epoch). */
  readonly at: number;
  /** The wait is over: run the next try (no-op once stopped or fired). */
  fire(): void;
  /**
   * Stops waiting: no further try runs. `preempted`: a terminal transition ended the callback,
   * so the pending retry is dropped; otherwise (`close()`, a lost lease, a failed commit) the
   * stored pending retry stays for whoever opens the callback next.
   */
  stop(preempted: boolean): void;
}

const POLICY_KEYS: readonly string[] = Object.freeze(['attempts', 'backoff', 'factor', 'maxDelay']);

/** Longest wait between two tries: the longest timer Node arms. */
export const MAX_RETRY_DELAY_MS = 2 ** 31 - 1;

/** The defaults of {@link RetryPolicy}. */
export const RETRY_DEFAULTS = Object.freeze({ backoff: 'PT1S', factor: 2 });

const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

function checkDuration(what: string, value: unknown): number {
  if (typeof value !== 'string' || !parseDuration(value)) {
    throw new InvalidArgumentError(
      `${what} must be an ISO 8601 duration such as "PT1S" (got ${describe(value)})`,
    );
  }
  return durationMs(what, value, 0);
}

/**
 * Validates one retry policy.
 *
 * @param what - how to name it in errors, e.g. `anchor "job" options.retry`.
 * @throws {@link InvalidArgumentError} naming the bad field and its value.
 */
export function checkRetryPolicy(what: string, value: unknown): ResolvedRetry {
  if (!isPlainObject(value)) {
    throw new InvalidArgumentError(
      `${what} must be a retry policy { attempts, backoff, factor, maxDelay } (got ${describe(value)})`,
    );
  }
  checkKnownKeys(what, value, POLICY_KEYS);
  const { attempts, backoff, factor, maxDelay } = value;
  if (typeof attempts !== 'number' || !Number.isInteger(attempts) || attempts < 1 || attempts > 100)
    throw new InvalidArgumentError(
      `${what}.attempts must be an integer from 1 to 100 (got ${describe(attempts)})`,
    );
  if (
    factor !== undefined &&
    (typeof factor !== 'number' || !Number.isFinite(factor) || factor < 1)
  )
    throw new InvalidArgumentError(
      `${what}.factor must be a finite number of at least 1 (got ${describe(factor)})`,
    );
  return Object.freeze({
    attempts,
    backoffMs: checkDuration(`${what}.backoff`, backoff ?? RETRY_DEFAULTS.backoff),
    factor: factor ?? RETRY_DEFAULTS.factor,
    maxDelayMs:
      maxDelay === undefined
        ? MAX_RETRY_DELAY_MS
        : Math.min(checkDuration(`${what}.maxDelay`, maxDelay), MAX_RETRY_DELAY_MS),
  });
}

/**
 * Validates an anchor's `retry` option: a policy (an object with `attempts`) applies to every
 * step (`*`); otherwise a map from step keys to policies or `false`.
 *
 * @param what - how to name it in errors, e.g. `anchor "job" options.retry`.
 * @returns the policies by step key (empty: no retries).
 * @throws {@link InvalidArgumentError} naming the bad key or field and its value.
 */
export function resolveRetryOption(what: string, value: unknown): ResolvedRetryMap {
  if (value === undefined) return NO_RETRY;
  if (!isPlainObject(value)) {
    throw new InvalidArgumentError(
      `${what} must be a retry policy { attempts, backoff, factor, maxDelay } or a map from statuses to policies (got ${describe(value)})`,
    );
  }
  if ('attempts' in value) return Object.freeze({ '*': checkRetryPolicy(what, value) });
  const out: Partial<Record<StepKey, ResolvedRetry | false>> = {};
  for (const [key, policy] of Object.entries(value)) {
    if (!STEP_KEYS.has(key)) {
      throw new InvalidArgumentError(
        `${what} has unknown key "${key}"; use a status, "active", "error" or "*" (or give one policy with "attempts")`,
      );
    }
    if (policy === undefined) continue;
    out[key as StepKey] =
      policy === false
        ? false
        : isPlainObject(policy)
          ? checkRetryPolicy(`${what}.${key}`, policy)
          : invalidEntry(`${what}.${key}`, policy);
  }
  return Object.freeze(out);
}

function invalidEntry(what: string, value: unknown): never {
  throw new InvalidArgumentError(
    `${what} must be a retry policy { attempts, backoff, factor, maxDelay } or false (got ${describe(value)})`,
  );
}

const NO_RETRY: ResolvedRetryMap = Object.freeze({});

/**
 * The policy a failed step is retried by: the step's own (`workerStep(..., { retry })`) if it
 * has one, else the anchor's for the status.
 * @returns the policy, or `undefined` when the step is not retried.
 */
export function retryPolicyFor(
  anchorRetry: ResolvedRetryMap,
  step: unknown,
  status: CallbackStatus,
): ResolvedRetry | undefined {
  const own =
    typeof step === 'object' && step !== null ? (step as { retry?: unknown }).retry : undefined;
  if (own === false) return undefined;
  // A worker step's policy was checked by workerStep(); resolving it again cannot throw.
  if (own !== undefined) return checkRetryPolicy('workerStep options.retry', own);
  return lookupStep(anchorRetry, status) || undefined;
}

/**
 * The wait before try `attempt` (2 for the first retry): `backoff × factor^(attempt-2)`, at most
 * `maxDelay`, in whole ms.
 */
export function retryDelayMs(policy: ResolvedRetry, attempt: number): number {
  const raw = policy.backoffMs * policy.factor ** (attempt - 2);
  return Math.round(Math.min(raw, policy.maxDelayMs));
}
