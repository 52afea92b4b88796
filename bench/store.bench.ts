/**
 * The durable SQLite store (issue 10), three workloads, each in its own Node process:
 *
 * - dispatch: `progress` reports, 64 in flight, to 100k pending callbacks (uniform), on the
 *   SQLite store (synchronous 'normal' and 'full') vs the memory engine vs a floor of raw
 *   better-sqlite3 upserting rows of the same size, in transactions of as many rows as the
 *   engine's group commits hold (measured), on the same schema and pragmas.
 * - latency: 64 producers, each sending a report and awaiting its answer, for N seconds, to 10k
 *   pending callbacks: p50/p99/p99.9 of the acknowledgement (answer after COMMIT).
 * - restart: a file of 1M pending callbacks (created through the engine), then in a fresh
 *   process (`--expose-gc`): time to `ready()` and heap per idle pending callback after it.
 *
 * Run: npm run bench:store [-- --quick]
 *      npx tsx bench/store.bench.ts --workload dispatch|latency|restart [--pending N] ...
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import Database from 'better-sqlite3';
import { createCallbackEngine, type CallbackEngine } from '../src/index.js';
import { sqliteStore } from '../src/store/sqlite.js';
import type { DurableStore } from '../src/store/store.js';
import {
  check,
  compare,
  machine,
  printRows,
  writeResults,
  writeResultsSection,
  createMany,
} from './lib.js';

const { values } = parseArgs({
  options: {
    workload: { type: 'string', default: 'all' },
    quick: { type: 'boolean', default: false },
    pending: { type: 'string' },
    restart: { type: 'string' },
    time: { type: 'string' },
    seconds: { type: 'string' },
    file: { type: 'string' },
    token: { type: 'string' },
    out: { type: 'string', default: 'bench/results-store.json' },
  },
});
const QUICK = values.quick;
const PENDING = Number(values.pending ?? (QUICK ? 5_000 : 100_000));
const RESTART_N = Number(values.restart ?? (QUICK ? 20_000 : 1_000_000));
const TIME = Number(values.time ?? (QUICK ? 300 : 2000));
const SECONDS = Number(values.seconds ?? (QUICK ? 1 : 5));
const OUT = values.out;
const IN_FLIGHT = 64;
const SECRET = 'bench-secret-0123456789';
const fmt = (n: number) => Math.round(n).toLocaleString('en-US');

const dir = mkdtempSync(join(tmpdir(), 'cbe-store-bench-'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));

type Sync = 'normal' | 'full';
const engineOn = (store: DurableStore | undefined, extra: Record<string, unknown> = {}) =>
  createCallbackEngine({
    node: 'bench',
    secrets: [SECRET],
    timeout: false,
    retention: true,
    ...(store ? { store } : {}),
    ...extra,
  });

// xorshift32 picks, shared by every alternative.
const PICKS = 1 << 20;
const picks = new Uint32Array(PICKS);
{
  let seed = 12345;
  for (let i = 0; i < PICKS; i++) {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    seed >>>= 0;
    picks[i] = seed % PENDING;
  }
}

/** The same schema and pragmas as src/store/sqlite.ts (kept in step by hand). */
function floorDb(path: string, sync: Sync): Database.Database {
  const db = new Database(path);
  db.pragma('locking_mode = EXCLUSIVE');
  db.pragma('journal_mode = WAL');
  db.pragma(`synchronous = ${sync.toUpperCase()}`);
  db.exec(`
CREATE TABLE callbacks (id TEXT PRIMARY KEY, seq INTEGER NOT NULL, anchor TEXT NOT NULL,
  status TEXT NOT NULL, due_at INTEGER, idem_key TEXT, corr_key TEXT, parent_id TEXT,
  body TEXT NOT NULL) WITHOUT ROWID;
CREATE INDEX callbacks_seq ON callbacks (seq);
CREATE INDEX callbacks_due ON callbacks (due_at) WHERE due_at IS NOT NULL;
CREATE INDEX callbacks_anchor_status ON callbacks (anchor, status);
CREATE UNIQUE INDEX callbacks_idem ON callbacks (idem_key) WHERE idem_key IS NOT NULL;
CREATE INDEX callbacks_corr ON callbacks (corr_key, seq) WHERE corr_key IS NOT NULL;
CREATE INDEX callbacks_parent ON callbacks (parent_id, seq) WHERE parent_id IS NOT NULL;`);
  return db;
}

