/**
 * The cluster on PostgreSQL + NATS (postgresStore()), three workloads in one run:
 *
 * 1. Local-owner dispatch: one engine that owns all 64 shards, `progress` reports 256 in flight
 *    over pre-created callbacks (group commit batches them), on the PostgreSQL store vs the
 *    SQLite store (synchronous 'full', a file in a temp dir) vs a floor of raw batched writes on
 *    the same PostgreSQL database: one `INSERT ... SELECT * FROM unnest(...)` per batch of as
 *    many rows as the engine's group commits hold (measured in the warm-up), rows of the
 *    engine's row size, one statement at a time (the engine commits one batch at a time).
 *    Extra floor: the same batches as an `UPDATE ... FROM unnest(...)` of existing rows (the
 *    statement a progress report's commit runs, without the lease fence). Reports/s,
 *    per-report latency (from the moment the 256 are submitted), commits per report.
 * 2. Forwarding: two engines in this process (a, b) on one schema, 32 shards each; reports sent
 *    to b for callbacks a owns (forwarded over NATS request-reply; checked with
 *    stats().cluster.forwarded), one at a time and 64 in flight, vs a bare NATS request-reply of
 *    the same payload sizes between two connections of this process, and vs the local-owner
 *    report on a (with and without a dedupKey: a forwarded report always carries one).
 * 3. Cluster throughput over HTTP: 1, 2 and 3 replica processes (test/harness/replica-server.ts,
 *    spawned with spawnReplica), `progress` reports sent round-robin across the replicas,
 *    64 in flight, for a fixed time each; reports/s, latency, the share forwarded, and how busy
 *    the machine's CPUs were.
 *
 * Every workload uses its own schema `cbe_bench_<pid>_<name>`, dropped at the end (also on
 * error or Ctrl-C).
 *
 * Run: npm run bench:cluster [-- --time 2000 --seconds 8 --out bench/results-cluster.json]
 * Env: BENCH_PG_URL (default postgres://postgres@127.0.0.1:5432/test),
 *      BENCH_NATS_URL (default nats://127.0.0.1:4222)
 */
import { randomUUID } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { connect, type NatsConnection } from 'nats';
import pg from 'pg';
import { format } from 'prettier';
import { Bench, type Statistics } from 'tinybench';
import {
  createCallbackEngine,
  decodeToken,
  type CallbackAnswer,
  type CallbackEngine,
} from '../src/index.js';
import { ClusterLoad, dedupKey } from '../test/harness/cluster-load.js';
import {
  killAllReplicas,
  spawnReplica,
  terminate,
  type Replica,
} from '../test/harness/replicas.js';
import { dropSchema, postgresStore } from '../test/helpers/postgres.js';
import { sqliteStore } from '../src/store/sqlite.js';
import type { DurableStore } from '../src/store/store.js';
import {
  check,
  machine,
  closedLoop,
  createMany,
  processCpu,
  quantile,
  splitShards,
} from './lib.js';
import { balancedShards, replicaStats, shuffleTokens, type ReplicaStats } from './replicas.js';

const { values } = parseArgs({
  options: {
    time: { type: 'string', default: '2000' },
    seconds: { type: 'string', default: '8' },
    replicas: { type: 'string', default: '1,2,3' },
    out: { type: 'string', default: 'bench/results-cluster.json' },
  },
});
const TIME = Number(values.time);
const SECONDS = Number(values.seconds);
const REPLICA_COUNTS = values.replicas.split(',').map(Number);
const OUT = values.out;
const PG_URL = process.env.BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const NATS_URL = process.env.BENCH_NATS_URL ?? 'nats://127.0.0.1:4222';
const PREFIX = `cbe_bench_${process.pid}`;
const SECRET = 'bench-secret-0123456789';
const SHARDS = 64;

const LOCAL_CALLBACKS = 10_240; // a multiple of the 256 in flight: whole batches in the warm-up
const LOCAL_IN_FLIGHT = 256;
const FWD_CALLBACKS = 2_000;
const FWD_IN_FLIGHT = 64;
const FWD_PER_WORKER = 4; // requests each of the 64 workers runs back to back per iteration
const HTTP_CALLBACKS = 2_048;
const HTTP_IN_FLIGHT = 64;
const HTTP_WARMUP_MS = 1_500;

const fmt = (n: number) => Math.round(n).toLocaleString('en-US');

// ---- plumbing ---------------------------------------------------------------------------------

const abort = new AbortController();
// tinybench adds a listener per task and phase.
setMaxListeners(100, abort.signal);
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => abort.abort());
const schemas = new Set<string>();
const closers: (() => Promise<unknown>)[] = [];
const tmp = mkdtempSync(join(os.tmpdir(), 'cbe-cluster-bench-'));

function schemaFor(name: string): string {
  const s = `${PREFIX}_${name}`;
  schemas.add(s);
  return s;
}

interface Latency {
  meanMs: number;
  p50Ms: number;
  p99Ms: number;
}

function latencyOf(samples: number[]): Latency {
  const sorted = [...samples].sort((x, y) => x - y);
  return {
    meanMs: sorted.reduce((s, x) => s + x, 0) / Math.max(1, sorted.length),
    p50Ms: quantile(sorted, 0.5),
    p99Ms: quantile(sorted, 0.99),
  };
}

/** A measured row. */
interface Row extends Latency {
  group: string;
  name: string;
  /** Reports (or requests, or rows) per second. */
  rate: number;
  ratio: number;
  reference: string;
  rme: number;
  iterations: number;
  /** What a latency sample is. */
  latencyOf: string;
}

