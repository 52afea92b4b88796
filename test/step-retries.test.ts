import { afterEach, describe, expect, it } from 'vitest';
import {
  EngineClosedError,
  InvalidArgumentError,
  workerStep,
  type AnchorOptions,
  type CallbackEngine,
  type EngineEvent,
  type SimulatedClock,
  type StepInput,
} from '../src/index.js';
import { flush, makeEngine, rejection, report } from './helpers/engine.js';

const FLAKY = new URL('./fixtures/steps/flaky.ts', import.meta.url);

let engine: CallbackEngine | undefined;
afterEach(async () => {
  await engine?.close();
  engine = undefined;
});

/** One try of a step: when it ran (engine clock), which try, for which report. */
interface Try {
  at: number;
  attempt: number;
  status: string;
  seq?: unknown;
}

/**
 * A step that fails until its `okOn`-th try (per report), logging every try.
 * `okOn: Infinity` never succeeds.
 */
function flakyStep(clock: SimulatedClock, tries: Try[], okOn: number) {
  return (cb: StepInput) => {
    tries.push({ at: clock.now(), attempt: cb.attempt, status: cb.status, seq: cb.report.seq });
    if (cb.attempt < okOn) throw new Error(`try ${cb.attempt} failed`);
    return { okOnTry: cb.attempt };
  };
}

/** Moves the clock and lets what fell due run. */
async function advance(clock: SimulatedClock, ms: number): Promise<void> {
  clock.advance(ms);
  await flush();
}

function setup(options: AnchorOptions, events?: EngineEvent[]) {
  const made = makeEngine();
  engine = made.engine;
  if (events) engine.subscribe((e) => events.push(e));
  engine.anchor('job', options);
  return { engine: made.engine, clock: made.clock, t0: made.clock.now() };
}

