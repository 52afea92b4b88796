/**
 * Capacity: N replicas on M cores against one PostgreSQL, measured with each process pinned
 * (`taskset`) and checked against the model of docs/capacity.md.
 *
 * It measures the model's inputs, then runs 1, 2 and 3 replica processes
 * (test/harness/replica-server.ts) over HTTP, `progress` reports with a `Callback-Dedup-Key`,
 * a fixed number in flight, two ways of choosing the replica a report goes to:
 *
 * - `owner`: straight to its owner. A new callback is created in a shard its creating replica
 *   leases, and its token names that replica (`decodeToken(token).node`); the shards do not move
 *   during a run (every run waits until they are balanced before it creates anything), so the
 *   named replica is the owner and nothing is forwarded (checked: `stats().cluster.forwarded`).
 * - `round-robin`: to the next replica in turn; (N-1)/N of the reports are forwarded.
 *
 * The inputs, each from its own run:
 *
 * - PostgreSQL commits/s: one connection committing one-row UPDATEs back to back (the ceiling of
 *   one writer that commits one transaction at a time, as each replica does) and 16 connections
 *   at once (the server's ceiling); PostgreSQL CPU per commit of those.
 * - Local report: 1 replica, `owner` routing, at the run's in-flight count and at a low one
 *   (8). Replica CPU µs per report and PostgreSQL CPU µs per report at two batch sizes give the
 *   per-report and per-commit parts of each (y = a + b / r, r = reports per commit).
 * - Forwarded report: 2 replicas, every callback created at r1 (so r1 owns them all), every
 *   report sent to r2: r2's CPU per report is the entry's cost, r1's the owner's, nats-server's
 *   the forward's.
 * - The load generator (this process) per report, from the 1-replica run.
 *
 * CPU per process comes from /proc/<pid>/stat (utime + stime of the process and its reaped
 * children, plus its live descendants) over the timed window, divided by the reports
 * acknowledged in it. PostgreSQL is the backends of this run's connections (named by
 * `application_name`, read from pg_stat_activity) plus the server's own processes (WAL writer,
 * checkpointer, ...), which also work for other clients; nats-server is shared by anything
 * else on the machine that uses it; the table gives "other" CPU so that shows.
 *
 * Pinning (`--pin`, the default; `--no-pin` turns it off): replica i (0-based) runs on core
 * i mod M, the load generator (this process, all its threads) on core M-1; PostgreSQL and NATS
 * float (shared services: pinning them would pin other users of this machine too), unless
 * `--pg-core K` pins this run's PostgreSQL backends to core K.
 *
 * Every run uses its own schema `cbe_cap_<pid>_<name>`, dropped at the end (also on error or
 * Ctrl-C).
 *
 * Run: npx tsx bench/capacity.bench.ts [--seconds 6] [--in-flight 64] [--replicas 1,2,3]
 *      [--no-pin] [--pg-core K] [--write] [--out bench/results-capacity.json] [--report FILE]
 * `--write` replaces the "Capacity" section of bench/RESULTS.md; `--report FILE` renders the
 * tables again from a saved JSON file instead of measuring.
 * Env: BENCH_PG_URL (default postgres://postgres@127.0.0.1:5432/test),
 *      BENCH_NATS_URL (default nats://127.0.0.1:4222)
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { format } from 'prettier';
import { decodeToken } from '../src/index.js';
import { ClusterLoad, dedupKey } from '../test/harness/cluster-load.js';
import {
  killAllReplicas,
  spawnReplica,
  terminate,
  type Replica,
} from '../test/harness/replicas.js';
import { dropSchema } from '../test/helpers/postgres.js';
import {
  check,
  machine,
  processCpu,
  type ProcessCpu,
  quantile,
  writeResultsSection,
} from './lib.js';
import { balancedShards, replicaStats, shuffleTokens, type ReplicaStats } from './replicas.js';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '6' },
    'in-flight': { type: 'string', default: '64' },
    'low-in-flight': { type: 'string', default: '8' },
    callbacks: { type: 'string', default: '2048' },
    replicas: { type: 'string', default: '1,2,3' },
    'no-pin': { type: 'boolean', default: false },
    'pg-core': { type: 'string' },
    write: { type: 'boolean', default: false },
    report: { type: 'string' },
    out: { type: 'string', default: 'bench/results-capacity.json' },
  },
});
const SECONDS = Number(values.seconds);
const IN_FLIGHT = Number(values['in-flight']);
const LOW_IN_FLIGHT = Number(values['low-in-flight']);
const CALLBACKS = Number(values.callbacks);
const REPLICA_COUNTS = values.replicas.split(',').map(Number);
// Overridden by the settings of a `--report` file.
let PIN = !values['no-pin'];
let PG_CORE = values['pg-core'] === undefined ? undefined : Number(values['pg-core']);
let CORES = os.cpus().length;
let LG_CORE = CORES - 1;
const PG_URL = process.env.BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const NATS_URL = process.env.BENCH_NATS_URL ?? 'nats://127.0.0.1:4222';
const APP = `cbe_cap_${process.pid}`;
const SHARDS = 64;
const WARMUP_MS = 1_500;

const fmt = (n: number) => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '–');
const f1 = (n: number) => (Number.isFinite(n) ? n.toFixed(1) : '–');
const pct = (x: number) => `${Math.round(x * 100)}%`;

const schemas = new Set<string>();
let stopping = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => (stopping = true));

function pgUrl(app: string): string {
  const u = new URL(PG_URL);
  u.searchParams.set('application_name', app);
  return u.toString();
}

// ---- CPU of processes, from /proc ------------------------------------------------------------

type Proc = ProcessCpu;

/** The pid and its live descendants. */
function treeOf(root: number, procs: Map<number, Proc>): number[] {
  const out = [root];
  for (let i = 0; i < out.length; i++)
    for (const [pid, p] of procs) if (p.ppid === out[i] && !out.includes(pid)) out.push(pid);
  return out.filter((pid) => procs.has(pid));
}

