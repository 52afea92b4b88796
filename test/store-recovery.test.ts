import { afterEach, describe, expect, it } from 'vitest';
import { createSimulatedClock, type CallbackEngine, type SimulatedClock } from '../src/index.js';
import { DurableFixture, report } from './helpers/durable.js';

const fx = new DurableFixture();
afterEach(() => fx.cleanup());

/** A fresh engine on `path` with the anchors every test here uses. */
function engineOn(path: string, clock: SimulatedClock): CallbackEngine {
  const engine = fx.open(path, { clock });
  engine.anchor('job');
  engine.anchor('order', { correlate: ['orderId'] });
  return engine;
}

/** Closes `engine` and opens a new one on the same file, after recovery. */
async function restart(
  engine: CallbackEngine,
  path: string,
  clock: SimulatedClock,
): Promise<CallbackEngine> {
  await engine.close();
  const next = engineOn(path, clock);
  await next.ready();
  return next;
}

describe('recovery from the SQLite store (issue 10 item 7)', () => {
  it('brings back active callbacks with their status and merged data, and their tokens still verify', async () => {
    const path = fx.db();
    const clock = createSimulatedClock();
    let engine = engineOn(path, clock);
    await engine.ready();
    const a = await engine.create('job', { data: { base: 1 } });
    await engine.dispatch(report(a.token, 'accept', { over: 'accept' }));
    await engine.dispatch(report(a.token, 'progress', { x: 1, over: 'progress' }));
    await engine.dispatch(report(a.token, 'progress', { y: 2 }));
    const b = await engine.create('job', { data: { b: true } });
    const c = await engine.create('job');
    await engine.dispatch(report(c.token, 'start', { started: 'yes' }));

    engine = await restart(engine, path, clock);
    expect(await engine.get(a.token)).toMatchObject({
      status: 'progress',
      data: { base: 1, over: 'progress', x: 1, y: 2 },
    });
    expect(await engine.get(b.token)).toMatchObject({ status: 'create', data: { b: true } });
    expect(await engine.get(c.token)).toMatchObject({ status: 'start', data: { started: 'yes' } });
    expect(await engine.exists(a.token)).toBe('exists');

    // Its creation fields are still its own: a report that would change one is refused.
    await expect(engine.deliver(report(a.token, 'progress', { base: 2 }))).rejects.toMatchObject({
      code: 'CBE_ERR_INVALID_DATA',
      issues: [{ path: ['base'] }],
    });
    // The tokens minted before the restart still verify: reports apply and merge.
    const r = await engine.deliver(report(a.token, 'progress', { z: 3 }));
    expect(r.outcome).toBe('applied');
    expect(r.answer).toMatchObject({ status: 'progress', data: { base: 1, x: 1, y: 2, z: 3 } });
    expect((await engine.deliver(report(b.token, 'start'))).outcome).toBe('applied');
    expect((await engine.deliver(report(c.token, 'accept'))).outcome).toBe('ignored');
    const done = await engine.deliver(report(c.token, 'complete', { result: 42 }));
    expect(done.outcome).toBe('applied');
    expect(done.answer).toMatchObject({ status: 'complete', data: { started: 'yes', result: 42 } });

    // And what was applied after the restart survives the next one.
    engine = await restart(engine, path, clock);
    expect(await engine.get(a.token)).toMatchObject({ status: 'progress', data: { z: 3 } });
    expect((await engine.get(b.token)).status).toBe('start');
    expect((await engine.get(c.token)).status).toBe('complete');
  });

  it('brings back retained (terminal) callbacks with their status and data', async () => {
    const path = fx.db();
    const clock = createSimulatedClock();
    let engine = engineOn(path, clock);
    const ok = await engine.create('job', { data: { n: 1 } });
    const failed = await engine.create('job');
    const cancelled = await engine.create('job');
    await engine.dispatch(report(ok.token, 'complete', { result: 'fine' }));
    await engine.dispatch(report(failed.token, 'error', { message: 'boom', errorNumber: 7 }));
    await engine.cancel(cancelled.token, { why: 'user' });

    engine = await restart(engine, path, clock);
    expect(await engine.get(ok.token)).toMatchObject({
      status: 'complete',
      data: { n: 1, result: 'fine' },
    });
    expect(await engine.get(failed.token)).toMatchObject({
      status: 'error',
      data: { message: 'boom', errorNumber: 7 },
    });
    expect(await engine.get(cancelled.token)).toMatchObject({
      status: 'cancel',
      data: { why: 'user' },
    });
    // Terminal stays terminal: a later report answers the current status and changes nothing.
    const late = await engine.deliver(report(cancelled.token, 'progress', { late: true }));
    expect(late.answer.status).toBe('cancel');
    expect(late.answer.data).not.toHaveProperty('late');
    const stats = engine.stats();
    expect(stats.retained).toBe(3);
    expect(stats.active).toBe(0);
  });

  it('replays an acknowledged terminal report after the restart, and answers another one as a conflict', async () => {
    const path = fx.db();
    const clock = createSimulatedClock();
    let engine = engineOn(path, clock);
    const cb = await engine.create('job');
    const first = await engine.deliver(report(cb.token, 'complete', { result: 1 }));
    expect(first.outcome).toBe('applied');

    engine = await restart(engine, path, clock);
    const replay = await engine.deliver(report(cb.token, 'complete', { result: 1 }));
    expect(replay.outcome).toBe('replayed');
    expect(replay.answer).toMatchObject({ status: 'complete', data: { result: 1 } });
    const other = await engine.deliver(report(cb.token, 'complete', { result: 2 }));
    expect(other.outcome).toBe('conflict');
    expect(other.answer.data).toMatchObject({ result: 1 });
  });

  it('keeps idempotency keys: a create with the same key after the restart returns the same callback', async () => {
    const path = fx.db();
    const clock = createSimulatedClock();
    let engine = engineOn(path, clock);
    let creates = 0;
    const active = await engine.create('job', { idempotencyKey: 'order-1', data: { v: 1 } });
    const ended = await engine.create('job', { idempotencyKey: 'order-2', data: { v: 2 } });
    await engine.dispatch(report(ended.token, 'complete'));

    engine = await restart(engine, path, clock);
    // Registered after the restart: a create step that must not run for a known key.
    await engine.close();
    engine = fx.open(path, { clock });
    engine.anchor('job', { next: { create: () => void creates++ } });
    await engine.ready();
    const again = await engine.create('job', { idempotencyKey: 'order-1', data: { v: 99 } });
    expect(again.id).toBe(active.id);
    expect(again.token).toBe(active.token);
    expect(again.data).toEqual({ v: 1 });
    const again2 = await engine.create('job', { idempotencyKey: 'order-2' });
    expect(again2.id).toBe(ended.id);
    expect(again2.status).toBe('complete');
    expect(creates).toBe(0);
    // Another key is a new callback.
    const fresh = await engine.create('job', { idempotencyKey: 'order-3' });
    expect(fresh.id).not.toBe(active.id);
    expect(creates).toBe(1);
    expect(engine.stats().byStatus.create).toBe(2);
  });

  it('keeps correlation keys: correlate() finds a callback created before the restart', async () => {
    const path = fx.db();
    const clock = createSimulatedClock();
    let engine = engineOn(path, clock);
    const o42 = await engine.create('order', { data: { orderId: 42 } });
    const o43 = await engine.create('order', { data: { orderId: 'A-43' } });
    expect(await engine.findToken({ attributes: { orderid: '42' } })).toBe(o42.token);

    engine = await restart(engine, path, clock);
    expect(await engine.findToken({ attributes: { orderid: '42' } })).toBe(o42.token);
    expect(await engine.findToken({ attributes: { orderid: 42 } })).toBe(o42.token);
    expect(await engine.findToken({ attributes: { orderid: 'A-43' } })).toBe(o43.token);
    expect(await engine.findToken({ attributes: { orderid: '44' } })).toBeUndefined();
    // The token found is usable.
    const r = await engine.deliver(
      report((await engine.findToken({ attributes: { orderid: '42' } }))!, 'start'),
    );
    expect(r.outcome).toBe('applied');
    expect(r.answer.data).toEqual({ orderId: 42 });
  });

  it('keeps parent/child links: ending the parent after the restart orphans its still-active children', async () => {
    const path = fx.db();
    const clock = createSimulatedClock();
    let engine = engineOn(path, clock);
    const parent = await engine.create('job', { data: { name: 'parent' } });
    const child = await engine.create('job', {
      data: { name: 'child' },
      parentToken: parent.token,
    });
    const grandchild = await engine.create('job', {
      data: { name: 'grandchild' },
      parentToken: child.token,
    });
    const doneChild = await engine.create('job', {
      data: { name: 'done' },
      parentToken: parent.token,
    });
    await engine.dispatch(report(doneChild.token, 'complete'));

    engine = await restart(engine, path, clock);
    expect((await engine.get(child.token)).attributes.callbackParentToken).toBe(parent.token);
    await engine.dispatch(report(parent.token, 'complete'));
    await engine.wait(parent.token, { children: true });
    expect(await engine.get(child.token)).toMatchObject({
      status: 'orphan',
      data: { name: 'child', reason: 'parent-inactive' },
    });
    expect((await engine.get(grandchild.token)).status).toBe('orphan');
    expect((await engine.get(doneChild.token)).status).toBe('complete');
    expect(engine.stats().orphaned).toBe(2);

    // The orphaning was committed like any other change.
    engine = await restart(engine, path, clock);
    expect((await engine.get(child.token)).status).toBe('orphan');
    expect((await engine.get(grandchild.token)).status).toBe('orphan');
    expect(engine.stats().byStatus.orphan).toBe(2);
  });

  it('keeps list() order; callbacks created after the restart come after the old ones', async () => {
    const path = fx.db();
    const clock = createSimulatedClock();
    let engine = engineOn(path, clock);
    const before: string[] = [];
    for (let i = 0; i < 7; i++) {
      const anchor = i % 2 === 0 ? 'job' : 'order';
      const cb = await engine.create(anchor, { data: { i, orderId: i }, tags: [`t${i % 3}`] });
      before.push(cb.id);
      if (i === 2) await engine.dispatch(report(cb.token, 'complete'));
    }
    expect((await engine.list()).items.map((c) => c.id)).toEqual(before);

    engine = await restart(engine, path, clock);
    expect((await engine.list()).items.map((c) => c.id)).toEqual(before);
    const after: string[] = [];
    for (let i = 0; i < 3; i++) after.push((await engine.create('job', { data: { i } })).id);
    expect((await engine.list()).items.map((c) => c.id)).toEqual([...before, ...after]);
    // Filters and paging over the restored rows.
    expect((await engine.list({ anchor: 'order' })).items.map((c) => c.id)).toEqual(
      before.filter((_, i) => i % 2 === 1),
    );
    expect((await engine.list({ status: 'complete' })).items.map((c) => c.id)).toEqual([before[2]]);
    expect((await engine.list({ tags: ['t0'] })).items.map((c) => c.id)).toEqual([
      before[0],
      before[3],
      before[6],
    ]);
    const page1 = await engine.list({ limit: 4 });
    const page2 = await engine.list({ limit: 4, cursor: page1.cursor! });
    const page3 = await engine.list({ limit: 4, cursor: page2.cursor! });
    expect([...page1.items, ...page2.items, ...page3.items].map((c) => c.id)).toEqual([
      ...before,
      ...after,
    ]);
    expect(page3.cursor).toBeUndefined();

    // Order still holds after a second restart.
    engine = await restart(engine, path, clock);
    const late = await engine.create('job');
    expect((await engine.list({ limit: 1000 })).items.map((c) => c.id)).toEqual([
      ...before,
      ...after,
      late.id,
    ]);
  });

  it('a status change and a body-only write of one callback in one group commit keep the stored status right', async () => {
    const path = fx.db();
    const clock = createSimulatedClock();
    let engine = engineOn(path, clock);
    await engine.ready();
    const cb = await engine.create('job', { timeout: 'PT1H' });
    await engine.dispatch(report(cb.token, 'accept'));
    // One turn: accept → progress moves the status (status column and index), the second
    // progress only changes the body. The batch must still write the status.
    const both = await Promise.all([
      engine.dispatch(report(cb.token, 'progress', { a: 1 })),
      engine.dispatch(report(cb.token, 'progress', { b: 2 })),
      engine.dispatch(report(cb.token, 'progress', { c: 3 })),
    ]);
    expect(both.map((x) => x.status)).toEqual(['progress', 'progress', 'progress']);
    const commits = engine.stats().commits;
    engine = await restart(engine, path, clock);
    expect(commits).toBeGreaterThan(0);
    expect((await engine.list({ status: 'progress' })).items.map((i) => i.id)).toEqual([cb.id]);
    expect((await engine.list({ status: 'accept' })).items).toHaveLength(0);
    expect(engine.stats().byStatus).toMatchObject({ accept: 0, progress: 1 });
    expect((await engine.get(cb.token)).data).toEqual({ a: 1, b: 2, c: 3 });
  });

  it('restores stats() counts by status and by anchor', async () => {
    const path = fx.db();
    const clock = createSimulatedClock();
    let engine = engineOn(path, clock);
    const jobs = await Promise.all(Array.from({ length: 6 }, () => engine.create('job')));
    const orders = await Promise.all(
      Array.from({ length: 4 }, (_, i) => engine.create('order', { data: { orderId: i } })),
    );
    await engine.dispatch(report(jobs[0]!.token, 'accept'));
    await engine.dispatch(report(jobs[1]!.token, 'progress', { p: 1 }));
    await engine.dispatch(report(jobs[2]!.token, 'complete'));
    await engine.dispatch(report(jobs[3]!.token, 'error', { message: 'x' }));
    await engine.cancel(orders[0]!.token);
    await engine.dispatch(report(orders[1]!.token, 'start'));
    const before = engine.stats();
    expect(before.byStatus).toMatchObject({
      create: 4,
      accept: 1,
      start: 1,
      progress: 1,
      complete: 1,
      error: 1,
      cancel: 1,
    });

    engine = await restart(engine, path, clock);
    const after = engine.stats();
    expect(after.byStatus).toEqual(before.byStatus);
    expect(after.byAnchor).toEqual(before.byAnchor);
    expect(after.byAnchor.job).toMatchObject({ create: 2, accept: 1, progress: 1, complete: 1 });
    expect(after.byAnchor.order).toMatchObject({ create: 2, start: 1, cancel: 1 });
    expect(after.active).toBe(7);
    expect(after.retained).toBe(3);
    // Counters keep moving from the restored values.
    await engine.dispatch(report(jobs[4]!.token, 'complete'));
    expect(engine.stats().byStatus).toMatchObject({ create: 3, complete: 2 });
    expect(engine.stats()).toMatchObject({ active: 6, retained: 4 });
  });

  it('wait() on a callback created before the restart resolves when it ends', async () => {
    const path = fx.db();
    const clock = createSimulatedClock();
    let engine = engineOn(path, clock);
    const parent = await engine.create('job');
    const child = await engine.create('job', { parentToken: parent.token });

    engine = await restart(engine, path, clock);
    let settled = false;
    const waited = engine.wait(parent.token, { children: true }).then((a) => {
      settled = true;
      return a;
    });
    await new Promise((r) => setImmediate(r));
    expect(settled).toBe(false);
    await engine.dispatch(report(parent.token, 'complete', { fin: 1 }));
    expect(await waited).toMatchObject({ status: 'complete', data: { fin: 1 } });
    expect((await engine.get(child.token)).status).toBe('orphan');
  });

  it('reports and creates that arrive before ready() wait for recovery instead of answering notFound', async () => {
    const path = fx.db();
    const clock = createSimulatedClock();
    let engine = engineOn(path, clock);
    const a = await engine.create('job', { data: { a: 1 } });
    const b = await engine.create('job');
    const c = await engine.create('job');
    await engine.dispatch(report(c.token, 'complete', { c: 1 }));
    await engine.close();

    engine = engineOn(path, clock); // no await ready()
    const early = [
      engine.deliver(report(a.token, 'progress', { early: true })),
      engine.get(b.token),
      engine.exists(c.token),
      engine.create('job', { data: { created: 'early' } }),
      engine.deliver(report(c.token, 'complete', { c: 1 })),
    ] as const;
    const [progress, got, exists, created, replay] = await Promise.all(early);
    expect(progress.outcome).toBe('applied');
    expect(progress.answer).toMatchObject({ status: 'progress', data: { a: 1, early: true } });
    expect(got.status).toBe('create');
    expect(exists).toBe('exists');
    expect(created.status).toBe('create');
    expect(replay.outcome).toBe('replayed');
    // The early create got a sequence number after the stored ones.
    expect((await engine.list()).items.map((x) => x.id)).toEqual([a.id, b.id, c.id, created.id]);
  });
});
