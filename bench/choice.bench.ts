/**
 * Two design choices, measured in one run, on a real PostgreSQL 15 and NATS 2.9:
 *
 * A) PostgreSQL driver for a group commit. One group commit = one transaction that
 *    (1) share-locks the touched shards and checks that they are all still ours (owner 'n1',
 *    epoch 1), (2) upserts N = 256 rows with ONE `INSERT ... SELECT * FROM unnest(arrays)
 *    ON CONFLICT (id) DO UPDATE`, (3) commits. Alternatives:
 *    - postgres.js `sql.begin(sql => [lock, upsert])` (the two statements are pipelined),
 *    - node-postgres `Client`: BEGIN / lock / upsert / COMMIT, each awaited (named statements),
 *    - floor: the same unnest upsert of 256 rows as one autocommit statement (postgres.js),
 *    - extra: lock and upsert folded into one autocommit statement (a locking CTE), postgres.js,
 *    - the same one statement on node-postgres (what postgresStore() ships: postgres.js 3.4
 *      crashes the process from a setImmediate when a connection dies mid-write, see
 *      porsager/postgres#1154 and #1208, which the PostgreSQL-restart test hit),
 *    - postgres.js, 8 concurrent transactions of 32 rows each over a pool of 4 connections
 *      (per-transaction latency while others are in flight).
 *    The shard check fails closed on the server (`1 / (count = expected)::int` raises
 *    division_by_zero), so a pipelined transaction rolls back before COMMIT when a shard moved;
 *    the client checks the returned count as well. Rows/s and the ratio to the floor.
 * B) Forwarding transport round trip: a ~300-byte JSON request, a ~200-byte JSON reply.
 *    - NATS request-reply: replier `subscribe(subject, { callback })` + `msg.respond`, requester
 *      `request(subject, data, { timeout })`, two connections in this process,
 *    - PostgreSQL LISTEN/NOTIFY with postgres.js: two `postgres()` instances, each `listen`s;
 *      the requester NOTIFYs the owner's channel with a request id and its reply channel, the
 *      replier NOTIFYs the reply channel. (NOTIFY payloads are limited to 8000 bytes.)
 *    One request at a time (latency) and 64 in flight (throughput).
 *
 * Everything lives in a private schema `bench_choice_<pid>`, dropped at the end (also on error or
 * Ctrl-C during the timed part).
 *
 * Run: npx tsx bench/choice.bench.ts [--time 1500] [--out bench/results-choice.json]
 * Env: BENCH_PG_URL (default postgres://postgres@127.0.0.1:5432/test),
 *      BENCH_NATS_URL (default nats://127.0.0.1:4222)
 */
import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import { parseArgs } from 'node:util';
import { connect, type NatsConnection } from 'nats';
import pg from 'pg';
import postgres from 'postgres';
import { closedLoop, quantile } from './lib.js';
import { Bench, type Statistics } from 'tinybench';

const { values } = parseArgs({
  options: {
    time: { type: 'string', default: '1500' },
    out: { type: 'string', default: 'bench/results-choice.json' },
  },
});
const TIME = Number(values.time);
const OUT = values.out;
const PG_URL = process.env.BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const NATS_URL = process.env.BENCH_NATS_URL ?? 'nats://127.0.0.1:4222';
const SCHEMA = `bench_choice_${process.pid}`;
const SHARDS = 64;
const ROWS = 256; // rows per group commit
const SMALL_ROWS = 32; // rows per transaction in the concurrent variant
const TX_IN_FLIGHT = 8;
const TX_PER_WORKER = 4; // transactions each of the 8 workers runs back to back per iteration
const POOL_MAX = 4;
const IN_FLIGHT = 64;
const REQ_PER_WORKER = 4; // requests each of the 64 workers runs back to back per iteration
const REQUEST_TIMEOUT_MS = 5000;
const NOTIFY_LIMIT = 8000; // bytes, PostgreSQL's default NOTIFY payload limit

