/**
 * `callback-engine get <db> <id> --format ...`: one callback as a table, JSON,
 * or, from its history, its timeline as text, its path and timeline as one
 * SVG, or its path as Mermaid, to paste into a ticket.
 *
 * @module
 */

import type { HistoryEntry } from '../history.js';
import type { CallbackStatus } from '../lifecycle/statuses.js';
import { svgWidth } from '../diagrams/svg-layout.js';
import { pathMermaid, pathSvg, type PathDetails } from '../observe/callback-path.js';
import { timelineSvg } from '../observe/timeline-svg.js';
import { timelineText } from '../observe/timeline-text.js';
import { table, type InspectedCallback } from './inspect.js';

/** What `get --format` prints. */
export const GET_FORMATS = ['table', 'json', 'text', 'svg', 'mermaid'] as const;

/** A format of `get`. */
export type GetFormat = (typeof GET_FORMATS)[number];

/** A callback as `get` reads it: its record and children's ids. */
export type ShownCallback = InspectedCallback & { readonly children: readonly string[] };

/** What `get` prints: text for stdout, or an error for stderr and the exit code. */
export type Shown = { readonly out: string } | { readonly err: string; readonly code: number };

/** The facts the pictures read, from the record as the CLI shows it. */
export function pathDetails(cb: ShownCallback): PathDetails {
  const ms = (iso: string | null) => (iso === null ? undefined : Date.parse(iso));
  return {
    id: cb.id,
    anchor: cb.anchor,
    status: cb.status as CallbackStatus,
    createdAt: ms(cb.createdAt)!,
    deadlineAt: ms(cb.deadlineAt),
    heartbeatMs: cb.heartbeatMs ?? undefined,
  };
}

/**
 * Stacks SVG documents one above the other in one document (each keeps its own coordinates).
 * Each must start with an `<svg ... width="W" height="H"` root.
 */
export function stackSvg(docs: readonly string[]): string {
  let y = 0;
  let width = 0;
  const parts = docs.map((doc) => {
    const w = svgWidth(doc) ?? 0;
    const h = Number(/^<svg[^>]*\sheight="(\d+)"/.exec(doc)?.[1] ?? 0);
    const placed = doc.trim().replace(/^<svg /, `<svg x="0" y="${y}" `);
    y += h + 12;
    width = Math.max(width, w);
    return placed;
  });
  const height = Math.max(0, y - 12);
  return `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${width} ${height}" width="${width}" height="${height}">\n<rect width="100%" height="100%" fill="#fff"/>\n${parts.join('\n')}\n</svg>\n`;
}

/** The record as `get` prints it in a table. */
function recordTable(cb: ShownCallback): string {
  const rows: [string, string][] = [
    ['id', cb.id],
    ['anchor', cb.anchor],
    ['status', cb.status],
    ['token', cb.tokenHint],
    ['created', cb.createdAt],
    ['deadline', cb.deadlineAt ?? '-'],
    ['remove at', cb.removeAt ?? '-'],
    ['tags', cb.tags.join(', ') || '-'],
    ['parent', cb.parentId ?? '-'],
    ['children', cb.children.join(', ') || '-'],
    ['step error', cb.stepError ? `${cb.stepError.status}: ${cb.stepError.message}` : '-'],
    ['data', JSON.stringify(cb.data)],
  ];
  return table(['field', 'value'], rows);
}

/**
 * Renders one callback for `get`.
 *
 * @param cb - the callback's record.
 * @param history - its history, oldest first, or `undefined` when the store keeps none for it.
 * @param format - `table` (the record), `json` (the record, and its history when there is one),
 *   `text` (the record and the timeline as text), `svg` (its path over its timeline) or
 *   `mermaid` (its path).
 * @param file - the store file, for messages.
 */
export function showCallback(
  cb: ShownCallback,
  history: readonly HistoryEntry[] | undefined,
  format: GetFormat,
  file: string,
): Shown {
  if (format === 'table') return { out: recordTable(cb) };
  if (format === 'json')
    return {
      out: `${JSON.stringify(history === undefined ? cb : { ...cb, history }, null, 2)}\n`,
    };
  if (history === undefined) {
    if (format === 'text')
      return { out: `${recordTable(cb)}\n(${file} keeps no history of this callback)\n` };
    return {
      err: `${file} keeps no history of callback ${cb.id}: --format ${format} draws it from its history (a store written by this version of callback-engine keeps one)\n`,
      code: 1,
    };
  }
  const details = pathDetails(cb);
  if (format === 'text') return { out: `${recordTable(cb)}\n${timelineText(history, details)}` };
  if (format === 'mermaid') return { out: pathMermaid(history, details) };
  const path = pathSvg(history, details);
  // The timeline as wide as the path above it.
  return { out: stackSvg([path, timelineSvg(history, details, { width: svgWidth(path) })]) };
}
