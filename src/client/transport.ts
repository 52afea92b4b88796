/**
 * One attempt on the wire: a signed `POST` through `fetch` with its own time
 * limit, no redirects followed, the answer read up to a size bound, and the
 * outcome sorted into a definite result or a reason to try again.
 *
 * @module
 */

import { BodyTooLarge, readBounded } from '../bounded-body.js';
import { isRetryable, classify, describe, OUTCOME_HEADER } from './answer.js';
import { parseRetryAfter } from './backoff.js';
import { ReportAbortedError, ReportBadAnswerError } from './errors.js';
import type { ResolvedClientOptions } from './options.js';
import { errorOptions, type Prepared } from './request.js';
import { authHeaders } from './sign.js';
import type { ReportResult } from './types.js';

/** An attempt's outcome: a definite result, a definite failure, or a reason to retry. */
export type Attempt =
  | { readonly done: ReportResult }
  | {
      readonly retry: string;
      readonly retryAfterMs: number | undefined;
      readonly statusCode?: number;
    };

class AttemptTimedOut extends Error {}

/** Sends one attempt of `p` and classifies its answer. */
export async function attempt(
  options: ResolvedClientOptions,
  p: Prepared,
  attempts: number,
  budgetMs: number,
): Promise<Attempt> {
  const { auth, attemptTimeoutMs, clock, fetch: doFetch, maxAnswerBytes } = options;
  const controller = new AbortController();
  const onAbort = () => controller.abort(p.signal!.reason);
  p.signal?.addEventListener('abort', onAbort, { once: true });
  const timer = setTimeout(
    () => controller.abort(new AttemptTimedOut()),
    Math.max(1, Math.min(attemptTimeoutMs, budgetMs)),
  );
  const now = clock.now();
  const headers = {
    ...p.headers,
    ...authHeaders(auth, {
      method: 'POST',
      target: p.target,
      headers: p.headers,
      body: p.body,
      timestamp: Math.floor(now / 1000),
    }),
  };
  try {
    let res: Response;
    try {
      res = await doFetch(p.url, {
        method: 'POST',
        headers,
        body: p.body,
        // A signed report goes only where it was sent.
        redirect: 'manual',
        signal: controller.signal,
      });
    } catch (err) {
      if (p.signal?.aborted)
        throw new ReportAbortedError(errorOptions(attempts, p, undefined, p.signal.reason));
      return { retry: networkReason(err, controller.signal), retryAfterMs: undefined };
    }
    const statusCode = res.status;
    let text: string;
    try {
      text = await readBounded(res, maxAnswerBytes);
    } catch (err) {
      if (p.signal?.aborted)
        throw new ReportAbortedError(errorOptions(attempts, p, statusCode, p.signal.reason));
      if (err instanceof BodyTooLarge)
        throw new ReportBadAnswerError(
          `${p.url} answered ${statusCode} with more than ${maxAnswerBytes} bytes (options.maxAnswerBytes)`,
          errorOptions(attempts, p, statusCode),
        );
      return {
        retry: `the answer (${statusCode}) broke off: ${networkReason(err, controller.signal)}`,
        retryAfterMs: undefined,
        statusCode,
      };
    }
    let body: unknown;
    try {
      body = text.length === 0 ? undefined : JSON.parse(text);
    } catch {
      body = undefined;
    }
    if (isRetryable(statusCode))
      return {
        retry: `${p.url} answered ${statusCode}${describe(body)}`,
        retryAfterMs: parseRetryAfter(res.headers.get('retry-after'), clock.now()),
        statusCode,
      };
    return { done: classify(p, statusCode, res.headers.get(OUTCOME_HEADER), body, attempts) };
  } finally {
    clearTimeout(timer);
    p.signal?.removeEventListener('abort', onAbort);
  }
}

/** Why a request got no answer: timed out, or the network error's code. */
function networkReason(err: unknown, signal: AbortSignal): string {
  if (signal.aborted && signal.reason instanceof AttemptTimedOut) return 'no answer in time';
  const e = err as { cause?: { code?: unknown; message?: unknown }; message?: unknown };
  const cause = e?.cause;
  if (typeof cause?.code === 'string') return cause.code;
  if (typeof cause?.message === 'string') return cause.message;
  return typeof e?.message === 'string' ? e.message : String(err);
}
