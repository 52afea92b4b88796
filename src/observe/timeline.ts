/**
 * One callback's timeline, read from its history: a time axis from its
 * creation; each report with its outcome (applied or ignored); each step try
 * with its duration and error; the waits before retries; resumed steps; the
 * deadline and heartbeat windows. This file reads the history into what the
 * timeline shows; `timeline-svg.ts` and `timeline-text.ts` draw it. Pure
 * functions of the history entries and the callback's details.
 *
 * @module
 */

import type { HistoryEntry } from '../history.js';
import { isTerminal, type CallbackStatus } from '../lifecycle/statuses.js';
import { callbackPath, type PathDetails } from './callback-path.js';

/** Options of `timelineSvg()` and `timelineText()`. */
export interface TimelineOptions {
  /**
   * The present (ms since epoch): an active callback's axis runs to it, and its open heartbeat
   * window and deadline are drawn against it. @default the last entry's time
   */
  readonly now?: number | undefined;
  /** The title; by default `callback <id> at anchor <anchor>`. */
  readonly title?: string | undefined;
  /** Width of the SVG in px. @default 960 */
  readonly width?: number | undefined;
}

/** A span of one status. */
export interface StatusSpan {
  readonly status: CallbackStatus;
  readonly from: number;
  /** When it ended; the axis' end for the last one. */
  readonly to: number;
}

/** A mark on the axis: a report, a cancel, a timeout, an orphaning, a resumed or retried step. */
export interface TimelineMark {
  readonly seq: number;
  readonly at: number;
  readonly kind: 'report' | 'cancel' | 'timeout' | 'orphan' | 'resumed' | 'retried';
  /** What it says: `start`, `accept (ignored)`, `deadline`, `progress step resumed (restart)`. */
  readonly label: string;
  /** For a report: applied or ignored. */
  readonly outcome?: 'applied' | 'ignored' | undefined;
}

/** One try of a step. */
export interface StepTry {
  readonly seq: number;
  /** The status it ran for. */
  readonly status: CallbackStatus;
  readonly attempt: number;
  /** When it started (its end less its duration) and ended. */
  readonly from: number;
  readonly to: number;
  readonly ok: boolean;
  readonly error?: string | undefined;
  /** When the next try was scheduled, if it failed and is retried. */
  readonly retryAt?: number | undefined;
}

/** A heartbeat window: from a report (or the creation) to the time it would pass. */
export interface HeartbeatWindow {
  readonly from: number;
  readonly to: number;
  /** Whether it passed (the callback timed out with reason `heartbeat`). */
  readonly expired: boolean;
}

/** What a timeline shows, in engine-clock ms. */
export interface Timeline {
  readonly start: number;
  /** The axis' end. */
  readonly end: number;
  readonly spans: readonly StatusSpan[];
  readonly marks: readonly TimelineMark[];
  readonly tries: readonly StepTry[];
  /** The deadline, if the callback has one. */
  readonly deadlineAt: number | undefined;
  readonly heartbeats: readonly HeartbeatWindow[];
  readonly status: CallbackStatus;
}

/**
 * Reads a callback's history into what its timeline shows.
 *
 * @param entries - its history entries, oldest first.
 * @param details - its details: creation time, deadline, heartbeat, status.
 * @param options - `now`, for an active callback.
 */
