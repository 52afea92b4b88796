/**
 * The shared value checks of engine, anchor and create options: names,
 * deadlines, heartbeats, retention, step time limits, objects and positive
 * integers. Each throws an `InvalidArgumentError` naming the option and the
 * value it got.
 *
 * @module
 */

import { deadlineAt, describe, durationMs, parseDuration } from '../duration.js';
import { InvalidArgumentError } from '../errors.js';
import { LIMITS } from './defaults.js';

const NAME_RE = /^[A-Za-z0-9_.:-]+$/;

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

/** Checks that an option is an object (or absent: then `{}`). */
export function checkObject(what: string, value: unknown): Record<string, unknown> {
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

/** Checks a positive safe integer. */
export function checkPositiveInt(what: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) {
    throw new InvalidArgumentError(`${what} must be a positive integer (got ${describe(value)})`);
  }
  return value;
}
