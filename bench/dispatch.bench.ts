/**
 * In-process dispatch of `progress` reports to existing callbacks, beside
 * (a) the plain floor: Map.get + transition-table check + shallow merge, and
 * (b) raw XState: Map.get(id).send() on live actors of the same machine.
 *
 * Run: npx tsx bench/dispatch.bench.ts [--pending 1000] [--hot 0,10000] [--time 1500]
 * Each `--hot` value is one workload on the same callbacks: `K` sends every
 * report to a working set of K callbacks among the pending ones (the rest stay
 * idle); `0` spreads reports uniformly over all of them. `--alternatives engine`
 * measures the engine alone, so a million raw actors (~4 GB) do not slow its GC.
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
    hot: { type: 'string', default: '0' },
    time: { type: 'string', default: '1500' },
    out: { type: 'string', default: 'bench/results.json' },
    alternatives: { type: 'string', default: 'floor,raw,engine' },
  },
});
const ONLY = new Set(values.alternatives.split(','));
const N = Number(values.pending);
const HOTS = values.hot.split(',').map(Number);
const BATCH = 100;

// Indexes of the callbacks that receive reports, in a fixed pseudo-random order shared by all alternatives.
const PICKS = 1 << 20;
const picks = new Uint32Array(PICKS);
function pickFrom(hot: number): void {
  let seed = 12345;
  for (let i = 0; i < PICKS; i++) {
    // xorshift32: an LCG's low bits cycle too soon to spread over a million callbacks.
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    seed >>>= 0;
    const r = seed % (hot > 0 ? hot : N);
    picks[i] = hot > 0 ? Math.floor((r * N) / hot) : r;
  }
}

// The floor: what a hand-written store would do per report.
const TABLE: Record<string, Record<string, string>> = {
  create: { PROGRESS: 'progress' },
  accept: { PROGRESS: 'progress' },
  start: { PROGRESS: 'progress' },
  progress: { PROGRESS: 'progress' },
};
const ids = Array.from({ length: N }, (_, i) => `id${i}`);
const plain = new Map<string, { status: string; data: Record<string, unknown> }>();
for (let i = 0; i < N; i++) plain.set(ids[i]!, { status: 'create', data: { i } });

const actors = new Map<string, ReturnType<typeof createActor<typeof lifecycleMachine>>>();
for (let i = 0; i < (ONLY.has('raw') ? N : 0); i++) {
  actors.set(
    ids[i]!,
    createActor(lifecycleMachine, { input: { data: DataVersion.of({ i }) } }).start(),
  );
}

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
    const rec = plain.get(ids[picks[k++ & (PICKS - 1)]!]!)!;
    const to = TABLE[rec.status]?.PROGRESS;
    if (to) {
      rec.status = to;
      rec.data = { ...rec.data, pct: k };
    }
  }
};
const raw = () => {
  for (let b = 0; b < BATCH; b++) {
    actors.get(ids[picks[k++ & (PICKS - 1)]!]!)!.send({ type: 'PROGRESS', data: { pct: k } });
  }
};
const ours = () => {
  const ps: Promise<unknown>[] = [];
  for (let b = 0; b < BATCH; b++) {
    ps.push(
      engine.dispatch({
        type: 'CALLBACK',
        callbackToken: tokens[picks[k++ & (PICKS - 1)]!]!,
        callbackStatus: 'progress',
        callbackData: { pct: k },
      }),
    );
  }
  return Promise.all(ps);
};

// Warm-up: every callback gets one report before any timing, in all three alternatives, so the
// figures are steady state. (The engine then holds min(N, maxLiveActors) live actors; beyond that,
// reports to the rest reactivate an actor from its record, which is what the 1M uniform run measures.)
for (let i = 0; i < N; i += BATCH) {
  for (let j = i; j < Math.min(N, i + BATCH); j++) {
    plain.get(ids[j]!)!.status = 'progress';
    actors.get(ids[j]!)?.send({ type: 'PROGRESS', data: { pct: 0 } });
  }
  await Promise.all(
    tokens.slice(i, i + BATCH).map((callbackToken) =>
      engine.dispatch({
        type: 'CALLBACK',
        callbackToken,
        callbackStatus: 'progress',
        callbackData: { pct: 0 },
      }),
    ),
  );
}

for (const HOT of HOTS) {
  pickFrom(HOT);
  // Correctness before timing.
  k = 0;
  floor();
  k = 0;
  if (ONLY.has('raw')) raw();
  k = 0;
  await ours();
  const probe = picks[0]!;
  check(plain.get(ids[probe]!)!.status === 'progress', 'floor moved to progress');
  check(
    !ONLY.has('raw') ||
      JSON.stringify(actors.get(ids[probe]!)!.getSnapshot().value) === '{"active":"progress"}',
    'raw actor moved',
  );
  const answer = await engine.get(tokens[probe]!);
  check(
    answer.status === 'progress' && typeof answer.data.pct === 'number',
    'engine applied the report',
  );

  const before = engine.stats();
  const label = `dispatch progress, ${N.toLocaleString('en-US')} pending${HOT > 0 ? `, ${HOT.toLocaleString('en-US')} hot` : ', uniform'}`;
  const alternatives = [
    { name: 'floor: Map + table + merge', batch: BATCH, fn: floor },
    { name: 'raw: Map.get(id).send()', batch: BATCH, fn: raw },
    { name: 'engine.dispatch()', batch: BATCH, fn: ours },
  ].filter((a) => ONLY.has(a.name.split(/[:.]/)[0]!));
  const rows = await compare(label, alternatives, { timeMs: Number(values.time) });
  printRows(rows);
  const stats = engine.stats();
  const activations = stats.activations - before.activations;
  console.log(
    `engine / raw send: ${ONLY.has('raw') ? (rows.at(-1)!.opsPerSec / rows.find((r) => r.name.startsWith('raw'))!.opsPerSec).toFixed(2) : '–'}×  (live actors ${stats.liveActors.toLocaleString('en-US')}, actors activated while timing ${activations.toLocaleString('en-US')})\n`,
  );
  const only = ONLY.size === 3 ? '' : `-${[...ONLY].join('-')}`;
  writeResults(values.out, `dispatch-${N}${HOT > 0 ? `-hot${HOT}` : ''}${only}`, {
    rows,
    liveActors: stats.liveActors,
    activations,
  });
}
await engine.close();