describe('step retries (issue 13)', () => {
  it('a step that succeeds on its 4th try runs at the backoff instants; the report is answered at once', async () => {
    const tries: Try[] = [];
    const events: EngineEvent[] = [];
    const { engine: e, clock } = setup({}, events);
    e.anchor('flaky', {
      next: { start: flakyStep(clock, tries, 4) },
      retry: { attempts: 5, backoff: 'PT1S', factor: 2 },
    });
    const cb = await e.create('flaky', { data: { order: 1 } });
    const t0 = clock.now();
    // Answered once the retry is scheduled, with the status and data so far (no clock moved).
    const answer = await e.dispatch(report(cb.token, 'start', { seq: 'a' }));
    expect(answer.status).toBe('start');
    expect(answer.data).toEqual({ order: 1, seq: 'a' });
    expect(answer.stepError).toBeUndefined();
    expect(tries.map((t) => t.at - t0)).toEqual([0]);

    await advance(clock, 999);
    expect(tries).toHaveLength(1); // not a millisecond early
    await advance(clock, 1);
    await advance(clock, 2000);
    await advance(clock, 3999);
    expect(tries).toHaveLength(3);
    await advance(clock, 1);
    expect(tries.map((t) => [t.at - t0, t.attempt])).toEqual([
      [0, 1],
      [1000, 2],
      [3000, 3],
      [7000, 4],
    ]);
    const after = await e.get(cb.token);
    expect(after.status).toBe('start');
    expect(after.data).toEqual({ order: 1, seq: 'a', okOnTry: 4 });
    expect(after.stepError).toBeUndefined();
    const retried = events.filter((ev) => ev.type === 'stepRetried');
    expect(retried.map((ev) => [ev.attempt, ev.delayMs, ev.message, ev.reported])).toEqual([
      [1, 1000, 'try 1 failed', 'start'],
      [2, 2000, 'try 2 failed', 'start'],
      [3, 4000, 'try 3 failed', 'start'],
    ]);
    expect(retried[0]).toMatchObject({ id: cb.id, anchor: 'flaky', status: 'start' });
    expect(events.some((ev) => ev.type === 'stepFailed')).toBe(false);
    expect(e.stats()).toMatchObject({ stepRetries: 3, stepFailures: 0 });
    // Nothing more is scheduled.
    await advance(clock, 60_000);
    expect(tries).toHaveLength(4);
  });

  it('after the last try the failure is handled as without retries: error with the message', async () => {
    const tries: Try[] = [];
    const events: EngineEvent[] = [];
    const {
      engine: e,
      clock,
      t0,
    } = setup({ next: {}, retry: { attempts: 3, backoff: 'PT2S', factor: 1 } }, events);
    e.anchor('never', {
      next: { progress: flakyStep(clock, tries, Infinity) },
      retry: { attempts: 3, backoff: 'PT2S', factor: 1 },
    });
    const cb = await e.create('never');
    const done = e.wait(cb.token);
    expect((await e.dispatch(report(cb.token, 'progress', { p: 1 }))).status).toBe('progress');
    await advance(clock, 2000);
    expect((await e.get(cb.token)).status).toBe('progress');
    await advance(clock, 2000);
    const final = await done;
    expect(final.status).toBe('error');
    expect(final.data).toEqual({ p: 1, message: 'try 3 failed' });
    expect(final.stepError).toEqual({ status: 'progress', message: 'try 3 failed' });
    expect(tries.map((t) => [t.at - t0, t.attempt])).toEqual([
      [0, 1],
      [2000, 2],
      [4000, 3],
    ]);
    expect(events.filter((ev) => ev.type === 'stepFailed')).toHaveLength(1);
    expect(e.stats()).toMatchObject({ stepRetries: 2, stepFailures: 1 });
  });

  it('maxDelay caps the growing waits; factor multiplies them', async () => {
    const tries: Try[] = [];
    const { engine: e, clock } = setup({});
    e.anchor('capped', {
      next: { accept: flakyStep(clock, tries, 6) },
      retry: { attempts: 6, backoff: 'PT1S', factor: 3, maxDelay: 'PT5S' },
    });
    const cb = await e.create('capped');
    const t0 = clock.now();
    await e.dispatch(report(cb.token, 'accept'));
    for (let i = 0; i < 20; i++) await advance(clock, 1000);
    const gaps = tries.slice(1).map((t, i) => t.at - tries[i]!.at);
    expect(gaps).toEqual([1000, 3000, 5000, 5000, 5000]);
    expect(tries.at(-1)).toMatchObject({ attempt: 6, at: t0 + 19_000 });
    expect((await e.get(cb.token)).data).toEqual({ okOnTry: 6 });
  });

  it('defaults: backoff PT1S, factor 2', async () => {
    const tries: Try[] = [];
    const { engine: e, clock } = setup({});
    e.anchor('defaults', { next: { start: flakyStep(clock, tries, 3) }, retry: { attempts: 3 } });
    const cb = await e.create('defaults');
    const t0 = clock.now();
    await e.dispatch(report(cb.token, 'start'));
    for (let i = 0; i < 4; i++) await advance(clock, 1000);
    expect(tries.map((t) => t.at - t0)).toEqual([0, 1000, 3000]);
  });

  it('a retry map is looked up like steps: exact status, group, *; false disables', async () => {
    const tries: Try[] = [];
    const { engine: e, clock } = setup({});
    const step = flakyStep(clock, tries, 2);
    e.anchor('mapped', {
      next: { create: step, start: step, progress: step, complete: step },
      retry: {
        active: { attempts: 2, backoff: 'PT1S' },
        progress: false,
        '*': { attempts: 2, backoff: 'PT3S' },
      },
    });
    // create: the `active` group (1 s).
    const a = await e.create('mapped');
    expect(a.status).toBe('create');
    await advance(clock, 1000);
    expect((await e.get(a.token)).data).toEqual({ okOnTry: 2 });
    // progress: false, so the first failure stands.
    const b = await e.create('mapped');
    await advance(clock, 1000);
    const failed = await e.dispatch(report(b.token, 'progress'));
    expect(failed.status).toBe('error');
    expect(failed.stepError).toEqual({ status: 'progress', message: 'try 1 failed' });
    // complete: not in the active group, so `*` (3 s); the report is answered with `complete` at once.
    const c = await e.create('mapped');
    await advance(clock, 1000);
    const t = clock.now();
    const completed = e.wait(c.token);
    expect((await e.dispatch(report(c.token, 'complete'))).status).toBe('complete');
    await advance(clock, 2999);
    expect(tries.filter((x) => x.status === 'complete')).toHaveLength(1);
    await advance(clock, 1);
    // wait() resolves after the terminal step's last try, with its output.
    expect((await completed).data).toEqual({ okOnTry: 2 });
    expect(tries.filter((x) => x.status === 'complete').map((x) => x.at - t)).toEqual([0, 3000]);
  });

  it('a single policy applies to every step, the terminal ones too', async () => {
    const tries: Try[] = [];
    const { engine: e, clock } = setup({});
    e.anchor('all', {
      next: { error: flakyStep(clock, tries, 2) },
      retry: { attempts: 2, backoff: 'PT1S' },
    });
    const cb = await e.create('all');
    expect((await e.dispatch(report(cb.token, 'error', { message: 'x' }))).status).toBe('error');
    await advance(clock, 1000);
    expect(tries.map((t) => t.attempt)).toEqual([1, 2]);
    expect((await e.get(cb.token)).data).toEqual({ message: 'x', okOnTry: 2 });
  });

  it('later reports to one callback wait behind a step being retried and are applied in order (50 concurrent producers)', async () => {
    const tries: Try[] = [];
    const { engine: e, clock } = setup({});
    // Every report's step fails on its first try and succeeds on the second.
    e.anchor('ordered', {
      next: {
        progress: (cb) => {
          tries.push({
            at: clock.now(),
            attempt: cb.attempt,
            status: cb.status,
            seq: cb.report.seq,
          });
          if (cb.attempt === 1) throw new Error('first try fails');
          return { [`done${String(cb.report.seq)}`]: cb.attempt, last: cb.report.seq };
        },
      },
      retry: { attempts: 2, backoff: 'PT1S' },
    });
    const cb = await e.create('ordered', { timeout: false });
    const N = 50;
    const answers = Array.from({ length: N }, (_, i) =>
      e.dispatch(report(cb.token, 'progress', { seq: i })),
    );
    await flush();
    // The first report waits for its retry; the 49 others have not been applied yet.
    expect((await e.get(cb.token)).data).toEqual({ seq: 0 });
    expect(tries).toHaveLength(1);
    for (let i = 0; i < N; i++) await advance(clock, 1000);
    const settled = await Promise.all(answers);
    // Each answer shows its own report applied, in order.
    expect(settled.map((a) => a.data.seq)).toEqual(Array.from({ length: N }, (_, i) => i));
    const expected = Array.from({ length: N }, (_, i) => [
      [i, 1],
      [i, 2],
    ]).flat();
    expect(tries.map((t) => [t.seq, t.attempt])).toEqual(expected);
    const data = (await e.get(cb.token)).data;
    expect(data.last).toBe(N - 1);
    for (let i = 0; i < N; i++) expect(data[`done${i}`]).toBe(2);
    expect(e.stats().stepRetries).toBe(N);
  });

  it('many callbacks retry independently; nothing is lost or reordered (20 callbacks x 10 reports)', async () => {
    const log = new Map<string, [unknown, number][]>();
    const { engine: e, clock } = setup({});
    e.anchor('many', {
      next: {
        progress: (cb) => {
          const runs = log.get(cb.id) ?? [];
          log.set(cb.id, runs);
          runs.push([cb.report.seq, cb.attempt]);
          // Odd reports fail twice, even ones once.
          const fails = Number(cb.report.seq) % 2 === 1 ? 2 : 1;
          if (cb.attempt <= fails) throw new Error('flaky');
          return { last: cb.report.seq };
        },
      },
      retry: { attempts: 3, backoff: 'PT1S', factor: 1 },
    });
    const cbs = await Promise.all(Array.from({ length: 20 }, () => e.create('many')));
    const R = 10;
    // Interleaved producers: report i of every callback before report i + 1 of any.
    const answers: Promise<unknown>[] = [];
    for (let i = 0; i < R; i++)
      for (const cb of cbs) answers.push(e.dispatch(report(cb.token, 'progress', { seq: i })));
    for (let i = 0; i < 30; i++) await advance(clock, 1000);
    await Promise.all(answers);
    for (const cb of cbs) {
      const expected: [number, number][] = [];
      for (let i = 0; i < R; i++) {
        const tries = i % 2 === 1 ? 3 : 2;
        for (let a = 1; a <= tries; a++) expected.push([i, a]);
      }
      expect(log.get(cb.id)).toEqual(expected);
      expect((await e.get(cb.token)).data).toEqual({ seq: R - 1, last: R - 1 });
    }
    expect(e.stats().stepRetries).toBe(20 * (5 * 1 + 5 * 2));
  });

  it('cancel during the wait stops the retries at once; the queued report gets the terminal status', async () => {
    const tries: Try[] = [];
    const events: EngineEvent[] = [];
    const { engine: e, clock } = setup({}, events);
    const cancelSteps: string[] = [];
    e.anchor('c', {
      next: { start: flakyStep(clock, tries, Infinity), cancel: () => void cancelSteps.push('c') },
      retry: { attempts: 10, backoff: 'PT1M' },
    });
    const cb = await e.create('c');
    await e.dispatch(report(cb.token, 'start', { seq: 1 }));
    const queued = e.dispatch(report(cb.token, 'progress', { seq: 2 }));
    const cancelled = await e.cancel(cb.token, { why: 'user' });
    expect(cancelled.status).toBe('cancel');
    expect(cancelSteps).toEqual(['c']);
    expect((await queued).status).toBe('cancel');
    await advance(clock, 50 * 60_000); // fifty tries' worth of backoff, within the retention
    expect(tries).toHaveLength(1);
    const final = await e.get(cb.token);
    expect(final.status).toBe('cancel');
    expect(final.data).toEqual({ seq: 1, why: 'user' });
    expect(final.stepError).toBeUndefined();
    expect(e.stats()).toMatchObject({ stepRetries: 1, stepFailures: 0 });
    expect(clock.pending).toBeLessThanOrEqual(1); // at most the retention timer
  });

  it('a deadline passing during the wait times the callback out; no further try', async () => {
    const tries: Try[] = [];
    const { engine: e, clock } = setup({});
    e.anchor('t', {
      next: { start: flakyStep(clock, tries, Infinity) },
      retry: { attempts: 5, backoff: 'PT10S' },
    });
    const cb = await e.create('t', { timeout: 'PT5S' });
    const done = e.wait(cb.token);
    await e.dispatch(report(cb.token, 'start'));
    await advance(clock, 5000);
    expect((await done).status).toBe('timeout');
    await advance(clock, 600_000);
    expect(tries).toHaveLength(1);
  });

  it('a parent ending orphans a child waiting for a retry; no further try', async () => {
    const tries: Try[] = [];
    const { engine: e, clock } = setup({});
    e.anchor('parent');
    e.anchor('child', {
      next: { start: flakyStep(clock, tries, Infinity) },
      retry: { attempts: 5, backoff: 'PT10S' },
    });
    const parent = await e.create('parent');
    const child = await e.create('child', { parentToken: parent.token });
    await e.dispatch(report(child.token, 'start'));
    await e.dispatch(report(parent.token, 'complete'));
    await flush();
    expect((await e.get(child.token)).status).toBe('orphan');
    await advance(clock, 600_000);
    expect(tries).toHaveLength(1);
  });

  it('a step aborted by cancel while it runs is not retried', async () => {
    const events: EngineEvent[] = [];
    const { engine: e, clock } = setup({}, events);
    let runs = 0;
    e.anchor('aborted', {
      next: {
        start: (cb) =>
          new Promise((_, reject) => {
            runs++;
            cb.signal.addEventListener('abort', () => reject(new Error('aborted')));
          }),
      },
      retry: { attempts: 5, backoff: 'PT1S' },
    });
    const cb = await e.create('aborted');
    const started = e.dispatch(report(cb.token, 'start'));
    await flush();
    expect((await e.cancel(cb.token)).status).toBe('cancel');
    expect((await started).status).toBe('cancel');
    await advance(clock, 60_000);
    expect(runs).toBe(1);
    expect(events.some((ev) => ev.type === 'stepRetried')).toBe(false);
  });

  it('a try that passes stepTimeout is retried like one that threw', async () => {
    const tries: Try[] = [];
    const { engine: e, clock, t0 } = setup({});
    e.anchor('slow', {
      stepTimeout: 'PT1S',
      next: {
        start: (cb) => {
          tries.push({ at: clock.now(), attempt: cb.attempt, status: cb.status });
          // The first try never settles; the second returns at once.
          return cb.attempt === 1 ? new Promise(() => undefined) : { okOnTry: cb.attempt };
        },
      },
      retry: { attempts: 2, backoff: 'PT2S' },
    });
    const cb = await e.create('slow');
    const answer = e.dispatch(report(cb.token, 'start'));
    await advance(clock, 1000);
    expect((await answer).status).toBe('start');
    await advance(clock, 2000);
    expect(tries.map((t) => [t.at - t0, t.attempt])).toEqual([
      [0, 1],
      [3000, 2],
    ]);
    expect((await e.get(cb.token)).data).toEqual({ okOnTry: 2 });
  });

  it('a failing create step is retried; create() resolves once the retry is scheduled', async () => {
    const tries: Try[] = [];
    const { engine: e, clock } = setup({});
    e.anchor('mk', { next: { create: flakyStep(clock, tries, 2) }, retry: { attempts: 2 } });
    const cb = await e.create('mk', { data: { a: 1 } });
    expect(cb.status).toBe('create');
    expect(cb.data).toEqual({ a: 1 });
    // A report sent now waits for the create step's retry.
    const accepted = e.dispatch(report(cb.token, 'accept', { b: 2 }));
    await flush();
    expect((await e.get(cb.token)).data).toEqual({ a: 1 });
    await advance(clock, 1000);
    expect((await accepted).data).toEqual({ a: 1, okOnTry: 2, b: 2 });
  });

  it('close() during the wait stops the retries; close does not wait for the backoff', async () => {
    const tries: Try[] = [];
    const { engine: e, clock } = setup({});
    e.anchor('closing', {
      next: { start: flakyStep(clock, tries, Infinity) },
      retry: { attempts: 5, backoff: 'PT1H' },
    });
    const cb = await e.create('closing', { timeout: false });
    const waiting = e.wait(cb.token);
    await e.dispatch(report(cb.token, 'start'));
    const queued = e.dispatch(report(cb.token, 'progress'));
    await e.close(); // resolves without the clock moving
    expect(await rejection(queued)).toBeInstanceOf(EngineClosedError);
    expect(await rejection(waiting)).toBeInstanceOf(EngineClosedError);
    clock.advance(10 * 3_600_000);
    await flush();
    expect(tries).toHaveLength(1);
    engine = undefined;
  });

  it('a worker step retries with its own policy, which wins over the anchor one; attempt reaches the worker', async () => {
    const { engine: e, clock } = setup({});
    e.anchor('w', {
      next: {
        start: workerStep(FLAKY, 'flaky', { retry: { attempts: 3, backoff: 'PT1S', factor: 1 } }),
        progress: workerStep(FLAKY, 'flaky', { retry: false }),
      },
      retry: { attempts: 10, backoff: 'PT1M' },
    });
    const cb = await e.create('w', { data: { okOn: 3 } });
    await e.dispatch(report(cb.token, 'start'));
    // Worker tries settle on real threads: wait for each before moving the clock.
    for (let i = 0; i < 2; i++) {
      await expect.poll(() => e.stats().stepRetries, { timeout: 10_000 }).toBe(i + 1);
      await advance(clock, 1000);
    }
    await expect
      .poll(async () => (await e.get(cb.token)).data.okOnTry, { timeout: 10_000 })
      .toBe(3);
    // retry: false on the progress step: the first failure stands despite the anchor's policy.
    const other = await e.create('w', { data: { okOn: 2 } });
    const failed = await e.dispatch(report(other.token, 'progress'));
    expect(failed.status).toBe('error');
    expect(failed.stepError).toEqual({ status: 'progress', message: 'try 1 failed' });
  });
});

