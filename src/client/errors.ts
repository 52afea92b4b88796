/**
 * The errors of the outside party's client: one base class with a stable
 * `code`, one subclass per failure a caller branches on.
 *
 * @module
 */

/** Stable error codes of `callback-engine/client`. Never renamed once released. */
export type CallbackClientErrorCode =
  /** The service refused the report (a 4xx that retrying cannot fix: 400, 401, 403, 413, 415, ...). */
  | 'CBE_ERR_REPORT_REFUSED'
  /** Every attempt failed with a retryable answer or a network error, or the time budget ran out. */
  | 'CBE_ERR_REPORT_UNAVAILABLE'
  /** The caller's `AbortSignal` fired before an answer arrived. */
  | 'CBE_ERR_REPORT_ABORTED'
  /** The service answered something that is not a callback answer (not JSON, a redirect, too large). */
  | 'CBE_ERR_REPORT_BAD_ANSWER';

/** Options of every client error. */
export interface CallbackClientErrorOptions {
  /** The underlying error, if any. */
  readonly cause?: unknown;
  /** Requests sent for this report, the failing one included. */
  readonly attempts: number;
  /** The HTTP status of the last answer, if any answer arrived. */
  readonly statusCode?: number | undefined;
  /** The deduplication key the report was sent with (the same on every attempt). */
  readonly dedupKey?: string | undefined;
}

/**
 * Base class of every error `callback-engine/client` raises.
 *
 * @example
 * ```ts
 * try {
 *   await client.report(callbackUrl, 'complete', { amount: 42 });
 * } catch (err) {
 *   if (err instanceof CallbackClientError && err.retryable) scheduleLater();
 * }
 * ```
 */
export class CallbackClientError extends Error {
  /** Stable machine-readable code. */
  readonly code: CallbackClientErrorCode;
  /** Whether sending the same report again later (with the same `dedupKey`) may succeed. */
  readonly retryable: boolean;
  /** Requests sent for this report. */
  readonly attempts: number;
  /** The HTTP status of the last answer, if any answer arrived. */
  readonly statusCode: number | undefined;
  /** The report's deduplication key: send it again with this key to keep it applied once. */
  readonly dedupKey: string | undefined;

  constructor(
    code: CallbackClientErrorCode,
    message: string,
    retryable: boolean,
    options: CallbackClientErrorOptions,
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.retryable = retryable;
    this.attempts = options.attempts;
    this.statusCode = options.statusCode;
    this.dedupKey = options.dedupKey;
  }

  override get name(): string {
    return this.constructor.name;
  }
}

/**
 * The service refused the report with a 4xx that no retry fixes: malformed or invalid data
 * (400), authentication (401, 403), too large (413), wrong content type (415). Not retryable.
 * `serverCode` and `serverMessage` are the service's own `{ code, message }`.
 */
export class ReportRefusedError extends CallbackClientError {
  /** The `code` of the service's error body (e.g. `CBE_ERR_INVALID_DATA`), if it sent one. */
  readonly serverCode: string | undefined;
  /** The service's error body as parsed (its `issues`, when a schema refused the data). */
  readonly body: unknown;

  constructor(
    message: string,
    serverCode: string | undefined,
    body: unknown,
    options: CallbackClientErrorOptions,
  ) {
    super('CBE_ERR_REPORT_REFUSED', message, false, options);
    this.serverCode = serverCode;
    this.body = body;
  }
}

/**
 * No attempt got a definite answer: every one met a retryable status (408, 429, 500, 502, 503,
 * 504) or a network error, and `maxAttempts` or `maxElapsedMs` was reached (or the service's
 * `Retry-After` pointed past the time budget). Retryable: the report may or may not have been
 * applied; send it again later with the same {@link CallbackClientError.dedupKey}.
 */
export class ReportUnavailableError extends CallbackClientError {
  constructor(message: string, options: CallbackClientErrorOptions) {
    super('CBE_ERR_REPORT_UNAVAILABLE', message, true, options);
  }
}

/**
 * The caller's `AbortSignal` fired. The report may have been applied if a request was in
 * flight; send it again with the same {@link CallbackClientError.dedupKey} to be sure.
 * `cause` is the signal's reason.
 */
export class ReportAbortedError extends CallbackClientError {
  constructor(options: CallbackClientErrorOptions) {
    super('CBE_ERR_REPORT_ABORTED', 'the report was aborted by its signal', true, options);
  }
}

/**
 * The service answered something that is not a callback answer: a 2xx or 404/409 whose body is
 * not a JSON answer, a redirect (never followed: a signed report goes only where it was sent), or
 * an answer over `maxAnswerBytes`. Usually a wrong URL or a proxy in the way. Not retryable.
 */
export class ReportBadAnswerError extends CallbackClientError {
  constructor(message: string, options: CallbackClientErrorOptions) {
    super('CBE_ERR_REPORT_BAD_ANSWER', message, false, options);
  }
}