interface PgProc {
  pid: number;
  app: string;
  type: string;
}

interface Snapshot {
  at: number;
  procs: Map<number, Proc>;
  cores: { busy: number; total: number }[];
  pg: PgProc[];
}

let adminClient: pg.Client | undefined;

async function pgProcs(): Promise<PgProc[]> {
  const r = await adminClient!.query<{ pid: number; app: string; type: string }>(
    `SELECT pid, application_name AS app, backend_type AS type FROM pg_stat_activity`,
  );
  return r.rows;
}

async function snapshot(): Promise<Snapshot> {
  const pgList = await pgProcs();
  return {
    at: performance.now(),
    procs: processCpu(),
    cores: os.cpus().map((c) => {
      const t = c.times;
      const busy = t.user + t.nice + t.sys + t.irq;
      return { busy, total: busy + t.idle };
    }),
    pg: pgList,
  };
}

/** CPU ms the pids used between two snapshots (a pid new in the window counts whole). */
function used(s0: Snapshot, s1: Snapshot, pids: Iterable<number>): number {
  let sum = 0;
  for (const pid of new Set(pids)) {
    const p1 = s1.procs.get(pid);
    if (!p1) continue;
    const p0 = s0.procs.get(pid);
    sum += Math.max(0, p1.ms - (p0 && p0.comm === p1.comm ? p0.ms : 0));
  }
  return sum;
}

/** This run's PostgreSQL backends (by application_name prefix) and the server's own processes. */
function pgPids(s0: Snapshot, s1: Snapshot, prefix: string): number[] {
  const pids = new Set<number>();
  for (const p of [...s0.pg, ...s1.pg])
    if (p.app.startsWith(prefix) || p.type !== 'client backend') pids.add(p.pid);
  return [...pids];
}

function natsPids(s: Snapshot): number[] {
  return [...s.procs].filter(([, p]) => p.comm === 'nats-server').map(([pid]) => pid);
}

function taskset(core: number, pid: number): void {
  try {
    execFileSync('taskset', ['-a', '-cp', String(core), String(pid)], { stdio: 'ignore' });
  } catch {
    // Gone meanwhile, or not allowed: the layout line says what was pinned.
  }
}

/** Pins a process and its descendants (tsx's esbuild service) to one core. */
function pinTree(core: number, pid: number): void {
  for (const p of treeOf(pid, processCpu())) taskset(core, p);
}

// ---- PostgreSQL commits/s ----------------------------------------------------------------------

interface CommitCeiling {
  connections: number;
  commitsPerSecond: number;
  meanMs: number;
  pgCpuUsPerCommit: number;
}

async function commitCeiling(connections: number, ms: number): Promise<CommitCeiling> {
  const schema = `${APP}_k${connections}`;
  schemas.add(schema);
  const admin = adminClient!;
  await admin.query(`CREATE SCHEMA IF NOT EXISTS ${schema}`);
  await admin.query(`CREATE TABLE ${schema}.t (id int PRIMARY KEY, v bigint NOT NULL)`);
  await admin.query(`INSERT INTO ${schema}.t SELECT g, 0 FROM generate_series(0, $1::int - 1) g`, [
    connections,
  ]);
  const app = `${APP}_k${connections}`;
  const clients = await Promise.all(
    Array.from({ length: connections }, async () => {
      const c = new pg.Client({ connectionString: pgUrl(app) });
      await c.connect();
      return c;
    }),
  );
  try {
    for (const c of clients) await c.query(`UPDATE ${schema}.t SET v = v + 1 WHERE id = 0`);
    let commits = 0;
    const s0 = await snapshot();
    const until = performance.now() + ms;
    await Promise.all(
      clients.map(async (c, i) => {
        while (performance.now() < until) {
          await c.query(`UPDATE ${schema}.t SET v = v + 1 WHERE id = $1`, [i]);
          commits++;
        }
      }),
    );
    const s1 = await snapshot();
    const secs = (s1.at - s0.at) / 1000;
    const pgMs = used(s0, s1, pgPids(s0, s1, app));
    return {
      connections,
      commitsPerSecond: commits / secs,
      meanMs: (connections * secs * 1000) / commits,
      pgCpuUsPerCommit: (pgMs * 1000) / commits,
    };
  } finally {
    await Promise.all(clients.map((c) => c.end()));
    await dropSchema(PG_URL, schema);
    schemas.delete(schema);
  }
}

