import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { comparisonLines, steadyFigures, WARM_UP_SHARE } from '../demo/compare.js';
import { figuresOver, type Sample } from '../demo/figures.js';

const run = (args: string[], timeout: number) =>
  promisify(execFile)('npm', ['start', '--silent', '--', ...args], { encoding: 'utf8', timeout });

/** The comparison's table: its column names, one row per store, the ratios. */
const COMPARISON = {
  columns: /^ {2}store +dispatches\/s +p50 ms +p99 ms +measured over$/m,
  sqlite: /^ {2}SQLite +[\d,]+ +[\d.]+ +[\d.]+ +seconds [\d.]+ to [\d.]+ of its run$/m,
  memory: /^ {2}memory +[\d,]+ +[\d.]+ +[\d.]+ +seconds [\d.]+ to [\d.]+ of its run$/m,
  ratio: /^ {2}SQLite\/memory +[\d.]+× +[\d.]+× +[\d.]+×$/m,
};

describe('npm start (the demo)', () => {
  it('`npm start -- --callbacks 2000` exits 0 with 0 lost updates, then compares with memory', async () => {
    const { stdout } = await promisify(execFile)(
      'npm',
      ['start', '--silent', '--', '--callbacks', '2000'],
      {
        encoding: 'utf8',
        timeout: 120_000,
      },
    );
    expect(stdout).toMatch(/dashboard: http:\/\/127\.0\.0\.1:\d+\/dashboard/);
    expect(stdout).toMatch(
      /[\d,]+ HTTP dispatches in [\d.]+ s: [\d,]+\/s, latency p50 [\d.]+ ms, p99 [\d.]+ ms/,
    );
    expect(stdout).toContain('final: complete 1,600, error 240, timeout 160');
    expect(stdout).toContain('lost updates: 0');
    // Then the same load on the memory store, and the two side by side with their ratio.
    for (const [line, re] of Object.entries(COMPARISON)) expect(stdout, line).toMatch(re);
    const header = 'the same load on the memory store for a few seconds, for comparison:';
    expect(stdout.indexOf('lost updates: 0')).toBeLessThan(stdout.indexOf(header));
    expect(stdout.indexOf(header)).toBeLessThan(stdout.search(COMPARISON.columns));
  }, 150_000);

  it('skips the comparison with --no-compare, and on the memory store', async () => {
    for (const args of [['--no-compare'], ['--memory']]) {
      const { stdout } = await run(['--callbacks', '200', ...args], 60_000);
      expect(stdout, args[0]).toContain('lost updates: 0');
      expect(stdout, args[0]).not.toMatch(/for comparison|SQLite\/memory/);
    }
  }, 120_000);
});

describe('the comparison with the memory store', () => {
  /** One report sent every 10 ms for `seconds`, with latency `ms(i)` and one retry in 50. */
  const steady = (seconds: number, ms: (i: number) => number): Sample[] =>
    Array.from({ length: seconds * 100 }, (_, i) => ({
      sentMs: (i + 1) * 10,
      latencyMs: ms(i),
      attempts: i % 50 === 0 ? 2 : 1,
    }));

  it('counts the requests sent in the stretch, retries included, and their percentiles', () => {
    const samples = steady(10, (i) => i % 100); // 0..99 ms, evenly
    const f = figuresOver(samples, 2, 6);
    expect(f.requests).toBe(400 + 8); // 400 reports, 8 of them retried once
    expect(f.requestsPerSecond).toBe(102);
    expect(f.p50ms).toBe(50);
    expect(f.p99ms).toBe(99);
    // A failed report counts as a request, not as a latency.
    const failed = figuresOver([{ sentMs: 5, latencyMs: undefined, attempts: 3 }], 0, 1);
    expect(failed).toMatchObject({ requests: 3, p50ms: 0, p99ms: 0 });
    // Sent before the stretch and answered in it: left out. Sent in it and answered after: in.
    const edges = figuresOver(
      [
        { sentMs: 900, latencyMs: 5000, attempts: 1 },
        { sentMs: 1500, latencyMs: 7000, attempts: 1 },
      ],
      1,
      2,
    );
    expect(edges).toMatchObject({ requests: 1, p99ms: 7000 });
  });

  it('measures each run after its start-up: its first fifth, and until every callback exists', () => {
    // Slow for the first 2 s, then fast: the warm-up must not count.
    const samples = steady(10, (i) => (i < 200 ? 1000 : 10));
    expect(WARM_UP_SHARE).toBe(0.2);
    const whole = steadyFigures({ samples, loadSeconds: 10, createdSeconds: 0.5 });
    expect([whole.from, whole.to, whole.p99ms]).toEqual([2, 10, 10]);
    // Created late: measured from there, for at most the given seconds.
    const short = steadyFigures({ samples, loadSeconds: 12, createdSeconds: 3 }, 4);
    expect([short.from, short.to]).toEqual([3, 7]);
    expect(short.requests).toBe(400 + 8);
  });

  it('prints both stores and the SQLite/memory ratios', () => {
    const f = (requestsPerSecond: number, p50ms: number, p99ms: number, to: number) => ({
      from: to * WARM_UP_SHARE,
      to,
      requests: requestsPerSecond * to * 0.8,
      requestsPerSecond,
      p50ms,
      p99ms,
    });
    const lines = comparisonLines(f(1000, 100, 400, 100), f(2500, 40, 100, 5));
    const text = lines.join('\n');
    for (const [line, re] of Object.entries(COMPARISON)) expect(text, line).toMatch(re);
    expect(text).toMatch(/SQLite +1,000 +100\.00 +400\.00 +seconds 20\.0 to 100\.0 of its run/);
    expect(text).toMatch(/memory +2,500 +40\.00 +100\.00 +seconds 1\.0 to 5\.0 of its run/);
    expect(text).toMatch(/SQLite\/memory +0\.40× +2\.50× +4\.00×/);
    // Nothing measured on the memory side: no ratio, rather than Infinity.
    expect(comparisonLines(f(1000, 100, 400, 100), f(0, 0, 0, 5)).join('\n')).toMatch(
      /SQLite\/memory +– +– +–/,
    );
  });
});
