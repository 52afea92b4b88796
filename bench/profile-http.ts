/**
 * An account of the server's CPU per HTTP report, measured, not estimated.
 *
 * Each target (the bare node:http floor, serve(engine) on the memory store, serve(engine) on a
 * SQLite store) runs in its own child process; autocannon (this process) sends `POST /callbacks`
 * progress reports. During the measured window the child runs:
 * - the V8 CPU profiler (node:inspector, 100 µs sampling): every sample's self time goes to the
 *   part it belongs to, by the function it is in (see `partOf`): native JSON.parse goes to
 *   parsing, JSON.stringify to serialising, node's http/net/stream internals to writing, and
 *   anything else in a dependency or node internal to the nearest calling frame of ours;
 * - `v8.GCProfiler`: GC count and pause time, and bytes allocated (the young generation's growth
 *   between collections);
 * - `process.cpuUsage()`: total and kernel CPU per request.
 * A second, shorter window attaches `strace -c -f` to the child and counts syscalls per response
 * (strace slows the child down; its window is not used for any timing).
 *
 * Run: npx tsx bench/profile-http.ts [--duration 8] [--connections 32] [--pending 1000] [--targets floor,memory,sqlite]
 *      [--dist dist] [--label before]
 * Results: printed, written to bench/results-profile-http.json and to bench/RESULTS.md.
 */
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { Session } from 'node:inspector/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { GCProfiler } from 'node:v8';
import autocannon from 'autocannon';
import type * as Http from '../src/http/index.js';
import type * as Core from '../src/index.js';
import type * as Sqlite from '../src/store/sqlite.js';
import { floorHandler, writeResults, writeResultsSection } from './lib.js';

type Target = 'floor' | 'memory' | 'sqlite';

const { values } = parseArgs({
  options: {
    child: { type: 'string' },
    duration: { type: 'string', default: '8' },
    connections: { type: 'string', default: '32' },
    pending: { type: 'string', default: '1000' },
    targets: { type: 'string', default: 'floor,memory,sqlite' },
    strace: { type: 'string', default: '3' },
    dist: { type: 'string' },
    label: { type: 'string', default: '' },
  },
});

// ---- the parts of a request -------------------------------------------------------------------

const PARTS = [
  'parsing (body, JSON.parse, message and data checks)',
  'routing and auth',
  'token lookup',
  'machine transition (XState)',
  'engine around it (mailbox, answer, promises)',
  'store write (group commit, SQLite)',
  'serialising the answer (JSON.stringify, headers)',
  'node:http + socket (parse, write, streams)',
  'GC',
  'other',
] as const;
type Part = (typeof PARTS)[number];

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string };
  children?: number[];
}

/** Whether `url` is a file of this package (the sources or the build) under `path`. */
const pkg = (url: string, path: string): boolean =>
  !url.includes('/node_modules/') &&
  (url.includes(`/src/${path}`) || url.includes(`/dist/${path}`));

/** The part a frame of ours (or of a dependency we can name) belongs to, or undefined. */
function ownPart(url: string, fn: string): Part | undefined {
  if (url.includes('/xstate/') || pkg(url, 'lifecycle/')) return PARTS[3];
  if (url.includes('better-sqlite3') || pkg(url, 'store/')) return PARTS[5];
  if (pkg(url, 'http/body.') || pkg(url, 'message.') || pkg(url, 'data.')) return PARTS[0];
  if (pkg(url, 'schema.')) return PARTS[0];
  if (pkg(url, 'http/respond.') || pkg(url, 'answer.')) return PARTS[6];
  if (pkg(url, 'http/') || pkg(url, 'observe/')) return PARTS[1];
  if (pkg(url, 'token.') || (pkg(url, 'registry/registry.') && /find|token/i.test(fn)))
    return PARTS[2];
  if (pkg(url, '')) return PARTS[4];
  return undefined;
}

function partOf(node: ProfileNode, parents: Map<number, ProfileNode>): Part | 'idle' {
  const { functionName: fn, url } = node.callFrame;
  if (fn === '(idle)') return 'idle';
  if (fn === '(garbage collector)') return 'GC';
  if (url === '' && (fn === 'parse' || fn === 'JSONParse')) return PARTS[0];
  if (url === '' && (fn === 'stringify' || fn === 'JSONStringify')) return PARTS[6];
  if (
    /^node:(_http|http|net|stream|internal\/(http|streams|stream_base|net|timers|process\/task_queues))/.test(
      url,
    ) ||
    url.startsWith('node:internal/http')
  )
    return PARTS[7];
  const own = ownPart(url, fn);
  if (own) return own;
  // Natives, node internals and other dependencies count for the nearest frame of ours.
  for (let p = parents.get(node.id); p; p = parents.get(p.id)) {
    const { url: pu, functionName: pf } = p.callFrame;
    if (/^node:(_http|http|net|stream)/.test(pu) || pu.startsWith('node:internal/http'))
      return PARTS[7];
    const part = ownPart(pu, pf);
    if (part) return part;
  }
  if (fn === '(program)') return 'other';
  return url.startsWith('node:') || url === '' ? PARTS[7] : 'other';
}

