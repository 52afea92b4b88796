/**
 * One callback's timeline as plain text, for terminals and tickets.
 *
 * @module
 */

import type { HistoryEntry } from '../history.js';
import { spanText } from '../diagrams/describe.js';
import { callbackPath, pathLine, type PathDetails } from './callback-path.js';
import { timelineOf, titleOf, type TimelineOptions } from './timeline.js';

/**
 * A callback's timeline as plain text, for terminals and tickets: its path in one line, its
 * timers, then one line per history entry with its time since creation, what happened, the
 * status after it, and details (outcome, try, duration, error, next try).
 *
 * @param entries - the callback's history, oldest first.
 * @param details - its details (`engine.details()`).
 * @returns the text, ending with a newline.
 */
export function timelineText(
  entries: readonly HistoryEntry[],
  details: PathDetails = {},
  options: TimelineOptions = {},
): string {
  const t = timelineOf(entries, details, options);
  const path = callbackPath(entries, details);
  // Exact to the millisecond under 100 s, where entries are close enough to need it.
  const since = (ms: number) => {
    const d = ms - t.start;
    return d >= 1000 && d < 100_000 ? `+${(d / 1000).toFixed(3)} s` : `+${spanText(d)}`;
  };
  const head = [
    `${titleOf(details, options)}: ${path.status}`,
    `path: ${pathLine(path)}`,
    [
      path.startedAt !== undefined ? `created ${new Date(path.startedAt).toISOString()}` : '',
      t.deadlineAt !== undefined
        ? `deadline ${since(t.deadlineAt)} (${new Date(t.deadlineAt).toISOString()})`
        : 'no deadline',
      details.heartbeatMs !== undefined ? `heartbeat ${spanText(details.heartbeatMs)}` : '',
    ]
      .filter(Boolean)
      .join(' · '),
    '',
  ];
  const rows: string[][] = entries.map((e) => {
    const step = e.step !== undefined ? `${e.step} step` : 'step';
    let what: string;
    let detail = '';
    switch (e.kind) {
      case 'created':
        what = 'created';
        break;
      case 'reported':
        what = `report ${e.reported ?? '?'}`;
        detail = e.outcome ?? 'applied';
        break;
      case 'cancelled':
        what = 'cancelled by the caller';
        break;
      case 'timedOut':
        what = `timed out (${e.reason ?? 'deadline'})`;
        break;
      case 'orphaned':
        what = 'orphaned (the parent ended)';
        break;
      case 'stepCompleted':
        what = `${step} ok`;
        detail = `try ${e.attempt ?? 1}, ${spanText(e.durationMs ?? 0)}`;
        break;
      case 'stepFailed':
        what = `${step} failed`;
        detail = `try ${e.attempt ?? 1}, ${spanText(e.durationMs ?? 0)}: ${e.error ?? '(no message)'}`;
        if (e.retryAt !== undefined)
          detail += ` · try ${(e.attempt ?? 1) + 1} at ${since(e.retryAt)} (waits ${spanText(e.retryAt - e.at)})`;
        break;
      case 'stepResumed':
        what = `${step} resumed`;
        detail = e.reason ?? '';
        break;
      default:
        what = `${step} retried by hand`;
    }
    const owes =
      e.step !== undefined && e.kind !== 'stepCompleted' && e.kind !== 'stepFailed'
        ? `runs the ${e.step} step${e.attempt && e.attempt > 1 ? ` (try ${e.attempt})` : ''}`
        : '';
    return [since(e.at), String(e.seq), what, e.status, [detail, owes].filter(Boolean).join(' · ')];
  });
  const header = ['time', '#', 'what', 'status', 'details'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) =>
        i === 0 || i === 1
          ? c.padStart(widths[i]!)
          : i === cells.length - 1
            ? c
            : c.padEnd(widths[i]!),
      )
      .join('  ')
      .trimEnd();
  return `${[...head, line(header), ...rows.map(line)].join('\n')}\n`;
}
