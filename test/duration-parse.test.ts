import { describe, expect, it } from 'vitest';
import { addDuration, deadlineAt, durationMs, parseDuration } from '../src/duration.js';
import { InvalidArgumentError } from '../src/errors.js';

const T0 = Date.UTC(2026, 0, 31, 12);

describe('ISO 8601 durations', () => {
  it.each([
    ['PT1H', 3_600_000],
    ['PT0.5S', 500],
    ['PT1,5S', 1500],
    ['P1DT2H', 26 * 3_600_000],
    ['P2W', 14 * 86_400_000],
    ['PT30M', 1_800_000],
    ['PT0S', 0],
    ['P1D', 86_400_000],
  ])('%s is %i ms', (text, ms) => {
    expect(durationMs('x', text, T0)).toBe(ms);
  });

  it('adds months and years on the calendar, clamping to the month end', () => {
    expect(new Date(addDuration(T0, parseDuration('P1M')!)).toISOString()).toBe(
      '2026-02-28T12:00:00.000Z',
    );
    expect(new Date(addDuration(T0, parseDuration('P1Y')!)).toISOString()).toBe(
      '2027-01-31T12:00:00.000Z',
    );
  });

  it.each(['1 hour', 'P', 'PT', 'PT1', '1H', 'P1H', '', 'PT-1S'])(
    'refuses %j with a clear error',
    (text) => {
      expect(parseDuration(text)).toBeUndefined();
      expect(() => durationMs('options.retention', text, T0)).toThrow(InvalidArgumentError);
      expect(() => durationMs('options.retention', text, T0)).toThrow(
        /options\.retention must be an ISO 8601 duration/,
      );
    },
  );

  it('resolves deadlines from durations, dates and false', () => {
    expect(deadlineAt('t', 'PT10M', T0)).toBe(T0 + 600_000);
    expect(deadlineAt('t', '2026-02-01T00:00:00Z', T0)).toBe(Date.UTC(2026, 1, 1));
    expect(deadlineAt('t', new Date(T0 + 5), T0)).toBe(T0 + 5);
    expect(deadlineAt('t', false, T0)).toBeUndefined();
  });

  it('refuses a deadline in the past and garbage, naming the option', () => {
    expect(() => deadlineAt('options.timeout', '2020-01-01T00:00:00Z', T0)).toThrow(
      /options\.timeout is in the past/,
    );
    expect(() => deadlineAt('options.timeout', '1 hour', T0)).toThrow(
      /options\.timeout must be an ISO 8601 duration .*got "1 hour"/,
    );
    expect(() => deadlineAt('options.timeout', 3600, T0)).toThrow(InvalidArgumentError);
  });
});
