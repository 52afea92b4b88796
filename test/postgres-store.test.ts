/**
 * The PostgreSQL store and the cluster it carries, in one process: several engines (replicas)
 * share one schema, each test its own. Option checks, a single durable engine (restart,
 * listAsync), the lease fence at the store level, reads and reports from a replica that does not
 * own the callback, cluster-wide idempotency and correlation keys, forwarding over PostgreSQL
 * (no NATS) and the handover of a closing replica, deadlines after a takeover, and deduplication
 * keys.
 *
 * The multi-process scenarios (SIGKILL, SIGSTOP, PostgreSQL restart, load) are in
 * cluster.test.ts. Needs PostgreSQL (PG_URL); replicas forward over NATS where it answers
 * (CBE_NATS), else over PostgreSQL.
 */
import { createHmac } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  CallbackEngineError,
  InvalidArgumentError,
  InvalidMessageError,
  StoreUnavailableError,
  type AnchorOptions,
  type CallbackEngine,
  type CallbackMessage,
} from '../src/index.js';
import { type CallbackRowWrite, type StoreBatch } from '../src/store/index.js';
import { DuplicateKeyError, LeaseLostError } from '../src/errors.js';
import { serve } from '../src/http/index.js';
import { Leases } from '../src/cluster/leases.js';
import type { PostgresStore } from '../src/store/postgres/store.js';
import { postgresStore } from './helpers/postgres.js';
import { shardOf } from '../src/store/shards.js';
import { rejection } from './helpers/engine.js';
import { PG, PgFixture, pgAvailable, type ReplicaOptions } from './helpers/postgres.js';

const available = pgAvailable;

/** Shards of every engine test: two replicas hold four each once balanced. */
const SHARDS = 8;

const fx = new PgFixture();
beforeEach(() => {
  fx.fresh();
});
afterEach(() => fx.cleanup());

const poll = { timeout: 5000, interval: 50 };

/** The error `fn` throws (fails the test if it returns). */
function thrown(fn: () => unknown): CallbackEngineError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(CallbackEngineError);
    return err as CallbackEngineError;
  }
  throw new Error('expected a throw');
}

function report(
  token: string,
  callbackStatus: string,
  callbackData?: Record<string, unknown>,
  dedupKey?: string,
): CallbackMessage {
  return {
    type: 'CALLBACK',
    callbackToken: token,
    callbackStatus,
    callbackData,
    ...(dedupKey === undefined ? {} : { dedupKey }),
  } as never;
}

/** A minted token's fields. */
const tokenFields = (token: string) =>
  JSON.parse(Buffer.from(token, 'base64url').toString('utf8')) as {
    node: string;
    anchor: string;
    id: string;
    sig: string;
  };

/** The signature the same fields would have under a key no replica holds. */
const signedElsewhere = (f: { node: string; anchor: string; id: string }) =>
  createHmac('sha256', 'another-secret-0123456789abcdef')
    .update(`${f.node}\n${f.anchor}\n${f.id}`)
    .digest('base64url');

const shardsOf = (engine: CallbackEngine): number => engine.stats().cluster?.shards ?? -1;

/** The replica that holds a shard's live lease, as the database has it. */
async function ownerOf(id: string): Promise<string | undefined> {
  const rows = await fx.sql<{ owner: string }>(
    'SELECT owner FROM shards WHERE shard = $1 AND owner IS NOT NULL AND expires_at > now()',
    [shardOf(id, SHARDS)],
  );
  return rows[0]?.owner;
}

/**
 * Replicas `a` and `b` on this test's schema, each with `anchors` registered, ready and holding
 * half of the shards each (so ownership stays put while the test runs).
 */
async function pair(
  anchors: (engine: CallbackEngine, node: 'a' | 'b') => void,
  options: ReplicaOptions = {},
): Promise<[CallbackEngine, CallbackEngine]> {
  const open = (node: 'a' | 'b') => {
    const engine = fx.engine(node, { ...options, store: { shards: SHARDS, ...options.store } });
    anchors(engine, node);
    return engine;
  };
  const a = open('a');
  await a.ready();
  const b = open('b');
  await b.ready();
  await vi.waitFor(() => {
    expect(shardsOf(a)).toBe(SHARDS / 2);
    expect(shardsOf(b)).toBe(SHARDS / 2);
  }, poll);
  return [a, b];
}

