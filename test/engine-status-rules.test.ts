import { afterEach, describe, expect, it } from 'vitest';
import { InvalidMessageError, type CallbackEngine } from '../src/index.js';
import { makeEngine, report } from './helpers/engine.js';

let engine: CallbackEngine;
afterEach(() => engine.close());

describe('status rules (spec 3)', () => {
  it('moves forward through the active statuses and answers the status after handling', async () => {
    ({ engine } = makeEngine());
    engine.anchor('job');
    const cb = await engine.create('job');
    expect(cb.status).toBe('create');
    for (const s of ['accept', 'start', 'progress', 'progress'] as const) {
      const a = await engine.dispatch(report(cb.token, s));
      expect(a).toMatchObject({ status: s, token: cb.token });
    }
    expect((await engine.dispatch(report(cb.token, 'complete', { ok: 1 }))).status).toBe(
      'complete',
    );
  });

  it('may skip active statuses but never goes back; a repeated accept/start changes nothing and is not an error', async () => {
    ({ engine } = makeEngine());
    const runs: string[] = [];
    engine.anchor('job', { next: { active: (cb) => void runs.push(cb.status) } });
    const cb = await engine.create('job');
    expect((await engine.deliver(report(cb.token, 'start', { a: 1 }))).outcome).toBe('applied');
    const back = await engine.deliver(report(cb.token, 'accept', { b: 2 }));
    expect(back.outcome).toBe('ignored');
    expect(back.answer.status).toBe('start');
    expect(back.answer.data).toEqual({ a: 1 });
    expect((await engine.deliver(report(cb.token, 'start', { c: 3 }))).outcome).toBe('ignored');
    expect(runs).toEqual(['create', 'start']);
  });

  it('every progress is a new report: data merged and the step runs again, in order', async () => {
    ({ engine } = makeEngine());
    const seen: unknown[] = [];
    engine.anchor('job', { next: { progress: (cb) => void seen.push(cb.data.pct) } });
    const cb = await engine.create('job');
    for (const pct of [10, 20, 20, 30])
      await engine.dispatch(report(cb.token, 'progress', { pct }));
    expect(seen).toEqual([10, 20, 20, 30]);
    expect((await engine.get(cb.token)).data).toEqual({ pct: 30 });
  });

  it.each(['complete', 'error', 'cancel'] as const)(
    'terminal %s is final; later reports answer the current status',
    async (terminal) => {
      ({ engine } = makeEngine());
      engine.anchor('job');
      const cb = await engine.create('job', { data: { k: 1 } });
      await engine.dispatch(report(cb.token, terminal, { message: 'x' }));
      for (const s of ['accept', 'start', 'progress', 'complete', 'error'] as const) {
        if (s === terminal) continue;
        const r = await engine.deliver(report(cb.token, s, { other: true }));
        expect(r.outcome).toBe('conflict');
        expect(r.answer.status).toBe(terminal);
        expect(r.answer.data).toEqual({ k: 1, message: 'x' });
      }
    },
  );

  it('a replay of the same terminal report is a success, different data is a conflict', async () => {
    ({ engine } = makeEngine());
    engine.anchor('job');
    const cb = await engine.create('job');
    await engine.dispatch(report(cb.token, 'complete', { a: 1, b: { c: [1, 2] } }));
    const replay = await engine.deliver(report(cb.token, 'complete', { b: { c: [1, 2] }, a: 1 }));
    expect(replay.outcome).toBe('replayed');
    expect(replay.answer.status).toBe('complete');
    expect((await engine.deliver(report(cb.token, 'complete', { a: 2 }))).outcome).toBe('conflict');
    expect((await engine.deliver(report(cb.token, 'error', { a: 1 }))).outcome).toBe('conflict');
  });

  it('cooperative cancel: a caller cancel makes the outside party learn "cancel"', async () => {
    ({ engine } = makeEngine());
    engine.anchor('job');
    const cb = await engine.create('job');
    await engine.dispatch(report(cb.token, 'start'));
    expect((await engine.cancel(cb.token, { by: 'user' })).status).toBe('cancel');
    const r = await engine.deliver(report(cb.token, 'progress', { pct: 50 }));
    expect(r.answer.status).toBe('cancel');
    expect(r.outcome).toBe('conflict');
    expect((await engine.deliver(report(cb.token, 'cancel', { by: 'user' }))).outcome).toBe(
      'replayed',
    );
    expect((await engine.cancel(cb.token, { by: 'user' })).status).toBe('cancel');
  });

  it.each([
    ['not an object', 'hello', /must be an object/],
    ['null', null, /must be an object/],
    [
      'wrong type',
      { type: 'callback', callbackToken: 't', callbackStatus: 'start' },
      /message\.type must be "CALLBACK"/,
    ],
    [
      'token not a string',
      { type: 'CALLBACK', callbackToken: 42, callbackStatus: 'start' },
      /callbackToken must be a string/,
    ],
    [
      'unknown status',
      { type: 'CALLBACK', callbackToken: 't', callbackStatus: 'done' },
      /callbackStatus must be one of accept, start/,
    ],
    [
      'stored-only status',
      { type: 'CALLBACK', callbackToken: 't', callbackStatus: 'timeout' },
      /callbackStatus must be one of/,
    ],
    [
      'unknown action',
      { type: 'CALLBACK', callbackToken: 't', callbackAction: 'delete' },
      /callbackAction must be one of getCallback, exists \(got "delete"\)/,
    ],
    [
      'both',
      {
        type: 'CALLBACK',
        callbackToken: 't',
        callbackAction: 'getCallback',
        callbackStatus: 'start',
      },
      /not both/,
    ],
    [
      'bad error data',
      {
        type: 'CALLBACK',
        callbackToken: 't',
        callbackStatus: 'error',
        callbackData: { message: 1 },
      },
      /callbackData\.message of an error report must be a string/,
    ],
  ])(
    'a malformed message (%s) rejects with CBE_ERR_INVALID_MESSAGE',
    async (_name, message, text) => {
      ({ engine } = makeEngine());
      const err = await engine.dispatch(message as never).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(InvalidMessageError);
      expect(err).toMatchObject({ code: 'CBE_ERR_INVALID_MESSAGE', statusCode: 400 });
      expect((err as Error).message).toMatch(text);
    },
  );

  it('getCallback through dispatch reads without changing anything', async () => {
    ({ engine } = makeEngine());
    engine.anchor('job');
    const cb = await engine.create('job', { data: { a: 1 } });
    const a = await engine.dispatch({
      type: 'CALLBACK',
      callbackToken: cb.token,
      callbackAction: 'getCallback',
    });
    expect(JSON.parse(JSON.stringify(a))).toEqual({
      status: 'create',
      token: cb.token,
      data: { a: 1 },
    });
    expect(await engine.exists(cb.token)).toBe('exists');
  });
});
