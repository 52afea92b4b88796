/**
 * A cluster of engine processes on PostgreSQL, for the cluster demo
 * (`npm start -- --replicas N`) and the cluster tests: spawning replicas
 * (src/demo/replica-server.ts), killing, stopping and terminating them, and
 * {@link ClusterLoad}, a load generator that sends ordered `progress` reports
 * round-robin across the live replicas and checks afterwards, through the
 * replicas, that every acknowledged report was applied exactly once and in order.
 *
 * @module
 */

import { createInterface } from 'node:readline';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chownSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { connect, createServer as createNetServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { nodeArgs } from './crash.js';

const FROM_SOURCE = import.meta.url.endsWith('.ts');
/** The replica server module, run in each child. */
export const REPLICA_ENTRY = fileURLToPath(
  new URL(`./replica-server.${FROM_SOURCE ? 'ts' : 'js'}`, import.meta.url),
);

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Options of {@link spawnReplica}. */
export interface SpawnReplicaOptions {
  /** The cluster's schema. */
  schema: string;
  /** The replica's node name. */
  node: string;
  /** PostgreSQL connection string. @default the replica's default */
  pg?: string;
  /** NATS URL, or `'none'`. @default the replica's default */
  nats?: string;
  /** Lease TTL, ms. */
  leaseTtl?: number;
  /** Lease renewal interval, ms. */
  renew?: number;
  /** Forward timeout, ms. */
  forwardTimeout?: number;
  /** How long to wait for `READY`, ms. @default 30000 */
  readyTimeout?: number;
  /** The module to run. @default {@link REPLICA_ENTRY} */
  entry?: string;
}

/** A running replica process. */
export interface Replica {
  readonly node: string;
  readonly port: number;
  readonly pid: number;
  readonly child: ChildProcess;
  /** Sends a signal to the process (nothing if it is gone). */
  kill(signal: NodeJS.Signals): void;
  /** Resolves with the exit code (`null` when a signal ended it) once the process is gone. */
  readonly exited: Promise<number | null>;
  /** Whether the process has exited. */
  isGone(): boolean;
  /** Everything it wrote to stderr so far (for diagnostics). */
  stderr(): string;
  /** From spawn to `READY`, ms. */
  readonly spawnMs: number;
}

/** Every replica spawned by this process and not yet gone, so a test can clean up. */
const spawned = new Set<Replica>();

/**
 * Spawns a replica: `node` itself (never a wrapper such as the tsx CLI, whose kill would leave
 * the engine running), and waits for its `READY` line.
 *
 * @throws if the process exits or stays silent past `readyTimeout` before `READY` (it is
 *   SIGKILLed then); the message carries its stderr.
 */
export async function spawnReplica(options: SpawnReplicaOptions): Promise<Replica> {
  const args = ['--schema', options.schema, '--node', options.node];
  if (options.pg !== undefined) args.push('--pg', options.pg);
  if (options.nats !== undefined) args.push('--nats', options.nats);
  if (options.leaseTtl !== undefined) args.push('--lease-ttl', String(options.leaseTtl));
  if (options.renew !== undefined) args.push('--renew', String(options.renew));
  if (options.forwardTimeout !== undefined)
    args.push('--forward-timeout', String(options.forwardTimeout));
  const started = performance.now();
  const child = spawn(process.execPath, [...nodeArgs(options.entry ?? REPLICA_ENTRY), ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const pid = child.pid;
  if (pid === undefined) throw new Error(`could not spawn replica ${options.node}`);
  let stderr = '';
  let gone = false;
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
    if (stderr.length > 200_000) stderr = stderr.slice(-100_000);
  });
  const exited = new Promise<number | null>((resolve) => {
    child.once('exit', (code) => {
      gone = true;
      resolve(code);
    });
  });
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(
        new Error(
          `replica ${options.node} (pid ${pid}) not READY after ${options.readyTimeout ?? 30_000} ms\n${stderr}`,
        ),
      );
    }, options.readyTimeout ?? 30_000);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(
        new Error(
          `replica ${options.node} (pid ${pid}) exited (${child.signalCode ?? code}) before READY\n${stderr}`,
        ),
      );
    });
    createInterface({ input: child.stdout }).on('line', (line) => {
      const m = /^READY (\d+) (\d+)$/.exec(line);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
  });
  const replica: Replica = {
    node: options.node,
    port,
    pid,
    child,
    kill(signal) {
      if (!gone) {
        try {
          process.kill(pid, signal);
        } catch {
          // Already gone.
        }
      }
    },
    exited,
    isGone: () => gone,
    stderr: () => stderr,
    spawnMs: performance.now() - started,
  };
  spawned.add(replica);
  void exited.then(() => spawned.delete(replica));
  return replica;
}