// ---- one run of replica processes ------------------------------------------------------------

type Routing = 'owner' | 'round-robin' | 'forward-all';

interface RunSpec {
  name: string;
  replicas: number;
  routing: Routing;
  inFlight: number;
}

interface RunResult extends RunSpec {
  seconds: number;
  reports: number;
  rate: number;
  p50Ms: number;
  p99Ms: number;
  meanMs: number;
  nonOk: number;
  forwarded: number;
  forwardedShare: number;
  commits: number;
  /** Reports per commit (at the owners). */
  reportsPerCommit: number;
  /** Rows, entries and deletes per commit, as the engine counts them (`rowsWritten`). */
  rowsPerCommit: number;
  /** CPU ms in the window. */
  cpuMs: { replicas: number[]; lg: number; pg: number; nats: number; other: number };
  /** Busy share of each core in the window. */
  coreBusy: number[];
  /** Which core each replica ran on ('any' when not pinned). */
  layout: string;
  loadAverage: number[];
}

function layoutOf(n: number): string {
  if (!PIN) return 'nothing pinned';
  const cores = Array.from({ length: CORES }, (_, k) => {
    const on = Array.from({ length: n }, (_, i) => i).filter((i) => i % CORES === k);
    const names = on.map((i) => `r${i + 1}`);
    if (k === LG_CORE) names.push('load generator');
    if (k === PG_CORE) names.push('postgres backends');
    return `core ${k}: ${names.length > 0 ? names.join(', ') : 'nothing pinned'}`;
  });
  const floating = PG_CORE === undefined ? 'postgres, nats-server' : 'nats-server, postgres aux';
  return `${cores.join('; ')}; floating: ${floating}`;
}

