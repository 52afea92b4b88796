/**
 * HTTP dispatches per second: autocannon POSTs CALLBACK `progress` reports to
 * a set of pre-created callbacks through `serve(engine)` (ours), beside a bare
 * node:http server that reads the same body, `JSON.parse`s it and answers a
 * `{ status, token, data }` JSON of the same shape (the floor). Both run in one
 * run, alternating, each in its own child process so the load generator (this
 * process) does not share their event loop. Reported per round: requests per
 * second, the ratio ours / floor, and the server's CPU time per request.
 *
 * `--stub` adds a third target: `serve()` over an engine whose `deliver`
 * answers at once, to tell the HTTP layer's cost from the engine's.
 *
 * `--dist <dir>` serves the compiled package (e.g. `dist` after `npm run build`) instead of
 * the TypeScript sources through tsx, whose per-closure `__name` helper adds a little to every
 * request.
 *
 * Run: npx tsx bench/http.bench.ts [--duration 10] [--rounds 2] [--connections 32] [--pending 1000] [--stub] [--dist dist]
 * Results: printed, and written to bench/results-http.json.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:http';
import { resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import type * as HttpModule from '../src/http/index.js';
import type * as CoreModule from '../src/index.js';
import type { CallbackEngine, CallbackMessage } from '../src/index.js';
import { check, floorHandler, writeResults, writeResultsSection } from './lib.js';

type Target = 'floor' | 'ours' | 'stub';

const { values } = parseArgs({
  options: {
    child: { type: 'string' },
    duration: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '2' },
    rounds: { type: 'string', default: '2' },
    connections: { type: 'string', default: '32' },
    pending: { type: 'string', default: '1000' },
    stub: { type: 'boolean', default: false },
    dist: { type: 'string' },
  },
});
const RESULTS = fileURLToPath(new URL('./results-http.json', import.meta.url));
const GOAL = 0.6;

// ---- child: one server --------------------------------------------------------------------------

/** The floor: read the body, parse it, answer the same shape. No routing, no checks, no engine. */
function floorServer(): Promise<string> {
  const server = createServer(floorHandler);
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      resolve(`http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`);
    }),
  );
}

/** An engine whose `deliver` answers at once with the report merged: the HTTP layer alone. */
function stubbed(engine: CallbackEngine): CallbackEngine {
  return new Proxy(engine, {
    get(target, key) {
      if (key === 'deliver') {
        return (m: CallbackMessage) => {
          const r = m as { callbackToken: string; callbackStatus: string; callbackData?: object };
          const answer = { status: r.callbackStatus, token: r.callbackToken, data: r.callbackData };
          return Promise.resolve({ answer, outcome: 'applied' });
        };
      }
      const value = Reflect.get(target, key) as unknown;
      return typeof value === 'function'
        ? (value as (...args: unknown[]) => unknown).bind(target)
        : value;
    },
  });
}

type Core = typeof CoreModule;
type Http = typeof HttpModule;

/** The package under test: the sources, or a compiled copy (`--dist`). */
async function loadPackage(): Promise<Pick<Core, 'createCallbackEngine'> & Pick<Http, 'serve'>> {
  const base =
    values.dist === undefined
      ? new URL('../src/', import.meta.url)
      : pathToFileURL(`${resolve(values.dist)}/`);
  const core = (await import(new URL('index.js', base).href)) as Core;
  const http = (await import(new URL('http/index.js', base).href)) as Http;
  return { createCallbackEngine: core.createCallbackEngine, serve: http.serve };
}

