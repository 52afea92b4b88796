/**
 * Worker-step dispatch through the engine's pool, beside
 * (a) the floor: piscina `run()` called directly on the same step function,
 * (b) the pool wrapper alone: `createWorkerPool().run()` (signal, admission count, worker entry),
 * (c) the same step run in-process by the engine (no thread hop at all).
 *
 * Workloads: one report at a time (per-step latency: what a worker step costs over piscina), 64
 * concurrent reports to 64 callbacks (throughput), and the same with ~1 ms of CPU per step (where
 * the pool's threads beat the single main thread).
 *
 * Run: npx tsx bench/pool.bench.ts [--time 1500] [--threads 2] [--out bench/results-pool.json]
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { Piscina } from 'piscina';
import {
  createCallbackEngine,
  workerStep,
  type StepInput,
  type WorkerStepInput,
} from '../src/index.js';
import { createWorkerPool } from '../src/pool/worker-pool.js';
import { check, compare, machine, printRows, writeResultsSection, type Row } from './lib.js';

const { values } = parseArgs({
  options: {
    time: { type: 'string', default: '1500' },
    threads: { type: 'string', default: '2' },
    out: { type: 'string', default: 'bench/results-pool.json' },
  },
});
const TIME = Number(values.time);
const THREADS = Number(values.threads);
const CONCURRENCY = 64;
const CPU_ITERATIONS = 200_000; // ~1 ms of work per step on this kind of machine

// The step module is plain JavaScript, as shipped in production, and the same file serves every
// alternative, so no TypeScript loader sits in any timed path.
const dir = mkdtempSync(join(tmpdir(), 'cbe-pool-bench-'));
const STEPS = pathToFileURL(join(dir, 'steps.mjs'));
writeFileSync(
  STEPS,
  `export function bump(input) { return { bumped: input.data.n + 1 }; }
export function burn(input) {
  const iterations = input.data.iterations;
  let x = 0;
  for (let i = 0; i < iterations; i++) x = (x * 31 + i) % 1000003;
  return { bumped: input.data.n + 1, checksum: x };
}
`,
);
type StepFn = (input: Pick<WorkerStepInput, 'data'>) => Record<string, unknown>;
const local = (await import(STEPS.href)) as { bump: StepFn; burn: StepFn };

const poolOptions = {
  minThreads: THREADS,
  maxThreads: THREADS,
  idleTimeoutMs: 30_000,
  maxQueue: 4096,
  close: 'destroy',
} as const;
const piscina = new Piscina({ filename: STEPS.href, minThreads: THREADS, maxThreads: THREADS });
const pool = createWorkerPool(poolOptions);
const engine = createCallbackEngine({
  node: 'bench',
  secrets: ['bench-secret-0123456789'],
  timeout: false,
  pool: poolOptions,
});
engine.anchor('onPool', { next: { progress: workerStep(STEPS, 'bump') } });
engine.anchor('onPoolCpu', { next: { progress: workerStep(STEPS, 'burn') } });
engine.anchor('inProcess', { next: { progress: (cb: StepInput) => local.bump(cb) } });
engine.anchor('inProcessCpu', { next: { progress: (cb: StepInput) => local.burn(cb) } });

const tokens = async (anchor: string) =>
  Promise.all(Array.from({ length: CONCURRENCY }, async () => (await engine.create(anchor)).token));
const onPool = await tokens('onPool');
const onPoolCpu = await tokens('onPoolCpu');
const inProcess = await tokens('inProcess');
const inProcessCpu = await tokens('inProcessCpu');

const stepInput = (data: Record<string, number>): WorkerStepInput => ({
  status: 'progress',
  token: 'bench',
  id: 'bench',
  data,
  report: {},
  parentToken: undefined,
  attributes: {},
  attempt: 1,
});
// A fresh signal per task, as the engine gives every step its own.
const signal = () => new AbortController().signal;
const bumpStep = workerStep(STEPS, 'bump');
const burnStep = workerStep(STEPS, 'burn');

let n = 0;
const report = (token: string, data: Record<string, number>) =>
  engine.dispatch({
    type: 'CALLBACK',
    callbackToken: token,
    callbackStatus: 'progress',
    callbackData: data,
  });

/** The four alternatives for one step (`bump` or `burn`), `batch` reports per call. */
function alternatives(step: 'bump' | 'burn', batch: number) {
  const data = (): Record<string, number> =>
    step === 'burn' ? { n: n++, iterations: CPU_ITERATIONS } : { n: n++ };
  const all = <T>(make: (i: number) => Promise<T>) =>
    Promise.all(Array.from({ length: batch }, (_, i) => make(i)));
  const workerTokens = step === 'burn' ? onPoolCpu : onPool;
  const localTokens = step === 'burn' ? inProcessCpu : inProcess;
  return [
    {
      name: 'floor: piscina.run()',
      batch,
      fn: () => all(() => piscina.run(stepInput(data()), { name: step })),
    },
    {
      name: 'pool wrapper: run()',
      batch,
      fn: () =>
        all(() => pool.run(step === 'burn' ? burnStep : bumpStep, stepInput(data()), signal())),
    },
    { name: 'engine: worker step', batch, fn: () => all((i) => report(workerTokens[i]!, data())) },
    {
      name: 'engine: in-process step',
      batch,
      fn: () => all((i) => report(localTokens[i]!, data())),
    },
  ];
}

