/**
 * What the cluster load's record shows afterwards: one attempt to send a report and how it
 * ended, the degraded window after a kill, stop or close ({@link recoveryOf}), and the check,
 * through the live replicas, that every acknowledged report was applied exactly once and in
 * order ({@link verifyLoad}). `ClusterLoad` (cluster-load.ts) keeps the record.
 *
 * @module
 */

import { createHash } from 'node:crypto';

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

/** What {@link verifyLoad} found. */
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

/** The results after which a report is sent again. */
export const RETRYABLE: ReadonlySet<AttemptResult> = new Set([
  'unavailable',
  'server-error',
  'network',
  'timeout',
]);

/** The part of the load's record that {@link verifyLoad} reads. */
export interface LoadRecord {
  /** Tokens of the created callbacks. */
  readonly tokens: readonly string[];
  /** Acknowledged seqs per token. */
  readonly acked: ReadonlyMap<string, readonly number[]>;
  /** Reads one callback through the live replicas (`undefined`: no answer). */
  read(token: string): Promise<HttpReply | undefined>;
  /** How the attempts at one report went, for the failure examples. */
  history(token: string, seq: number): string;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const short = (token: string) => dedupKey(token, 0).split(':')[0]!;

/**
 * The degraded window after `from` (a kill, stop or close): how long until every report was
 * applied directly (200) again, and how long reports kept failing. Attempts started at or
 * after `until` (a later event) are left out.
 */
export function recoveryOf(attempts: readonly Attempt[], from: number, until = Infinity): Recovery {
  const since = attempts.filter((a) => a.end >= from && a.start < until);
  const degraded = since.filter((a) => a.result !== 'ok');
  const failures = degraded.filter((a) => RETRYABLE.has(a.result));
  let takeoverMs: number | undefined = 0;
  if (degraded.length > 0) {
    const lastStart = Math.max(...degraded.map((a) => a.start));
    const firstOk = since
      .filter((a) => a.result === 'ok' && a.start > lastStart)
      .reduce<number | undefined>((m, a) => (m === undefined || a.end < m ? a.end : m), undefined);
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
  for (const a of attempts) {
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

/**
 * Checks every created callback through the live replicas: waits until each one's `seen`
 * holds all its acknowledged seqs (queued reports are applied later) or stops changing for
 * `stableMs`, then reads everything once more and counts.
 *
 * @param options.stableMs - a `seen` unchanged this long is final. @default 5000
 * @param options.deadlineMs - the whole wait's bound. @default 30000
 */
export async function verifyLoad(
  load: LoadRecord,
  options: { stableMs?: number; deadlineMs?: number } = {},
): Promise<VerifyResult> {
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
    while (next < load.tokens.length) {
      const token = load.tokens[next++]!;
      const want = load.acked.get(token) ?? [];
      let last = -1;
      let since = performance.now();
      while (performance.now() < deadline) {
        const seen = seenOf(await load.read(token));
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
    while (next < load.tokens.length) {
      const token = load.tokens[next++]!;
      const want = load.acked.get(token) ?? [];
      acknowledged += want.length;
      const seen = seenOf(await load.read(token));
      if (seen === undefined) {
        unreadable++;
        lost += want.length;
        example(`${short(token)}: unreadable`);
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
          .map((s) => `    seq ${s}: ${load.history(token, s)}`);
        example(
          `${short(token)}: ${missing.length > 0 ? `missing [${missing.join(',')}] ` : ''}seen [${seen.join(',')}]\n${history.join('\n')}`,
        );
      }
    }
  };
  await Promise.all(Array.from({ length: 16 }, checker));
  return {
    callbacks: load.tokens.length,
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
