/**
 * The crash demo (`npm start -- --crash`): the engine runs in a child process
 * on a SQLite file; concurrent HTTP clients create callbacks and send progress
 * reports, each remembered only once it was acknowledged (HTTP 200); the child
 * is SIGKILLed mid-run and restarted on the same file, and every acknowledged
 * create and report must be there. The same pieces drive the crash tests.
 *
 * @module
 */

import { createInterface } from 'node:readline';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** A running crash-server child. */
export interface CrashChild {
  readonly child: ChildProcess;
  readonly pid: number;
  /** Resolves at `OPENING` (the engine is about to open its store). */
  readonly opening: Promise<void>;
  /** Resolves at `READY`; rejects if the child exits first. */
  readonly ready: Promise<CrashReady>;
  /** Resolves when the process is gone. */
  readonly exited: Promise<void>;
  /** Whether `READY` was printed. */
  isReady(): boolean;
}

/** What a child reports when ready. */
export interface CrashReady {
  readonly port: number;
  /** From spawn to the `READY` line (process start, module loading, recovery), ms. */
  readonly spawnMs: number;
  /** The engine's own `ready()` (store opened, counters restored), ms. */
  readonly readyMs: number;
  /** Active callbacks recovered. */
  readonly active: number;
}

const FROM_SOURCE = import.meta.url.endsWith('.ts');

/** How to run a module in a fresh Node: through tsx when running from source. */
export function nodeArgs(file: string): string[] {
  if (!file.endsWith('.ts')) return [file];
  let tsx = 'tsx';
  try {
    tsx = import.meta.resolve('tsx');
  } catch {
    // Resolved from the working directory instead.
  }
  return ['--import', tsx, file];
}

/**
 * Spawns a crash server: `node` itself (never a wrapper such as the tsx CLI, whose kill
 * would leave the engine running).
 *
 * @param path - the SQLite file.
 * @param entry - the module to run; the demo's crash server by default.
 */
export function spawnCrashServer(
  path: string,
  entry = fileURLToPath(new URL(`./crash-server.${FROM_SOURCE ? 'ts' : 'js'}`, import.meta.url)),
  extraArgs: readonly string[] = [],
): CrashChild {
  const started = performance.now();
  const child = spawn(process.execPath, [...nodeArgs(entry), '--db', path, ...extraArgs], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  if (child.pid === undefined) throw new Error(`could not spawn ${entry}`);
  let ready = false;
  let stderr = '';
  let onOpening!: () => void;
  let onReady!: (r: CrashReady) => void;
  let onFail!: (e: Error) => void;
  const opening = new Promise<void>((resolve) => (onOpening = resolve));
  const readyP = new Promise<CrashReady>((resolve, reject) => {
    onReady = resolve;
    onFail = reject;
  });
  readyP.catch(() => {});
  const exited = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      onFail(new Error(`crash server exited (${signal ?? code}) before READY\n${stderr}`));
      resolve();
    });
  });
  createInterface({ input: child.stdout }).on('line', (line) => {
    if (line === 'OPENING') onOpening();
    const m = /^READY (\d+) ([\d.]+) (\d+)$/.exec(line);
    if (m) {
      ready = true;
      onReady({
        port: Number(m[1]),
        spawnMs: performance.now() - started,
        readyMs: Number(m[2]),
        active: Number(m[3]),
      });
    }
  });
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  return { child, pid: child.pid, opening, ready: readyP, exited, isReady: () => ready };
}

/**
 * SIGKILLs a child and resolves once the process is gone (its pid no longer exists).
 * @throws if the pid still answers after the exit event.
 */
