/**
 * Drives journal-child.ts processes from a test: spawn (node itself, never a wrapper), wait
 * for READY, talk HTTP, SIGKILL / SIGSTOP / SIGTERM, and read the side file of step runs.
 */

import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { HistoryEntry } from '../../src/index.js';
import type { StepRun } from './journal-child.js';

const CHILD = fileURLToPath(new URL('./journal-child.ts', import.meta.url));

/** A running child. */
export interface JournalChild {
  readonly proc: ChildProcess;
  readonly pid: number;
  readonly port: number;
  /** Resolves once the process is gone (with its exit code or signal). */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stderr(): string;
}

/** Where a child keeps its callbacks. */
export type ChildStore = { readonly sqlite: string } | { readonly pg: string };

/** Spawns a child and waits for READY (rejects if it exits first). */
export async function startChild(
  store: ChildStore,
  runs: string,
  options: { node?: string; closeTimeout?: string; ttl?: number; nats?: string } = {},
): Promise<JournalChild> {
  const args = [
    '--import',
    'tsx',
    CHILD,
    '--runs',
    runs,
    ...('sqlite' in store ? ['--sqlite', store.sqlite] : ['--pg', store.pg]),
    '--node',
    options.node ?? 'j1',
    ...(options.closeTimeout ? ['--close-timeout', options.closeTimeout] : []),
    ...(options.ttl ? ['--ttl', String(options.ttl)] : []),
    ...(options.nats ? ['--nats', options.nats] : []),
  ];
  const proc = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  proc.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    proc.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /READY (\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    void exited.then(({ code, signal }) =>
      reject(new Error(`child exited (${code ?? signal}) before READY: ${err.slice(-2000)}`)),
    );
  });
  return { proc, pid: proc.pid!, port, exited, stderr: () => err };
}

/** Whether a process with this pid exists. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Waits until a child is gone (it killed itself, or was killed); checks its pid is gone. */
export async function gone(child: JournalChild, timeoutMs = 15_000): Promise<void> {
  const timer = new Promise<never>((_, reject) =>
    setTimeout(() => reject(new Error(`pid ${child.pid} still alive`)), timeoutMs).unref(),
  );
  await Promise.race([child.exited, timer]);
  if (alive(child.pid)) throw new Error(`pid ${child.pid} still exists`);
}

/** SIGKILLs a child and waits until its pid is gone. */
export async function killChild(child: JournalChild): Promise<void> {
  if (alive(child.pid)) process.kill(child.pid, 'SIGKILL');
  await gone(child);
}

/** An HTTP call to a child: `{ status, body }`, or `{ status: 0 }` if the connection failed. */
export async function call(
  child: JournalChild | number,
  method: 'GET' | 'POST',
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
  timeoutMs = 30_000,
): Promise<{ status: number; body: Record<string, unknown> | undefined; outcome?: string | null }> {
  const port = typeof child === 'number' ? child : child.port;
  try {
    const res = await fetch(`http://127.0.0.1:${port}${path}`, {
      method,
      headers: { 'content-type': 'application/json', ...headers },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await res.text();
    return {
      status: res.status,
      body: text ? (JSON.parse(text) as Record<string, unknown>) : undefined,
      outcome: res.headers.get('callback-outcome'),
    };
  } catch {
    return { status: 0, body: undefined };
  }
}

/** A report to a callback through the dispatch route. */
export function reportTo(
  child: JournalChild | number,
  token: string,
  status: string,
  data: Record<string, unknown>,
  dedupKey?: string,
  timeoutMs?: number,
) {
  return call(
    child,
    'POST',
    '/callbacks',
    {
      type: 'CALLBACK',
      callbackToken: token,
      callbackStatus: status,
      callbackData: data,
      ...(dedupKey !== undefined ? { dedupKey } : {}),
    },
    {},
    timeoutMs,
  );
}

/** Every history entry of a callback, read through a child. */
export async function historyOf(child: JournalChild, id: string): Promise<HistoryEntry[]> {
  const r = await call(child, 'GET', `/history/${encodeURIComponent(id)}`);
  if (r.status !== 200) throw new Error(`history of ${id}: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body as unknown as HistoryEntry[];
}

/** Every step run the side file recorded. */
export function runsIn(file: string): StepRun[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.length > 0)
    .map((l) => JSON.parse(l) as StepRun);
}

/** Runs of one callback's step (for one report's `seq`, if given). */
export function runsOf(file: string, id: string, status: string, seq?: number): StepRun[] {
  return runsIn(file).filter(
    (r) => r.id === id && r.status === status && (seq === undefined || r.seq === seq),
  );
}

/** Polls `fn` until it returns a value that is not `undefined` (real time; bounded). */
export async function eventually<T>(
  fn: () => Promise<T | undefined>,
  what: string,
  timeoutMs = 20_000,
): Promise<T> {
  const until = performance.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (performance.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