function check(ok: boolean, what: string): void {
  if (!ok) throw new Error(`benchmark correctness check failed: ${what}`);
}

/** Pads `obj` with a `pad` string so its JSON is `bytes` long (ASCII). */
function jsonOf(obj: Record<string, unknown>, bytes: number): string {
  const bare = JSON.stringify({ ...obj, pad: '' });
  return JSON.stringify({ ...obj, pad: 'x'.repeat(Math.max(0, bytes - bare.length)) });
}

// ---------------------------------------------------------------------------------------------
// A) group commit

const STATUSES = ['pending', 'progress', 'done', 'failed'] as const;
const BODIES = Array.from({ length: 1024 }, (_, i) =>
  jsonOf(
    {
      type: 'com.example.job.progress',
      seq: i,
      source: 'https://partner.example.com/callbacks',
      data: { step: i % 17, percent: i % 100, message: 'still working on it' },
    },
    300,
  ),
);

interface Batch {
  ids: string[];
  shards: number[];
  statuses: string[];
  dueAts: number[];
  bodies: string[];
  /** Distinct shards touched, sorted. */
  touched: number[];
}

let bodyPick = 0;
function makeBatch(n: number, forceShard?: number): Batch {
  const b: Batch = { ids: [], shards: [], statuses: [], dueAts: [], bodies: [], touched: [] };
  const now = Date.now();
  for (let i = 0; i < n; i++) {
    b.ids.push(randomUUID());
    b.shards.push(i === 0 && forceShard !== undefined ? forceShard : (Math.random() * SHARDS) | 0);
    b.statuses.push(STATUSES[i & 3]!);
    b.dueAts.push(now + 60_000 + i);
    b.bodies.push(BODIES[bodyPick++ & 1023]!);
  }
  b.touched = [...new Set(b.shards)].sort((x, y) => x - y);
  return b;
}

// Same statement text for both drivers (postgres.js numbers its parameters the same way).
const LOCK_SQL = `SELECT count(*)::int AS n, 1 / (count(*) = $2)::int AS ok
  FROM (SELECT 1 FROM shards WHERE shard = ANY($1::int[]) AND owner = 'n1' AND epoch = 1
        FOR SHARE) s`;
const UPSERT_SQL = `INSERT INTO cb (id, shard, status, due_at, body)
  SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::bigint[], $5::text[])
  ON CONFLICT (id) DO UPDATE
    SET shard = EXCLUDED.shard, status = EXCLUDED.status, due_at = EXCLUDED.due_at,
        body = EXCLUDED.body`;
const SINGLE_SQL = `WITH fence AS (
    SELECT count(*)::int AS n
    FROM (SELECT 1 FROM shards WHERE shard = ANY($6::int[]) AND owner = 'n1' AND epoch = 1
          FOR SHARE) s)
  INSERT INTO cb (id, shard, status, due_at, body)
  SELECT u.* FROM unnest($1::text[], $2::int[], $3::text[], $4::bigint[], $5::text[]) u, fence
  WHERE 1 / (fence.n = $7)::int = 1
  ON CONFLICT (id) DO UPDATE
    SET shard = EXCLUDED.shard, status = EXCLUDED.status, due_at = EXCLUDED.due_at,
        body = EXCLUDED.body`;

type PjSql = postgres.ISql;
type LockRow = { n: number; ok: number };

const pjLock = (tx: PjSql, b: Batch) =>
  tx.unsafe<LockRow[]>(LOCK_SQL, [b.touched, b.touched.length], { prepare: true });
const pjUpsert = (tx: PjSql, b: Batch) =>
  tx.unsafe(UPSERT_SQL, [b.ids, b.shards, b.statuses, b.dueAts, b.bodies], { prepare: true });

