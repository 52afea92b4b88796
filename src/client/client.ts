/**
 * `createCallbackClient()`: what an outside party needs to report back to a
 * callback-engine service. This file wires the parts together: the options
 * (`options.ts`), a report or CloudEvent prepared once (`cloudevents.ts` for
 * events), and sent until a definite answer (`retry.ts`, `transport.ts`,
 * `answer.ts`) with the same deduplication key on every attempt.
 *
 * @module
 */

import { randomUUID } from 'node:crypto';
import { InvalidArgumentError } from '../errors.js';
import { checkSignal, checkStatus, checkUrl, isObject, jsonBody, show } from './checks.js';
import { checkEvent, encodeEvent } from './cloudevents.js';
import { resolveClientOptions, type CallbackClientOptions } from './options.js';
import type { Prepared } from './request.js';
import { send } from './retry.js';
import type {
  CallbackClient,
  CallbackEventInput,
  EventOptions,
  ReportOptions,
  ReportResult,
  ReportStatus,
} from './types.js';

/** The header that carries a report's deduplication key. */
const DEDUP_HEADER = 'callback-dedup-key';

/**
 * Creates a client for an outside party that reports back to a callback-engine service.
 *
 * Each report is sent until it gets a definite answer: retried with exponential backoff and
 * full jitter after a network error, a timeout or a retryable status (408, 429, 5xx), waiting
 * at least what `Retry-After` asks for, within `maxAttempts` and `maxElapsedMs`. Every attempt
 * carries the same deduplication key, so the service applies the report once however many
 * attempts reached it. Answers about the callback (applied, ignored, replayed, conflict,
 * notFound, queued) are results, not errors.
 *
 * @param options - base URL, credentials, retry bounds, and test seams (`fetch`, `clock`,
 *   `sleep`, `random`).
 * @returns the client.
 * @throws `InvalidArgumentError` (code `CBE_ERR_INVALID_ARGUMENT`) for an invalid option.
 * @example
 * ```ts
 * import { createCallbackClient } from 'callback-engine/client';
 *
 * const client = createCallbackClient({ auth: { hmac: { secret: process.env.CALLBACK_SECRET! } } });
 * // callbackUrl came with the job: https://orders.example/hooks/callbacks/eyJ…
 * const result = await client.report(callbackUrl, 'complete', { receipt: 'R-42' });
 * if (result.kind === 'conflict') console.log(`the caller ended it: ${result.status}`);
 * ```
 */
export function createCallbackClient(options: CallbackClientOptions = {}): CallbackClient {
  const resolved = resolveClientOptions(options);
  const { baseUrl, headers: extraHeaders } = resolved;

  return {
    async report<TData extends object>(
      target: string,
      status: ReportStatus,
      data?: Readonly<Record<string, unknown>>,
      reportOptions: ReportOptions = {},
    ): Promise<ReportResult<TData>> {
      if (typeof target !== 'string' || target.length === 0)
        throw new InvalidArgumentError(
          `target must be a callback URL or a token (got ${show(target)})`,
        );
      checkStatus(status);
      if (data !== undefined && !isObject(data))
        throw new InvalidArgumentError(`report data must be a JSON object (got ${show(data)})`);
      const signal = checkSignal(reportOptions.signal);
      const dedupKey = reportOptions.dedupKey ?? randomUUID();
      if (typeof dedupKey !== 'string' || dedupKey.length === 0 || dedupKey.length > 200)
        throw new InvalidArgumentError(
          `options.dedupKey must be a string of 1 to 200 characters (got ${show(dedupKey)})`,
        );
      let callbackUrl: string;
      if (/^https?:\/\//i.test(target)) callbackUrl = checkUrl('the callback URL', target);
      else if (baseUrl === undefined)
        throw new InvalidArgumentError(
          'reporting by token needs options.baseUrl (or pass the callback URL the service handed out)',
        );
      else callbackUrl = `${baseUrl}/callbacks/${encodeURIComponent(target)}`;
      const url = new URL(`${callbackUrl}/${status}`);
      const prepared: Prepared = {
        url: url.href,
        target: url.pathname + url.search,
        headers: {
          ...extraHeaders,
          accept: 'application/json',
          'content-type': 'application/json',
          [DEDUP_HEADER]: dedupKey,
        },
        body: jsonBody('report data', data ?? {}),
        dedupKey,
        signal,
      };
      return (await send(resolved, prepared)) as ReportResult<TData>;
    },

    async sendEvent<TData extends object>(
      event: CallbackEventInput,
      eventOptions: EventOptions = {},
    ): Promise<ReportResult<TData>> {
      if (!isObject(event)) throw new InvalidArgumentError('sendEvent needs an event object');
      const mode = eventOptions.mode ?? 'structured';
      if (mode !== 'structured' && mode !== 'binary')
        throw new InvalidArgumentError(
          `options.mode must be 'structured' or 'binary' (got ${show(mode)})`,
        );
      const signal = checkSignal(eventOptions.signal);
      const checked = checkEvent(event);
      let url: string;
      if (eventOptions.url !== undefined) url = checkUrl('options.url', String(eventOptions.url));
      else if (baseUrl === undefined)
        throw new InvalidArgumentError('sendEvent needs options.baseUrl or a url for the event');
      else url = `${baseUrl}/events`;
      const parsed = new URL(url);
      const { headers, body } = encodeEvent(mode, checked, event.data);
      const prepared: Prepared = {
        url: parsed.href,
        target: parsed.pathname + parsed.search,
        headers: { ...extraHeaders, accept: 'application/json', ...headers },
        body,
        dedupKey: checked.id,
        signal,
      };
      return (await send(resolved, prepared)) as ReportResult<TData>;
    },
  };
}