// Correctness before timing: every path runs the step and returns (or merges) its output.
const viaPiscina = (await piscina.run(stepInput({ n: 41 }), { name: 'bump' })) as Record<
  string,
  unknown
>;
check(viaPiscina.bumped === 42, 'piscina ran the step');
check(
  (await pool.run(bumpStep, stepInput({ n: 41 }), signal()))?.bumped === 42,
  'pool wrapper ran the step',
);
const viaEngine = await report(onPool[0]!, { n: 41 });
check(
  viaEngine.status === 'progress' && viaEngine.data.bumped === 42,
  'engine merged the worker step output',
);
const viaLocal = await report(inProcess[0]!, { n: 41 });
check(viaLocal.data.bumped === 42, 'engine merged the in-process step output');
const cpu = await report(onPoolCpu[0]!, { n: 1, iterations: CPU_ITERATIONS });
check(
  cpu.data.checksum === local.burn({ data: { n: 1, iterations: CPU_ITERATIONS } }).checksum,
  'worker burn = local burn',
);

const rows: Row[] = [];
const groups: [string, 'bump' | 'burn', number][] = [
  ['latency: 1 report at a time, trivial step', 'bump', 1],
  [`throughput: ${CONCURRENCY} concurrent reports, trivial step`, 'bump', CONCURRENCY],
  [`throughput: ${CONCURRENCY} concurrent reports, ~1 ms CPU step`, 'burn', CONCURRENCY],
];
for (const [label, step, batch] of groups) {
  rows.push(...(await compare(label, alternatives(step, batch), { timeMs: TIME })));
}
const table = printRows(rows);

/** Time per report (µs) of one alternative in one workload. */
const usPerOp = (group: string, name: string) =>
  1e6 / rows.find((r) => r.group === group && r.name === name)!.opsPerSec;
const summary = groups.map(([group]) => {
  const floor = usPerOp(group, 'floor: piscina.run()');
  const enginePool = usPerOp(group, 'engine: worker step');
  return {
    workload: group,
    floorUs: floor,
    wrapperUs: usPerOp(group, 'pool wrapper: run()'),
    engineWorkerUs: enginePool,
    engineInProcessUs: usPerOp(group, 'engine: in-process step'),
    /** Time per report of the engine's pool path over raw piscina run(): the per-step overhead ratio. */
    engineOverFloor: enginePool / floor,
    engineOverheadUs: enginePool - floor,
  };
});
const summaryLines = summary.map(
  (s) =>
    `- ${s.workload}: engine worker step ${s.engineWorkerUs.toFixed(1)} µs/report = ${s.engineOverFloor.toFixed(2)}× raw piscina run() (${s.floorUs.toFixed(1)} µs; +${s.engineOverheadUs.toFixed(1)} µs), in-process ${s.engineInProcessUs.toFixed(1)} µs`,
);
for (const line of summaryLines) console.log(line);
writeResultsSection('pool', 'Worker-step pool (issue 3)', 'bench/pool.bench.ts', [
  `${THREADS} threads. Per-step overhead of the engine's pool path = time per report of "engine: worker step" over raw \`piscina.run()\`, same run:`,
  '',
  ...summaryLines,
  '',
  ...table,
]);
writeFileSync(
  values.out,
  `${JSON.stringify({ machine: machine(), threads: THREADS, timeMs: TIME, updatedAt: new Date().toISOString(), rows, summary }, null, 2)}\n`,
);

await engine.close();
await pool.close();
await piscina.destroy();
rmSync(dir, { recursive: true, force: true });
