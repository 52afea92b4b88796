/**
 * Forwarding transports between replicas, request-reply, as the cluster uses them
 * (src/cluster/transport.ts, src/cluster/pg-transport.ts): two transports in this process, one
 * serving node `owner` with an echo handler, the other sending to it.
 *
 * Workloads (each compared to NATS with the same load):
 *  1. a 300-byte request and a 200-byte reply, one at a time (latency);
 *  2. the same, 64 in flight (throughput);
 *  3. a 64 KiB request (a large report: eight NOTIFY payloads) and a 200-byte reply, one at a
 *     time; plus the alternative to chunks: the payload in a table row and its id notified
 *     (INSERT + pg_notify in one statement, the receiver DELETE ... RETURNING it), raw pg.
 * PgTransport runs as shipped (`synchronous_commit` off on its connection) and, for workloads 1
 * and 2, with the server's `synchronous_commit` (on) to show what that setting buys.
 *
 * Run: npx tsx bench/transport.bench.ts [--time 1500] [--out bench/results-transport.json]
 * Env: BENCH_PG_URL (default PG_URL, else postgres://postgres@127.0.0.1:5432/test),
 *      BENCH_NATS_URL (default nats://127.0.0.1:4222)
 */
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { Bench } from 'tinybench';
import { PgTransport } from '../src/cluster/pg-transport.js';
import { NatsTransport, type Transport } from '../src/cluster/transport.js';
import { closedLoop } from './lib.js';

const { values } = parseArgs({
  options: {
    time: { type: 'string', default: '1500' },
    out: { type: 'string', default: 'bench/results-transport.json' },
  },
});
const TIME = Number(values.time);
const PG_URL =
  process.env.BENCH_PG_URL || process.env.PG_URL || 'postgres://postgres@127.0.0.1:5432/test';
const NATS_URL = process.env.BENCH_NATS_URL ?? 'nats://127.0.0.1:4222';
const IN_FLIGHT = 64;
const PER_WORKER = 4;
const PREFIX = `cbe.bench.${process.pid}`;
const TABLE = `bench_transport_${process.pid}`;

const pad = (bytes: number, fill = 'x') =>
  JSON.stringify({ op: 'report', id: 'c'.repeat(32), pad: fill.repeat(Math.max(0, bytes - 60)) });
const SMALL = pad(300);
const LARGE = pad(64 * 1024);
const REPLY = pad(200);

function check(ok: boolean, what: string): void {
  if (!ok) throw new Error(`benchmark correctness check failed: ${what}`);
}

/** A serving and a sending transport of one kind. */
interface Pair {
  readonly name: string;
  send(payload: string): Promise<string>;
  close(): Promise<void>;
}

async function pairOf(
  name: string,
  make: (role: string) => Promise<Transport>,
  large: boolean,
): Promise<Pair> {
  const owner = await make('owner');
  const entry = await make('entry');
  owner.serve('owner', (payload) =>
    Promise.resolve(large ? `${REPLY.slice(0, -2)}${payload.length}"}` : REPLY),
  );
  if (owner instanceof PgTransport) await owner.listening();
  // NATS: a subscription is in place once the server has seen it.
  if (!(owner instanceof PgTransport)) await new Promise((r) => setTimeout(r, 100));
  return {
    name,
    send: (payload) => entry.request('owner', payload, 10_000),
    close: async () => {
      await entry.close();
      await owner.close();
    },
  };
}

