/**
 * Profiling driver for the PostgreSQL local-owner path (not part of the suite):
 * `node --import tsx bench/profile-postgres.ts [--pending 10240] [--reports 200000]
 *  [--in-flight 256]`. One engine holds every shard of a fresh schema, creates the callbacks, then
 * sends `progress` reports `--in-flight` at a time, uniform over them (workload 1 of
 * bench/cluster.bench.ts). It prints the rate, this process's CPU per report, the event loop's
 * utilization (the share of wall time the thread ran JavaScript, not waiting on PostgreSQL), the
 * reports per commit and the CPU of the machine's `postgres` processes per report; `--profile FILE` writes a CPU profile of the dispatch phase alone. Needs PostgreSQL (`BENCH_PG_URL`, default the local `test` database).
 */
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { createCallbackEngine } from '../src/index.js';
import { dropSchema, postgresStore } from '../test/helpers/postgres.js';
import { createMany, dispatchUniform, processCpu } from './lib.js';

/** CPU time (ms) of every `postgres` process (the server, its backends: this machine's only). */
const postgresMs = () => {
  let ms = 0;
  for (const p of processCpu().values()) if (p.comm === 'postgres') ms += p.ms;
  return ms;
};

const { values } = parseArgs({
  options: {
    pending: { type: 'string', default: '10240' },
    reports: { type: 'string', default: '200000' },
    'in-flight': { type: 'string', default: '256' },
    /** Write a CPU profile of the dispatch phase alone to this file. */
    profile: { type: 'string' },
  },
});
const N = Number(values.pending);
const TOTAL = Number(values.reports);
const IN_FLIGHT = Number(values['in-flight']);
const PG_URL = process.env.BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const schema = `cbe_profile_${process.pid}`;
const engine = createCallbackEngine({
  node: 'profile',
  secrets: ['profile-secret-0123456'],
  timeout: false,
  retention: true,
  store: postgresStore({
    connectionString: PG_URL,
    schema,
    leaseTtl: 10_000,
    renewInterval: 3_000,
  }),
});
try {
  engine.anchor('job');
  await engine.ready();
  const tokens = await createMany(engine, N, 500);
  const session = values.profile !== undefined ? new Session() : undefined;
  if (session) {
    session.connect();
    await session.post('Profiler.enable');
    await session.post('Profiler.start');
  }
  const before = engine.stats();
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  const elu0 = performance.eventLoopUtilization();
  const pg0 = postgresMs();
  await dispatchUniform(engine, tokens, TOTAL, IN_FLIGHT);
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(c0);
  const elu = performance.eventLoopUtilization(elu0);
  const pgMs = postgresMs() - pg0;
  const after = engine.stats();
  if (session) {
    const { profile } = await session.post('Profiler.stop');
    writeFileSync(values.profile!, JSON.stringify(profile));
    session.disconnect();
  }
  const commits = after.commits - before.commits;
  console.log(
    `postgres local owner: ${TOTAL.toLocaleString('en-US')} reports, ${IN_FLIGHT} in flight, ${N.toLocaleString('en-US')} pending: ` +
      `${Math.round(TOTAL / seconds).toLocaleString('en-US')}/s, ${((cpu.user + cpu.system) / TOTAL).toFixed(1)} µs CPU each, ` +
      `event loop busy ${(elu.utilization * 100).toFixed(0)} % of wall time, ${commits > 0 ? (TOTAL / commits).toFixed(1) : '?'} reports per commit, ` +
      `PostgreSQL's processes ${((pgMs * 1000) / TOTAL).toFixed(1)} µs CPU per report`,
  );
} finally {
  await engine.close();
  await dropSchema(PG_URL, schema);
}
