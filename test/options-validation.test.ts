import { describe, expect, it } from 'vitest';
import {
  createCallbackEngine,
  InvalidArgumentError,
  type CallbackEngineOptions,
} from '../src/index.js';

const base: CallbackEngineOptions = { secrets: ['0123456789abcdef0123'] };

describe('engine options are validated eagerly, one rule each', () => {
  it.each<[string, CallbackEngineOptions, RegExp]>([
    [
      'node with spaces',
      { node: 'my node' },
      /options\.node must be 1-128 characters .*got "my node"/,
    ],
    ['empty secrets', { secrets: [] }, /options\.secrets must be a non-empty array/],
    [
      'bad secret',
      { secrets: [42 as never] },
      /options\.secrets\[0\] must be a non-empty string or Buffer \(got 42\)/,
    ],
    ['timeout prose', { timeout: '1 hour' }, /options\.timeout must be an ISO 8601 duration/],
    [
      'retention prose',
      { retention: '1 hour' },
      /options\.retention must be true or an ISO 8601 duration such as "PT24H" \(got "1 hour"\)/,
    ],
    [
      'retention false',
      { retention: false as never },
      /options\.retention must be true or an ISO 8601 duration/,
    ],
    ['heartbeat zero', { heartbeat: 'PT0S' }, /options\.heartbeat must be longer than zero/],
    [
      'maxDataBytes',
      { maxDataBytes: -1 },
      /options\.maxDataBytes must be a positive integer \(got -1\)/,
    ],
    ['maxRetained', { maxRetained: 1.5 }, /options\.maxRetained must be a positive integer/],
    [
      'clock',
      { clock: {} as never },
      /options\.clock must have now\(\), setTimeout\(\) and clearTimeout\(\)/,
    ],
    ['inspect', { inspect: 'log' as never }, /options\.inspect must be a function/],
    [
      'pool threads',
      { pool: { minThreads: 4, maxThreads: 2 } },
      /minThreads \(4\) must not exceed options\.pool\.maxThreads \(2\)/,
    ],
    [
      'pool close',
      { pool: { close: 'later' as never } },
      /options\.pool\.close must be "drain" or "destroy"/,
    ],
    [
      'pool maxQueue',
      { pool: { maxQueue: -5 } },
      /options\.pool\.maxQueue must be an integer of at least 0/,
    ],
    ['baseUrl', { baseUrl: 'ftp://x' }, /options\.baseUrl must be an http\(s\) URL/],
    [
      'stepTimeout prose',
      { stepTimeout: '5 minutes' },
      /^options\.stepTimeout must be false or an ISO 8601 duration longer than zero such as "PT30S" \(got "5 minutes"\)$/,
    ],
    [
      'stepTimeout zero',
      { stepTimeout: 'PT0S' },
      /^options\.stepTimeout must be false or an ISO 8601 duration longer than zero .*\(got "PT0S"\)$/,
    ],
    [
      'stepTimeout true',
      { stepTimeout: true as never },
      /^options\.stepTimeout must be false or an ISO 8601 duration .*\(got true\)$/,
    ],
    [
      'closeTimeout',
      { closeTimeout: 10_000 as never },
      /^options\.closeTimeout must be an ISO 8601 duration such as "PT10S" \(got 10000\)$/,
    ],
    [
      'maxCallbackBytes',
      { maxCallbackBytes: 0 },
      /^options\.maxCallbackBytes must be a positive integer \(got 0\)$/,
    ],
  ])('%s', (_name, options, message) => {
    let err: unknown;
    try {
      createCallbackEngine({ ...base, ...options });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(InvalidArgumentError);
    expect(err).toMatchObject({ code: 'CBE_ERR_INVALID_ARGUMENT', statusCode: 400 });
    expect((err as Error).message).toMatch(message);
  });

  it('warns once when no secret is given (tokens would not survive a restart)', async () => {
    const warnings: Error[] = [];
    const onWarning = (w: Error) => warnings.push(w);
    process.on('warning', onWarning);
    const a = createCallbackEngine();
    const b = createCallbackEngine();
    await new Promise((r) => setImmediate(r));
    process.off('warning', onWarning);
    expect(
      warnings.filter((w) => (w as Error & { code?: string }).code === 'CBE_W_RANDOM_SECRET'),
    ).toHaveLength(1);
    expect(a.node).not.toBe(b.node);
    await Promise.all([a.close(), b.close()]);
  });

  it('validates create options with the option name', async () => {
    const engine = createCallbackEngine(base);
    engine.anchor('job');
    await expect(
      engine.create('job', { tags: Array.from({ length: 11 }, () => 't') }),
    ).rejects.toThrow(/options\.tags must be an array of at most 10/);
    await expect(engine.create('job', { tags: [''] })).rejects.toThrow(
      /options\.tags\[0\] must be a string of 1-64/,
    );
    await expect(engine.create('job', { idempotencyKey: '' })).rejects.toThrow(
      /options\.idempotencyKey must be a string/,
    );
    await expect(engine.create('job', { data: [] as never })).rejects.toMatchObject({
      code: 'CBE_ERR_INVALID_DATA',
    });
    expect(() =>
      engine.anchor('x', { attributes: { tokenAttribute: 'a', dataAttribute: 'a' } }),
    ).toThrow(/same name/);
    expect(() => engine.anchor('y', { attributes: { colour: 'x' } as never })).toThrow(
      /unknown option "colour" in anchor "y" options.attributes/,
    );
    expect(() => engine.anchor('z', { correlate: ['order-id'] })).toThrow(
      /options\.correlate\[0\] must be 1-20 letters or digits/,
    );
    expect(() => engine.anchor('w', { eventTypes: { 'com.x': 'done' as never } })).toThrow(
      /eventTypes\["com\.x"\] must be one of/,
    );
    expect(() => engine.anchor('v', { stepTimeout: 'soon' })).toThrow(
      /^anchor "v" options\.stepTimeout must be false or an ISO 8601 duration longer than zero such as "PT30S" \(got "soon"\)$/,
    );
    await engine.close();
  });
});
