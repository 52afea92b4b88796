import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { CallbackEngineError } from '../src/index.js';
import {
  createCallbackEngine,
  createSimulatedClock,
  InvalidArgumentError,
  StoreUnavailableError,
  type CallbackEngine,
  type SimulatedClock,
} from '../src/index.js';
import { type DurableStore } from '../src/store/index.js';
import { serve } from '../src/http/index.js';
import { sqliteStore, type SqliteStoreOptions } from '../src/store/sqlite.js';
import { rejection, SECRET } from './helpers/engine.js';
import { DurableFixture, NODE, report, turn } from './helpers/durable.js';
import { openDb } from './helpers/sqlite.js';

const fx = new DurableFixture();
afterEach(() => fx.cleanup());

function engineOn(
  path: string,
  clock: SimulatedClock,
  store: Omit<SqliteStoreOptions, 'path'> = {},
): CallbackEngine {
  const engine = fx.open(path, { clock }, store);
  engine.anchor('job');
  return engine;
}

/** Counts of the engine and of a fresh engine on the same file: what memory and the store say. */
async function countsNowAndAfterRestart(
  engine: CallbackEngine,
  path: string,
  clock: SimulatedClock,
): Promise<{ engine: CallbackEngine; now: object; stored: object }> {
  const s = engine.stats();
  const now = {
    byStatus: s.byStatus,
    byAnchor: s.byAnchor,
    active: s.active,
    retained: s.retained,
  };
  await engine.close();
  const next = engineOn(path, clock);
  await next.ready();
  const r = next.stats();
  const stored = {
    byStatus: r.byStatus,
    byAnchor: r.byAnchor,
    active: r.active,
    retained: r.retained,
  };
  return { engine: next, now, stored };
}

