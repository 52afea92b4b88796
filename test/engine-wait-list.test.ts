import { afterEach, describe, expect, it } from 'vitest';
import { EngineClosedError, type CallbackEngine, type EngineEvent } from '../src/index.js';
import { makeEngine, report } from './helpers/engine.js';

let engine: CallbackEngine;
afterEach(() => engine.close());

describe('reading, waiting, listing (spec 10)', () => {
  it('wait resolves with the final answer once terminal, for many waiters, without polling', async () => {
    ({ engine } = makeEngine());
    engine.anchor('job', { next: { complete: () => ({ receipt: 'r' }) } });
    const cb = await engine.create('job');
    let settled = 0;
    const waits = Array.from({ length: 50 }, () =>
      engine.wait(cb.token).then((a) => (settled++, a)),
    );
    await engine.dispatch(report(cb.token, 'progress'));
    await Promise.resolve();
    expect(settled).toBe(0);
    await engine.dispatch(report(cb.token, 'complete', { ok: true }));
    const answers = await Promise.all(waits);
    for (const a of answers)
      expect(a).toMatchObject({ status: 'complete', data: { ok: true, receipt: 'r' } });
    expect((await engine.wait(cb.token)).status).toBe('complete');
    expect((await engine.wait('nope')).status).toBe('notFound');
  });

  it('wait rejects with the signal reason when aborted, and other waiters are unaffected', async () => {
    ({ engine } = makeEngine());
    engine.anchor('job');
    const cb = await engine.create('job');
    const ac = new AbortController();
    const aborted = engine.wait(cb.token, { signal: ac.signal });
    const other = engine.wait(cb.token);
    ac.abort(new Error('gave up'));
    await expect(aborted).rejects.toThrow('gave up');
    await expect(
      engine.wait(cb.token, { signal: AbortSignal.abort(new Error('already')) }),
    ).rejects.toThrow('already');
    await engine.cancel(cb.token);
    expect((await other).status).toBe('cancel');
  });

  it('lists callbacks in creation order with filters and a cursor', async () => {
    ({ engine } = makeEngine());
    engine.anchor('a');
    engine.anchor('b');
    const made = [];
    for (let i = 0; i < 25; i++)
      made.push(
        await engine.create(i % 2 ? 'a' : 'b', {
          tags: i % 5 === 0 ? ['vip', 'eu'] : ['eu'],
          data: { i },
        }),
      );
    await engine.dispatch(report(made[3]!.token, 'complete'));
    const seen: number[] = [];
    let cursor: string | undefined;
    do {
      const page = await engine.list({ limit: 7, ...(cursor !== undefined && { cursor }) });
      seen.push(...page.items.map((x) => x.data.i as number));
      cursor = page.cursor;
    } while (cursor);
    expect(seen).toEqual(Array.from({ length: 25 }, (_, i) => i));
    expect((await engine.list({ anchor: 'a', limit: 100 })).items).toHaveLength(12);
    expect((await engine.list({ tags: ['vip'] })).items.map((x) => x.data.i)).toEqual([
      0, 5, 10, 15, 20,
    ]);
    expect((await engine.list({ status: 'complete' })).items.map((x) => x.id)).toEqual([
      made[3]!.id,
    ]);
    expect(
      (await engine.list({ status: ['create'], anchor: 'b', tags: ['vip'] })).items.map(
        (x) => x.data.i,
      ),
    ).toEqual([0, 10, 20]);
    await expect(engine.list({ limit: 0 })).rejects.toThrow(
      /options\.limit must be an integer from 1 to 1000/,
    );
    await expect(engine.list({ cursor: '!!' })).rejects.toThrow(/options\.cursor is not a cursor/);
  });

  it('emits events on every transition and keeps counters by status and anchor (spec 13)', async () => {
    const events: EngineEvent[] = [];
    ({ engine } = makeEngine({ inspect: (e) => events.push(e) }));
    engine.anchor('job', {
      next: {
        progress: () => {
          throw new Error('bad');
        },
      },
    });
    const cb = await engine.create('job');
    await engine.dispatch(report(cb.token, 'start'));
    await engine.dispatch(report(cb.token, 'progress'));
    await engine.dispatch(report('forged', 'start'));
    const types = events.map((e) => e.type);
    expect(types).toEqual([
      'created',
      'dispatched',
      'transitioned',
      'dispatched',
      'transitioned',
      'stepFailed',
      'transitioned',
      'rejected',
    ]);
    expect(
      events.filter((e) => e.type === 'transitioned').map((e) => `${e.from}->${e.status}`),
    ).toEqual(['create->start', 'start->progress', 'progress->error']);
    const unsubscribe = engine.subscribe((e) => events.push(e));
    await engine.create('job');
    unsubscribe();
    await engine.create('job');
    expect(events.filter((e) => e.type === 'created')).toHaveLength(4);
    expect(engine.stats()).toMatchObject({
      byStatus: { error: 1, create: 2 },
      byAnchor: { job: { error: 1, create: 2 } },
      created: 3,
      stepFailures: 1,
    });
  });

  it('a throwing listener never breaks the engine', async () => {
    ({ engine } = makeEngine({
      inspect: () => {
        throw new Error('listener bug');
      },
    }));
    const warnings: Error[] = [];
    const onWarning = (w: Error) => warnings.push(w);
    process.on('warning', onWarning);
    engine.anchor('job');
    const cb = await engine.create('job');
    expect((await engine.dispatch(report(cb.token, 'complete'))).status).toBe('complete');
    await new Promise((r) => setImmediate(r));
    process.off('warning', onWarning);
    expect(warnings.some((w) => w.message === 'listener bug')).toBe(true);
  });
});