/** The payload-table alternative for large messages, raw: two pg clients. */
async function tablePair(): Promise<Pair> {
  const connect = async () => {
    const c = new pg.Client({ connectionString: PG_URL, options: '-c synchronous_commit=off' });
    await c.connect();
    return c;
  };
  const owner = await connect();
  const entry = await connect();
  await owner.query(
    `CREATE UNLOGGED TABLE IF NOT EXISTS ${TABLE} (id bigserial PRIMARY KEY, body text NOT NULL)`,
  );
  await owner.query(`LISTEN ${TABLE}_owner`);
  await entry.query(`LISTEN ${TABLE}_entry`);
  const waiting = new Map<string, (reply: string) => void>();
  let seq = 0;
  owner.on('notification', (msg) => {
    const [corr, id] = (msg.payload ?? '').split(' ');
    void owner
      .query<{ body: string }>(`DELETE FROM ${TABLE} WHERE id = $1 RETURNING body`, [id])
      .then((r) =>
        owner.query('SELECT pg_notify($1, $2)', [
          `${TABLE}_entry`,
          `${corr} ${REPLY.slice(0, -2)}${r.rows[0]!.body.length}"}`,
        ]),
      );
  });
  entry.on('notification', (msg) => {
    const text = msg.payload ?? '';
    const space = text.indexOf(' ');
    const resolve = waiting.get(text.slice(0, space));
    waiting.delete(text.slice(0, space));
    resolve?.(text.slice(space + 1));
  });
  return {
    name: 'PG payload table + NOTIFY of its id (raw pg)',
    send: (payload) =>
      new Promise<string>((resolve, reject) => {
        const corr = String(++seq);
        waiting.set(corr, resolve);
        entry
          .query(
            `WITH row AS (INSERT INTO ${TABLE} (body) VALUES ($2) RETURNING id)
             SELECT pg_notify($1, $3 || ' ' || id) FROM row`,
            [`${TABLE}_owner`, payload, corr],
          )
          .catch(reject);
      }),
    close: async () => {
      await owner.query(`DROP TABLE IF EXISTS ${TABLE}`);
      await entry.end();
      await owner.end();
    },
  };
}

const nats = (large: boolean) =>
  pairOf(
    'NATS request-reply',
    (role) => NatsTransport.connect(NATS_URL, `${PREFIX}.nats.${large}`, `bench:${role}`),
    large,
  );
const pgShipped = (large: boolean) =>
  pairOf(
    'PgTransport (LISTEN/NOTIFY, chunks; shipped)',
    (role) =>
      PgTransport.connect({
        connectionString: PG_URL,
        prefix: `${PREFIX}.pg.${large}`,
        name: `bench:${role}`,
      }),
    large,
  );
const pgSync = () =>
  pairOf(
    'PgTransport, synchronous_commit on',
    (role) =>
      PgTransport.connect({
        connectionString: PG_URL,
        prefix: `${PREFIX}.sync`,
        name: `bench:${role}`,
        synchronousCommit: true,
      }),
    false,
  );

interface Row {
  workload: string;
  name: string;
  reqPerS: number;
  meanMs: number;
  p50Ms: number;
  p99Ms: number;
  vsNats: number;
  rme: number;
}