async function child(target: Target, pending: number): Promise<void> {
  let url: string;
  const tokens: string[] = [];
  if (target === 'floor') url = await floorServer();
  else {
    const { createCallbackEngine, serve } = await loadPackage();
    const engine = createCallbackEngine({
      node: 'bench',
      secrets: ['bench-secret-0123456789'],
      timeout: false,
      retention: true,
    });
    engine.anchor('job', { next: { progress: () => undefined } });
    for (let i = 0; i < pending; i++) {
      tokens.push((await engine.create('job', { data: { i } })).token);
    }
    url = (await serve(target === 'stub' ? stubbed(engine) : engine)).url;
  }
  // The parent asks for CPU usage around each measured run.
  process.on('message', () => process.send!(process.cpuUsage()));
  process.send!({ url, tokens });
}

// ---- parent: load generator ---------------------------------------------------------------------

interface Started {
  target: Target;
  proc: ChildProcess;
  url: string;
  tokens: string[];
}

function start(target: Target, pending: number): Promise<Started> {
  const proc = fork(
    fileURLToPath(import.meta.url),
    [
      '--child',
      target,
      '--pending',
      String(pending),
      ...(values.dist === undefined ? [] : ['--dist', values.dist]),
    ],
    { execArgv: process.execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] },
  );
  return new Promise((resolve, reject) => {
    proc.once('message', (m: { url: string; tokens: string[] }) => resolve({ target, proc, ...m }));
    proc.once('exit', (code) => reject(new Error(`${target} server exited with ${code}`)));
  });
}

function stop(s: Started): Promise<void> {
  return new Promise((resolve) => {
    s.proc.removeAllListeners('exit');
    s.proc.once('exit', () => resolve());
    s.proc.kill();
  });
}

/** The child's CPU time so far (user + system), in microseconds. */
function cpuOf(s: Started): Promise<NodeJS.CpuUsage> {
  return new Promise((resolve) => {
    s.proc.once('message', (u: NodeJS.CpuUsage) => resolve(u));
    s.proc.send('cpu');
  });
}

function bodiesFor(tokens: readonly string[]): string[] {
  return tokens.map((token, i) =>
    JSON.stringify({
      type: 'CALLBACK',
      callbackToken: token,
      callbackStatus: 'progress',
      callbackData: { pct: i % 100 },
    }),
  );
}

interface Measured {
  rps: number;
  /** Server CPU time per request, µs. */
  cpuUs: number;
  /** The part of it spent in the kernel (socket syscalls), µs. */
  sysUs: number;
}

async function load(s: Started, bodies: readonly string[], seconds: number): Promise<Measured> {
  const cpuBefore = await cpuOf(s);
  // One prebuilt request per callback: each connection cycles through them, and the load
  // generator does no per-request work (a setupRequest hook would make it the bottleneck).
  const result = await autocannon({
    url: s.url,
    connections: Number(values.connections),
    pipelining: 1,
    duration: seconds,
    requests: bodies.map((body) => ({
      method: 'POST' as const,
      path: '/callbacks',
      headers: { 'content-type': 'application/json' },
      body,
    })),
  });
  const cpuAfter = await cpuOf(s);
  const n = Math.max(1, result.requests.total);
  check(
    result.non2xx === 0 && result.errors === 0,
    `${s.target}: no errors or non-2xx answers (got ${result.non2xx} non-2xx, ${result.errors} errors)`,
  );
  return {
    rps: result.requests.average,
    cpuUs: (cpuAfter.user + cpuAfter.system - cpuBefore.user - cpuBefore.system) / n,
    sysUs: (cpuAfter.system - cpuBefore.system) / n,
  };
}

/** One request to each target, compared: the floor must answer what ours answers. */
async function correctness(targets: readonly Started[], bodies: readonly string[]): Promise<void> {
  const answers: { status: string; token: string; data: Record<string, unknown> }[] = [];
  for (const t of targets) {
    const r = await fetch(`${t.url}/callbacks`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: bodies[0]!,
    });
    check(r.status === 200, `${t.target} answers 200`);
    answers.push((await r.json()) as (typeof answers)[number]);
  }
  const [ours, floor] = answers;
  check(ours!.status === 'progress' && floor!.status === 'progress', 'both answer progress');
  check(ours!.token === floor!.token, 'both answer the same token');
  check(
    ours!.data.pct === 0 && ours!.data.i === 0,
    'ours merged the report into the callback data',
  );
}