async function run(spec: RunSpec): Promise<RunResult> {
  const { replicas: n, routing, inFlight } = spec;
  const schema = `${APP}_${spec.name.replace(/\W/g, '_')}`;
  schemas.add(schema);
  const names = Array.from({ length: n }, (_, i) => `r${i + 1}`);
  const prefix = `${APP}_${spec.name.replace(/\W/g, '_')}_`;
  const replicas: Replica[] = await Promise.all(
    names.map((node) =>
      spawnReplica({
        schema,
        node,
        pg: pgUrl(`${prefix}${node}`),
        nats: NATS_URL,
        leaseTtl: 4_000,
        renew: 1_000,
        forwardTimeout: 2_000,
      }),
    ),
  );
  if (PIN) replicas.forEach((r, i) => pinTree(i % CORES, r.pid));
  const creators = routing === 'forward-all' ? replicas.slice(0, 1) : replicas;
  const load = new ClusterLoad(creators, {
    callbacks: CALLBACKS,
    reports: 1,
    concurrency: inFlight,
    requestTimeoutMs: 10_000,
  });
  try {
    const stats = () => replicaStats(load, replicas);
    await balancedShards(load, replicas, SHARDS);
    await load.create();
    check(
      load.tokens.length === CALLBACKS && load.errors === 0,
      `${spec.name}: ${load.tokens.length} of ${CALLBACKS} callbacks created (${load.errorLog.join('; ')})`,
    );
    const byNode = new Map(replicas.map((r) => [r.node, r]));
    if (routing === 'owner' || routing === 'forward-all')
      check(
        load.tokens.every((t) => byNode.has(decodeToken(t)?.node ?? '')),
        'every token names a replica',
      );
    if (routing === 'forward-all')
      check(
        load.tokens.every((t) => decodeToken(t)?.node === 'r1'),
        'every callback was created at r1',
      );
    shuffleTokens(load.tokens);
    const ownerOf = new Map(load.tokens.map((t) => [t, byNode.get(decodeToken(t)!.node)!]));
    let rr = 0;
    const targetOf = (token: string): Replica => {
      if (routing === 'owner') return ownerOf.get(token)!;
      if (routing === 'forward-all') return replicas[1]!;
      return replicas[rr++ % replicas.length]!;
    };
    const seqOf = new Map<string, number>();
    let until = 0;
    let counting = false;
    let ok = 0;
    let nonOk = 0;
    const lat: number[] = [];
    const worker = async (w: number) => {
      let i = w;
      while (performance.now() < until && !stopping) {
        const token = load.tokens[i % load.tokens.length]!;
        i += inFlight;
        const seq = seqOf.get(token) ?? 0;
        seqOf.set(token, seq + 1);
        const a = await load.sendReport(targetOf(token), token, seq, dedupKey(token, seq));
        if (!counting) continue;
        if (a.result === 'ok' || a.result === 'queued') {
          ok++;
          lat.push(a.end - a.start);
        } else nonOk++;
      }
    };
    until = performance.now() + WARMUP_MS;
    await Promise.all(Array.from({ length: inFlight }, (_, w) => worker(w)));
    load.attempts.length = 0;
    // The pools have opened their connections by now: pin this run's backends, if asked.
    if (PG_CORE !== undefined)
      for (const p of await pgProcs()) if (p.app.startsWith(`${prefix}r`)) taskset(PG_CORE, p.pid);
    const st0 = await stats();
    const s0 = await snapshot();
    counting = true;
    until = s0.at + SECONDS * 1000;
    await Promise.all(Array.from({ length: inFlight }, (_, w) => worker(w)));
    const s1 = await snapshot();
    const st1 = await stats();
    const secs = (s1.at - s0.at) / 1000;
    const sum = (list: ReplicaStats[], f: (s: ReplicaStats['stats']) => number) =>
      list.reduce((acc, s) => acc + f(s.stats), 0);
    const forwarded = sum(st1, (s) => s.cluster.forwarded) - sum(st0, (s) => s.cluster.forwarded);
    const commits = sum(st1, (s) => s.commits) - sum(st0, (s) => s.commits);
    const rows = sum(st1, (s) => s.rowsWritten) - sum(st0, (s) => s.rowsWritten);
    const replicaTrees = replicas.map((r) => [
      ...new Set([...treeOf(r.pid, s0.procs), ...treeOf(r.pid, s1.procs)]),
    ]);
    const replicaMs = replicaTrees.map((t) => used(s0, s1, t));
    const inReplicas = new Set(replicaTrees.flat());
    const lgTree = [...treeOf(process.pid, s0.procs), ...treeOf(process.pid, s1.procs)].filter(
      (pid) => !inReplicas.has(pid),
    );
    const lgMs = used(s0, s1, lgTree);
    const pgMs = used(s0, s1, pgPids(s0, s1, `${prefix}r`));
    const natsMs = used(s0, s1, natsPids(s1));
    const coreBusy = s1.cores.map(
      (c, k) => (c.busy - s0.cores[k]!.busy) / Math.max(1, c.total - s0.cores[k]!.total),
    );
    const busyMs = coreBusy.reduce((x, y) => x + y, 0) * secs * 1000;
    const known = replicaMs.reduce((x, y) => x + y, 0) + lgMs + pgMs + natsMs;
    const sorted = [...lat].sort((x, y) => x - y);
    if (routing === 'owner')
      check(forwarded === 0, `${spec.name}: owner routing forwarded ${forwarded} reports`);
    if (routing === 'forward-all')
      check(forwarded >= ok, `${spec.name}: forwarded ${forwarded} of ${ok} reports`);
    const result: RunResult = {
      ...spec,
      seconds: secs,
      reports: ok,
      rate: ok / secs,
      meanMs: sorted.reduce((s, x) => s + x, 0) / Math.max(1, sorted.length),
      p50Ms: quantile(sorted, 0.5),
      p99Ms: quantile(sorted, 0.99),
      nonOk,
      forwarded,
      forwardedShare: forwarded / Math.max(1, ok),
      commits,
      reportsPerCommit: ok / Math.max(1, commits),
      rowsPerCommit: rows / Math.max(1, commits),
      cpuMs: {
        replicas: replicaMs,
        lg: lgMs,
        pg: pgMs,
        nats: natsMs,
        other: Math.max(0, busyMs - known),
      },
      coreBusy,
      layout: layoutOf(n),
      loadAverage: os.loadavg(),
    };
    const us = (msUsed: number) => f1((msUsed * 1000) / Math.max(1, ok));
    console.log(
      `${spec.name}: ${fmt(result.rate)} reports/s, p50 ${result.p50Ms.toFixed(1)} ms, p99 ${result.p99Ms.toFixed(1)} ms, forwarded ${pct(result.forwardedShare)}, ${f1(result.reportsPerCommit)} reports/commit, non-2xx ${nonOk}; CPU µs/report: replicas ${replicaMs.map(us).join('/')}, load generator ${us(lgMs)}, postgres ${us(pgMs)}, nats ${us(natsMs)}, other ${us(result.cpuMs.other)}; cores busy ${coreBusy.map(pct).join('/')}; ${result.layout}`,
    );
    const otherShare = result.cpuMs.other / (secs * 1000 * CORES);
    if (otherShare > 0.05)
      console.log(
        `  note: work other than this benchmark's used ${pct(otherShare)} of the machine in this window`,
      );
    return result;
  } finally {
    load.close();
    await Promise.all(replicas.map((r) => terminate(r).catch(() => r.kill('SIGKILL'))));
    await dropSchema(PG_URL, schema);
    schemas.delete(schema);
  }
}

// ---- the model ---------------------------------------------------------------------------------

