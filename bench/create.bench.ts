/**
 * Create throughput: engine.create() beside raw createActor(machine).start()
 * and the floor (a plain record in a Map).
 *
 * Run: npx tsx bench/create.bench.ts [--time 1500]
 */
import { parseArgs } from 'node:util';
import { createActor } from 'xstate';
import { createCallbackEngine } from '../src/index.js';
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
let n = 0;

const plain = new Map<string, { status: string; data: Record<string, unknown> }>();
const floor = () => {
  for (let b = 0; b < BATCH; b++, n++)
    plain.set(`id${n}`, { status: 'create', data: { orderId: n } });
};
const actors = new Map<string, unknown>();
const raw = () => {
  for (let b = 0; b < BATCH; b++, n++) {
    actors.set(
      `id${n}`,
      createActor(lifecycleMachine, { input: { data: DataVersion.of({ orderId: n }) } }).start(),
    );
  }
};
const engine = createCallbackEngine({
  node: 'bench',
  secrets: ['bench-secret-0123456789'],
  timeout: false,
});
engine.anchor('job');
const ours = () => {
  const ps: Promise<unknown>[] = [];
  for (let b = 0; b < BATCH; b++, n++) ps.push(engine.create('job', { data: { orderId: n } }));
  return Promise.all(ps);
};

floor();
raw();
await ours();
check(plain.size === BATCH && actors.size === BATCH, 'floor and raw created');
check(engine.stats().active === BATCH, 'engine created');

const rows = await compare(
  'create',
  [
    { name: 'floor: Map.set(record)', batch: BATCH, fn: floor },
    { name: 'raw: createActor(machine).start()', batch: BATCH, fn: raw },
    { name: 'engine.create()', batch: BATCH, fn: ours },
  ],
  { timeMs: Number(values.time) },
);
printRows(rows);
console.log(
  `engine / raw createActor().start(): ${(rows[2]!.opsPerSec / rows[1]!.opsPerSec).toFixed(2)}×`,
);
writeResults(values.out, 'create', { rows });
await engine.close();