export function timelineOf(
  entries: readonly HistoryEntry[],
  details: PathDetails = {},
  options: TimelineOptions = {},
): Timeline {
  const path = callbackPath(entries, details);
  const start = path.startedAt ?? options.now ?? 0;
  const last = entries.at(-1);
  const active = !isTerminal(path.status);
  let end = Math.max(start, last?.at ?? start);
  for (const e of entries) if (e.retryAt !== undefined) end = Math.max(end, e.retryAt);
  if (active && options.now !== undefined) end = Math.max(end, options.now);

  const timedOut = entries.find((e) => e.kind === 'timedOut');
  const deadlineAt =
    details.deadlineAt ?? (timedOut?.reason === 'deadline' ? timedOut.at : undefined);
  // A timer close to the events is worth its room on the axis; a far one is an arrow off its end.
  const near = (t: number) => t <= end + Math.max(1000, (end - start) * 0.25);
  if (deadlineAt !== undefined && near(deadlineAt) && (active || deadlineAt <= end))
    end = Math.max(end, deadlineAt);

  const heartbeats: HeartbeatWindow[] = [];
  if (details.heartbeatMs !== undefined) {
    const beats = entries.filter((e) => e.kind === 'created' || e.kind === 'reported');
    const endedAt = entries.find((e) => isTerminal(e.status))?.at;
    beats.forEach((b, i) => {
      const ends = b.at + details.heartbeatMs!;
      const nextBeat = beats[i + 1]?.at;
      const stopped = endedAt !== undefined && endedAt >= b.at ? endedAt : undefined;
      const expired =
        timedOut?.reason === 'heartbeat' &&
        timedOut.at >= b.at &&
        (nextBeat === undefined || nextBeat > timedOut.at);
      const to = Math.min(ends, nextBeat ?? ends, stopped ?? ends);
      if (isTerminal(b.status) && b.kind === 'reported') return;
      heartbeats.push({ from: b.at, to: expired ? timedOut.at : to, expired });
    });
    // The open window of an active callback: when it times out unless a report comes.
    const open = heartbeats.at(-1);
    const passes = open && active ? open.from + details.heartbeatMs : undefined;
    if (passes !== undefined && passes - start <= 3 * Math.max(end - start, 1000))
      end = Math.max(end, passes);
  }
  if (end - start < 1000) end = start + 1000;

  const spans: StatusSpan[] = [];
  let from = start;
  let status: CallbackStatus = path.visited[0] ?? path.status;
  for (const m of path.moves) {
    spans.push({ status, from, to: m.at });
    status = m.to;
    from = m.at;
  }
  spans.push({ status, from, to: isTerminal(status) ? Math.max(from, end) : end });

  const marks: TimelineMark[] = [];
  const tries: StepTry[] = [];
  for (const e of entries) {
    if (e.kind === 'reported')
      marks.push({
        seq: e.seq,
        at: e.at,
        kind: 'report',
        label: e.outcome === 'ignored' ? `${e.reported} (ignored)` : (e.reported ?? e.status),
        outcome: e.outcome ?? 'applied',
      });
    else if (e.kind === 'cancelled')
      marks.push({ seq: e.seq, at: e.at, kind: 'cancel', label: 'cancelled by the caller' });
    else if (e.kind === 'timedOut')
      marks.push({
        seq: e.seq,
        at: e.at,
        kind: 'timeout',
        label: `timed out (${e.reason ?? 'deadline'})`,
      });
    else if (e.kind === 'orphaned')
      marks.push({ seq: e.seq, at: e.at, kind: 'orphan', label: 'orphaned: the parent ended' });
    else if (e.kind === 'stepResumed')
      marks.push({
        seq: e.seq,
        at: e.at,
        kind: 'resumed',
        label: `${e.step ?? ''} step resumed${e.reason ? ` (${e.reason})` : ''}`.trim(),
      });
    else if (e.kind === 'stepRetried')
      marks.push({
        seq: e.seq,
        at: e.at,
        kind: 'retried',
        label: `${e.step ?? ''} step retried by hand`.trim(),
      });
    else if ((e.kind === 'stepCompleted' || e.kind === 'stepFailed') && e.step !== undefined)
      tries.push({
        seq: e.seq,
        status: e.step,
        attempt: e.attempt ?? 1,
        from: e.at - (e.durationMs ?? 0),
        to: e.at,
        ok: e.kind === 'stepCompleted',
        error: e.error,
        retryAt: e.retryAt,
      });
  }
  return { start, end, spans, marks, tries, deadlineAt, heartbeats, status: path.status };
}

/** The title of a picture of one callback: `callback <id> at anchor <anchor>`. */
export function titleOf(
  details: PathDetails,
  options: { readonly title?: string | undefined },
): string {
  if (options.title !== undefined) return options.title;
  const who = details.id === undefined ? 'callback' : `callback ${details.id}`;
  return details.anchor === undefined ? who : `${who} at anchor ${details.anchor}`;
}