/** The model's inputs, CPU in µs. */
interface Inputs {
  /** Replica CPU per local report: `repA + repB / r`. */
  repA: number;
  repB: number;
  /** PostgreSQL CPU per report: `pgA + pgB / r`. */
  pgA: number;
  pgB: number;
  /** Entry replica CPU per forwarded report (HTTP in, forward out, answer back). */
  entry: number;
  /** Owner CPU per forwarded report beyond a local report's. */
  ownerExtra: number;
  /** nats-server CPU per forwarded report. */
  nats: number;
  /** Load generator CPU per report. */
  lg: number;
  /** Commits/s of one connection, one at a time; of 16 connections. */
  k1: number;
  kMany: number;
}

interface Prediction {
  rate: number;
  bound: string;
  bounds: Record<string, number>;
}

/** CPU µs per report of the whole cluster, per process. */
interface Demands {
  /** Each replica's (the load spread evenly: the replicas' total / N each). */
  replicas: number[];
  pg: number;
  nats: number;
  lg: number;
  /** Reports per commit at an owner. */
  r: number;
}

/** The model's demands for N replicas, a forwarded share f and r reports per commit. */
function demandsOf(inp: Inputs, n: number, f: number, r: number): Demands {
  const local = inp.repA + inp.repB / r;
  const dRep = local + f * (inp.entry + inp.ownerExtra);
  return {
    replicas: Array.from({ length: n }, () => dRep / n),
    pg: inp.pgA + inp.pgB / r,
    nats: f * inp.nats,
    lg: inp.lg,
    r,
  };
}

/** A run's own demands: each process's CPU in the run over the reports it answered. */
function demandsMeasured(run: RunResult): Demands {
  const per = (ms: number) => (ms * 1000) / Math.max(1, run.reports);
  return {
    replicas: run.cpuMs.replicas.map(per),
    pg: per(run.cpuMs.pg),
    nats: per(run.cpuMs.nats),
    lg: per(run.cpuMs.lg),
    r: run.reportsPerCommit,
  };
}

/**
 * The model (docs/capacity.md) for this machine's layout: the lowest of the bounds. Pinned, each
 * core bounds what is pinned to it; what floats counts in the bound over all cores.
 */
function predict(inp: Inputs, d: Demands): Prediction {
  const bounds: Record<string, number> = {};
  if (PIN) {
    for (let k = 0; k < CORES; k++) {
      let pinned = 0;
      const who: string[] = [];
      d.replicas.forEach((x, i) => {
        if (i % CORES === k) {
          pinned += x;
          who.push(`r${i + 1}`);
        }
      });
      if (k === LG_CORE) {
        pinned += d.lg;
        who.push('load generator');
      }
      if (k === PG_CORE) {
        pinned += d.pg;
        who.push('postgres');
      }
      if (pinned > 0) bounds[`core ${k} (${who.join(' + ')})`] = 1e6 / pinned;
    }
  } else {
    bounds['one replica, one core'] = 1e6 / Math.max(...d.replicas);
    bounds['load generator, one core'] = 1e6 / d.lg;
  }
  const all = d.replicas.reduce((x, y) => x + y, 0) + d.pg + d.nats + d.lg;
  bounds[`all ${CORES} cores`] = (CORES * 1e6) / all;
  bounds['PostgreSQL commits/s × r'] = inp.kMany * d.r;
  bounds['one commit at a time per replica'] = d.replicas.length * inp.k1 * d.r;
  let bound = '';
  let rate = Infinity;
  for (const [name, x] of Object.entries(bounds))
    if (x < rate) {
      rate = x;
      bound = name;
    }
  return { rate, bound, bounds };
}

// ---- main ------------------------------------------------------------------------------------

/** Everything a run of this script measured (what `--report` reads back). */
interface Measured {
  command: string;
  date: string;
  seconds: number;
  machine: Record<string, string | number>;
  loadAverage: { atStart: number[]; atEnd: number[] };
  server: { postgres: string; synchronousCommit: string; fsync: string };
  settings: {
    seconds: number;
    warmupMs: number;
    inFlight: number;
    lowInFlight: number;
    callbacks: number;
    pin: boolean;
    pgCore: number | null;
    cores: number;
  };
  commitCeiling: [CommitCeiling, CommitCeiling];
  calibration: { local: RunResult; low: RunResult; forward: RunResult };
  runs: RunResult[];
}

const per = (msUsed: number, r: RunResult) => (msUsed * 1000) / Math.max(1, r.reports);

