/**
 * Profiling driver for the PostgreSQL paths (not part of the suite):
 * `node --import tsx bench/profile-postgres.ts [--pending 10240] [--reports 200000]
 *  [--in-flight 256] [--forward] [--profile FILE]`.
 *
 * Local owner (the default): one engine holds every shard of a fresh schema, creates the
 * callbacks, then sends `progress` reports `--in-flight` at a time, uniform over them (workload 1
 * of bench/cluster.bench.ts).
 *
 * `--forward`: two engines in this process, `a` and `b`, each holding half the shards (NATS
 * between them, as replicas); the callbacks are created on `a` and every report is sent to `b`,
 * which forwards it to `a` (workload 2 of bench/cluster.bench.ts; checked with
 * `stats().cluster.forwarded`). Both engines' work is in this process's CPU and profile.
 *
 * It prints the rate, this process's CPU per report, the event loop's utilization (the share of
 * wall time the thread ran JavaScript, not waiting), the reports per commit and the CPU of the
 * machine's `postgres` (and with `--forward`, `nats-server`) processes per report; `--profile
 * FILE` writes a CPU profile of the dispatch phase alone. Needs PostgreSQL (`BENCH_PG_URL`,
 * default the local `test` database) and, with `--forward`, NATS (`BENCH_NATS_URL`).
 */
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { createCallbackEngine, type CallbackEngine } from '../src/index.js';
import { dropSchema, postgresStore } from '../test/helpers/postgres.js';
import { createMany, dispatchUniform, processCpu, splitShards } from './lib.js';

/** CPU time (ms) of every process with this command name (this machine's only). */
const cpuMsOf = (comm: string) => {
  let ms = 0;
  for (const p of processCpu().values()) if (p.comm === comm) ms += p.ms;
  return ms;
};

const { values } = parseArgs({
  options: {
    pending: { type: 'string', default: '10240' },
    reports: { type: 'string', default: '200000' },
    'in-flight': { type: 'string', default: '256' },
    /** Reports go to a second engine, which forwards each to its owner. */
    forward: { type: 'boolean', default: false },
    /** Write a CPU profile of the dispatch phase alone to this file. */
    profile: { type: 'string' },
  },
});
const N = Number(values.pending);
const TOTAL = Number(values.reports);
const IN_FLIGHT = Number(values['in-flight']);
const FORWARD = values.forward;
const PG_URL = process.env.BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const NATS_URL = process.env.BENCH_NATS_URL ?? 'nats://127.0.0.1:4222';
const schema = `cbe_profile_${process.pid}`;
const SHARDS = 64;
const engineFor = (node: string) =>
  createCallbackEngine({
    node,
    secrets: ['profile-secret-0123456'],
    timeout: false,
    retention: true,
    store: postgresStore({
      connectionString: PG_URL,
      schema,
      shards: SHARDS,
      leaseTtl: 10_000,
      renewInterval: 3_000,
      ...(FORWARD ? { forwardTimeout: 5_000, nats: { servers: NATS_URL } } : {}),
    }),
  });
const owner = engineFor('a');
let entry: CallbackEngine = owner;
try {
  owner.anchor('job');
  await owner.ready();
  if (FORWARD) {
    entry = engineFor('b');
    entry.anchor('job');
    await entry.ready();
    const half = SHARDS / 2;
    const [sa, sb] = await splitShards(owner, entry, half, 60_000);
    if (sa !== half || sb !== half) throw new Error(`shards not split: a ${sa}, b ${sb}`);
  }
  const tokens = await createMany(owner, N, 500);
  const session = values.profile !== undefined ? new Session() : undefined;
  if (session) {
    session.connect();
    await session.post('Profiler.enable');
    await session.post('Profiler.start');
  }
  const before = owner.stats();
  const forwarded0 = entry.stats().cluster?.forwarded ?? 0;
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  const elu0 = performance.eventLoopUtilization();
  const pg0 = cpuMsOf('postgres');
  const nats0 = cpuMsOf('nats-server');
  await dispatchUniform(entry, tokens, TOTAL, IN_FLIGHT);
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(c0);
  const elu = performance.eventLoopUtilization(elu0);
  const pgMs = cpuMsOf('postgres') - pg0;
  const natsMs = cpuMsOf('nats-server') - nats0;
  const after = owner.stats();
  const forwarded = (entry.stats().cluster?.forwarded ?? 0) - forwarded0;
  if (session) {
    const { profile } = await session.post('Profiler.stop');
    writeFileSync(values.profile!, JSON.stringify(profile));
    session.disconnect();
  }
  if (FORWARD && forwarded < TOTAL)
    throw new Error(`only ${forwarded} of ${TOTAL} reports were forwarded`);
  const commits = after.commits - before.commits;
  const perReport = (ms: number) => ((ms * 1000) / TOTAL).toFixed(1);
  console.log(
    `postgres ${FORWARD ? 'forwarded report (to b, owner a)' : 'local owner'}: ${TOTAL.toLocaleString('en-US')} reports, ${IN_FLIGHT} in flight, ${N.toLocaleString('en-US')} pending: ` +
      `${Math.round(TOTAL / seconds).toLocaleString('en-US')}/s, ${((cpu.user + cpu.system) / TOTAL).toFixed(1)} µs CPU each, ` +
      `event loop busy ${(elu.utilization * 100).toFixed(0)} % of wall time, ${commits > 0 ? (TOTAL / commits).toFixed(1) : '?'} reports per commit, ` +
      `PostgreSQL's processes ${perReport(pgMs)} µs CPU per report` +
      (FORWARD ? `, nats-server ${perReport(natsMs)} µs; ${forwarded} forwarded` : '') +
      `; the owner re-activated ${(after.activations - before.activations).toLocaleString('en-US')} callbacks (${after.liveActors.toLocaleString('en-US')} live actors at the end)`,
  );
} finally {
  if (entry !== owner) await entry.close();
  await owner.close();
  await dropSchema(PG_URL, schema);
}
