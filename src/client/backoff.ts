/**
 * When the client tries again: exponential backoff with full jitter, and the
 * service's `Retry-After` (seconds or an HTTP date) as a floor.
 *
 * @module
 */

/**
 * The delay before retry number `retry` (1 for the first retry): full jitter, a uniformly
 * random delay between 0 and `min(maxDelayMs, baseDelayMs * 2^(retry-1))`, so clients that
 * failed together do not come back together.
 *
 * @param random - a number in [0, 1), e.g. `Math.random()`.
 */
export function backoffDelay(
  retry: number,
  baseDelayMs: number,
  maxDelayMs: number,
  random: number,
): number {
  const ceiling = Math.min(maxDelayMs, baseDelayMs * 2 ** Math.min(retry - 1, 52));
  return Math.floor(random * ceiling);
}

/**
 * The wait a `Retry-After` header asks for, in ms: whole seconds (`"120"`), or an HTTP date
 * (`"Wed, 21 Oct 2026 07:28:00 GMT"`) measured from `now`. A date in the past is 0.
 *
 * @returns the wait, or `undefined` when the header is absent or malformed.
 */
export function parseRetryAfter(value: string | null | undefined, now: number): number | undefined {
  if (value === null || value === undefined) return undefined;
  const text = value.trim();
  if (/^\d{1,10}$/.test(text)) return Number(text) * 1000;
  // An HTTP date names its weekday, day, month, year and time: require a letter and a digit,
  // so a stray number with a sign or fraction is not read as a date.
  if (!/[A-Za-z]/.test(text) || !/\d/.test(text)) return undefined;
  const at = Date.parse(text);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, at - now);
}

/**
 * The wait before the next attempt: the jittered backoff, raised to the service's
 * `Retry-After` when it asks for longer. (The service knows when it expects to recover; the
 * jitter above that floor still spreads clients that were told the same.)
 */
export function nextDelay(
  retry: number,
  retryAfterMs: number | undefined,
  baseDelayMs: number,
  maxDelayMs: number,
  random: number,
): number {
  const jittered = backoffDelay(retry, baseDelayMs, maxDelayMs, random);
  return retryAfterMs === undefined ? jittered : Math.max(retryAfterMs, jittered);
}