/** The model's inputs from the calibration runs. */
function inputsOf(m: Measured): Inputs {
  const { local, low, forward: fwd } = m.calibration;
  const [k1, kMany] = m.commitCeiling;
  // y = a + b / r through the two 1-replica runs.
  const fit = (yHi: number, rHi: number, yLo: number, rLo: number) => {
    const b = (yLo - yHi) / (1 / rLo - 1 / rHi);
    return { a: yHi - b / rHi, b };
  };
  const rep = fit(
    per(local.cpuMs.replicas[0]!, local),
    local.reportsPerCommit,
    per(low.cpuMs.replicas[0]!, low),
    low.reportsPerCommit,
  );
  const pgFit = fit(
    per(local.cpuMs.pg, local),
    local.reportsPerCommit,
    per(low.cpuMs.pg, low),
    low.reportsPerCommit,
  );
  return {
    repA: rep.a,
    repB: rep.b,
    pgA: pgFit.a,
    pgB: pgFit.b,
    entry: per(fwd.cpuMs.replicas[1]!, fwd),
    ownerExtra: per(fwd.cpuMs.replicas[0]!, fwd) - (rep.a + rep.b / fwd.reportsPerCommit),
    nats: per(fwd.cpuMs.nats, fwd),
    lg: per(local.cpuMs.lg, local),
    k1: k1.commitsPerSecond,
    kMany: kMany.commitsPerSecond,
  };
}

/** The model's share forwarded for a routing. */
const modelShare = (routing: Routing, n: number) =>
  routing === 'owner' ? 0 : routing === 'forward-all' ? 1 : (n - 1) / n;

