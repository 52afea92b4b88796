/**
 * callback-engine/client: what an outside party uses to report back to a
 * callback-engine service. Start with {@link createCallbackClient}.
 *
 * Light on purpose: it loads no engine, store or server code, and sends with
 * Node's global `fetch`.
 *
 * @packageDocumentation
 */

export { backoffDelay, parseRetryAfter } from './backoff.js';
export { createCallbackClient } from './client.js';
export { CLIENT_DEFAULTS } from './options.js';
export type { CallbackClientAuth, CallbackClientOptions, ClientClock } from './options.js';
export type {
  CallbackClient,
  CallbackEventInput,
  EventOptions,
  ReportKind,
  ReportOptions,
  ReportResult,
  ReportStatus,
} from './types.js';
export {
  CallbackClientError,
  ReportAbortedError,
  ReportBadAnswerError,
  ReportRefusedError,
  ReportUnavailableError,
} from './errors.js';
export { InvalidArgumentError } from '../errors.js';
export type { CallbackClientErrorCode, CallbackClientErrorOptions } from './errors.js';
