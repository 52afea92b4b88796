import { createServer, type Server } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { createMetrics, withMetrics, type EngineMetrics } from '../src/metrics.js';
import { createDispatchHandler } from '../src/http/index.js';
import { InvalidArgumentError, type CallbackEngine } from '../src/index.js';
import { DurableFixture } from './helpers/durable.js';
import { makeEngine, report } from './helpers/engine.js';

const BEARER = 'metrics-test-bearer-0123456789';

/** The value of one sample line `name{labels} value` in an exposition, or undefined. */
function sample(
  text: string,
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have: Record<string, string> = {};
    for (const pair of (m[2] ?? '').matchAll(/([a-zA-Z_]+)="([^"]*)"/g)) have[pair[1]!] = pair[2]!;
    if (
      Object.entries(labels).every(([k, v]) => have[k] === v) &&
      Object.keys(have).length === Object.keys(labels).length
    )
      return Number(m[3]);
  }
  return undefined;
}

let server: Server | undefined;
let engine: CallbackEngine | undefined;
let metrics: EngineMetrics | undefined;
const durable = new DurableFixture();
afterEach(async () => {
  metrics?.close();
  if (server) await new Promise((r) => server!.close(r));
  await engine?.close();
  await durable.cleanup();
  server = engine = metrics = undefined;
});

async function serveWithMetrics(e: CallbackEngine, m: EngineMetrics): Promise<string> {
  server = createServer(withMetrics(createDispatchHandler(e, { auth: { bearer: BEARER } }), m));
  await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
  const addr = server.address() as { port: number };
  return `http://127.0.0.1:${addr.port}`;
}