async function main(): Promise<void> {
  const pending = Number(values.pending);
  const duration = Number(values.duration);
  const rounds = Number(values.rounds);
  const ours = await start('ours', pending);
  const floor = await start('floor', pending);
  const targets = [ours, floor];
  if (values.stub) targets.push(await start('stub', pending));
  const bodies = bodiesFor(ours.tokens);
  type Row = { round: number } & Partial<Record<Target, Measured>> & { ratio: number };
  const rows: Row[] = [];
  try {
    await correctness(targets, bodies);
    for (const t of targets) await load(t, bodies, Number(values.warmup));
    for (let round = 1; round <= rounds; round++) {
      // Alternate the order so drift (thermal, noise) does not always favour one target.
      const order = round % 2 ? [...targets].reverse() : targets;
      const row: Row = { round, ratio: 0 };
      for (const t of order) row[t.target] = await load(t, bodies, duration);
      row.ratio = row.ours!.rps / row.floor!.rps;
      rows.push(row);
      const show = (t: Target) =>
        row[t]
          ? `${t} ${Math.round(row[t].rps)} req/s (${row[t].cpuUs.toFixed(0)} µs CPU/req, ${row[t].sysUs.toFixed(0)} in the kernel)`
          : '';
      console.log(
        `round ${round}: ${['floor', 'ours', 'stub']
          .map((t) => show(t as Target))
          .filter(Boolean)
          .join(', ')}; ratio ${row.ratio.toFixed(2)}`,
      );
    }
  } finally {
    for (const t of targets) await stop(t);
  }
  const ratios = rows.map((r) => r.ratio);
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const summary = {
    workload: 'POST /callbacks progress report, rotating over pre-created callbacks',
    config: {
      code: values.dist === undefined ? 'src via tsx' : `compiled (${values.dist})`,
      pending,
      durationSeconds: duration,
      rounds,
      connections: Number(values.connections),
      pipelining: 1,
    },
    rounds: rows,
    ratio: { mean: mean(ratios), min: Math.min(...ratios) },
    goal: GOAL,
  };
  const table = [
    '| target | req/s (mean) | server CPU µs/req (mean) | of which kernel |',
    '|---|---:|---:|---:|',
  ];
  const names: Record<Target, string> = {
    floor: 'bare node:http + JSON.parse (floor)',
    ours: 'serve(engine)',
    stub: 'serve(stub engine): HTTP layer only',
  };
  for (const t of targets) {
    const rps = mean(rows.map((r) => r[t.target]!.rps));
    const cpu = mean(rows.map((r) => r[t.target]!.cpuUs));
    const sys = mean(rows.map((r) => r[t.target]!.sysUs));
    table.push(
      `| ${names[t.target]} | ${Math.round(rps).toLocaleString('en-US')} | ${cpu.toFixed(0)} | ${sys.toFixed(0)} |`,
    );
  }
  const verdict = `Ratio to the floor: mean ${summary.ratio.mean.toFixed(2)}, min ${summary.ratio.min.toFixed(2)} (goal ≥ ${GOAL}).`;
  for (const line of [...table, verdict]) console.log(line);
  writeResultsSection('http', 'HTTP service (issue 4)', 'bench/http.bench.ts', [
    `autocannon, ${summary.config.connections} connections, ${rounds} rounds of ${duration} s per target (order alternating), ${pending} pending callbacks, ${summary.config.code}; workload: ${summary.workload}. Server CPU per request from the server process's \`process.cpuUsage()\`.`,
    '',
    ...table,
    '',
    verdict,
  ]);
  writeResults(RESULTS, 'http', summary);
}

if (values.child === 'ours' || values.child === 'floor' || values.child === 'stub') {
  await child(values.child, Number(values.pending));
} else {
  await main();
}
