import * as v from 'valibot';
import { describe, expect, expectTypeOf, it } from 'vitest';
import { z } from 'zod';
import {
  InvalidArgumentError,
  InvalidDataError,
  typedEngine,
  UnknownAnchorError,
  type CallbackData,
  type JsonValue,
  type StandardSchemaV1,
  type Token,
} from '../src/index.js';
import { flush, makeEngine, rejection, report } from './helpers/engine.js';
import { jsonOf, serviceFixture } from './helpers/http.js';

describe('typed anchors: types from a type argument', () => {
  it('types create({ data }), cb.data and cb.report per status, with no casts', async () => {
    const { engine } = makeEngine();
    const seen: string[] = [];
    const order = engine.anchor<{
      data: { orderId: number; note?: string };
      reports: { progress: { pct: number }; complete: { receipt: string } };
    }>('order', {
      next: {
        create: (cb) => {
          expectTypeOf(cb.data.orderId).toEqualTypeOf<number>();
          expectTypeOf(cb.data.note).toEqualTypeOf<string | undefined>();
          expectTypeOf(cb.status).toEqualTypeOf<'create'>();
          seen.push(`create ${cb.data.orderId + 1}`);
        },
        progress: (cb) => {
          expectTypeOf(cb.report.pct).toEqualTypeOf<number>();
          seen.push(`progress ${cb.report.pct.toFixed(0)}`);
          return { lastPct: cb.report.pct };
        },
        complete: (cb) => {
          expectTypeOf(cb.report.receipt).toEqualTypeOf<string>();
          seen.push(`complete ${cb.report.receipt.toUpperCase()}`);
        },
        // Group and '*' keys see the untyped report.
        error: (cb) => {
          expectTypeOf(cb.report).toEqualTypeOf<CallbackData>();
        },
      },
    });
    expect(order.name).toBe('order');
    expect(Object.isFrozen(order)).toBe(true);

    const cb = await order.create({ data: { orderId: 41 } });
    expectTypeOf(cb.data.orderId).toEqualTypeOf<number>();
    expect(cb.data.orderId).toBe(41);
    await order.report(cb.token, 'progress', { pct: 50 });
    await order.report(cb.token, 'complete', { receipt: 'r-1' });
    expect(seen).toEqual(['create 42', 'progress 50', 'complete R-1']);
    expect((await engine.get(cb.token)).data).toEqual({
      orderId: 41,
      pct: 50,
      lastPct: 50,
      receipt: 'r-1',
    });

    // Type errors, checked by `npm run typecheck` (tsc covers test/):
    // @ts-expect-error orderId must be a number
    await rejection(order.create({ data: { orderId: 'x' } })).catch(() => {});
    // @ts-expect-error data is required: orderId is a required key
    void order.create({}).catch(() => {});
    // @ts-expect-error pct must be a number
    void order.report(cb.token, 'progress', { pct: '1' });
    await engine.close();
  });

  it('keeps the string-name API: engine.create(name) and dispatch work beside the handle', async () => {
    const { engine } = makeEngine();
    engine.anchor('plain', { next: { progress: (cb) => ({ seen: cb.report.n }) } });
    const cb = await engine.create('plain', { data: { a: 1 } });
    const a = await engine.dispatch(report(cb.token, 'progress', { n: 2 }));
    expect(a.data).toEqual({ a: 1, n: 2, seen: 2 });
    await engine.close();
  });
});

