/**
 * Shared helpers for the benchmark suite: run tinybench tasks that each do a
 * batch of operations, report operations per second and ratios to a floor.
 */
import { execFileSync } from 'node:child_process';
import { writeFileSync, readFileSync, existsSync, readdirSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { CallbackEngine } from '../src/index.js';
import os from 'node:os';
import { Bench } from 'tinybench';

/** One measured alternative. */
export interface Alternative {
  name: string;
  /** Operations done by one call of `fn`. */
  batch: number;
  fn: () => unknown;
}

/** A measured row. */
export interface Row {
  group: string;
  name: string;
  opsPerSec: number;
  /** ops/s of this row divided by ops/s of the group's reference row. */
  ratio: number;
  reference: string;
  rme: number;
  samples: number;
}

/**
 * Runs alternatives in one tinybench run and returns ops/s per alternative
 * plus each one's ratio to `reference` (the first alternative by default).
 */
export async function compare(
  group: string,
  alternatives: Alternative[],
  options: { timeMs?: number; reference?: string } = {},
): Promise<Row[]> {
  const bench = new Bench({ time: options.timeMs ?? 1500, warmupTime: 300, throws: true });
  for (const alt of alternatives) bench.add(alt.name, alt.fn);
  await bench.run();
  const rows: Row[] = [];
  for (const task of bench.tasks) {
    const alt = alternatives.find((a) => a.name === task.name)!;
    const r = task.result;
    if (r.state !== 'completed') throw new Error(`${group} / ${task.name}: ${r.state}`);
    rows.push({
      group,
      name: task.name,
      opsPerSec: r.throughput.mean * alt.batch,
      ratio: 1,
      reference: '',
      rme: r.throughput.rme,
      samples: r.latency.samples?.length ?? 0,
    });
  }
  const refName = options.reference ?? alternatives[0]!.name;
  const ref = rows.find((r) => r.name === refName)!;
  for (const row of rows) {
    row.ratio = row.opsPerSec / ref.opsPerSec;
    row.reference = refName;
  }
  return rows;
}

/** Prints rows as an aligned table. */
export function printRows(rows: Row[]): string[] {
  const fmt = (n: number) =>
    n >= 1000 ? `${Math.round(n).toLocaleString('en-US')}` : n.toFixed(1);
  const lines = [
    '| workload | alternative | ops/s | ratio to reference | ±% |',
    '|---|---|---:|---:|---:|',
    ...rows.map(
      (r) =>
        `| ${r.group} | ${r.name} | ${fmt(r.opsPerSec)} | ${r.ratio.toFixed(2)}× ${r.reference} | ${r.rme.toFixed(1)} |`,
    ),
  ];
  for (const line of lines) console.log(line);
  return lines;
}

/**
 * Writes (or replaces) one standalone benchmark's section of bench/RESULTS.md, after the block
 * `npm run bench` generates (which keeps everything below its end marker).
 */
export function writeResultsSection(
  name: string,
  title: string,
  script: string,
  lines: string[],
): void {
  const file = 'bench/RESULTS.md';
  const begin = `<!-- begin ${name} -->`;
  const end = `<!-- end ${name} -->`;
  const args = process.argv.slice(2).join(' ');
  const m = machine();
  const body = [
    begin,
    '',
    `## ${title}`,
    '',
    `Command: \`npx tsx ${script}${args ? ` ${args}` : ''}\`. Machine: ${m.cpus} × ${String(m.cpu).split(' ').slice(0, 2).join(' ')}, ${m.memGiB} GiB, ${m.platform}, Node ${m.node}. Date: ${new Date().toISOString().slice(0, 10)}.`,
    '',
    ...lines,
    '',
    end,
  ].join('\n');
  const previous = existsSync(file) ? readFileSync(file, 'utf8') : '';
  const at = previous.indexOf(begin);
  const until = previous.indexOf(end);
  const next =
    at >= 0 && until > at
      ? `${previous.slice(0, at)}${body}${previous.slice(until + end.length)}`
      : `${previous.trimEnd()}\n\n${body}\n`;
  writeFileSync(file, next);
  console.log(`wrote the "${title}" section of ${file}`);
}

/** Machine facts recorded beside results. */
export function machine(): Record<string, string | number> {
  return {
    node: process.version,
    cpus: os.cpus().length,
    cpu: os.cpus()[0]?.model ?? 'unknown',
    memGiB: Math.round(os.totalmem() / 2 ** 30),
    platform: `${os.platform()} ${os.arch()}`,
  };
}

/** Merges `section` into a JSON results file. */
export function writeResults(file: string, section: string, value: unknown): void {
  const all = existsSync(file)
    ? (JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>)
    : {};
  all[section] = value;
  all.machine = machine();
  all.updatedAt = new Date().toISOString();
  writeFileSync(file, `${JSON.stringify(all, null, 2)}\n`);
}

/** Throws unless `ok`: correctness checks run before any timing. */
export function check(ok: boolean, what: string): void {
  if (!ok) throw new Error(`benchmark correctness check failed: ${what}`);
}

/** Runs `workers` loops of `each` sequential calls of `op`, recording each call's latency. */
export async function closedLoop(
  workers: number,
  each: number,
  op: () => Promise<unknown>,
  into: number[],
): Promise<void> {
  await Promise.all(
    Array.from({ length: workers }, async () => {
      for (let k = 0; k < each; k++) {
        const t0 = performance.now();
        await op();
        into.push(performance.now() - t0);
      }
    }),
  );
}

/** Creates `n` callbacks at anchor `job`, `chunk` concurrently at a time; returns their tokens. */
export async function createMany(
  engine: CallbackEngine,
  n: number,
  chunk: number,
): Promise<string[]> {
  const tokens: string[] = [];
  for (let i = 0; i < n; i += chunk) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(chunk, n - i) }, (_, j) =>
        engine.create('job', { data: { i: i + j } }),
      ),
    );
    for (const cb of batch) tokens.push(cb.token);
  }
  return tokens;
}

