/**
 * A full lifecycle per callback: create, accept, start, 3× progress, complete.
 * Beside the floor (plain record + table + merge) and raw XState (createActor,
 * start, six sends). 100 lifecycles run concurrently per iteration.
 *
 * Run: npx tsx bench/lifecycle.bench.ts [--time 1500]
 */
import { parseArgs } from 'node:util';
import { createActor } from 'xstate';
import { createCallbackEngine, type CallbackData, type DispatchStatus } from '../src/index.js';
import { DataVersion } from '../src/data.js';
import { lifecycleMachine } from '../src/lifecycle/machine.js';
import { check, compare, printRows, writeResults } from './lib.js';

const { values } = parseArgs({
  options: {
    time: { type: 'string', default: '1500' },
    out: { type: 'string', default: 'bench/results.json' },
  },
});
const BATCH = 100;
const REPORTS: [DispatchStatus, CallbackData][] = [
  ['accept', {}],
  ['start', {}],
  ['progress', { pct: 30 }],
  ['progress', { pct: 60 }],
  ['progress', { pct: 90 }],
  ['complete', { result: 'ok' }],
];
const EVENT = {
  accept: 'ACCEPT',
  start: 'START',
  progress: 'PROGRESS',
  complete: 'COMPLETE',
} as const;
const ORDER: Record<string, number> = { create: 0, accept: 1, start: 2, progress: 3, complete: 4 };

let n = 0;
let floorDone = 0;
const floor = () => {
  const plain = new Map<string, { status: string; data: Record<string, unknown> }>();
  for (let b = 0; b < BATCH; b++, n++) {
    const id = `id${n}`;
    plain.set(id, { status: 'create', data: { orderId: n } });
    for (const [status, data] of REPORTS) {
      const rec = plain.get(id)!;
      if (ORDER[status]! > ORDER[rec.status]! || status === 'progress') {
        rec.status = status;
        rec.data = { ...rec.data, ...data };
      }
    }
    if (plain.get(id)!.status === 'complete') floorDone++;
    plain.delete(id);
  }
};
let rawDone = 0;
const raw = () => {
  for (let b = 0; b < BATCH; b++, n++) {
    const actor = createActor(lifecycleMachine, {
      input: { data: DataVersion.of({ orderId: n }) },
    }).start();
    for (const [status, data] of REPORTS)
      actor.send({ type: EVENT[status as keyof typeof EVENT], data });
    if (actor.getSnapshot().value === 'complete') rawDone++;
  }
};
const engine = createCallbackEngine({
  node: 'bench',
  secrets: ['bench-secret-0123456789'],
  timeout: false,
  retention: 'PT0S',
});
engine.anchor('job');
let oursDone = 0;
const one = async (i: number) => {
  const cb = await engine.create('job', { data: { orderId: i } });
  let last;
  for (const [callbackStatus, callbackData] of REPORTS) {
    last = await engine.dispatch({
      type: 'CALLBACK',
      callbackToken: cb.token,
      callbackStatus,
      callbackData,
    });
  }
  if (last?.status === 'complete') oursDone++;
};
const ours = () => {
  const ps: Promise<void>[] = [];
  for (let b = 0; b < BATCH; b++, n++) ps.push(one(n));
  return Promise.all(ps);
};

floor();
raw();
await ours();
check(floorDone === BATCH && rawDone === BATCH && oursDone === BATCH, 'every lifecycle completed');

const rows = await compare(
  'full lifecycle (create + 6 reports)',
  [
    { name: 'floor: Map + table + merge', batch: BATCH, fn: floor },
    { name: 'raw: createActor + 6 send()', batch: BATCH, fn: raw },
    { name: 'engine: create + 6 dispatch()', batch: BATCH, fn: ours },
  ],
  { timeMs: Number(values.time) },
);
printRows(rows);
console.log(
  `engine / raw: ${(rows[2]!.opsPerSec / rows[1]!.opsPerSec).toFixed(2)}× (lifecycles/s)`,
);
check(engine.stats().active === 0, 'no callback left active');
writeResults(values.out, 'lifecycle', { rows });
await engine.close();