describe.each([
  {
    lib: 'zod',
    data: z.object({ orderId: z.number().int(), currency: z.string().default('EUR') }),
    progress: z.object({ pct: z.number().min(0).max(100) }),
    any: z.object({ by: z.string().optional() }),
  },
  {
    lib: 'valibot',
    data: v.object({
      orderId: v.pipe(v.number(), v.integer()),
      currency: v.optional(v.string(), 'EUR'),
    }),
    progress: v.object({ pct: v.pipe(v.number(), v.minValue(0), v.maxValue(100)) }),
    any: v.object({ by: v.optional(v.string()) }),
  },
])('schemas at the edge with $lib', (schemas) => {
  function setup() {
    const { engine, clock } = makeEngine();
    const steps: string[] = [];
    const order = engine.anchor('order', {
      data: schemas.data,
      reports: { progress: schemas.progress, '*': schemas.any },
      next: {
        create: (cb) => {
          expectTypeOf(cb.data.orderId).toEqualTypeOf<number>();
          expectTypeOf(cb.data.currency).toEqualTypeOf<string>();
          steps.push(`create ${cb.data.orderId} ${cb.data.currency}`);
        },
        progress: (cb) => {
          expectTypeOf(cb.report.pct).toEqualTypeOf<number>();
          steps.push(`progress ${cb.report.pct}`);
        },
        accept: (cb) => {
          expectTypeOf(cb.report.by).toEqualTypeOf<string | undefined>();
          steps.push(`accept ${cb.report.by ?? '-'}`);
        },
      },
    });
    return { engine, clock, order, steps };
  }

  it('types come from the schemas, and their output (defaults) is the data', async () => {
    const { engine, order, steps } = setup();
    // currency has a default: the input type makes it optional.
    const cb = await order.create({ data: { orderId: 7 } });
    expect(cb.data).toEqual({ orderId: 7, currency: 'EUR' });
    await order.report(cb.token, 'accept', { by: 'psp' });
    await order.report(cb.token, 'progress', { pct: 10 });
    expect(steps).toEqual(['create 7 EUR', 'accept psp', 'progress 10']);
    // @ts-expect-error orderId must be a number
    void order.create({ data: { orderId: '7' } }).catch(() => {});
    await engine.close();
  });

  it('refuses creation data that fails, listing the issues, and creates nothing', async () => {
    const { engine, steps } = setup();
    const err = await rejection(engine.create('order', { data: { orderId: 1.5 } }));
    expect(err).toBeInstanceOf(InvalidDataError);
    expect(err.code).toBe('CBE_ERR_INVALID_DATA');
    expect(err.statusCode).toBe(400);
    const issues = (err as InvalidDataError).issues!;
    expect(issues.length).toBeGreaterThan(0);
    expect(issues[0]!.path).toEqual(['orderId']);
    expect(err.message).toMatch(/^options\.data does not match its schema: orderId: /);
    const missing = (await rejection(engine.create('order'))) as InvalidDataError;
    expect(missing.issues![0]!.path).toEqual(['orderId']);
    expect(steps).toEqual([]);
    expect(engine.stats().created).toBe(0);
    await engine.close();
  });

  it('refuses a report that fails before anything is applied', async () => {
    const { engine, order, steps } = setup();
    const cb = await order.create({ data: { orderId: 1 } });
    await order.report(cb.token, 'progress', { pct: 5 });
    const err = (await rejection(
      engine.dispatch(report(cb.token, 'progress', { pct: 150 })),
    )) as InvalidDataError;
    expect(err).toBeInstanceOf(InvalidDataError);
    expect(err.issues!.map((i) => i.path)).toEqual([['pct']]);
    // '*' covers statuses without their own schema (here: complete).
    const err2 = (await rejection(
      engine.dispatch(report(cb.token, 'complete', { by: 3 })),
    )) as InvalidDataError;
    expect(err2.issues![0]!.path).toEqual(['by']);
    const now = await engine.get(cb.token);
    expect(now.status).toBe('progress');
    expect(now.data).toEqual({ orderId: 1, currency: 'EUR', pct: 5 });
    expect(steps).toEqual(['create 1 EUR', 'progress 5']);
    const rejected = engine.stats();
    expect(rejected.dispatched).toBe(1);
    await engine.close();
  });

  it('answers a forged token notFound, not a schema error', async () => {
    const { engine, order } = setup();
    const cb = await order.create({ data: { orderId: 1 } });
    const fields = JSON.parse(Buffer.from(cb.token, 'base64url').toString()) as { sig: string };
    const forged = Buffer.from(
      JSON.stringify({ ...fields, sig: fields.sig.replace(/^./, (c) => (c === 'A' ? 'B' : 'A')) }),
    ).toString('base64url');
    const a = await engine.dispatch(report(forged, 'progress', { pct: 999 }));
    expect(a.status).toBe('notFound');
    await engine.close();
  });
});

