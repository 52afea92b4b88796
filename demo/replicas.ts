/**
 * The cluster demo (`npm start -- --replicas N`): N engine processes on one
 * PostgreSQL schema, NATS forwarding reports between them, a load that sends
 * ordered `progress` reports round-robin across the replicas, and one replica
 * SIGKILLed mid-run. It prints progress, the measured takeover time, and checks
 * through the surviving replicas that every acknowledged report was applied
 * exactly once and in order.
 *
 * Needs PostgreSQL (`PG_URL`, default postgres://postgres@127.0.0.1:5432/test).
 * The replicas forward over NATS when it answers (`CBE_NATS`, default
 * nats://127.0.0.1:4222), else over PostgreSQL. It runs the cluster tests' harness
 * (test/harness/replicas.ts, cluster-load.ts) and prints what it measured.
 *
 * @module
 */

import { ClusterLoad } from '../test/harness/cluster-load.js';
import { DEFAULT_NATS, DEFAULT_PG } from '../test/harness/replica-server.js';
import {
  killAllReplicas,
  sigkill,
  spawnReplica,
  terminate,
  type Replica,
} from '../test/harness/replicas.js';
import { listening, pidExists } from '../test/harness/spawn.js';
import { onInterrupt } from './interrupt.js';

/** Options of {@link runReplicasDemo}. */
export interface ReplicasDemoOptions {
  /** Engine processes. @default 3 */
  replicas?: number;
  /** Callbacks. @default 400 */
  callbacks?: number;
  /** `progress` reports per callback. @default 20 */
  reports?: number;
  /** Callbacks reporting at once. @default 32 */
  concurrency?: number;
  /** Lease TTL and renewal, ms. @default 2000, 500 */
  leaseTtl?: number;
  renew?: number;
  /** Forward timeout, ms. @default 1000 */
  forwardTimeout?: number;
  /** PostgreSQL and NATS. @default `CBE_PG`, `CBE_NATS`, else the local defaults */
  pg?: string;
  nats?: string;
  /** Where the output goes. @default stdout */
  log?: (line: string) => void;
}

const fmt = (n: number) => n.toLocaleString('en-US');
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** A URL without its password, for printing. */
function redact(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return url;
  }
}

/**
 * Runs the cluster demo.
 *
 * @returns the number of acknowledged reports lost, duplicated or out of order (must be 0).
 * @throws if PostgreSQL (or NATS, when asked for) cannot be reached, or a replica does not start.
 */