describe('close()', () => {
  it('stops timers and actors, rejects pending work and later calls with a typed error', async () => {
    let clock;
    ({ engine, clock } = makeEngine());
    let signal: AbortSignal | undefined;
    engine.anchor('job', {
      next: {
        progress: (cb) =>
          new Promise((resolve) => {
            signal = cb.signal;
            cb.signal.addEventListener('abort', () => resolve(undefined));
          }),
      },
    });
    const cb = await engine.create('job', { timeout: 'PT1M', heartbeat: 'PT5S' });
    const running = engine.dispatch(report(cb.token, 'progress'));
    running.catch(() => undefined); // asserted below
    const queued = engine.dispatch(report(cb.token, 'progress'));
    const waiting = engine.wait(cb.token);
    // Both reject while close() runs, before the assertions below attach to them.
    queued.catch(() => undefined);
    waiting.catch(() => undefined);
    const closing = engine.close();
    // The running step may finish within closeTimeout (10 s); then it is cut off.
    await new Promise((r) => setImmediate(r));
    expect(signal?.aborted).toBe(false);
    clock.advance(10_000);
    await closing;
    expect(signal?.aborted).toBe(true);
    await expect(queued).rejects.toBeInstanceOf(EngineClosedError);
    await expect(waiting).rejects.toMatchObject({ code: 'CBE_ERR_ENGINE_CLOSED' });
    // In memory, the cut-off step is gone with the engine: its report is refused too.
    await expect(running).rejects.toBeInstanceOf(EngineClosedError);
    await expect(engine.dispatch(report(cb.token, 'complete'))).rejects.toBeInstanceOf(
      EngineClosedError,
    );
    await expect(engine.create('job')).rejects.toBeInstanceOf(EngineClosedError);
    await expect(engine.get(cb.token)).rejects.toBeInstanceOf(EngineClosedError);
    expect(() => engine.anchor('other')).toThrow(EngineClosedError);
    await engine.close(); // idempotent
  });

  it('on the real clock, pending deadlines do not hold the process open (timers are unref()ed)', async () => {
    const { spawnSync } = await import('node:child_process');
    const script = [
      "import { createCallbackEngine } from './src/index.ts';",
      "const e = createCallbackEngine({ secrets: ['real-clock-secret-000000'] });",
      "e.anchor('job');",
      "await e.create('job', { timeout: 'PT1H', heartbeat: 'PT1M', retention: true });",
      "console.log('created');",
    ].join('\n');
    const started = Date.now();
    const child = spawnSync(
      process.execPath,
      ['--import', 'tsx', '--input-type=module', '-e', script],
      { encoding: 'utf8', timeout: 20_000 },
    );
    expect(child.stdout).toContain('created');
    expect(child.status).toBe(0);
    expect(Date.now() - started).toBeLessThan(20_000);
    ({ engine } = makeEngine());
  });
});