// ---- dispatch ---------------------------------------------------------------------------------

async function dispatchWorkload(): Promise<void> {
  const memory = engineOn(undefined);
  const stores = {
    normal: undefined as DurableStore | undefined,
    full: undefined as DurableStore | undefined,
  };
  const engines: Record<string, CallbackEngine> = { memory };
  for (const sync of ['normal', 'full'] as const) {
    const store = sqliteStore({ path: join(dir, `engine-${sync}.db`), synchronous: sync });
    stores[sync] = store;
    engines[sync] = engineOn(store);
  }
  const tokens: Record<string, string[]> = {};
  for (const [name, engine] of Object.entries(engines)) {
    engine.anchor('job');
    await engine.ready();
    const t0 = performance.now();
    tokens[name] = await createMany(engine, PENDING, 1000);
    console.log(
      `${name}: ${fmt(PENDING)} callbacks created in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
    );
  }

  let k = 0;
  const send = (engine: CallbackEngine, list: string[]) => {
    const ps: Promise<unknown>[] = [];
    for (let b = 0; b < IN_FLIGHT; b++) {
      ps.push(
        engine.dispatch({
          type: 'CALLBACK',
          callbackToken: list[picks[k++ & (PICKS - 1)]!]!,
          callbackStatus: 'progress',
          callbackData: { pct: k },
        }),
      );
    }
    return Promise.all(ps);
  };

  // Warm-up and correctness: every callback gets a report; reports per commit measured.
  const perCommit: Record<Sync, number> = { normal: 0, full: 0 };
  for (const [name, engine] of Object.entries(engines)) {
    const list = tokens[name]!;
    const before = engine.stats();
    for (let i = 0; i < PENDING; i += IN_FLIGHT) {
      await Promise.all(
        list.slice(i, i + IN_FLIGHT).map((callbackToken) =>
          engine.dispatch({
            type: 'CALLBACK',
            callbackToken,
            callbackStatus: 'progress',
            callbackData: { pct: 0 },
          }),
        ),
      );
    }
    const after = engine.stats();
    if (name !== 'memory')
      perCommit[name as Sync] =
        (after.rowsWritten - before.rowsWritten) / (after.commits - before.commits);
    const probe = await engine.get(list[picks[0]!]!);
    check(
      probe.status === 'progress' && probe.data.pct === 0,
      `${name} applied the warm-up report`,
    );
  }
  // The row the engine writes for a callback after a report: the floor writes rows of its size.
  const sample = stores.full!.list({
    afterSeq: -1,
    anchor: undefined,
    statuses: undefined,
    limit: 1,
  })[0]!;
  const stored = [sample.snapshot ?? '', ...sample.tail].join('\n');
  check(sample.status === 'progress' && stored.includes('"pct":0'), 'stored row holds the report');
  const template = sample.tail.find((e) => e.includes('"pct":0')) ?? stored;
  const bodyOf = (n: number) => template.replace('"pct":0', `"pct":${n}`);
  console.log(
    `engine row body: ${template.length} bytes; reports per group commit in warm-up: normal ${perCommit.normal.toFixed(1)}, full ${perCommit.full.toFixed(1)}`,
  );

  // The floor: raw better-sqlite3, same schema, same statement, batched as the engine's commits are.
  const floors: Record<Sync, { fn: () => void; db: Database.Database }> = {} as never;
  for (const sync of ['normal', 'full'] as const) {
    const db = floorDb(join(dir, `floor-${sync}.db`), sync);
    const upsert = db.prepare(
      `INSERT INTO callbacks (id, seq, anchor, status, due_at, idem_key, corr_key, parent_id, body)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (id) DO UPDATE SET status = excluded.status, due_at = excluded.due_at, body = excluded.body`,
    );
    // Random 22-character ids inserted in creation order, like the engine's callbackIds: the
    // B-tree gets the same page splits and fill factor as the engine's table.
    const ids = Array.from({ length: PENDING }, () => randomBytes(16).toString('base64url'));
    db.transaction(() => {
      for (let i = 0; i < PENDING; i++)
        upsert.run(ids[i], i, 'job', 'progress', null, null, null, null, bodyOf(0));
    })();
    // The statement the engine's store runs for this change: a progress report changes only the
    // row's body (status and due time stay), so only the body is updated.
    const updateBody = db.prepare('UPDATE callbacks SET body = ? WHERE id = ?');
    const tx = db.transaction((from: number, n: number) => {
      for (let j = from; j < from + n; j++) {
        const i = picks[j & (PICKS - 1)]!;
        updateBody.run(bodyOf(j), ids[i]);
      }
    });
    const batch = Math.max(1, Math.round(perCommit[sync]));
    floors[sync] = {
      db,
      fn: () => {
        for (let done = 0; done < IN_FLIGHT; done += batch) {
          tx(k, Math.min(batch, IN_FLIGHT - done));
          k += Math.min(batch, IN_FLIGHT - done);
        }
      },
    };
    floors[sync].fn();
    check(
      (db.prepare('SELECT COUNT(*) FROM callbacks').pluck().get() as number) === PENDING,
      `floor ${sync} has ${PENDING} rows`,
    );
  }

  const before = { normal: engines.normal!.stats(), full: engines.full!.stats() };
  const label = `durable dispatch, ${fmt(PENDING)} pending, ${IN_FLIGHT} in flight`;
  const rows = await compare(
    label,
    [
      { name: 'memory engine', batch: IN_FLIGHT, fn: () => send(memory, tokens.memory!) },
      {
        name: "sqlite engine, synchronous 'normal'",
        batch: IN_FLIGHT,
        fn: () => send(engines.normal!, tokens.normal!),
      },
      {
        name: "floor: better-sqlite3 row updates, synchronous 'normal'",
        batch: IN_FLIGHT,
        fn: floors.normal.fn,
      },
      {
        name: "sqlite engine, synchronous 'full'",
        batch: IN_FLIGHT,
        fn: () => send(engines.full!, tokens.full!),
      },
      {
        name: "floor: better-sqlite3 row updates, synchronous 'full'",
        batch: IN_FLIGHT,
        fn: floors.full.fn,
      },
    ],
    { timeMs: TIME },
  );
  printRows(rows);
  const timed: Record<Sync, number> = { normal: 0, full: 0 };
  for (const sync of ['normal', 'full'] as const) {
    const s = engines[sync]!.stats();
    timed[sync] = (s.rowsWritten - before[sync].rowsWritten) / (s.commits - before[sync].commits);
  }
  console.log(
    `reports per group commit while timing: normal ${timed.normal.toFixed(1)}, full ${timed.full.toFixed(1)}`,
  );
  writeResults(OUT, 'dispatch', {
    pending: PENDING,
    inFlight: IN_FLIGHT,
    rowBytes: template.length,
    reportsPerCommit: timed,
    floorBatch: { normal: Math.round(perCommit.normal), full: Math.round(perCommit.full) },
    rows,
  });
  for (const e of Object.values(engines)) await e.close();
  for (const f of Object.values(floors)) f.db.close();
}

/** One row of the latency workload. */
interface LatencyRow {
  name: string;
  acks: number;
  opsPerSec: number;
  p50ms: number;
  p99ms: number;
  p999ms: number;
}

// ---- latency ----------------------------------------------------------------------------------

async function latencyWorkload(): Promise<void> {
  const pending = QUICK ? 2_000 : 10_000;
  const out: LatencyRow[] = [];
  for (const kind of ['memory', 'normal', 'full'] as const) {
    const engine = engineOn(
      kind === 'memory'
        ? undefined
        : sqliteStore({ path: join(dir, `latency-${kind}.db`), synchronous: kind }),
    );
    engine.anchor('job');
    await engine.ready();
    const tokens = await createMany(engine, pending, 1000);
    const probe = await engine.dispatch({
      type: 'CALLBACK',
      callbackToken: tokens[0]!,
      callbackStatus: 'progress',
      callbackData: { x: 1 },
    });
    check(probe.status === 'progress', `${kind}: report answered`);
    const lat: number[] = [];
    let until = 0;
    let n = 0;
    // Each producer checks the clock: the memory engine answers in microtasks, so a timer would
    // never get to fire while producers run.
    const producer = async () => {
      while (performance.now() < until) {
        const token = tokens[picks[n++ & (PICKS - 1)]! % pending]!;
        const t = performance.now();
        await engine.dispatch({
          type: 'CALLBACK',
          callbackToken: token,
          callbackStatus: 'progress',
          callbackData: { n },
        });
        lat.push(performance.now() - t);
      }
    };
    // One second of warm-up, then the measured window.
    until = performance.now() + 1000;
    await Promise.all(Array.from({ length: IN_FLIGHT }, producer));
    lat.length = 0;
    const t0 = performance.now();
    until = t0 + SECONDS * 1000;
    await Promise.all(Array.from({ length: IN_FLIGHT }, producer));
    const secs = (performance.now() - t0) / 1000;
    lat.sort((a, b) => a - b);
    const q = (p: number) => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))]!;
    const name = kind === 'memory' ? 'memory engine' : `sqlite engine, synchronous '${kind}'`;
    out.push({
      name,
      acks: lat.length,
      opsPerSec: lat.length / secs,
      p50ms: q(0.5),
      p99ms: q(0.99),
      p999ms: q(0.999),
    });
    console.log(
      `${name}: ${fmt(lat.length / secs)} acks/s, p50 ${q(0.5).toFixed(3)} ms, p99 ${q(0.99).toFixed(3)} ms, p99.9 ${q(0.999).toFixed(3)} ms`,
    );
    await engine.close();
  }
  writeResults(OUT, 'latency', { pending, producers: IN_FLIGHT, seconds: SECONDS, rows: out });
}

// ---- restart ----------------------------------------------------------------------------------

async function restartWorkload(): Promise<void> {
  const path = join(dir, 'restart.db');
  const t0 = performance.now();
  const engine = engineOn(sqliteStore({ path, synchronous: 'normal' }));
  engine.anchor('job');
  await engine.ready();
  let last = '';
  const chunk = 2000;
  for (let i = 0; i < RESTART_N; i += chunk) {
    const batch = await createMany(engine, Math.min(chunk, RESTART_N - i), chunk);
    last = batch[batch.length - 1]!;
    if (i % 100_000 === 0 && i > 0)
      console.log(`  ${fmt(i)} created, ${fmt(i / ((performance.now() - t0) / 1000))}/s`);
  }
  check(engine.stats().active === RESTART_N, `${RESTART_N} active before restart`);
  await engine.close();
  const genSeconds = (performance.now() - t0) / 1000;
  console.log(
    `generated ${fmt(RESTART_N)} pending callbacks through engine.create() in ${genSeconds.toFixed(1)} s (${fmt(RESTART_N / genSeconds)}/s)`,
  );
  const runs: { readyMs: number; heapBytesPerCallback: number; rssDeltaMB: number }[] = [];
  for (let r = 0; r < 3; r++) {
    const text = execFileSync(
      process.execPath,
      [
        '--expose-gc',
        '--import',
        'tsx',
        'bench/store.bench.ts',
        '--workload',
        'restart-child',
        '--file',
        path,
        '--restart',
        String(RESTART_N),
        '--token',
        last,
      ],
      { encoding: 'utf8' },
    );
    const line = text.trim().split('\n').at(-1)!;
    runs.push(JSON.parse(line) as (typeof runs)[number]);
    console.log(`restart ${r + 1}: ${line}`);
  }
  const sorted = [...runs].sort((a, b) => a.readyMs - b.readyMs);
  writeResults(OUT, 'restart', {
    pending: RESTART_N,
    generatedWith: 'engine.create(), 2000 concurrent at a time, synchronous normal',
    generateSeconds: genSeconds,
    fileBytes: statSync(path).size,
    runs,
    medianReadyMs: sorted[1]!.readyMs,
    medianHeapBytesPerCallback: [...runs].sort(
      (a, b) => a.heapBytesPerCallback - b.heapBytesPerCallback,
    )[1]!.heapBytesPerCallback,
  });
}

/** In a fresh process: time to ready() on the file, heap per pending callback after it. */
async function restartChild(): Promise<void> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error('run with --expose-gc');
  const full = () => {
    for (let i = 0; i < 3; i++) gc();
  };
  // Load every module (better-sqlite3, the machine, the codec) on an empty file first, so the
  // heap difference below is what the pending callbacks cost.
  const warm = engineOn(sqliteStore({ path: join(dir, 'empty.db') }));
  warm.anchor('job');
  await warm.ready();
  await warm.close();
  full();
  const h0 = process.memoryUsage();
  const t0 = performance.now();
  const engine = engineOn(sqliteStore({ path: values.file! }));
  engine.anchor('job');
  await engine.ready();
  const readyMs = performance.now() - t0;
  full();
  const h1 = process.memoryUsage();
  const n = RESTART_N;
  const active = engine.stats().active;
  // Correctness after the timing: every callback counted, a token minted before the restart verifies.
  const token = values.token!;
  const answer = await engine.dispatch({
    type: 'CALLBACK',
    callbackToken: token,
    callbackStatus: 'progress',
    callbackData: { after: 1 },
  });
  check(active === n, `recovered ${n} active (got ${active})`);
  check(answer.status === 'progress', 'a pre-restart token answers after ready()');
  await engine.close();
  console.log(
    JSON.stringify({
      readyMs,
      heapBytesPerCallback: (h1.heapUsed - h0.heapUsed) / n,
      rssDeltaMB: (h1.rss - h0.rss) / 2 ** 20,
    }),
  );
}

// ---- driver -----------------------------------------------------------------------------------

function runChild(workload: string): void {
  const args = [
    '--expose-gc',
    '--max-old-space-size=8000',
    '--import',
    'tsx',
    'bench/store.bench.ts',
    '--workload',
    workload,
    '--out',
    OUT,
  ];
  if (QUICK) args.push('--quick');
  for (const key of ['pending', 'restart', 'time', 'seconds'] as const)
    if (values[key] !== undefined) args.push(`--${key}`, values[key]);
  console.log(`\n$ node ${args.join(' ')}`);
  execFileSync(process.execPath, args, { stdio: 'inherit' });
}

type Results = {
  dispatch: {
    pending: number;
    rowBytes: number;
    reportsPerCommit: Record<Sync, number>;
    floorBatch: Record<Sync, number>;
    rows: { name: string; opsPerSec: number; rme: number }[];
  };
  latency: {
    pending: number;
    rows: LatencyRow[];
  };
  restart: {
    pending: number;
    generatedWith: string;
    generateSeconds: number;
    fileBytes: number;
    runs: { readyMs: number; heapBytesPerCallback: number; rssDeltaMB: number }[];
    medianReadyMs: number;
    medianHeapBytesPerCallback: number;
  };
};

function report(started: number): void {
  const r = JSON.parse(readFileSync(OUT, 'utf8')) as Results;
  const ops = (prefix: string) => r.dispatch.rows.find((x) => x.name.startsWith(prefix))!.opsPerSec;
  const targets: string[] = ['| target | measured | goal | met |', '|---|---:|---:|:-:|'];
  const add = (what: string, measured: string, goal: string, ok: boolean) =>
    targets.push(`| ${what} | ${measured} | ${goal} | ${ok ? 'yes' : 'no'} |`);
  for (const sync of ['normal', 'full'] as const) {
    const ours = ops(`sqlite engine, synchronous '${sync}'`);
    const vsMem = ours / ops('memory engine');
    const vsFloor = ours / ops(`floor: better-sqlite3 row updates, synchronous '${sync}'`);
    add(
      `durable dispatch (${sync}) at ${fmt(r.dispatch.pending)} pending vs the memory engine`,
      `${vsMem.toFixed(2)}×`,
      '≥ 0.5×',
      vsMem >= 0.5,
    );
    add(
      `durable dispatch (${sync}) at ${fmt(r.dispatch.pending)} pending vs raw better-sqlite3 row updates`,
      `${vsFloor.toFixed(2)}×`,
      '≥ 0.5×',
      vsFloor >= 0.5,
    );
  }
  for (const row of r.latency.rows.filter((x) => x.name.startsWith('sqlite')))
    add(
      `ack latency p99, ${IN_FLIGHT} producers (${row.name.slice(15)})`,
      `${row.p99ms.toFixed(2)} ms (p50 ${row.p50ms.toFixed(2)} ms)`,
      '≤ 10 ms',
      row.p99ms <= 10,
    );
  add(
    `restart: time to ready() with ${fmt(r.restart.pending)} pending (median of 3)`,
    `${fmt(r.restart.medianReadyMs)} ms`,
    '≤ 5000 ms',
    r.restart.medianReadyMs <= 5000,
  );
  add(
    `heap per idle pending callback after ready() (${fmt(r.restart.pending)} pending)`,
    `${r.restart.medianHeapBytesPerCallback.toFixed(1)} B`,
    '≤ 256 B',
    r.restart.medianHeapBytesPerCallback <= 256,
  );

  const detail = [
    '| alternative | reports/s | ratio to memory engine | ±% |',
    '|---|---:|---:|---:|',
  ];
  const mem = ops('memory engine');
  for (const row of r.dispatch.rows)
    detail.push(
      `| ${row.name} | ${fmt(row.opsPerSec)} | ${(row.opsPerSec / mem).toFixed(3)} | ${row.rme.toFixed(1)} |`,
    );
  const lat = [
    '| alternative | acks/s | p50 ms | p99 ms | p99.9 ms |',
    '|---|---:|---:|---:|---:|',
  ];
  for (const row of r.latency.rows)
    lat.push(
      `| ${row.name} | ${fmt(row.opsPerSec)} | ${row.p50ms.toFixed(3)} | ${row.p99ms.toFixed(3)} | ${row.p999ms.toFixed(3)} |`,
    );
  const minutes = ((Date.now() - started) / 60_000).toFixed(1);
  const lines = [
    `${Number.isNaN(started) ? 'Workloads run one at a time.' : `Took ${minutes} min.`} \`synchronous 'full'\` fsyncs the WAL on every commit (an acknowledged report survives power loss); \`'normal'\` survives a process crash, not a power loss. See bench/README.md.`,
    '',
    ...targets,
    '',
    `### Durable dispatch: \`progress\` reports, ${IN_FLIGHT} in flight, uniform over ${fmt(r.dispatch.pending)} pending`,
    '',
    `Engine row body ${r.dispatch.rowBytes} bytes. Reports per group commit while timing: normal ${r.dispatch.reportsPerCommit.normal.toFixed(1)}, full ${r.dispatch.reportsPerCommit.full.toFixed(1)}; the floor commits every ${r.dispatch.floorBatch.normal} (normal) / ${r.dispatch.floorBatch.full} (full) upserts, as measured in the warm-up.`,
    '',
    ...detail,
    '',
    `### Acknowledgement latency: ${IN_FLIGHT} producers, each one report at a time, ${fmt(r.latency.pending)} pending`,
    '',
    ...lat,
    '',
    `### Restart with ${fmt(r.restart.pending)} pending callbacks`,
    '',
    `File generated through ${r.restart.generatedWith} in ${r.restart.generateSeconds.toFixed(1)} s; ${(r.restart.fileBytes / 2 ** 20).toFixed(0)} MiB (main file, after close). Each restart in a fresh process (\`--expose-gc\`; modules loaded on an empty file first; heap = \`heapUsed\` after full GCs, after minus before, over ${fmt(r.restart.pending)}):`,
    '',
    '| run | time to ready() | heap per pending callback | RSS growth |',
    '|---:|---:|---:|---:|',
    ...r.restart.runs.map(
      (x, i) =>
        `| ${i + 1} | ${fmt(x.readyMs)} ms | ${x.heapBytesPerCallback.toFixed(1)} B | ${x.rssDeltaMB.toFixed(0)} MiB |`,
    ),
  ];
  console.log(`\n${lines.join('\n')}`);
  if (!QUICK)
    writeResultsSection('store', 'Durable SQLite store (issue 10)', 'bench/store.bench.ts', lines);
  writeResults(OUT, 'summary', { machine: machine(), minutes: Number(minutes) });
}

const workload = values.workload;
if (workload === 'dispatch') await dispatchWorkload();
else if (workload === 'latency') await latencyWorkload();
else if (workload === 'restart') await restartWorkload();
else if (workload === 'restart-child') await restartChild();
else if (workload === 'report') report(NaN);
else if (workload === 'all') {
  const started = Date.now();
  if (existsSync(OUT)) writeFileSync(OUT, '{}\n');
  runChild('dispatch');
  runChild('latency');
  runChild('restart');
  report(started);
} else throw new Error(`unknown --workload ${workload}`);