/** The section of bench/RESULTS.md. */
function render(m: Measured, inputs: Inputs): string[] {
  const { local, low, forward: fwd } = m.calibration;
  const [k1, kMany] = m.commitCeiling;
  const { settings } = m;
  const us = (x: number) => f1(x);
  const ownerAt = per(fwd.cpuMs.replicas[0]!, fwd);
  const inputRows = [
    '| symbol | input | value | measured in |',
    '|---|---|---:|---|',
    `| c_rep(r) = a_rep + b_rep / r | replica CPU per local report (HTTP in, engine, its share of a commit) | a_rep ${us(inputs.repA)} µs + b_rep ${us(inputs.repB)} µs / r | 1 replica, ${settings.inFlight} in flight (${us(per(local.cpuMs.replicas[0]!, local))} µs at r = ${f1(local.reportsPerCommit)}) and ${settings.lowInFlight} in flight (${us(per(low.cpuMs.replicas[0]!, low))} µs at r = ${f1(low.reportsPerCommit)}) |`,
    `| c_entry | entry replica CPU per forwarded report | ${us(inputs.entry)} µs | 2 replicas, all ${fmt(fwd.reports)} reports sent to r2, all owned by r1 |`,
    `| c_own = c_owner − c_rep(r) | owner CPU per forwarded report beyond a local one (it reads NATS instead of HTTP) | ${us(inputs.ownerExtra)} µs | same run: r1 ${us(ownerAt)} µs at r = ${f1(fwd.reportsPerCommit)} |`,
    `| c_nats | nats-server CPU per forward | ${us(inputs.nats)} µs | same run |`,
    `| c_entry + c_own + c_nats | CPU one forward adds | ${us(inputs.entry + inputs.ownerExtra + inputs.nats)} µs | |`,
    `| c_pg(r) = a_pg + b_pg / r | PostgreSQL CPU per report (this run's backends and the server's own processes) | a_pg ${us(inputs.pgA)} µs + b_pg ${us(inputs.pgB)} µs / r | the two 1-replica runs (${us(per(local.cpuMs.pg, local))} and ${us(per(low.cpuMs.pg, low))} µs) |`,
    `| r | reports per commit at an owner (rows/commit as the engine counts them, \`rowsWritten\` / \`commits\`: ${f1(local.rowsPerCommit)} at 1 replica) | per run, below | \`stats().commits\` |`,
    `| K_1 | commits/s of one connection, one transaction at a time (as each replica commits) | ${fmt(k1.commitsPerSecond)} (${k1.meanMs.toFixed(3)} ms each; postgres ${us(k1.pgCpuUsPerCommit)} µs CPU/commit) | one-row UPDATE, autocommit |`,
    `| K_pg | PostgreSQL commits/s, 16 connections | ${fmt(kMany.commitsPerSecond)} (postgres ${us(kMany.pgCpuUsPerCommit)} µs CPU/commit) | same |`,
    `| c_lg | load generator CPU per report (this machine only) | ${us(inputs.lg)} µs | 1 replica, ${settings.inFlight} in flight |`,
  ];
  const runRows = [
    "| replicas | routing | forwarded (model) | r | predicted reports/s | first bound | measured reports/s | measured / predicted | bound from the run's own CPU/report | measured / that | p50 ms | p99 ms | cores busy | load generator | replicas | postgres | nats | other |",
    '|---:|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---|---:|---|---:|---:|---:|',
    ...m.runs.map((r) => {
      const f = modelShare(r.routing, r.replicas);
      const p = predict(inputs, demandsOf(inputs, r.replicas, f, r.reportsPerCommit));
      const own = predict(inputs, demandsMeasured(r));
      const core = (ms: number) => pct(ms / (r.seconds * 1000));
      return `| ${r.replicas} | ${r.routing} | ${pct(r.forwardedShare)} (${pct(f)}) | ${f1(r.reportsPerCommit)} | ${fmt(p.rate)} | ${p.bound} | ${fmt(r.rate)} | ${(r.rate / p.rate).toFixed(2)} | ${fmt(own.rate)} (${own.bound}) | ${(r.rate / own.rate).toFixed(2)} | ${r.p50Ms.toFixed(1)} | ${r.p99Ms.toFixed(1)} | ${r.coreBusy.map(pct).join(' / ')} | ${core(r.cpuMs.lg)} | ${r.cpuMs.replicas.map(core).join(' / ')} | ${core(r.cpuMs.pg)} | ${core(r.cpuMs.nats)} | ${core(r.cpuMs.other)} |`;
    }),
  ];
  const costRows = [
    '| replicas | routing | replicas (sum) | postgres | nats | load generator | all |',
    '|---:|---|---:|---:|---:|---:|---:|',
    ...m.runs.map((r) => {
      const d = demandsMeasured(r);
      const model = demandsOf(
        inputs,
        r.replicas,
        modelShare(r.routing, r.replicas),
        r.reportsPerCommit,
      );
      const sum = (x: Demands) => x.replicas.reduce((a, b) => a + b, 0);
      const all = (x: Demands) => sum(x) + x.pg + x.nats + x.lg;
      const cell = (a: number, b: number) => `${fmt(a)} (${fmt(b)})`;
      return `| ${r.replicas} | ${r.routing} | ${cell(sum(d), sum(model))} | ${cell(d.pg, model.pg)} | ${cell(d.nats, model.nats)} | ${cell(d.lg, model.lg)} | ${cell(all(d), all(model))} |`;
    }),
  ];
  // Dedicated cores: a core per replica (NATS beside them), PostgreSQL on cores of its own, the
  // load generator elsewhere; at the reports per commit of 1 replica and of the most replicas.
  const most = m.runs.filter((r) => r.routing === 'owner').at(-1) ?? local;
  const dedicated = [local.reportsPerCommit, most.reportsPerCommit].flatMap((r) =>
    (['owner', 'round-robin'] as const).map((routing) => {
      const f = routing === 'owner' ? 0 : 1; // (N-1)/N tends to 1
      const rep = inputs.repA + inputs.repB / r + f * (inputs.entry + inputs.ownerExtra);
      const perReplica = 1e6 / (rep + f * inputs.nats);
      const pgCore = 1e6 / (inputs.pgA + inputs.pgB / r);
      return `| ${f1(r)} | ${routing}${routing === 'round-robin' ? ' (N large)' : ''} | ${fmt(perReplica)} | ${fmt(pgCore)} | ${(pgCore / perReplica).toFixed(2)} | ${fmt(inputs.kMany * r)} |`;
    }),
  );
  const dedicatedRows = [
    "| r | routing | X per replica (its own core, NATS beside it) | X per PostgreSQL core | N* / P: replicas per PostgreSQL core before PostgreSQL's CPU is first | K_pg × r |",
    '|---:|---|---:|---:|---:|---:|',
    ...dedicated,
  ];
  const layouts = [...new Set(m.runs.map((r) => r.replicas))].map(
    (n) => `- ${n} replica${n > 1 ? 's' : ''}: ${layoutOf(n)}`,
  );
  const load = (xs: number[]) => xs.map((x) => x.toFixed(2)).join(' ');
  return [
    `PostgreSQL ${m.server.postgres} (\`synchronous_commit=${m.server.synchronousCommit}\`, \`fsync=${m.server.fsync}\`) and NATS on the same machine. Load average ${load(m.loadAverage.atStart)} at start (nothing else running), ${load(m.loadAverage.atEnd)} at the end (its own processes). ${settings.seconds} s timed per run after ${settings.warmupMs} ms of warm-up, ${settings.inFlight} reports in flight, ${fmt(settings.callbacks)} callbacks, \`progress\` reports over HTTP with a \`Callback-Dedup-Key\`. CPU per process from /proc/<pid>/stat over the timed window; shares are of one core. Took ${m.seconds.toFixed(0)} s.`,
    '',
    `Pinning (\`taskset -a -cp\`): ${settings.pin ? `replica i on core i mod ${settings.cores}, the load generator (the bench process, all its threads) on core ${settings.cores - 1}${settings.pgCore === null ? '; PostgreSQL and nats-server float (shared services: pinning them would pin other users of the machine)' : `; this run's PostgreSQL backends on core ${settings.pgCore}`}` : 'none'}. What shared which core:`,
    '',
    ...layouts,
    '',
    '### Inputs',
    '',
    ...inputRows,
    '',
    '### The model beside the pinned runs',
    '',
    `Predicted: the lowest bound of the model (docs/capacity.md) for this layout, from the inputs above, each run's own r and the model's forwarded share ((N−1)/N round-robin, 0 to the owner); "first bound" is the one that gives it. "Bound from the run's own CPU/report": the same bounds with each process's CPU per report as measured in that run. The owner row at 1 replica is the calibration run itself. The load generator's share is its column (of one core, on core ${settings.cores - 1}).`,
    '',
    ...runRows,
    '',
    'CPU per report of the whole cluster, µs: measured (model).',
    '',
    ...costRows,
    '',
    '### Where the model puts the first bottleneck',
    '',
    `On this machine (M = ${settings.cores}, replicas, PostgreSQL, NATS and the load generator on the same cores) the first bound is the shared cores for every run above. With a core per replica, PostgreSQL on P cores of its own and the load generator elsewhere, from the same inputs:`,
    '',
    ...dedicatedRows,
  ];
}