/** postgres.js: BEGIN, then lock + upsert pipelined, then COMMIT. */
async function pjGroupCommit(sql: postgres.Sql, b: Batch): Promise<void> {
  const [lock] = await sql.begin((tx) => [pjLock(tx, b), pjUpsert(tx, b)] as const);
  const n = (lock as LockRow[])[0]?.n;
  check(n === b.touched.length, `postgres.js shard check: ${n} of ${b.touched.length}`);
}

/** The floor: the upsert alone, autocommit. */
async function pjFloor(sql: postgres.Sql, b: Batch): Promise<void> {
  await pjUpsert(sql, b);
}

/** Lock + upsert folded into one autocommit statement. */
async function pjSingle(sql: postgres.Sql, b: Batch): Promise<void> {
  const params = [b.ids, b.shards, b.statuses, b.dueAts, b.bodies, b.touched, b.touched.length];
  const r = await sql.unsafe(SINGLE_SQL, params, { prepare: true });
  check(r.count === b.ids.length, `single statement wrote ${r.count} of ${b.ids.length}`);
}

/** node-postgres: the lock CTE and the upsert as one statement (what postgresStore() ships). */
async function pgSingle(client: pg.Client, b: Batch): Promise<void> {
  const r = await client.query({
    name: 'cb_single',
    text: SINGLE_SQL,
    values: [b.ids, b.shards, b.statuses, b.dueAts, b.bodies, b.touched, b.touched.length],
  });
  check(r.rowCount === b.ids.length, `pg single statement wrote ${r.rowCount} of ${b.ids.length}`);
}

/** node-postgres: BEGIN / lock / upsert / COMMIT, each awaited. */
async function pgGroupCommit(client: pg.Client, b: Batch): Promise<void> {
  await client.query('BEGIN');
  try {
    const lock = await client.query<LockRow>({
      name: 'cb_lock',
      text: LOCK_SQL,
      values: [b.touched, b.touched.length],
    });
    const n = lock.rows[0]?.n;
    check(n === b.touched.length, `pg shard check: ${n} of ${b.touched.length}`);
    await client.query({
      name: 'cb_upsert',
      text: UPSERT_SQL,
      values: [b.ids, b.shards, b.statuses, b.dueAts, b.bodies],
    });
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK');
    throw error;
  }
}

// ---------------------------------------------------------------------------------------------
// B) forwarding transport

interface ForwardRequest {
  id: string;
  reply: string;
  pad: string;
}
interface ForwardReply {
  id: string;
  ok: boolean;
}

const OWNER_CHANNEL = `cb_owner_n1_${process.pid}`;
const REPLY_CHANNEL = `cb_reply_n2_${process.pid}`;
const SUBJECT = `cb.forward.n1.${process.pid}`;
let requestSeq = 0;

function requestPayload(id: string): string {
  return jsonOf(
    {
      id,
      reply: REPLY_CHANNEL,
      token: 'cbt_v1.n1.0123456789abcdef0123456789abcdef.sig0123456789abcdef',
      report: { type: 'progress', seq: requestSeq, data: { percent: 42, note: 'halfway' } },
    },
    300,
  );
}
function replyPayload(req: ForwardRequest): string {
  return jsonOf({ id: req.id, ok: true, state: 'waiting', seq: 7, outcome: 'accepted' }, 200);
}

// ---------------------------------------------------------------------------------------------
// measurement plumbing

interface Result {
  group: string;
  name: string;
  unit: 'rows/s' | 'req/s';
  rate: number;
  /** What one latency sample is: a transaction, a statement or a request. */
  latencyOf: string;
  meanMs: number;
  p50Ms: number;
  p99Ms: number;
  ratio: number;
  reference: string;
  rme: number;
  iterations: number;
}

interface Plan {
  group: string;
  name: string;
  unit: Result['unit'];
  /** Rows or requests done by one call of `fn`. */
  batch: number;
  latencyOf: string;
  /** Own per-operation latencies (ms) for tasks whose call holds many concurrent operations. */
  own?: number[];
  truncate?: boolean;
  fn: () => Promise<void>;
}

