/**
 * The SQLite store rewrites a callback's row only when its status, due time or owed flag
 * changes: a report that changes none of them appends its journal entry and leaves the row as
 * it was. Reads (the store's, recovery's, the command line's) take the head from the journal.
 */
import { existsSync } from 'node:fs';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { createSimulatedClock, type CallbackEngine, type SimulatedClock } from '../src/index.js';
import { MACHINE_VERSION } from '../src/lifecycle/persist.js';
import { sqliteStore } from '../src/store/sqlite.js';
import { DurableFixture, report } from './helpers/durable.js';

const fx = new DurableFixture();
afterEach(() => fx.cleanup());

function engineOn(path: string, clock: SimulatedClock): CallbackEngine {
  const engine = fx.open(path, { clock });
  engine.anchor('job');
  return engine;
}

interface RawRow {
  status: string;
  due_at: number | null;
  head: number;
  owed: number | null;
  meta: string;
  journal: number;
}

/** The row's columns as stored, and the newest journal entry's seq. */
function raw(path: string, id: string): RawRow {
  const db = new Database(path, { readonly: true });
  try {
    return db
      .prepare(
        `SELECT status, due_at, head, owed, meta,
           (SELECT max(seq) FROM journal WHERE callback_id = c.id) AS journal
         FROM callbacks c WHERE id = ?`,
      )
      .get(id) as RawRow;
  } finally {
    db.close();
  }
}

/** What the store itself reads back for `id` (after the engine closed). */
async function stored(path: string, id: string) {
  const store = sqliteStore({ path });
  await store.open({ machineVersion: MACHINE_VERSION, node: 'n', secretFingerprints: [] } as never);
  try {
    return store.load(id);
  } finally {
    await store.close();
  }
}

describe('SQLite row writes: only when status, due time or owed change', () => {
  it('a progress report that changes neither leaves the row, and the head read back is the newest entry, after a restart too', async () => {
    const path = fx.db();
    const clock = createSimulatedClock();
    let engine = engineOn(path, clock);
    await engine.ready();
    const cb = await engine.create('job', { timeout: 'PT1H', tags: ['t'] });
    await engine.dispatch(report(cb.token, 'progress', { n: 1 }));
    const first = raw(path, cb.id);
    expect(first).toMatchObject({ status: 'progress', owed: null });
    expect(first.due_at).not.toBeNull();
    expect(first.head).toBe(first.journal);

    // Same status, same deadline: journal entries only.
    clock.advance(1000);
    await engine.dispatch(report(cb.token, 'progress', { n: 2 }));
    await engine.dispatch(report(cb.token, 'progress', { n: 3 }));
    const after = raw(path, cb.id);
    expect(after.journal).toBe(first.journal + 2);
    expect(after).toMatchObject({
      status: 'progress',
      due_at: first.due_at,
      owed: null,
      meta: first.meta,
      head: first.head,
    });

    await engine.close();
    const read = await stored(path, cb.id);
    expect(read).toMatchObject({ status: 'progress', dueAt: first.due_at, head: after.journal });

    engine = engineOn(path, clock);
    await engine.ready();
    const back = await engine.get(cb.token);
    expect(back.status).toBe('progress');
    expect(back.data).toEqual({ n: 3 });
    const history = await engine.history(cb.token);
    expect(history.entries.map((e) => e.seq)).toEqual(
      Array.from({ length: after.journal }, (_, i) => i + 1),
    );
    // A report that changes the status after the restart rewrites the row with its head.
    await engine.dispatch(report(cb.token, 'complete', { n: 4 }));
    const done = raw(path, cb.id);
    expect(done).toMatchObject({ status: 'complete', head: after.journal + 1 });
    expect(done.journal).toBe(after.journal + 1);
    await engine.close();
    engine = engineOn(path, clock);
    await engine.ready();
    const done2 = await engine.get(cb.token);
    expect(done2.status).toBe('complete');
    expect(done2.data).toEqual({ n: 4 });
  });

  it('a report that moves the heartbeat rewrites the due time; a restart arms it from the row', async () => {
    const path = fx.db();
    const clock = createSimulatedClock();
    let engine = engineOn(path, clock);
    await engine.ready();
    const cb = await engine.create('job', { timeout: false, heartbeat: 'PT5M' });
    await engine.dispatch(report(cb.token, 'progress', { n: 1 }));
    const first = raw(path, cb.id);
    clock.advance(60_000);
    await engine.dispatch(report(cb.token, 'progress', { n: 2 }));
    const moved = raw(path, cb.id);
    expect(moved.due_at).toBe(first.due_at! + 60_000);
    expect(moved.head).toBe(moved.journal);

    await engine.close();
    engine = engineOn(path, clock);
    await engine.ready();
    // Same status, same instant, so the same heartbeat: the row stays as read at recovery.
    await engine.dispatch(report(cb.token, 'progress', { n: 3 }));
    expect(raw(path, cb.id)).toMatchObject({ due_at: moved.due_at, head: moved.head });
    clock.advance(60_000);
    await engine.dispatch(report(cb.token, 'progress', { n: 4 }));
    const last = raw(path, cb.id);
    expect(last).toMatchObject({ due_at: moved.due_at! + 60_000, head: last.journal });
    await engine.close();

    // Down past the heartbeat window: it times out at the next start, from the row's due time.
    clock.advance(10 * 60_000);
    engine = engineOn(path, clock);
    await engine.ready();
    clock.advance(0);
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
    const ended = await engine.get(cb.token);
    expect(ended.status).toBe('timeout');
    expect(ended.data).toEqual({ n: 4, reason: 'heartbeat' });
  });
});

describe('SQLite checkpoints on their own thread', () => {
  it('close stops the checkpoint thread first: the file is whole and its log is gone', async () => {
    const path = fx.db();
    const clock = createSimulatedClock();
    const engine = engineOn(path, clock);
    await engine.ready();
    const cbs = await Promise.all(Array.from({ length: 200 }, () => engine.create('job')));
    for (let i = 0; i < 5; i++)
      await Promise.all(cbs.map((cb) => engine.dispatch(report(cb.token, 'progress', { i }))));
    await engine.close();
    expect(existsSync(`${path}-wal`)).toBe(false);
    const db = new Database(path, { readonly: true });
    try {
      expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
      expect(db.prepare('SELECT count(*) AS n FROM journal').get()).toEqual({ n: 200 * 6 });
    } finally {
      db.close();
    }
  });
});