/** Whether something listens at a URL's host and port (a service the cluster needs). */
export function listening(url: string, defaultPort: number): Promise<boolean> {
  const u = new URL(url);
  return new Promise((resolve) => {
    const socket = connect({ host: u.hostname, port: Number(u.port || defaultPort) });
    socket.setTimeout(1000);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
    socket.once('timeout', () => {
      socket.destroy();
      resolve(false);
    });
  });
}

/** Whether a pid still exists (`kill(pid, 0)`). */
export function pidExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

/**
 * SIGKILLs a replica and resolves once it is gone.
 *
 * @returns when the signal was sent (`performance.now()`).
 * @throws if its pid still exists after the exit event.
 */
export async function sigkill(r: Replica): Promise<number> {
  const at = performance.now();
  r.kill('SIGKILL');
  await r.exited;
  if (pidExists(r.pid))
    throw new Error(`replica ${r.node} (pid ${r.pid}) still exists after SIGKILL`);
  return at;
}

/** Freezes a replica (SIGSTOP): the process lives on but runs nothing: a zombie owner. @returns when. */
export function sigstop(r: Replica): number {
  const at = performance.now();
  r.kill('SIGSTOP');
  return at;
}

/** Thaws a replica stopped by {@link sigstop}. @returns when. */
export function sigcont(r: Replica): number {
  const at = performance.now();
  r.kill('SIGCONT');
  return at;
}

/**
 * SIGTERMs a replica (graceful close: hands its shards over) and waits for it to exit.
 *
 * @param timeoutMs - SIGKILL after this long. @default 15000
 * @returns its exit code (0 after a clean close), and when the signal was sent.
 * @throws if it had to be SIGKILLed.
 */
export async function terminate(
  r: Replica,
  timeoutMs = 15_000,
): Promise<{ code: number | null; at: number }> {
  const at = performance.now();
  r.kill('SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<'late'>(
    (resolve) => (timer = setTimeout(() => resolve('late'), timeoutMs)),
  );
  const code = await Promise.race([r.exited, late]);
  clearTimeout(timer);
  if (code === 'late') {
    r.kill('SIGKILL');
    await r.exited;
    throw new Error(
      `replica ${r.node} (pid ${r.pid}) did not exit within ${timeoutMs} ms of SIGTERM\n${r.stderr()}`,
    );
  }
  return { code, at };
}

/** SIGKILLs every replica this process spawned that is still running (test cleanup). */
export async function killAllReplicas(): Promise<void> {
  const all = [...spawned];
  for (const r of all) r.kill('SIGKILL');
  await Promise.all(all.map((r) => r.exited));
}

/** Where the load sends: a live replica. */
export interface ReplicaTarget {
  readonly node: string;
  readonly port: number;
}