describe.skipIf(!available)(
  'postgresStore() on PostgreSQL, several replicas in one process',
  () => {
    it('refuses bad options with CBE_ERR_INVALID_ARGUMENT and a message naming the option', () => {
      const base = { connectionString: PG, schema: 'ok_schema' };
      const refused = (options: object, message: RegExp) => {
        const err = thrown(() => postgresStore(options as never));
        expect(err).toBeInstanceOf(InvalidArgumentError);
        expect(err.code).toBe('CBE_ERR_INVALID_ARGUMENT');
        expect(err.statusCode).toBe(400);
        expect(err.message).toMatch(message);
      };
      for (const schema of ['Bad-Name', 'UPPER', '1abc', 'a'.repeat(64), '', 'x; drop table y'])
        refused(
          { ...base, schema },
          /^postgresStore options\.schema must be a lower-case SQL identifier \(got ".*"\)$/,
        );
      refused(
        { ...base, leaseTtl: 2000, renewInterval: 1500 },
        /options\.renewInterval \(1500 ms\) must be at most half of leaseTtl \(2000 ms\)/,
      );
      refused(
        { ...base, leaseTtl: 'PT2S', renewInterval: 'PT1.5S' },
        /options\.renewInterval \(1500 ms\) must be at most half of leaseTtl \(2000 ms\)/,
      );
      // The defaults (leaseTtl 10 s) bound renewInterval too.
      refused({ ...base, renewInterval: 6000 }, /at most half of leaseTtl \(10000 ms\)/);
      for (const shards of [0, -1, 4097, 1.5, Number.NaN, '8'])
        refused(
          { ...base, shards },
          /^postgresStore options\.shards must be an integer from 1 to 4096 \(got .+\)$/,
        );
      refused(
        { ...base, leaseTTL: 2000 },
        /^unknown option "leaseTTL" in postgresStore options \(did you mean "leaseTtl"\?\)$/,
      );
      refused(
        { ...base, bogusOption: 1 },
        /^unknown option "bogusOption" in postgresStore options/,
      );
      refused({ ...base, leaseTtl: 0 }, /options\.leaseTtl must be longer than zero/);
      refused({ ...base, nats: 'nats://x' }, /options\.nats must be \{ servers/);
      refused({ ...base, maxConnections: 1 }, /options\.maxConnections must be an integer/);
      refused({ schema: 'ok' }, /options\.connectionString must be a string/);
      // Edge values are accepted.
      expect(() => postgresStore({ ...base, shards: 1 })).not.toThrow();
      expect(() => postgresStore({ ...base, shards: 4096 })).not.toThrow();
      expect(() => postgresStore({ ...base, leaseTtl: 2000, renewInterval: 1000 })).not.toThrow();
      expect(() => postgresStore({ ...base, schema: `_${'a'.repeat(62)}` })).not.toThrow();
    });

    it('a single engine is durable: reports, wait, restart with the same node, listAsync pages', async () => {
      const open = () => {
        const engine = fx.engine('solo', { nats: false, store: { shards: SHARDS } });
        engine.anchor('job', {
          next: {
            progress: (cb) => ({ lastPct: cb.report.pct }),
            complete: (cb) => ({ receipt: `R-${String(cb.data.orderId)}` }),
          },
        });
        engine.anchor('other');
        return engine;
      };
      let engine = open();
      await engine.ready();
      expect(shardsOf(engine)).toBe(SHARDS);

      const done = await engine.create('job', { data: { orderId: 7 } });
      expect(done.status).toBe('create');
      const waiting = engine.wait(done.token);
      const p = await engine.deliver(report(done.token, 'progress', { pct: 50 }));
      expect(p.outcome).toBe('applied');
      expect(p.answer).toMatchObject({
        status: 'progress',
        data: { orderId: 7, pct: 50, lastPct: 50 },
      });
      const c = await engine.deliver(report(done.token, 'complete', { amount: 42 }));
      expect(c.outcome).toBe('applied');
      const final = await waiting;
      expect(final.status).toBe('complete');
      expect(final.data).toMatchObject({ orderId: 7, pct: 50, lastPct: 50, amount: 42 });
      expect((await engine.get(done.token)).data).toMatchObject({ receipt: 'R-7' });

      const pending = await engine.create('job', { data: { orderId: 8 } });
      await engine.dispatch(report(pending.token, 'accept'));
      await engine.dispatch(report(pending.token, 'progress', { pct: 10 }));
      const others = [];
      for (let i = 0; i < 3; i++) others.push(await engine.create('other', { data: { i } }));

      // list() reads the store.
      expect((await engine.list()).items.map((i) => i.id)).toContain(pending.id);

      // A restart with the same node name: the pending callback and its data are back.
      await engine.close();
      engine = open();
      await engine.ready();
      expect(shardsOf(engine)).toBe(SHARDS);
      expect(await engine.get(pending.token)).toMatchObject({
        status: 'progress',
        data: { orderId: 8, pct: 10, lastPct: 10 },
      });
      expect(await engine.exists(pending.token)).toBe('exists');
      expect(await engine.get(done.token)).toMatchObject({
        status: 'complete',
        data: { amount: 42, receipt: 'R-7' },
      });
      const more = await engine.deliver(report(pending.token, 'progress', { pct: 60 }));
      expect(more.outcome).toBe('applied');
      expect(more.answer.data).toMatchObject({ orderId: 8, pct: 60, lastPct: 60 });
      const last = await engine.deliver(report(pending.token, 'complete'));
      expect(last.answer).toMatchObject({ status: 'complete', data: { receipt: 'R-8' } });
      // The terminal report again is a replay; another terminal report a conflict.
      expect((await engine.deliver(report(done.token, 'complete', { amount: 42 }))).outcome).toBe(
        'replayed',
      );
      expect((await engine.deliver(report(done.token, 'error', { message: 'x' }))).outcome).toBe(
        'conflict',
      );

      // listAsync pages in creation order, across the restart, with filters.
      const expected = [done, pending, ...others].map((cb) => cb.id);
      const seen: string[] = [];
      let cursor: string | undefined;
      let pages = 0;
      do {
        const page = await engine.list({ limit: 2, ...(cursor ? { cursor } : {}) });
        expect(page.items.length).toBeLessThanOrEqual(2);
        seen.push(...page.items.map((i) => i.id));
        cursor = page.cursor;
        pages++;
      } while (cursor !== undefined);
      expect(seen).toEqual(expected);
      expect(pages).toBe(3);
      const jobs = await engine.list({ anchor: 'job' });
      expect(jobs.items.map((i) => i.id)).toEqual([done.id, pending.id]);
      expect(jobs.items[1]).toMatchObject({ status: 'complete', data: { orderId: 8, pct: 60 } });
      const active = await engine.list({ status: 'create' });
      expect(active.items.map((i) => i.id)).toEqual(others.map((o) => o.id));
    });

    describe('the lease fence, at the store level', () => {
      const MACHINE = 'test-machine';
      const N = 4;

      const seqs = new Map<string, number>();
      /** A row write of `id` with a journal entry labelled `label` (the entry is what is read back). */
      const write = (id: string, label: string, change: 'insert' | 'body') => {
        const seq = (seqs.get(id) ?? 0) + 1;
        seqs.set(id, seq);
        const row: CallbackRowWrite = {
          change: change === 'insert' ? 'insert' : 'update',
          id,
          seq: 0,
          anchor: 'job',
          status: 'create',
          dueAt: null,
          idempotencyKey: null,
          correlationKey: null,
          parentId: null,
          head: seq,
          owed: false,
          meta: '{}',
        };
        return { row, entry: { id, seq, at: 0, entry: JSON.stringify({ label }) } };
      };
      const batch = (
        writes: ReturnType<typeof write>[],
        deletes: string[] = [],
        dedup: StoreBatch['dedup'] = [],
      ): StoreBatch => ({
        rows: writes.map((w) => w.row),
        entries: writes.map((w) => w.entry),
        snapshots: [],
        dedup,
        deletes,
      });
      /** A callbackId in shard `shard`. */
      const idIn = (shard: number, tag: string): string => {
        for (let i = 0; ; i++) if (shardOf(`${tag}-${i}`, N) === shard) return `${tag}-${i}`;
      };
      /** The label of a callback's newest journal entry (undefined: no row). */
      const bodyOf = async (id: string) => {
        const [r] = await fx.sql<{ entry: string }>(
          'SELECT j.entry FROM callbacks c JOIN journal j ON j.callback_id = c.id WHERE c.id = $1 ORDER BY j.seq DESC LIMIT 1',
          [id],
        );
        return r && (JSON.parse(r.entry) as { label: string }).label;
      };
      const expire = (shard: number) =>
        fx.sql(`UPDATE shards SET expires_at = now() - interval '1 second' WHERE shard = $1`, [
          shard,
        ]);

      /**
       * Stores A and B on one schema, each fenced by its leases; A holds every shard. Long
       * leases: nothing ends by itself.
       */
      async function twoStores(): Promise<[PostgresStore, PostgresStore, Leases, Leases]> {
        const opts = { shards: N, leaseTtl: 30_000, renewInterval: 10_000 };
        const a = fx.store(opts);
        const la = new Leases(a);
        await a.open({ machineVersion: MACHINE, node: 'A' });
        const first = await la.round({ give: true });
        expect(first.gained.map((g) => g.shard).sort()).toEqual([0, 1, 2, 3]);
        la.adopt(first.gained);
        const b = fx.store(opts);
        const lb = new Leases(b);
        await b.open({ machineVersion: MACHINE, node: 'B' });
        // Every shard is held: B takes nothing yet.
        const none = await lb.round({ give: true });
        expect(none.gained).toEqual([]);
        expect(none.members).toEqual(['A', 'B']);
        return [a, b, la, lb];
      }

      it('refuses a commit of a replica whose lease was taken over; nothing of the batch is written', async () => {
        const [a, b, la, lb] = await twoStores();
        const s = 1;
        const t = 2;
        const x = idIn(s, 'x');
        const y = idIn(t, 'y');
        await a.commit(batch([write(x, 'x by A', 'insert'), write(y, 'y by A', 'insert')]));
        expect(await bodyOf(x)).toBe('x by A');
        const epoch = la.held().get(s)!;
        expect(epoch).toBeGreaterThan(0);

        // A's lease on s ends (A froze past it); B takes s over at the next epoch.
        await expire(s);
        const round = await lb.round({ give: true });
        expect(round.gained).toEqual([{ shard: s, epoch: epoch + 1 }]);
        lb.adopt(round.gained);
        // A still believes it holds s: its commit reaches the database and the fence refuses it.
        expect(la.held().get(s)).toBe(epoch);
        const fencedBefore = a.fencedOut;
        const err = await rejection(a.commit(batch([write(x, 'x by stale A', 'body')])));
        expect(err).toBeInstanceOf(LeaseLostError);
        expect(err).toBeInstanceOf(StoreUnavailableError);
        expect(err.code).toBe('CBE_ERR_STORE_UNAVAILABLE');
        expect(err.statusCode).toBe(503);
        expect(err.retryable).toBe(true);
        expect(a.fencedOut).toBe(fencedBefore + 1);
        expect(await bodyOf(x)).toBe('x by A');

        // A batch that also touches a shard A still holds is refused whole (one statement).
        const z = idIn(s, 'z');
        await expect(
          a.commit(
            batch([write(y, 'y by stale A', 'body'), write(z, 'z by stale A', 'insert')], [x]),
          ),
        ).rejects.toBeInstanceOf(LeaseLostError);
        expect(a.fencedOut).toBe(fencedBefore + 2);
        expect(await bodyOf(x)).toBe('x by A');
        expect(await bodyOf(y)).toBe('y by A');
        expect(await bodyOf(z)).toBeUndefined();
        // Deduplication keys of a refused batch are not kept either.
        await expect(
          a.commit(batch([], [], [{ key: 'k-stale', id: x, at: 0 }])),
        ).rejects.toBeInstanceOf(LeaseLostError);
        expect(a.fencedOut).toBe(fencedBefore + 3);
        expect(await fx.sql('SELECT key FROM dedup WHERE callback_id = $1', [x])).toEqual([]);

        // The new owner commits; the shard's row says so.
        await b.commit(batch([write(x, 'x by B', 'body')]));
        expect(await bodyOf(x)).toBe('x by B');
        expect(
          await fx.sql('SELECT owner, epoch::int AS epoch FROM shards WHERE shard = $1', [s]),
        ).toEqual([{ owner: 'B', epoch: epoch + 1 }]);

        // A's next lease round learns that it lost s; from then on it refuses locally.
        const next = await la.round({ give: false });
        expect(next.lost).toEqual([s]);
        expect(la.held().has(s)).toBe(false);
        expect(la.holds(x)).toBe(false);
        expect(lb.holds(x)).toBe(true);
        await expect(a.commit(batch([write(x, 'x by A again', 'body')]))).rejects.toBeInstanceOf(
          LeaseLostError,
        );
        expect(a.fencedOut).toBe(fencedBefore + 4);
        expect(await bodyOf(x)).toBe('x by B');
        // A still commits for the shards it holds.
        await a.commit(batch([write(y, 'y by A, later', 'body')]));
        expect(await bodyOf(y)).toBe('y by A, later');
      });

      it('refuses a commit once the lease has expired, even if nobody took over', async () => {
        const [a, , la] = await twoStores();
        const t = 3;
        const y = idIn(t, 'y');
        await a.commit(batch([write(y, 'y by A', 'insert')]));
        await expire(t);
        const fencedBefore = a.fencedOut;
        const err = await rejection(a.commit(batch([write(y, 'y too late', 'body')])));
        expect(err).toBeInstanceOf(LeaseLostError);
        expect(err.code).toBe('CBE_ERR_STORE_UNAVAILABLE');
        expect(err.retryable).toBe(true);
        expect(a.fencedOut).toBe(fencedBefore + 1);
        expect(await bodyOf(y)).toBe('y by A');
        // Nobody owns it now: the row of the shard still names A, past its expiry.
        const [lease] = await fx.sql<{ owner: string; live: boolean }>(
          'SELECT owner, expires_at > now() AS live FROM shards WHERE shard = $1',
          [t],
        );
        expect(lease).toEqual({ owner: 'A', live: false });
        expect(await a.ownerOf(t)).toBeUndefined();
        // A renewal does not bring an expired lease back; it is lost.
        const round = await la.round({ give: false });
        expect(round.lost).toEqual([t]);
        expect(la.held().has(t)).toBe(false);
      });
    });

    it('a callback created on one replica is read, found and reported to from the other', async () => {
      const steps: string[] = [];
      const [a, b] = await pair((engine, node) =>
        engine.anchor('job', {
          next: {
            progress: (cb) => {
              steps.push(`${node}:progress`);
              return { lastPct: cb.report.pct };
            },
            complete: () => {
              steps.push(`${node}:complete`);
              return { done: true };
            },
          },
        }),
      );
      const cb = await a.create('job', { data: { orderId: 7 } });
      expect(await ownerOf(cb.id)).toBe('a');

      expect(await b.get(cb.token)).toMatchObject({ status: 'create', data: { orderId: 7 } });
      expect(await b.exists(cb.token)).toBe('exists');
      expect(await b.findToken({ id: cb.id })).toBe(cb.token);
      expect(await b.findToken({ id: 'no-such-id' })).toBeUndefined();
      const listed = await b.list();
      expect(listed.items.map((i) => i.id)).toEqual([cb.id]);
      expect(listed.items[0]).toMatchObject({ token: cb.token, anchor: 'job', status: 'create' });
      const read = await b.deliver({
        type: 'CALLBACK',
        callbackToken: cb.token,
        callbackAction: 'getCallback',
      });
      expect(read.outcome).toBe('read');

      const waiting = b.wait(cb.token);
      const forwardedBefore = b.stats().cluster!.forwarded;
      const servedBefore = a.stats().cluster!.served;
      const p = await b.deliver(report(cb.token, 'progress', { pct: 50 }));
      expect(p.outcome).toBe('applied');
      expect(p.answer).toMatchObject({
        status: 'progress',
        token: cb.token,
        data: { orderId: 7, pct: 50, lastPct: 50 },
      });
      // It went over the transport (NATS, or PostgreSQL without it) to the owner, which ran the step.
      expect(b.stats().cluster!.forwarded).toBeGreaterThan(forwardedBefore);
      expect(a.stats().cluster!.served).toBeGreaterThan(servedBefore);
      expect(steps).toEqual(['a:progress']);
      expect(await a.get(cb.token)).toMatchObject({ status: 'progress', data: { lastPct: 50 } });

      const c = await a.deliver(report(cb.token, 'complete', { amount: 42 }));
      expect(c.outcome).toBe('applied');
      const final = await waiting;
      expect(final.status).toBe('complete');
      expect(final.data).toMatchObject({ orderId: 7, pct: 50, lastPct: 50, amount: 42 });
      expect(steps).toEqual(['a:progress', 'a:complete']);
      expect(await b.get(cb.token)).toMatchObject({ status: 'complete', data: { done: true } });
      // Terminal from b too: the same report again is a replay, another one a conflict.
      expect((await b.deliver(report(cb.token, 'complete', { amount: 42 }))).outcome).toBe(
        'replayed',
      );
      const late = await b.deliver(report(cb.token, 'progress', { pct: 99 }));
      expect(late.outcome).toBe('conflict');
      expect(late.answer.status).toBe('complete');
      expect(late.answer.data).toMatchObject({ pct: 50 });

      // A token for that id signed with another secret: notFound everywhere, nothing applied.
      const fields = tokenFields(cb.token);
      const forged = Buffer.from(
        JSON.stringify({ ...fields, sig: signedElsewhere(fields) }),
        'utf8',
      ).toString('base64url');
      expect(forged).not.toBe(cb.token);
      const forgedBefore = b.stats().forgedTokens;
      expect((await b.get(forged)).status).toBe('notFound');
      expect(await b.exists(forged)).toBe('notFound');
      const f = await b.deliver(report(forged, 'error', { message: 'forged' }));
      expect(f.outcome).toBe('notFound');
      expect(f.answer.status).toBe('notFound');
      expect((await b.wait(forged)).status).toBe('notFound');
      expect(b.stats().forgedTokens).toBeGreaterThan(forgedBefore);
      expect((await a.deliver(report(forged, 'error'))).outcome).toBe('notFound');
      expect(await a.get(cb.token)).toMatchObject({ status: 'complete', data: { done: true } });
      expect(steps).toEqual(['a:progress', 'a:complete']);
    });

    it('the owner holding a callback takes only its exact token: another signature or spelling of it is refused, on either replica', async () => {
      const [a, b] = await pair((engine) => engine.anchor('job'));
      const cb = await a.create('job');
      expect(await ownerOf(cb.id)).toBe('a');
      // Resident on its owner now (a report made it live there).
      expect((await a.deliver(report(cb.token, 'progress', { n: 1 }))).outcome).toBe('applied');
      const fields = tokenFields(cb.token);
      const otherKey = signedElsewhere(fields);
      const variants = [
        // Same id and anchor, signed with a key neither replica has.
        Buffer.from(JSON.stringify({ ...fields, sig: otherKey }), 'utf8').toString('base64url'),
        // The same fields, in another key order: decodes, never verifies.
        Buffer.from(
          JSON.stringify({
            sig: fields.sig,
            id: fields.id,
            anchor: fields.anchor,
            node: fields.node,
          }),
          'utf8',
        ).toString('base64url'),
        // The same JSON with whitespace in it.
        Buffer.from(JSON.stringify(fields, null, 1), 'utf8').toString('base64url'),
      ];
      const forgedBefore = a.stats().forgedTokens + b.stats().forgedTokens;
      for (const token of variants) {
        expect(token).not.toBe(cb.token);
        for (const engine of [a, b]) {
          const r = await engine.deliver(report(token, 'error', { message: 'forged' }));
          expect(r.outcome).toBe('notFound');
        }
      }
      expect(a.stats().forgedTokens + b.stats().forgedTokens).toBeGreaterThanOrEqual(
        forgedBefore + variants.length * 2,
      );
      // Nothing of them was applied; the exact token still reaches it, through either replica.
      expect((await b.deliver(report(cb.token, 'progress', { n: 2 }))).outcome).toBe('applied');
      expect(await a.get(cb.token)).toMatchObject({ status: 'progress', data: { n: 2 } });
    });

    it('idempotency keys are unique across replicas: concurrent creates return one callback', async () => {
      let creates = 0;
      const [a, b] = await pair((engine) =>
        engine.anchor('job', {
          next: {
            create: () => {
              creates++;
            },
          },
        }),
      );
      const keys = Array.from({ length: 20 }, (_, i) => `k${i + 1}`);
      const pairs = await Promise.all(
        keys.map((idempotencyKey) =>
          Promise.all([
            a.create('job', { idempotencyKey, data: { from: 'a' } }),
            b.create('job', { idempotencyKey, data: { from: 'b' } }),
          ]),
        ),
      );
      for (const [x, y] of pairs) {
        expect(y.id).toBe(x.id);
        expect(y.token).toBe(x.token);
      }
      expect(new Set(pairs.map(([x]) => x.id)).size).toBe(keys.length);
      const rows = await fx.sql<{ n: number; keys: number }>(
        'SELECT count(*)::int AS n, count(DISTINCT idem_key)::int AS keys FROM callbacks',
      );
      expect(rows).toEqual([{ n: keys.length, keys: keys.length }]);
      // One create step per key (the refused insert ran none).
      await vi.waitFor(() => expect(creates).toBe(keys.length), poll);
      // Again, one after the other: the same callbacks.
      for (const [i, key] of keys.slice(0, 5).entries()) {
        const again = await (i % 2 === 0 ? b : a).create('job', { idempotencyKey: key });
        expect(again.id).toBe(pairs[i]![0].id);
      }
      expect((await fx.sql<{ n: number }>('SELECT count(*)::int AS n FROM callbacks'))[0]!.n).toBe(
        keys.length,
      );
      await Promise.all([a.close(), b.close()]);
      expect(creates).toBe(keys.length);
    });

    it('correlation keys are unique among active callbacks across replicas', async () => {
      const [a, b] = await pair((engine) => engine.anchor('order', { correlate: ['orderid'] }));
      const first = await a.create('order', { data: { orderid: 'o-1', n: 1 } });
      expect(await a.findToken({ attributes: { orderid: 'o-1' } })).toBe(first.token);
      expect(await b.findToken({ attributes: { orderid: 'o-1' } })).toBe(first.token);
      expect(await b.findToken({ attributes: { orderid: 'o-2' } })).toBeUndefined();

      for (const replica of [b, a]) {
        const err = await rejection(replica.create('order', { data: { orderid: 'o-1', n: 2 } }));
        expect(err).toBeInstanceOf(DuplicateKeyError);
        expect(err.code).toBe('CBE_ERR_DUPLICATE_KEY');
        expect(err.statusCode).toBe(409);
      }
      // Numbers and strings correlate alike (values compared as strings).
      await expect(b.create('order', { data: { orderid: 5 } })).resolves.toMatchObject({
        status: 'create',
      });
      await expect(a.create('order', { data: { orderid: '5' } })).rejects.toBeInstanceOf(
        DuplicateKeyError,
      );
      // Only the first and the one with orderid 5 were stored.
      expect((await fx.sql<{ n: number }>(`SELECT count(*)::int AS n FROM callbacks`))[0]!.n).toBe(
        2,
      );
      // The first is intact, still found from both replicas.
      expect(await a.get(first.token)).toMatchObject({ status: 'create', data: { n: 1 } });
      expect(await b.findToken({ attributes: { orderid: 'o-1' } })).toBe(first.token);
      expect(await a.findToken({ attributes: { orderid: 'o-1' } })).toBe(first.token);

      // Once it completes (reported through b), the value is free again.
      expect((await b.deliver(report(first.token, 'complete'))).outcome).toBe('applied');
      const second = await b.create('order', { data: { orderid: 'o-1', n: 3 } });
      expect(second.id).not.toBe(first.id);
      expect(await a.findToken({ attributes: { orderid: 'o-1' } })).toBe(second.token);
      expect(await b.findToken({ attributes: { orderid: 'o-1' } })).toBe(second.token);
      await expect(a.create('order', { data: { orderid: 'o-1' } })).rejects.toBeInstanceOf(
        DuplicateKeyError,
      );
    });

    it('without NATS replicas forward over PostgreSQL: the live owner applies the report (past one NOTIFY payload too), a redelivery is replayed, nothing is queued', async () => {
      const ran: string[] = [];
      const [a, b] = await pair(
        (engine, node) =>
          engine.anchor('job', {
            next: {
              progress: () => {
                ran.push(node);
              },
            },
          }),
        { nats: false },
      );
      const cb = await a.create('job', { data: { n: 1 } });
      expect(await ownerOf(cb.id)).toBe('a');

      const r1 = await b.deliver(report(cb.token, 'progress', { pct: 1 }, 'k-1'));
      expect(r1.outcome).toBe('applied');
      expect(r1.answer).toMatchObject({ status: 'progress', data: { n: 1, pct: 1 } });
      // A report (and an answer) far larger than one NOTIFY payload.
      const blob = 'é'.repeat(50_000);
      const r2 = await b.deliver(report(cb.token, 'progress', { blob }, 'k-2'));
      expect(r2.outcome).toBe('applied');
      expect(r2.answer.data.blob).toBe(blob);
      // The same report through b again: the owner knows its key.
      const again = await b.deliver(report(cb.token, 'progress', { pct: 1 }, 'k-1'));
      expect(again.outcome).toBe('replayed');
      // Every step ran at the owner, once per report; nothing went through the inbox.
      expect(ran).toEqual(['a', 'a']);
      expect(b.stats().cluster!.forwarded).toBeGreaterThanOrEqual(3);
      expect(a.stats().cluster!.served).toBeGreaterThanOrEqual(3);
      expect(b.stats().cluster!.queued).toBe(0);
      expect((await fx.sql<{ n: number }>('SELECT count(*)::int AS n FROM inbox'))[0]!.n).toBe(0);
    });

    it('a deadline fires once, on the replica that took the shard over', async () => {
      const ran: string[] = [];
      const anchor = (node: string): AnchorOptions => ({
        next: {
          timeout: () => {
            ran.push(node);
            return { timedOutOn: node };
          },
        },
      });
      const [a, b] = await pair((engine, node) => engine.anchor('job', anchor(node)));
      const started = performance.now();
      const cb = await a.create('job', { timeout: 'PT2S', data: { n: 1 } });
      expect(await ownerOf(cb.id)).toBe('a');
      const [row] = await fx.sql<{ due: number }>(
        'SELECT due_at::float8 AS due FROM callbacks WHERE id = $1',
        [cb.id],
      );
      expect(row!.due).toBeGreaterThan(Date.now());
      const waiting = b.wait(cb.token);
      await a.close();
      // The handover happened before the deadline (else a could have fired it).
      expect(performance.now() - started).toBeLessThan(2000);
      expect(ran).toEqual([]);
      await vi.waitFor(() => expect(shardsOf(b)).toBe(SHARDS), poll);

      const final = await waiting;
      expect(final.status).toBe('timeout');
      expect(final.data).toMatchObject({ n: 1, reason: 'deadline' });
      await vi.waitFor(() => expect(ran).toEqual(['b']), poll);
      await vi.waitFor(
        async () => expect((await b.get(cb.token)).data).toMatchObject({ timedOutOn: 'b' }),
        poll,
      );
      const [stored] = await fx.sql<{ status: string; due: number | null }>(
        'SELECT status, due_at::float8 AS due FROM callbacks WHERE id = $1',
        [cb.id],
      );
      expect(stored!.status).toBe('timeout');
      // A report after the deadline changes nothing.
      expect((await b.deliver(report(cb.token, 'complete'))).outcome).toBe('conflict');
      await b.close();
      expect(ran).toEqual(['b']);
    });

    it('a deduplication key applies a report once, on the same and on different replicas', async () => {
      const runs: string[] = [];
      const [a, b] = await pair((engine) =>
        engine.anchor('job', {
          next: {
            progress: (cb) => {
              runs.push(`${cb.id}:${String(cb.report.n)}`);
            },
          },
        }),
      );
      const onA = await a.create('job');
      const onB = await b.create('job');
      expect(await ownerOf(onA.id)).toBe('a');
      expect(await ownerOf(onB.id)).toBe('b');
      const outcomes = (results: { outcome: string }[]) => results.map((r) => r.outcome).sort();

      for (const cb of [onA, onB]) {
        const m = (n: number) => report(cb.token, 'progress', { n }, `${cb.id}-key-${n}`);
        // Twice at once on one replica, then again after.
        expect(outcomes(await Promise.all([a.deliver(m(1)), a.deliver(m(1))]))).toEqual([
          'applied',
          'replayed',
        ]);
        expect((await a.deliver(m(1))).outcome).toBe('replayed');
        // Twice at once on two replicas, then again on each.
        expect(outcomes(await Promise.all([a.deliver(m(2)), b.deliver(m(2))]))).toEqual([
          'applied',
          'replayed',
        ]);
        expect((await b.deliver(m(2))).outcome).toBe('replayed');
        expect((await a.deliver(m(2))).outcome).toBe('replayed');
        // One after the other on two replicas.
        expect((await b.deliver(m(3))).outcome).toBe('applied');
        const again = await a.deliver(m(3));
        expect(again.outcome).toBe('replayed');
        expect(again.answer).toMatchObject({ status: 'progress', data: { n: 3 } });
        expect(runs.filter((r) => r.startsWith(`${cb.id}:`))).toEqual([
          `${cb.id}:1`,
          `${cb.id}:2`,
          `${cb.id}:3`,
        ]);
        // The same data under a fresh key applies again.
        expect(
          (await b.deliver(report(cb.token, 'progress', { n: 3 }, `${cb.id}-other`))).outcome,
        ).toBe('applied');
      }
      // Keys are stored with their effect, one row each.
      const [keys] = await fx.sql<{ n: number }>('SELECT count(*)::int AS n FROM dedup');
      expect(keys!.n).toBe(8);
      expect(runs).toHaveLength(8);

      // A key that is not a string of 1 to 200 characters is refused before anything happens.
      for (const replica of [a, b])
        for (const dedupKey of ['', 'x'.repeat(201), 42, null]) {
          const err = await rejection(
            replica.deliver({ ...report(onA.token, 'progress', { n: 9 }), dedupKey } as never),
          );
          expect(err).toBeInstanceOf(InvalidMessageError);
          expect(err.code).toBe('CBE_ERR_INVALID_MESSAGE');
          expect(err.message).toMatch(/dedupKey must be a string of 1 to 200 characters/);
        }
      expect(
        (await b.deliver(report(onA.token, 'progress', { n: 10 }, 'y'.repeat(200)))).outcome,
      ).toBe('applied');
      expect(runs).toHaveLength(9);
    });

    it('keeps no copy of a callback another replica owns: after a takeover nothing is stale', async () => {
      const [a, b] = await pair((engine) => engine.anchor('job'));
      const cb = await a.create('job', { idempotencyKey: 'k' });
      expect(await ownerOf(cb.id)).toBe('a');
      // b finds it by its key (a read of a's callback) and must not keep a copy in memory.
      expect((await b.create('job', { idempotencyKey: 'k' })).id).toBe(cb.id);
      expect((await a.deliver(report(cb.token, 'progress', { p: 1 }))).outcome).toBe('applied');
      await a.close();
      await vi.waitFor(() => expect(shardsOf(b)).toBe(SHARDS), poll);
      const r = await b.deliver(report(cb.token, 'progress', { q: 2 }));
      expect(r.outcome).toBe('applied');
      expect(r.answer.data).toMatchObject({ p: 1, q: 2 });
    });

    it('a refused duplicate correlation key leaves the index to the callback that holds it', async () => {
      const [a] = await pair((engine) => engine.anchor('order', { correlate: ['orderid'] }));
      const orderid = 'o-1';
      const first = await a.create('order', { data: { orderid } });
      expect(await a.findToken({ attributes: { orderid } })).toBe(first.token);
      const err = await rejection(a.create('order', { data: { orderid } }));
      expect(err).toBeInstanceOf(DuplicateKeyError);
      expect(await a.findToken({ attributes: { orderid } })).toBe(first.token);
      expect(await a.findToken({ attributes: { orderid } })).toBe(first.token);
    });

    it('applies concurrent reports to one callback in arrival order, locally and forwarded, cold or not', async () => {
      const step = (cb: { data: Record<string, unknown>; report: Record<string, unknown> }) => ({
        seen: [...((cb.data.seen as number[] | undefined) ?? []), cb.report.seq as number],
      });
      // maxLiveActors 1: most reports find their callback cold (a store read before applying).
      const [a, b] = await pair((engine) => engine.anchor('job', { next: { progress: step } }), {
        engine: { maxLiveActors: 1 },
      });
      const cbs = await Promise.all(
        Array.from({ length: 12 }, (_, i) => (i % 2 ? a : b).create('job', { data: { i } })),
      );
      const N = 30;
      await Promise.all(
        cbs.map((cb, j) =>
          Promise.all(
            // Sent without waiting for answers; every third carries a deduplication key.
            Array.from({ length: N }, (_, k) =>
              (j % 2 ? b : a).dispatch(
                report(cb.token, 'progress', { seq: k }, k % 3 === 0 ? `${cb.id}:${k}` : undefined),
              ),
            ),
          ),
        ),
      );
      for (const cb of cbs) {
        const seen = (await a.get(cb.token)).data.seen;
        expect(seen).toEqual(Array.from({ length: N }, (_, k) => k));
      }
      expect(a.stats().cluster!.forwarded + b.stats().cluster!.forwarded).toBeGreaterThan(0);
    });

    it("takes CloudEvents for any replica's callbacks over HTTP: by correlation, by id, once per event id", async () => {
      const [a, b] = await pair((engine) =>
        engine.anchor('order', {
          correlate: ['orderid'],
          eventTypes: { 'com.example.order.shipped': 'progress' },
        }),
      );
      const cb = await a.create('order', { data: { orderid: 'o-77' } });
      expect(await ownerOf(cb.id)).toBe('a');
      const server = await serve(b, { port: 0, cloudEvents: { trustCorrelation: true } });
      try {
        const post = (event: Record<string, unknown>) =>
          fetch(`${server.url}/events`, {
            method: 'POST',
            headers: { 'content-type': 'application/cloudevents+json' },
            body: JSON.stringify({ specversion: '1.0', source: '/carrier', ...event }),
          });
        // Found by its correlation attribute on b, applied at its owner a.
        const byKey = {
          id: 'e1',
          type: 'com.example.order.shipped',
          orderid: 'o-77',
          data: { leg: 1 },
        };
        const first = await post(byKey);
        expect(first.status).toBe(200);
        expect(first.headers.get('callback-outcome')).toBe('applied');
        // The same event again (same source and id): applied once.
        const again = await post(byKey);
        expect(again.status).toBe(200);
        expect(again.headers.get('callback-outcome')).toBe('replayed');
        // Found by its callbackid.
        const byId = await post({
          id: 'e2',
          type: 'com.example.order.shipped',
          callbackid: cb.id,
          data: { leg: 2 },
        });
        expect(byId.status).toBe(200);
        expect((await a.get(cb.token)).data).toMatchObject({ orderid: 'o-77', leg: 2 });
        expect(b.stats().cluster!.forwarded).toBeGreaterThanOrEqual(2);
      } finally {
        await server.close();
      }
    });
  },
);
