/**
 * Refusal of unknown option keys, so a typo in plain JavaScript (`{ secret }`
 * for `{ secrets }`) fails loudly instead of being ignored.
 *
 * @module
 */

import { InvalidArgumentError } from './errors.js';

/** Edit distance between two short strings (Levenshtein, case-insensitive). */
function distance(a: string, b: string): number {
  a = a.toLowerCase();
  b = b.toLowerCase();
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(
        prev[j]! + 1,
        row[j - 1]! + 1,
        prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    }
    prev = row;
  }
  return prev[b.length]!;
}

/** The known key nearest to `key`, or `undefined` when none is close. */
export function nearestKey(key: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Number.POSITIVE_INFINITY;
  for (const k of known) {
    const d =
      k.toLowerCase().startsWith(key.toLowerCase()) || key.toLowerCase().startsWith(k.toLowerCase())
        ? Math.min(1, distance(key, k))
        : distance(key, k);
    if (d < bestDistance) {
      bestDistance = d;
      best = k;
    }
  }
  return best !== undefined && bestDistance <= Math.max(2, Math.floor(key.length / 3))
    ? best
    : undefined;
}

/**
 * Refuses an own enumerable key of `value` that is not in `known`.
 *
 * @param what - what the object is, for the message: `engine options`, `anchor "job" options`.
 * @throws {@link InvalidArgumentError}: `unknown option "secret" in engine options (did you mean "secrets"?)`.
 */
export function checkKnownKeys(what: string, value: object, known: readonly string[]): void {
  for (const key of Object.keys(value)) {
    if (known.includes(key)) continue;
    const near = nearestKey(key, known);
    throw new InvalidArgumentError(
      `unknown option ${JSON.stringify(key)} in ${what}${near === undefined ? `; known options: ${known.join(', ')}` : ` (did you mean ${JSON.stringify(near)}?)`}`,
    );
  }
}
