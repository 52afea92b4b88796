/**
 * One run, two versions of the engine: the hot paths of a checkout of an earlier commit beside
 * this tree's, with the plain floor and raw XState as references, so a restructuring can show it
 * cost nothing (ratios in one process, one run; absolute figures drift).
 *
 * Run:
 *   git worktree add /tmp/cbe-before <commit> && ln -s "$PWD/node_modules" /tmp/cbe-before/
 *   npx tsx bench/before-after.ts --before /tmp/cbe-before [--pending 1000,100000] [--time 1500]
 *   npx tsx bench/before-after.ts --before /tmp/cbe-before --processes 6
 *
 * In one process the version measured first is favoured: both load the same XState, whose
 * inline caches settle on the first version's machine and objects (swap the order and the
 * "drop" moves to the other side). `--processes N` therefore runs each version alone in its own
 * process, N times each, alternating, and compares the medians of each one's ratio to the floor
 * measured in the same process.
 */
import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { createActor } from 'xstate';
import type { CallbackEngine } from '../src/index.js';
import { createCallbackEngine } from '../src/index.js';
import { DataVersion } from '../src/data.js';
import { lifecycleMachine } from '../src/lifecycle/machine.js';
import { check, compare, printRows, type Row } from './lib.js';

const { values } = parseArgs({
  options: {
    before: { type: 'string' },
    pending: { type: 'string', default: '1000,100000' },
    time: { type: 'string', default: '1500' },
    'after-first': { type: 'boolean', default: false },
    processes: { type: 'string' },
    only: { type: 'string' },
  },
});
if (values.processes !== undefined) {
  await orchestrate(Number(values.processes));
  process.exit(0);
}
if (!values.before) throw new Error('--before <checkout of the earlier commit> is required');
const TIME = Number(values.time);
/** Per row of a child run: operations per second of this process's CPU time (user + system). */
const cpuOps = new Map<Row, number>();
const BATCH = 100;
type Factory = (options: Record<string, unknown>) => CallbackEngine;
const before = (await import(pathToFileURL(resolve(values.before, 'src/index.ts')).href)) as {
  createCallbackEngine: Factory;
};
const versions = (
  [
    ['engine before', before.createCallbackEngine],
    ['engine after', createCallbackEngine],
  ] as [string, Factory][]
).filter(([name]) => values.only === undefined || name === `engine ${values.only}`);

function engineOf(factory: Factory): CallbackEngine {
  const engine = factory({
    node: 'bench',
    secrets: ['bench-secret-0123456789'],
    timeout: false,
    retention: true,
  });
  engine.anchor('job');
  return engine;
}

const rows: Row[] = [];
const TABLE: Record<string, string | undefined> = { create: 'progress', progress: 'progress' };

