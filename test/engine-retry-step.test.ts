import { afterEach, describe, expect, it } from 'vitest';
import { NothingToRetryError, type CallbackEngine } from '../src/index.js';
import { DurableFixture } from './helpers/durable.js';
import { flush, makeEngine, rejection, report } from './helpers/engine.js';

let engine: CallbackEngine | undefined;
const durable = new DurableFixture();

afterEach(async () => {
  await engine?.close();
  engine = undefined;
  await durable.cleanup();
});

/** An anchor whose `complete` step fails while `failing.n > 0` (counting down). */
function flakyAnchor(e: CallbackEngine, failing: { n: number }) {
  e.anchor('pay', {
    next: {
      complete: (cb) => {
        if (failing.n > 0) {
          failing.n--;
          throw new Error(`notify refused (${failing.n} more)`);
        }
        return { notified: true, receipt: cb.report.receipt };
      },
      progress: () => {
        throw new Error('ledger down');
      },
    },
  });
}

describe('engine.retryStep()', () => {
  it('runs a failed complete step again with the report that ended the callback', async () => {
    ({ engine } = makeEngine());
    flakyAnchor(engine, { n: 1 });
    const cb = await engine.create('pay', { data: { order: 7 } });
    const done = await engine.dispatch(report(cb.token, 'complete', { receipt: 'R-7' }));
    expect(done.stepError).toEqual({ status: 'complete', message: 'notify refused (0 more)' });
    await flush();

    const retried = await engine.retryStep(cb.id);
    expect(retried.status).toBe('complete');
    expect(retried.stepError).toBeUndefined();
    expect(retried.data).toMatchObject({ order: 7, receipt: 'R-7', notified: true });
    const read = await engine.get(cb.token);
    expect(read.stepError).toBeUndefined();
    expect(read.data).toMatchObject({ notified: true });
    // Nothing failed any more: a second retry has nothing to do.
    const err = await rejection(engine.retryStep(cb.token));
    expect(err).toBeInstanceOf(NothingToRetryError);
    expect(err.code).toBe('CBE_ERR_NOTHING_TO_RETRY');
    expect(err.statusCode).toBe(409);
    expect(err.message).toBe(
      `callback ${cb.id} has no failed step to retry: its steps did not fail`,
    );
  });

  it('answers with the new step error when the step fails again', async () => {
    ({ engine } = makeEngine());
    flakyAnchor(engine, { n: 2 });
    const cb = await engine.create('pay');
    await engine.dispatch(report(cb.token, 'complete', { receipt: 'R-1' }));
    await flush();
    const before = engine.stats().stepFailures;
    const again = await engine.retryStep(cb.token);
    expect(again.stepError).toEqual({ status: 'complete', message: 'notify refused (0 more)' });
    expect(engine.stats().stepFailures).toBe(before + 1);
    expect((await engine.retryStep(cb.token)).stepError).toBeUndefined();
  });

  it('refuses an active callback, one whose steps did not fail, and one whose failed step is not its final one', async () => {
    ({ engine } = makeEngine());
    flakyAnchor(engine, { n: 0 });
    const active = await engine.create('pay');
    expect((await rejection(engine.retryStep(active.id))).message).toBe(
      `callback ${active.id} has no failed step to retry: it is still active (status "create")`,
    );
    const fine = await engine.create('pay');
    await engine.dispatch(report(fine.token, 'complete', { receipt: 'R' }));
    await flush();
    expect((await rejection(engine.retryStep(fine.id))).message).toContain(
      'its steps did not fail',
    );
    // A failed progress step moved the callback to error: that is its outcome, not a retry.
    const broken = await engine.create('pay');
    const answer = await engine.dispatch(report(broken.token, 'progress', { pct: 1 }));
    expect(answer.status).toBe('error');
    expect((await rejection(engine.retryStep(broken.id))).message).toBe(
      `callback ${broken.id} has no failed step to retry: its failed "progress" step is not the step of its final status "error"`,
    );
  });

  it('refuses an unknown id, a forged token and a bad argument', async () => {
    ({ engine } = makeEngine());
    flakyAnchor(engine, { n: 0 });
    const cb = await engine.create('pay');
    expect((await rejection(engine.retryStep('no-such-id'))).message).toBe(
      'callback no-such-id has no failed step to retry: it is unknown or its record was removed',
    );
    const fields = JSON.parse(Buffer.from(cb.token, 'base64url').toString()) as Record<
      string,
      unknown
    >;
    const forged = Buffer.from(JSON.stringify({ ...fields, sig: 'AAAA' })).toString('base64url');
    expect((await rejection(engine.retryStep(forged))).code).toBe('CBE_ERR_NOTHING_TO_RETRY');
    expect((await rejection(engine.retryStep(''))).code).toBe('CBE_ERR_INVALID_ARGUMENT');
    expect((await rejection(engine.retryStep(42 as never))).code).toBe('CBE_ERR_INVALID_ARGUMENT');
  });

  it('runs concurrent retries of one callback one at a time: the step never overlaps itself', async () => {
    ({ engine } = makeEngine());
    let running = 0;
    let most = 0;
    let calls = 0;
    const gates: (() => void)[] = [];
    engine.anchor('slow', {
      next: {
        complete: async () => {
          calls++;
          running++;
          most = Math.max(most, running);
          await new Promise<void>((r) => gates.push(r));
          running--;
          if (calls === 1) throw new Error('first run fails');
          return { ok: calls };
        },
      },
    });
    const cb = await engine.create('slow');
    const ended = engine.dispatch(report(cb.token, 'complete'));
    await flush();
    gates.shift()!();
    expect((await ended).stepError?.message).toBe('first run fails');
    await flush();

    const retries = Array.from({ length: 5 }, () =>
      engine!.retryStep(cb.id).then(
        (a) => ({ ok: true as const, data: a.data }),
        (e: unknown) => ({ ok: false as const, code: (e as NothingToRetryError).code }),
      ),
    );
    for (let i = 0; i < 10; i++) {
      await flush();
      gates.shift()?.();
    }
    const results = await Promise.all(retries);
    expect(most).toBe(1);
    // The first retry ran and succeeded; the four queued after it found nothing left to retry.
    expect(results[0]).toEqual({ ok: true, data: { ok: 2 } });
    expect(results.slice(1)).toEqual(
      Array.from({ length: 4 }, () => ({ ok: false, code: 'CBE_ERR_NOTHING_TO_RETRY' })),
    );
    expect(calls).toBe(2);
  });

  it('with the SQLite store, the retried step is committed and survives a restart', async () => {
    const path = durable.db();
    const failing = { n: 1 };
    const first = durable.open(path);
    flakyAnchor(first, failing);
    await first.ready();
    const cb = await first.create('pay', { data: { order: 9 }, retention: 'P1D' });
    await first.dispatch(report(cb.token, 'complete', { receipt: 'R-9' }));
    await flush();
    expect((await first.get(cb.token)).stepError?.status).toBe('complete');
    const retried = await first.retryStep(cb.id);
    expect(retried.stepError).toBeUndefined();
    await first.close();

    const second = durable.open(path);
    flakyAnchor(second, failing);
    await second.ready();
    const read = await second.get(cb.token);
    expect(read.status).toBe('complete');
    expect(read.stepError).toBeUndefined();
    expect(read.data).toMatchObject({ order: 9, receipt: 'R-9', notified: true });
    await rejection(second.retryStep(cb.id));
  });
});

