/**
 * Short words for times and policies, shared by the diagrams, the timeline and
 * the CLI: `250 ms`, `1.5 s`, `2 min 30 s`, `3 tries, waits 1 s · 2 s`.
 *
 * @module
 */

import { parseDuration } from '../duration.js';
import { retryDelayMs, type ResolvedRetry } from '../retry.js';

/**
 * A span of time in words: `250 ms`, `1.5 s`, `42 s`, `2 min 30 s`, `1 h 5 min`, `3 d 2 h`.
 *
 * @param ms - the span in milliseconds (negative spans are shown with a minus sign).
 */
export function spanText(ms: number): string {
  if (ms < 0) return `−${spanText(-ms)}`;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 10_000) return `${trim((ms / 1000).toFixed(ms % 1000 === 0 ? 0 : 1))} s`;
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s} s`;
  const two = (big: number, bigUnit: string, small: number, smallUnit: string) =>
    small === 0 ? `${big} ${bigUnit}` : `${big} ${bigUnit} ${small} ${smallUnit}`;
  if (s < 3600) return two(Math.floor(s / 60), 'min', s % 60, 's');
  const m = Math.round(s / 60);
  if (m < 1440) return two(Math.floor(m / 60), 'h', m % 60, 'min');
  const h = Math.round(m / 60);
  return two(Math.floor(h / 24), 'd', h % 24, 'h');
}

const trim = (n: string) => n.replace(/\.0$/, '');

/**
 * An ISO 8601 duration in words (`PT90S` → `1 min 30 s`); durations with years or months stay
 * as written, since their length depends on the calendar.
 */
export function durationText(iso: string): string {
  const d = parseDuration(iso);
  if (!d || d.years || d.months) return iso;
  const ms = ((((d.weeks * 7 + d.days) * 24 + d.hours) * 60 + d.minutes) * 60 + d.seconds) * 1000;
  return spanText(ms);
}

/**
 * A retry policy in words: how many tries and the waits between them, e.g.
 * `3 tries, waits 1 s · 2 s` (at most four waits are listed, then `…`).
 */
export function retryText(policy: ResolvedRetry): string {
  if (policy.attempts <= 1) return '1 try, no retry';
  const waits: string[] = [];
  for (let attempt = 2; attempt <= Math.min(policy.attempts, 5); attempt++)
    waits.push(spanText(retryDelayMs(policy, attempt)));
  const more = policy.attempts > 5 ? ' · …' : '';
  return `${policy.attempts} tries, waits ${waits.join(' · ')}${more}`;
}
