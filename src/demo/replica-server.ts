/**
 * One engine process of a cluster on PostgreSQL: the replica of the cluster
 * demo (`npm start -- --replicas N`) and of the cluster tests. Every replica
 * of one cluster shares the schema and the secret; each has its own node name.
 * Any replica accepts any report for any callback.
 *
 * Besides the Dispatch Callback Service routes it answers `POST /create`
 * (body: the creation data as JSON; `?timeout=PT3S` gives it a deadline) with
 * `{ token }` once the callback is committed, and `GET /stats` with `{ node, pid, steps, stats }` (the engine's
 * counters, and how many `progress` steps ran in this process).
 *
 * Anchor `job`: its `progress` step appends the report's `seq` (a number in the
 * report data) to the array `seen` in the callback's data, so the stored data
 * shows every applied report exactly once and in order. A quarter of the steps
 * await 1–4 ms so kills land mid-step; a report carrying `slowMs` waits that long.
 * Its `timeout` step counts in the data (`timeouts`, `timedOutOn`), so a deadline
 * that fired twice would show.
 *
 * It prints `READY <port> <pid>` once `engine.ready()` resolved (this replica
 * holds its share of the shard leases). SIGTERM closes it gracefully (its
 * shards are handed over at once) and exits 0.
 *
 * Run: node --import tsx src/demo/replica-server.ts --schema S --node N [--port 0]
 *   [--lease-ttl ms] [--renew ms] [--forward-timeout ms] [--pg URL] [--nats URL|none]
 *
 * @module
 */

import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';
import { createCallbackEngine } from '../engine.js';
import { toError } from '../thrown.js';
import { createDispatchHandler } from '../http/handler.js';
import { postgresStore } from '../postgres.js';

/** The secret every replica of a cluster shares, so any of them verifies any token. */
export const REPLICA_SECRET = 'replica-demo-secret-0123456789abcdef';
/** The PostgreSQL server used when none is given (`CBE_PG` overrides it). */
export const DEFAULT_PG = 'postgres://postgres@127.0.0.1:5432/test';
/** The NATS server used when none is given (`CBE_NATS` overrides it). */
export const DEFAULT_NATS = 'nats://127.0.0.1:4222';

/** Options of {@link startReplicaServer}. */
export interface ReplicaServerOptions {
  /** The PostgreSQL schema of the cluster (created on open). */
  schema: string;
  /** This replica's node name (distinct per replica). */
  node: string;
  /** TCP port on 127.0.0.1; 0 picks a free one. @default 0 */
  port?: number;
  /** PostgreSQL connection string. @default `CBE_PG` or {@link DEFAULT_PG} */
  pg?: string;
  /** NATS server URL, or `'none'` for no NATS. @default `CBE_NATS` or {@link DEFAULT_NATS} */
  nats?: string;
  /** Shard lease time to live, ms. @default the store's */
  leaseTtl?: number;
  /** Lease renewal interval, ms. @default the store's */
  renew?: number;
  /** Time before a forwarded report is queued durably instead, ms. @default the store's */
  forwardTimeout?: number;
  /** Where the `READY` line goes. @default stdout */
  log?: (line: string) => void;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

function reply(res: ServerResponse, status: number, body: unknown): void {
  const json = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(json),
  });
  res.end(json);
}

/**
 * Starts the replica: its engine on the shared PostgreSQL schema and its HTTP service.
 *
 * @returns once ready: the port and `close()` (graceful: hands the shards over).
 */
