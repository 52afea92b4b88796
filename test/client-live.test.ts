/**
 * The outside party's client against a live serve(), behind a proxy that answers 503 or drops
 * connections (before and after the service applied the report): every report is applied
 * exactly once, and every attempt is accounted for.
 */
import { afterEach, describe, expect, it } from 'vitest';
import {
  createCallbackClient,
  ReportRefusedError,
  type CallbackClientOptions,
  type ReportResult,
} from '../src/client/index.js';
import { serve, type DispatchServer, type ServeOptions } from '../src/http/index.js';
import type { CallbackEngine } from '../src/index.js';
import { makeEngine } from './helpers/engine.js';
import { startFaultProxy, type Fault, type FaultProxy } from './helpers/fault-proxy.js';

const open: { close(): Promise<void> }[] = [];
afterEach(async () => {
  for (const o of open.splice(0).reverse()) await o.close();
});

/** An engine whose `progress` and `complete` steps count every run, served with `options`. */
async function service(options: ServeOptions = {}) {
  const { engine, clock } = makeEngine();
  const runs = new Map<string, number[]>();
  const completes = new Map<string, number>();
  engine.anchor('job', {
    next: {
      progress: (cb) => {
        const list = runs.get(cb.token) ?? [];
        list.push(cb.report.seq as number);
        runs.set(cb.token, list);
      },
      complete: (cb) => void completes.set(cb.token, (completes.get(cb.token) ?? 0) + 1),
    },
  });
  const server: DispatchServer = await serve(engine, options);
  open.push(engine, server);
  return { engine, clock, server, runs, completes };
}

async function proxy(
  upstream: string,
  plan: (n: number, path: string) => Fault,
  retryAfter?: string,
) {
  const p: FaultProxy = await startFaultProxy(upstream, plan, retryAfter);
  open.push(p);
  return p;
}

/** Delays the client asked to sleep, without sleeping. */
function recorder() {
  const delays: number[] = [];
  const options: Pick<CallbackClientOptions, 'sleep' | 'random'> = {
    sleep: async (ms) => void delays.push(ms),
    random: () => 0.5,
  };
  return { delays, options };
}

const created = async (engine: CallbackEngine, n: number) =>
  Promise.all(Array.from({ length: n }, () => engine.create('job')));

