/**
 * The crash harness, for the crash tests and the crash demo (`npm start -- --crash`): an
 * engine in a child process on a SQLite file (crash-server.ts), spawned and SIGKILLed, and
 * {@link CrashLoad}, concurrent HTTP clients that create callbacks and send progress reports,
 * remember each only once it was acknowledged (HTTP 200), and check after a restart on the
 * same file that every acknowledged create and report is there.
 *
 * @module
 */

import { createInterface } from 'node:readline';
import { spawn, type ChildProcess } from 'node:child_process';
import { Agent, request } from 'node:http';
import { fileURLToPath } from 'node:url';
import { nodeArgs } from './spawn.js';

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

/** The crash server module, run in each child. */
export const CRASH_ENTRY = fileURLToPath(new URL('./crash-server.ts', import.meta.url));

/**
 * Spawns a crash server: `node` itself (never a wrapper such as the tsx CLI, whose kill
 * would leave the engine running).
 *
 * @param path - the SQLite file.
 * @param entry - the module to run. @default {@link CRASH_ENTRY}
 */
export function spawnCrashServer(
  path: string,
  entry = CRASH_ENTRY,
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
