/**
 * One report or event as prepared for sending: built once, sent (and signed
 * anew) on every attempt; and the options every error about it carries.
 *
 * @module
 */

import type { CallbackClientErrorOptions } from './errors.js';

/** One request of a report, built once and sent on every attempt (signed anew each time). */
export interface Prepared {
  readonly url: string;
  readonly target: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
  readonly dedupKey: string;
  readonly signal: AbortSignal | undefined;
}

/** The options of an error about `p` after `attempts` requests. */
export const errorOptions = (
  attempts: number,
  p: Prepared,
  statusCode?: number,
  cause?: unknown,
): CallbackClientErrorOptions => ({ attempts, dedupKey: p.dedupKey, statusCode, cause });
