/**
 * The durable SQLite store (issue 10), three workloads, each in its own Node process:
 *
 * - dispatch: `progress` reports, 64 in flight, to 100k pending callbacks (uniform), on the
 *   SQLite store (synchronous 'normal' and 'full') vs the memory engine vs a floor of raw SQL
 *   doing the engine's durable work (journal appends of the engine's entries, row updates where
 *   status, due time or owed change, snapshot rewrites by the engine's rule) on a copy of the
 *   engine's file, in transactions of as many reports as the engine's group commits hold
 *   (measured), on the same driver, schema, pragmas and checkpoint thread. Also the time to
 *   create the 100k callbacks on each.
 * - latency: 64 producers, each sending a report and awaiting its answer, for N seconds, to 10k
 *   pending callbacks: p50/p99/p99.9 of the acknowledgement (answer after COMMIT).
 * - restart: a file of 1M pending callbacks (created through the engine), then in a fresh
 *   process (`--expose-gc`): time to `ready()` and heap per idle pending callback after it.
 *
 * Run: npm run bench:store [-- --quick]
 *      npx tsx bench/store.bench.ts --workload dispatch|latency|restart [--pending N]
 *        [--driver auto|node:sqlite|better-sqlite3] [--rounds R] ...
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createCallbackEngine, type CallbackEngine } from '../src/index.js';
import { MACHINE_VERSION } from '../src/lifecycle/persist.js';
import { decodeRecord, encodeSnapshot } from '../src/registry/record-codec.js';
import { sqliteStore } from '../src/store/sqlite.js';
import {
  openConnection,
  type SqlConnection,
  type SqliteDriver,
  type SqliteDriverOption,
} from '../src/store/sqlite/driver.js';
import { BACKSTOP_PAGES, Checkpointer } from '../src/store/sqlite/checkpointer.js';
import { migrate } from '../src/store/sqlite/schema.js';
import { CACHE_KIB } from '../src/store/sqlite/store.js';
import type { DurableStore } from '../src/store/store.js';
import {
  check,
  compare,
  machine,
  printRows,
  type Row,
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
    driver: { type: 'string', default: 'auto' },
    rounds: { type: 'string', default: '1' },
  },
});
const QUICK = values.quick;
const PENDING = Number(values.pending ?? (QUICK ? 5_000 : 100_000));
const RESTART_N = Number(values.restart ?? (QUICK ? 20_000 : 1_000_000));
const TIME = Number(values.time ?? (QUICK ? 300 : 2000));
const SECONDS = Number(values.seconds ?? (QUICK ? 1 : 5));
const OUT = values.out;
const IN_FLIGHT = 64;
const DRIVER = values.driver as SqliteDriverOption;
const ROUNDS = Number(values.rounds);
const FLOOR = 'floor: raw SQL, the same journal appends, row updates and snapshots';
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

/**
 * The floor's database: the engine's own schema (its migration) and pragmas, on the driver the
 * engine runs on, holding a copy of what the engine's file holds after the warm-up (rows,
 * snapshots, journal), inserted in the engine's write order so the B-trees get the same page
 * splits and fill factor.
 */
async function floorDb(
  path: string,
  sync: Sync,
  driver: SqliteDriver,
  enginePath: string,
): Promise<SqlConnection> {
  const db = await openConnection(driver, path);
  db.exec('PRAGMA busy_timeout = 2000');
  db.exec('PRAGMA journal_mode = WAL');
  migrate(db, path, MACHINE_VERSION);
  db.exec(`PRAGMA synchronous = ${sync.toUpperCase()}`);
  // The engine's page cache and checkpoints (on a thread of their own, see src/store/sqlite/).
  db.exec(`PRAGMA cache_size = -${CACHE_KIB}`);
  db.exec(`PRAGMA wal_autocheckpoint = ${BACKSTOP_PAGES}`);
  db.exec(`ATTACH DATABASE '${enginePath.replaceAll("'", "''")}' AS eng`);
  db.exec('BEGIN');
  db.exec(`
INSERT INTO callbacks (id, seq, anchor, status, due_at, idem_key, corr_key, parent_id, head, owed, meta)
  SELECT id, seq, anchor, status, due_at, idem_key, corr_key, parent_id, head, owed, meta
  FROM eng.callbacks ORDER BY seq;
INSERT INTO snapshots (id, seq, body)
  SELECT s.id, s.seq, s.body FROM eng.snapshots s JOIN eng.callbacks c ON c.id = s.id ORDER BY c.seq;
INSERT INTO journal (callback_id, seq, at, entry)
  SELECT j.callback_id, j.seq, j.at, j.entry FROM eng.journal j
  JOIN eng.callbacks c ON c.id = j.callback_id ORDER BY j.seq, c.seq;`);
  db.exec('COMMIT');
  db.exec('DETACH DATABASE eng');
  return db;
}