describe('store faults (issue 10 item 9)', () => {
  it('refuses a second engine on the same file with CBE_ERR_STORE_LOCKED, on ready() and every later call', async () => {
    const path = fx.db();
    const clock = createSimulatedClock();
    const first = engineOn(path, clock);
    await first.ready();
    const cb = await first.create('job', { data: { owner: 'first' } });

    const second = engineOn(path, clock);
    const err = await rejection(second.ready());
    expect(err.code).toBe('CBE_ERR_STORE_LOCKED');
    expect(err.statusCode).toBe(503);
    expect(err.message).toContain(path);
    expect(await rejection(second.create('job'))).toBe(err);
    expect(await rejection(second.dispatch(report(cb.token, 'start')))).toBe(err);
    expect(await rejection(second.get(cb.token))).toBe(err);
    expect(await rejection(second.cancel(cb.token))).toBe(err);
    await second.close();

    // The first engine is untouched and keeps working.
    expect((await first.deliver(report(cb.token, 'start'))).outcome).toBe('applied');
    await first.close();
    // Once it closed, the file opens again with everything in it.
    const third = engineOn(path, clock);
    await third.ready();
    expect(await third.get(cb.token)).toMatchObject({
      status: 'start',
      data: { owner: 'first' },
    });
  });

  it('refuses a file with a newer schema version (CBE_ERR_STORE_INCOMPATIBLE naming the version)', async () => {
    const path = fx.db();
    const clock = createSimulatedClock();
    const first = engineOn(path, clock);
    await first.create('job');
    await first.close();
    const db = openDb(path);
    db.exec('PRAGMA user_version = 99');
    db.close();

    const engine = engineOn(path, clock);
    const err = await rejection(engine.ready());
    expect(err.code).toBe('CBE_ERR_STORE_INCOMPATIBLE');
    expect(err.statusCode).toBe(500);
    expect(err.message).toMatch(/schema version 99/);
    expect(await rejection(engine.create('job'))).toBe(err);
  });

  it('refuses a file written by another lifecycle machine version', async () => {
    const path = fx.db();
    const clock = createSimulatedClock();
    const first = engineOn(path, clock);
    await first.create('job');
    await first.close();
    const db = openDb(path);
    const changed = db
      .prepare("UPDATE meta SET value = 'deadbeefdeadbeef' WHERE key = 'machine_version'")
      .run();
    expect(changed.changes).toBe(1);
    db.close();

    const engine = engineOn(path, clock);
    const err = await rejection(engine.ready());
    expect(err.code).toBe('CBE_ERR_STORE_INCOMPATIBLE');
    expect(err.message).toMatch(/machine version deadbeefdeadbeef/);
  });

  it('requires node and secrets with a durable store (CBE_ERR_INVALID_ARGUMENT at construction)', () => {
    const path = fx.db();
    const make = (options: { node?: string; secrets?: string[] }) => () =>
      createCallbackEngine({ ...options, store: sqliteStore({ path }) });
    expect(make({ secrets: [SECRET] })).toThrow(InvalidArgumentError);
    expect(make({ secrets: [SECRET] })).toThrow(
      /options\.node is required with a durable store \(sqlite:.*callbacks\.db\)/,
    );
    expect(make({ node: NODE })).toThrow(InvalidArgumentError);
    expect(make({ node: NODE })).toThrow(/options\.secrets is required with a durable store/);
    expect(make({ node: NODE })).toThrow(/tokens minted before a restart must still verify/);
    // The memory store needs neither.
    expect(() => createCallbackEngine({ secrets: [SECRET] })).not.toThrow();
  });

  it('validates sqliteStore() options eagerly, naming the option and the value', async () => {
    const bad = (o: unknown) => () => sqliteStore(o as SqliteStoreOptions);
    expect(bad(undefined)).toThrow(/sqliteStore\(\) needs an options object with a path/);
    expect(bad({})).toThrow(/options\.path must be a file path \(got undefined\)/);
    expect(bad({ path: '' })).toThrow(/options\.path must be a file path \(got ""\)/);
    expect(bad({ path: ':memory:' })).toThrow(/options\.path must be a file path/);
    expect(bad({ path: 42 })).toThrow(/options\.path must be a file path \(got 42\)/);
    expect(bad({ path: 'x.db', synchronous: 'off' })).toThrow(
      /options\.synchronous must be "full" or "normal" \(got "off"\)/,
    );
    expect(bad({ path: 'x.db', pth: 'y.db' })).toThrow(/unknown option "pth" in sqliteStore/);
    expect(bad({ path: 'x.db', busyTimeoutMs: -1 })).toThrow(
      /options\.busyTimeoutMs must be a non-negative integer \(got -1\)/,
    );
    expect(bad({ path: 'x.db', maxBytes: 1.5 })).toThrow(/options\.maxBytes must be/);
    for (const o of [
      {},
      { path: '' },
      { path: 'x.db', synchronous: 'off' },
      { path: 'x.db', a: 1 },
    ])
      expect(bad(o)).toThrow(expect.objectContaining({ code: 'CBE_ERR_INVALID_ARGUMENT' }));
    expect(bad({ path: 'x.db', maxBytes: 4096 })).toThrow(/maxBytes must be at least 65536/);
    expect(() =>
      sqliteStore({ path: 'x.db', synchronous: 'normal', maxBytes: 65536 }),
    ).not.toThrow();

    // A path that cannot be opened fails at ready(), as unavailable.
    const path = join(fx.db(), 'no-such-dir', 'x.db');
    const engine = engineOn(path, createSimulatedClock());
    const err = await rejection(engine.ready());
    expect(err.code).toBe('CBE_ERR_STORE_UNAVAILABLE');
    expect(err.message).toContain('no-such-dir');
  });

  it('disk full: a failed commit answers CBE_ERR_STORE_UNAVAILABLE and memory stays equal to the store', async () => {
    const path = fx.db();
    const clock = createSimulatedClock();
    let engine = engineOn(path, clock, { maxBytes: 160 * 1024 });
    await engine.ready();
    const pad = 'x'.repeat(3000);
    /** Acknowledged creates: id → token. */
    const acked = new Map<string, string>();
    let failure: CallbackEngineError | undefined;
    for (let i = 0; i < 500 && !failure; i++) {
      try {
        const cb = await engine.create('job', { data: { i, pad } });
        acked.set(cb.id, cb.token);
      } catch (err) {
        failure = err as CallbackEngineError;
      }
    }
    expect(failure).toBeInstanceOf(StoreUnavailableError);
    expect(failure).toMatchObject({
      code: 'CBE_ERR_STORE_UNAVAILABLE',
      retryable: true,
      statusCode: 503,
    });
    expect(failure!.message).toMatch(/SQLITE_FULL|full/i);
    expect(acked.size).toBeGreaterThan(5);

    // A report that needs more room fails the same way, and is not applied.
    const [firstId, firstToken] = [...acked][0]!;
    // wait() has no cap: a failed write on its callback does not end the wait.
    let waited: string | undefined;
    void engine.wait(firstToken).then(
      (a) => (waited = a.status),
      (e: CallbackEngineError) => (waited = e.code),
    );
    const err = await rejection(
      engine.dispatch(report(firstToken, 'progress', { big: 'y'.repeat(20_000) })),
    );
    expect(err.code).toBe('CBE_ERR_STORE_UNAVAILABLE');
    const after = await engine.get(firstToken);
    expect(after.status).toBe('create');
    expect(after.data).not.toHaveProperty('big');
    expect(after.data).toMatchObject({ i: 0 });
    await turn();
    expect(waited).toBeUndefined();

    // Concurrent reports: each is either acknowledged and kept, or refused and absent.
    const tokens = [...acked.values()].slice(1, 21);
    const results = await Promise.allSettled(
      tokens.map((t, k) => engine.dispatch(report(t, 'progress', { [`r${k}`]: 'z'.repeat(5000) }))),
    );
    const refused = results.filter((r) => r.status === 'rejected');
    // Dispatched in one turn, they are one batch, one transaction: all refused together.
    expect(refused).toHaveLength(tokens.length);
    for (const r of refused)
      expect(r.reason).toMatchObject({
        code: 'CBE_ERR_STORE_UNAVAILABLE',
      });
    const expectState = async (e: CallbackEngine) => {
      for (const [k, t] of tokens.entries()) {
        const got = await e.get(t);
        if (results[k]!.status === 'fulfilled') {
          expect(got.status).toBe('progress');
          expect(got.data).toHaveProperty(`r${k}`);
        } else {
          expect(got.status).toBe('create');
          expect(got.data).not.toHaveProperty(`r${k}`);
        }
      }
    };
    await expectState(engine);

    // Counts in memory equal what the store brings back.
    const counted = await countsNowAndAfterRestart(engine, path, clock);
    engine = counted.engine;
    expect(counted.now).toEqual(counted.stored);
    expect((counted.stored as { active: number }).active).toBe(acked.size);

    // Nothing acknowledged is missing from the file.
    await expectState(engine);
    for (const [id, token] of acked) {
      const got = await engine.get(token);
      expect(got.status).not.toBe('notFound');
      expect(got.attributes.callbackId).toBe(id);
      expect(got.data).toHaveProperty('pad', pad);
    }
    expect((await engine.get(firstToken)).data).not.toHaveProperty('big');
    expect((await engine.list({ limit: 1000 })).items.map((c) => c.id)).toEqual([...acked.keys()]);
    expect(firstId).toBe([...acked.keys()][0]);
  });

  it('a terminal report refused for lack of room ends nothing; its retry with room orphans the child', async () => {
    const path = fx.db();
    const clock = createSimulatedClock();
    let engine = engineOn(path, clock, { maxBytes: 160 * 1024 });
    const parent = await engine.create('job', { data: { p: 1 } });
    const child = await engine.create('job', { parentToken: parent.token });
    let full: CallbackEngineError | undefined;
    for (let i = 0; i < 500 && !full; i++)
      await engine.create('job', { data: { pad: 'x'.repeat(3000) } }).catch((err: unknown) => {
        full = err as CallbackEngineError;
      });
    expect(full?.code).toBe('CBE_ERR_STORE_UNAVAILABLE');

    const waiting = engine.wait(parent.token).then(
      (a) => a.status,
      (err: CallbackEngineError) => err.code,
    );
    const refused = await rejection(
      engine.dispatch(report(parent.token, 'complete', { big: 'y'.repeat(30_000) })),
    );
    expect(refused.code).toBe('CBE_ERR_STORE_UNAVAILABLE');
    // Nothing was acknowledged as ended: not the wait, not the parent, not the orphaned child.
    expect(await waiting).not.toBe('complete');
    expect((await engine.get(parent.token)).status).toBe('create');
    expect((await engine.get(child.token)).status).toBe('create');
    expect(engine.stats().byStatus).toMatchObject({ complete: 0, orphan: 0 });

    // With room again (a restart with a larger cap), the retried report applies fully.
    await engine.close();
    engine = engineOn(path, clock);
    await engine.ready();
    expect((await engine.get(child.token)).status).toBe('create');
    const retried = await engine.deliver(report(parent.token, 'complete', { s: 1 }));
    expect(retried.outcome).toBe('applied');
    expect((await engine.get(child.token)).status).toBe('orphan');
    const counted = await countsNowAndAfterRestart(engine, path, clock);
    engine = counted.engine;
    expect(counted.now).toEqual(counted.stored);
    expect((await engine.get(parent.token)).data).toEqual({ p: 1, s: 1 });
    expect((await engine.get(child.token)).status).toBe('orphan');
  });

  it('file removed while running: the next report is refused with CBE_ERR_STORE_UNAVAILABLE, not applied', async () => {
    const path = fx.db();
    const clock = createSimulatedClock();
    const engine = engineOn(path, clock);
    await engine.ready();
    const cb = await engine.create('job', { data: { a: 1 } });
    await engine.dispatch(report(cb.token, 'accept'));
    const steps: string[] = [];
    engine.subscribe((e) => {
      if (e.type === 'transitioned' && e.status !== undefined) steps.push(e.status);
    });

    for (const suffix of ['', '-wal', '-shm']) rmSync(path + suffix, { force: true });
    const err = await rejection(engine.deliver(report(cb.token, 'start', { s: 1 })));
    expect(err).toBeInstanceOf(StoreUnavailableError);
    expect(err.code).toBe('CBE_ERR_STORE_UNAVAILABLE');
    expect(err.message).toMatch(/removed/);
    // Not answered as applied, and memory went back to the last committed state.
    const now = await engine.get(cb.token);
    expect(now.status).toBe('accept');
    expect(now.data).not.toHaveProperty('s');
    expect(engine.stats().byStatus).toMatchObject({ accept: 1, start: 0 });
    // Creates are refused too; no phantom callback is counted.
    expect((await rejection(engine.create('job'))).code).toBe('CBE_ERR_STORE_UNAVAILABLE');
    expect(engine.stats().active).toBe(1);
    expect(await rejection(engine.dispatch(report(cb.token, 'complete')))).toMatchObject({
      code: 'CBE_ERR_STORE_UNAVAILABLE',
    });
    expect((await engine.get(cb.token)).status).toBe('accept');
    expect(steps.length).toBeGreaterThan(0); // the transitions were tried, then undone
  });
  it('over HTTP, a report whose commit fails is answered 503 with Retry-After and the store code, never 2xx', async () => {
    const path = fx.db();
    const engine = engineOn(path, createSimulatedClock());
    await engine.ready();
    const cb = await engine.create('job', { data: { a: 1 } });
    const service = await serve(engine);
    try {
      const ok = await fetch(`${service.url}/callbacks/${cb.token}/accept`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{}',
      });
      expect(ok.status).toBe(200);
      for (const suffix of ['', '-wal', '-shm']) rmSync(path + suffix, { force: true });
      const res = await fetch(`${service.url}/callbacks/${cb.token}/progress`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ p: 1 }),
      });
      expect(res.status).toBe(503);
      expect(res.headers.get('retry-after')).toMatch(/^[1-9][0-9]*$/);
      expect(await res.json()).toMatchObject({ code: 'CBE_ERR_STORE_UNAVAILABLE' });
      expect((await engine.get(cb.token)).status).toBe('accept');
    } finally {
      await service.close();
    }
  });
  it('a cold read that fails rejects the call with CBE_ERR_STORE_UNAVAILABLE (never a synchronous throw)', async () => {
    const path = fx.db();
    const real = sqliteStore({ path });
    let broken = false;
    const load = (id: string) => {
      if (broken) throw new StoreUnavailableError('reading the store failed: disk I/O error');
      return real.load(id);
    };
    const store: DurableStore = {
      kind: 'durable',
      name: real.name,
      open: (c) => real.open(c),
      load,
      findByIdempotencyKey: (k) => real.findByIdempotencyKey(k),
      findByCorrelationKey: (k) => real.findByCorrelationKey(k),
      childrenOf: (id) => real.childrenOf(id),
      hasKey: (id, key) => real.hasKey(id, key),
      history: (id, after, limit) => real.history(id, after, limit),
      pruneKeys: (before, limit) => real.pruneKeys(before, limit),
      nextDueAt: () => real.nextDueAt(),
      dueIds: (now, limit) => real.dueIds(now, limit),
      list: (q) => real.list(q),
      commit: (b) => real.commit(b),
      close: () => real.close(),
    };
    const engine = createCallbackEngine({
      node: NODE,
      secrets: [SECRET],
      store,
      maxLiveActors: 1,
      clock: createSimulatedClock(),
    });
    engine.anchor('job');
    await engine.ready();
    const cold = await engine.create('job', { data: { a: 1 } });
    await engine.create('job'); // pushes the first out of the live set: it is read back cold
    await turn();
    broken = true;
    let dispatched: Promise<unknown> | undefined;
    expect(() => {
      dispatched = engine.dispatch(report(cold.token, 'progress', { p: 1 }));
    }).not.toThrow();
    await expect(dispatched).rejects.toMatchObject({ code: 'CBE_ERR_STORE_UNAVAILABLE' });
    await expect(engine.cancel(cold.token)).rejects.toMatchObject({
      code: 'CBE_ERR_STORE_UNAVAILABLE',
    });
    await expect(engine.get(cold.token)).rejects.toMatchObject({
      code: 'CBE_ERR_STORE_UNAVAILABLE',
    });
    broken = false;
    expect(await engine.dispatch(report(cold.token, 'progress', { p: 2 }))).toMatchObject({
      status: 'progress',
      data: { a: 1, p: 2 },
    });
    await engine.close();
  });
});
