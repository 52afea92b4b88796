/**
 * Sending a report until it gets a definite answer: attempt after attempt,
 * each after a jittered backoff that honours `Retry-After`, within
 * `maxAttempts` and the `maxElapsedMs` time budget, stopping at once when the
 * caller aborts.
 *
 * @module
 */

import { show } from './checks.js';
import { nextDelay } from './backoff.js';
import { ReportAbortedError, ReportUnavailableError } from './errors.js';
import type { ResolvedClientOptions } from './options.js';
import { errorOptions, type Prepared } from './request.js';
import { attempt } from './transport.js';
import type { ReportResult } from './types.js';

/**
 * Sends `p` until a definite answer, within the attempt and time bounds.
 *
 * @throws {@link ReportUnavailableError} when the bounds run out, {@link ReportAbortedError}
 *   when `p.signal` aborts, and whatever a definite answer amounts to (see `classify`).
 */
export async function send(options: ResolvedClientOptions, p: Prepared): Promise<ReportResult> {
  const { baseDelayMs, clock, maxAttempts, maxDelayMs, maxElapsedMs, random, sleep } = options;
  const started = clock.now();
  let last: { reason: string; statusCode?: number | undefined } = { reason: 'nothing sent' };
  for (let attempts = 1; ; attempts++) {
    if (p.signal?.aborted)
      throw new ReportAbortedError(errorOptions(attempts - 1, p, last.statusCode, p.signal.reason));
    const budget = maxElapsedMs - (clock.now() - started);
    const outcome = await attempt(options, p, attempts, budget);
    if ('done' in outcome) return outcome.done;
    last = { reason: outcome.retry, statusCode: outcome.statusCode };
    const giveUp = (why: string) =>
      new ReportUnavailableError(
        `the report got no definite answer in ${attempts} attempt${attempts === 1 ? '' : 's'} (${why}); last: ${outcome.retry}. Send it again later with dedupKey ${show(p.dedupKey)}`,
        errorOptions(attempts, p, outcome.statusCode),
      );
    if (attempts >= maxAttempts) throw giveUp(`maxAttempts ${maxAttempts}`);
    const delay = nextDelay(attempts, outcome.retryAfterMs, baseDelayMs, maxDelayMs, random());
    const left = maxElapsedMs - (clock.now() - started);
    if (delay >= left)
      throw giveUp(
        outcome.retryAfterMs !== undefined && outcome.retryAfterMs >= left
          ? `Retry-After asks for ${outcome.retryAfterMs} ms, past the time budget maxElapsedMs ${maxElapsedMs}`
          : `time budget maxElapsedMs ${maxElapsedMs}`,
      );
    try {
      await sleep(delay, p.signal);
    } catch (err) {
      if (p.signal?.aborted)
        throw new ReportAbortedError(
          errorOptions(attempts, p, outcome.statusCode, p.signal.reason),
        );
      throw err;
    }
  }
}
