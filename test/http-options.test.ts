import { afterAll, describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../src/index.js';
import {
  createDispatchHandler,
  serve,
  type DispatchHandlerOptions,
  type ServeOptions,
} from '../src/http/index.js';
import { makeEngine } from './helpers/engine.js';

const { engine } = makeEngine();
afterAll(() => engine.close());

function rejects(options: unknown, message: RegExp): void {
  let caught: unknown;
  try {
    createDispatchHandler(engine, options as DispatchHandlerOptions);
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(InvalidArgumentError);
  expect((caught as InvalidArgumentError).code).toBe('CBE_ERR_INVALID_ARGUMENT');
  expect((caught as Error).message).toMatch(message);
}

describe('handler option validation', () => {
  it.each<[string, unknown, RegExp]>([
    ['options', 'x', /^options must be an object \(got "x"\)$/],
    [
      'basePath without a leading slash',
      { basePath: 'hooks' },
      /^options\.basePath must be empty or a path .*\(got "hooks"\)$/,
    ],
    [
      'basePath with a trailing slash',
      { basePath: '/hooks/' },
      /options\.basePath .*\(got "\/hooks\/"\)/,
    ],
    [
      'maxBodyBytes',
      { maxBodyBytes: 0 },
      /^options\.maxBodyBytes must be an integer from 1 to \d+ \(got 0\)$/,
    ],
    [
      'maxJsonDepth',
      { maxJsonDepth: 1.5 },
      /^options\.maxJsonDepth must be an integer from 1 to 1000 \(got 1\.5\)$/,
    ],
    [
      'maxBatchEvents',
      { maxBatchEvents: -1 },
      /^options\.maxBatchEvents must be an integer from 1 to 10000/,
    ],
    [
      'retryAfterSeconds',
      { retryAfterSeconds: '1' },
      /^options\.retryAfterSeconds must be an integer .*\(got "1"\)$/,
    ],
    ['openApi', { openApi: 'yes' }, /^options\.openApi must be a boolean/],
    ['auth', { auth: [] }, /^options\.auth must be an object \(got an array\)$/],
    ['auth without a method', { auth: {} }, /^options\.auth must set bearer, hmac, or both$/],
    [
      'an empty bearer token',
      { auth: { bearer: '' } },
      /^options\.auth\.bearer must be a non-empty string of visible ASCII/,
    ],
    [
      'a bearer token with spaces',
      { auth: { bearer: ['ok', 'has space'] } },
      /^options\.auth\.bearer\[1\] must be/,
    ],
    [
      'an empty bearer list',
      { auth: { bearer: [] } },
      /^options\.auth\.bearer must not be an empty array$/,
    ],
    [
      'an hmac secret',
      { auth: { hmac: { secret: '' } } },
      /^options\.auth\.hmac\.secret must be a non-empty string or Buffer/,
    ],
    [
      'an hmac header',
      { auth: { hmac: { secret: 's', header: 'bad header' } } },
      /^options\.auth\.hmac\.header must be an HTTP header name/,
    ],
  ])('rejects a bad %s', (_name, options, message) => rejects(options, message));

  it('accepts the defaults and a full set of valid options', () => {
    expect(typeof createDispatchHandler(engine)).toBe('function');
    expect(
      typeof createDispatchHandler(engine, {
        basePath: '/a/b',
        maxBodyBytes: 1,
        maxJsonDepth: 1,
        maxBatchEvents: 1,
        retryAfterSeconds: 60,
        openApi: false,
        auth: { bearer: ['a', 'b'], hmac: { secret: [Buffer.from('k'), 'j'], header: 'X-Sig' } },
      }),
    ).toBe('function');
  });
});

describe('serve option validation', () => {
  it.each<[string, ServeOptions, RegExp]>([
    ['port', { port: 70_000 }, /^options\.port must be an integer from 0 to 65535 \(got 70000\)$/],
    ['host', { host: '' }, /^options\.host must be a non-empty string/],
    [
      'requestTimeoutMs',
      { requestTimeoutMs: -1 },
      /^options\.requestTimeoutMs must be a non-negative integer/,
    ],
    [
      'headersTimeoutMs over requestTimeoutMs',
      { requestTimeoutMs: 1000, headersTimeoutMs: 2000 },
      /^options\.headersTimeoutMs \(2000\) must not exceed options\.requestTimeoutMs \(1000\)$/,
    ],
    ['a handler option', { maxBodyBytes: -5 }, /^options\.maxBodyBytes must be/],
  ])('rejects a bad %s', async (_name, options, message) => {
    await expect(serve(engine, options)).rejects.toThrow(message);
    await expect(serve(engine, options)).rejects.toBeInstanceOf(InvalidArgumentError);
  });
});