describe('schemas over HTTP', () => {
  const fx = serviceFixture();

  it('answers 400 CBE_ERR_INVALID_DATA with the issues (path, message)', async () => {
    const { engine, url } = await fx.start((e) => {
      e.anchor('order', { reports: { progress: z.object({ pct: z.number() }) } });
    });
    const cb = await engine.create('order');
    const r = await fetch(`${url}/callbacks/${cb.token}/progress`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ pct: 'half', __proto__: { polluted: true } }),
    });
    expect(r.status).toBe(400);
    const body = await jsonOf(r);
    expect(body.code).toBe('CBE_ERR_INVALID_DATA');
    expect(body.issues).toEqual([{ path: ['pct'], message: expect.any(String) as string }]);
    expect((await engine.get(cb.token)).status).toBe('create');
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });
});

describe('schemas on CloudEvents', () => {
  const fx = serviceFixture();

  it('answers an event whose data fails 400 with the issues; a valid one applies', async () => {
    const { engine, url } = await fx.start((e) => {
      e.anchor('order', { reports: { progress: z.object({ pct: z.number() }) } });
    });
    const cb = await engine.create('order');
    const post = (id: string, data: unknown) =>
      fetch(`${url}/events`, {
        method: 'POST',
        headers: { 'content-type': 'application/cloudevents+json' },
        body: JSON.stringify({
          specversion: '1.0',
          id,
          source: '/psp',
          type: 'com.example.report',
          callbacktoken: cb.token,
          callbackstatus: 'progress',
          data,
        }),
      });
    const bad = await post('e1', { pct: 'x' });
    expect(bad.status).toBe(400);
    expect((await jsonOf(bad)).issues).toEqual([
      { path: ['pct'], message: expect.any(String) as string },
    ]);
    expect((await engine.get(cb.token)).status).toBe('create');
    const good = await post('e2', { pct: 3 });
    expect(good.status).toBe(200);
    expect((await engine.get(cb.token)).data).toEqual({ pct: 3 });
  });
});

describe('asynchronous schemas keep each callback in order', () => {
  /** A Standard Schema that validates later, in an order the test decides. */
  function laterSchema(): {
    schema: StandardSchemaV1<{ n: number }>;
    release: () => void;
  } {
    const waiting: (() => void)[] = [];
    const schema: StandardSchemaV1<{ n: number }> = {
      '~standard': {
        version: 1,
        vendor: 'test',
        validate: (value) =>
          new Promise((resolve) => {
            const n = (value as { n?: unknown }).n;
            waiting.push(() =>
              resolve(
                typeof n === 'number'
                  ? { value: { n } }
                  : { issues: [{ message: 'n must be a number', path: ['n'] }] },
              ),
            );
          }),
      },
    };
    // Releases every waiting check in reverse order: later reports finish their check first.
    const release = () => {
      for (const r of waiting.splice(0).reverse()) r();
    };
    return { schema, release };
  }

  it('64 producers on 8 callbacks: every valid report applied once, in order; invalid ones refused', async () => {
    const { engine } = makeEngine();
    const { schema, release } = laterSchema();
    const seen = new Map<string, number[]>();
    engine.anchor('job', {
      reports: { progress: schema },
      next: {
        progress: (cb) => {
          const list = seen.get(cb.id) ?? [];
          list.push(cb.report.n);
          seen.set(cb.id, list);
        },
      },
    });
    const cbs = await Promise.all(Array.from({ length: 8 }, () => engine.create('job')));
    const answers: Promise<unknown>[] = [];
    for (let producer = 0; producer < 64; producer++) {
      const cb = cbs[producer % 8]!;
      for (let i = 0; i < 5; i++) {
        const n = Math.floor(producer / 8) * 5 + i;
        // Every 7th report is invalid; it must be refused and must not hold up the others.
        const data = (producer * 5 + i) % 7 === 0 ? { n: 'bad' } : { n };
        answers.push(engine.dispatch(report(cb.token, 'progress', data)));
      }
    }
    await flush();
    release();
    const settled = await Promise.allSettled(answers);
    const refused = settled.filter((s) => s.status === 'rejected');
    expect(refused.length).toBe(
      Array.from({ length: 320 }, (_, k) => k).filter((k) => k % 7 === 0).length,
    );
    for (const r of refused) expect(r.reason).toBeInstanceOf(InvalidDataError);
    let applied = 0;
    for (const cb of cbs) {
      const list = seen.get(cb.id) ?? [];
      applied += list.length;
      // Reports of one callback were sent in increasing n: they ran in that order.
      expect(list).toEqual([...list].sort((a, b) => a - b));
    }
    expect(applied).toBe(320 - refused.length);
    await engine.close();
  });
});

