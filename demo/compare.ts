/**
 * The comparison `npm start` prints after its SQLite run: the same simulated load on the memory
 * store in the same process, for a few seconds, and the SQLite/memory ratios of throughput and
 * latency.
 *
 * Each run is measured after its start-up: the reports sent once every callback was created
 * (creating them all at once slows the first reports down) and after the run's first fifth
 * (the SQLite run starts in a cold process). The memory run stops a few seconds after it created
 * its callbacks: it is measured over those seconds, the SQLite run over the rest of its run.
 *
 * @module
 */

import { figuresOver, type Figures } from './figures.js';
import { runSimulation, type SimulationSummary } from './simulation.js';

/** How long the memory run goes on after creating its callbacks, in seconds. */
export const COMPARE_SECONDS = 4;

/** The share of each run always left out at its start, while it warms up. */
export const WARM_UP_SHARE = 0.2;

/**
 * A run's figures after its start-up: over the reports sent once every callback was created
 * and after the first {@link WARM_UP_SHARE} of the run, up to `seconds` after the creation (the
 * end of the run when sooner).
 *
 * @param run - the run.
 * @param seconds - the longest stretch to measure after the creation.
 */
export function steadyFigures(
  run: Pick<SimulationSummary, 'samples' | 'loadSeconds' | 'createdSeconds'>,
  seconds = Infinity,
): Figures {
  const to = Math.min(run.createdSeconds + seconds, run.loadSeconds);
  const from = Math.max(run.createdSeconds, to * WARM_UP_SHARE);
  return figuresOver(run.samples, from < to ? from : to * WARM_UP_SHARE, to);
}

const fmt = (n: number) => Math.round(n).toLocaleString('en-US');
const ratio = (a: number, b: number) => (b > 0 ? `${(a / b).toFixed(2)}×` : '–');

/**
 * The comparison table: one row per store, then the SQLite/memory ratios, then what they mean.
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
    row('store', 'dispatches/s', 'p50 ms', 'p99 ms', 'measured over'),
    row('SQLite', fmt(sqlite.requestsPerSecond), ms(sqlite.p50ms), ms(sqlite.p99ms), over(sqlite)),
    row('memory', fmt(memory.requestsPerSecond), ms(memory.p50ms), ms(memory.p99ms), over(memory)),
    row(
      'SQLite/memory',
      ratio(sqlite.requestsPerSecond, memory.requestsPerSecond),
      ratio(sqlite.p50ms, memory.p50ms),
      ratio(sqlite.p99ms, memory.p99ms),
    ),
    '  (start-up left out: creating the callbacks, warming up. The SQLite store writes every',
    '  update to disk before it answers; the memory store keeps nothing across a restart.)',
  ];
}

/** Options of {@link compareWithMemory}. */
export interface CompareOptions {
  /** Where the lines go. */
  log: (line: string) => void;
  /** How long the memory run goes on after creating its callbacks. @default {@link COMPARE_SECONDS} */
  seconds?: number;
}

/**
 * Runs the SQLite run's load again on the memory store (the same callbacks and simulated
 * services) until it is done or {@link COMPARE_SECONDS} after creating its callbacks, and prints
 * the comparison.
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
  options.log('the same load on the memory store for a few seconds, for comparison:');
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
