/**
 * A frozen replica replays nothing stale: reports that reached a replica just before it was
 * SIGSTOPped (in its socket buffer, or already being handled), whose senders gave up and sent
 * newer reports elsewhere, are refused when it thaws (its view of the cluster lapsed while they
 * waited), never forwarded or applied after the newer acknowledged reports.
 */

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import {
  call,
  historyOf,
  killChild,
  reportTo,
  startChild,
  type JournalChild,
} from './harness/journal-runner.js';
import { NATS, natsAvailable, PgFixture, pgAvailable } from './helpers/postgres.js';

const dir = mkdtempSync(join(tmpdir(), 'cbe-frozen-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const TTL = 1500;
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
/** Forwarding over NATS where it answers, else over PostgreSQL. */
const nats = natsAvailable ? NATS : undefined;

describe.skipIf(!pgAvailable)('a frozen replica (SIGSTOP past its lease, then SIGCONT)', () => {
  const fx = new PgFixture();
  const children: JournalChild[] = [];
  afterEach(async () => {
    for (const c of children.splice(0)) {
      try {
        process.kill(c.pid, 'SIGCONT');
      } catch {
        // gone already
      }
      await killChild(c);
    }
    await fx.cleanup();
  });

  it('never forwards or applies a report that waited in it after newer acknowledged reports', async () => {
    const schema = fx.fresh();
    const runs = join(dir, `${schema}.runs`);
    const owner = await startChild({ pg: schema }, runs, {
      node: 'owner',
      ttl: TTL,
      ...(nats ? { nats } : {}),
    });
    children.push(owner);
    const entry = await startChild({ pg: schema }, runs, {
      node: 'entry',
      ttl: TTL,
      ...(nats ? { nats } : {}),
    });
    children.push(entry);
    // Created through the owner once the shards settled: all in its shards.
    await sleep(TTL);
    const cbs: { id: string; token: string }[] = [];
    for (let i = 0; i < 8; i++) {
      const r = await call(owner, 'POST', '/create', { data: { i } });
      cbs.push(r.body as { id: string; token: string });
    }
    // Through the entry replica first (forwarded to the owner): it works.
    for (const cb of cbs)
      expect((await reportTo(entry, cb.token, 'progress', { pct: 1 })).status).toBe(200);
    const owned = (await call(owner, 'GET', `/get/${encodeURIComponent(cbs[0]!.token)}`)).body;
    expect(owned).toMatchObject({ status: 'progress', data: { pct: 1 } });

    // Half the stale reports are in flight in the entry replica when it freezes, the other half
    // reach its socket while it is frozen; their senders give up after 300 ms.
    const stale = cbs
      .slice(0, 4)
      .map((cb) => reportTo(entry, cb.token, 'progress', { pct: 10 }, undefined, 300));
    await sleep(2);
    process.kill(entry.pid, 'SIGSTOP');
    const buffered = cbs
      .slice(4)
      .map((cb) => reportTo(entry, cb.token, 'progress', { pct: 10 }, undefined, 300));
    const early = (await Promise.all([...stale, ...buffered])).filter(
      (r) => r.status === 200,
    ).length;
    // The senders move on: the newer reports go to the owner and are acknowledged.
    for (const cb of cbs)
      expect((await reportTo(owner, cb.token, 'progress', { pct: 100 })).status).toBe(200);
    await sleep(3 * TTL);
    process.kill(entry.pid, 'SIGCONT');
    // Time for anything stale to go through (forwarded, queued or applied) if it were to.
    await sleep(2 * TTL);
    let staleApplied = 0;
    for (const cb of cbs) {
      const h = await historyOf(owner, cb.id);
      const pcts = h.filter((e) => e.kind === 'reported').map((e) => e.data?.pct);
      const last100 = pcts.lastIndexOf(100);
      expect(last100).toBeGreaterThan(0);
      // Nothing after the acknowledged 100.
      expect(pcts.slice(last100 + 1), `reports applied after pct 100 to ${cb.id}`).toEqual([]);
      staleApplied += pcts.filter((p) => p === 10).length;
      const now = (await call(owner, 'GET', `/get/${encodeURIComponent(cb.token)}`)).body;
      expect(now).toMatchObject({ data: { pct: 100 } });
    }
    // The thawed replica answers again (fresh reports through it are applied).
    const after = await reportTo(entry, cbs[0]!.token, 'progress', { pct: 101 });
    expect(after.status).toBe(200);
    process.stdout.write(
      `frozen entry replica: 8 reports sent to it around the freeze (${early} answered before it froze, ${staleApplied} applied before the newer ones), 0 applied after the acknowledged pct 100\n`,
    );
  }, 60_000);
});