/** Options of {@link ClusterLoad}. */
export interface ClusterLoadOptions {
  /** Callbacks to create. */
  callbacks: number;
  /** `progress` reports per callback (`seq` 0..reports-1, in order). */
  reports: number;
  /** Callbacks reporting at once (each one report at a time). @default 32 */
  concurrency?: number;
  /** Wait between two reports of one callback, ms (stretches the load over time). @default 0 */
  paceMs?: number;
  /** A request unanswered this long is given up and retried on the next replica, ms. @default 3000 */
  requestTimeoutMs?: number;
  /** A report unacknowledged this long after its first attempt is given up, ms. @default 30000 */
  giveUpMs?: number;
}

/** How one attempt to send a report ended. */
export type AttemptResult =
  /** 200: applied (or replayed, for a duplicate key) by the cluster. */
  | 'ok'
  /** 202 `callback-outcome: queued`: accepted durably, applied later by the owner. */
  | 'queued'
  /** 503 (store unavailable, engine closed, ...): retried. */
  | 'unavailable'
  /** Another 5xx: retried, and counted as an error. */
  | 'server-error'
  /** No answer: connection refused, reset or cut: retried. */
  | 'network'
  /** No answer within `requestTimeoutMs`: retried. */
  | 'timeout'
  /** A 4xx: not retried; the report counts as not acknowledged. */
  | 'rejected';

/** One attempt to send a report, as the load saw it. */
export interface Attempt {
  readonly token: string;
  readonly seq: number;
  readonly node: string;
  /** `performance.now()` when it was sent and when it ended. */
  readonly start: number;
  readonly end: number;
  readonly result: AttemptResult;
  readonly status: number | undefined;
  /** The `callback-outcome` header, or the error body's code. */
  readonly detail: string | undefined;
}

/** An answer from a replica. */
export interface HttpReply {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: Record<string, unknown> | undefined;
}

/** What {@link ClusterLoad.verify} found. */
export interface VerifyResult {
  /** Callbacks checked. */
  readonly callbacks: number;
  /** Acknowledged reports (200 or 202). */
  readonly acknowledged: number;
  /** Acknowledged reports found in their callback's `seen`. */
  readonly present: number;
  /** Acknowledged reports missing from `seen`. */
  readonly lost: number;
  /** Extra occurrences of a `seq` in a `seen`. */
  readonly duplicated: number;
  /** Callbacks whose `seen` is not strictly increasing. */
  readonly outOfOrder: number;
  /** Reports applied that were never acknowledged (answers cut off, given up): allowed. */
  readonly unacknowledgedApplied: number;
  /** Callbacks no replica could read (`notFound` or no answer). */
  readonly unreadable: number;
  /** How long the wait for queued reports took, ms. */
  readonly settleMs: number;
  /** A few offending callbacks, for the failure message. */
  readonly examples: readonly string[];
}

/** The degraded window after a kill, stop or close, as the load saw it. */
export interface Recovery {
  /** Attempts answered by anything but a plain 200 (queued, failed) since `from`. */
  readonly degraded: number;
  /** Of those, failures (503, other 5xx, no answer, timeout). */
  readonly failures: number;
  /** From `from` to the end of the first 200 sent after the last degraded attempt started, ms (0 if none was degraded; undefined if none came). */
  readonly takeoverMs: number | undefined;
  /** From the first failure's start to the last failure's end since `from`, ms (0 if none). */
  readonly failureSpanMs: number;
  /** Longest time one report waited from its first attempt to its acknowledgement, among those with a failed attempt since `from`, ms. */
  readonly maxStallMs: number;
}

/** The deduplication key of report `seq` of a callback: `${hash of the token}:${seq}`. */
export function dedupKey(token: string, seq: number): string {
  return `${createHash('sha256').update(token).digest('hex').slice(0, 16)}:${seq}`;
}

const RETRYABLE: ReadonlySet<AttemptResult> = new Set([
  'unavailable',
  'server-error',
  'network',
  'timeout',
]);

/**
 * The cluster load: creates callbacks round-robin across the live replicas, then sends each
 * callback its `progress` reports `{ seq: k }` in order, the next one only after the previous
 * was acknowledged (200, or 202 queued), many callbacks at once; each report goes to the next
 * replica in round-robin order, and a failed attempt (503, no answer, timeout) is retried on
 * the next replica with the same deduplication key.
 */