export async function killHard(c: CrashChild): Promise<void> {
  if (c.child.exitCode === null && c.child.signalCode === null) c.child.kill('SIGKILL');
  await c.exited;
  try {
    process.kill(c.pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return;
    throw err;
  }
  throw new Error(`process ${c.pid} still exists after SIGKILL`);
}

type Reply = { status: number; body: Record<string, unknown> | undefined };

/**
 * Concurrent HTTP clients creating callbacks and sending progress reports with unique keys,
 * remembering only what was acknowledged, and checking it against an engine.
 */
export class CrashLoad {
  /** Acknowledged creates: token → keys of its acknowledged reports. */
  readonly acked = new Map<string, Set<string>>();
  readonly #tokens: string[] = [];
  ackedReports = 0;
  /** Requests that got no answer (the engine died under them) or a non-2xx one. */
  unanswered = 0;
  #key = 0;
  #agent = new Agent({ keepAlive: true, maxSockets: 256 });

  #send(port: number, method: string, path: string, body?: unknown): Promise<Reply | undefined> {
    return new Promise((resolve) => {
      const text = body === undefined ? '' : JSON.stringify(body);
      const headers: Record<string, string | number> = {
        'content-length': Buffer.byteLength(text),
      };
      if (body !== undefined) headers['content-type'] = 'application/json';
      const req = request(
        { host: '127.0.0.1', port, method, path, agent: this.#agent, headers },
        (res) => {
          let raw = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (raw += c));
          res.on('end', () => {
            let parsed: Record<string, unknown> | undefined;
            try {
              parsed = JSON.parse(raw) as Record<string, unknown>;
            } catch {
              parsed = undefined;
            }
            resolve({ status: res.statusCode ?? 0, body: parsed });
          });
          res.on('error', () => resolve(undefined));
        },
      );
      req.on('error', () => resolve(undefined));
      req.end(text);
    });
  }

  /**
   * Runs `clients` loops against the engine on `port` until `stop()` resolves or the engine
   * dies (a client stops at its first unanswered request).
   *
   * @returns resolves when every client stopped.
   */
  run(port: number, clients: number, stop: Promise<void>): Promise<void> {
    let stopped = false;
    void stop.then(() => (stopped = true));
    const client = async (c: number) => {
      while (!stopped) {
        const known = this.#tokens.length;
        if (known === 0 || Math.random() < 0.2) {
          const r = await this.#send(port, 'POST', '/create', { client: c, n: this.#key++ });
          const token = r?.status === 200 ? r.body?.token : undefined;
          if (typeof token !== 'string') {
            this.unanswered++;
            return;
          }
          this.acked.set(token, new Set());
          this.#tokens.push(token);
          continue;
        }
        const token = this.#tokens[Math.floor(Math.random() * known)]!;
        const key = `k${this.#key++}`;
        const data: Record<string, unknown> = { [key]: c };
        if (Math.random() < 0.01) data.slowMs = 30; // a step still running when the kill lands
        const r = await this.#send(
          port,
          'POST',
          `/callbacks/${encodeURIComponent(token)}/progress`,
          data,
        );
        if (r?.status !== 200 || r.body?.status !== 'progress') {
          this.unanswered++;
          return;
        }
        this.acked.get(token)!.add(key);
        this.ackedReports++;
      }
    };
    return Promise.all(Array.from({ length: clients }, (_, c) => client(c))).then(() => {
      this.#agent.destroy();
      this.#agent = new Agent({ keepAlive: true, maxSockets: 256 });
    });
  }

  /**
   * Reads every acknowledged callback back (`GET /callbacks/{token}`).
   *
   * @param tokens - which ones; all acknowledged creates by default.
   * @returns how many were checked, creates that are gone, and acknowledged report keys missing.
   */
  async verify(
    port: number,
    tokens: Iterable<string> = this.acked.keys(),
  ): Promise<{ callbacks: number; reports: number; lostCreates: number; lostReports: number }> {
    const list = [...tokens];
    let next = 0;
    let reports = 0;
    let lostCreates = 0;
    let lostReports = 0;
    const worker = async () => {
      while (next < list.length) {
        const token = list[next++]!;
        const keys = this.acked.get(token) ?? new Set<string>();
        reports += keys.size;
        const r = await this.#send(port, 'GET', `/callbacks/${encodeURIComponent(token)}`);
        if (r === undefined) throw new Error('the engine did not answer a read');
        const data = r.body?.data as Record<string, unknown> | undefined;
        if (r.status !== 200 || r.body?.status === 'notFound' || !data) {
          lostCreates++;
          lostReports += keys.size;
          continue;
        }
        for (const k of keys) if (!(k in data)) lostReports++;
      }
    };
    await Promise.all(Array.from({ length: 16 }, worker));
    this.#agent.destroy();
    this.#agent = new Agent({ keepAlive: true, maxSockets: 256 });
    return { callbacks: list.length, reports, lostCreates, lostReports };
  }
}

/** Options of {@link runCrashDemo}. */
export interface CrashDemoOptions {
  /** Concurrent HTTP clients. @default 32 */
  clients?: number;
  /** Load time before the kill, ms. @default 3000 */
  loadMs?: number;
  /** Where the output goes. @default stdout */
  log?: (line: string) => void;
}

const fmt = (n: number) => n.toLocaleString('en-US');

/**
 * Runs the crash demo.
 *
 * @returns the number of acknowledged creates and reports missing after the restart (must be 0).
 */
export async function runCrashDemo(options: CrashDemoOptions = {}): Promise<number> {
  const clients = options.clients ?? 32;
  const loadMs = options.loadMs ?? 3000;
  const log = options.log ?? ((line: string) => process.stdout.write(`${line}\n`));
  const dir = mkdtempSync(join(tmpdir(), 'callback-engine-crash-'));
  const path = join(dir, 'callbacks.db');
  const load = new CrashLoad();
  let second: CrashChild | undefined;
  try {
    log(`callback-engine crash demo: engine in a child process on SQLite ${path}`);
    const first = spawnCrashServer(path);
    const r1 = await first.ready;
    log(
      `engine pid ${first.pid} ready in ${fmt(Math.round(r1.spawnMs))} ms; ${clients} HTTP clients creating callbacks and sending progress reports`,
    );
    const killAt = new Promise<void>((resolve) => setTimeout(resolve, loadMs));
    const running = load.run(r1.port, clients, new Promise<void>(() => {}));
    await killAt;
    await killHard(first);
    await running;
    log(
      `SIGKILL pid ${first.pid} after ${(loadMs / 1000).toFixed(1)} s under load: ${fmt(load.acked.size)} creates and ${fmt(load.ackedReports)} progress reports acknowledged, ${fmt(load.unanswered)} requests cut off unanswered`,
    );

    second = spawnCrashServer(path);
    const r2 = await second.ready;
    log(
      `restarted on the same file: pid ${second.pid} ready ${fmt(Math.round(r2.spawnMs))} ms after spawn (engine.ready() ${r2.readyMs.toFixed(1)} ms, ${fmt(r2.active)} active callbacks recovered)`,
    );
    const check = await load.verify(r2.port);
    const lost = check.lostCreates + check.lostReports;
    log(
      `checked ${fmt(check.callbacks)} acknowledged creates and ${fmt(check.reports)} acknowledged reports: ${fmt(check.lostCreates)} creates and ${fmt(check.lostReports)} reports missing`,
    );
    log(`lost updates: ${lost}`);
    return lost;
  } finally {
    if (second && second.child.exitCode === null && second.child.signalCode === null) {
      second.child.kill('SIGTERM');
      await second.exited;
    }
    rmSync(dir, { recursive: true, force: true });
  }
}