let failed = false;
const started = performance.now();
try {
  let m: Measured;
  if (values.report !== undefined) {
    m = JSON.parse(readFileSync(values.report, 'utf8')) as Measured;
    PIN = m.settings.pin;
    PG_CORE = m.settings.pgCore ?? undefined;
    CORES = m.settings.cores;
    LG_CORE = CORES - 1;
  } else {
    const admin = new pg.Client({ connectionString: pgUrl(`${APP}_admin`) });
    adminClient = admin;
    await admin.connect();
    const server = (
      await admin.query<{ version: string; sc: string; fsync: string }>(
        `SELECT current_setting('server_version') AS version,
                current_setting('synchronous_commit') AS sc, current_setting('fsync') AS fsync`,
      )
    ).rows[0]!;
    const loadAtStart = os.loadavg();
    if (PIN) pinTree(LG_CORE, process.pid);
    console.log(
      `PostgreSQL ${server.version} (synchronous_commit=${server.sc}, fsync=${server.fsync}), Node ${process.version}, ${CORES} cores; load average at start ${loadAtStart.map((x) => x.toFixed(2)).join(' ')}; pinning ${PIN ? 'on' : 'off'}`,
    );

    console.log('\n## PostgreSQL commits/s (one-row UPDATE, autocommit)');
    const k1 = await commitCeiling(1, 2_000);
    const kMany = await commitCeiling(16, 2_000);
    for (const k of [k1, kMany])
      console.log(
        `${k.connections} connection(s): ${fmt(k.commitsPerSecond)} commits/s, ${k.meanMs.toFixed(3)} ms each, postgres CPU ${f1(k.pgCpuUsPerCommit)} µs/commit`,
      );

    console.log('\n## inputs');
    const local = await run({ name: 'local', replicas: 1, routing: 'owner', inFlight: IN_FLIGHT });
    const low = await run({
      name: 'local-low',
      replicas: 1,
      routing: 'owner',
      inFlight: LOW_IN_FLIGHT,
    });
    const fwd = await run({
      name: 'forward',
      replicas: 2,
      routing: 'forward-all',
      inFlight: IN_FLIGHT,
    });

    console.log('\n## runs');
    const runs: RunResult[] = [];
    for (const routing of ['owner', 'round-robin'] as const)
      for (const n of REPLICA_COUNTS) {
        if (stopping) throw new Error('stopped');
        runs.push(
          routing === 'owner' && n === 1
            ? local
            : await run({ name: `${routing}-${n}`, replicas: n, routing, inFlight: IN_FLIGHT }),
        );
      }
    m = {
      command: `npx tsx bench/capacity.bench.ts${process.argv.length > 2 ? ` ${process.argv.slice(2).join(' ')}` : ''}`,
      date: new Date().toISOString(),
      seconds: (performance.now() - started) / 1000,
      machine: machine(),
      loadAverage: { atStart: loadAtStart, atEnd: os.loadavg() },
      server: { postgres: server.version, synchronousCommit: server.sc, fsync: server.fsync },
      settings: {
        seconds: SECONDS,
        warmupMs: WARMUP_MS,
        inFlight: IN_FLIGHT,
        lowInFlight: LOW_IN_FLIGHT,
        callbacks: CALLBACKS,
        pin: PIN,
        pgCore: PG_CORE ?? null,
        cores: CORES,
      },
      commitCeiling: [k1, kMany],
      calibration: { local, low, forward: fwd },
      runs,
    };
    writeFileSync(values.out, await format(JSON.stringify(m, null, 2), { parser: 'json' }));
    console.log(`wrote ${values.out}`);
  }
  const inputs = inputsOf(m);
  console.log(`inputs (µs): ${JSON.stringify(inputs)}`);
  const lines = render(m, inputs);
  console.log(`\n${lines.join('\n')}`);
  if (values.write)
    writeResultsSection(
      'capacity',
      'Capacity: N replicas on M cores (issue 24)',
      'bench/capacity.bench.ts',
      lines,
    );
} catch (error) {
  failed = true;
  console.error(error);
} finally {
  await killAllReplicas();
  for (const s of schemas)
    await dropSchema(PG_URL, s).catch((e: unknown) => console.error(`drop ${s}:`, e));
  await adminClient?.end().catch(() => undefined);
}
process.exitCode = failed ? 1 : 0;