export class ClusterLoad {
  readonly options: Required<ClusterLoadOptions>;
  /** Tokens of the created callbacks, in creation order. */
  readonly tokens: string[] = [];
  /** Acknowledged seqs per token. */
  readonly acked = new Map<string, number[]>();
  /** Every attempt, in the order they ended. */
  readonly attempts: Attempt[] = [];
  /** Acknowledgements per replica node. */
  readonly perReplica = new Map<string, number>();
  /** Acknowledged reports in total; of those answered 202 queued. */
  ackedReports = 0;
  queued = 0;
  /** Retried attempts; errors (5xx other than 503, 4xx, give-ups, create failures). */
  retries = 0;
  errors = 0;
  /** The first errors, for diagnostics. */
  readonly errorLog: string[] = [];
  #targets: ReplicaTarget[];
  #rr = 0;
  #agent = new Agent({ keepAlive: true, maxSockets: 64 });
  /** `performance.now()` when the load was made: the origin of {@link history} times. */
  readonly origin = performance.now();

  constructor(targets: readonly ReplicaTarget[], options: ClusterLoadOptions) {
    this.#targets = [...targets];
    this.options = {
      concurrency: 32,
      paceMs: 0,
      requestTimeoutMs: 3000,
      giveUpMs: 30_000,
      ...options,
    };
  }

  /** The replicas the load sends to now. */
  get targets(): readonly ReplicaTarget[] {
    return this.#targets;
  }

  /** Adds a replica to the round-robin (a join, or a thawed zombie). */
  add(target: ReplicaTarget): void {
    if (!this.#targets.some((t) => t.node === target.node)) this.#targets.push(target);
  }

  /** Stops sending to a replica (killed, stopped or closing). */
  remove(node: string): void {
    this.#targets = this.#targets.filter((t) => t.node !== node);
  }

  /** Reports in total (callbacks × reports). */
  get totalReports(): number {
    return this.options.callbacks * this.options.reports;
  }

  #next(): ReplicaTarget {
    if (this.#targets.length === 0) throw new Error('the cluster load has no replica to send to');
    return this.#targets[this.#rr++ % this.#targets.length]!;
  }

  #error(line: string): void {
    this.errors++;
    if (this.errorLog.length < 50) this.errorLog.push(line);
  }

  /**
   * One HTTP request to a replica.
   * @returns the reply, `'network'` when no answer came, `'timeout'` when none came in time.
   */
  send(
    port: number,
    method: string,
    path: string,
    body?: unknown,
    headers: Record<string, string> = {},
  ): Promise<HttpReply | 'network' | 'timeout'> {
    return new Promise((resolve) => {
      const text = body === undefined ? '' : JSON.stringify(body);
      const all: Record<string, string | number> = {
        ...headers,
        'content-length': Buffer.byteLength(text),
      };
      if (body !== undefined) all['content-type'] = 'application/json';
      let timedOut = false;
      const req = request(
        { host: '127.0.0.1', port, method, path, agent: this.#agent, headers: all },
        (res) => {
          let raw = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (raw += c));
          res.on('end', () => {
            clearTimeout(timer);
            let parsed: Record<string, unknown> | undefined;
            try {
              parsed = JSON.parse(raw) as Record<string, unknown>;
            } catch {
              parsed = undefined;
            }
            resolve({ status: res.statusCode ?? 0, headers: res.headers, body: parsed });
          });
          // Cut off mid-response (`end` never comes): no answer. After `end`, this changes nothing.
          const cut = () => {
            clearTimeout(timer);
            resolve(timedOut ? 'timeout' : 'network');
          };
          res.on('error', cut);
          res.on('close', cut);
        },
      );
      const timer = setTimeout(() => {
        timedOut = true;
        req.destroy(new Error('timeout'));
      }, this.options.requestTimeoutMs);
      req.on('error', () => {
        clearTimeout(timer);
        resolve(timedOut ? 'timeout' : 'network');
      });
      req.end(text);
    });
  }

