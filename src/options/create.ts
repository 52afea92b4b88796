/**
 * Options of `engine.create()`: their type, the known keys, and the checks of
 * the values the create path reads directly (tags, idempotency key).
 *
 * @module
 */

import { describe } from '../duration.js';
import { InvalidArgumentError } from '../errors.js';
import { checkKnownKeys } from '../keys.js';
import { LIMITS } from './defaults.js';

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

/**
 * Refuses unknown keys in `create()` options.
 *
 * @throws {@link InvalidArgumentError} naming the key and the nearest valid one.
 */
export function checkCreateKeys(options: object): void {
  checkKnownKeys('create options', options, CREATE_OPTION_KEYS);
}

const NO_TAGS: readonly string[] = Object.freeze([]);

/** Checks `create`'s tags. */
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