describe('GET /metrics (prom-client)', () => {
  it('counts dispatches by anchor, status and outcome, creates, failures, retries and forged tokens; scraped over HTTP behind the auth', async () => {
    let clock;
    ({ engine, clock } = makeEngine());
    let failNext = 1;
    engine.anchor('pay', {
      next: {
        progress: () => {
          if (failNext-- > 0) throw new Error('flaky');
        },
      },
      retry: { attempts: 2, backoff: 'PT1S' },
    });
    engine.anchor('ship', {
      next: {
        start: () => {
          throw new Error('broken');
        },
      },
    });
    metrics = createMetrics(engine);
    const url = await serveWithMetrics(engine, metrics);

    const pays = await Promise.all(Array.from({ length: 5 }, () => engine!.create('pay')));
    for (const p of pays) await engine.dispatch(report(p.token, 'accept'));
    await engine.dispatch(report(pays[0]!.token, 'accept')); // ignored
    await engine.dispatch(report(pays[0]!.token, 'progress', { pct: 1 })); // fails once, retried
    clock.advance(1000); // the retry's wait, on the engine clock
    for (const p of pays) await engine.dispatch(report(p.token, 'complete'));
    await engine.dispatch(report(pays[1]!.token, 'cancel')); // conflict
    const ship = await engine.create('ship');
    await engine.dispatch(report(ship.token, 'start')); // step fails → error
    const fields = JSON.parse(Buffer.from(ship.token, 'base64url').toString()) as { sig: string };
    const forged = Buffer.from(
      JSON.stringify({ ...fields, sig: Buffer.alloc(32, 7).toString('base64url') }),
    ).toString('base64url');
    await engine.dispatch(report(forged, 'progress'));

    // A made-up status is refused, and counted under '(invalid)', not under its own label.
    await engine.dispatch(report(ship.token, 'made-up-status-1')).catch(() => {});
    await engine.dispatch(report(ship.token, 'made-up-status-2')).catch(() => {});
    const refused = await fetch(`${url}/metrics`);
    expect(refused.status).toBe(401);
    expect(refused.headers.get('www-authenticate')).toBe(
      'Basic realm="callback-engine metrics", charset="UTF-8"',
    );
    const r = await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${BEARER}` } });
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = await r.text();
    console.log(`one scrape of GET /metrics:\n${text}`);
    const d = (anchor: string, status: string, outcome: string) =>
      sample(text, 'callback_engine_dispatches_total', { anchor, status, outcome });
    expect(d('pay', 'accept', 'applied')).toBe(5);
    expect(d('pay', 'accept', 'ignored')).toBe(1);
    expect(d('pay', 'progress', 'applied')).toBe(1);
    expect(d('pay', 'complete', 'applied')).toBe(5);
    expect(d('pay', 'cancel', 'conflict')).toBe(1);
    expect(d('ship', 'start', 'applied')).toBe(1);
    expect(d('(unknown)', 'progress', 'notFound')).toBe(1);
    expect(d('(unknown)', '(invalid)', 'error')).toBe(2);
    expect(text).not.toContain('made-up-status');
    expect(sample(text, 'callback_engine_creates_total', { anchor: 'pay' })).toBe(5);
    expect(sample(text, 'callback_engine_creates_total', { anchor: 'ship' })).toBe(1);
    expect(
      sample(text, 'callback_engine_step_retries_total', { anchor: 'pay', status: 'progress' }),
    ).toBe(1);
    expect(
      sample(text, 'callback_engine_step_failures_total', { anchor: 'ship', status: 'start' }),
    ).toBe(1);
    expect(sample(text, 'callback_engine_forged_tokens_total')).toBe(1);
    expect(sample(text, 'callback_engine_callbacks_active')).toBe(0);
    expect(sample(text, 'callback_engine_callbacks_retained')).toBe(6);
    expect(
      sample(text, 'callback_engine_dispatch_duration_seconds_count', {
        anchor: 'pay',
        outcome: 'applied',
      }),
    ).toBe(11);
    expect(
      sample(text, 'callback_engine_step_duration_seconds_count', {
        anchor: 'pay',
        status: 'progress',
        result: 'failed',
      }),
    ).toBe(1);
    expect(
      sample(text, 'callback_engine_step_duration_seconds_count', {
        anchor: 'pay',
        status: 'progress',
        result: 'ok',
      }),
    ).toBe(1);
    expect(text).toContain('# TYPE callback_engine_dispatch_duration_seconds histogram');
    expect(text).toContain('# TYPE callback_engine_dispatches_total counter');
    // Every other request still reaches the dispatch handler (and its auth).
    const other = await fetch(`${url}/callbacks/${ship.token}`);
    expect(other.status).toBe(401);
    // The gate first: without credentials even a wrong method is a 401.
    expect((await fetch(`${url}/metrics`, { method: 'POST' })).status).toBe(401);
    expect(
      (
        await fetch(`${url}/metrics`, {
          method: 'POST',
          headers: { authorization: `Bearer ${BEARER}` },
        })
      ).status,
    ).toBe(405);
  });

  it('measures commits of a durable store: latency and rows per batch', async () => {
    engine = durable.open(durable.db());
    engine.anchor('job');
    metrics = createMetrics(engine, { defaultLabels: { replica: 'r1' } });
    await engine.ready();
    const cbs = await Promise.all(Array.from({ length: 40 }, () => engine!.create('job')));
    await Promise.all(cbs.map((c) => engine!.dispatch(report(c.token, 'progress'))));
    const text = await metrics.scrape();
    const commits = sample(text, 'callback_engine_commit_duration_seconds_count', {
      result: 'ok',
      replica: 'r1',
    })!;
    expect(commits).toBeGreaterThan(0);
    expect(sample(text, 'callback_engine_commit_rows_count', { replica: 'r1' })).toBe(commits);
    // Group commit: 80 row writes in fewer commits than writes.
    expect(
      sample(text, 'callback_engine_commit_rows_sum', { replica: 'r1' }),
    ).toBeGreaterThanOrEqual(80);
    expect(commits).toBeLessThan(80);
    expect(sample(text, 'callback_engine_callbacks_active', { replica: 'r1' })).toBe(40);
  });

  it('refuses bad options, and stops counting once closed', async () => {
    ({ engine } = makeEngine());
    expect(() => createMetrics(engine!, { prefix: 'bad prefix' })).toThrow(InvalidArgumentError);
    expect(() => createMetrics(engine!, { durationBuckets: [1, 0.5] })).toThrow(
      'metrics options.durationBuckets must be a non-empty increasing array of positive numbers (got an array)',
    );
    expect(() => createMetrics(engine!, { colour: 1 } as never)).toThrow(InvalidArgumentError);
    engine.anchor('a');
    metrics = createMetrics(engine);
    // The same names twice in one registry: refused clearly.
    expect(() => createMetrics(engine!, { register: metrics!.register })).toThrow(/metrics: /);
    await engine.create('a');
    metrics.close();
    await engine.create('a');
    expect(sample(await metrics.scrape(), 'callback_engine_creates_total', { anchor: 'a' })).toBe(
      1,
    );
  });
});
