/**
 * The client's argument checks and the small helpers they share: a value as
 * shown in a message, the plain-object test, URLs, statuses, abort signals and
 * JSON bodies. Each check throws an `InvalidArgumentError` before anything is
 * sent.
 *
 * @module
 */

import { InvalidArgumentError } from '../errors.js';
import { DISPATCH_STATUSES } from '../lifecycle/statuses.js';
import type { ReportStatus } from './types.js';

/** A value as shown in an error message: strings quoted, JSON where it serialises. */
export const show = (v: unknown): string => {
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'function') return 'a function';
  try {
    return JSON.stringify(v) ?? String(v);
  } catch {
    return String(v);
  }
};

/** Whether `value` is a plain (non-array, non-null) object. */
export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Checks an absolute http(s) URL without query or fragment; returns it without trailing slashes. */
export function checkUrl(name: string, value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new InvalidArgumentError(`${name} must be an absolute http(s) URL (got ${show(value)})`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new InvalidArgumentError(`${name} must be an http(s) URL (got ${show(value)})`);
  if (url.search !== '' || url.hash !== '')
    throw new InvalidArgumentError(
      `${name} must not carry a query or fragment (got ${show(value)})`,
    );
  return value.replace(/\/+$/, '');
}

/** Checks an `AbortSignal` option. */
export function checkSignal(signal: unknown): AbortSignal | undefined {
  if (signal === undefined) return undefined;
  if (!(signal instanceof AbortSignal))
    throw new InvalidArgumentError(`options.signal must be an AbortSignal (got ${show(signal)})`);
  return signal;
}

/** Checks a reported status. */
export function checkStatus(status: unknown): ReportStatus {
  if (typeof status !== 'string' || !(DISPATCH_STATUSES as readonly string[]).includes(status))
    throw new InvalidArgumentError(
      `status must be one of ${DISPATCH_STATUSES.join(', ')} (got ${show(status)})`,
    );
  return status as ReportStatus;
}

/** `value` as JSON text; `what` names it when it does not serialise. */
export function jsonBody(what: string, value: unknown): string {
  let text: string | undefined;
  try {
    text = JSON.stringify(value);
  } catch (err) {
    throw new InvalidArgumentError(`${what} must be JSON-serializable`, { cause: err });
  }
  if (text === undefined) throw new InvalidArgumentError(`${what} must be JSON-serializable`);
  return text;
}
