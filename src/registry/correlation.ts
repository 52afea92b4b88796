/**
 * Correlation keys: an anchor that declares `correlate` finds its callbacks by the values of
 * those keys in their creation data (CloudEvents carry them as attributes).
 *
 * @module
 */

import type { ResolvedAnchor } from '../options/anchor.js';

/**
 * The correlation index key of a callback (`anchor \0 value \0 value...`), if its anchor declares
 * `correlate` and `valueOf` gives a scalar for every correlated key.
 */
export function correlationKey(
  anchor: ResolvedAnchor,
  valueOf: (key: string) => unknown,
): string | undefined {
  if (anchor.correlate.length === 0) return undefined;
  const values: string[] = [];
  for (const key of anchor.correlate) {
    const v = valueOf(key);
    if (typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean') return undefined;
    values.push(String(v));
  }
  return `${anchor.name}\u0000${values.join('\u0000')}`;
}