describe('client against a live serve() through a faulty proxy', () => {
  it('applies each report exactly once through 503s and connections dropped before and after the service answered', async () => {
    const svc = await service();
    // A fixed cycle over requests in arrival order: at most two failures in a row overall.
    const cycle: Fault[] = [
      '503',
      'drop-after',
      'pass',
      'drop-before',
      'pass',
      'drop-after',
      'pass',
    ];
    const px = await proxy(svc.server.url, (n) => cycle[n % cycle.length]!, '0');
    const { delays, options } = recorder();
    const client = createCallbackClient({ baseUrl: px.url, maxAttempts: 30, ...options });
    const callbacks = await created(svc.engine, 20);
    const REPORTS = 5;
    const results: ReportResult[] = await Promise.all(
      callbacks.flatMap((cb) =>
        Array.from({ length: REPORTS }, (_, seq) =>
          client.report(cb.token, 'progress', { seq, [`p${seq}`]: seq }),
        ),
      ),
    );
    // Every report answered, as applied or (after a dropped answer) replayed.
    expect(results).toHaveLength(20 * REPORTS);
    for (const r of results) expect(['applied', 'replayed']).toContain(r.kind);
    // Exactly once: each callback's progress step ran once per report, never twice.
    for (const cb of callbacks) {
      const seqs = svc.runs.get(cb.token) ?? [];
      expect([...seqs].sort()).toEqual([0, 1, 2, 3, 4]);
      const { data } = await svc.engine.get(cb.token);
      for (let seq = 0; seq < REPORTS; seq++) expect(data[`p${seq}`]).toBe(seq);
    }
    // Every request the proxy saw was an attempt of some report, and every fault happened.
    const attempts = results.reduce((n, r) => n + r.attempts, 0);
    expect(attempts).toBe(px.log.length);
    expect(px.counts['503']).toBeGreaterThan(0);
    expect(px.counts['drop-before']).toBeGreaterThan(0);
    expect(px.counts['drop-after']).toBeGreaterThan(0);
    // A report whose applied answer was dropped is answered `replayed` by its retry.
    const replayed = results.filter((r) => r.kind === 'replayed').length;
    expect(replayed).toBeGreaterThan(0);
    expect(replayed).toBeLessThanOrEqual(px.counts['drop-after']);
    expect(delays).toHaveLength(attempts - results.length);
    // Distinct dedup keys per report, each sent on every attempt of it.
    expect(new Set(results.map((r) => r.dedupKey)).size).toBe(results.length);
  });

  it('keeps one deduplication key across the attempts of a report', async () => {
    const svc = await service();
    const keys: string[] = [];
    const px = await proxy(svc.server.url, (n) => (n < 3 ? 'drop-after' : 'pass'));
    const { options } = recorder();
    const client = createCallbackClient({
      baseUrl: px.url,
      ...options,
      fetch: (input, init) => {
        keys.push(new Headers(init?.headers).get('callback-dedup-key') ?? '');
        return fetch(input, init);
      },
    });
    const [cb] = await created(svc.engine, 1);
    const r = await client.report(cb!.token, 'progress', { seq: 7 });
    expect(r).toMatchObject({ kind: 'replayed', status: 'progress', attempts: 4, statusCode: 200 });
    expect(r.data).toMatchObject({ seq: 7 });
    expect(keys).toHaveLength(4);
    expect(new Set(keys)).toEqual(new Set([r.dedupKey]));
    expect(svc.runs.get(cb!.token)).toEqual([7]);
  });

  it('a caller-given dedupKey makes a second report (a restarted sender) a replay', async () => {
    const svc = await service();
    const client = createCallbackClient({ baseUrl: svc.server.url });
    const [cb] = await created(svc.engine, 1);
    const first = await client.report(
      cb!.token,
      'progress',
      { seq: 1 },
      { dedupKey: 'job-1:step-1' },
    );
    const again = await client.report(
      cb!.token,
      'progress',
      { seq: 1 },
      { dedupKey: 'job-1:step-1' },
    );
    expect([first.kind, again.kind]).toEqual(['applied', 'replayed']);
    expect(again.dedupKey).toBe('job-1:step-1');
    expect(svc.runs.get(cb!.token)).toEqual([1]);
  });

  it('tells applied, ignored, replayed, conflict and notFound apart, by callback URL and by token', async () => {
    const svc = await service();
    const client = createCallbackClient({ baseUrl: svc.server.url });
    const [a, b] = await created(svc.engine, 2);
    const url = `${svc.server.url}/callbacks/${encodeURIComponent(a!.token)}`;
    expect((await client.report(url, 'start')).kind).toBe('applied');
    const late = await client.report(url, 'accept', { late: true });
    expect(late).toMatchObject({ kind: 'ignored', status: 'start', statusCode: 200 });
    const done = await client.report(a!.token, 'complete', { receipt: 'R-1' });
    expect(done).toMatchObject({ kind: 'applied', status: 'complete', token: a!.token });
    expect(done.data).toMatchObject({ receipt: 'R-1' });
    // The same terminal report again (a new key): replayed, not a conflict.
    expect((await client.report(url, 'complete', { receipt: 'R-1' })).kind).toBe('replayed');
    const conflict = await client.report(url, 'error', { message: 'late failure' });
    expect(conflict).toMatchObject({ kind: 'conflict', status: 'complete', statusCode: 409 });
    await svc.engine.cancel(b!.token);
    expect(await client.report(b!.token, 'progress', {})).toMatchObject({
      kind: 'conflict',
      status: 'cancel',
    });
    const unknown = await client.report('not-a-token', 'complete');
    expect(unknown).toMatchObject({ kind: 'notFound', status: 'notFound', statusCode: 404 });
    expect(svc.completes.get(a!.token)).toBe(1);
  });

  it('signs every attempt with HMAC (fresh timestamp) and refuses without retrying on a wrong secret', async () => {
    const secret = 'hmac-secret-for-the-client-test';
    const svc = await service({ auth: { hmac: { secret } } });
    const px = await proxy(svc.server.url, (n) => (n === 0 ? '503' : 'pass'), '3');
    const { delays, options } = recorder();
    // The service checks signatures against the engine's (simulated) clock: share it.
    const client = createCallbackClient({
      baseUrl: px.url,
      auth: { hmac: { secret } },
      clock: svc.clock,
      ...options,
    });
    const [cb] = await created(svc.engine, 1);
    const r = await client.report(cb!.token, 'progress', { seq: 1 });
    expect(r).toMatchObject({ kind: 'applied', attempts: 2 });
    expect(delays).toEqual([3000]);

    const wrong = createCallbackClient({
      baseUrl: svc.server.url,
      auth: { hmac: { secret: 'not-the-secret-at-all' } },
      clock: svc.clock,
      ...options,
    });
    const err = await wrong.report(cb!.token, 'progress', { seq: 2 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ReportRefusedError);
    expect(err).toMatchObject({
      code: 'CBE_ERR_REPORT_REFUSED',
      serverCode: 'CBE_ERR_UNAUTHORIZED',
      statusCode: 401,
      attempts: 1,
      retryable: false,
    });
    expect(svc.runs.get(cb!.token)).toEqual([1]);
  });

  it('sends a bearer token', async () => {
    const svc = await service({ auth: { bearer: 'bearer-token-123' } });
    const [cb] = await created(svc.engine, 1);
    const ok = createCallbackClient({
      baseUrl: svc.server.url,
      auth: { bearer: 'bearer-token-123' },
    });
    expect((await ok.report(cb!.token, 'start')).kind).toBe('applied');
    const none = createCallbackClient({ baseUrl: svc.server.url });
    const err = await none.report(cb!.token, 'progress').catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'CBE_ERR_REPORT_REFUSED', statusCode: 401 });
  });

  it('refuses data the service refuses (413) without retrying', async () => {
    const svc = await service({ maxBodyBytes: 1024 });
    const [cb] = await created(svc.engine, 1);
    const client = createCallbackClient({ baseUrl: svc.server.url });
    const err = await client
      .report(cb!.token, 'progress', { blob: 'x'.repeat(4096) })
      .catch((e: unknown) => e);
    expect(err).toMatchObject({
      code: 'CBE_ERR_REPORT_REFUSED',
      serverCode: 'CBE_ERR_PAYLOAD_TOO_LARGE',
      statusCode: 413,
      attempts: 1,
    });
  });

  it.each(['structured', 'binary'] as const)(
    'sends CloudEvents in %s mode: an event whose answer was dropped is applied once (source + id)',
    async (mode) => {
      const secret = 'hmac-secret-for-the-event-test';
      const svc = await service({ auth: { hmac: { secret } } });
      const px = await proxy(svc.server.url, (n) => (n === 0 ? 'drop-after' : 'pass'));
      const { options } = recorder();
      const client = createCallbackClient({
        baseUrl: px.url,
        auth: { hmac: { secret } },
        clock: svc.clock,
        ...options,
      });
      const [cb] = await created(svc.engine, 1);
      const event = {
        type: 'com.example.job.progress',
        source: '/jobs/worker-1',
        callbackToken: cb!.token,
        callbackStatus: 'progress' as const,
        data: { seq: 3, note: 'naïve "quoted" 100%' },
        extensions: { region: 'eu west' },
      };
      const r = await client.sendEvent(event, { mode });
      expect(r).toMatchObject({ kind: 'replayed', status: 'progress', attempts: 2 });
      expect(r.data).toMatchObject({ seq: 3, note: 'naïve "quoted" 100%' });
      expect(svc.runs.get(cb!.token)).toEqual([3]);
      // A new event (new id) is a new report.
      const next = await client.sendEvent({ ...event, data: { seq: 4 } }, { mode });
      expect(next.kind).toBe('applied');
      expect(next.dedupKey).not.toBe(r.dedupKey);
      expect(svc.runs.get(cb!.token)).toEqual([3, 4]);
    },
  );
});
