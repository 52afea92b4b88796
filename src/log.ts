/**
 * Where the engine's warnings go: a pino-compatible logger given as the
 * `logger` option (`logger.warn({ code, ... }, message)`), else Node's
 * `process.emitWarning` (type `CallbackEngineWarning`, with the code).
 *
 * @module
 */

import { toError } from './thrown.js';

/**
 * A logger the engine writes its warnings to: pino's shape (`warn(obj, msg)`), which
 * bunyan, winston (with a small adapter) and `console`-like wrappers also offer.
 */
export interface EngineLogger {
  warn(obj: Record<string, unknown>, msg: string): void;
}

/** Writes one warning: its stable code (`CBE_W_...`), its message, and extra fields. */
export type WarnFn = (code: string, message: string, fields?: Record<string, unknown>) => void;

/** A warning writer for `logger` (or `process.emitWarning` without one). Never throws. */
export function warner(logger: EngineLogger | undefined): WarnFn {
  return (code, message, fields) => {
    try {
      if (logger) logger.warn({ code, ...fields }, message);
      else process.emitWarning(message, { type: 'CallbackEngineWarning', code });
    } catch {
      // A logger that throws has nowhere left to report to; the engine must not go down for it.
    }
  };
}

/** Whether `value` looks like a logger (has a `warn` function). */
export function isLogger(value: unknown): value is EngineLogger {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as { warn?: unknown }).warn === 'function'
  );
}

/** A warner for caught errors: `(err) => warn(code, err.message, { err })`. */
export function errorWarner(warn: WarnFn, code: string): (err: unknown) => void {
  return (err) => {
    const e = toError(err);
    warn(code, e.message, { err: e });
  };
}
