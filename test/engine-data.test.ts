import { afterEach, describe, expect, it } from 'vitest';
import { InvalidDataError, PayloadTooLargeError, type CallbackEngine } from '../src/index.js';
import { makeEngine, report } from './helpers/engine.js';

let engine: CallbackEngine;
afterEach(() => engine.close());

describe('data (spec 8)', () => {
  it('is createData shallow-merged with every report, later keys winning', async () => {
    ({ engine } = makeEngine());
    // Reports may change these creation fields: the anchor lists them as reportable.
    engine.anchor('job', { reportable: ['a', 'nested'] });
    const cb = await engine.create('job', { data: { a: 1, nested: { x: 1, y: 2 } } });
    await engine.dispatch(report(cb.token, 'accept', { b: 2, a: 10 }));
    await engine.dispatch(report(cb.token, 'progress', { nested: { x: 5 } }));
    await engine.dispatch(report(cb.token, 'progress', { b: 3 }));
    expect((await engine.get(cb.token)).data).toEqual({ a: 10, b: 3, nested: { x: 5 } });
  });

  it('refuses what JSON would silently change, naming the path; nested forbidden keys are dropped', async () => {
    ({ engine } = makeEngine());
    engine.anchor('job');
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ d: new Date(0) }, /options\.data\.d is a Date, not a plain object/],
      [{ m: new Map([[1, 2]]) }, /options\.data\.m is a Map/],
      [{ n: { f: () => 1 } }, /options\.data\.n\.f is a function/],
      [{ x: Number.NaN }, /options\.data\.x is NaN/],
      [{ list: [1, undefined] }, /options\.data\.list\[1\] is undefined/],
    ];
    for (const [data, message] of cases) {
      const err = await engine.create('job', { data }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(InvalidDataError);
      expect((err as Error).message).toMatch(message);
    }
    expect(engine.stats().created).toBe(0);
    const cb = await engine.create('job', { data: { keep: 1, gone: undefined } });
    const hostile = JSON.parse(
      '{"n":{"__proto__":{"polluted":1},"ok":[{"prototype":1,"v":2}]}}',
    ) as Record<string, unknown>;
    const r = await engine.dispatch(report(cb.token, 'progress', hostile));
    expect(r.data).toEqual({ keep: 1, n: { ok: [{ v: 2 }] } });
    expect(Object.hasOwn(r.data.n as object, '__proto__')).toBe(false);
  });

  it('never merges __proto__, constructor or prototype, and never pollutes prototypes', async () => {
    ({ engine } = makeEngine());
    engine.anchor('job');
    const cb = await engine.create('job', {
      data: JSON.parse('{"__proto__":{"polluted":1},"constructor":{"x":1},"ok":1}') as Record<
        string,
        unknown
      >,
    });
    const hostile = JSON.parse(
      '{"__proto__":{"isAdmin":true},"prototype":{"y":1},"constructor":"c","fine":2}',
    ) as Record<string, unknown>;
    const a = await engine.dispatch(report(cb.token, 'progress', hostile));
    expect(a.data).toEqual({ ok: 1, fine: 2 });
    expect(Object.keys(a.data)).toEqual(['ok', 'fine']);
    expect(Object.getPrototypeOf(a.data)).toBe(Object.prototype);
    expect(({} as Record<string, unknown>).isAdmin).toBeUndefined();
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('answers share frozen data: a caller mutating an answer cannot corrupt the callback', async () => {
    ({ engine } = makeEngine());
    engine.anchor('job');
    const input = { list: [1, 2] };
    const cb = await engine.create('job', { data: input });
    input.list.push(3);
    expect(cb.data).toEqual({ list: [1, 2] });
    expect(() => ((cb.data as Record<string, unknown>).x = 1)).toThrow(TypeError);
    expect(() => (cb.data.list as number[]).push(4)).toThrow(TypeError);
    expect((await engine.get(cb.token)).data).toEqual({ list: [1, 2] });
    expect(Object.isFrozen(input)).toBe(false);
  });

  it('refuses reports over the size limit with a typed error, changing nothing', async () => {
    ({ engine } = makeEngine({ maxDataBytes: 1024 }));
    engine.anchor('job');
    const cb = await engine.create('job', { data: { keep: 1 } });
    const err = await engine
      .dispatch(report(cb.token, 'progress', { blob: 'x'.repeat(2000) }))
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PayloadTooLargeError);
    expect(err).toMatchObject({
      code: 'CBE_ERR_PAYLOAD_TOO_LARGE',
      statusCode: 413,
      limitBytes: 1024,
    });
    expect((err as Error).message).toMatch(
      /callbackData is 20\d\d bytes of JSON, over the limit of 1024/,
    );
    // Multi-byte characters count as bytes, not characters.
    await expect(
      engine.dispatch(report(cb.token, 'progress', { s: 'é'.repeat(600) })),
    ).rejects.toBeInstanceOf(PayloadTooLargeError);
    await expect(engine.create('job', { data: { blob: 'x'.repeat(2000) } })).rejects.toBeInstanceOf(
      PayloadTooLargeError,
    );
    expect(await engine.get(cb.token)).toMatchObject({ status: 'create', data: { keep: 1 } });
  });

  it.each([
    ['an array', [1, 2]],
    ['a string', 'text'],
    ['a BigInt', { n: 1n }],
    [
      'a cycle',
      (() => {
        const o: Record<string, unknown> = {};
        o.self = o;
        return o;
      })(),
    ],
  ])('refuses data that is %s with CBE_ERR_INVALID_DATA', async (_name, data) => {
    ({ engine } = makeEngine());
    engine.anchor('job');
    const cb = await engine.create('job');
    const err = await engine
      .dispatch(report(cb.token, 'progress', data as never))
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InvalidDataError);
    expect(err).toMatchObject({ code: 'CBE_ERR_INVALID_DATA', statusCode: 400 });
    expect((await engine.get(cb.token)).status).toBe('create');
  });
});
