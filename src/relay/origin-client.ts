/**
 * The HTTP client of the channel hop: one request to an origin's Dispatch Callback Service, with
 * a time limit on the engine's clock, no redirects followed and a bounded answer. Every way the
 * origin can fail to answer becomes an {@link OriginUnavailableError}.
 *
 * @module
 */

import type { Clock } from '../clock.js';
import { BodyTooLarge, readBounded } from '../bounded-body.js';
import { EngineClosedError, OriginUnavailableError } from '../errors.js';
import { toError } from '../thrown.js';

/** One request to an origin. */
export interface OriginRequest {
  /** The origin's base URL (as in the hop). */
  readonly origin: string;
  readonly method: 'GET' | 'POST';
  /** The path under the base URL, starting with `/`. */
  readonly path: string;
  /** A JSON body (POST). */
  readonly body?: unknown;
  /** W3C trace headers (`traceparent`, `tracestate`) of the report being forwarded, if traced. */
  readonly trace?: Readonly<Record<string, string>> | undefined;
}

/** What the client needs besides the request. */
export interface OriginClientOptions {
  readonly clock: Clock;
  readonly timeoutMs: number;
  readonly maxAnswerBytes: number;
  readonly headers: ((origin: string) => Readonly<Record<string, string>> | undefined) | undefined;
  /** Aborted when the engine closes: requests in flight reject with `EngineClosedError`. */
  readonly closed: AbortSignal;
}

/** The origin's reply: HTTP status, the `Callback-Outcome` header, the parsed JSON body. */
export interface OriginReply {
  readonly statusCode: number;
  readonly outcome: string | undefined;
  readonly body: unknown;
}

class TimedOut extends Error {}

/**
 * Sends one request to an origin and reads its JSON answer.
 *
 * @returns the reply, whatever its status (the caller maps 4xx and 5xx).
 * @throws {@link OriginUnavailableError} when the origin cannot be reached, does not answer in
 *   time, redirects, or answers something that is not bounded JSON.
 * @throws {@link EngineClosedError} when the engine closes while the request is in flight.
 */
export async function callOrigin(
  request: OriginRequest,
  options: OriginClientOptions,
): Promise<OriginReply> {
  const { origin } = request;
  if (options.closed.aborted) throw new EngineClosedError();
  const controller = new AbortController();
  const timer = options.clock.setTimeout(() => controller.abort(new TimedOut()), options.timeoutMs);
  const onClose = () => controller.abort(new EngineClosedError());
  options.closed.addEventListener('abort', onClose, { once: true });
  try {
    const headers: Record<string, string> = {
      ...options.headers?.(origin),
      ...request.trace,
      accept: 'application/json',
    };
    let body: string | undefined;
    if (request.body !== undefined) {
      body = JSON.stringify(request.body);
      headers['content-type'] = 'application/json';
    }
    const res = await fetch(origin + request.path, {
      method: request.method,
      headers,
      ...(body === undefined ? {} : { body }),
      // A redirect could point anywhere: the signed URL is the only place a report goes.
      redirect: 'manual',
      signal: controller.signal,
    });
    if (res.status >= 300 && res.status < 400) {
      await res.body?.cancel();
      throw new OriginUnavailableError(
        origin,
        `the origin ${origin} answered a redirect (${res.status}); redirects are not followed`,
      );
    }
    const text = await readBounded(res, options.maxAnswerBytes);
    let parsed: unknown;
    try {
      parsed = text.length === 0 ? undefined : JSON.parse(text);
    } catch (err) {
      throw new OriginUnavailableError(
        origin,
        `the origin ${origin} answered ${res.status} with a body that is not JSON`,
        { cause: err },
      );
    }
    return {
      statusCode: res.status,
      outcome: res.headers.get('callback-outcome') ?? undefined,
      body: parsed,
    };
  } catch (err) {
    if (err instanceof OriginUnavailableError || err instanceof EngineClosedError) throw err;
    const reason: unknown = controller.signal.aborted ? controller.signal.reason : undefined;
    if (reason instanceof EngineClosedError) throw reason;
    if (reason instanceof TimedOut)
      throw new OriginUnavailableError(
        origin,
        `the origin ${origin} did not answer within ${options.timeoutMs} ms`,
        { cause: err },
      );
    if (err instanceof BodyTooLarge)
      throw new OriginUnavailableError(
        origin,
        `the origin ${origin} answered more than ${options.maxAnswerBytes} bytes (options.relay.maxAnswerBytes)`,
      );
    const e = toError(err);
    const cause = (e as { cause?: { code?: unknown; message?: unknown } }).cause;
    const detail =
      typeof cause?.code === 'string'
        ? cause.code
        : typeof cause?.message === 'string'
          ? cause.message
          : e.message;
    throw new OriginUnavailableError(origin, `the origin ${origin} is unreachable (${detail})`, {
      cause: err,
    });
  } finally {
    options.clock.clearTimeout(timer);
    options.closed.removeEventListener('abort', onClose);
  }
}