/** The engine's rule for rewriting a callback's snapshot (src/registry/registry.ts), kept in step by hand. */
const SNAPSHOT_MIN_BYTES = 4096;
const SNAPSHOT_MAX_ENTRIES = 256;

// ---- dispatch ---------------------------------------------------------------------------------

async function dispatchWorkload(): Promise<void> {
  const memory = engineOn(undefined);
  const stores = {
    normal: undefined as DurableStore | undefined,
    full: undefined as DurableStore | undefined,
  };
  const engines: Record<string, CallbackEngine> = { memory };
  const paths = { normal: join(dir, 'engine-normal.db'), full: join(dir, 'engine-full.db') };
  for (const sync of ['normal', 'full'] as const) {
    const store = sqliteStore({ path: paths[sync], synchronous: sync, driver: DRIVER });
    stores[sync] = store;
    engines[sync] = engineOn(store);
  }
  const tokens: Record<string, string[]> = {};
  const createSeconds: Record<string, number> = {};
  for (const [name, engine] of Object.entries(engines)) {
    engine.anchor('job');
    await engine.ready();
    const t0 = performance.now();
    tokens[name] = await createMany(engine, PENDING, 1000);
    createSeconds[name] = (performance.now() - t0) / 1000;
    console.log(
      `${name}: ${fmt(PENDING)} callbacks created in ${createSeconds[name].toFixed(2)} s`,
    );
  }
  const driver = (stores.full as unknown as { driver: SqliteDriver }).driver;
  console.log(`sqlite driver: ${driver} (Node ${process.version})`);

  let k = 0;
  const sent: Record<string, number> = { memory: 0, normal: 0, full: 0 };
  const send = (name: string, engine: CallbackEngine, list: string[]) => {
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
    sent[name]! += IN_FLIGHT;
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
    if (name !== 'memory') perCommit[name as Sync] = PENDING / (after.commits - before.commits);
    const probe = await engine.get(list[picks[0]!]!);
    check(
      probe.status === 'progress' && probe.data.pct === 0,
      `${name} applied the warm-up report`,
    );
  }
  // What the engine stores for a callback after a report: the floor writes entries and
  // snapshots of their size.
  const sample = stores.full!.list({
    afterSeq: -1,
    anchor: undefined,
    statuses: undefined,
    limit: 1,
  })[0]!;
  const entry = sample.tail.find((e) => e.includes('"pct":0'));
  const parts = entry?.split(/"seq":\d+/);
  const pct = parts?.map((x) => x.split('"pct":0'));
  check(
    sample.status === 'progress' && parts?.length === 2 && pct?.flat().length === 3,
    'stored journal holds the report',
  );
  // The entry of a report with its seq and its data's pct set.
  const [[a, b], [c]] = pct as [string[], string[]];
  const entryOf =
    b === undefined
      ? (seq: number, n: number) => `${a}"seq":${seq}${c}`.replace('"pct":0', `"pct":${n}`)
      : (seq: number, n: number) => `${a}"pct":${n}${b}"seq":${seq}${c}`;
  const decoded = decodeRecord(sample);
  const snapshotBody = encodeSnapshot(decoded.record, decoded.lastActivity, undefined);
  console.log(
    `engine journal entry ${entry!.length} bytes, snapshot ${snapshotBody.length} bytes; reports per group commit in warm-up: normal ${perCommit.normal.toFixed(1)}, full ${perCommit.full.toFixed(1)}`,
  );

  // The floor: raw SQL on the engine's driver, schema and pragmas, doing the engine's durable
  // work for each report (append the entry, update the row when its status, due time or owed
  // flag changes, rewrite the snapshot when the entries since the last one outweigh it),
  // batched as its commits are.
  const floors: Record<Sync, { fn: () => void; db: SqlConnection; checkpointer: Checkpointer }> =
    {} as never;
  for (const sync of ['normal', 'full'] as const) {
    const floorPath = join(dir, `floor-${sync}.db`);
    const db = await floorDb(floorPath, sync, driver, paths[sync]);
    const checkpointer = new Checkpointer(floorPath, driver);
    const rows = db
      .prepare(
        `SELECT c.id, c.status, c.due_at AS due, c.owed,
           (SELECT max(j.seq) FROM journal j WHERE j.callback_id = c.id) AS head,
           coalesce(length(s.body), 0) AS snap,
           (SELECT coalesce(sum(length(j.entry)), 0) FROM journal j
             WHERE j.callback_id = c.id AND j.seq > coalesce(s.seq, 0)) AS tail,
           (SELECT count(*) FROM journal j
             WHERE j.callback_id = c.id AND j.seq > coalesce(s.seq, 0)) AS entries
         FROM callbacks c LEFT JOIN snapshots s ON s.id = c.id ORDER BY c.seq`,
      )
      .all() as {
      id: string;
      status: string;
      due: number | null;
      owed: number | null;
      head: number;
      snap: number;
      tail: number;
      entries: number;
    }[];
    check(rows.length === PENDING, `floor ${sync} has ${PENDING} rows`);
    // The engine's tokens are in creation order: index i of the picks is row i here.
    const ids = rows.map((r) => r.id);
    // The engine rewrites a row only when its status, due time or owed flag changes; a
    // progress report to a callback in progress with no due time changes none of them.
    const rowChanges = rows.map(
      (r) => r.status !== 'progress' || r.due !== null || r.owed !== null,
    );
    const head = Int32Array.from(rows, (r) => r.head);
    const snapBytes = Int32Array.from(rows, (r) => r.snap);
    const tailBytes = Int32Array.from(rows, (r) => r.tail);
    const tailEntries = Int32Array.from(rows, (r) => r.entries);
    const append = db.prepare(
      'INSERT INTO journal (callback_id, seq, at, entry) VALUES (?, ?, ?, ?)',
    );
    const update = db.prepare(
      'UPDATE callbacks SET status = ?, due_at = ?, head = ?, owed = ? WHERE id = ?',
    );
    const snapshot = db.prepare(
      `INSERT INTO snapshots (id, seq, body) VALUES (?, ?, ?)
       ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, body = excluded.body`,
    );
    const report = (j: number) => {
      const i = picks[j & (PICKS - 1)]!;
      const seq = ++head[i]!;
      const json = entryOf(seq, j);
      append.run(ids[i], seq, Date.now(), json);
      if (rowChanges[i]) {
        update.run('progress', null, seq, null, ids[i]);
        rowChanges[i] = false;
      }
      tailBytes[i]! += json.length;
      if (
        ++tailEntries[i]! >= SNAPSHOT_MAX_ENTRIES ||
        tailBytes[i]! > Math.max(SNAPSHOT_MIN_BYTES, snapBytes[i]!)
      ) {
        snapshot.run(ids[i], seq, snapshotBody);
        snapBytes[i] = snapshotBody.length;
        tailBytes[i] = 0;
        tailEntries[i] = 0;
      }
    };
    const tx = (from: number, n: number) => {
      db.exec('BEGIN IMMEDIATE');
      for (let j = from; j < from + n; j++) report(j);
      db.exec('COMMIT');
      checkpointer.committed();
    };
    const batch = Math.max(1, Math.round(perCommit[sync]));
    floors[sync] = {
      db,
      checkpointer,
      fn: () => {
        for (let done = 0; done < IN_FLIGHT; done += batch) {
          const n = Math.min(batch, IN_FLIGHT - done);
          tx(k, n);
          k += n;
        }
      },
    };
    floors[sync].fn();
    const i0 = picks[(k - 1) & (PICKS - 1)]!;
    const stored = db
      .prepare('SELECT max(seq) AS head FROM journal WHERE callback_id = ?')
      .get(ids[i0]) as { head: number };
    check(stored.head === head[i0], `floor ${sync} applied its report`);
  }

  const before = { normal: engines.normal!.stats(), full: engines.full!.stats() };
  const sentBefore = { ...sent };
  const label = `durable dispatch, ${fmt(PENDING)} pending, ${IN_FLIGHT} in flight`;
  const alternatives = [
    { name: 'memory engine', batch: IN_FLIGHT, fn: () => send('memory', memory, tokens.memory!) },
    {
      name: "sqlite engine, synchronous 'normal'",
      batch: IN_FLIGHT,
      fn: () => send('normal', engines.normal!, tokens.normal!),
    },
    { name: `${FLOOR}, synchronous 'normal'`, batch: IN_FLIGHT, fn: floors.normal.fn },
    {
      name: "sqlite engine, synchronous 'full'",
      batch: IN_FLIGHT,
      fn: () => send('full', engines.full!, tokens.full!),
    },
    { name: `${FLOOR}, synchronous 'full'`, batch: IN_FLIGHT, fn: floors.full.fn },
  ];
  // Several rounds (--rounds): each alternative's median over them, so that a neighbour's load
  // during one alternative's turn moves the ratios less.
  const perRound: Row[][] = [];
  for (let r = 0; r < ROUNDS; r++) {
    perRound.push(await compare(label, alternatives, { timeMs: TIME }));
    if (ROUNDS > 1)
      console.log(`round ${r + 1}: ${perRound[r]!.map((x) => fmt(x.opsPerSec)).join(', ')}`);
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const rows = perRound[0]!.map((row, i) => ({
    ...row,
    opsPerSec: median(perRound.map((rs) => rs[i]!.opsPerSec)),
    rme: median(perRound.map((rs) => rs[i]!.rme)),
  }));
  for (const row of rows) row.ratio = row.opsPerSec / rows[0]!.opsPerSec;
  printRows(rows);
  const timed: Record<Sync, number> = { normal: 0, full: 0 };
  for (const sync of ['normal', 'full'] as const) {
    const s = engines[sync]!.stats();
    timed[sync] = (sent[sync]! - sentBefore[sync]!) / (s.commits - before[sync].commits);
  }
  console.log(
    `reports per group commit while timing: normal ${timed.normal.toFixed(1)}, full ${timed.full.toFixed(1)}`,
  );
  const createRatio = {
    normal: createSeconds.memory! / createSeconds.normal!,
    full: createSeconds.memory! / createSeconds.full!,
  };
  console.log(
    `create ${fmt(PENDING)} (1,000 concurrent at a time) vs the memory engine: normal ${createRatio.normal.toFixed(2)}×, full ${createRatio.full.toFixed(2)}×`,
  );
  writeResults(OUT, 'dispatch', {
    pending: PENDING,
    inFlight: IN_FLIGHT,
    driver,
    entryBytes: entry!.length,
    snapshotBytes: snapshotBody.length,
    reportsPerCommit: timed,
    floorBatch: { normal: Math.round(perCommit.normal), full: Math.round(perCommit.full) },
    createSeconds,
    rows,
  });
  for (const e of Object.values(engines)) await e.close();
  for (const f of Object.values(floors)) {
    await f.checkpointer.stop();
    f.db.close();
  }
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
        : sqliteStore({ path: join(dir, `latency-${kind}.db`), synchronous: kind, driver: DRIVER }),
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
  for (const key of ['pending', 'restart', 'time', 'seconds', 'driver', 'rounds'] as const)
    if (values[key] !== undefined) args.push(`--${key}`, values[key]);
  console.log(`\n$ node ${args.join(' ')}`);
  execFileSync(process.execPath, args, { stdio: 'inherit' });
}

type Results = {
  dispatch: {
    pending: number;
    driver: string;
    entryBytes: number;
    snapshotBytes: number;
    createSeconds: Record<string, number>;
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
    const vsFloor = ours / ops(`${FLOOR}, synchronous '${sync}'`);
    add(
      `durable dispatch (${sync}) at ${fmt(r.dispatch.pending)} pending vs the memory engine`,
      `${vsMem.toFixed(2)}×`,
      '≥ 0.6×',
      vsMem >= 0.6,
    );
    add(
      `durable dispatch (${sync}) at ${fmt(r.dispatch.pending)} pending vs the raw floor doing the same durable work`,
      `${vsFloor.toFixed(2)}×`,
      '≥ 0.7×',
      vsFloor >= 0.7,
    );
    const create = r.dispatch.createSeconds.memory! / r.dispatch.createSeconds[sync]!;
    add(
      `durable create (${sync}), ${fmt(r.dispatch.pending)} callbacks vs the memory engine`,
      `${create.toFixed(2)}×`,
      '≥ 0.5×',
      create >= 0.5,
    );
  }
  for (const row of r.latency.rows.filter((x) => x.name.startsWith('sqlite')))
    add(
      `ack latency p99, ${IN_FLIGHT} producers (${row.name.slice(15)})`,
      `${row.p99ms.toFixed(2)} ms (p50 ${row.p50ms.toFixed(2)} ms)`,
      '≤ 5 ms',
      row.p99ms <= 5,
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
    `Driver ${r.dispatch.driver}. Engine journal entry ${r.dispatch.entryBytes} bytes, snapshot ${r.dispatch.snapshotBytes} bytes. Reports per group commit while timing: normal ${r.dispatch.reportsPerCommit.normal.toFixed(1)}, full ${r.dispatch.reportsPerCommit.full.toFixed(1)}; the floor commits every ${r.dispatch.floorBatch.normal} (normal) / ${r.dispatch.floorBatch.full} (full) reports, as measured in the warm-up. Creating ${fmt(r.dispatch.pending)} callbacks (1,000 concurrent at a time): memory ${r.dispatch.createSeconds.memory!.toFixed(2)} s, normal ${r.dispatch.createSeconds.normal!.toFixed(2)} s, full ${r.dispatch.createSeconds.full!.toFixed(2)} s.`,
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
    writeResultsSection(
      'store',
      'Durable SQLite store (issues 10, 24)',
      'bench/store.bench.ts',
      lines,
    );
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
