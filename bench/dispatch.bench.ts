/**
 * In-process dispatch of `progress` reports to existing callbacks, beside
 * (a) the plain floor: Map.get + transition-table check + shallow merge, and
 * (b) raw XState: Map.get(id).send() on live actors of the same machine.
 *
 * Run: npx tsx bench/dispatch.bench.ts [--pending 1000] [--time 1500]
 */
import { parseArgs } from 'node:util';
import { createActor } from 'xstate';
import { createCallbackEngine } from '../src/index.js';
import { DataVersion } from '../src/data.js';
import { lifecycleMachine } from '../src/lifecycle/machine.js';
import { check, compare, printRows, writeResults } from './lib.js';

const { values } = parseArgs({
  options: {
    pending: { type: 'string', default: '1000' },
    time: { type: 'string', default: '1500' },
  },
});
const N = Number(values.pending);
const BATCH = 100;

// The floor: what a hand-written store would do per report.
const TABLE: Record<string, Record<string, string>> = {
  create: { PROGRESS: 'progress' },
  accept: { PROGRESS: 'progress' },
  start: { PROGRESS: 'progress' },
  progress: { PROGRESS: 'progress' },
};
const plain = new Map<string, { status: string; data: Record<string, unknown> }>();
for (let i = 0; i < N; i++) plain.set(`id${i}`, { status: 'create', data: { i } });
const plainIds = [...plain.keys()];

const actors = new Map<string, ReturnType<typeof createActor<typeof lifecycleMachine>>>();
for (let i = 0; i < N; i++)
  actors.set(
    `id${i}`,
    createActor(lifecycleMachine, { input: { data: DataVersion.of({ i }) } }).start(),
  );
const actorIds = [...actors.keys()];

const engine = createCallbackEngine({
  node: 'bench',
  secrets: ['bench-secret-0123456789'],
  timeout: false,
  retention: true,
});
engine.anchor('job');
const tokens: string[] = [];
for (let i = 0; i < N; i++) tokens.push((await engine.create('job', { data: { i } })).token);

let k = 0;
const floor = () => {
  for (let b = 0; b < BATCH; b++) {
    const rec = plain.get(plainIds[k++ % N]!)!;
    const to = TABLE[rec.status]?.PROGRESS;
    if (to) {
      rec.status = to;
      rec.data = { ...rec.data, pct: k };
    }
  }
};
const raw = () => {
  for (let b = 0; b < BATCH; b++)
    actors.get(actorIds[k++ % N]!)!.send({ type: 'PROGRESS', data: { pct: k } });
};
const ours = () => {
  const ps: Promise<unknown>[] = [];
  for (let b = 0; b < BATCH; b++) {
    ps.push(
      engine.dispatch({
        type: 'CALLBACK',
        callbackToken: tokens[k++ % N]!,
        callbackStatus: 'progress',
        callbackData: { pct: k },
      }),
    );
  }
  return Promise.all(ps);
};

// Correctness before timing.
floor();
raw();
await ours();
check(plain.get(plainIds[0]!)!.status === 'progress', 'floor moved to progress');
check(
  JSON.stringify(actors.get(actorIds[BATCH + 1]!)!.getSnapshot().value) === '{"active":"progress"}',
  'raw actor moved',
);
const probe = await engine.get(tokens[BATCH * 2]!);
check(
  probe.status === 'progress' && typeof probe.data.pct === 'number',
  'engine applied the report',
);

const rows = await compare(
  `dispatch progress, ${N.toLocaleString('en-US')} pending`,
  [
    { name: 'floor: Map + table + merge', batch: BATCH, fn: floor },
    { name: 'raw: Map.get(id).send()', batch: BATCH, fn: raw },
    { name: 'engine.dispatch()', batch: BATCH, fn: ours },
  ],
  { timeMs: Number(values.time) },
);
printRows(rows);
const rawRow = rows.find((r) => r.name.startsWith('raw'))!;
const ourRow = rows.find((r) => r.name.startsWith('engine'))!;
console.log(`\nengine / raw send: ${(ourRow.opsPerSec / rawRow.opsPerSec).toFixed(2)}×`);
writeResults('bench/results.json', `dispatch-${N}`, rows);
await engine.close();