interface Plan {
  group: string;
  name: string;
  /** Operations done by one call of `fn`. */
  batch: number;
  latencyOf: string;
  /** Own per-operation latencies (ms), for calls that hold many concurrent operations. */
  own?: number[];
  before?: () => void | Promise<void>;
  after?: () => void | Promise<void>;
  fn: () => Promise<unknown>;
}

/** Runs the plans in one tinybench run; each row's ratio is to the first row of its group. */
async function measure(plans: Plan[]): Promise<Row[]> {
  const bench = new Bench({
    time: TIME,
    warmupTime: 300,
    iterations: 8,
    warmupIterations: 2,
    throws: true,
    signal: abort.signal,
  });
  const key = (plan: Plan) => `${plan.group} / ${plan.name}`;
  for (const plan of plans)
    bench.add(key(plan), plan.fn, {
      // Each phase (warm-up, run) keeps only its own samples; the last after() sees the run.
      beforeAll: async () => {
        if (plan.own) plan.own.length = 0;
        await plan.before?.();
      },
      afterAll: async () => {
        await plan.after?.();
      },
    });
  await bench.run();
  const rows: Row[] = [];
  for (const task of bench.tasks) {
    const r = task.result;
    if (r.state !== 'completed') throw new Error(`${task.name}: ${r.state}`);
    const plan = plans.find((p) => key(p) === task.name)!;
    const latency: Statistics = r.latency;
    const own = plan.own ? latencyOf(plan.own) : undefined;
    rows.push({
      group: plan.group,
      name: plan.name,
      rate: (plan.batch * 1000) / latency.mean,
      meanMs: own?.meanMs ?? latency.mean,
      p50Ms: own?.p50Ms ?? latency.p50,
      p99Ms: own?.p99Ms ?? latency.p99,
      ratio: 1,
      reference: '',
      rme: latency.rme,
      iterations: latency.samplesCount,
      latencyOf: plan.latencyOf,
    });
  }
  for (const group of new Set(rows.map((r) => r.group))) {
    const inGroup = rows.filter((r) => r.group === group);
    for (const row of inGroup) {
      row.ratio = row.rate / inGroup[0]!.rate;
      row.reference = inGroup[0]!.name;
    }
  }
  return rows;
}

const num = (n: number) => (n >= 100 ? fmt(n) : n.toFixed(1));
const ms = (n: number) => n.toFixed(n < 10 ? 3 : 1);

function table(rows: Row[], unit: string): string[] {
  return [
    `| workload | alternative | ${unit} | mean ms | p50 ms | p99 ms | latency of | ratio | ±% |`,
    '|---|---|---:|---:|---:|---:|---|---:|---:|',
    ...rows.map(
      (r) =>
        `| ${r.group} | ${r.name} | ${num(r.rate)} | ${ms(r.meanMs)} | ${ms(r.p50Ms)} | ${ms(r.p99Ms)} | ${r.latencyOf} | ${r.ratio.toFixed(2)}× | ${r.rme.toFixed(1)} |`,
    ),
  ];
}

function engineOn(node: string, store: DurableStore): CallbackEngine {
  return createCallbackEngine({ node, secrets: [SECRET], timeout: false, retention: true, store });
}

const report = (
  engine: CallbackEngine,
  token: string,
  n: number,
  key?: string,
): Promise<CallbackAnswer> =>
  engine.dispatch({
    type: 'CALLBACK',
    callbackToken: token,
    callbackStatus: 'progress',
    callbackData: { n },
    ...(key !== undefined && { dedupKey: key }),
  });

/** Machine-wide CPU time so far (all cores), ms: busy and total. */
function cpuTimes(): { busy: number; total: number } {
  let busy = 0;
  let total = 0;
  for (const c of os.cpus()) {
    const t = c.times;
    busy += t.user + t.nice + t.sys + t.irq;
    total += t.user + t.nice + t.sys + t.irq + t.idle;
  }
  return { busy, total };
}

const pct = (x: number) => `${(x * 100).toFixed(0)}%`;

/** Where the machine's CPU went during a window, as shares of its capacity (cores × wall time). */
interface CpuShares {
  /** Everything busy (from os.cpus()). */
  busy: number;
  /** This benchmark process and its descendants other than the replicas (tsx's esbuild). */
  bench: number;
  /** The replica processes and their descendants. */
  replicas: number;
  postgres: number;
  nats: number;
  /** The rest of the busy time: other processes, exited ones, the kernel. */
  other: number;
  /** Other processes that used more than 2% of the capacity ("comm pid share"): work that ran beside the benchmark. */
  others: string[];
}

