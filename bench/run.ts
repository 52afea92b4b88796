/**
 * The benchmark suite: every workload in its own Node process (so one
 * workload's heap does not slow another's GC), then a table of ratios against
 * the targets, bench/results.json, and bench/RESULTS.md.
 *
 * Run: npm run bench            (the whole suite, under 10 minutes on 2 cores)
 *      npm run bench -- --quick (small sizes, to check the scripts run)
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { machine, type Row } from './lib.js';

const { values } = parseArgs({ options: { quick: { type: 'boolean', default: false } } });
const quick = values.quick;
const OUT = quick ? 'bench/results-quick.json' : 'bench/results.json';
const BIG = quick ? 20_000 : 1_000_000;
const MID = quick ? 5_000 : 100_000;
const TIME = quick ? '300' : '2000';
if (existsSync(OUT)) rmSync(OUT);

function run(script: string, args: string[], nodeFlags: string[] = []): void {
  console.log(`\n$ node ${nodeFlags.join(' ')} --import tsx bench/${script} ${args.join(' ')}`);
  execFileSync(
    process.execPath,
    [...nodeFlags, '--import', 'tsx', `bench/${script}`, ...args, '--out', OUT],
    {
      stdio: 'inherit',
    },
  );
}

const started = Date.now();
const heap = ['--max-old-space-size=14000'];
run('dispatch.bench.ts', ['--pending', '1000', '--time', TIME]);
run('dispatch.bench.ts', ['--pending', String(MID), '--time', TIME], heap);
const HOT = quick ? 1000 : 10_000;
run('dispatch.bench.ts', ['--pending', String(BIG), '--hot', `0,${HOT}`, '--time', TIME], heap);
// The engine alone at the big size: the run above holds a million live raw actors (~4 GB), which
// slows every alternative's GC in that process; this is what the engine itself does at that size.
run(
  'dispatch.bench.ts',
  ['--pending', String(BIG), '--hot', `0,${HOT}`, '--time', TIME, '--alternatives', 'floor,engine'],
  heap,
);
run('create.bench.ts', ['--time', TIME]);
run('lifecycle.bench.ts', ['--time', TIME]);
for (const n of [MID, BIG]) {
  for (const kind of ['floor', 'raw', 'passivated', 'live']) {
    run('memory.bench.ts', ['--kind', kind, '--n', String(n)], ['--expose-gc', ...heap]);
  }
}
run('latency.bench.ts', ['--seconds', quick ? '1' : '5']);

type Section = { rows: Row[] };
const results = JSON.parse(readFileSync(OUT, 'utf8')) as Record<string, unknown>;
const rows = (key: string) => (results[key] as Section | undefined)?.rows ?? [];
const ops = (key: string, prefix: string) =>
  rows(key).find((r) => r.name.startsWith(prefix))?.opsPerSec ?? NaN;
const bytes = (kind: string, n: number) =>
  (results[`memory-${kind}-${n}`] as { bytesPerCallback: number } | undefined)?.bytesPerCallback ??
  NaN;
const latency = (
  results.latency as { rows: { name: string; p50ms: number; p99ms: number; opsPerSec: number }[] }
).rows;

const d1k = ops('dispatch-1000', 'engine');
const fmt = (n: number) => Math.round(n).toLocaleString('en-US');
const targets: [string, string, string, boolean][] = [];
const add = (what: string, measured: string, target: string, ok: boolean) =>
  targets.push([what, measured, target, ok]);
const ratio100k = ops(`dispatch-${MID}`, 'engine') / ops(`dispatch-${MID}`, 'raw');
add(
  `dispatch at ${fmt(MID)} pending vs raw send()`,
  `${ratio100k.toFixed(2)}×`,
  '≥ 0.8×',
  ratio100k >= 0.8,
);
const sameSize =
  ops(`dispatch-${BIG}-hot${HOT}`, 'engine') / ops(`dispatch-${BIG}-hot${HOT}`, 'raw');
add(
  `dispatch at ${fmt(BIG)} pending (${fmt(HOT)} hot) vs raw send() at the same size`,
  `${sameSize.toFixed(2)}×`,
  '(≥ 0.8× at 100k)',
  sameSize >= 0.8,
);
const uniform = ops(`dispatch-${BIG}-floor-engine`, 'engine') / d1k;
add(
  `dispatch at ${fmt(BIG)} pending (uniform, engine alone) vs the 1k figure`,
  `${uniform.toFixed(2)}×`,
  '≥ 0.5×',
  uniform >= 0.5,
);
const hot = ops(`dispatch-${BIG}-hot${HOT}-floor-engine`, 'engine') / d1k;
add(
  `dispatch at ${fmt(BIG)} pending (${fmt(HOT)} hot, engine alone) vs the 1k figure`,
  `${hot.toFixed(2)}×`,
  '≥ 0.5×',
  hot >= 0.5,
);
for (const n of [MID, BIG]) {
  const b = bytes('passivated', n);
  add(`heap per idle pending callback at ${fmt(n)}`, `${fmt(b)} B`, '≤ 1024 B', b <= 1024);
}
const create = ops('create', 'engine') / ops('create', 'raw');
add('create vs raw createActor().start()', `${create.toFixed(2)}×`, '≥ 0.8×', create >= 0.8);
const ours = latency.find((r) => r.name.startsWith('engine'))!;
const spread = ours.p99ms / ours.p50ms;
add(
  'dispatch p99 / p50 under sustained mixed load',
  `${spread.toFixed(1)} (p50 ${ours.p50ms.toFixed(3)} ms, p99 ${ours.p99ms.toFixed(3)} ms)`,
  '≤ 10',
  spread <= 10,
);

const lines: string[] = [];
lines.push('| target | measured | goal | met |', '|---|---:|---:|:-:|');
for (const [what, measured, target, ok] of targets)
  lines.push(`| ${what} | ${measured} | ${target} | ${ok ? 'yes' : 'no'} |`);
const table = lines.join('\n');

const detail: string[] = [
  '| workload | alternative | ops/s | ratio to floor |',
  '|---|---|---:|---:|',
];
for (const [key, value] of Object.entries(results)) {
  const section = value as Partial<Section>;
  if (!Array.isArray(section.rows) || key === 'latency') continue;
  for (const r of section.rows)
    detail.push(`| ${r.group} | ${r.name} | ${fmt(r.opsPerSec)} | ${r.ratio.toFixed(3)} |`);
}
const mem: string[] = [
  '| pending | floor (plain record) | raw live actor | engine, idle (passivated) | engine, live actor |',
  '|---:|---:|---:|---:|---:|',
];
for (const n of [MID, BIG])
  mem.push(
    `| ${fmt(n)} | ${fmt(bytes('floor', n))} B | ${fmt(bytes('raw', n))} B | ${fmt(bytes('passivated', n))} B | ${fmt(bytes('live', n))} B |`,
  );
const lat: string[] = [
  '| alternative | ops/s | p50 ms | p99 ms | p99 / p50 |',
  '|---|---:|---:|---:|---:|',
];
for (const r of latency)
  lat.push(
    `| ${r.name} | ${fmt(r.opsPerSec)} | ${r.p50ms.toFixed(3)} | ${r.p99ms.toFixed(3)} | ${(r.p99ms / r.p50ms).toFixed(1)} |`,
  );

const m = machine();
const minutes = ((Date.now() - started) / 60_000).toFixed(1);
console.log(`\n${table}\n\nsuite took ${minutes} min`);
if (!quick) {
  const previous = existsSync('bench/RESULTS.md') ? readFileSync('bench/RESULTS.md', 'utf8') : '';
  const keep = previous.includes('<!-- end of generated -->')
    ? previous.split('<!-- end of generated -->')[1]!
    : '';
  writeFileSync(
    'bench/RESULTS.md',
    `# Benchmark results

<!-- generated by \`npm run bench\` (bench/run.ts); do not edit above the end marker -->

Command: \`npm run bench\` (took ${minutes} min). Machine: ${m.cpus} × ${m.cpu}, ${m.memGiB} GiB, ${m.platform}, Node ${m.node}. Date: ${new Date().toISOString().slice(0, 10)}.
Numbers are ratios measured in one run; absolute ops/s drift between runs and machines. See bench/README.md for what each workload does.

## Targets (issue 5)

${table}

## In-process dispatch, create, lifecycle

${detail.join('\n')}

## Heap per pending callback (\`--expose-gc\`, \`process.memoryUsage().heapUsed\`)

${mem.join('\n')}

## Latency under a sustained mixed load

${lat.join('\n')}

<!-- end of generated -->${keep}`,
  );
  console.log('wrote bench/RESULTS.md and', OUT);
}