export async function startReplicaServer(
  options: ReplicaServerOptions,
): Promise<{ port: number; close(): Promise<void> }> {
  const log = options.log ?? ((line: string) => process.stdout.write(`${line}\n`));
  const nats = options.nats ?? process.env.CBE_NATS ?? DEFAULT_NATS;
  const engine = createCallbackEngine({
    node: options.node,
    secrets: [REPLICA_SECRET],
    timeout: false,
    retention: true,
    store: postgresStore({
      connectionString: options.pg ?? process.env.CBE_PG ?? DEFAULT_PG,
      schema: options.schema,
      ...(options.leaseTtl !== undefined && { leaseTtl: options.leaseTtl }),
      ...(options.renew !== undefined && { renewInterval: options.renew }),
      ...(options.forwardTimeout !== undefined && { forwardTimeout: options.forwardTimeout }),
      ...(nats !== 'none' && { nats: { servers: nats } }),
    }),
  });
  let steps = 0;
  engine.anchor('job', {
    next: {
      progress: async (cb) => {
        steps++;
        const slow = cb.report.slowMs;
        if (typeof slow === 'number') await sleep(slow);
        else if (Math.random() < 0.25) await sleep(1 + Math.floor(Math.random() * 4));
        const seq = cb.report.seq;
        if (typeof seq !== 'number') return undefined;
        const seen = Array.isArray(cb.data.seen) ? (cb.data.seen as unknown[]) : [];
        return { seen: [...seen, seq] };
      },
      // Counted in the stored data: a deadline that fired twice (two owners) would show 2.
      timeout: (cb) => ({
        timeouts: (typeof cb.data.timeouts === 'number' ? cb.data.timeouts : 0) + 1,
        timedOutOn: options.node,
      }),
    },
  });
  const dispatch = createDispatchHandler(engine);
  const create = async (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const text = Buffer.concat(chunks).toString('utf8');
    try {
      const data = text.length > 0 ? (JSON.parse(text) as Record<string, unknown>) : {};
      // `POST /create?timeout=PT2S`: a callback with a deadline.
      const timeout = new URL(req.url ?? '/', 'http://x').searchParams.get('timeout') ?? undefined;
      const created = await engine.create('job', { data, ...(timeout ? { timeout } : {}) });
      reply(res, 200, { token: created.token });
    } catch (err) {
      const e = toError(err) as Error & { statusCode?: number; code?: string };
      reply(res, e.statusCode ?? 500, { code: e.code, message: e.message });
    }
  };
  const server = createServer((req, res) => {
    if (req.method === 'POST' && req.url?.split('?')[0] === '/create') void create(req, res);
    else if (req.method === 'GET' && req.url === '/stats')
      reply(res, 200, { node: options.node, pid: process.pid, steps, stats: engine.stats() });
    else dispatch(req, res);
  });
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve) => server.listen(options.port ?? 0, '127.0.0.1', resolve));
  await engine.ready();
  const { port } = server.address() as AddressInfo;
  log(`READY ${port} ${process.pid}`);
  return {
    port,
    async close() {
      // No new connections; the engine hands its shards over and finishes what it holds;
      // then the remaining (idle keep-alive) connections go.
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      await engine.close();
      server.closeAllConnections();
      await closed;
    },
  };
}

/** Runs the replica from the command line (see the module comment). */
export async function replicaServerMain(argv: readonly string[]): Promise<void> {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      schema: { type: 'string' },
      node: { type: 'string' },
      port: { type: 'string', default: '0' },
      'lease-ttl': { type: 'string' },
      renew: { type: 'string' },
      'forward-timeout': { type: 'string' },
      pg: { type: 'string' },
      nats: { type: 'string' },
    },
  });
  if (!values.schema || !values.node)
    throw new Error('replica-server needs --schema S and --node N');
  const ms = (name: string, v: string | undefined) => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isSafeInteger(n) || n <= 0)
      throw new Error(`--${name} must be a positive integer of ms (got ${JSON.stringify(v)})`);
    return n;
  };
  // Diagnostics for the harness, which keeps stderr: why and when this process ends.
  const node = values.node;
  process.on('uncaughtExceptionMonitor', (err, origin) => {
    process.stderr.write(`replica ${node}: ${origin}: ${toError(err).stack ?? String(err)}\n`);
  });
  process.on('exit', (code) => {
    process.stderr.write(`replica ${node}: exit ${code}\n`);
  });
  const leaseTtl = ms('lease-ttl', values['lease-ttl']);
  const renew = ms('renew', values.renew);
  const forwardTimeout = ms('forward-timeout', values['forward-timeout']);
  const server = await startReplicaServer({
    schema: values.schema,
    node: values.node,
    port: Number(values.port),
    ...(values.pg !== undefined && { pg: values.pg }),
    ...(values.nats !== undefined && { nats: values.nats }),
    ...(leaseTtl !== undefined && { leaseTtl }),
    ...(renew !== undefined && { renew }),
    ...(forwardTimeout !== undefined && { forwardTimeout }),
  });
  process.once('SIGTERM', () => {
    server.close().then(
      () => process.exit(0),
      (err: unknown) => {
        process.stderr.write(`close failed: ${toError(err).stack ?? String(err)}\n`);
        process.exit(1);
      },
    );
  });
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].replace(/\\/g, '/'))) {
  replicaServerMain(process.argv.slice(2)).catch((err: unknown) => {
    process.stderr.write(`${toError(err).stack ?? String(err)}\n`);
    process.exit(1);
  });
}
