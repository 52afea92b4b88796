/**
 * The comparison `npm start` prints after its SQLite run: the same simulated load on the memory
 * store in the same process, for a few seconds at most, and the SQLite/memory ratios of
 * throughput and latency.
 *
 * Each run is measured without its first fifth, while it warms up: the SQLite run starts in a
 * cold process, the memory run in a warm one, and a short run's first second is mostly ramp-up.
 *
 * @module
 */

import { figuresOver, type Figures } from './figures.js';
import { runSimulation, type SimulationSummary } from './simulation.js';

/** The longest the memory run lasts, in seconds: what the comparison adds to the demo. */
export const COMPARE_SECONDS = 5;

/** The share of each run left out at its start, while it warms up. */
export const WARM_UP_SHARE = 0.2;

/**
 * A run's figures over its first `seconds` (all of it when it ended sooner), without the first
 * {@link WARM_UP_SHARE} of that stretch.
 *
 * @param run - the run.
 * @param seconds - the longest stretch to measure from its start.
 */
export function steadyFigures(
  run: Pick<SimulationSummary, 'samples' | 'loadSeconds'>,
  seconds = Infinity,
): Figures {
  const to = Math.min(seconds, run.loadSeconds);
  return figuresOver(run.samples, to * WARM_UP_SHARE, to);
}

const fmt = (n: number) => Math.round(n).toLocaleString('en-US');
const ratio = (a: number, b: number) => (b > 0 ? `${(a / b).toFixed(2)}×` : '–');

/**
 * The comparison table: one row per store, then the SQLite/memory ratios.
 *
 * @param sqlite - the SQLite run's figures.
 * @param memory - the memory run's figures.
 * @returns the lines to print, without line ends.
 */
export function comparisonLines(sqlite: Figures, memory: Figures): string[] {
  const row = (name: string, tput: string, p50: string, p99: string, over = '') =>
    `  ${name.padEnd(15)}${tput.padStart(12)}${p50.padStart(9)}${p99.padStart(9)}${over ? `   ${over}` : ''}`;
  const ms = (n: number) => n.toFixed(2);
  const over = (f: Figures) => `seconds ${f.from.toFixed(1)} to ${f.to.toFixed(1)} of its run`;
  return [
    'the same load on the memory store, for comparison:',
    row('store', 'dispatches/s', 'p50 ms', 'p99 ms', 'measured over'),
    row('SQLite', fmt(sqlite.requestsPerSecond), ms(sqlite.p50ms), ms(sqlite.p99ms), over(sqlite)),
    row('memory', fmt(memory.requestsPerSecond), ms(memory.p50ms), ms(memory.p99ms), over(memory)),
    row(
      'SQLite/memory',
      ratio(sqlite.requestsPerSecond, memory.requestsPerSecond),
      ratio(sqlite.p50ms, memory.p50ms),
      ratio(sqlite.p99ms, memory.p99ms),
    ),
    '  (each run without its first fifth, while it warms up; the SQLite store writes every',
    '  update to disk before it answers, the memory store keeps nothing across a restart)',
  ];
}

/** Options of {@link compareWithMemory}. */
export interface CompareOptions {
  /** Where the lines go. */
  log: (line: string) => void;
  /** The longest the memory run lasts, in seconds. @default {@link COMPARE_SECONDS} */
  seconds?: number;
}

/**
 * Runs the SQLite run's load again on the memory store (the same callbacks and simulated
 * services) until it is done or for {@link COMPARE_SECONDS} at most, and prints the comparison.
 *
 * @param sqlite - the SQLite run.
 * @returns the memory run's summary.
 */
export async function compareWithMemory(
  sqlite: SimulationSummary,
  options: CompareOptions,
): Promise<SimulationSummary> {
  const seconds = options.seconds ?? COMPARE_SECONDS;
  options.log('');
  options.log(`running the same load on the memory store (${seconds} s at most)...`);
  const memory = await runSimulation({
    callbacks: sqlite.callbacks,
    concurrency: sqlite.concurrency,
    store: 'memory',
    budgetSeconds: seconds,
    log: () => {},
    progressBar: false,
  });
  const lines = comparisonLines(steadyFigures(sqlite), steadyFigures(memory, seconds));
  for (const line of lines) options.log(line);
  if (memory.httpErrors > 0)
    options.log(`  (the memory run had ${fmt(memory.httpErrors)} HTTP errors)`);
  return memory;
}