/** Starts measuring; the returned function ends the window. `replicaPids` are known at start. */
function cpuMeter(replicaPids: readonly number[] = []): () => CpuShares {
  const c0 = cpuTimes();
  const p0 = processCpu();
  return () => {
    const c1 = cpuTimes();
    const p1 = processCpu();
    const capacity = c1.total - c0.total;
    const roots = new Map<number, 'bench' | 'replicas'>([[process.pid, 'bench']]);
    for (const pid of replicaPids) roots.set(pid, 'replicas');
    const ownerOf = (pid: number): 'bench' | 'replicas' | undefined => {
      for (let at = pid, hops = 0; at > 1 && hops < 20; hops++) {
        const root = roots.get(at);
        if (root) return root;
        at = p1.get(at)?.ppid ?? p0.get(at)?.ppid ?? 0;
      }
      return undefined;
    };
    const sums = { bench: 0, replicas: 0, postgres: 0, nats: 0 };
    const others: string[] = [];
    for (const [pid, now] of p1) {
      // A process started during the window counts whole.
      const used = now.ms - (p0.get(pid)?.ms ?? 0);
      if (used <= 0) continue;
      const owner = ownerOf(pid);
      if (owner) sums[owner] += used;
      else if (now.comm === 'postgres') sums.postgres += used;
      else if (now.comm === 'nats-server') sums.nats += used;
      else if (used > 0.02 * capacity) others.push(`${now.comm} ${pid} ${pct(used / capacity)}`);
    }
    const share = (x: number) => x / capacity;
    const busy = c1.busy - c0.busy;
    const known = sums.bench + sums.replicas + sums.postgres + sums.nats;
    return {
      busy: share(busy),
      bench: share(sums.bench),
      replicas: share(sums.replicas),
      postgres: share(sums.postgres),
      nats: share(sums.nats),
      other: share(Math.max(0, busy - known)),
      others,
    };
  };
}

const cpuLine = (c: CpuShares) =>
  `machine CPU busy ${pct(c.busy)} of ${os.cpus().length} cores: bench process ${pct(c.bench)}, replicas ${pct(c.replicas)}, postgres ${pct(c.postgres)}, nats ${pct(c.nats)}, everything else ${pct(c.other)}${c.others.length > 0 ? ` (${c.others.join(', ')})` : ''}`;

// ---- 1. local-owner dispatch -------------------------------------------------------------------

interface LocalResult {
  callbacks: number;
  inFlight: number;
  rowBytes: number;
  floorBatch: number;
  warmup: { pgRowsPerCommit: number; sqliteRowsPerCommit: number };
  timed: {
    postgres: { commitsPerReport: number; rowsPerCommit: number };
    sqlite: { commitsPerReport: number; rowsPerCommit: number };
  };
  rows: Row[];
  cpu: CpuShares;
}