for (const N of values.pending.split(',').map(Number)) {
  // A fixed pseudo-random order of callbacks shared by every alternative.
  const picks = new Uint32Array(1 << 20);
  let seed = 12345;
  for (let i = 0; i < picks.length; i++) {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    seed >>>= 0;
    picks[i] = seed % N;
  }
  const mask = picks.length - 1;
  const plain = new Map<number, { status: string; data: Record<string, unknown> }>();
  const actors = new Map<number, ReturnType<typeof createActor<typeof lifecycleMachine>>>();
  for (let i = 0; i < N; i++) {
    plain.set(i, { status: 'create', data: { i } });
    actors.set(
      i,
      createActor(lifecycleMachine, { input: { data: DataVersion.of({ i }) } }).start(),
    );
  }
  const engines = versions.map(([name, factory]) => ({
    name,
    engine: engineOf(factory),
    tokens: [] as string[],
  }));
  for (const e of engines)
    for (let i = 0; i < N; i++)
      e.tokens.push((await e.engine.create('job', { data: { i } })).token);
  let k = 0;
  const alternatives = [
    {
      name: 'floor: Map + table + merge',
      batch: BATCH,
      fn: () => {
        for (let b = 0; b < BATCH; b++) {
          const rec = plain.get(picks[k++ & mask]!)!;
          const to = TABLE[rec.status];
          if (to) {
            rec.status = to;
            rec.data = { ...rec.data, pct: k };
          }
        }
      },
    },
    {
      name: 'raw: Map.get(id).send()',
      batch: BATCH,
      fn: () => {
        for (let b = 0; b < BATCH; b++)
          actors.get(picks[k++ & mask]!)!.send({ type: 'PROGRESS', data: { pct: k } });
      },
    },
    ...engines.map((e) => ({
      name: e.name,
      batch: BATCH,
      fn: () => {
        const ps: Promise<unknown>[] = [];
        for (let b = 0; b < BATCH; b++)
          ps.push(
            e.engine.dispatch({
              type: 'CALLBACK',
              callbackToken: e.tokens[picks[k++ & mask]!]!,
              callbackStatus: 'progress',
              callbackData: { pct: k },
            }),
          );
        return Promise.all(ps);
      },
    })),
  ];
  for (const alt of alternatives) await Promise.resolve(alt.fn()); // warm every path once
  for (const e of engines) {
    const a = await e.engine.dispatch({
      type: 'CALLBACK',
      callbackToken: e.tokens[0]!,
      callbackStatus: 'progress',
      callbackData: { pct: 1 },
    });
    check(a.status === 'progress', `${e.name} moved to progress`);
  }
  rows.push(
    ...(await measure(`dispatch progress, ${N.toLocaleString('en-US')} pending`, alternatives)),
  );
  for (const e of engines) await e.engine.close();
}

// create: a fresh engine per version, callbacks created in batches.
{
  const plain = new Map<number, { status: string; data: Record<string, unknown> }>();
  let n = 0;
  const engines = versions.map(([name, factory]) => ({ name, engine: engineOf(factory) }));
  rows.push(
    ...(await measure('create', [
      {
        name: 'floor: Map.set(record)',
        batch: BATCH,
        fn: () => {
          for (let b = 0; b < BATCH; b++) plain.set(n++, { status: 'create', data: { i: n } });
        },
      },
      {
        name: 'raw: createActor(machine).start()',
        batch: BATCH,
        fn: () => {
          for (let b = 0; b < BATCH; b++)
            createActor(lifecycleMachine, { input: { data: DataVersion.of({ i: b }) } })
              .start()
              .stop();
        },
      },
      ...engines.map((e) => ({
        name: e.name,
        batch: BATCH,
        fn: () =>
          Promise.all(
            Array.from({ length: BATCH }, (_, i) => e.engine.create('job', { data: { i } })),
          ),
      })),
    ])),
  );
  for (const e of engines) await e.engine.close();
}

if (values.only !== undefined) {
  console.log(
    `ROWS ${JSON.stringify(rows.map((r) => ({ group: r.group, name: r.name, ops: r.opsPerSec, cpuOps: cpuOps.get(r) })))}`,
  );
  process.exit(0);
}
printRows(rows);
const pick = (group: string, name: string) =>
  rows.find((r) => r.group === group && r.name === name)!;
console.log('\nafter / before, same run:');
for (const group of new Set(rows.map((r) => r.group)))
  console.log(
    `  ${group}: ${(pick(group, 'engine after').opsPerSec / pick(group, 'engine before').opsPerSec).toFixed(2)}×` +
      ` (ratio to floor: before ${pick(group, 'engine before').ratio.toFixed(3)}, after ${pick(group, 'engine after').ratio.toFixed(3)})`,
  );

/**
 * tinybench's comparison; in a child run (`--only`) each alternative is also timed by the
 * process's CPU time, which a busy machine disturbs less than wall time.
 */
