/**
 * Options of the channel hop (`relay` engine option): how a relaying engine talks to the
 * engines whose tokens it wraps.
 *
 * @module
 */

import { describe, durationMs } from '../duration.js';
import { InvalidArgumentError } from '../errors.js';
import { checkKnownKeys } from '../keys.js';

/** The `relay` engine option: forwarding of reports for relayed (wrapped) tokens. */
export interface RelayOptions {
  /**
   * How long to wait for the origin's answer to one forwarded request (ISO 8601 duration), on
   * the engine's clock. When it passes, the request is aborted and answered
   * `OriginUnavailableError` (503, retryable).
   * @default 'PT10S'
   */
  timeout?: string;
  /**
   * Largest origin answer read, in bytes; a longer one is cut off and answered
   * `OriginUnavailableError`. Keep it above the origin's `maxCallbackBytes`.
   * @default 4194304 (4 MiB)
   */
  maxAnswerBytes?: number;
  /**
   * Extra request headers for an origin, such as the bearer token its Dispatch Callback Service
   * requires: called with the origin's base URL before every forwarded request. Never put
   * credentials in the URL given to `relay()`: they would travel inside the wrapped token.
   * @default none
   */
  headers?: (origin: string) => Readonly<Record<string, string>> | undefined;
}

/** {@link RelayOptions} after validation. */
export interface ResolvedRelayOptions {
  readonly timeoutMs: number;
  readonly maxAnswerBytes: number;
  readonly headers: ((origin: string) => Readonly<Record<string, string>> | undefined) | undefined;
}

/** Frozen defaults of {@link RelayOptions}. */
export const RELAY_DEFAULTS = Object.freeze({
  timeout: 'PT10S',
  maxAnswerBytes: 4 * 1024 * 1024,
});

const RELAY_OPTION_KEYS: readonly string[] = Object.freeze([
  'timeout',
  'maxAnswerBytes',
  'headers',
]);

/**
 * Validates the `relay` engine option.
 *
 * @throws {@link InvalidArgumentError} naming the bad option and its value.
 */
export function resolveRelayOptions(value: unknown): ResolvedRelayOptions {
  if (value === undefined) value = {};
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw new InvalidArgumentError(`options.relay must be an object (got ${describe(value)})`);
  checkKnownKeys('options.relay', value, RELAY_OPTION_KEYS);
  const o = value as RelayOptions;
  const timeoutMs = durationMs('options.relay.timeout', o.timeout ?? RELAY_DEFAULTS.timeout, 0);
  if (timeoutMs <= 0)
    throw new InvalidArgumentError(
      `options.relay.timeout must be longer than zero (got ${describe(o.timeout)})`,
    );
  const max = o.maxAnswerBytes ?? RELAY_DEFAULTS.maxAnswerBytes;
  if (typeof max !== 'number' || !Number.isSafeInteger(max) || max <= 0)
    throw new InvalidArgumentError(
      `options.relay.maxAnswerBytes must be a positive integer (got ${describe(max)})`,
    );
  if (o.headers !== undefined && typeof o.headers !== 'function')
    throw new InvalidArgumentError(
      `options.relay.headers must be a function (got ${describe(o.headers)})`,
    );
  return Object.freeze({ timeoutMs, maxAnswerBytes: max, headers: o.headers });
}
