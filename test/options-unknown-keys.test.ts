import { afterEach, describe, expect, it } from 'vitest';
import { createDispatchHandler, serve } from '../src/http/index.js';
import { createCallbackEngine, type CallbackEngine } from '../src/index.js';
import { createDashboard, createMonitor, withDashboard } from '../src/dashboard.js';
import { makeEngine, SECRET } from './helpers/engine.js';

let engine: CallbackEngine | undefined;
afterEach(async () => {
  await engine?.close();
  engine = undefined;
});

const started = () => {
  ({ engine } = makeEngine());
  engine.anchor('job');
  return engine;
};

/** The error an InvalidArgumentError with this exact message matches. */
const invalid = (message: string): unknown =>
  expect.objectContaining({ code: 'CBE_ERR_INVALID_ARGUMENT', message });

describe('unknown option keys are refused, naming the key and the nearest valid one', () => {
  it('CALLBACK messages: a misspelt field is refused (CBE_ERR_INVALID_MESSAGE), in process and over HTTP', async () => {
    const e = started();
    const cb = await e.create('job');
    await expect(
      e.deliver({
        type: 'CALLBACK',
        callbackToken: cb.token,
        callbackStatus: 'progress',
        callbackdata: { pct: 5 },
      } as never),
    ).rejects.toMatchObject({
      code: 'CBE_ERR_INVALID_MESSAGE',
      message: 'unknown field "callbackdata" in the message (did you mean "callbackData"?)',
    });
    const service = await serve(e);
    try {
      const res = await fetch(`${service.url}/callbacks`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          type: 'CALLBACK',
          callbackToken: cb.token,
          callbackStatus: 'progress',
          extra: 1,
        }),
      });
      expect(res.status).toBe(400);
      expect(await res.json()).toMatchObject({ code: 'CBE_ERR_INVALID_MESSAGE' });
    } finally {
      await service.close();
    }
    expect((await e.get(cb.token)).status).toBe('create');
  });

  it('engine options', () => {
    expect(() => createCallbackEngine({ secret: [SECRET] } as never)).toThrow(
      invalid('unknown option "secret" in engine options (did you mean "secrets"?)'),
    );
  });

  it('engine options accept the keys other parts of the engine own', () => {
    for (const key of ['store', 'stepTimeout', 'closeTimeout', 'maxCallbackBytes']) {
      let error: unknown;
      try {
        void createCallbackEngine({ secrets: [SECRET], [key]: undefined }).close();
      } catch (err) {
        error = err;
      }
      expect(error, key).toBeUndefined();
    }
  });

  it('anchor options', () => {
    const e = started();
    expect(() => e.anchor('x', { nxt: {} } as never)).toThrow(
      invalid('unknown option "nxt" in anchor "x" options (did you mean "next"?)'),
    );
  });

  it('create options', async () => {
    const e = started();
    await expect(e.create('job', { dat: { a: 1 } } as never)).rejects.toEqual(
      invalid('unknown option "dat" in create options (did you mean "data"?)'),
    );
  });

  it('pool options', () => {
    expect(() =>
      createCallbackEngine({ secrets: [SECRET], pool: { maxThread: 2 } } as never),
    ).toThrow(invalid('unknown option "maxThread" in options.pool (did you mean "maxThreads"?)'));
  });

  it('handler options, auth, hmac and cloudEvents', () => {
    const e = started();
    expect(() => createDispatchHandler(e, { basepath: '/x' } as never)).toThrow(
      invalid('unknown option "basepath" in handler options (did you mean "basePath"?)'),
    );
    expect(() => createDispatchHandler(e, { auth: { bearers: 't' } } as never)).toThrow(
      invalid('unknown option "bearers" in options.auth (did you mean "bearer"?)'),
    );
    expect(() => createDispatchHandler(e, { auth: { hmac: { secrets: 'k' } } } as never)).toThrow(
      invalid('unknown option "secrets" in options.auth.hmac (did you mean "secret"?)'),
    );
    expect(() =>
      createDispatchHandler(e, { cloudEvents: { trustCorrelations: true } } as never),
    ).toThrow(
      invalid(
        'unknown option "trustCorrelations" in options.cloudEvents (did you mean "trustCorrelation"?)',
      ),
    );
  });

  it('serve options', async () => {
    const e = started();
    await expect(serve(e, { prot: 8080 } as never)).rejects.toEqual(
      invalid('unknown option "prot" in serve options (did you mean "port"?)'),
    );
  });

  it('dashboard and monitor options', () => {
    const e = started();
    const monitor = createMonitor(e, { tickMs: 0 });
    try {
      expect(() => createDashboard(monitor, { maxSubscriber: 1 } as never)).toThrow(
        invalid(
          'unknown option "maxSubscriber" in dashboard options (did you mean "maxSubscribers"?)',
        ),
      );
      expect(() => withDashboard(() => {}, monitor, { bsePath: '/d' } as never)).toThrow(
        invalid('unknown option "bsePath" in dashboard options (did you mean "basePath"?)'),
      );
    } finally {
      monitor.close();
    }
    expect(() => createMonitor(e, { tick: 0 } as never)).toThrow(
      invalid('unknown option "tick" in monitor options (did you mean "tickMs"?)'),
    );
  });

  it('a key with no near match lists the known ones', () => {
    expect(() => createCallbackEngine({ secrets: [SECRET], zzzzzzzzzz: 1 } as never)).toThrow(
      /^unknown option "zzzzzzzzzz" in engine options; known options: node, secrets, /,
    );
  });
});

describe('createMonitor validates its arguments', () => {
  it('refuses something that is not an engine with InvalidArgumentError, not a TypeError', () => {
    for (const bad of [{}, undefined, null, 'engine']) {
      expect(() => createMonitor(bad as never)).toThrow(
        invalid(
          `createMonitor(engine) needs an engine from createCallbackEngine() (got ${bad === undefined ? 'undefined' : bad === null ? 'null' : typeof bad === 'string' ? '"engine"' : 'an object'})`,
        ),
      );
    }
  });

  it('refuses a bad option value', () => {
    const e = started();
    expect(() => createMonitor(e, { windowSeconds: 0 })).toThrow(
      invalid('monitor options.windowSeconds must be an integer of at least 1 (got 0)'),
    );
  });
});