describe('engine.details()', () => {
  it('shows status, data, timings, parent and children, and the step error', async () => {
    const made = makeEngine();
    engine = made.engine;
    flakyAnchor(engine, { n: 1 });
    const parent = await engine.create('pay', {
      data: { order: 1 },
      tags: ['vip'],
      timeout: 'PT2H',
      heartbeat: 'PT10M',
    });
    const child = await engine.create('pay', { parentToken: parent.token });
    made.clock.advance(1000);
    await engine.dispatch(report(parent.token, 'start', { by: 'psp' }));
    const d = await engine.details(parent.id);
    expect(d).toMatchObject({
      id: parent.id,
      token: parent.token,
      anchor: 'pay',
      status: 'start',
      data: { order: 1, by: 'psp' },
      tags: ['vip'],
      heartbeatMs: 600_000,
      children: [child.id],
      parentId: undefined,
      stepError: undefined,
      removeAt: undefined,
    });
    expect(d!.deadlineAt).toBe(d!.createdAt + 2 * 3600_000);
    expect(d!.lastActivityAt).toBe(d!.createdAt + 1000);
    expect((await engine.details(child.id))?.parentId).toBe(parent.id);

    await engine.dispatch(report(parent.token, 'complete'));
    await flush();
    const ended = await engine.details(parent.id);
    expect(ended?.status).toBe('complete');
    expect(ended?.stepError?.message).toBe('notify refused (0 more)');
    expect(ended?.removeAt).toBeGreaterThan(ended!.createdAt);
    expect((await engine.details(child.id))?.status).toBe('orphan');
    expect(await engine.details('nope')).toBeUndefined();
  });
});

describe('engine.retryStep() on a step waiting for its next try (retry option)', () => {
  it('runs the pending try now instead of at its instant; later reports still wait behind it', async () => {
    let clock;
    ({ engine, clock } = makeEngine());
    const tries: number[] = [];
    engine.anchor('ocr', {
      next: {
        progress: (cb) => {
          tries.push(clock.now());
          if (cb.attempt === 1) throw new Error('scanner busy');
          return { pages: 3 };
        },
      },
      retry: { attempts: 3, backoff: 'PT1H' },
    });
    const cb = await engine.create('ocr');
    const first = await engine.dispatch(report(cb.token, 'progress'));
    expect(first.status).toBe('progress');
    const details = await engine.details(cb.id);
    expect(details?.pendingRetry).toEqual({
      status: 'progress',
      attempt: 2,
      at: clock.now() + 3_600_000,
    });
    const later = engine.dispatch(report(cb.token, 'complete'));
    const now = await engine.retryStep(cb.id);
    expect(now.data).toEqual({ pages: 3 });
    expect(tries).toEqual([tries[0], tries[0]]); // both tries at the same instant: no hour passed
    expect((await later).status).toBe('complete');
    expect((await engine.details(cb.id))?.pendingRetry).toBeUndefined();
    await expect(engine.retryStep(cb.id)).rejects.toBeInstanceOf(NothingToRetryError);
  });
});