const quantile = (sorted: number[], q: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;

const pairs: Pair[] = [];
try {
  const small = [await nats(false), await pgShipped(false), await pgSync()];
  const large = [await nats(true), await pgShipped(true), await tablePair()];
  pairs.push(...small, ...large);
  // Correctness before timing: every pair answers, large payloads arrive whole.
  for (const p of small) check((await p.send(SMALL)) === REPLY, `${p.name}: small reply`);
  for (const p of large) {
    const reply = JSON.parse(await p.send(LARGE)) as { pad: string };
    check(reply.pad.endsWith(String(LARGE.length)), `${p.name}: 64 KiB request arrived whole`);
  }
  const tricky = `${'é😀'.repeat(20_000)}`;
  const echo = await PgTransport.connect({
    connectionString: PG_URL,
    prefix: `${PREFIX}.e`,
    name: 'bench:e',
  });
  echo.serve('e', (x) => Promise.resolve(x));
  await echo.listening();
  check((await echo.request('e', tricky, 10_000)) === tricky, 'multi-byte 120 KiB echo');
  await echo.close();

  const plans: { workload: string; pair: Pair; run: () => Promise<unknown>; own?: number[] }[] = [];
  for (const p of small)
    plans.push({ workload: '1: 300 B, one at a time', pair: p, run: () => p.send(SMALL) });
  for (const p of small) {
    const own: number[] = [];
    plans.push({
      workload: `2: 300 B, ${IN_FLIGHT} in flight`,
      pair: p,
      own,
      run: () => closedLoop(IN_FLIGHT, PER_WORKER, () => p.send(SMALL), own),
    });
  }
  for (const p of large)
    plans.push({ workload: '3: 64 KiB, one at a time', pair: p, run: () => p.send(LARGE) });

  const bench = new Bench({ time: TIME, warmupTime: 300, throws: true });
  for (const [i, plan] of plans.entries())
    bench.add(`${i}`, plan.run, { beforeAll: () => void (plan.own && (plan.own.length = 0)) });
  const started = performance.now();
  await bench.run();
  const seconds = (performance.now() - started) / 1000;

  const rows: Row[] = bench.tasks.map((task, i) => {
    const plan = plans[i]!;
    const r = task.result;
    if (r.state !== 'completed') throw new Error(`${plan.pair.name}: ${r.state}`);
    const batch = plan.own ? IN_FLIGHT * PER_WORKER : 1;
    const sorted = plan.own ? [...plan.own].sort((a, b) => a - b) : undefined;
    return {
      workload: plan.workload,
      name: plan.pair.name,
      reqPerS: (batch * 1000) / r.latency.mean,
      meanMs: sorted ? sorted.reduce((s, x) => s + x, 0) / sorted.length : r.latency.mean,
      p50Ms: sorted ? quantile(sorted, 0.5) : r.latency.p50,
      p99Ms: sorted ? quantile(sorted, 0.99) : r.latency.p99,
      vsNats: 1,
      rme: r.latency.rme,
    };
  });
  for (const row of rows) {
    const base = rows.find((x) => x.workload === row.workload && x.name === 'NATS request-reply')!;
    row.vsNats = row.reqPerS / base.reqPerS;
  }
  const num = (n: number) => Math.round(n).toLocaleString('en-US');
  const ms = (n: number) => n.toFixed(n < 10 ? 2 : 1);
  console.log('| workload | transport | req/s | mean ms | p50 ms | p99 ms | vs NATS | ±% |');
  console.log('|---|---|---:|---:|---:|---:|---:|---:|');
  for (const r of rows)
    console.log(
      `| ${r.workload} | ${r.name} | ${num(r.reqPerS)} | ${ms(r.meanMs)} | ${ms(r.p50Ms)} | ${ms(r.p99Ms)} | ${r.vsNats.toFixed(2)}× | ${r.rme.toFixed(1)} |`,
    );
  const admin = new pg.Client({ connectionString: PG_URL });
  await admin.connect();
  const { rows: server } = await admin.query<{ v: string; sc: string; fsync: string }>(
    `SELECT current_setting('server_version') AS v, current_setting('synchronous_commit') AS sc, current_setting('fsync') AS fsync`,
  );
  await admin.end();
  const note = `PostgreSQL ${server[0]!.v} (synchronous_commit=${server[0]!.sc}, fsync=${server[0]!.fsync}); Node ${process.version}, ${os.cpus().length} CPUs, load average ${os.loadavg()[0]!.toFixed(1)} at the end; timed part ${seconds.toFixed(1)} s.`;
  console.log(`\n${note}`);
  writeFileSync(
    values.out,
    `${JSON.stringify(
      {
        command: `npx tsx bench/transport.bench.ts${process.argv.length > 2 ? ` ${process.argv.slice(2).join(' ')}` : ''}`,
        date: new Date().toISOString(),
        machine: { node: process.version, cpus: os.cpus().length, cpu: os.cpus()[0]?.model },
        server: {
          postgres: server[0]!.v,
          synchronousCommit: server[0]!.sc,
          fsync: server[0]!.fsync,
        },
        settings: {
          timeMs: TIME,
          inFlight: IN_FLIGHT,
          requestBytes: [SMALL.length, LARGE.length],
          replyBytes: REPLY.length,
        },
        results: rows,
        note,
      },
      null,
      2,
    )}\n`,
  );
  console.log(`wrote ${values.out}`);
} finally {
  for (const p of pairs) await p.close().catch((e: unknown) => console.error('close:', e));
}