// ---- child: one server ------------------------------------------------------------------------

async function child(target: Target, pending: number): Promise<void> {
  let url: string;
  const tokens: string[] = [];
  let dir: string | undefined;
  if (target === 'floor') {
    const server = createServer(floorHandler);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  } else {
    // The sources through tsx, or a compiled copy (`--dist dist`): tsx adds a `__name` call to
    // every named closure, which the build does not.
    const base =
      values.dist === undefined
        ? new URL('../src/', import.meta.url)
        : pathToFileURL(`${resolve(values.dist)}/`);
    const { createCallbackEngine } = (await import(new URL('index.js', base).href)) as typeof Core;
    const { serve } = (await import(new URL('http/index.js', base).href)) as typeof Http;
    let store;
    if (target === 'sqlite') {
      const { sqliteStore } = (await import(
        new URL('store/sqlite.js', base).href
      )) as typeof Sqlite;
      dir = mkdtempSync(join(tmpdir(), 'cbe-profile-'));
      store = sqliteStore({ path: join(dir, 'p.db'), synchronous: 'normal' });
    }
    const engine = createCallbackEngine({
      node: 'bench',
      secrets: ['bench-secret-0123456789'],
      timeout: false,
      retention: true,
      ...(store ? { store } : {}),
    });
    engine.anchor('job', { next: { progress: () => undefined } });
    await engine.ready();
    for (let i = 0; i < pending; i += 100)
      for (const cb of await Promise.all(
        Array.from({ length: Math.min(100, pending - i) }, (_, j) =>
          engine.create('job', { data: { i: i + j } }),
        ),
      ))
        tokens.push(cb.token);
    url = (await serve(engine)).url;
  }
  const session = new Session();
  session.connect();
  let gc: GCProfiler | undefined;
  let cpu0: NodeJS.CpuUsage | undefined;
  process.on('message', (m: string) => {
    void (async () => {
      if (m === 'start') {
        await session.post('Profiler.enable');
        await session.post('Profiler.setSamplingInterval', { interval: 100 });
        await session.post('Profiler.start');
        gc = new GCProfiler();
        gc.start();
        cpu0 = process.cpuUsage();
        process.send!('started');
      } else if (m === 'stop') {
        const cpu = process.cpuUsage(cpu0);
        const { profile } = (await session.post('Profiler.stop')) as {
          profile: { nodes: ProfileNode[]; samples: number[]; timeDeltas: number[] };
        };
        const stats = gc!.stop();
        const parents = new Map<number, ProfileNode>();
        const byId = new Map<number, ProfileNode>();
        for (const n of profile.nodes) byId.set(n.id, n);
        for (const n of profile.nodes) for (const c of n.children ?? []) parents.set(c, n);
        const us: Record<string, number> = {};
        const byFn = new Map<string, number>();
        for (let i = 0; i < profile.samples.length; i++) {
          const node = byId.get(profile.samples[i]!)!;
          const part = partOf(node, parents);
          us[part] = (us[part] ?? 0) + (profile.timeDeltas[i] ?? 0);
          const key = `${part.slice(0, 12)} ${node.callFrame.functionName} ${node.callFrame.url.replace(/^.*\/(src|node_modules)\//, '$1/')}`;
          byFn.set(key, (byFn.get(key) ?? 0) + (profile.timeDeltas[i] ?? 0));
        }
        if (process.env.PROFILE_TOP)
          console.log(
            [...byFn]
              .sort((a, b) => b[1] - a[1])
              .slice(0, Number(process.env.PROFILE_TOP))
              .map(([k, v]) => `${(v / 1000).toFixed(0).padStart(6)} ms  ${k}`)
              .join('\n'),
          );
        let allocated = 0;
        let gcCount = 0;
        let gcUs = 0;
        let prevAfter: number | undefined;
        for (const s of (stats?.statistics ?? []) as {
          cost: number;
          beforeGC: { heapStatistics: { usedHeapSize: number } };
          afterGC: { heapStatistics: { usedHeapSize: number } };
        }[]) {
          gcCount++;
          gcUs += s.cost;
          const before = s.beforeGC.heapStatistics.usedHeapSize;
          if (prevAfter !== undefined && before > prevAfter) allocated += before - prevAfter;
          prevAfter = s.afterGC.heapStatistics.usedHeapSize;
        }
        process.send!({ us, cpu, gcCount, gcUs, allocated });
      } else if (m === 'exit') {
        if (dir) rmSync(dir, { recursive: true, force: true });
        process.exit(0);
      }
    })();
  });
  process.send!({ url, tokens });
}

