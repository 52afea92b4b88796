/**
 * Dispatch latency (p50/p99) under a sustained mixed load: concurrent
 * producers keep reporting progress to random pending callbacks, while others
 * create new callbacks and complete old ones. Beside the floor: the same load
 * on a plain Map store behind an async function.
 *
 * Run: npx tsx bench/latency.bench.ts [--seconds 4] [--producers 64] [--pending 10000]
 */
import { parseArgs } from 'node:util';
import { createCallbackEngine } from '../src/index.js';
import { check, writeResults } from './lib.js';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '4' },
    producers: { type: 'string', default: '64' },
    pending: { type: 'string', default: '10000' },
    out: { type: 'string', default: 'bench/results.json' },
  },
});
const SECONDS = Number(values.seconds);
const PRODUCERS = Number(values.producers);
const PENDING = Number(values.pending);

interface Target {
  create(i: number): Promise<string>;
  report(
    token: string,
    status: 'progress' | 'complete',
    data: Record<string, unknown>,
  ): Promise<unknown>;
  close(): Promise<void>;
}

function floorTarget(): Target {
  const m = new Map<string, { status: string; data: Record<string, unknown> }>();
  let n = 0;
  return {
    create: async (i) => {
      const id = `id${n++}`;
      m.set(id, { status: 'create', data: { i } });
      return id;
    },
    report: async (id, status, data) => {
      const rec = m.get(id);
      if (!rec || rec.status === 'complete') return { status: rec?.status ?? 'notFound' };
      rec.status = status;
      rec.data = { ...rec.data, ...data };
      if (status === 'complete') m.delete(id);
      return { status };
    },
    close: async () => {},
  };
}

function engineTarget(): Target {
  const engine = createCallbackEngine({
    node: 'bench',
    secrets: ['bench-secret-0123456789'],
    retention: 'PT1M',
  });
  engine.anchor('job', { next: { progress: (cb) => ({ last: cb.report.pct }) } });
  return {
    create: async (i) => (await engine.create('job', { data: { i } })).token,
    report: (callbackToken, callbackStatus, callbackData) =>
      engine.dispatch({ type: 'CALLBACK', callbackToken, callbackStatus, callbackData }),
    close: () => engine.close(),
  };
}

function percentile(sorted: Float64Array, p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function run(name: string, target: Target) {
  const tokens: string[] = [];
  for (let i = 0; i < PENDING; i++) tokens.push(await target.create(i));
  // Warm up: every callback has had a first report (its actor is live), so this measures a steady load.
  for (const token of tokens) await target.report(token, 'progress', { pct: 0 });
  const samples: number[] = [];
  let created = PENDING;
  let seed = 7;
  const rand = (n: number) => {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    seed >>>= 0;
    return seed % n;
  };
  const deadline = performance.now() + SECONDS * 1000;
  const producer = async () => {
    while (performance.now() < deadline) {
      const r = rand(100);
      const slot = rand(tokens.length);
      const t0 = performance.now();
      if (r < 90) {
        await target.report(tokens[slot]!, 'progress', { pct: r });
      } else {
        // Complete one and replace it with a fresh callback: the pending count stays steady.
        await target.report(tokens[slot]!, 'complete', { ok: true });
        tokens[slot] = await target.create(created++);
      }
      samples.push(performance.now() - t0);
    }
  };
  const started = performance.now();
  await Promise.all(Array.from({ length: PRODUCERS }, producer));
  const elapsed = (performance.now() - started) / 1000;
  await target.close();
  const sorted = Float64Array.from(samples).sort();
  return {
    name,
    operations: samples.length,
    opsPerSec: Math.round(samples.length / elapsed),
    p50ms: percentile(sorted, 50),
    p99ms: percentile(sorted, 99),
    p999ms: percentile(sorted, 99.9),
  };
}

const floor = await run('floor: Map behind async fn', floorTarget());
const ours = await run('engine.dispatch()', engineTarget());
check(floor.operations > 0 && ours.operations > 0, 'both loads ran');
console.log(
  `sustained mixed load: ${PRODUCERS} producers, ${PENDING.toLocaleString('en-US')} pending, ${SECONDS}s each`,
);
console.log('| alternative | ops/s | p50 ms | p99 ms | p99.9 ms | p99 / p50 |');
console.log('|---|---:|---:|---:|---:|---:|');
for (const r of [floor, ours]) {
  console.log(
    `| ${r.name} | ${r.opsPerSec.toLocaleString('en-US')} | ${r.p50ms.toFixed(3)} | ${r.p99ms.toFixed(3)} | ${r.p999ms.toFixed(3)} | ${(r.p99ms / r.p50ms).toFixed(1)} |`,
  );
}
writeResults(values.out, 'latency', {
  producers: PRODUCERS,
  pending: PENDING,
  seconds: SECONDS,
  rows: [floor, ours],
});
