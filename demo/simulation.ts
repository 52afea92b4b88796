/**
 * The `npm start` demo: an engine and its HTTP service on a free local port,
 * N callbacks, and simulated outside services that report back over HTTP with
 * `callback-engine/client` —
 * accept, start, progress (three reports racing each other), then complete,
 * error, or silence until the callback times out. At the end it checks every
 * callback's final status and data: a lost or misapplied update is counted.
 *
 * @module
 */

import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { Agent, createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  ACTIVE_STATUSES,
  createCallbackEngine,
  TERMINAL_STATUSES,
  type CallbackEngine,
  type CallbackStore,
} from 'callback-engine';
import {
  CallbackClientError,
  createCallbackClient,
  type ReportResult,
} from 'callback-engine/client';
import { createMonitor, withDashboard, type Monitor } from 'callback-engine/dashboard';
import { createDispatchHandler } from 'callback-engine/http';
import { figuresOver, type Sample } from './figures.js';

/** Options of {@link runSimulation}. */
export interface SimulationOptions {
  /** Callbacks to create. @default 20000 */
  callbacks?: number;
  /** Simulated outside services working at once. @default 128 */
  concurrency?: number;
  /** Port for the HTTP service; 0 picks a free one. @default 0 */
  port?: number;
  /** Keep the server (and dashboard) up after the run until the returned `close()`. @default false */
  keep?: boolean;
  /** Where progress and the summary go. @default stderr / stdout */
  log?: (line: string) => void;
  /** Draw a progress bar (on a TTY). @default process.stderr.isTTY */
  progressBar?: boolean;
  /**
   * Where callbacks live: `'sqlite'` (a SQLite file in a temp directory, removed at the end)
   * or `'memory'`. @default 'sqlite'
   */
  store?: 'sqlite' | 'memory';
  /**
   * Stop handing callbacks to the simulated services this many seconds after the last one was
   * created, and skip the wait for the silent ones and the final check: a short measurement
   * (the comparison run).
   * @default no limit
   */
  budgetSeconds?: number;
}

/** What the run measured. */
export interface SimulationSummary {
  readonly callbacks: number;
  /** Simulated outside services that worked at once. */
  readonly concurrency: number;
  readonly requests: number;
  readonly seconds: number;
  readonly requestsPerSecond: number;
  readonly p50ms: number;
  readonly p99ms: number;
  readonly counts: Readonly<Record<string, number>>;
  /**
   * Callbacks whose final status or data differ from what their service reported; `undefined`
   * when `budgetSeconds` was set (not checked).
   */
  readonly lostUpdates: number | undefined;
  readonly httpErrors: number;
  readonly dashboardUrl: string;
  /** Seconds from the start until the last report was answered (the wait for time-outs left out). */
  readonly loadSeconds: number;
  /** Seconds from the start until the last callback was created. */
  readonly createdSeconds: number;
  /** Every report sent, in the order answered. */
  readonly samples: readonly Sample[];
  /** Stops the server and the engine (already done unless `keep`). */
  close(): Promise<void>;
}

type Outcome = 'complete' | 'error' | 'timeout';
/** Deterministic plan per callback: 80% complete, 12% error, 8% go silent and time out. */
const outcomeOf = (i: number): Outcome =>
  i % 25 < 20 ? 'complete' : i % 25 < 23 ? 'error' : 'timeout';

/**
 * Runs the simulation.
 *
 * @returns the summary; `lostUpdates` must be 0.
 */