/**
 * Sends `total` `progress` reports, `inFlight` at a time, spread uniformly over `tokens` by a
 * fixed xorshift32 sequence (the same order on every run); the report's `pct` is its number.
 */
export async function dispatchUniform(
  engine: CallbackEngine,
  tokens: readonly string[],
  total: number,
  inFlight: number,
): Promise<void> {
  let seed = 12345;
  for (let done = 0; done < total; done += inFlight) {
    const ps: Promise<unknown>[] = [];
    for (let b = 0; b < inFlight; b++) {
      seed ^= seed << 13;
      seed ^= seed >>> 17;
      seed ^= seed << 5;
      seed >>>= 0;
      ps.push(
        engine.dispatch({
          type: 'CALLBACK',
          callbackToken: tokens[seed % tokens.length]!,
          callbackStatus: 'progress',
          callbackData: { pct: done + b },
        }),
      );
    }
    await Promise.all(ps);
  }
}

/**
 * The HTTP floor: a bare node:http handler that reads the body, `JSON.parse`s it and answers a
 * `{ status, token, data }` JSON of the same shape. No routing, no checks, no engine.
 */
export function floorHandler(req: IncomingMessage, res: ServerResponse): void {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    const m = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
    const text = JSON.stringify({
      status: m.callbackStatus,
      token: m.callbackToken,
      data: m.callbackData,
    });
    res.writeHead(200, {
      'content-type': 'application/json; charset=utf-8',
      'content-length': Buffer.byteLength(text),
    });
    res.end(text);
  });
}

/** One process as /proc shows it. */
export interface ProcessCpu {
  comm: string;
  ppid: number;
  /** CPU time of the process and its reaped children, ms. */
  ms: number;
}

let clockTicks: number | undefined;

/** CPU time of every process now, from /proc/<pid>/stat (Linux; empty elsewhere). */
export function processCpu(): Map<number, ProcessCpu> {
  const out = new Map<number, ProcessCpu>();
  let pids: string[];
  try {
    pids = readdirSync('/proc').filter((d) => /^\d+$/.test(d));
  } catch {
    return out;
  }
  if (clockTicks === undefined) {
    try {
      clockTicks = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const close = stat.lastIndexOf(')');
      const rest = stat.slice(close + 2).split(' ');
      // Fields 4 (ppid) and 14-17 (utime, stime, and of reaped children cutime, cstime), in ticks.
      const ticks = [11, 12, 13, 14].reduce((sum, i) => sum + Number(rest[i]), 0);
      out.set(Number(pid), {
        comm: stat.slice(stat.indexOf('(') + 1, close),
        ppid: Number(rest[1]),
        ms: (ticks * 1000) / clockTicks,
      });
    } catch {
      // Gone meanwhile.
    }
  }
  return out;
}

/**
 * Waits until two engines of one cluster, in this process, hold `each` shards apiece (the leases
 * move on renewal), at most `timeoutMs`; returns what each holds then.
 */
export async function splitShards(
  a: CallbackEngine,
  b: CallbackEngine,
  each: number,
  timeoutMs: number,
): Promise<[number, number]> {
  const held = (): [number, number] => [
    a.stats().cluster?.shards ?? 0,
    b.stats().cluster?.shards ?? 0,
  ];
  const deadline = performance.now() + timeoutMs;
  while (held().some((n) => n !== each) && performance.now() < deadline)
    await new Promise<void>((resolve) => setTimeout(resolve, 50));
  return held();
}

/** The `q` quantile (0 to 1) of ascending `sorted`, interpolated between neighbours; NaN if empty. */
export function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const at = (sorted.length - 1) * q;
  const lo = Math.floor(at);
  const hi = Math.ceil(at);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (at - lo);
}
