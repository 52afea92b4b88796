/**
 * The demo's measurements: each report's answer time and latency, and the figures of a run's
 * first seconds, so that two runs can be compared over the same stretch.
 *
 * @module
 */

/** One report a simulated service sent. */
export interface Sample {
  /** When it was sent, ms since the run started. */
  readonly sentMs: number;
  /** From sending to the answer, ms; `undefined` when it failed. */
  readonly latencyMs: number | undefined;
  /** HTTP requests it took (retries included). */
  readonly attempts: number;
}

/** What a run did over a stretch of its time. */
export interface Figures {
  /** Where the stretch starts, seconds from the run's start. */
  readonly from: number;
  /** Where it ends. */
  readonly to: number;
  /** HTTP requests answered in it. */
  readonly requests: number;
  readonly requestsPerSecond: number;
  readonly p50ms: number;
  readonly p99ms: number;
}

/**
 * The figures of the reports sent between two points of a run (each counted with its answer,
 * even one that came later: a report slowed down past the end still counts as slow).
 *
 * @param samples - the run's reports.
 * @param from - where the stretch starts, seconds from the run's start (exclusive).
 * @param to - where it ends (inclusive); `Infinity` for the end of the run.
 * @returns requests per second over the stretch (0 when it is open-ended or empty), and the
 *   p50 and p99 of its latencies (failed reports are counted as requests, not as latencies).
 */
export function figuresOver(samples: readonly Sample[], from: number, to: number): Figures {
  const latencies: number[] = [];
  let requests = 0;
  for (const s of samples) {
    if (s.sentMs <= from * 1000 || s.sentMs > to * 1000) continue;
    requests += s.attempts;
    if (s.latencyMs !== undefined) latencies.push(s.latencyMs);
  }
  latencies.sort((a, b) => a - b);
  const pick = (p: number) =>
    latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] ?? 0;
  const span = to - from;
  return {
    from,
    to,
    requests,
    requestsPerSecond: Number.isFinite(span) && span > 0 ? requests / span : 0,
    p50ms: pick(0.5),
    p99ms: pick(0.99),
  };
}