async function measure(
  group: string,
  alternatives: { name: string; batch: number; fn: () => unknown }[],
): Promise<Row[]> {
  if (values.only === undefined) return compare(group, alternatives, { timeMs: TIME });
  const out: Row[] = [];
  for (const alt of alternatives) {
    const run = async (ms: number) => {
      let batches = 0;
      const cpu = process.cpuUsage();
      const t0 = performance.now();
      while (performance.now() - t0 < ms) {
        await alt.fn();
        batches++;
      }
      const wall = (performance.now() - t0) / 1000;
      const used = process.cpuUsage(cpu);
      return { ops: batches * alt.batch, wall, cpu: (used.user + used.system) / 1e6 };
    };
    await run(300);
    const r = await run(TIME);
    const row: Row = {
      group,
      name: alt.name,
      opsPerSec: r.ops / r.wall,
      ratio: 1,
      reference: '',
      rme: 0,
      samples: 0,
    };
    cpuOps.set(row, r.ops / r.cpu);
    out.push(row);
  }
  return out;
}

/**
 * Runs each version alone, `n` times each, alternating which goes first, and prints the medians
 * of ops/s and of each engine's ratio to the floor measured in its own process.
 */
async function orchestrate(n: number): Promise<void> {
  type Sample = { group: string; name: string; ops: number; cpuOps: number };
  const runs: { version: string; rows: Sample[] }[] = [];
  const pass = ['--before', values.before!, '--pending', values.pending, '--time', values.time];
  for (let i = 0; i < n; i++) {
    for (const version of i % 2 === 0 ? ['before', 'after'] : ['after', 'before']) {
      const child = spawnSync(
        process.execPath,
        ['--import', 'tsx', process.argv[1]!, ...pass, '--only', version],
        { encoding: 'utf8', maxBuffer: 1 << 26 },
      );
      const line = child.stdout.split('\n').find((l) => l.startsWith('ROWS '));
      if (child.status !== 0 || line === undefined)
        throw new Error(`the ${version} run failed:\n${child.stderr}`);
      runs.push({ version, rows: JSON.parse(line.slice(5)) as Sample[] });
      process.stderr.write('.');
    }
  }
  process.stderr.write('\n');
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
  const groups = [...new Set(runs[0]!.rows.map((r) => r.group))];
  console.log(
    `${n} processes per version, alternating; medians. Wall: ops per second; CPU: ops per second of the process's CPU time. Noise: the spread (max / min) of the engine's CPU figure over its ${n} runs.\n`,
  );
  console.log(
    '| workload | floor ops/s | before, wall | after, wall | after / before | before, CPU | after, CPU | after / before | noise before | noise after |',
  );
  console.log('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const group of groups) {
    const of = (version: string, name: string, key: 'ops' | 'cpuOps') =>
      runs
        .filter((r) => r.version === version)
        .map((r) => r.rows.find((x) => x.group === group && x.name === name)![key]);
    const floorName = group === 'create' ? 'floor: Map.set(record)' : 'floor: Map + table + merge';
    const floor = median([...of('before', floorName, 'ops'), ...of('after', floorName, 'ops')]);
    const [bw, aw] = [
      median(of('before', 'engine before', 'ops')),
      median(of('after', 'engine after', 'ops')),
    ];
    const bc = of('before', 'engine before', 'cpuOps');
    const ac = of('after', 'engine after', 'cpuOps');
    const spread = (xs: number[]) => `${(Math.max(...xs) / Math.min(...xs)).toFixed(2)}×`;
    const fmt = (x: number) => Math.round(x).toLocaleString('en-US');
    console.log(
      `| ${group} | ${fmt(floor)} | ${fmt(bw)} | ${fmt(aw)} | ${(aw / bw).toFixed(2)}× | ${fmt(median(bc))} | ${fmt(median(ac))} | ${(median(ac) / median(bc)).toFixed(2)}× | ${spread(bc)} | ${spread(ac)} |`,
    );
  }
}
