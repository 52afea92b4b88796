/**
 * One callback's timeline as a self-contained SVG: lanes for its status, its
 * reports, its step tries and waits, and its deadline and heartbeat windows
 * over a time axis from its creation.
 *
 * @module
 */

import type { HistoryEntry } from '../history.js';
import { spanText } from '../diagrams/describe.js';
import { isTerminal, type CallbackStatus } from '../lifecycle/statuses.js';
import { esc } from '../diagrams/svg-layout.js';
import { callbackPath, pathLine, type PathDetails } from './callback-path.js';
import {
  timelineOf,
  titleOf,
  type StepTry,
  type TimelineMark,
  type TimelineOptions,
} from './timeline.js';

const STATUS_FILL: Readonly<Record<CallbackStatus, string>> = {
  create: '#dfe6f5',
  accept: '#cbd7f0',
  start: '#b3c5ea',
  progress: '#93acdf',
  complete: '#bfe3c8',
  error: '#f2c4bf',
  cancel: '#f1e1b8',
  timeout: '#f5c9a9',
  orphan: '#ddd3ea',
};

/** Where a label goes: its text's x, anchor and row (-1: no room, not drawn). */
interface Placed {
  readonly x: number;
  readonly end: boolean;
  readonly row: number;
}

/**
 * Lays labels out in rows so that none overlaps another. Each label starts at its mark, or
 * ends there when it would run past the right edge.
 */
function place(
  items: readonly { readonly at: number; readonly text: string }[],
  right: number,
  maxRows = 8,
): { placed: Placed[]; rows: number } {
  const boxes = items.map(({ at, text }) => {
    const w = textWidth(text);
    const end = at - 4 + w > right;
    return { x0: end ? at + 4 - w : at - 4, w, end, at };
  });
  const order = boxes.map((_, i) => i).sort((a, b) => boxes[a]!.x0 - boxes[b]!.x0);
  const ends: number[] = [];
  const placed: Placed[] = new Array<Placed>(items.length);
  for (const i of order) {
    const b = boxes[i]!;
    let r = ends.findIndex((e) => e + 8 <= b.x0);
    if (r < 0 && ends.length < maxRows) r = ends.push(0) - 1;
    // No room left: the label is not drawn (its mark keeps it as a tooltip).
    if (r >= 0) ends[r] = b.x0 + b.w;
    placed[i] = { x: b.end ? b.at + 4 : b.at - 4, end: b.end, row: r };
  }
  return { placed, rows: Math.max(1, ends.length) };
}

/** A nice tick step for a span: 1, 2 or 5 times a power of ten ms, about `n` ticks. */
function tickStep(span: number, n: number): number {
  const raw = span / n;
  const p = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 5, 10]) if (raw <= m * p) return m * p;
  return 10 * p;
}

const textWidth = (s: string, px = 11) => s.length * px * 0.6;

/** Above this many marks (or tries) in a lane, marks closer than 3 px to the previous one are merged. */
const THIN_ABOVE = 300;

/**
 * Keeps the items of a crowded lane at least 3 px apart: each kept item counts the ones merged
 * into it. Lanes of up to {@link THIN_ABOVE} items are kept whole.
 */
function thin<T>(items: readonly T[], xOf: (item: T) => number): { item: T; more: number }[] {
  if (items.length <= THIN_ABOVE) return items.map((item) => ({ item, more: 0 }));
  const kept: { item: T; more: number; x: number }[] = [];
  for (const item of items) {
    const x = xOf(item);
    const last = kept.at(-1);
    if (last && x - last.x < 3) last.more++;
    else kept.push({ item, more: 0, x });
  }
  return kept;
}

const STYLE =
  'text{fill:#1d2b4f}.lane{font-size:11px;fill:#5d667a;font-weight:600}.muted{fill:#6b7385}.axis line{stroke:#aab2c2}.axis text{font-size:10px;fill:#5d667a}.grid{stroke:#eceff5}.span text{font-size:11px}.mark text,.try text,.wait text,.timer text{font-size:11px}.ok{fill:#3f8f55}.bad{fill:#c0564d}.badtext{fill:#a4443d}.ignored{fill:#fff;stroke:#8a93a6;stroke-width:1.5}.applied{fill:#3d5a99}.wait line{stroke:#c0564d;stroke-dasharray:4 3;stroke-width:1.5}.now{stroke:#3d5a99;stroke-width:1.5}.deadline{stroke:#c2571a;stroke-width:1.5;stroke-dasharray:6 3}.hb{fill:#f6e7c1}.hbtick{stroke:#c9a13b;stroke-width:1.5}.leader line{stroke:#c5ccda}.tag{paint-order:stroke;stroke:#fff;stroke-width:3px;stroke-linejoin:round}.hb.expired{fill:#f5c9a9}.dl{fill:#fbe9df}';