// ---- parent -----------------------------------------------------------------------------------

interface Started {
  target: Target;
  proc: ChildProcess;
  url: string;
  tokens: string[];
}

function start(target: Target): Promise<Started> {
  const proc = fork(
    fileURLToPath(import.meta.url),
    [
      '--child',
      target,
      '--pending',
      values.pending,
      ...(values.dist === undefined ? [] : ['--dist', values.dist]),
    ],
    {
      execArgv: ['--import', 'tsx'],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    },
  );
  return new Promise((resolve, reject) => {
    proc.once('message', (m: { url: string; tokens: string[] }) => resolve({ target, proc, ...m }));
    proc.once('exit', (code) => reject(new Error(`${target} server exited with ${code}`)));
  });
}

const ask = <T>(s: Started, m: string): Promise<T> =>
  new Promise((resolve) => {
    s.proc.once('message', (r: T) => resolve(r));
    s.proc.send(m);
  });

function bodies(tokens: string[]): string[] {
  const list = tokens.length > 0 ? tokens : Array.from({ length: 1000 }, (_, i) => `t${i}`);
  return list.map((token, i) =>
    JSON.stringify({
      type: 'CALLBACK',
      callbackToken: token,
      callbackStatus: 'progress',
      callbackData: { pct: i % 100 },
    }),
  );
}

async function load(s: Started, seconds: number): Promise<number> {
  const b = bodies(s.tokens);
  const r = await autocannon({
    url: `${s.url}/callbacks`,
    method: 'POST',
    connections: Number(values.connections),
    duration: seconds,
    headers: { 'content-type': 'application/json' },
    requests: b.map((body) => ({ method: 'POST' as const, path: '/callbacks', body })),
  });
  if (r.non2xx > 0 || r.errors > 0)
    throw new Error(`${s.target}: ${r.non2xx} non-2xx, ${r.errors} errors`);
  return r.requests.total;
}

/**
 * Attaches `strace -c` to the server while `during()` runs; returns the syscall counts by name
 * (from strace's summary) and what `during` returned.
 */
async function strace<T>(pid: number, during: () => Promise<T>): Promise<[Map<string, number>, T]> {
  const out = join(mkdtempSync(join(tmpdir(), 'cbe-strace-')), 'summary');
  const p = spawn('strace', ['-c', '-f', '-o', out, '-p', String(pid)], { stdio: 'ignore' });
  await new Promise((r) => setTimeout(r, 1000)); // attached
  const result = await during();
  p.kill('SIGINT');
  await new Promise((r) => p.once('exit', r));
  const counts = new Map<string, number>();
  for (const line of readFileSync(out, 'utf8').split('\n')) {
    const m = /^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$/.exec(line);
    if (m && m[2] !== 'total') counts.set(m[2]!, Number(m[1]));
  }
  rmSync(dirname(out), { recursive: true, force: true });
  return [counts, result];
}

interface Account {
  target: Target;
  requests: number;
  rps: number;
  cpuUs: number;
  sysUs: number;
  parts: Record<string, number>;
  gcPer1k: number;
  gcUsPerReq: number;
  allocatedBytesPerReq: number;
  /** Per response: write syscalls, read syscalls, epoll waits (strace, main thread). */
  syscalls: { writes: number; reads: number; epoll: number };
}