  /**
   * Sends one report to one replica, once (no retry): `POST /callbacks/{token}/progress` with
   * data `{ seq }` and header `Callback-Dedup-Key`.
   */
  async sendReport(
    target: ReplicaTarget,
    token: string,
    seq: number,
    key: string = dedupKey(token, seq),
  ): Promise<Attempt> {
    const start = performance.now();
    const r = await this.send(
      target.port,
      'POST',
      `/callbacks/${encodeURIComponent(token)}/progress`,
      { seq },
      { 'callback-dedup-key': key },
    );
    const end = performance.now();
    let result: AttemptResult;
    let status: number | undefined;
    let detail: string | undefined;
    if (r === 'network' || r === 'timeout') result = r;
    else {
      status = r.status;
      const outcome = r.headers['callback-outcome'];
      detail = typeof outcome === 'string' ? outcome : (r.body?.code as string | undefined);
      if (r.status === 200) result = 'ok';
      else if (r.status === 202) result = 'queued';
      else if (r.status === 503) result = 'unavailable';
      else if (r.status >= 500) result = 'server-error';
      else result = 'rejected';
    }
    const attempt: Attempt = { token, seq, node: target.node, start, end, result, status, detail };
    this.attempts.push(attempt);
    return attempt;
  }

  /** Creates the callbacks, round-robin across the replicas, `concurrency` at once (retrying failures). */
  async create(): Promise<void> {
    let next = 0;
    const worker = async () => {
      while (next < this.options.callbacks) {
        const n = next++;
        const first = performance.now();
        for (let attempt = 0; ; attempt++) {
          const target = this.#next();
          const r = await this.send(target.port, 'POST', '/create', { n });
          const token = typeof r === 'object' && r.status === 200 ? r.body?.token : undefined;
          if (typeof token === 'string') {
            this.tokens.push(token);
            this.acked.set(token, []);
            break;
          }
          const what = typeof r === 'object' ? `${r.status} ${String(r.body?.code)}` : r;
          if (
            (typeof r === 'object' && r.status < 500) ||
            performance.now() - first > this.options.giveUpMs
          ) {
            this.#error(`create ${n} on ${target.node}: ${what} (given up)`);
            break;
          }
          if (typeof r === 'object' && r.status !== 503)
            this.#error(`create ${n} on ${target.node}: ${what}`);
          this.retries++;
          await sleep(Math.min(200, 10 * 2 ** attempt));
        }
      }
    };
    await Promise.all(Array.from({ length: this.options.concurrency }, worker));
  }

  /**
   * Sends every callback its reports, in order, round-robin across the replicas.
   * @returns once every report was acknowledged or given up.
   */
  async run(): Promise<void> {
    let next = 0;
    const worker = async () => {
      while (next < this.tokens.length) {
        const token = this.tokens[next++]!;
        for (let seq = 0; seq < this.options.reports; seq++) {
          if (seq > 0 && this.options.paceMs > 0) await sleep(this.options.paceMs);
          await this.#report(token, seq);
        }
      }
    };
    await Promise.all(Array.from({ length: this.options.concurrency }, worker));
  }

  /** Creates the callbacks, then sends their reports. */
  async start(): Promise<void> {
    await this.create();
    await this.run();
  }

