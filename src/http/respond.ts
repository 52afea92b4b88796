/**
 * JSON responses of the Dispatch Callback Service and the mapping from engine
 * outcomes and errors to HTTP statuses.
 *
 * @module
 */

import type { OutgoingHttpHeaders, ServerResponse } from 'node:http';
import {
  AlreadySettledError,
  CallbackEngineError,
  type CallbackEngineErrorCode,
} from '../errors.js';
import type { CallbackAnswer, DispatchOutcome, DispatchResult } from '../types.js';

/**
 * Values of the `Callback-Outcome` response header: how the report was handled
 * (`queued`: accepted durably for later, in-order application by the callback's owner, 202).
 */
export type CallbackOutcome = DispatchOutcome;

/** The response header that says how a report was handled. */
export const OUTCOME_HEADER = 'callback-outcome';

/**
 * Error codes only the HTTP layer produces, for failures no engine error
 * describes. Stable, like the engine's codes.
 */
export type HttpOnlyErrorCode =
  /** The token is unknown, forged or its record was removed (404; the body also says `status: 'notFound'`). */
  | 'CBE_ERR_NOT_FOUND'
  /** No route has this path (404). */
  | 'CBE_ERR_ROUTE_NOT_FOUND'
  /** The route exists but not for this method (405, with `Allow`). */
  | 'CBE_ERR_METHOD_NOT_ALLOWED'
  /** The request's content type is not one the route reads (415). */
  | 'CBE_ERR_UNSUPPORTED_MEDIA_TYPE'
  /** Missing or wrong bearer token or signature (401, with `WWW-Authenticate`). */
  | 'CBE_ERR_UNAUTHORIZED'
  /** A CloudEvent found its callback without a token (`callbackid`, `correlate`) on a handler without auth (403). */
  | 'CBE_ERR_UNTRUSTED_CORRELATION'
  /** A dashboard action that looks cross-site: no `X-Requested-With`, or another origin (403). */
  | 'CBE_ERR_FORBIDDEN'
  /** Too many dashboard event-stream subscribers (503, with `Retry-After`). */
  | 'CBE_ERR_TOO_MANY_SUBSCRIBERS'
  /** The client took too long to send its request (408). */
  | 'CBE_ERR_REQUEST_TIMEOUT'
  /** An unexpected failure; details are not disclosed (500). */
  | 'CBE_ERR_INTERNAL';

/** Every `code` an error body of the Dispatch Callback Service can carry. */
export type DispatchErrorCode = CallbackEngineErrorCode | HttpOnlyErrorCode;

/** A JSON error body: `{ code, message }`. */
export interface ErrorBody {
  readonly code: DispatchErrorCode;
  readonly message: string;
}

/** An HTTP-layer failure with its status, code and extra headers. Never escapes the handler. */
export class HttpError extends Error {
  /** Stable machine-readable code. */
  readonly code: HttpOnlyErrorCode;
  /** The HTTP status to answer with. */
  readonly statusCode: number;
  /** Extra response headers (`Allow`, `WWW-Authenticate`). */
  readonly headers: Readonly<Record<string, string>>;

  constructor(
    code: HttpOnlyErrorCode,
    statusCode: number,
    message: string,
    headers: Record<string, string> = {},
  ) {
    super(message);
    this.code = code;
    this.statusCode = statusCode;
    this.headers = headers;
  }

  /** The JSON body: `{ code, message }`. */
  toJSON(): ErrorBody {
    return { code: this.code, message: this.message };
  }
}

/** What a route answers: status, JSON-serializable body, extra headers. */
export interface Reply {
  readonly statusCode: number;
  readonly body: unknown;
  readonly headers?: Readonly<Record<string, string>>;
  /** Sent as the `Callback-Outcome` header (a constant string: nothing allocated per reply). */
  readonly outcome?: CallbackOutcome;
}

/** The message of a `notFound` answer body. */
export const NOT_FOUND_MESSAGE =
  'no callback has this token: it is unknown, forged, or its record was removed';

/**
 * Maps a dispatch result to a reply: `notFound` → 404 (body still carries
 * `status: 'notFound'`), `conflict` → 409 (body carries the current status),
 * every other outcome (`applied`, `ignored`, `replayed`, `read`) → 200. Every
 * such reply carries the outcome in the `Callback-Outcome` header.
 */