export async function runSimulation(options: SimulationOptions = {}): Promise<SimulationSummary> {
  const total = options.callbacks ?? 20_000;
  const concurrency = options.concurrency ?? 128;
  const log = options.log ?? ((line: string) => process.stdout.write(`${line}\n`));
  const bar = options.progressBar ?? process.stderr.isTTY;

  let store: CallbackStore | undefined;
  let dir: string | undefined;
  if ((options.store ?? 'sqlite') === 'sqlite') {
    // Loaded only here: the memory demo runs without better-sqlite3 installed.
    const { sqliteStore } = await import('callback-engine/sqlite');
    dir = mkdtempSync(join(tmpdir(), 'callback-engine-demo-'));
    store = sqliteStore({ path: join(dir, 'callbacks.db') });
  }
  const engine: CallbackEngine = createCallbackEngine({
    node: 'demo',
    secrets: [randomBytes(32)],
    timeout: 'PT2M',
    retention: 'PT30M',
    ...(store ? { store } : {}),
  });
  const removeDir = () => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  };
  try {
    await engine.ready();
  } catch (err) {
    removeDir();
    throw err;
  }
  const queue: { token: string; i: number }[] = [];
  engine.anchor('order', {
    next: {
      create: (cb) => void queue.push({ token: cb.token, i: cb.data.i as number }),
      progress: (cb) => ({ lastStep: cb.report.step }),
      complete: (cb) => ({ receipt: `R-${cb.data.i as number}` }),
    },
  });
  const monitor: Monitor = createMonitor(engine);
  const server: Server = createServer(withDashboard(createDispatchHandler(engine), monitor));
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve) => server.listen(options.port ?? 0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const base = `http://127.0.0.1:${port}`;
  const dashboardUrl = `${base}/dashboard`;
  log(
    `callback-engine demo: ${total.toLocaleString('en-US')} callbacks, ${concurrency} simulated services`,
  );
  log(`dashboard: ${dashboardUrl}`);
  log(`store: ${store?.kind === 'durable' ? `${store.name} (synchronous full)` : 'memory'}`);

  // The simulated services report through the client an outside party would use: one
  // deduplication key per report, retried on 503 and dropped connections. It sends over
  // node:http here: both sides share this process, and Node's fetch costs several times the CPU
  // of node:http per request, which would halve the engine's figures.
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency });
  const client = createCallbackClient({ baseUrl: base, fetch: nodeHttpFetch(agent) });
  const samples: Sample[] = [];
  let requests = 0;
  let httpErrors = 0;
  /** One report through the client: its answer, or `undefined` after an error (counted). */
  const send = async (run: () => Promise<ReportResult>): Promise<ReportResult | undefined> => {
    const sent = performance.now();
    try {
      // A conflict is a legitimate answer (e.g. a report racing a timeout), not an error.
      const result = await run();
      const now = performance.now();
      requests += result.attempts;
      samples.push({ sentMs: sent - started, latencyMs: now - sent, attempts: result.attempts });
      return result;
    } catch (err) {
      const attempts = err instanceof CallbackClientError ? err.attempts : 1;
      requests += attempts;
      httpErrors++;
      samples.push({ sentMs: sent - started, latencyMs: undefined, attempts });
      return undefined;
    }
  };

  // What the service acknowledged as applied for each callback: each must show in its final data.
  const acked: Record<string, unknown>[] = Array.from({ length: total }, () => ({}));
  const ack = (i: number, result: ReportResult | undefined, data: Record<string, unknown>) => {
    if (result?.kind === 'applied' || result?.kind === 'replayed') Object.assign(acked[i]!, data);
  };

  // One simulated outside service handling one callback: its callback URL, then a CloudEvent.
  const serve = async ({ token, i }: { token: string; i: number }) => {
    const url = `${base}/callbacks/${encodeURIComponent(token)}`;
    await send(() => client.report(url, 'accept'));
    const start = { worker: i % concurrency };
    ack(i, await send(() => client.report(token, 'start', start)), start);
    // Three progress reports racing each other on separate connections: none may be lost.
    await Promise.all(
      [0, 1, 2].map(async (step) => {
        const data = { [`p${step}`]: step };
        ack(i, await send(() => client.report(url, 'progress', { step, ...data })), data);
      }),
    );
    const outcome = outcomeOf(i);
    if (outcome === 'timeout') return; // goes silent: the callback's deadline fires
    const data = outcome === 'complete' ? { amount: i } : { message: `service ${i % 7} failed` };
    const event = {
      id: `evt-${i}`,
      source: '/demo/services',
      type: `demo.${outcome}`,
      callbackToken: token,
      callbackStatus: outcome,
      data,
    };
    ack(i, await send(() => client.sendEvent(event, { mode: 'binary' })), {
      ...data,
      status: outcome,
    });
  };

  const started = performance.now();
  let deadline = Infinity; // set once every callback is created
  const stopped = () => performance.now() >= deadline;
  let created = 0;
  let createdSeconds = 0;
  const tokens: string[] = new Array<string>(total);
  const timeoutFor = (i: number) => (outcomeOf(i) === 'timeout' ? 'PT3S' : 'PT2M');
  const creating = (async () => {
    for (let i = 0; i < total; i += 500) {
      const batch = await Promise.all(
        Array.from({ length: Math.min(500, total - i) }, (_, j) =>
          engine.create('order', { data: { i: i + j }, timeout: timeoutFor(i + j) }),
        ),
      );
      batch.forEach((cb, j) => (tokens[i + j] = cb.token));
      created += batch.length;
      await new Promise((r) => setImmediate(r));
    }
    createdSeconds = (performance.now() - started) / 1000;
    if (options.budgetSeconds !== undefined)
      deadline = performance.now() + options.budgetSeconds * 1000;
  })();
  const workers = Array.from({ length: concurrency }, async () => {
    for (;;) {
      if (stopped()) return;
      const job = queue.shift();
      if (job) await serve(job);
      else if (created >= total) return;
      else await new Promise((r) => setImmediate(r));
    }
  });

  let settled = 0;
  const draw = () => {
    const s = engine.stats().byStatus;
    settled = TERMINAL_STATUSES.reduce((n, t) => n + s[t], 0);
    const pct = settled / total;
    const width = 30;
    const elapsed = (performance.now() - started) / 1000;
    const line = `  [${'█'.repeat(Math.round(pct * width))}${'░'.repeat(width - Math.round(pct * width))}] ${(pct * 100).toFixed(0).padStart(3)}%  ${settled.toLocaleString('en-US')}/${total.toLocaleString('en-US')} settled  ${Math.round(requests / Math.max(elapsed, 0.001)).toLocaleString('en-US')} req/s`;
    if (bar) process.stderr.write(`\r${line}`);
    return line;
  };
  const ticker = setInterval(draw, bar ? 150 : 2000);
  if (!bar) ticker.unref();
  await creating;
  await Promise.all(workers);
  const loadSeconds = (performance.now() - started) / 1000;
  const measureOnly = options.budgetSeconds !== undefined;
  // Wait for the silent ones to time out.
  if (!measureOnly) await Promise.all(tokens.map((t) => engine.wait(t)));
  clearInterval(ticker);
  const finalLine = draw();
  if (bar) process.stderr.write('\n');
  else log(finalLine);
  const seconds = (performance.now() - started) / 1000;

  // Verify every callback against its plan.
  let lost: number | undefined = measureOnly ? undefined : 0;
  for (let i = 0; lost !== undefined && i < total; i++) {
    const { status, data } = await engine.get(tokens[i]!);
    const { status: ackedStatus, ...ackedData } = acked[i]!;
    // An acknowledged terminal report must have won; a silent callback must have timed out.
    const statusOk =
      ackedStatus !== undefined
        ? status === ackedStatus
        : status === 'timeout' || outcomeOf(i) !== 'timeout';
    const dataOk = Object.entries(ackedData).every(([k, v]) => data[k] === v);
    const receiptOk = status !== 'complete' || data.receipt === `R-${i}`;
    if (!statusOk || !dataOk || !receiptOk) {
      lost++;
      if (process.env.DEMO_DEBUG)
        log(`mismatch ${i} (${outcomeOf(i)}): ${status} ${JSON.stringify(data)}`);
    }
  }

  const whole = figuresOver(samples, -Infinity, Infinity);
  const byStatus = engine.stats().byStatus;
  const counts: Record<string, number> = {};
  for (const s of [...ACTIVE_STATUSES, ...TERMINAL_STATUSES])
    if (byStatus[s] !== 0) counts[s] = byStatus[s];
  const summary = {
    callbacks: total,
    concurrency,
    requests,
    seconds,
    requestsPerSecond: Math.round(requests / seconds),
    p50ms: whole.p50ms,
    p99ms: whole.p99ms,
    counts,
    lostUpdates: lost,
    httpErrors,
    dashboardUrl,
    loadSeconds,
    createdSeconds,
    samples,
  };
  log('');
  log(
    `${summary.requests.toLocaleString('en-US')} HTTP dispatches in ${seconds.toFixed(1)} s: ${summary.requestsPerSecond.toLocaleString('en-US')}/s, latency p50 ${summary.p50ms.toFixed(2)} ms, p99 ${summary.p99ms.toFixed(2)} ms`,
  );
  log(
    `final: ${Object.entries(counts)
      .map(([s, n]) => `${s} ${n.toLocaleString('en-US')}`)
      .join(', ')}`,
  );
  if (store) {
    const { commits, rowsWritten } = engine.stats();
    log(
      `store: ${commits.toLocaleString('en-US')} group commits, ${rowsWritten.toLocaleString('en-US')} rows written (${(rowsWritten / Math.max(1, commits)).toFixed(1)} per commit)`,
    );
  }
  log(`lost updates: ${lost ?? 'not checked'}${httpErrors ? `, HTTP errors: ${httpErrors}` : ''}`);

  const close = async () => {
    agent.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeAllConnections();
    monitor.close();
    await engine.close();
    removeDir();
  };
  if (!options.keep) await close();
  return { ...summary, close };
}

/**
 * The part of `fetch` the client uses (method, headers, string body, signal), over node:http
 * with a keep-alive agent.
 */
function nodeHttpFetch(agent: Agent): typeof fetch {
  return (input, init = {}) =>
    new Promise<Response>((resolve, reject) => {
      const req = request(
        input instanceof Request ? input.url : input,
        { method: init.method ?? 'GET', agent, headers: init.headers as Record<string, string> },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('error', reject);
          res.on('end', () => {
            const headers = new Headers();
            for (const [k, v] of Object.entries(res.headers))
              if (typeof v === 'string') headers.set(k, v);
            const body = chunks.length === 0 ? null : Buffer.concat(chunks);
            resolve(new Response(body, { status: res.statusCode ?? 502, headers }));
          });
        },
      );
      req.on('error', reject);
      init.signal?.addEventListener('abort', () => req.destroy(init.signal?.reason as Error), {
        once: true,
      });
      req.end(init.body as string | undefined);
    });
}