  async #report(token: string, seq: number): Promise<void> {
    const first = performance.now();
    for (let attempt = 0; ; attempt++) {
      const a = await this.sendReport(this.#next(), token, seq);
      if (a.result === 'ok' || a.result === 'queued') {
        this.acked.get(token)!.push(seq);
        this.ackedReports++;
        if (a.result === 'queued') this.queued++;
        this.perReplica.set(a.node, (this.perReplica.get(a.node) ?? 0) + 1);
        return;
      }
      const where = `report ${seq} of ${token.slice(0, 12)}… on ${a.node}`;
      if (!RETRYABLE.has(a.result)) {
        this.#error(`${where}: ${a.status} ${a.detail} (not retried)`);
        return;
      }
      if (a.result === 'server-error') this.#error(`${where}: ${a.status} ${a.detail}`);
      if (performance.now() - first > this.options.giveUpMs) {
        this.#error(`${where}: ${a.result} (given up after ${attempt + 1} attempts)`);
        return;
      }
      this.retries++;
      await sleep(Math.min(200, 5 * 2 ** attempt));
    }
  }

  /** Progress so far, for a progress line. */
  progress(): {
    created: number;
    acked: number;
    total: number;
    queued: number;
    retries: number;
    errors: number;
  } {
    return {
      created: this.tokens.length,
      acked: this.ackedReports,
      total: this.totalReports,
      queued: this.queued,
      retries: this.retries,
      errors: this.errors,
    };
  }

  /** Acknowledgements of a replica so far. */
  countOf(node: string): number {
    return this.perReplica.get(node) ?? 0;
  }

  /**
   * The degraded window after `from` (a kill, stop or close): how long until every report was
   * applied directly (200) again, and how long reports kept failing. Attempts started at or
   * after `until` (a later event) are left out.
   */
  recovery(from: number, until = Infinity): Recovery {
    const since = this.attempts.filter((a) => a.end >= from && a.start < until);
    const degraded = since.filter((a) => a.result !== 'ok');
    const failures = degraded.filter((a) => RETRYABLE.has(a.result));
    let takeoverMs: number | undefined = 0;
    if (degraded.length > 0) {
      const lastStart = Math.max(...degraded.map((a) => a.start));
      const firstOk = since
        .filter((a) => a.result === 'ok' && a.start > lastStart)
        .reduce<number | undefined>(
          (m, a) => (m === undefined || a.end < m ? a.end : m),
          undefined,
        );
      takeoverMs = firstOk === undefined ? undefined : firstOk - from;
    }
    let failureSpanMs = 0;
    if (failures.length > 0) {
      failureSpanMs =
        Math.max(...failures.map((a) => a.end)) - Math.min(...failures.map((a) => a.start));
    }
    // Per report: first attempt to acknowledgement, for reports that failed at least once.
    const firstStart = new Map<string, number>();
    const failed = new Set<string>();
    let maxStallMs = 0;
    for (const a of this.attempts) {
      const id = `${a.token}:${a.seq}`;
      if (!firstStart.has(id)) firstStart.set(id, a.start);
      if (a.end < from || a.start >= until) continue;
      if (RETRYABLE.has(a.result)) failed.add(id);
      else if ((a.result === 'ok' || a.result === 'queued') && failed.has(id)) {
        maxStallMs = Math.max(maxStallMs, a.end - firstStart.get(id)!);
      }
    }
    return {
      degraded: degraded.length,
      failures: failures.length,
      takeoverMs,
      failureSpanMs,
      maxStallMs,
    };
  }

  /** Reads one callback (`GET /callbacks/{token}`) through the live replicas, retrying failures. */
  async read(token: string, giveUpMs = 10_000): Promise<HttpReply | undefined> {
    const first = performance.now();
    for (let attempt = 0; ; attempt++) {
      const r = await this.send(
        this.#next().port,
        'GET',
        `/callbacks/${encodeURIComponent(token)}`,
      );
      if (typeof r === 'object' && r.status < 500) return r;
      if (performance.now() - first > giveUpMs) return undefined;
      await sleep(Math.min(200, 10 * 2 ** attempt));
    }
  }

