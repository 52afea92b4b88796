import { afterEach, describe, expect, it } from 'vitest';
import type { CallbackEngine, StepInput } from '../src/index.js';
import { makeEngine, report } from './helpers/engine.js';

let engine: CallbackEngine;
afterEach(() => engine.close());

describe('anchors and steps (spec 6)', () => {
  it('looks up a step by exact status, then the active/error group, then *, and false means nothing', async () => {
    ({ engine } = makeEngine());
    const ran: string[] = [];
    const tag = (name: string) => (cb: StepInput) => void ran.push(`${name}:${cb.status}`);
    engine.anchor('job', {
      next: {
        create: tag('create'),
        active: tag('active'),
        error: tag('error'),
        '*': tag('star'),
        progress: false,
      },
    });
    const cb = await engine.create('job');
    await engine.dispatch(report(cb.token, 'accept'));
    await engine.dispatch(report(cb.token, 'progress'));
    await engine.dispatch(report(cb.token, 'complete'));
    const cb2 = await engine.create('job');
    await engine.cancel(cb2.token);
    expect(ran).toEqual([
      'create:create',
      'active:accept',
      'star:complete',
      'create:create',
      'error:cancel',
    ]);
  });

  it("merges a step's returned object into data and shows it in the answer", async () => {
    ({ engine } = makeEngine());
    engine.anchor('job', {
      next: {
        create: async () => ({ started: true }),
        progress: (cb) => ({ doubled: (cb.data.n as number) * 2 }),
        complete: () => ({ receipt: 'r1' }),
      },
    });
    const cb = await engine.create('job', { data: { orderId: 7 } });
    expect(cb.data).toEqual({ orderId: 7, started: true });
    expect((await engine.dispatch(report(cb.token, 'progress', { n: 21 }))).data).toEqual({
      orderId: 7,
      started: true,
      n: 21,
      doubled: 42,
    });
    const done = await engine.dispatch(report(cb.token, 'complete', { ok: 1 }));
    expect(done.data).toEqual({
      orderId: 7,
      started: true,
      n: 21,
      doubled: 42,
      ok: 1,
      receipt: 'r1',
    });
    expect((await engine.wait(cb.token)).data).toEqual(done.data);
  });

  it('a step receives status, token, id, data, parentToken, attributes and a signal', async () => {
    ({ engine } = makeEngine());
    let input: StepInput | undefined;
    engine.anchor('job', { next: { start: (cb) => void (input = cb) } });
    const cb = await engine.create('job', { data: { a: 1 } });
    await engine.dispatch(report(cb.token, 'start', { b: 2 }));
    expect(input).toMatchObject({
      status: 'start',
      token: cb.token,
      id: cb.id,
      data: { a: 1, b: 2 },
      parentToken: undefined,
    });
    expect(input!.signal).toBeInstanceOf(AbortSignal);
    expect(input!.attributes).toMatchObject({
      callbackToken: cb.token,
      callbackStatus: 'start',
      callbackId: cb.id,
    });
  });

  it('a throwing step moves the callback to error with the message; other callbacks carry on', async () => {
    ({ engine } = makeEngine());
    const errors: unknown[] = [];
    engine.anchor('job', {
      next: {
        progress: (cb) => {
          if (cb.data.bad) throw new Error('parse failed');
          return { ok: true };
        },
        error: (cb) => void errors.push(cb.data.message),
      },
    });
    const good = await engine.create('job');
    const bad = await engine.create('job');
    const [a, b] = await Promise.all([
      engine.dispatch(report(bad.token, 'progress', { bad: true })),
      engine.dispatch(report(good.token, 'progress', {})),
    ]);
    expect(a.status).toBe('error');
    expect(a.data.message).toBe('parse failed');
    expect(b).toMatchObject({ status: 'progress', data: { ok: true } });
    expect(errors).toEqual(['parse failed']);
    expect((await engine.dispatch(report(good.token, 'complete'))).status).toBe('complete');
    expect(engine.stats().stepFailures).toBe(1);
  });

  it('async rejections, non-Error throws and bad step output all become error without breaking the mailbox', async () => {
    ({ engine } = makeEngine());
    engine.anchor('job', {
      next: {
        accept: () => Promise.reject(new Error('async boom')),
        start: () => {
          throw 'a string';
        },
        progress: () => ({ fn: () => 1, big: 10n }),
      },
    });
    const [a, b, c] = await Promise.all([
      engine.create('job'),
      engine.create('job'),
      engine.create('job'),
    ]);
    expect(await engine.dispatch(report(a.token, 'accept'))).toMatchObject({
      status: 'error',
      data: { message: 'async boom' },
    });
    expect(await engine.dispatch(report(b.token, 'start'))).toMatchObject({
      status: 'error',
      data: { message: 'a string' },
    });
    const r = await engine.dispatch(report(c.token, 'progress'));
    expect(r.status).toBe('error');
    expect(r.data.message).toMatch(/step\.fn is a function, which is not JSON/);
  });

  it('a failing terminal step does not change the terminal status', async () => {
    ({ engine } = makeEngine());
    engine.anchor('job', {
      next: {
        complete: () => {
          throw new Error('late');
        },
      },
    });
    const cb = await engine.create('job');
    expect((await engine.dispatch(report(cb.token, 'complete'))).status).toBe('complete');
  });

  it('steps of one callback never overlap, even when slow; other callbacks are not blocked', async () => {
    ({ engine } = makeEngine());
    const log: string[] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    engine.anchor('job', {
      next: {
        progress: async (cb) => {
          log.push(`start ${cb.data.n}`);
          if (cb.data.n === 1) await gate;
          log.push(`end ${cb.data.n}`);
        },
      },
    });
    const slow = await engine.create('job');
    const other = await engine.create('job');
    const p1 = engine.dispatch(report(slow.token, 'progress', { n: 1 }));
    const p2 = engine.dispatch(report(slow.token, 'progress', { n: 2 }));
    await engine.dispatch(report(other.token, 'progress', { n: 9 }));
    expect(log).toEqual(['start 1', 'start 9', 'end 9']);
    release();
    await Promise.all([p1, p2]);
    expect(log).toEqual(['start 1', 'start 9', 'end 9', 'end 1', 'start 2', 'end 2']);
  });

  it('the create step runs before any report, so a report sent from inside it waits its turn', async () => {
    ({ engine } = makeEngine());
    const log: string[] = [];
    engine.anchor('job', {
      next: {
        create: async (cb) => {
          void engine.dispatch(report(cb.token, 'complete', { fast: true }));
          await Promise.resolve();
          log.push('create done');
          return { handedOff: true };
        },
        complete: () => void log.push('complete'),
      },
    });
    const cb = await engine.create('job');
    expect(cb.status).toBe('create');
    expect((await engine.wait(cb.token)).data).toEqual({ handedOff: true, fast: true });
    expect(log).toEqual(['create done', 'complete']);
  });

  it('refuses bad anchors and unknown anchors with typed errors', async () => {
    ({ engine } = makeEngine());
    engine.anchor('job');
    expect(() => engine.anchor('job')).toThrow(/anchor "job" is already registered/);
    expect(() => engine.anchor('bad name')).toThrow(/anchor name must be/);
    expect(() => engine.anchor('x', { next: { finished: () => {} } as never })).toThrow(
      /unknown key "finished"/,
    );
    expect(() => engine.anchor('y', { next: { complete: 'nope' as never } })).toThrow(
      /must be a function, a workerStep\(\) or false/,
    );
    await expect(engine.create('nope')).rejects.toMatchObject({
      code: 'CBE_ERR_UNKNOWN_ANCHOR',
      statusCode: 400,
    });
  });
});