async function measure(target: Target): Promise<Account> {
  const s = await start(target);
  const seconds = Number(values.duration);
  await load(s, 2); // warm-up
  await ask(s, 'start');
  const t0 = performance.now();
  const requests = await load(s, seconds);
  const wall = (performance.now() - t0) / 1000;
  const r = await ask<{
    us: Record<string, number>;
    cpu: NodeJS.CpuUsage;
    gcCount: number;
    gcUs: number;
    allocated: number;
  }>(s, 'stop');
  let syscalls = { writes: NaN, reads: NaN, epoll: NaN };
  const st = Number(values.strace);
  if (st > 0) {
    const [calls, n] = await strace(s.proc.pid!, () => load(s, st));
    const sum = (...names: string[]) => names.reduce((a, k) => a + (calls.get(k) ?? 0), 0);
    syscalls = {
      writes: sum('writev', 'write', 'sendmsg') / n,
      reads: sum('read', 'readv', 'recvmsg') / n,
      epoll: sum('epoll_wait', 'epoll_pwait') / n,
    };
  }
  s.proc.send('exit');
  await new Promise((resolve) => s.proc.once('exit', resolve));
  const parts: Record<string, number> = {};
  for (const p of PARTS) parts[p] = (r.us[p] ?? 0) / requests;
  return {
    target,
    requests,
    rps: requests / wall,
    cpuUs: (r.cpu.user + r.cpu.system) / requests,
    sysUs: r.cpu.system / requests,
    parts,
    gcPer1k: (r.gcCount / requests) * 1000,
    gcUsPerReq: r.gcUs / requests,
    allocatedBytesPerReq: r.allocated / requests,
    syscalls,
  };
}

if (values.child) {
  await child(values.child as Target, Number(values.pending));
} else {
  const targets = values.targets.split(',') as Target[];
  const accounts: Account[] = [];
  for (const t of targets) {
    const a = await measure(t);
    accounts.push(a);
    console.log(
      `${t}: ${Math.round(a.rps).toLocaleString('en-US')} req/s, ${a.cpuUs.toFixed(1)} µs CPU/req`,
    );
  }
  const floor = accounts.find((a) => a.target === 'floor');
  const head = `| part (µs of CPU per request, from profiler samples) | ${accounts.map((a) => a.target).join(' | ')} |`;
  const built =
    values.dist === undefined
      ? 'Sources run through tsx.'
      : `The compiled package (\`${values.dist}\`).`;
  const lines = [
    `autocannon ${values.connections} connections, ${values.duration} s measured per target after a 2 s warm-up, ${values.pending} pending callbacks, POST /callbacks progress; SQLite with \`synchronous: 'normal'\`. ${built} The profiler samples wall time: a sample in \`writev\` includes time the server thread waits while the kernel hands the response to the client (on 2 cores the client often runs then), so the process CPU row, not the sum of samples, is the CPU.`,
    '',
    head,
    `|---|${accounts.map(() => '---:').join('|')}|`,
    ...PARTS.map((p) => `| ${p} | ${accounts.map((a) => a.parts[p]!.toFixed(1)).join(' | ')} |`),
    `| **sum of samples** | ${accounts
      .map((a) =>
        Object.values(a.parts)
          .reduce((x, y) => x + y, 0)
          .toFixed(1),
      )
      .join(' | ')} |`,
    `| process CPU per request (user + kernel) | ${accounts.map((a) => a.cpuUs.toFixed(1)).join(' | ')} |`,
    `| of which kernel | ${accounts.map((a) => a.sysUs.toFixed(1)).join(' | ')} |`,
    `| syscalls per response: writes / reads / epoll waits (strace -c, separate window) | ${accounts.map((a) => `${a.syscalls.writes.toFixed(2)} / ${a.syscalls.reads.toFixed(2)} / ${a.syscalls.epoll.toFixed(2)}`).join(' | ')} |`,
    `| GCs per 1,000 requests / GC µs per request | ${accounts.map((a) => `${a.gcPer1k.toFixed(1)} / ${a.gcUsPerReq.toFixed(1)}`).join(' | ')} |`,
    `| bytes allocated per request (young-generation growth) | ${accounts.map((a) => Math.round(a.allocatedBytesPerReq).toLocaleString('en-US')).join(' | ')} |`,
    `| requests per second (while profiled) | ${accounts.map((a) => Math.round(a.rps).toLocaleString('en-US')).join(' | ')} |`,
    ...(floor
      ? [
          `| ratio to the floor (req/s) | ${accounts.map((a) => (a.rps / floor.rps).toFixed(2)).join(' | ')} |`,
        ]
      : []),
  ];
  console.log(lines.join('\n'));
  const tag = values.label === '' ? '' : `-${values.label}`;
  writeResults('bench/results-profile-http.json', `profile-http${tag}`, accounts);
  writeResultsSection(
    `profile-http${tag}`,
    `Where the CPU of one HTTP report goes (issue 15)${values.label === '' ? '' : `: ${values.label}`}`,
    'bench/profile-http.ts',
    lines,
  );
}