  /**
   * Checks every created callback through the live replicas: waits until each one's `seen`
   * holds all its acknowledged seqs (queued reports are applied later) or stops changing for
   * `stableMs`, then reads everything once more and counts.
   *
   * @param options.stableMs - a `seen` unchanged this long is final. @default 5000
   * @param options.deadlineMs - the whole wait's bound. @default 30000
   */
  async verify(options: { stableMs?: number; deadlineMs?: number } = {}): Promise<VerifyResult> {
    const stableMs = options.stableMs ?? 5000;
    const deadline = performance.now() + (options.deadlineMs ?? 30_000);
    const began = performance.now();
    const seenOf = (r: HttpReply | undefined): unknown[] | undefined => {
      if (r?.status !== 200) return undefined;
      const data = r.body?.data as Record<string, unknown> | undefined;
      return Array.isArray(data?.seen) ? (data.seen as unknown[]) : [];
    };
    // Phase 1: wait for queued reports.
    let next = 0;
    const waiter = async () => {
      while (next < this.tokens.length) {
        const token = this.tokens[next++]!;
        const want = this.acked.get(token) ?? [];
        let last = -1;
        let since = performance.now();
        while (performance.now() < deadline) {
          const seen = seenOf(await this.read(token));
          if (seen && want.every((s) => seen.includes(s))) break;
          const len = seen?.length ?? -1;
          if (len !== last) {
            last = len;
            since = performance.now();
          } else if (performance.now() - since > stableMs) break;
          await sleep(200);
        }
      }
    };
    await Promise.all(Array.from({ length: 16 }, waiter));
    const settleMs = performance.now() - began;
    // Phase 2: the final read of each, and the count.
    let acknowledged = 0;
    let present = 0;
    let lost = 0;
    let duplicated = 0;
    let outOfOrder = 0;
    let unacknowledgedApplied = 0;
    let unreadable = 0;
    const examples: string[] = [];
    const example = (line: string) => {
      if (examples.length < 10) examples.push(line);
    };
    next = 0;
    const checker = async () => {
      while (next < this.tokens.length) {
        const token = this.tokens[next++]!;
        const want = this.acked.get(token) ?? [];
        acknowledged += want.length;
        const seen = seenOf(await this.read(token));
        if (seen === undefined) {
          unreadable++;
          lost += want.length;
          example(`${this.#short(token)}: unreadable`);
          continue;
        }
        const counts = new Map<unknown, number>();
        for (const s of seen) counts.set(s, (counts.get(s) ?? 0) + 1);
        for (const s of want) {
          if (counts.has(s)) present++;
          else lost++;
        }
        const wanted = new Set<unknown>(want);
        for (const [s, c] of counts) {
          if (c > 1) duplicated += c - 1;
          if (!wanted.has(s)) unacknowledgedApplied++;
        }
        let ordered = true;
        for (let i = 1; i < seen.length; i++) {
          if (!((seen[i] as number) > (seen[i - 1] as number))) ordered = false;
        }
        if (!ordered) outOfOrder++;
        const missing = want.filter((s) => !counts.has(s));
        if (missing.length > 0 || !ordered || seen.length !== counts.size) {
          // The seqs around the first problem, and how the load's attempts at them went.
          const firstBad = seen.findIndex(
            (s, i) => i > 0 && !((s as number) > (seen[i - 1] as number)),
          );
          const suspects = new Set<number>(missing.slice(0, 3));
          if (firstBad > 0) {
            for (const s of seen.slice(Math.max(0, firstBad - 2), firstBad + 2))
              if (typeof s === 'number') suspects.add(s);
          }
          for (const [s, c] of counts) if (c > 1 && typeof s === 'number') suspects.add(s);
          const history = [...suspects]
            .sort((a, b) => a - b)
            .map((s) => `    seq ${s}: ${this.history(token, s)}`);
          example(
            `${this.#short(token)}: ${missing.length > 0 ? `missing [${missing.join(',')}] ` : ''}seen [${seen.join(',')}]\n${history.join('\n')}`,
          );
        }
      }
    };
    await Promise.all(Array.from({ length: 16 }, checker));
    return {
      callbacks: this.tokens.length,
      acknowledged,
      present,
      lost,
      duplicated,
      outOfOrder,
      unacknowledgedApplied,
      unreadable,
      settleMs,
      examples,
    };
  }

