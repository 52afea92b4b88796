/**
 * Step errors are bounded and total: a step that throws a huge message, or throws (or returns)
 * something hostile, moves its callback to `error` with a short, readable message, and the
 * mailbox carries on. In process and on the worker pool.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  createCallbackEngine,
  createSimulatedClock,
  toError,
  workerStep,
  type CallbackEngine,
  type EngineEvent,
  type StepInput,
} from '../src/index.js';
import { MAX_STEP_ERROR_CHARS, toStepError } from '../src/thrown.js';
import { serve, type DispatchServer } from '../src/http/index.js';
import { sqliteStore } from '../src/store/sqlite.js';
import { makeEngine, report, SECRET } from './helpers/engine.js';
import { FAULTS } from './helpers/steps.js';
import { openDb } from './helpers/sqlite.js';

let engine: CallbackEngine | undefined;
let service: DispatchServer | undefined;
const dirs: string[] = [];
afterEach(async () => {
  await service?.close();
  await engine?.close();
  engine = service = undefined;
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

const FIVE_MB = 5 * 1024 * 1024;

const throwing = (): never => {
  throw new Error('trap');
};
/** A Proxy whose every trap throws. */
const hostileProxy = (target: object = {}): object =>
  new Proxy(target, {
    get: throwing,
    set: throwing,
    has: throwing,
    ownKeys: throwing,
    getOwnPropertyDescriptor: throwing,
    getPrototypeOf: throwing,
    setPrototypeOf: throwing,
    defineProperty: throwing,
    deleteProperty: throwing,
    isExtensible: throwing,
    preventExtensions: throwing,
    apply: throwing,
    construct: throwing,
  });

class MessageGetterThrows extends Error {
  override get message(): string {
    throw new Error('no message for you');
  }
}
class HugeMessageGetter extends Error {
  override get message(): string {
    return 'y'.repeat(FIVE_MB);
  }
}