function toResult(plan: Plan, latency: Statistics): Result {
  const rate = (plan.batch * 1000) / latency.mean; // rows or requests per second of wall time
  let meanMs = latency.mean;
  let p50Ms = latency.p50;
  let p99Ms = latency.p99;
  if (plan.own) {
    const sorted = [...plan.own].sort((x, y) => x - y);
    meanMs = sorted.reduce((s, x) => s + x, 0) / sorted.length;
    p50Ms = quantile(sorted, 0.5);
    p99Ms = quantile(sorted, 0.99);
  }
  return {
    group: plan.group,
    name: plan.name,
    unit: plan.unit,
    rate,
    latencyOf: plan.latencyOf,
    meanMs,
    p50Ms,
    p99Ms,
    ratio: 1,
    reference: '',
    rme: latency.rme,
    iterations: latency.samplesCount,
  };
}

// ---------------------------------------------------------------------------------------------
// main

const quiet = { onnotice: () => {} };
const admin = postgres(PG_URL, { max: 1, ...quiet });
const closers: (() => Promise<unknown>)[] = [];
const abort = new AbortController();
process.once('SIGINT', () => abort.abort());
let failed = false;

try {
  await admin.unsafe(`CREATE SCHEMA ${SCHEMA}`);
  await admin.unsafe(`
    CREATE TABLE ${SCHEMA}.cb (id text PRIMARY KEY, shard int NOT NULL, status text NOT NULL,
                               due_at bigint, body text NOT NULL);
    CREATE TABLE ${SCHEMA}.shards (shard int PRIMARY KEY, owner text, epoch bigint);
    INSERT INTO ${SCHEMA}.shards SELECT g, 'n1', 1 FROM generate_series(0, ${SHARDS - 1}) g;
  `);
  const server = await admin<{ version: string; sc: string; fsync: string }[]>`
    SELECT current_setting('server_version') AS version,
           current_setting('synchronous_commit') AS sc, current_setting('fsync') AS fsync`;

  const onSchema = { ...quiet, connection: { search_path: SCHEMA } };
  const sql = postgres(PG_URL, { max: POOL_MAX, ...onSchema });
  closers.push(() => sql.end({ timeout: 5 }));
  const client = new pg.Client({ connectionString: PG_URL, options: `-c search_path=${SCHEMA}` });
  await client.connect();
  closers.push(() => client.end());

  // NATS: replier and requester on separate connections.
  const ncRep: NatsConnection = await connect({ servers: NATS_URL, name: 'choice-replier' });
  closers.push(() => ncRep.close());
  const ncReq: NatsConnection = await connect({ servers: NATS_URL, name: 'choice-requester' });
  closers.push(() => ncReq.close());
  ncRep.subscribe(SUBJECT, {
    callback: (err, msg) => {
      if (err) return console.error('nats replier:', err);
      msg.respond(replyPayload(msg.json<ForwardRequest>()));
    },
  });
  await ncRep.flush();
  async function natsRequest(): Promise<void> {
    const id = `r${++requestSeq}`;
    const m = await ncReq.request(SUBJECT, requestPayload(id), { timeout: REQUEST_TIMEOUT_MS });
    check(m.json<ForwardReply>().id === id, 'nats reply id');
  }

  // LISTEN/NOTIFY: two postgres() instances, each with its own LISTEN connection.
  const pjRep = postgres(PG_URL, { max: POOL_MAX, ...quiet });
  closers.push(() => pjRep.end({ timeout: 5 }));
  const pjReq = postgres(PG_URL, { max: POOL_MAX, ...quiet });
  closers.push(() => pjReq.end({ timeout: 5 }));
  await pjRep.listen(OWNER_CHANNEL, (payload) => {
    const req = JSON.parse(payload) as ForwardRequest;
    pjRep.notify(req.reply, replyPayload(req)).catch((e: unknown) => console.error('replier:', e));
  });
  const pending = new Map<string, (reply: ForwardReply) => void>();
  await pjReq.listen(REPLY_CHANNEL, (payload) => {
    const reply = JSON.parse(payload) as ForwardReply;
    const settle = pending.get(reply.id);
    if (settle) {
      pending.delete(reply.id);
      settle(reply);
    }
  });
  function notifyRequest(): Promise<void> {
    const id = `r${++requestSeq}`;
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        pending.delete(id);
        reject(new Error(`LISTEN/NOTIFY request ${id} timed out`));
      }, REQUEST_TIMEOUT_MS);
      pending.set(id, (reply) => {
        clearTimeout(timer);
        if (reply.id === id) resolve();
        else reject(new Error('LISTEN/NOTIFY reply id'));
      });
      pjReq.notify(OWNER_CHANNEL, requestPayload(id)).catch((e: unknown) => {
        clearTimeout(timer);
        pending.delete(id);
        reject(e instanceof Error ? e : new Error(String(e)));
      });
    });
  }

  // ---- correctness checks, before any timing
  const countOf = async (ids: string[], status?: string) =>
    (
      await admin.unsafe<{ n: number }[]>(
        `SELECT count(*)::int AS n FROM ${SCHEMA}.cb WHERE id = ANY($1::text[])
           AND ($2::text IS NULL OR status = $2)`,
        [ids, status ?? null],
      )
    )[0]!.n;
  const commits: [string, (b: Batch) => Promise<void>][] = [
    ['postgres.js begin', (b) => pjGroupCommit(sql, b)],
    ['pg client', (b) => pgGroupCommit(client, b)],
    ['floor', (b) => pjFloor(sql, b)],
    ['single statement', (b) => pjSingle(sql, b)],
  ];
  for (const [name, commit] of commits) {
    const b = makeBatch(ROWS);
    await commit(b);
    check((await countOf(b.ids)) === ROWS, `${name}: ${ROWS} rows inserted`);
    b.statuses = b.statuses.map(() => 'done');
    await commit(b);
    check((await countOf(b.ids, 'done')) === ROWS, `${name}: ${ROWS} rows updated`);
  }
  // Fencing: a moved shard makes the whole group commit roll back (not the floor, it has no fence).
  await admin.unsafe(`UPDATE ${SCHEMA}.shards SET owner = 'n2', epoch = 2 WHERE shard = 7`);
  for (const [name, commit] of commits.filter(([n]) => n !== 'floor')) {
    const b = makeBatch(ROWS, 7);
    let threw = false;
    await commit(b).catch(() => (threw = true));
    check(threw && (await countOf(b.ids)) === 0, `${name}: a moved shard rolls back`);
  }
  await admin.unsafe(`UPDATE ${SCHEMA}.shards SET owner = 'n1', epoch = 1 WHERE shard = 7`);
  await natsRequest();
  await notifyRequest();
  const reqBytes = Buffer.byteLength(requestPayload('r1000000'));
  const replyBytes = Buffer.byteLength(replyPayload({ id: 'r1000000', reply: '', pad: '' }));
  check(reqBytes < NOTIFY_LIMIT && replyBytes < NOTIFY_LIMIT, 'payloads fit a NOTIFY');

  // ---- timed part
  const A = 'A: group commit';
  const B = 'B: transport';
  const txLatencies: number[] = [];
  const natsLatencies: number[] = [];
  const notifyLatencies: number[] = [];
  const plans: Plan[] = [
    {
      group: A,
      name: `floor: unnest upsert of ${ROWS} rows, autocommit (postgres.js)`,
      unit: 'rows/s',
      batch: ROWS,
      latencyOf: 'statement',
      truncate: true,
      fn: () => pjFloor(sql, makeBatch(ROWS)),
    },
    {
      group: A,
      name: `postgres.js sql.begin(sql => [lock, upsert]), ${ROWS} rows`,
      unit: 'rows/s',
      batch: ROWS,
      latencyOf: 'transaction',
      truncate: true,
      fn: () => pjGroupCommit(sql, makeBatch(ROWS)),
    },
    {
      group: A,
      name: `pg Client BEGIN/lock/upsert/COMMIT awaited, ${ROWS} rows`,
      unit: 'rows/s',
      batch: ROWS,
      latencyOf: 'transaction',
      truncate: true,
      fn: () => pgGroupCommit(client, makeBatch(ROWS)),
    },
    {
      group: A,
      name: `pg one statement (lock CTE + upsert), ${ROWS} rows: shipped`,
      unit: 'rows/s',
      batch: ROWS,
      latencyOf: 'statement',
      truncate: true,
      fn: () => pgSingle(client, makeBatch(ROWS)),
    },
    {
      group: A,
      name: `extra: postgres.js one statement (lock CTE + upsert), ${ROWS} rows`,
      unit: 'rows/s',
      batch: ROWS,
      latencyOf: 'statement',
      truncate: true,
      fn: () => pjSingle(sql, makeBatch(ROWS)),
    },
    {
      group: A,
      name: `postgres.js sql.begin, ${TX_IN_FLIGHT} concurrent tx × ${SMALL_ROWS} rows, max ${POOL_MAX}`,
      unit: 'rows/s',
      batch: TX_IN_FLIGHT * TX_PER_WORKER * SMALL_ROWS,
      latencyOf: 'transaction',
      own: txLatencies,
      truncate: true,
      fn: () =>
        closedLoop(
          TX_IN_FLIGHT,
          TX_PER_WORKER,
          () => pjGroupCommit(sql, makeBatch(SMALL_ROWS)),
          txLatencies,
        ),
    },
    {
      group: B,
      name: 'NATS request-reply, sequential',
      unit: 'req/s',
      batch: 1,
      latencyOf: 'request',
      fn: natsRequest,
    },
    {
      group: B,
      name: 'PG LISTEN/NOTIFY (postgres.js), sequential',
      unit: 'req/s',
      batch: 1,
      latencyOf: 'request',
      fn: notifyRequest,
    },
    {
      group: B,
      name: `NATS request-reply, ${IN_FLIGHT} in flight`,
      unit: 'req/s',
      batch: IN_FLIGHT * REQ_PER_WORKER,
      latencyOf: 'request',
      own: natsLatencies,
      fn: () => closedLoop(IN_FLIGHT, REQ_PER_WORKER, natsRequest, natsLatencies),
    },
    {
      group: B,
      name: `PG LISTEN/NOTIFY (postgres.js), ${IN_FLIGHT} in flight`,
      unit: 'req/s',
      batch: IN_FLIGHT * REQ_PER_WORKER,
      latencyOf: 'request',
      own: notifyLatencies,
      fn: () => closedLoop(IN_FLIGHT, REQ_PER_WORKER, notifyRequest, notifyLatencies),
    },
  ];

  const bench = new Bench({
    time: TIME,
    warmupTime: 300,
    iterations: 8,
    warmupIterations: 2,
    throws: true,
    signal: abort.signal,
  });
  for (const plan of plans) {
    bench.add(plan.name, plan.fn, {
      // Each phase (warmup, run) starts on an empty table and keeps only its own latencies.
      beforeAll: async () => {
        if (plan.own) plan.own.length = 0;
        if (plan.truncate) await admin.unsafe(`TRUNCATE ${SCHEMA}.cb`);
      },
    });
  }
  const started = performance.now();
  await bench.run();
  const seconds = (performance.now() - started) / 1000;

  const results: Result[] = [];
  for (const task of bench.tasks) {
    const r = task.result;
    if (r.state !== 'completed') throw new Error(`${task.name}: ${r.state}`);
    results.push(
      toResult(
        plans.find((p) => p.name === task.name)!,
        r.latency,
      ),
    );
  }
  // A: ratio to the floor. B: ratio to the fastest transport with the same concurrency.
  const floor = results[0]!;
  for (const row of results.filter((r) => r.group === A)) {
    row.ratio = row.rate / floor.rate;
    row.reference = 'floor';
  }
  for (const mode of ['sequential', 'in flight']) {
    const rows = results.filter((r) => r.group === B && r.name.includes(mode));
    const best = rows.reduce((x, y) => (y.rate > x.rate ? y : x));
    for (const row of rows) {
      row.ratio = row.rate / best.rate;
      row.reference = best.name.split(',')[0]!;
    }
  }

  const num = (n: number) => (n >= 100 ? Math.round(n).toLocaleString('en-US') : n.toFixed(1));
  const ms = (n: number) => n.toFixed(n < 10 ? 2 : 1);
  const lines = [
    '| group | alternative | rate | mean ms | p50 ms | p99 ms | latency of | ratio | ±% |',
    '|---|---|---:|---:|---:|---:|---|---:|---:|',
    ...results.map(
      (r) =>
        `| ${r.group} | ${r.name} | ${num(r.rate)} ${r.unit} | ${ms(r.meanMs)} | ${ms(r.p50Ms)} | ${ms(r.p99Ms)} | ${r.latencyOf} | ${r.ratio.toFixed(2)}× ${r.reference} | ${r.rme.toFixed(1)} |`,
    ),
  ];
  console.log(lines.join('\n'));
  const s = server[0]!;
  const notes = [
    `PostgreSQL ${s.version} (synchronous_commit=${s.sc}, fsync=${s.fsync}), NATS ${ncReq.info?.version ?? '?'}; Node ${process.version}, ${os.cpus().length} CPUs; timed part ${seconds.toFixed(1)} s.`,
    `Payloads: request ${reqBytes} B, reply ${replyBytes} B. A NOTIFY payload must be shorter than ${NOTIFY_LIMIT} bytes (default build), so larger reports cannot travel by NOTIFY inline; NATS max_payload here is ${ncReq.info?.max_payload ?? '?'} B.`,
    `Concurrent rows: latency columns are per transaction/request while the others are in flight (own samples); rate = operations per iteration / mean iteration time.`,
  ];
  for (const note of notes) console.log(`\n${note}`);
  writeFileSync(
    OUT,
    `${JSON.stringify(
      {
        command: `npx tsx bench/choice.bench.ts${process.argv.length > 2 ? ` ${process.argv.slice(2).join(' ')}` : ''}`,
        date: new Date().toISOString(),
        machine: {
          node: process.version,
          cpus: os.cpus().length,
          cpu: os.cpus()[0]?.model ?? 'unknown',
          memGiB: Math.round(os.totalmem() / 2 ** 30),
          platform: `${os.platform()} ${os.arch()}`,
        },
        server: {
          postgres: s.version,
          synchronousCommit: s.sc,
          fsync: s.fsync,
          nats: ncReq.info?.version,
          natsMaxPayload: ncReq.info?.max_payload,
        },
        settings: {
          timeMs: TIME,
          rows: ROWS,
          smallRows: SMALL_ROWS,
          txInFlight: TX_IN_FLIGHT,
          poolMax: POOL_MAX,
          requestsInFlight: IN_FLIGHT,
          requestBytes: reqBytes,
          replyBytes,
          notifyPayloadLimitBytes: NOTIFY_LIMIT,
        },
        results,
        notes,
      },
      null,
      2,
    )}\n`,
  );
  console.log(`\nwrote ${OUT}`);
} catch (error) {
  failed = true;
  console.error(error);
} finally {
  for (const close of closers.reverse()) {
    await close().catch((e: unknown) => console.error('close:', e));
  }
  await admin
    .unsafe(`DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE`)
    .catch((e: unknown) => console.error('drop schema:', e));
  await admin.end({ timeout: 5 });
}
process.exitCode = failed ? 1 : 0;