  #short(token: string): string {
    return dedupKey(token, 0).split(':')[0]!;
  }

  /**
   * How the load's attempts at one report went, for diagnostics: `node result(status outcome)
   * @start+duration` per attempt, times in ms since {@link origin}.
   */
  history(token: string, seq: number): string {
    const t0 = this.origin;
    return this.attempts
      .filter((a) => a.token === token && a.seq === seq)
      .map(
        (a) =>
          `${a.node} ${a.result}(${a.status ?? '-'}${a.detail === undefined ? '' : ` ${a.detail}`}) @${Math.round(a.start - t0)}+${Math.round(a.end - a.start)}`,
      )
      .join(', ');
  }

  /** Closes the load's keep-alive connections. */
  close(): void {
    this.#agent.destroy();
  }
}

/** A PostgreSQL server of its own (see {@link startPrivatePostgres}). */
export interface PrivatePostgres {
  /** Connection string of its `postgres` database as user `postgres` (trust auth). */
  readonly url: string;
  readonly port: number;
  /** Its temp directory (data, socket, log). */
  readonly dir: string;
  /** Stops the server: `fast` (clean shutdown) or `immediate` (a crash; recovery at the next start). */
  stop(mode?: 'fast' | 'immediate'): Promise<void>;
  /** Starts it again on the same data and port; resolves once it accepts connections. */
  start(): Promise<void>;
  /** Its log so far (for diagnostics). */
  log(): string;
  /** Stops it (immediate) and removes its directory. */
  destroy(): Promise<void>;
}

const run = promisify(execFile);

/** Where Debian keeps the PostgreSQL server programs. @default `CBE_PG_BIN` or version 15's */
export const PG_BIN = process.env.CBE_PG_BIN ?? '/usr/lib/postgresql/15/bin';

/** A free TCP port on 127.0.0.1 (free when asked; good enough for a test). */
export async function freePort(): Promise<number> {
  const server = createNetServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/**
 * Starts a PostgreSQL server of its own in a temp directory, on a free port, so a test can
 * stop and restart its database without disturbing a shared server: `initdb` and `pg_ctl` run
 * as user `postgres` (through `runuser` when this process is root). Trust auth, 127.0.0.1 only.
 */
export async function startPrivatePostgres(): Promise<PrivatePostgres> {
  const dir = mkdtempSync(join(tmpdir(), 'cbe-pg-'));
  const data = join(dir, 'data');
  const logFile = join(dir, 'postgres.log');
  const root = process.getuid?.() === 0;
  if (root) {
    const { stdout } = await run('id', ['-u', 'postgres']);
    const { stdout: gid } = await run('id', ['-g', 'postgres']);
    chownSync(dir, Number(stdout.trim()), Number(gid.trim()));
  }
  const as = (program: string, args: string[]) =>
    root
      ? run('runuser', ['-u', 'postgres', '--', join(PG_BIN, program), ...args])
      : run(join(PG_BIN, program), args);
  await as('initdb', ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8']);
  const port = await freePort();
  const options = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200`;
  const start = async () => {
    await as('pg_ctl', ['-D', data, '-l', logFile, '-o', options, '-w', '-t', '30', 'start']);
  };
  const stop = async (mode: 'fast' | 'immediate' = 'fast') => {
    await as('pg_ctl', ['-D', data, '-m', mode, '-w', '-t', '30', 'stop']);
  };
  await start();
  let destroyed = false;
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    port,
    dir,
    stop,
    start,
    log: () => {
      try {
        return readFileSync(logFile, 'utf8');
      } catch {
        return '';
      }
    },
    async destroy() {
      if (destroyed) return;
      destroyed = true;
      try {
        await stop('immediate');
      } catch {
        // Already stopped.
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