describe('schema options', () => {
  it.each([
    [
      { data: { parse() {} } },
      'anchor "a" options.data must be a Standard Schema (zod, valibot, arktype, ...) (got an object)',
    ],
    [
      { reports: [] },
      'anchor "a" options.reports must be an object of schemas by status (got an array)',
    ],
    [
      { reports: { finished: z.object({}) } },
      'anchor "a" options.reports has unknown key "finished"; use a status a report can carry (accept, start, progress, complete, error, cancel) or "*"',
    ],
    [
      { reports: { progress: 'x' } },
      'anchor "a" options.reports.progress must be a Standard Schema (got "x")',
    ],
  ])('refuses %j', (options, message) => {
    const { engine } = makeEngine();
    let err: unknown;
    try {
      engine.anchor('a', options as never);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(InvalidArgumentError);
    expect((err as Error).message).toBe(message);
  });
});

describe('a report cannot change a creation field (what cb.data says holds at run time)', () => {
  const fx = serviceFixture();

  it('refuses an HTTP report carrying orderId: "DROP TABLE" on a typed creation field, applying nothing', async () => {
    const seen: number[] = [];
    let order!: ReturnType<typeof typed>;
    const typed = (e: Parameters<Parameters<typeof fx.start>[0]>[0]) =>
      e.anchor<{
        name: 'order';
        data: { orderId: number };
        reports: { complete: { receipt: string } };
      }>('order', {
        next: {
          complete: (cb) => {
            expectTypeOf(cb.data.orderId).toEqualTypeOf<number>();
            seen.push(cb.data.orderId);
          },
        },
      });
    const { engine, url } = await fx.start((e) => {
      order = typed(e);
    });
    const cb = await order.create({ data: { orderId: 41 } });
    const post = (body: unknown) =>
      fetch(`${url}/callbacks/${cb.token}/complete`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
    const r = await post({ receipt: 'r-1', orderId: 'DROP TABLE' });
    expect(r.status).toBe(400);
    const body = await jsonOf(r);
    expect(body.code).toBe('CBE_ERR_INVALID_DATA');
    expect(body.issues).toEqual([{ path: ['orderId'], message: expect.any(String) as string }]);
    // Nothing applied: still in create, orderId still the number, no step ran.
    expect(await engine.get(cb.token)).toMatchObject({ status: 'create', data: { orderId: 41 } });
    expect(seen).toEqual([]);
    // An outside party echoing the same value back is fine.
    const ok = await post({ receipt: 'r-1', orderId: 41 });
    expect(ok.status).toBe(200);
    expect(seen).toEqual([41]);
    expect((await engine.get(cb.token)).data).toEqual({ orderId: 41, receipt: 'r-1' });
  });

  it('refuses it through dispatch and cancel too (one issue per field), and the same value as a string', async () => {
    const { engine } = makeEngine();
    engine.anchor('order');
    const cb = await engine.create('order', { data: { orderId: 7, meta: { a: [1, 2] } } });
    const err = (await rejection(
      engine.dispatch(report(cb.token, 'progress', { orderId: '7', meta: { a: [1] }, pct: 5 })),
    )) as InvalidDataError;
    expect(err).toBeInstanceOf(InvalidDataError);
    expect(err.issues!.map((i) => i.path)).toEqual([['orderId'], ['meta']]);
    expect(err.message).toBe('callbackData may not change the creation fields "orderId", "meta"');
    // An equal nested value (keys in another order) changes nothing: applied.
    const same = await engine.dispatch(
      report(cb.token, 'progress', { meta: { a: [1, 2] }, pct: 6 }),
    );
    expect(same).toMatchObject({ status: 'progress', data: { orderId: 7, pct: 6 } });
    await expect(engine.cancel(cb.token, { orderId: 8 })).rejects.toBeInstanceOf(InvalidDataError);
    expect((await engine.get(cb.token)).status).toBe('progress');
    const events: string[] = [];
    engine.subscribe((e) => {
      if (e.type === 'rejected') events.push(e.reason ?? '');
    });
    await rejection(engine.dispatch(report(cb.token, 'progress', { orderId: null })));
    expect(events).toEqual(['callbackData may not change the creation field "orderId"']);
    // A terminal callback applies nothing anyway: the report is answered as before (conflict).
    await engine.dispatch(report(cb.token, 'complete'));
    const after = await engine.deliver(report(cb.token, 'error', { orderId: 9 }));
    expect(after.outcome).toBe('conflict');
    await engine.close();
  });

  it('lets a report change a field the anchor lists as reportable, typed as any JSON value', async () => {
    const { engine } = makeEngine();
    const notes: unknown[] = [];
    const memo = engine.anchor<{
      name: 'memo';
      data: { orderId: number; note: string };
      reportable: 'note';
    }>('memo', {
      reportable: ['note'],
      next: {
        progress: (cb) => {
          expectTypeOf(cb.data.orderId).toEqualTypeOf<number>();
          expectTypeOf(cb.data.note).toEqualTypeOf<JsonValue | undefined>();
          notes.push(cb.data.note);
        },
      },
    });
    const cb = await memo.create({ data: { orderId: 1, note: 'first' } });
    await memo.report(cb.token, 'progress', { note: { changed: true } });
    expect(notes).toEqual([{ changed: true }]);
    await expect(memo.report(cb.token, 'progress', { orderId: 2 })).rejects.toMatchObject({
      code: 'CBE_ERR_INVALID_DATA',
    });
    expect(() =>
      // @ts-expect-error orderId is not reportable in the type argument: the option may not list it
      engine.anchor<{ data: { orderId: number } }>('x', { reportable: ['orderId'] }),
    ).not.toThrow();
    // With schemas the option's keys are inferred, and so is what steps see.
    engine.anchor('schemed', {
      data: z.object({ a: z.number(), b: z.string() }),
      reportable: ['b'],
      next: {
        progress: (cb) => {
          expectTypeOf(cb.data.a).toEqualTypeOf<number>();
          expectTypeOf(cb.data.b).toEqualTypeOf<JsonValue | undefined>();
        },
      },
    });
    expect(() => engine.anchor('bad', { reportable: 'note' as never })).toThrow(
      'anchor "bad" options.reportable must be an array of creation-data keys (got "note")',
    );
    await engine.close();
  });
});

describe('tokens carry their anchor; a typed engine knows its anchors; answers are typed', () => {
  function setup() {
    const { engine } = makeEngine();
    const order = engine.anchor('order', {
      data: z.object({ orderId: z.number() }),
      reports: { progress: z.object({ pct: z.number() }) },
    });
    const payment = engine.anchor<{ name: 'payment'; data: { amount: number } }>('payment');
    return { engine, order, payment };
  }

  it("types a handle's tokens Token<'order'> and refuses another anchor's token, typed or plain", async () => {
    const { engine, order, payment } = setup();
    expectTypeOf(order.name).toEqualTypeOf<'order'>();
    const o = await order.create({ data: { orderId: 1 } });
    const p = await payment.create({ data: { amount: 5 } });
    expectTypeOf(o.token).toEqualTypeOf<Token<'order'>>();
    expectTypeOf(p.token).toEqualTypeOf<Token<'payment'>>();
    // @ts-expect-error a payment token is not an order token
    const wrong = await rejection(order.report(p.token, 'progress', { pct: 1 }));
    expect(wrong).toBeInstanceOf(InvalidArgumentError);
    expect(wrong.message).toBe(
      'the handle of anchor "order" was given a token of anchor "payment"',
    );
    // A plain string (read back from a database) compiles; its anchor is checked at run time.
    const plain: string = p.token;
    await expect(order.get(plain)).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(order.cancel(plain)).rejects.toBeInstanceOf(InvalidArgumentError);
    expect((await engine.get(p.token)).status).toBe('create');
    // @ts-expect-error the name must be the type argument's
    expect(() => engine.anchor<{ name: 'ship' }>('shipp')).not.toThrow();
    await engine.close();
  });

  it('answers through a handle typed by its anchor: data only once status is not notFound', async () => {
    const { engine, order } = setup();
    const o = await order.create({ data: { orderId: 3 } });
    const a = await order.report(o.token, 'progress', { pct: 10 });
    if (a.status === 'notFound') throw new Error('unexpected');
    expectTypeOf(a.data.orderId).toEqualTypeOf<number>();
    expectTypeOf(a.token).toEqualTypeOf<Token<'order'>>();
    expect(a.data.orderId).toBe(3);
    const forged = `${o.token.slice(0, -2)}AA` as Token<'order'>;
    const missing = await order.get(forged);
    expect(missing.status).toBe('notFound');
    if (missing.status === 'notFound') {
      expectTypeOf(missing.data).toEqualTypeOf<{ readonly [key: string]: never }>();
      expect(missing.data).toEqual({});
    }
    const ended = order.wait(o.token);
    await order.cancel(o.token);
    const final = await ended;
    expect(final.status).toBe('cancel');
    if (final.status !== 'notFound') expectTypeOf(final.data.orderId).toEqualTypeOf<number>();
    await engine.close();
  });

  it('typedEngine(): create() takes only declared names (a typo does not compile) and answers typed', async () => {
    const { engine, order, payment } = setup();
    const app = typedEngine(engine, order, payment);
    expect(app).toBe(engine);
    const p = await app.create('payment', { data: { amount: 5 } });
    expectTypeOf(p.token).toEqualTypeOf<Token<'payment'>>();
    expectTypeOf(p.data.amount).toEqualTypeOf<number>();
    // @ts-expect-error "paymnet" is not a declared anchor
    const typo = await rejection(app.create('paymnet', { data: { amount: 1 } }));
    expect(typo).toBeInstanceOf(UnknownAnchorError);
    // @ts-expect-error amount must be a number
    void app.create('payment', { data: { amount: 'five' } }).catch(() => {});
    // @ts-expect-error order needs its data
    void app.create('order').catch(() => {});
    const got = await app.get(p.token);
    if (got.status !== 'notFound') {
      expectTypeOf(got.data.amount).toEqualTypeOf<number>();
      expect(got.data.amount).toBe(5);
    }
    const o = await app.create('order', { data: { orderId: 9 } });
    const cancelled = await app.cancel(o.token);
    if (cancelled.status !== 'notFound')
      expectTypeOf(cancelled.data.orderId).toEqualTypeOf<number>();
    // The rest of the engine is there, untyped as before.
    expect((await app.dispatch(report(p.token, 'start'))).status).toBe('start');
    // Handles of another engine (or anything else) are refused.
    const other = makeEngine().engine;
    const foreign = other.anchor('order');
    expect(() => typedEngine(engine, order, foreign)).toThrow(
      'typedEngine() handles[1] is not the handle of an anchor of this engine (pass what engine.anchor() returned)',
    );
    await other.close();
    await engine.close();
  });
});
