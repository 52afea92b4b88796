/**
 * {@link ClusterLoad}, the load of the cluster tests, the cluster bench and the cluster demo:
 * it creates callbacks round-robin across the live replicas and sends each its ordered
 * `progress` reports, retrying failed attempts on the next replica with the same
 * deduplication key, and keeps a record of every attempt (cluster-check.ts reads it).
 *
 * @module
 */

import { Agent, request } from 'node:http';
import {
  dedupKey,
  recoveryOf,
  RETRYABLE,
  verifyLoad,
  type Attempt,
  type AttemptResult,
  type HttpReply,
  type Recovery,
  type VerifyResult,
} from './cluster-check.js';

export {
  dedupKey,
  type Attempt,
  type AttemptResult,
  type HttpReply,
  type Recovery,
  type VerifyResult,
} from './cluster-check.js';

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

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
   * The degraded window after `from` (a kill, stop or close): see {@link recoveryOf}.
   * Attempts started at or after `until` (a later event) are left out.
   */
  recovery(from: number, until = Infinity): Recovery {
    return recoveryOf(this.attempts, from, until);
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
   * Checks every created callback through the live replicas: see {@link verifyLoad}.
   *
   * @param options.stableMs - a `seen` unchanged this long is final. @default 5000
   * @param options.deadlineMs - the whole wait's bound. @default 30000
   */
  verify(options: { stableMs?: number; deadlineMs?: number } = {}): Promise<VerifyResult> {
    return verifyLoad(this, options);
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
