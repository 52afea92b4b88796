/**
 * Heap bytes per pending callback, measured with --expose-gc and
 * process.memoryUsage().heapUsed around creating N of them. One kind per
 * process, so kinds do not share a heap:
 *   floor      a plain record { id, status, data } in a Map
 *   raw        a live started XState actor of the same machine in a Map
 *   passivated engine callbacks that are pending and idle (record, no actor)
 *   live       engine callbacks with a live actor (one report each)
 *
 * Run: node --expose-gc --max-old-space-size=14000 --import tsx bench/memory.bench.ts --kind passivated --n 100000
 */
import { parseArgs } from 'node:util';
import { createActor } from 'xstate';
import { createCallbackEngine } from '../src/index.js';
import { DataVersion } from '../src/data.js';
import { lifecycleMachine } from '../src/lifecycle/machine.js';
import { check, writeResults } from './lib.js';

const { values } = parseArgs({
  options: {
    kind: { type: 'string', default: 'passivated' },
    n: { type: 'string', default: '100000' },
    out: { type: 'string', default: 'bench/results.json' },
  },
});
const N = Number(values.n);
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with node --expose-gc');
const settle = () => {
  for (let i = 0; i < 3; i++) gc();
  return process.memoryUsage().heapUsed;
};

const keep: unknown[] = [];
let before = 0;
let after = 0;
const kind = values.kind;
if (kind === 'floor') {
  before = settle();
  const m = new Map<string, { id: string; status: string; data: Record<string, unknown> }>();
  for (let i = 0; i < N; i++)
    m.set(`id-${i}`, { id: `id-${i}`, status: 'create', data: { orderId: i } });
  after = settle();
  keep.push(m);
} else if (kind === 'raw') {
  before = settle();
  const m = new Map<string, unknown>();
  for (let i = 0; i < N; i++) {
    m.set(
      `id-${i}`,
      createActor(lifecycleMachine, { input: { data: DataVersion.of({ orderId: i }) } }).start(),
    );
  }
  after = settle();
  keep.push(m);
} else if (kind === 'passivated' || kind === 'live') {
  const engine = createCallbackEngine({
    node: 'bench',
    secrets: ['bench-secret-0123456789'],
    timeout: 'P1D',
    maxLiveActors: kind === 'live' ? N : 1000,
  });
  engine.anchor('job');
  // Warm the engine's own structures so their fixed cost is not counted per callback.
  await engine.create('job');
  before = settle();
  const tokens: string[] = [];
  for (let i = 0; i < N; i += 1000) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(1000, N - i) }, (_, j) =>
        engine.create('job', { data: { orderId: i + j } }),
      ),
    );
    for (const cb of batch) tokens.push(cb.token);
  }
  for (let i = 0; i < N; i += 1000) {
    await Promise.all(
      tokens
        .slice(i, i + 1000)
        .map((callbackToken) =>
          engine.dispatch({ type: 'CALLBACK', callbackToken, callbackStatus: 'accept' }),
        ),
    );
  }
  const stats = engine.stats();
  check(stats.active === N + 1, 'every callback is pending');
  check(
    kind === 'live' ? stats.liveActors === N : stats.liveActors <= 1000,
    'live actor count as configured',
  );
  // The tokens array is the caller's, not the engine's: drop it before measuring.
  tokens.length = 0;
  after = settle();
  keep.push(engine);
} else {
  throw new Error(`unknown --kind ${kind}`);
}

const perCallback = (after - before) / N;
console.log(`${kind}: ${N.toLocaleString('en-US')} pending, ${Math.round(perCallback)} bytes each`);
writeResults(values.out, `memory-${kind}-${N}`, {
  kind,
  n: N,
  bytesPerCallback: Math.round(perCallback),
});
