/**
 * Whatever was thrown, made safe: `toError` turns any thrown value into an
 * `Error` without ever throwing itself, and `toStepError` bounds what a step
 * threw (message and stack cut to a size) before the engine records and sends
 * it. The error catalogue itself is in `errors.ts`.
 *
 * @module
 */

import { CallbackEngineError } from './errors.js';

/** Most characters of a step error's message that are kept, stored and sent; a longer one is cut. */
export const MAX_STEP_ERROR_CHARS = 2048;

/** Most characters of a step error's stack kept in memory (for traces and logs; never stored or sent). */
export const MAX_STEP_ERROR_STACK_CHARS = 4096;

/** Shown for a thrown value that cannot be turned into text at all (every read of it throws). */
const UNREADABLE = 'a thrown value that cannot be read (reading it throws)';

/**
 * Normalises anything thrown into an `Error`, so a user step that throws a
 * string, `undefined`, a Symbol or a hostile object still yields a message.
 * Total: it never throws, whatever `value` does when it is read (a Proxy whose
 * every trap throws, a `message` getter that throws, a `toString` that throws).
 *
 * @param value - whatever was thrown.
 * @returns `value` itself if it is an `Error` whose `message` reads as a string,
 *   else a new `Error` describing it.
 */
export function toError(value: unknown): Error {
  try {
    if (value instanceof Error && typeof value.message === 'string') return value;
  } catch {
    // A Proxy (or a getter) that throws when inspected: described below instead.
  }
  return new Error(describeThrown(value));
}

/**
 * A text for any thrown value, without letting it throw: a string as it is, an
 * `Error`'s message, JSON for plain data, `String()` for the rest.
 */
function describeThrown(value: unknown): string {
  if (typeof value === 'string') return value;
  if (typeof value === 'symbol') return value.toString();
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint')
    return String(value);
  if (value === undefined) return 'undefined';
  if (value === null) return 'null';
  try {
    if (value instanceof Error) {
      const message = value.message;
      if (typeof message === 'string') return message;
    }
  } catch {
    // Unreadable; try the other ways.
  }
  try {
    const json = JSON.stringify(value);
    if (typeof json === 'string') return json;
  } catch {
    // Cyclic, a BigInt, a throwing toJSON or trap.
  }
  try {
    // eslint-disable-next-line @typescript-eslint/no-base-to-string -- its own toString, if it has one
    return String(value);
  } catch {
    // A throwing toString or Symbol.toPrimitive, or no prototype at all.
  }
  try {
    return Object.prototype.toString.call(value);
  } catch {
    return UNREADABLE;
  }
}

/**
 * `text` cut to at most `max` characters, saying how much was cut; a surrogate pair is never split.
 *
 * @param text - any text.
 * @param max - the most characters kept, the note included.
 * @returns `text` when short enough, else its beginning and `[… N more characters cut]`.
 */
export function cut(text: string, max: number): string {
  if (text.length <= max) return text;
  const note = ` [… ${text.length - max} more characters cut]`;
  let keep = Math.max(0, max - note.length);
  const last = text.charCodeAt(keep - 1);
  if (keep > 0 && last >= 0xd800 && last <= 0xdbff) keep--;
  return `${text.slice(0, keep)}${note}`;
}

/** Reads `value[key]` as a string, or `undefined` when it is not one or reading it throws. */
function readString(value: object, key: 'name' | 'stack'): string | undefined {
  try {
    const v = (value as Record<string, unknown>)[key];
    return typeof v === 'string' ? v : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Turns whatever a step threw into a safe, bounded `Error`: what the engine
 * records as the callback's step error and shows in its answers. Never throws.
 *
 * - the message is read once and cut to {@link MAX_STEP_ERROR_CHARS} characters;
 * - a thrown non-`Error` (a string, `null`, a Symbol, a plain object, a Proxy
 *   that throws when touched) becomes an `Error` with a message describing it;
 * - the stack is kept only in memory (for traces and logs), cut to
 *   {@link MAX_STEP_ERROR_STACK_CHARS} characters; it is never stored;
 * - the engine's own errors (such as {@link StepTimeoutError}) pass unchanged.
 *
 * @param value - whatever the step threw or rejected with.
 * @returns a plain `Error` (or the engine's own error) whose `message` is a bounded string.
 */
export function toStepError(value: unknown): Error {
  let isError = false;
  try {
    isError = value instanceof Error;
    if (isError && value instanceof CallbackEngineError) {
      const own = Object.getOwnPropertyDescriptor(value, 'message');
      if (typeof own?.value === 'string' && own.value.length <= MAX_STEP_ERROR_CHARS) return value;
    }
  } catch {
    isError = false;
  }
  let message: string;
  try {
    message = describeThrown(value);
  } catch {
    message = UNREADABLE;
  }
  const error = new Error(cut(message, MAX_STEP_ERROR_CHARS));
  if (isError) {
    const name = readString(value as object, 'name');
    if (name !== undefined && name !== 'Error')
      Object.defineProperty(error, 'name', {
        value: cut(name, 100),
        configurable: true,
        writable: true,
      });
    const stack = readString(value as object, 'stack');
    error.stack =
      stack === undefined
        ? `${error.name}: ${error.message}`
        : cut(stack, MAX_STEP_ERROR_STACK_CHARS);
  } else {
    error.stack = `Error: ${error.message}`;
  }
  return error;
}