export function resultReply(result: DispatchResult): Reply {
  const { answer, outcome } = result;
  if (outcome === 'notFound' || answer.status === 'notFound') {
    return {
      statusCode: 404,
      body: answerBody(answer, 'CBE_ERR_NOT_FOUND', NOT_FOUND_MESSAGE),
      outcome: 'notFound',
    };
  }
  if (outcome === 'conflict') {
    const err = new AlreadySettledError(answer.status);
    return {
      statusCode: 409,
      body: answerBody(answer, err.code, err.message),
      outcome: 'conflict',
    };
  }
  if (outcome === 'queued') return { statusCode: 202, body: answerBody(answer), outcome };
  return { statusCode: 200, body: answerBody(answer), outcome };
}

/** `{ status, token, data }`, plus `code` and `message` when given. */
export function answerBody(
  answer: CallbackAnswer,
  code?: DispatchErrorCode,
  message?: string,
): Record<string, unknown> {
  const body: Record<string, unknown> = {
    status: answer.status,
    token: answer.token,
    data: answer.data,
  };
  if (answer.stepError !== undefined) body.stepError = answer.stepError;
  if (code !== undefined) {
    body.code = code;
    body.message = message;
  }
  return body;
}

/**
 * Maps anything thrown while handling a request to a reply. Engine errors use
 * their own `statusCode` and `toJSON()`; a 503 gets `Retry-After`. Anything
 * unexpected is a 500 whose message discloses nothing.
 */
export function errorReply(err: unknown, retryAfterSeconds: number): Reply {
  if (err instanceof HttpError)
    return { statusCode: err.statusCode, body: err.toJSON(), headers: err.headers };
  if (err instanceof CallbackEngineError) {
    const statusCode = err.statusCode >= 400 && err.statusCode < 600 ? err.statusCode : 500;
    const headers: Record<string, string> =
      statusCode === 503 || err.retryable ? { 'retry-after': String(retryAfterSeconds) } : {};
    return { statusCode, body: err.toJSON(), headers };
  }
  return {
    statusCode: 500,
    body: { code: 'CBE_ERR_INTERNAL', message: 'internal error' } satisfies ErrorBody,
  };
}

const BASE_HEADERS = {
  'content-type': 'application/json; charset=utf-8',
  'cache-control': 'no-store',
  'x-content-type-options': 'nosniff',
} as const;

/** Replies waiting for the end of this turn of the event loop (see {@link send}). */
const outbox: {
  res: ServerResponse;
  statusCode: number;
  headers: OutgoingHttpHeaders;
  text: string;
}[] = [];
let flushScheduled = false;

function flushOutbox(): void {
  flushScheduled = false;
  const replies = outbox.splice(0);
  for (const r of replies) writeNow(r.res, r.statusCode, r.headers, r.text);
}

function writeNow(
  res: ServerResponse,
  statusCode: number,
  headers: OutgoingHttpHeaders,
  text: string,
): void {
  if (res.headersSent || res.writableEnded || res.destroyed) return;
  try {
    res.writeHead(statusCode, headers);
    res.end(text);
  } catch {
    res.destroy();
  }
}

/**
 * Writes a JSON reply unless a response was already started or the client is
 * gone. Never throws.
 *
 * The bytes go out at the end of this turn of the event loop (`setImmediate`), together with
 * every other reply made in it: the requests that arrived in one poll are all handled before any
 * answer is written, so the server is not preempted by each client it wakes (on a loaded 2-core
 * machine this halved the CPU per report: bench/RESULTS.md, issue 15). Each reply is still one
 * `writev` of headers and body.
 *
 * @param close - close the connection after the reply: set when the request body was not
 *   read to its end (refused, or not needed), so node:http does not read and discard it.
 */
export function send(res: ServerResponse, reply: Reply, close = false): void {
  if (res.headersSent || res.writableEnded || res.destroyed) return;
  let text: string;
  let statusCode = reply.statusCode;
  try {
    text = reply.body === undefined ? '' : JSON.stringify(reply.body);
  } catch {
    // Never a 2xx with an error body: a body that cannot be serialized is a server failure.
    statusCode = 500;
    text = '{"code":"CBE_ERR_INTERNAL","message":"the answer could not be serialized"}';
  }
  // A literal, not a spread: this runs once per request.
  const headers: OutgoingHttpHeaders = {
    'content-type': BASE_HEADERS['content-type'],
    'content-length': Buffer.byteLength(text),
    'cache-control': BASE_HEADERS['cache-control'],
    'x-content-type-options': BASE_HEADERS['x-content-type-options'],
  };
  if (reply.outcome !== undefined) headers[OUTCOME_HEADER] = reply.outcome;
  if (reply.headers !== undefined) Object.assign(headers, reply.headers);
  if (close) headers.connection = 'close';
  outbox.push({ res, statusCode, headers, text });
  if (!flushScheduled) {
    flushScheduled = true;
    setImmediate(flushOutbox);
  }
}