/** The rules scoped to the timeline's own root, so that it can sit in a page or beside another SVG. */
const SCOPED_STYLE = STYLE.split('}')
  .filter((rule) => rule.includes('{'))
  .map((rule) => {
    const [selectors, body] = rule.split('{') as [string, string];
    return `${selectors
      .split(',')
      .map((sel) => `.timeline ${sel.trim()}`)
      .join(',')}{${body}}`;
  })
  .join('');

const utc = (ms: number) =>
  new Date(ms)
    .toISOString()
    .replace('T', ' ')
    .replace(/\.\d+Z$/, ' UTC');

/**
 * A callback's timeline as a self-contained SVG: lanes for its status, its reports (applied
 * ones filled, ignored ones hollow), its step tries (bars as long as they ran, green or red with
 * the error, a dashed wait to each retry), and its deadline and heartbeat windows, over a time
 * axis from its creation. Marks carry `data-kind` (`status`, `report`, `try`, `wait`,
 * `resumed`, `deadline`, `heartbeat`, ...) and `data-seq` (the history entry).
 *
 * @param entries - the callback's history, oldest first.
 * @param details - its details (`engine.details()`): id, anchor, creation, deadline, heartbeat.
 * @param options - `now` for an active callback, a title, the width.
 * @returns a self-contained SVG document.
 */