async function localOwner(): Promise<LocalResult> {
  const schema = schemaFor('local');
  const pgEngine = engineOn(
    'bench-pg',
    postgresStore({ connectionString: PG_URL, schema, leaseTtl: 10_000, renewInterval: 3_000 }),
  );
  closers.push(() => pgEngine.close());
  const sqEngine = engineOn(
    'bench-sqlite',
    sqliteStore({ path: join(tmp, 'local.db'), synchronous: 'full' }),
  );
  closers.push(() => sqEngine.close());
  const engines = { postgres: pgEngine, sqlite: sqEngine };
  const tokens: Record<keyof typeof engines, string[]> = { postgres: [], sqlite: [] };
  for (const [name, engine] of Object.entries(engines) as [
    keyof typeof engines,
    CallbackEngine,
  ][]) {
    engine.anchor('job');
    await engine.ready();
    const t0 = performance.now();
    tokens[name] = await createMany(engine, LOCAL_CALLBACKS, 500);
    console.log(
      `${name}: ${fmt(LOCAL_CALLBACKS)} callbacks created in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
    );
  }
  check(
    pgEngine.stats().cluster?.shards === SHARDS,
    `the single replica holds all ${SHARDS} shards (got ${pgEngine.stats().cluster?.shards})`,
  );

  let k = 0;
  const latencies: Record<keyof typeof engines, number[]> = { postgres: [], sqlite: [] };
  const send = (name: keyof typeof engines) => {
    const engine = engines[name];
    const list = tokens[name];
    const into = latencies[name];
    const t0 = performance.now();
    const ps: Promise<unknown>[] = [];
    for (let b = 0; b < LOCAL_IN_FLIGHT; b++) {
      const i = k++;
      ps.push(
        report(engine, list[i % list.length]!, i).then(() => into.push(performance.now() - t0)),
      );
    }
    return Promise.all(ps);
  };

  // Warm-up and correctness: every callback gets a report; rows per commit measured.
  const perCommit = { postgres: 0, sqlite: 0 };
  for (const [name, engine] of Object.entries(engines) as [
    keyof typeof engines,
    CallbackEngine,
  ][]) {
    const before = engine.stats();
    for (let i = 0; i < LOCAL_CALLBACKS; i += LOCAL_IN_FLIGHT)
      await Promise.all(
        tokens[name].slice(i, i + LOCAL_IN_FLIGHT).map((t) => report(engine, t, -1)),
      );
    const after = engine.stats();
    perCommit[name] = (after.rowsWritten - before.rowsWritten) / (after.commits - before.commits);
    const probe = await engine.get(tokens[name][LOCAL_CALLBACKS - 1]!);
    check(probe.status === 'progress' && probe.data.n === -1, `${name} applied the warm-up`);
  }
  check(pgEngine.stats().cluster?.forwarded === 0, 'the single replica forwarded nothing');

  // The floors: raw node-postgres, same database, tables like the engine's (same indexes), the
  // engine's journal entry and rows.
  const client = new pg.Client({ connectionString: PG_URL, options: `-c search_path=${schema}` });
  client.on('error', () => {});
  await client.connect();
  closers.push(() => client.end());
  const stored = (
    await client.query<{ entry: string }>('SELECT entry FROM journal WHERE entry LIKE $1 LIMIT 1', [
      '%"n":-1%',
    ])
  ).rows[0]?.entry;
  check(stored !== undefined, 'the engine stored the warm-up report');
  const template = stored!;
  await client.query('CREATE TABLE floor_journal (LIKE journal INCLUDING ALL)');
  await client.query('CREATE TABLE floor_rows (LIKE callbacks INCLUDING ALL)');
  await client.query('INSERT INTO floor_rows SELECT * FROM callbacks');
  const floorIds = (
    await client.query<{ id: string }>('SELECT id FROM floor_rows ORDER BY seq')
  ).rows.map((r) => r.id);
  check(floorIds.length === LOCAL_CALLBACKS, `the floor has the engine's ${LOCAL_CALLBACKS} rows`);
  const batch = Math.max(1, Math.round(perCommit.postgres / 2));
  console.log(
    `engine journal entry ${template.length} bytes; rows and entries per group commit in warm-up: postgres ${perCommit.postgres.toFixed(1)}, sqlite ${perCommit.sqlite.toFixed(1)}; floor batch ${batch} reports`,
  );
  const ENTRIES = `SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[])`;
  const APPEND_SQL = `INSERT INTO floor_journal (callback_id, seq, at, entry) ${ENTRIES}`;
  // The engine's statement for a batch of progress reports, without its fence: the entries, and
  // each callback's row (head, status, due time, owed).
  const BOTH_SQL = `WITH jn AS (INSERT INTO floor_journal (callback_id, seq, at, entry) ${ENTRIES} RETURNING 1),
    upd AS (UPDATE floor_rows AS t SET status = u.status, due_at = u.due_at, head = u.head, owed = u.owed
      FROM unnest($1::text[], $5::text[], $6::bigint[], $2::bigint[], $7::boolean[])
        AS u(id, status, due_at, head, owed)
      WHERE t.id = u.id RETURNING 1)
    SELECT (SELECT count(*) FROM jn)::int AS entries, (SELECT count(*) FROM upd)::int AS rows`;
  const entryOf = (n: number) => template.replace('"n":-1', `"n":${n}`);
  // Each floor report appends seq k (k only grows, so (callback, seq) never repeats).
  const args = (n: number) => {
    const ids = Array.from({ length: n }, (_, i) => floorIds[(k + i) % floorIds.length]!);
    const seqs = ids.map((_, i) => 1_000_000 + k + i);
    const at = Date.now();
    const out = [ids, seqs, ids.map(() => at), ids.map((_, i) => entryOf(k + i))];
    k += n;
    return out;
  };
  const floorLat = { insert: [] as number[], update: [] as number[] };
  const floorInsert = async () => {
    const t0 = performance.now();
    for (let done = 0; done < LOCAL_IN_FLIGHT; done += batch) {
      const n = Math.min(batch, LOCAL_IN_FLIGHT - done);
      const r = await client.query(APPEND_SQL, args(n));
      check(r.rowCount === n, 'floor append wrote every entry');
      const at = performance.now() - t0;
      for (let i = 0; i < n; i++) floorLat.insert.push(at);
    }
  };
  const floorUpdate = async () => {
    const t0 = performance.now();
    for (let done = 0; done < LOCAL_IN_FLIGHT; done += batch) {
      const n = Math.min(batch, LOCAL_IN_FLIGHT - done);
      const [ids, seqs, ats, entries] = args(n);
      const r = await client.query<{ entries: number; rows: number }>(BOTH_SQL, [
        ids,
        seqs,
        ats,
        entries,
        ids!.map(() => 'progress'),
        ids!.map(() => null),
        ids!.map(() => null),
      ]);
      check(
        r.rows[0]?.entries === n && r.rows[0]?.rows === n,
        'floor appended every entry and updated every row',
      );
      const at = performance.now() - t0;
      for (let i = 0; i < n; i++) floorLat.update.push(at);
    }
  };
  await floorInsert();
  await floorUpdate();

  const snap = { postgres: pgEngine.stats(), sqlite: sqEngine.stats() };
  const timed = {
    postgres: { commitsPerReport: 0, rowsPerCommit: 0 },
    sqlite: { commitsPerReport: 0, rowsPerCommit: 0 },
  };
  const engineStats = (name: keyof typeof engines) => ({
    before: () => {
      snap[name] = engines[name].stats();
    },
    after: () => {
      const s = engines[name].stats();
      const commits = s.commits - snap[name].commits;
      timed[name] = {
        commitsPerReport: commits / (s.dispatched - snap[name].dispatched),
        rowsPerCommit: (s.rowsWritten - snap[name].rowsWritten) / commits,
      };
    },
  });
  const group = `local owner, ${LOCAL_IN_FLIGHT} in flight, ${fmt(LOCAL_CALLBACKS)} pending`;
  const meter = cpuMeter();
  const rows = await measure([
    {
      group,
      name: `floor: pg INSERT INTO journal ... SELECT * FROM unnest, ${batch} entries per statement`,
      batch: LOCAL_IN_FLIGHT,
      latencyOf: 'row (from submit)',
      own: floorLat.insert,
      fn: floorInsert,
    },
    {
      group,
      name: `extra floor: the engine's statement without its fence (${batch} entries and their rows' UPDATE)`,
      batch: LOCAL_IN_FLIGHT,
      latencyOf: 'row (from submit)',
      own: floorLat.update,
      fn: floorUpdate,
    },
    {
      group,
      name: 'postgres engine (1 replica, 64 shards)',
      batch: LOCAL_IN_FLIGHT,
      latencyOf: 'report (from submit)',
      own: latencies.postgres,
      ...engineStats('postgres'),
      fn: () => send('postgres'),
    },
    {
      group,
      name: "sqlite engine, synchronous 'full'",
      batch: LOCAL_IN_FLIGHT,
      latencyOf: 'report (from submit)',
      own: latencies.sqlite,
      ...engineStats('sqlite'),
      fn: () => send('sqlite'),
    },
  ]);
  const cpu = meter();
  for (const line of table(rows, 'rows or reports/s')) console.log(line);
  console.log(cpuLine(cpu));
  console.log(
    `commits per report while timing: postgres ${timed.postgres.commitsPerReport.toFixed(4)} (${timed.postgres.rowsPerCommit.toFixed(1)} rows per commit), sqlite ${timed.sqlite.commitsPerReport.toFixed(4)} (${timed.sqlite.rowsPerCommit.toFixed(1)} rows per commit)`,
  );
  await pgEngine.close();
  await sqEngine.close();
  await client.end();
  closers.length = 0;
  return {
    callbacks: LOCAL_CALLBACKS,
    inFlight: LOCAL_IN_FLIGHT,
    rowBytes: template.length,
    floorBatch: batch,
    warmup: { pgRowsPerCommit: perCommit.postgres, sqliteRowsPerCommit: perCommit.sqlite },
    timed,
    rows,
    cpu,
  };
}

// ---- 2. forwarding -----------------------------------------------------------------------------

interface ForwardResult {
  callbacks: number;
  requestBytes: number;
  replyBytes: number;
  forwardedIssued: number;
  forwardedCounted: number;
  servedCounted: number;
  queued: number;
  rows: Row[];
  cpu: CpuShares;
}

async function forwarding(): Promise<ForwardResult> {
  const schema = schemaFor('fwd');
  const mk = (node: string) =>
    engineOn(
      node,
      postgresStore({
        connectionString: PG_URL,
        schema,
        leaseTtl: 2_000,
        renewInterval: 500,
        forwardTimeout: 2_000,
        nats: { servers: NATS_URL },
      }),
    );
  const a = mk('a');
  closers.push(() => a.close());
  a.anchor('job');
  await a.ready();
  const b = mk('b');
  closers.push(() => b.close());
  b.anchor('job');
  await b.ready();
  const half = SHARDS / 2;
  const [sa, sb] = await splitShards(a, b, half, 15_000);
  check(sa === half && sb === half, `a and b hold ${half} shards each (a ${sa}, b ${sb})`);
  const tokens = await createMany(a, FWD_CALLBACKS, 500);

  // Warm-up and correctness: every callback gets one report through b, forwarded to a.
  const cs = (e: CallbackEngine) => e.stats().cluster!;
  const b0 = cs(b);
  const a0 = cs(a);
  for (let i = 0; i < FWD_CALLBACKS; i += FWD_IN_FLIGHT)
    await Promise.all(tokens.slice(i, i + FWD_IN_FLIGHT).map((t) => report(b, t, -1)));
  check(
    cs(b).forwarded - b0.forwarded === FWD_CALLBACKS && cs(a).served - a0.served === FWD_CALLBACKS,
    `every warm-up report went b → a (forwarded ${cs(b).forwarded - b0.forwarded}, served ${cs(a).served - a0.served} of ${FWD_CALLBACKS})`,
  );
  const probe = await a.get(tokens[0]!);
  check(probe.status === 'progress' && probe.data.n === -1, 'a applied the forwarded report');

  // The forwarding payloads, as the cluster builds them (src/cluster/cluster.ts, src/cluster/forward.ts).
  const id = decodeToken(tokens[0])!.id;
  const sample = await report(a, tokens[0]!, 1_000_000);
  const requestJson = JSON.stringify({
    op: 'report',
    id,
    token: tokens[0],
    status: 'progress',
    data: { n: 1_000_000 },
    dedupKey: `~${randomUUID()}`,
  });
  const replyJson = JSON.stringify({ kind: 'answer', outcome: 'applied', answer: sample });
  const requestBytes = Buffer.byteLength(requestJson);
  const replyBytes = Buffer.byteLength(replyJson);

  // Bare NATS request-reply: two connections in this process, the same payload sizes.
  const ncRep: NatsConnection = await connect({ servers: NATS_URL, name: 'cluster-replier' });
  closers.push(() => ncRep.close());
  const ncReq: NatsConnection = await connect({ servers: NATS_URL, name: 'cluster-requester' });
  closers.push(() => ncReq.close());
  const subject = `bench.cluster.${process.pid}`;
  ncRep.subscribe(subject, {
    callback: (err, msg) => {
      if (err) return;
      // Parsed, as the owner parses a forwarded request; answered with a reply of the same size.
      msg.json<{ id: string }>();
      msg.respond(replyJson);
    },
  });
  await ncRep.flush();
  const natsRequest = async () => {
    const m = await ncReq.request(subject, requestJson, { timeout: 5_000 });
    check(m.data.length === replyBytes, 'bare NATS reply size');
  };
  await natsRequest();

  let k = 0;
  let issued = 0;
  const next = () => tokens[k++ % tokens.length]!;
  const forward = async () => {
    issued++;
    const r = await report(b, next(), k);
    if (r.status !== 'progress') throw new Error(`forwarded report answered ${r.status}`);
  };
  const local = async () => {
    const r = await report(a, next(), k);
    if (r.status !== 'progress') throw new Error(`local report answered ${r.status}`);
  };
  const localKeyed = async () => {
    const r = await report(a, next(), k, `bench:${k}`);
    if (r.status !== 'progress') throw new Error(`local keyed report answered ${r.status}`);
  };
  const own = {
    nats: [] as number[],
    forward: [] as number[],
    local: [] as number[],
    keyed: [] as number[],
  };
  const SEQ = 'sequential (1 in flight)';
  const PAR = `${FWD_IN_FLIGHT} in flight`;
  const before = { a: cs(a), b: cs(b) };
  const meter = cpuMeter();
  const rows = await measure([
    {
      group: SEQ,
      name: 'bare NATS request-reply',
      batch: 1,
      latencyOf: 'request',
      fn: natsRequest,
    },
    {
      group: SEQ,
      name: 'forwarded report (to b, owner a)',
      batch: 1,
      latencyOf: 'report',
      fn: forward,
    },
    { group: SEQ, name: 'local-owner report on a', batch: 1, latencyOf: 'report', fn: local },
    {
      group: SEQ,
      name: 'local-owner report on a, with a dedupKey',
      batch: 1,
      latencyOf: 'report',
      fn: localKeyed,
    },
    {
      group: PAR,
      name: 'bare NATS request-reply',
      batch: FWD_IN_FLIGHT * FWD_PER_WORKER,
      latencyOf: 'request',
      own: own.nats,
      fn: () => closedLoop(FWD_IN_FLIGHT, FWD_PER_WORKER, natsRequest, own.nats),
    },
    {
      group: PAR,
      name: 'forwarded report (to b, owner a)',
      batch: FWD_IN_FLIGHT * FWD_PER_WORKER,
      latencyOf: 'report',
      own: own.forward,
      fn: () => closedLoop(FWD_IN_FLIGHT, FWD_PER_WORKER, forward, own.forward),
    },
    {
      group: PAR,
      name: 'local-owner report on a',
      batch: FWD_IN_FLIGHT * FWD_PER_WORKER,
      latencyOf: 'report',
      own: own.local,
      fn: () => closedLoop(FWD_IN_FLIGHT, FWD_PER_WORKER, local, own.local),
    },
    {
      group: PAR,
      name: 'local-owner report on a, with a dedupKey',
      batch: FWD_IN_FLIGHT * FWD_PER_WORKER,
      latencyOf: 'report',
      own: own.keyed,
      fn: () => closedLoop(FWD_IN_FLIGHT, FWD_PER_WORKER, localKeyed, own.keyed),
    },
  ]);
  const cpu = meter();
  const after = { a: cs(a), b: cs(b) };
  const forwardedCounted = after.b.forwarded - before.b.forwarded;
  const servedCounted = after.a.served - before.a.served;
  const queued = after.b.queued - before.b.queued;
  check(forwardedCounted >= issued, `b forwarded ${forwardedCounted} of ${issued} reports`);
  check(after.a.forwarded === before.a.forwarded, 'a (the owner) forwarded nothing');
  check(queued === 0, `no forwarded report was queued (${queued})`);
  for (const line of table(rows, 'req or reports/s')) console.log(line);
  console.log(cpuLine(cpu));
  console.log(
    `payloads: request ${requestBytes} B, reply ${replyBytes} B; forwarded while timing: ${fmt(issued)} sent to b, b.stats().cluster.forwarded +${fmt(forwardedCounted)}, a served +${fmt(servedCounted)}, queued ${queued}`,
  );
  for (const close of closers.splice(0).reverse()) await close();
  return {
    callbacks: FWD_CALLBACKS,
    requestBytes,
    replyBytes,
    forwardedIssued: issued,
    forwardedCounted,
    servedCounted,
    queued,
    rows,
    cpu,
  };
}

// ---- 3. replica processes over HTTP ------------------------------------------------------------

interface ReplicaRow {
  replicas: number;
  seconds: number;
  reports: number;
  rate: number;
  meanMs: number;
  p50Ms: number;
  p99Ms: number;
  nonOk: number;
  /** Attempts not answered 200/202, by result, status and outcome. */
  failures: Record<string, number>;
  forwarded: number;
  forwardedShare: number;
  queued: number;
  commitsPerReport: number;
  cpu: CpuShares;
  ratio: number;
  shards: number[];
  /** From every replica READY to every shard held, ms. */
  balanceMs: number;
}

async function replicaRun(n: number): Promise<ReplicaRow> {
  const schema = schemaFor(`r${n}`);
  const names = Array.from({ length: n }, (_, i) => `r${i + 1}`);
  const replicas: Replica[] = await Promise.all(
    names.map((node) =>
      spawnReplica({
        schema,
        node,
        pg: PG_URL,
        nats: NATS_URL,
        leaseTtl: 4_000,
        renew: 1_000,
        forwardTimeout: 2_000,
      }),
    ),
  );
  const load = new ClusterLoad(replicas, {
    callbacks: HTTP_CALLBACKS,
    reports: 1,
    concurrency: HTTP_IN_FLIGHT,
    requestTimeoutMs: 10_000,
  });
  try {
    const stats = () => replicaStats(load, replicas);
    const spawned = performance.now();
    const shards = await balancedShards(load, replicas, SHARDS);
    const balanceMs = performance.now() - spawned;
    await load.create();
    check(
      load.tokens.length === HTTP_CALLBACKS && load.errors === 0,
      `${n} replicas: ${load.tokens.length} of ${HTTP_CALLBACKS} callbacks created (${load.errorLog.join('; ')})`,
    );

    shuffleTokens(load.tokens);
    // Each worker owns a slice of the callbacks (one report in flight per callback); each report
    // goes to the next replica, round-robin.
    const seqOf = new Map<string, number>();
    let rr = 0;
    let until = 0;
    let counting = false;
    let ok = 0;
    let nonOk = 0;
    const failures: Record<string, number> = {};
    let queued = 0;
    const lat: number[] = [];
    const worker = async (w: number) => {
      let i = w;
      while (performance.now() < until && !abort.signal.aborted) {
        const token = load.tokens[i % load.tokens.length]!;
        i += HTTP_IN_FLIGHT;
        const seq = seqOf.get(token) ?? 0;
        seqOf.set(token, seq + 1);
        const target = replicas[rr++ % replicas.length]!;
        const a = await load.sendReport(target, token, seq, dedupKey(token, seq));
        if (!counting) continue;
        if (a.result === 'ok' || a.result === 'queued') {
          ok++;
          if (a.result === 'queued') queued++;
          lat.push(a.end - a.start);
        } else {
          nonOk++;
          const what = `${a.result} ${a.status ?? '-'} ${a.detail ?? ''}`.trim();
          failures[what] = (failures[what] ?? 0) + 1;
        }
      }
    };
    until = performance.now() + HTTP_WARMUP_MS;
    await Promise.all(Array.from({ length: HTTP_IN_FLIGHT }, (_, w) => worker(w)));
    load.attempts.length = 0;
    const s0 = await stats();
    const meter = cpuMeter(replicas.map((r) => r.pid));
    counting = true;
    const t0 = performance.now();
    until = t0 + SECONDS * 1000;
    await Promise.all(Array.from({ length: HTTP_IN_FLIGHT }, (_, w) => worker(w)));
    const secs = (performance.now() - t0) / 1000;
    const cpu = meter();
    const s1 = await stats();
    const sum = (list: ReplicaStats[], f: (s: ReplicaStats['stats']) => number) =>
      list.reduce((acc, s) => acc + f(s.stats), 0);
    const forwarded = sum(s1, (s) => s.cluster.forwarded) - sum(s0, (s) => s.cluster.forwarded);
    const commits = sum(s1, (s) => s.commits) - sum(s0, (s) => s.commits);
    const l = latencyOf(lat);
    const row: ReplicaRow = {
      replicas: n,
      seconds: secs,
      reports: ok,
      rate: ok / secs,
      ...l,
      nonOk,
      failures,
      forwarded,
      forwardedShare: forwarded / Math.max(1, ok),
      queued,
      commitsPerReport: commits / Math.max(1, ok),
      cpu,
      ratio: 1,
      shards,
      balanceMs,
    };
    console.log(
      `${n} replica(s) (shards ${shards.join('/')}, balanced ${fmt(balanceMs)} ms after READY): ${fmt(row.rate)} reports/s over ${secs.toFixed(1)} s, mean ${ms(l.meanMs)} ms, p50 ${ms(l.p50Ms)} ms, p99 ${ms(l.p99Ms)} ms, forwarded ${(row.forwardedShare * 100).toFixed(1)}%, queued ${queued}, non-2xx ${nonOk}${nonOk > 0 ? ` (${JSON.stringify(failures)})` : ''}; ${cpuLine(cpu)}`,
    );
    return row;
  } finally {
    load.close();
    await Promise.all(replicas.map((r) => terminate(r).catch(() => r.kill('SIGKILL'))));
    await dropSchema(PG_URL, schema);
    schemas.delete(schema);
  }
}

// ---- main --------------------------------------------------------------------------------------

let failed = false;
const started = performance.now();
try {
  const admin = new pg.Client({ connectionString: PG_URL });
  await admin.connect();
  const server = (
    await admin.query<{ version: string; sc: string; fsync: string }>(
      `SELECT current_setting('server_version') AS version,
              current_setting('synchronous_commit') AS sc, current_setting('fsync') AS fsync`,
    )
  ).rows[0]!;
  await admin.end();
  const nc = await connect({ servers: NATS_URL });
  const natsVersion = nc.info?.version ?? '?';
  await nc.close();
  const loadAtStart = os.loadavg();
  console.log(
    `PostgreSQL ${server.version} (synchronous_commit=${server.sc}, fsync=${server.fsync}), NATS ${natsVersion}, Node ${process.version}, ${os.cpus().length} CPUs; load average at start ${loadAtStart.map((x) => x.toFixed(2)).join(' ')}\n`,
  );

  console.log('## 1. local-owner dispatch');
  const local = await localOwner();
  console.log('\n## 2. forwarding');
  const forward = await forwarding();
  console.log('\n## 3. replica processes over HTTP');
  const replicaRows: ReplicaRow[] = [];
  for (const n of REPLICA_COUNTS) {
    if (abort.signal.aborted) throw new Error('aborted');
    replicaRows.push(await replicaRun(n));
  }
  for (const r of replicaRows) r.ratio = r.rate / replicaRows[0]!.rate;

  const seconds = (performance.now() - started) / 1000;
  const replicaTable = [
    '| replicas | reports/s | ratio to 1 replica | mean ms | p50 ms | p99 ms | forwarded | commits/report | non-2xx | CPU busy | load generator | replicas | postgres | nats | other |',
    '|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...replicaRows.map(
      (r) =>
        `| ${r.replicas} | ${fmt(r.rate)} | ${r.ratio.toFixed(2)}× | ${ms(r.meanMs)} | ${ms(r.p50Ms)} | ${ms(r.p99Ms)} | ${(r.forwardedShare * 100).toFixed(1)}% | ${r.commitsPerReport.toFixed(3)} | ${r.nonOk} | ${pct(r.cpu.busy)} | ${pct(r.cpu.bench)} | ${pct(r.cpu.replicas)} | ${pct(r.cpu.postgres)} | ${pct(r.cpu.nats)} | ${pct(r.cpu.other)} |`,
    ),
  ];
  const pgRow = local.rows.find((r) => r.name.startsWith('postgres engine'))!;
  const sqRow = local.rows.find((r) => r.name.startsWith('sqlite engine'))!;
  const fwdSeq = forward.rows.filter((r) => r.group.startsWith('sequential'));
  const fwdPar = forward.rows.filter((r) => !r.group.startsWith('sequential'));
  const lines = [
    `### 1. Local-owner dispatch: \`progress\` reports, ${local.inFlight} in flight, ${fmt(local.callbacks)} pending, one engine holding all ${SHARDS} shards`,
    '',
    `Engine journal entry ${local.rowBytes} bytes. Rows and entries per group commit while timing: postgres ${local.timed.postgres.rowsPerCommit.toFixed(1)} (${local.timed.postgres.commitsPerReport.toFixed(4)} commits/report), sqlite ${local.timed.sqlite.rowsPerCommit.toFixed(1)} (${local.timed.sqlite.commitsPerReport.toFixed(4)} commits/report); the floors write ${local.floorBatch} reports per statement (the PostgreSQL engine's warm-up figure: a row and an entry each), one statement at a time. PostgreSQL engine / SQLite engine: ${(pgRow.rate / sqRow.rate).toFixed(2)}×.`,
    '',
    ...table(local.rows, 'rows or reports/s'),
    '',
    `CPU during the timed part (all four alternatives): ${cpuLine(local.cpu)}.`,
    '',
    `### 2. Forwarded report vs bare NATS request-reply (two engines in one process, 32 shards each)`,
    '',
    `Payloads: request ${forward.requestBytes} B, reply ${forward.replyBytes} B. While timing, ${fmt(forward.forwardedIssued)} reports were sent to b for callbacks a owns; b's \`stats().cluster.forwarded\` rose by ${fmt(forward.forwardedCounted)}, a's \`served\` by ${fmt(forward.servedCounted)}, ${forward.queued} queued. Forwarded / bare NATS: sequential ${fwdSeq[1]!.ratio.toFixed(2)}× (latency +${(fwdSeq[1]!.meanMs - fwdSeq[0]!.meanMs).toFixed(3)} ms), ${FWD_IN_FLIGHT} in flight ${fwdPar[1]!.ratio.toFixed(2)}×. Forwarded vs local-owner with a dedupKey (a forwarded report always carries one): sequential +${(fwdSeq[1]!.meanMs - fwdSeq[3]!.meanMs).toFixed(3)} ms mean, ${FWD_IN_FLIGHT} in flight ${(fwdPar[1]!.rate / fwdPar[3]!.rate).toFixed(2)}× the reports/s.`,
    '',
    ...table(forward.rows, 'req or reports/s'),
    '',
    `CPU during the timed part: ${cpuLine(forward.cpu)}.`,
    '',
    `### 3. Replica processes over HTTP: ${SECONDS} s each, ${HTTP_IN_FLIGHT} in flight, round-robin, ${fmt(HTTP_CALLBACKS)} callbacks`,
    '',
    `Each report is \`POST /callbacks/{token}/progress\` with a \`Callback-Dedup-Key\` (ClusterLoad.sendReport), to the next replica in turn; the load generator runs in the benchmark process. CPU columns: shares of the machine's two cores during the timed window, from /proc.`,
    '',
    ...replicaTable,
  ];
  console.log(`\n${lines.join('\n')}`);
  console.log(`\ntook ${seconds.toFixed(0)} s`);
  // Formatted as `prettier --check .` expects (short arrays on one line).
  const json = JSON.stringify(
    {
      command: `npm run bench:cluster${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`,
      date: new Date().toISOString(),
      seconds,
      machine: machine(),
      loadAverage: { atStart: loadAtStart, atEnd: os.loadavg() },
      server: {
        postgres: server.version,
        synchronousCommit: server.sc,
        fsync: server.fsync,
        nats: natsVersion,
      },
      settings: {
        timeMs: TIME,
        httpSeconds: SECONDS,
        httpWarmupMs: HTTP_WARMUP_MS,
        httpInFlight: HTTP_IN_FLIGHT,
        httpCallbacks: HTTP_CALLBACKS,
      },
      local,
      forward,
      replicas: replicaRows,
      markdown: lines,
    },
    null,
    2,
  );
  writeFileSync(OUT, await format(json, { parser: 'json' }));
  console.log(`wrote ${OUT}`);
} catch (error) {
  failed = true;
  console.error(error);
} finally {
  for (const close of closers.splice(0).reverse())
    await close().catch((e: unknown) => console.error('close:', e));
  await killAllReplicas();
  for (const s of schemas)
    await dropSchema(PG_URL, s).catch((e: unknown) => console.error(`drop ${s}:`, e));
  rmSync(tmp, { recursive: true, force: true });
}
process.exitCode = failed ? 1 : 0;
