/**
 * Reading the service's answer: which status codes are worth another attempt,
 * and how a definite answer becomes a {@link ReportResult} (applied, ignored,
 * replayed, conflict, notFound, queued) or a client error (refused, not a
 * callback answer, a redirect).
 *
 * @module
 */

import type { AnswerStatus } from '../lifecycle/statuses.js';
import { isObject, show } from './checks.js';
import { ReportBadAnswerError, ReportRefusedError } from './errors.js';
import { errorOptions, type Prepared } from './request.js';
import type { ReportKind, ReportResult } from './types.js';

/** Answers that a later attempt may turn into a definite one. */
const RETRYABLE = new Set([408, 425, 429, 500, 502, 503, 504]);
/** The header that says how the service handled a report. */
export const OUTCOME_HEADER = 'callback-outcome';

/** Whether an answer with `statusCode` may turn definite on a later attempt. */
export function isRetryable(statusCode: number): boolean {
  return (
    RETRYABLE.has(statusCode) || (statusCode >= 500 && statusCode !== 501 && statusCode !== 505)
  );
}

/** Turns a definite answer into a result, or throws the client error it amounts to. */
export function classify(
  p: Prepared,
  statusCode: number,
  outcome: string | null,
  body: unknown,
  attempts: number,
): ReportResult {
  const answer = asAnswer(body);
  const result = (kind: ReportKind): ReportResult => {
    if (!answer)
      throw new ReportBadAnswerError(
        `${p.url} answered ${statusCode} without a callback answer (${describe(body) || 'no JSON body'}): is the URL a callback-engine service?`,
        errorOptions(attempts, p, statusCode),
      );
    return {
      kind,
      status: answer.status as AnswerStatus | 'queued',
      data: answer.data,
      token: answer.token,
      attempts,
      statusCode,
      dedupKey: p.dedupKey,
    };
  };
  if (statusCode === 200) {
    if (outcome === 'applied' || outcome === 'ignored' || outcome === 'replayed')
      return result(outcome);
    // A service (or a proxy) that drops the header: a 200 to a report means it took effect.
    if (outcome === null) return result('applied');
    throw new ReportBadAnswerError(
      `${p.url} answered 200 with Callback-Outcome ${show(outcome)}, not a report's outcome`,
      errorOptions(attempts, p, statusCode),
    );
  }
  if (statusCode === 202) return result('queued');
  if (
    statusCode === 409 &&
    (outcome === 'conflict' || (isObject(body) && body.code === 'CBE_ERR_ALREADY_SETTLED'))
  )
    return result('conflict');
  if (
    statusCode === 404 &&
    (outcome === 'notFound' || (isObject(body) && body.code === 'CBE_ERR_NOT_FOUND'))
  )
    return result('notFound');
  if (statusCode >= 300 && statusCode < 400)
    throw new ReportBadAnswerError(
      `${p.url} answered a redirect (${statusCode}); redirects are not followed`,
      errorOptions(attempts, p, statusCode),
    );
  const code = isObject(body) && typeof body.code === 'string' ? body.code : undefined;
  throw new ReportRefusedError(
    `${p.url} refused the report with ${statusCode}${describe(body)}`,
    code,
    body,
    errorOptions(attempts, p, statusCode),
  );
}

/** The callback answer in a body: `{ status, token?, data? }`. */
function asAnswer(
  body: unknown,
):
  | { status: string; token: string | undefined; data: Readonly<Record<string, unknown>> }
  | undefined {
  if (!isObject(body) || typeof body.status !== 'string') return undefined;
  return {
    status: body.status,
    token: typeof body.token === 'string' ? body.token : undefined,
    data: isObject(body.data) ? body.data : {},
  };
}

/** `: CODE message` of an error body, cut short, for messages. */
export function describe(body: unknown): string {
  if (!isObject(body)) return '';
  const code = typeof body.code === 'string' ? body.code : '';
  const message = typeof body.message === 'string' ? body.message.slice(0, 300) : '';
  return code || message ? `: ${[code, message].filter(Boolean).join(' ')}` : '';
}