export function timelineSvg(
  entries: readonly HistoryEntry[],
  details: PathDetails = {},
  options: TimelineOptions = {},
): string {
  const t = timelineOf(entries, details, options);
  const W = options.width ?? 960;
  const L = 96;
  const R = 28;
  const x = (ms: number) => +(L + ((ms - t.start) / (t.end - t.start)) * (W - L - R)).toFixed(1);
  const since = (ms: number) => `+${spanText(ms - t.start)}`;
  const out: string[] = [];
  let y = 58;

  // Lines from marks and bars down to their labels: drawn first, under every label.
  const leaders: string[] = [];

  // Status lane.
  const statusY = y;
  const statusH = 22;
  const spans = t.spans.map((s) => {
    const x1 = x(s.from);
    const x2 = Math.max(x(s.to), x1 + 2);
    const label =
      textWidth(s.status) + 8 < x2 - x1
        ? `<text x="${x1 + 4}" y="${statusY + 15}">${esc(s.status)}</text>`
        : '';
    return `<g class="span" data-kind="status" data-status="${esc(s.status)}"><title>${esc(s.status)} ${since(s.from)} – ${since(s.to)}</title><rect x="${x1}" y="${statusY}" width="${(x2 - x1).toFixed(1)}" height="${statusH}" fill="${STATUS_FILL[s.status]}"/>${label}</g>`;
  });
  y += statusH + 16;

  // Reports and other marks.
  const markY = y + 6;
  const shownMarks = thin(t.marks, (m) => x(m.at));
  const markText = ({ item: m, more }: { item: TimelineMark; more: number }) =>
    `${m.label} ${since(m.at)}${more ? ` (and ${more} more)` : ''}`;
  const mp = place(
    shownMarks.map((g) => ({ at: x(g.item.at), text: markText(g) })),
    W - 4,
  );
  const marks = shownMarks.map((g, i) => {
    const m = g.item;
    const cx = x(m.at);
    const p = mp.placed[i]!;
    const ly = markY + 18 + p.row * 14;
    const shape =
      m.kind === 'report'
        ? `<circle cx="${cx}" cy="${markY}" r="5" class="${m.outcome === 'ignored' ? 'ignored' : 'applied'}"/>`
        : m.kind === 'timeout' || m.kind === 'orphan' || m.kind === 'cancel'
          ? `<path d="M${cx},${markY - 6} L${cx + 6},${markY} L${cx},${markY + 6} L${cx - 6},${markY} z" class="bad"/>`
          : `<text x="${cx}" y="${markY + 5}" text-anchor="middle" font-size="14" class="applied">↻</text>`;
    let label = '';
    if (p.row >= 0) {
      leaders.push(`<line x1="${cx}" x2="${cx}" y1="${markY + 6}" y2="${ly - 10}"/>`);
      label = `<text x="${p.x}" y="${ly}"${p.end ? ' text-anchor="end"' : ''} class="tag${m.outcome === 'ignored' ? ' muted' : ''}">${esc(markText(g))}</text>`;
    }
    return `<g class="mark" data-kind="${m.kind}" data-seq="${m.seq}"${m.outcome ? ` data-outcome="${m.outcome}"` : ''}><title>${esc(markText(g))}</title>${shape}${label}</g>`;
  });
  const marksTop = y;
  y = markY + 18 + (mp.rows - 1) * 14 + 14;

  // Step tries and the waits before retries: one row of bars, their labels packed below.
  const stepY = y + 4;
  const shownTries = thin(t.tries, (s) => x(s.from));
  const tryText = ({ item: s, more }: { item: StepTry; more: number }) =>
    `${s.status} try ${s.attempt} · ${spanText(s.to - s.from)}${s.ok ? ' ✓' : ` ✗ ${s.error ?? 'failed'}`}${more ? ` (and ${more} more tries)` : ''}`;
  const retried = shownTries.map((g) => g.item).filter((s) => s.retryAt !== undefined);
  const waitText = (s: StepTry) => `wait ${spanText(s.retryAt! - s.to)} → try ${s.attempt + 1}`;
  const sp = place(
    [
      ...shownTries.map((g) => ({ at: x(g.item.from), text: tryText(g) })),
      ...retried.map((s) => ({ at: x(s.to) + 6, text: waitText(s) })),
    ],
    W - 4,
  );
  const tries = shownTries.map((g, i) => {
    const s = g.item;
    const x1 = x(s.from);
    const w = Math.max(3, x(s.to) - x1);
    const p = sp.placed[i]!;
    const ly = stepY + 26 + p.row * 14;
    let label = '';
    if (p.row >= 0) {
      leaders.push(`<line x1="${x1}" x2="${x1}" y1="${stepY + 12}" y2="${ly - 10}"/>`);
      label = `<text x="${p.x}" y="${ly}"${p.end ? ' text-anchor="end"' : ''} class="tag${s.ok ? '' : ' badtext'}">${esc(tryText(g))}</text>`;
    }
    return `<g class="try" data-kind="try" data-seq="${s.seq}" data-status="${esc(s.status)}" data-attempt="${s.attempt}" data-result="${s.ok ? 'ok' : 'failed'}"><title>${esc(tryText(g))}</title><rect x="${x1}" y="${stepY}" width="${w.toFixed(1)}" height="12" rx="2" class="${s.ok ? 'ok' : 'bad'}"/>${label}</g>`;
  });
  const waits = retried.map((s, k) => {
    const p = sp.placed[shownTries.length + k]!;
    const ly = stepY + 26 + p.row * 14;
    const label =
      p.row >= 0
        ? `<text x="${p.x}" y="${ly}"${p.end ? ' text-anchor="end"' : ''} class="tag badtext">${esc(waitText(s))}</text>`
        : '';
    return `<g class="wait" data-kind="wait" data-seq="${s.seq}" data-attempt="${s.attempt + 1}"><title>${esc(waitText(s))}</title><line x1="${x(s.to)}" x2="${x(s.retryAt!)}" y1="${stepY + 6}" y2="${stepY + 6}"/><line x1="${x(s.retryAt!)}" x2="${x(s.retryAt!)}" y1="${stepY}" y2="${stepY + 12}"/>${label}</g>`;
  });
  const stepsTop = y;
  y = stepY + 26 + (sp.rows - 1) * 14 + 14;

  // Deadline and heartbeat windows.
  const timerY = y + 4;
  const timers: string[] = [];
  const timerLabels: string[] = [];
  let timerRows = 0;
  if (t.deadlineAt !== undefined) {
    const inside = t.deadlineAt <= t.end;
    const x2 = inside ? x(t.deadlineAt) : W - R;
    timerLabels.push(`<text x="12" y="${timerY + 9}" class="lane">deadline</text>`);
    timers.push(
      `<g class="timer" data-kind="deadline"><rect x="${x(t.start)}" y="${timerY}" width="${(x2 - x(t.start)).toFixed(1)}" height="10" class="dl"/><text x="${inside ? x2 - 4 : x2}" y="${timerY + 9}" text-anchor="end">${esc(inside ? `deadline ${since(t.deadlineAt)}` : `deadline ${since(t.deadlineAt)} →`)}</text></g>`,
    );
    timerRows++;
  }
  if (t.heartbeats.length > 0) {
    const hy = timerY + timerRows * 18;
    for (const { item: h } of thin(t.heartbeats, (w) => x(w.from))) {
      const x1 = x(h.from);
      const x2 = Math.max(x1 + 2, x(Math.min(h.to, t.end)) - 1);
      timers.push(
        `<g class="timer" data-kind="heartbeat"${h.expired ? ' data-expired="true"' : ''}><title>heartbeat window ${since(h.from)} – ${since(h.to)}${h.expired ? ' (passed: timed out)' : ''}</title><rect x="${x1}" y="${hy}" width="${(x2 - x1).toFixed(1)}" height="10" class="hb${h.expired ? ' expired' : ''}"/><line x1="${x1}" x2="${x1}" y1="${hy - 2}" y2="${hy + 12}" class="hbtick"/></g>`,
      );
    }
    timerLabels.push(
      `<text x="12" y="${hy + 9}" class="lane">heartbeat</text><text x="12" y="${hy + 22}" class="muted" font-size="10">${esc(spanText(details.heartbeatMs!))}</text>`,
    );
    timerRows++;
  }
  if (timerRows > 0) y = timerY + timerRows * 18 + 8;

  // The axis.
  const axisY = y + 8;
  const step = tickStep(t.end - t.start, Math.max(3, Math.floor((W - L - R) / 90)));
  const ticks: string[] = [];
  for (let ms = 0; t.start + ms <= t.end + 1e-6; ms += step) {
    const tx = x(t.start + ms);
    ticks.push(
      `<line x1="${tx}" x2="${tx}" y1="${statusY}" y2="${axisY}" class="grid"/><line x1="${tx}" x2="${tx}" y1="${axisY}" y2="${axisY + 5}"/><text x="${tx}" y="${axisY + 17}" text-anchor="middle">+${spanText(ms)}</text>`,
    );
  }
  const deadlineLine =
    t.deadlineAt !== undefined && t.deadlineAt <= t.end
      ? `<line x1="${x(t.deadlineAt)}" x2="${x(t.deadlineAt)}" y1="${statusY - 4}" y2="${axisY}" class="deadline"/>`
      : '';
  const nowLine =
    options.now !== undefined && !isTerminal(t.status) && options.now <= t.end
      ? `<g data-kind="now"><line x1="${x(options.now)}" x2="${x(options.now)}" y1="${statusY - 4}" y2="${axisY}" class="now"/><text x="${x(options.now) + 3}" y="${statusY - 6}" class="muted" font-size="10">now</text></g>`
      : '';
  const height = axisY + 30;
  const lane = (label: string, top: number) =>
    `<text x="12" y="${top + 15}" class="lane">${label}</text>`;

  const path = callbackPath(entries, details);
  const facts = [
    t.start ? `created ${utc(t.start)}` : '',
    t.deadlineAt !== undefined ? `deadline ${since(t.deadlineAt)}` : 'no deadline',
    details.heartbeatMs !== undefined ? `heartbeat ${spanText(details.heartbeatMs)}` : '',
    `now ${path.status}`,
  ].filter(Boolean);
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" class="timeline" viewBox="0 0 ${W} ${height}" width="${W}" height="${height}" font-family="system-ui, sans-serif" font-size="12" role="img" aria-label="${esc(`Timeline of ${titleOf(details, options)}: ${pathLine(path)}`)}">`,
    `<style>${SCOPED_STYLE}</style>`,
    '<rect width="100%" height="100%" fill="#fff"/>',
    `<text x="12" y="22" font-size="15" font-weight="600">${esc(titleOf(details, options))}</text>`,
    `<text x="12" y="40" class="muted">${esc(`${pathLine(path)} · ${facts.join(' · ')}`)}</text>`,
    `<g class="axis">${ticks.join('')}<line x1="${L}" x2="${W - R}" y1="${axisY}" y2="${axisY}"/></g>`,
    lane('status', statusY + 2),
    lane('reports', marksTop),
    t.tries.length ? lane('steps', stepsTop) : '',
    ...timerLabels,
    ...spans,
    ...timers,
    deadlineLine,
    nowLine,
    `<g class="leader">${leaders.join('')}</g>`,
    ...waits,
    ...tries,
    ...marks,
    '</svg>',
  );
  return `${out.filter(Boolean).join('\n')}\n`;
}