/** Thrown values a step may throw, each with a word its message must show (or any message). */
const HOSTILE: readonly [string, () => unknown, RegExp][] = [
  ['a Proxy whose every trap throws', () => hostileProxy(), /./],
  ['a Proxy around a function whose every trap throws', () => hostileProxy(() => 1), /./],
  [
    'a revoked Proxy',
    () => {
      const p = Proxy.revocable({}, {});
      p.revoke();
      return p.proxy;
    },
    /./,
  ],
  ['an Error whose message getter throws', () => new MessageGetterThrows(), /./],
  ['an Error whose message getter returns 5 MB', () => new HugeMessageGetter(), /^y+ \[… \d+/],
  ['null', () => null, /^null$/],
  ['undefined', () => undefined, /^undefined$/],
  ['a Symbol', () => Symbol('boom'), /Symbol\(boom\)/],
  ['a BigInt', () => 12n, /^12$/],
  ['a string', () => 'plain words', /^plain words$/],
  ['a 5 MB string', () => 'z'.repeat(FIVE_MB), /^z+ \[… \d+ more characters cut\]$/],
  [
    'an object whose toJSON and toString throw',
    () => ({ toJSON: throwing, toString: throwing }),
    /\[object Object\]/,
  ],
  ['an object without a prototype', () => Object.create(null) as object, /./],
  [
    'a cyclic object',
    () => {
      const o: Record<string, unknown> = {};
      o.self = o;
      return o;
    },
    /\[object Object\]/,
  ],
];

describe('toError() and toStepError() are total', () => {
  it.each(HOSTILE)('turn %s into an Error with a readable message', (_name, make, shows) => {
    for (const convert of [toError, toStepError]) {
      let e: Error | undefined;
      expect(() => (e = convert(make()))).not.toThrow();
      expect(e).toBeInstanceOf(Error);
      expect(typeof e!.message).toBe('string');
      expect(e!.message.length).toBeGreaterThan(0);
    }
    const e = toStepError(make());
    expect(e.message).toMatch(shows);
    expect(e.message.length).toBeLessThanOrEqual(MAX_STEP_ERROR_CHARS);
    expect(String(e.stack).length).toBeLessThanOrEqual(4096);
  });

  it('keeps an ordinary Error as it is (toError) and the engine’s own errors (toStepError)', () => {
    const plain = new TypeError('nope');
    expect(toError(plain)).toBe(plain);
    const converted = toStepError(plain);
    expect(converted.message).toBe('nope');
    expect(converted.name).toBe('TypeError');
  });
});

describe('a step that throws anything, however hostile (spec 6)', () => {
  it.each(HOSTILE)(
    'throwing %s moves the callback to error with a message; the mailbox keeps working',
    async (_name, make, shows) => {
      ({ engine } = makeEngine());
      const events: EngineEvent[] = [];
      engine.subscribe((e) => events.push(e));
      engine.anchor('sync', {
        next: {
          progress: () => {
            throw make();
          },
        },
      });
      // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- the point of the test
      engine.anchor('async', { next: { progress: async () => Promise.reject(make()) } });
      for (const anchor of ['sync', 'async']) {
        const cb = await engine.create(anchor);
        const answer = await engine.dispatch(report(cb.token, 'progress', { n: 1 }));
        expect(answer.status).toBe('error');
        expect(answer.stepError?.status).toBe('progress');
        expect(answer.stepError?.message).toMatch(shows);
        expect(answer.stepError!.message.length).toBeLessThanOrEqual(MAX_STEP_ERROR_CHARS);
        expect(answer.data.message).toBe(answer.stepError?.message);
        // The mailbox carries on: the next report is answered (terminal: conflict), not stuck.
        const next = await engine.dispatch(report(cb.token, 'progress', { n: 2 }));
        expect(next.status).toBe('error');
        expect((await engine.get(cb.token)).status).toBe('error');
      }
      expect(events.filter((e) => e.type === 'stepFailed')).toHaveLength(2);
      // Other callbacks of the anchor still run.
      engine.anchor('fine', { next: { progress: () => ({ ok: true }) } });
      const ok = await engine.create('fine');
      expect((await engine.dispatch(report(ok.token, 'progress'))).data).toEqual({ ok: true });
    },
  );

  it('a step returning a thenable whose then throws, or a hostile object, fails with a message', async () => {
    ({ engine } = makeEngine());
    engine.anchor('thenable', {
      next: { progress: () => ({ then: () => throwing() }) },
    });
    engine.anchor('hostileThen', { next: { progress: () => hostileProxy() as never } });
    engine.anchor('hostileOutput', {
      next: { progress: async () => hostileProxy() as never },
    });
    engine.anchor('hugeGetter', {
      next: {
        progress: () => ({
          get field(): string {
            throw 'q'.repeat(FIVE_MB);
          },
        }),
      },
    });
    for (const anchor of ['thenable', 'hostileThen', 'hostileOutput', 'hugeGetter']) {
      const cb = await engine.create(anchor);
      const answer = await engine.dispatch(report(cb.token, 'progress'));
      expect(answer.status, anchor).toBe('error');
      expect(answer.stepError?.message, anchor).toMatch(/./);
      expect(answer.stepError!.message.length).toBeLessThanOrEqual(MAX_STEP_ERROR_CHARS);
    }
  });

  it('a worker step that throws something structured clone cannot copy fails with a message', async () => {
    ({ engine } = makeEngine({ pool: { minThreads: 1, maxThreads: 1 } }));
    engine.anchor('proxy', { next: { progress: workerStep(FAULTS, 'throwProxy') } });
    engine.anchor('plain', { next: { progress: workerStep(FAULTS, 'fail') } });
    const cb = await engine.create('proxy');
    const answer = await engine.dispatch(report(cb.token, 'progress'));
    expect(answer.status).toBe('error');
    expect(answer.stepError?.message).toMatch(/./);
    // The pool keeps serving.
    const other = await engine.create('plain');
    const b = await engine.dispatch(report(other.token, 'progress', { message: 'still here' }));
    expect(b.stepError?.message).toBe('still here');
  });
});

describe('step errors are bounded (spec 16)', () => {
  it('a 5 MB message is cut in the answer, over HTTP and in the store', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cbe-step-errors-'));
    dirs.push(dir);
    const path = join(dir, 'callbacks.db');
    engine = createCallbackEngine({
      node: 'n',
      secrets: [SECRET],
      clock: createSimulatedClock(),
      store: sqliteStore({ path }),
      pool: { minThreads: 1, maxThreads: 1 },
    });
    const huge = new Error('x'.repeat(FIVE_MB));
    engine.anchor('inProcess', {
      next: {
        progress: () => {
          throw huge;
        },
      },
    });
    engine.anchor('onPool', { next: { progress: workerStep(FAULTS, 'failHuge') } });
    service = await serve(engine);

    for (const anchor of ['inProcess', 'onPool']) {
      const cb = await engine.create(anchor);
      const answer = await engine.dispatch(report(cb.token, 'progress', { size: FIVE_MB }));
      expect(answer.status).toBe('error');
      const message = answer.stepError!.message;
      expect(message.length).toBeLessThanOrEqual(MAX_STEP_ERROR_CHARS);
      expect(message).toMatch(/^x+ \[… \d+ more characters cut\]$/);
      expect(answer.data.message).toBe(message);
      expect(JSON.stringify(answer).length).toBeLessThan(8 * 1024);

      const r = await fetch(`${service.url}/callbacks/${cb.token}`);
      const text = await r.text();
      expect(r.status).toBe(200);
      expect(text.length).toBeLessThan(8 * 1024);
      expect(JSON.parse(text)).toMatchObject({ status: 'error', stepError: { message } });
    }
    // What the store keeps of each callback is small too (read once the engine let go of the file).
    await service.close();
    await engine.close();
    const db = openDb(path, { readOnly: true });
    try {
      const rows = db
        .prepare(
          'SELECT length(entry) AS n FROM journal UNION ALL SELECT length(body) FROM snapshots UNION ALL SELECT length(meta) FROM callbacks',
        )
        .all() as { n: number }[];
      expect(rows.length).toBeGreaterThanOrEqual(2);
      for (const row of rows) expect(row.n).toBeLessThan(16 * 1024);
    } finally {
      db.close();
    }
  });

  it('the step still sees its own error object; only what is kept is cut', async () => {
    ({ engine } = makeEngine());
    const seen: unknown[] = [];
    engine.anchor('job', {
      next: {
        progress: () => {
          throw new RangeError('r'.repeat(10_000));
        },
        error: (cb: StepInput) => void seen.push(cb.data.message),
      },
    });
    const cb = await engine.create('job');
    const answer = await engine.dispatch(report(cb.token, 'progress'));
    expect(answer.stepError!.message.length).toBe(MAX_STEP_ERROR_CHARS);
    expect(seen).toEqual([answer.stepError!.message]);
  });
});
