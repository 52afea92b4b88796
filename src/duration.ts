/**
 * ISO 8601 durations (`PT0.5S`, `P1DT2H`, `P1Y2M`) and absolute dates, as the
 * spec uses them for `timeout`, `heartbeat` and `retention`.
 *
 * @module
 */

import { InvalidArgumentError } from './errors.js';

/** A parsed ISO 8601 duration. Fields may be fractional. */
export interface Duration {
  years: number;
  months: number;
  weeks: number;
  days: number;
  hours: number;
  minutes: number;
  seconds: number;
}

const DURATION_RE =
  /^P(?!$)(?:(\d+(?:[.,]\d+)?)Y)?(?:(\d+(?:[.,]\d+)?)M)?(?:(\d+(?:[.,]\d+)?)W)?(?:(\d+(?:[.,]\d+)?)D)?(?:T(?=\d)(?:(\d+(?:[.,]\d+)?)H)?(?:(\d+(?:[.,]\d+)?)M)?(?:(\d+(?:[.,]\d+)?)S)?)?$/;

const ISO_DATE_RE =
  /^\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?$/;

const num = (s: string | undefined): number => (s === undefined ? 0 : Number(s.replace(',', '.')));

/**
 * Parses an ISO 8601 duration string.
 *
 * @param text - e.g. `PT1H`, `PT0.5S`, `P1DT2H`, `P2W`.
 * @returns the duration, or `undefined` if `text` is not one.
 */
export function parseDuration(text: string): Duration | undefined {
  const m = DURATION_RE.exec(text);
  if (!m) return undefined;
  return {
    years: num(m[1]),
    months: num(m[2]),
    weeks: num(m[3]),
    days: num(m[4]),
    hours: num(m[5]),
    minutes: num(m[6]),
    seconds: num(m[7]),
  };
}

const MS = { second: 1000, minute: 60_000, hour: 3_600_000, day: 86_400_000 } as const;

/**
 * Adds a duration to an instant. Years and months are calendar steps (UTC);
 * weeks, days and smaller are fixed lengths.
 *
 * @param from - start instant, ms since epoch.
 * @param d - the duration.
 * @returns the end instant, ms since epoch (rounded to whole ms).
 */
export function addDuration(from: number, d: Duration): number {
  let t = from;
  const wholeMonths = Math.trunc(d.years * 12 + d.months);
  const monthFraction = d.years * 12 + d.months - wholeMonths;
  if (wholeMonths !== 0) {
    const date = new Date(t);
    const day = date.getUTCDate();
    date.setUTCDate(1);
    date.setUTCMonth(date.getUTCMonth() + wholeMonths);
    const lastDay = new Date(
      Date.UTC(date.getUTCFullYear(), date.getUTCMonth() + 1, 0),
    ).getUTCDate();
    date.setUTCDate(Math.min(day, lastDay));
    t = date.getTime();
  }
  t += monthFraction * 30 * MS.day;
  t +=
    (d.weeks * 7 + d.days) * MS.day +
    d.hours * MS.hour +
    d.minutes * MS.minute +
    d.seconds * MS.second;
  return Math.round(t);
}

/**
 * Resolves an ISO 8601 duration string to milliseconds from `from`.
 *
 * @param name - option name used in the error message, e.g. `options.heartbeat`.
 * @param value - the option value.
 * @param from - the instant the duration counts from.
 * @returns the duration in ms (never negative).
 * @throws {@link InvalidArgumentError} if `value` is not an ISO 8601 duration.
 */
export function durationMs(name: string, value: unknown, from: number): number {
  const d = typeof value === 'string' ? parseDuration(value) : undefined;
  if (!d) {
    throw new InvalidArgumentError(
      `${name} must be an ISO 8601 duration such as "PT30S" or "P1DT2H" (got ${describe(value)})`,
    );
  }
  return addDuration(from, d) - from;
}

/**
 * Resolves a deadline option (`timeout`): an ISO 8601 duration counted from
 * `from`, an ISO 8601 date-time, a `Date`, or `false` for none.
 *
 * @returns the absolute deadline in ms since epoch, or `undefined` for `false`.
 * @throws {@link InvalidArgumentError} for anything else, or a date not after `from`.
 */
export function deadlineAt(name: string, value: unknown, from: number): number | undefined {
  if (value === false) return undefined;
  let at: number | undefined;
  if (value instanceof Date) at = value.getTime();
  else if (typeof value === 'string') {
    const d = parseDuration(value);
    if (d) return addDuration(from, d);
    if (ISO_DATE_RE.test(value)) at = Date.parse(value);
  }
  if (at === undefined || Number.isNaN(at)) {
    throw new InvalidArgumentError(
      `${name} must be an ISO 8601 duration ("PT1H"), an ISO 8601 date-time, a Date, or false (got ${describe(value)})`,
    );
  }
  if (at <= from) {
    throw new InvalidArgumentError(
      `${name} is in the past (${new Date(at).toISOString()} is not after ${new Date(from).toISOString()})`,
    );
  }
  return at;
}

/** Short, safe rendering of a bad option value for error messages. */
export function describe(value: unknown): string {
  if (typeof value === 'string')
    return JSON.stringify(value.length > 60 ? `${value.slice(0, 60)}…` : value);
  if (value === null || value === undefined || typeof value !== 'object') return String(value);
  if (value instanceof Date) return `Date(${value.toString()})`;
  return Array.isArray(value) ? 'an array' : 'an object';
}
