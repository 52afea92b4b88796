/**
 * Steps are durable invocations, proved with real processes that die inside their steps: a step
 * SIGKILLs its own process (create, progress, complete, a cancel or a deadline pre-empting a
 * running step, the orphan cascade), or `close()` cuts one off; the engine starts again on the
 * same store (on PostgreSQL: another replica takes the shard over) and the step runs again with
 * nobody resending. Every step run is counted in a side file; every effect is read back from
 * the callback's history.
 */

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { HistoryEntry } from '../src/index.js';
import {
  call,
  eventually,
  gone,
  historyOf,
  killChild,
  reportTo,
  runsOf,
  startChild,
  type ChildStore,
  type JournalChild,
} from './harness/journal-runner.js';
import { PgFixture, pgAvailable } from './helpers/postgres.js';

const dir = mkdtempSync(join(tmpdir(), 'cbe-journal-crash-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const children: JournalChild[] = [];
afterEach(async () => {
  await Promise.allSettled(children.splice(0).map((c) => killChild(c)));
});

/** Applied reports of a callback with this `seq` in their data. */
const reportsWith = (h: readonly HistoryEntry[], seq: number) =>
  h.filter((e) => e.kind === 'reported' && e.outcome === 'applied' && e.data?.seq === seq);
const completed = (h: readonly HistoryEntry[], step: string) =>
  h.filter((e) => e.kind === 'stepCompleted' && e.step === step);

type Mode = 'sqlite' | 'postgres restart' | 'postgres takeover';
const modes: Mode[] = [
  'sqlite',
  ...(pgAvailable ? (['postgres restart', 'postgres takeover'] as const) : []),
];

describe.each(modes)('steps cut off by a crash run again (%s)', (mode) => {
  const fx = new PgFixture();
  let store: ChildStore;
  let runs: string;
  let n = 0;
  /** The replica that takes over (postgres takeover), running from the start. */
  let standby: JournalChild | undefined;

  beforeEach(async () => {
    n++;
    runs = join(dir, `${mode.replace(/ /g, '-')}-${n}.runs`);
    if (mode === 'sqlite') store = { sqlite: join(dir, `${n}.db`) };
    else store = { pg: fx.fresh() };
    standby = undefined;
  });
  afterEach(async () => {
    await Promise.allSettled(children.splice(0).map((c) => killChild(c)));
    if (mode !== 'sqlite') await fx.cleanup();
  });

  /** The first engine (on PostgreSQL takeover: with a standby replica beside it). */
  async function first(): Promise<JournalChild> {
    const a = await startChild(store, runs, { node: 'a' });
    children.push(a);
    if (mode === 'postgres takeover') {
      standby = await startChild(store, runs, { node: 'b' });
      children.push(standby);
    }
    return a;
  }

  /** After `dead` died: the engine that goes on (restarted, or the standby taking over). */
  async function next(dead: JournalChild): Promise<JournalChild> {
    await gone(dead);
    if (standby) return standby;
    // PostgreSQL: a replica's name is taken until its lease ends; a restarted one gets another.
    const c = await startChild(store, runs, { node: mode === 'sqlite' ? 'a' : `a${n}r` });
    children.push(c);
    return c;
  }

  /** A callback created through `via` (routed to its owner by any replica). */
  async function create(via: JournalChild, data: Record<string, unknown> = {}, extra = {}) {
    const r = await call(via, 'POST', '/create', { data, ...extra });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    return r.body as { id: string; token: string; status: string; data: Record<string, unknown> };
  }

  /** Waits until a callback's history satisfies `ok`. */
  const until = (via: JournalChild, id: string, ok: (h: HistoryEntry[]) => boolean, what: string) =>
    eventually(async () => {
      const h = await historyOf(via, id).catch(() => undefined);
      return h && ok(h) ? h : undefined;
    }, what);

  it('a create step cut off by SIGKILL completes after the restart; an idempotent retry returns its effect', async () => {
    const a = await first();
    // The create answer never comes: the process dies inside the create step.
    const dying = call(a, 'POST', '/create', {
      data: { killOn: 'create' },
      idempotencyKey: 'order-1',
    });
    expect((await dying).status).toBe(0);
    const b = await next(a);
    const again = await eventually(async () => {
      const r = await call(b, 'POST', '/create', {
        data: { killOn: 'create' },
        idempotencyKey: 'order-1',
      });
      return r.status === 200 ? r.body : undefined;
    }, 'the idempotent create');
    const id = again.id as string;
    expect(again.data).toMatchObject({ killOn: 'create', createSeen: true });
    const h = await until(b, id, (x) => completed(x, 'create').length === 1, 'the create step');
    expect(h.map((e) => e.kind)).toEqual(['created', 'stepResumed', 'stepCompleted']);
    expect(runsOf(runs, id, 'create')).toHaveLength(2);
  });

  it('a progress step cut off by SIGKILL runs again with nobody resending; the resent report is a replay', async () => {
    const a = await first();
    const cb = await create(a);
    expect((await reportTo(a, cb.token, 'progress', { seq: 1 }, 'k1')).status).toBe(200);
    const dying = reportTo(a, cb.token, 'progress', { seq: 2, kill: 'progress' }, 'k2');
    expect((await dying).status).toBe(0);
    const b = await next(a);
    const h = await until(
      b,
      cb.id,
      (x) => completed(x, 'progress').length === 2,
      'the progress step of report 2',
    );
    // The sender retries with its key: answered as a replay, applied once.
    const resent = await reportTo(b, cb.token, 'progress', { seq: 2, kill: 'progress' }, 'k2');
    expect(resent.status).toBe(200);
    expect(resent.outcome).toBe('replayed');
    const after = await historyOf(b, cb.id);
    expect(reportsWith(after, 1)).toHaveLength(1);
    expect(reportsWith(after, 2)).toHaveLength(1);
    expect(completed(after, 'progress')).toHaveLength(2);
    expect(h.map((e) => e.kind)).toEqual([
      'created',
      'stepCompleted',
      'reported',
      'stepCompleted',
      'reported',
      'stepResumed',
      'stepCompleted',
    ]);
    expect(runsOf(runs, cb.id, 'progress', 2)).toHaveLength(2);
    expect(runsOf(runs, cb.id, 'progress', 1)).toHaveLength(1);
    // Reports after it apply after it, in order.
    expect((await reportTo(b, cb.token, 'progress', { seq: 3 }, 'k3')).status).toBe(200);
    const last = await historyOf(b, cb.id);
    expect(last.filter((e) => e.kind === 'reported').map((e) => e.data?.seq)).toEqual([1, 2, 3]);
  });

  it('a complete step cut off by SIGKILL runs again; the callback then ends once', async () => {
    const a = await first();
    const cb = await create(a);
    expect(
      (await reportTo(a, cb.token, 'complete', { seq: 9, kill: 'complete' }, 'c')).status,
    ).toBe(0);
    const b = await next(a);
    const h = await until(
      b,
      cb.id,
      (x) => completed(x, 'complete').length === 1,
      'the complete step',
    );
    expect(h.map((e) => [e.kind, e.status])).toEqual([
      ['created', 'create'],
      ['stepCompleted', 'create'],
      ['reported', 'complete'],
      ['stepResumed', 'complete'],
      ['stepCompleted', 'complete'],
    ]);
    expect(runsOf(runs, cb.id, 'complete')).toHaveLength(2);
    const got = await call(b, 'GET', `/get/${encodeURIComponent(cb.token)}`);
    expect(got.body).toMatchObject({ status: 'complete', data: { seq: 9, completeSeen: 9 } });
  });

  it('a cancel pre-empting a running step: the cancel step cut off by SIGKILL runs again, the pre-empted step does not', async () => {
    const a = await first();
    const cb = await create(a);
    // Its step hangs; the report is answered when the cancel ends the callback.
    const hung = reportTo(a, cb.token, 'progress', { seq: 1, hangMs: 60_000 }, 'p1');
    await eventually(
      async () => (runsOf(runs, cb.id, 'progress', 1).length ? true : undefined),
      'the step to start',
    );
    const cancel = reportTo(a, cb.token, 'cancel', { kill: 'cancel' }, 'x');
    expect((await cancel).status).toBe(0);
    await hung;
    const b = await next(a);
    const h = await until(b, cb.id, (x) => completed(x, 'cancel').length === 1, 'the cancel step');
    expect(h.map((e) => [e.kind, e.status])).toEqual([
      ['created', 'create'],
      ['stepCompleted', 'create'],
      ['reported', 'progress'],
      ['reported', 'cancel'],
      ['stepResumed', 'cancel'],
      ['stepCompleted', 'cancel'],
    ]);
    expect(runsOf(runs, cb.id, 'cancel')).toHaveLength(2);
    expect(runsOf(runs, cb.id, 'progress')).toHaveLength(1);
  });

  it('a deadline pre-empting a running step: the timeout step cut off by SIGKILL runs again', async () => {
    const a = await first();
    const cb = await create(a, { killOn: 'timeout' }, { timeout: 'PT1S' });
    const hung = reportTo(a, cb.token, 'progress', { seq: 1, hangMs: 60_000 }, 'p1');
    // The deadline passes while the step hangs: the timeout step kills the process.
    await gone(a);
    await hung;
    const b = await next(a);
    const h = await until(
      b,
      cb.id,
      (x) => completed(x, 'timeout').length === 1,
      'the timeout step',
    );
    expect(h.map((e) => e.kind)).toEqual([
      'created',
      'stepCompleted',
      'reported',
      'timedOut',
      'stepResumed',
      'stepCompleted',
    ]);
    expect(h[3]).toMatchObject({ status: 'timeout', reason: 'deadline' });
    expect(runsOf(runs, cb.id, 'timeout')).toHaveLength(2);
  });

  it('the orphan cascade: an orphan step cut off by SIGKILL runs again; the whole subtree is orphaned once', async () => {
    const a = await first();
    const parent = await create(a);
    const c1 = await create(a, { killOn: 'orphan' }, { parentToken: parent.token });
    const c2 = await create(a, {}, { parentToken: parent.token });
    const grandchild = await create(a, {}, { parentToken: c2.token });
    const ending = call(a, 'POST', '/cancel', { token: parent.token });
    expect((await ending).status).toBe(0);
    const b = await next(a);
    for (const child of [c1, c2, grandchild])
      await until(
        b,
        child.id,
        (x) => completed(x, 'orphan').length === 1,
        `the orphan step of ${child.id}`,
      );
    await until(b, parent.id, (x) => x.some((e) => e.kind === 'cancelled'), 'the cancel');
    for (const child of [c1, c2, grandchild]) {
      const h = await historyOf(b, child.id);
      expect(h.filter((e) => e.kind === 'orphaned')).toHaveLength(1);
      expect(h.at(-1)).toMatchObject({ kind: 'stepCompleted', status: 'orphan' });
    }
    expect(runsOf(runs, c1.id, 'orphan')).toHaveLength(2);
    expect(runsOf(runs, c2.id, 'orphan').length).toBeGreaterThanOrEqual(1);
  });

  it('close() cuts a step off after closeTimeout: it stays owed and runs at the next start; its report was answered', async () => {
    if (mode === 'postgres takeover') return; // the graceful hand-over is covered by the cluster tests
    const a = await startChild(store, runs, { node: 'a', closeTimeout: 'PT1S' });
    children.push(a);
    const cb = await create(a);
    const hung = reportTo(a, cb.token, 'progress', { seq: 1, hangMs: 30_000 }, 'p1');
    await eventually(
      async () => (runsOf(runs, cb.id, 'progress', 1).length ? true : undefined),
      'the step to start',
    );
    process.kill(a.pid, 'SIGTERM');
    const answer = await hung;
    expect(answer.status).toBe(200);
    expect(answer.body).toMatchObject({ status: 'progress' });
    expect(await a.exited).toMatchObject({ code: 0 });
    const b = await startChild(store, runs, { node: mode === 'sqlite' ? 'a' : 'a-next' });
    children.push(b);
    // Resumed with its report (still hanging 30 s): the history says so at once.
    const h = await until(
      b,
      cb.id,
      (x) => x.some((e) => e.kind === 'stepResumed'),
      'the resumed step',
    );
    expect(h.map((e) => e.kind)).toEqual(['created', 'stepCompleted', 'reported', 'stepResumed']);
    expect(runsOf(runs, cb.id, 'progress', 1)).toHaveLength(2);
  });
});