export async function runReplicasDemo(options: ReplicasDemoOptions = {}): Promise<number> {
  const count = options.replicas ?? 3;
  const callbacks = options.callbacks ?? 400;
  const reports = options.reports ?? 20;
  const concurrency = options.concurrency ?? 32;
  const leaseTtl = options.leaseTtl ?? 2000;
  const renew = options.renew ?? 500;
  const forwardTimeout = options.forwardTimeout ?? 1000;
  const pg = options.pg ?? (process.env.PG_URL || process.env.CBE_PG || DEFAULT_PG);
  const log = options.log ?? ((line: string) => process.stdout.write(`${line}\n`));
  if (count < 2) throw new Error('--replicas must be at least 2 (one of them is killed)');
  if (!(await listening(pg, 5432)))
    throw new Error(`PostgreSQL is not reachable at ${redact(pg)} (set PG_URL)`);
  // NATS when given or answering at its default address; else the replicas forward over PostgreSQL.
  let nats = options.nats ?? process.env.CBE_NATS ?? DEFAULT_NATS;
  if (nats !== 'none' && !(await listening(nats, 4222))) {
    if (options.nats !== undefined || process.env.CBE_NATS)
      throw new Error(`NATS is not reachable at ${nats} (set CBE_NATS, or 'none')`);
    nats = 'none';
  }

  const schema = `cbe_demo_${process.pid}`;
  let load: ClusterLoad | undefined;
  let replicas: Replica[] = [];
  const uninterrupt = onInterrupt(() => void killAllReplicas());
  try {
    log(
      `callback-engine cluster demo: ${count} engine processes on PostgreSQL ${redact(pg)} schema ${schema}, forwarding over ${nats === 'none' ? 'PostgreSQL (no NATS)' : `NATS ${nats}`}`,
    );
    log(
      `lease TTL ${fmt(leaseTtl)} ms, renewal every ${fmt(renew)} ms, forward timeout ${fmt(forwardTimeout)} ms`,
    );
    const spawning = performance.now();
    replicas = await Promise.all(
      Array.from({ length: count }, (_, i) =>
        spawnReplica({ schema, node: `r${i + 1}`, pg, nats, leaseTtl, renew, forwardTimeout }),
      ),
    );
    log(
      `replicas ready in ${fmt(Math.round(performance.now() - spawning))} ms: ${replicas.map((r) => `${r.node} pid ${r.pid} port ${r.port}`).join(', ')}`,
    );
    load = new ClusterLoad(replicas, { callbacks, reports, concurrency });
    const l = load;
    const began = l.origin;
    log(
      `${fmt(callbacks)} callbacks × ${reports} ordered progress reports, ${concurrency} callbacks at once, each report to the next replica`,
    );
    const running = l.start();
    let done = false;
    void running.finally(() => (done = true));
    const line = () => {
      const p = l.progress();
      const per = [...l.perReplica].map(([k, c]) => `${k} ${fmt(c)}`).join(', ');
      log(
        `  ${((performance.now() - began) / 1000).toFixed(1)} s: ${fmt(p.acked)}/${fmt(p.total)} reports acknowledged (${fmt(p.queued)} queued), ${fmt(p.retries)} retries, ${fmt(p.errors)} errors; ${per}`,
      );
    };
    const ticker = setInterval(line, 1000);
    let killedAt: number | undefined;
    const victim = replicas[count - 1]!;
    try {
      while (!done && l.ackedReports < l.totalReports * 0.3) await sleep(20);
      if (!done) {
        l.remove(victim.node);
        killedAt = await sigkill(victim);
        log(
          `SIGKILL ${victim.node} (pid ${victim.pid}) after ${((killedAt - began) / 1000).toFixed(1)} s (@${Math.round(killedAt - began)}), ${fmt(l.ackedReports)} reports acknowledged; pid gone: ${pidExists(victim.pid) ? 'no' : 'yes'}`,
        );
      }
      await running;
    } finally {
      clearInterval(ticker);
    }
    line();
    const seconds = (performance.now() - began) / 1000;
    log(
      `${fmt(l.ackedReports)} reports acknowledged in ${seconds.toFixed(1)} s (${fmt(Math.round(l.ackedReports / seconds))}/s), ${fmt(l.queued)} of them queued (202) for a later in-order apply`,
    );
    if (killedAt !== undefined) {
      const rec = l.recovery(killedAt);
      log(
        rec.takeoverMs === undefined
          ? `takeover: no report was applied directly after the kill`
          : `takeover: every report applied directly again ${fmt(Math.round(rec.takeoverMs))} ms after the SIGKILL (${fmt(rec.degraded)} reports queued or retried meanwhile, longest wait of one report ${fmt(Math.round(rec.maxStallMs))} ms)`,
      );
    }
    const v = await l.verify();
    const bad = v.lost + v.duplicated + v.outOfOrder;
    log(
      `checked ${fmt(v.callbacks)} callbacks through the surviving replicas: ${fmt(v.acknowledged)} acknowledged reports, ${fmt(v.present)} applied, ${fmt(v.duplicated)} duplicated, ${fmt(v.outOfOrder)} callbacks out of order`,
    );
    if (v.examples.length > 0)
      log('  (attempts: replica result(status outcome) @ms since the load began + ms taken)');
    for (const e of v.examples) log(`  ${e}`);
    for (const e of l.errorLog.slice(0, 10)) log(`  error: ${e}`);
    log(`lost updates: ${v.lost}`);
    return bad + v.unreadable;
  } finally {
    uninterrupt();
    load?.close();
    // The survivors close gracefully; anything left (a replica that did not start) is killed.
    await Promise.allSettled(replicas.filter((r) => !r.isGone()).map((r) => terminate(r)));
    await killAllReplicas();
    await dropSchema(pg, schema);
  }
}

/** Drops the demo's schema (the PostgreSQL client is loaded here: the other demos do not need it). */
async function dropSchema(connectionString: string, schema: string): Promise<void> {
  const { Client } = (await import('pg')).default;
  const client = new Client({ connectionString });
  client.on('error', () => {});
  await client.connect();
  try {
    await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  } finally {
    await client.end().catch(() => {});
  }
}