describe('retry options are validated eagerly, one rule each', () => {
  const cases: [string, unknown, string][] = [
    [
      'not an object',
      'PT1S',
      'anchor "job" options.retry must be a retry policy { attempts, backoff, factor, maxDelay } or a map from statuses to policies (got "PT1S")',
    ],
    [
      'attempts zero',
      { attempts: 0 },
      'anchor "job" options.retry.attempts must be an integer from 1 to 100 (got 0)',
    ],
    [
      'attempts over 100',
      { attempts: 101 },
      'anchor "job" options.retry.attempts must be an integer from 1 to 100 (got 101)',
    ],
    [
      'attempts fractional',
      { attempts: 2.5 },
      'anchor "job" options.retry.attempts must be an integer from 1 to 100 (got 2.5)',
    ],
    [
      'backoff prose',
      { attempts: 3, backoff: '1 second' },
      'anchor "job" options.retry.backoff must be an ISO 8601 duration such as "PT1S" (got "1 second")',
    ],
    [
      'factor below 1',
      { attempts: 3, factor: 0.5 },
      'anchor "job" options.retry.factor must be a finite number of at least 1 (got 0.5)',
    ],
    [
      'factor infinite',
      { attempts: 3, factor: Infinity },
      'anchor "job" options.retry.factor must be a finite number of at least 1 (got Infinity)',
    ],
    [
      'maxDelay a number',
      { attempts: 3, maxDelay: 5000 },
      'anchor "job" options.retry.maxDelay must be an ISO 8601 duration such as "PT1S" (got 5000)',
    ],
    [
      'unknown policy key',
      { attempts: 3, backof: 'PT1S' },
      'unknown option "backof" in anchor "job" options.retry (did you mean "backoff"?)',
    ],
    [
      'unknown map key',
      { started: { attempts: 2 } },
      'anchor "job" options.retry has unknown key "started"; use a status, "active", "error" or "*" (or give one policy with "attempts")',
    ],
    [
      'map entry not a policy',
      { start: true },
      'anchor "job" options.retry.start must be a retry policy { attempts, backoff, factor, maxDelay } or false (got true)',
    ],
    [
      'map entry with bad attempts',
      { error: { attempts: -1 } },
      'anchor "job" options.retry.error.attempts must be an integer from 1 to 100 (got -1)',
    ],
  ];
  it.each(cases)('%s', (_name, retry, message) => {
    const { engine: e } = makeEngine();
    engine = e;
    let err: unknown;
    try {
      e.anchor('job', { retry: retry as never });
    } catch (caught) {
      err = caught;
    }
    expect(err).toBeInstanceOf(InvalidArgumentError);
    expect((err as InvalidArgumentError).code).toBe('CBE_ERR_INVALID_ARGUMENT');
    expect((err as Error).message).toBe(message);
  });

  it.each<[string, unknown, string]>([
    ['options not an object', 'retry', 'workerStep options must be an object'],
    [
      'unknown option',
      { retries: 3 },
      'unknown option "retries" in workerStep options; known options: retry',
    ],
    [
      'bad policy',
      { retry: { attempts: 'three' } },
      'workerStep options.retry.attempts must be an integer from 1 to 100 (got "three")',
    ],
  ])('workerStep: %s', (_name, options, message) => {
    let err: unknown;
    try {
      workerStep(FLAKY, 'flaky', options as never);
    } catch (caught) {
      err = caught;
    }
    expect(err).toBeInstanceOf(InvalidArgumentError);
    expect((err as InvalidArgumentError).code).toBe('CBE_ERR_INVALID_ARGUMENT');
    expect((err as Error).message).toBe(message);
  });

  it('accepts a policy, a map with false, and zero backoff', () => {
    const { engine: e } = makeEngine();
    engine = e;
    e.anchor('a', { retry: { attempts: 1 } });
    e.anchor('b', { retry: { active: { attempts: 3, backoff: 'PT0S' }, progress: false } });
    e.anchor('c', { retry: { attempts: 100, backoff: 'PT0.5S', factor: 1, maxDelay: 'PT1M' } });
    expect(workerStep(FLAKY, 'flaky', { retry: false }).retry).toBe(false);
  });
});
