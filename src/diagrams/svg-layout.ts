/**
 * Lays a state machine out for SVG and draws it: one layout (compound states
 * as boxes around their children, left to right; the other top-level states
 * in a row below) shared by every picture of the lifecycle, each of which
 * decorates the same boxes and edges differently (live counts, an anchor's
 * steps, one callback's path).
 *
 * @module
 */

import type { DiagramState, MachineGraph } from './graph.js';

/** A box on the canvas. */
export interface Box {
  readonly x: number;
  readonly y: number;
  readonly w: number;
  readonly h: number;
}

/** One drawn edge: every transition between the same two states, with its geometry. */
export interface EdgeShape {
  readonly source: string;
  readonly target: string;
  /** The events of the transitions it stands for, in definition order. */
  readonly events: readonly string[];
  /** The SVG path data. */
  readonly path: string;
  /** Where its label goes. */
  readonly label: { readonly x: number; readonly y: number; readonly anchor: 'start' | 'middle' };
}

/** A machine laid out: boxes by state id, edges, and the canvas size. */
export interface MachineLayout {
  readonly graph: MachineGraph;
  readonly boxes: ReadonlyMap<string, Box>;
  readonly edges: readonly EdgeShape[];
  readonly width: number;
  readonly height: number;
}

/** Sizes of a layout. */
export interface LayoutOptions {
  /** Width of a state box. @default 112 */
  readonly boxWidth?: number;
  /** Height of a state box. @default 54 */
  readonly boxHeight?: number;
  /** Room between two boxes of a row (edge labels go there). @default 78 */
  readonly gap?: number;
  /** Room above the first row (a title). @default 44 */
  readonly top?: number;
}

/**
 * Lays a machine graph out.
 *
 * @param graph - the machine's states and transitions (`machineGraph()`).
 * @param options - box sizes, gaps, room for a title.
 * @returns boxes, edges with their label positions, and the canvas size.
 */
export function layoutMachine(graph: MachineGraph, options: LayoutOptions = {}): MachineLayout {
  const W = options.boxWidth ?? 112;
  const H = options.boxHeight ?? 54;
  const GAP = options.gap ?? 78;
  const PAD = 26;
  // Room under a compound's children for arcs that skip over a sibling.
  const ARCS = 64;
  const boxes = new Map<string, Box>();
  const top = graph.states.filter((s) => s.parent === undefined);
  const compounds = top.filter((s) => s.type === 'compound');
  const leaves = top.filter((s) => s.type !== 'compound');
  let y = options.top ?? 44;
  let width = 0;
  // Row 1: compound states with their children.
  let x = 20;
  for (const c of compounds) {
    const kids = graph.states.filter((s) => s.parent === c.id);
    const w = Math.max(W, kids.length * W + (kids.length - 1) * GAP + 2 * PAD);
    boxes.set(c.id, { x, y, w, h: H + 2 * PAD + 18 + ARCS });
    kids.forEach((k, i) =>
      boxes.set(k.id, { x: x + PAD + i * (W + GAP), y: y + PAD + 18, w: W, h: H }),
    );
    x += w + GAP;
  }
  width = Math.max(width, x);
  if (compounds.length) y += H + 2 * PAD + 18 + ARCS + 90;
  // Row 2: the top-level atomic and final states, centred under row 1.
  const rowW = leaves.length * W + (leaves.length - 1) * GAP;
  const start = Math.max(20, (width - rowW) / 2);
  leaves.forEach((s, i) => boxes.set(s.id, { x: start + i * (W + GAP), y, w: W, h: H }));
  width = Math.max(width, start + rowW + 20);
  const height = y + H + 30;

  const center = (b: Box) => ({ cx: b.x + b.w / 2, cy: b.y + b.h / 2 });
  const pairs = new Map<string, string[]>();
  for (const t of graph.transitions) {
    const k = `${t.source}|${t.target}`;
    pairs.set(k, [...(pairs.get(k) ?? []), t.event]);
  }
  const edges: EdgeShape[] = [];
  for (const [k, events] of pairs) {
    const [source, target] = k.split('|') as [string, string];
    const a = boxes.get(source);
    const b = boxes.get(target);
    if (!a || !b) continue;
    if (source === target) {
      const { cx } = center(a);
      edges.push({
        source,
        target,
        events,
        path: `M${cx - 16},${a.y} C${cx - 30},${a.y - 34} ${cx + 30},${a.y - 34} ${cx + 16},${a.y}`,
        label: { x: cx, y: a.y - 30, anchor: 'middle' },
      });
      continue;
    }
    const ca = center(a);
    const cb = center(b);
    if (a.y === b.y && Math.abs(ca.cx - cb.cx) > a.w + GAP + 1) {
      // Same row, skipping boxes: an arc underneath, deeper for longer spans.
      const depth = 14 + (Math.abs(ca.cx - cb.cx) / (W + GAP)) * 12;
      const x1 = ca.cx + (cb.cx > ca.cx ? 12 : -12);
      const x2 = cb.cx - (cb.cx > ca.cx ? 12 : -12);
      const by = a.y + a.h;
      edges.push({
        source,
        target,
        events,
        path: `M${x1},${by} C${x1},${by + depth * 1.6} ${x2},${by + depth * 1.6} ${x2},${by}`,
        label: { x: (x1 + x2) / 2, y: by + depth * 1.2 + 12, anchor: 'middle' },
      });
      continue;
    }
    const down = b.y > a.y + a.h;
    const x1 = ca.cx < cb.cx ? a.x + a.w : a.x;
    const y1 = down ? a.y + a.h : ca.cy;
    const x2 = down ? cb.cx : ca.cx < cb.cx ? b.x : b.x + b.w;
    const y2 = down ? b.y : cb.cy;
    const sx = down ? Math.min(Math.max(cb.cx, a.x + 10), a.x + a.w - 10) : x1;
    edges.push({
      source,
      target,
      events,
      path: `M${sx},${y1} L${x2},${y2}`,
      label: {
        x: (sx + x2) / 2 + (down ? 4 : 0),
        y: (y1 + y2) / 2 - 5,
        anchor: down ? 'start' : 'middle',
      },
    });
  }
  return { graph, boxes, edges, width, height };
}

/** The width of an SVG document's root element (`width="..."`), or `undefined`. */
export function svgWidth(svg: string): number | undefined {
  const m = /^<svg[^>]*\swidth="(\d+(?:\.\d+)?)"/.exec(svg);
  return m ? Number(m[1]) : undefined;
}

/** Escapes text for SVG and HTML. */
export const esc = (s: string): string =>
  s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/**
 * Cuts text to about `px` pixels at `fontPx` (an average glyph of a sans-serif text is about
 * 0.56 em wide), ending with `…` when cut.
 */
export function fit(text: string, px: number, fontPx: number): string {
  const max = Math.max(1, Math.floor(px / (fontPx * 0.56)));
  return text.length <= max ? text : `${text.slice(0, Math.max(0, max - 1))}…`;
}

/** A line of text in a state box, under its name. */
export interface BoxLine {
  readonly text: string;
  /** CSS class of the line. */
  readonly className?: string | undefined;
  /** Makes the line the live count slot of this state key (`<tspan data-count-for>`). */
  readonly countFor?: string | undefined;
}

/** How one state is drawn. */
export interface StateDecoration {
  /** Extra CSS classes of its group. */
  readonly className?: string | undefined;
  /** Lines under its name (cut to the box's width; the full text is in the tooltip). */
  readonly lines?: readonly BoxLine[] | undefined;
  /** A tooltip. */
  readonly title?: string | undefined;
}

/** How one edge is drawn. */
export interface EdgeDecoration {
  /** Extra CSS classes of the edge and its label. */
  readonly className?: string | undefined;
  /** Its arrowhead: the default grey, highlighted or faded. */
  readonly tone?: 'hi' | 'dim' | undefined;
  /** Its label; the events by default. */
  readonly label?: string | undefined;
  /** A tooltip. */
  readonly title?: string | undefined;
}

/** What {@link renderMachineSvg} draws around the machine. */
export interface RenderOptions {
  /** Bold text above the diagram. */
  readonly title?: string | undefined;
  /** A muted line under the title. */
  readonly subtitle?: string | undefined;
  /** Decorations by state. */
  readonly state?: ((state: DiagramState) => StateDecoration | undefined) | undefined;
  /** Decorations by edge. */
  readonly edge?: ((edge: EdgeShape) => EdgeDecoration | undefined) | undefined;
  /** Extra CSS rules. */
  readonly style?: string | undefined;
  /** SVG drawn below the machine (y from 0 at its top), and its height. */
  readonly below?: { readonly svg: string; readonly height: number; readonly width?: number };
  /** The picture's accessible name. */
  readonly label?: string | undefined;
}

const marker = (id: string, fill: string) =>
  `<marker id="${id}" viewBox="0 0 10 10" refX="9" refY="5" markerUnits="userSpaceOnUse" markerWidth="9" markerHeight="9" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="${fill}"/></marker>`;
const MARKERS = `${marker('arrow', '#555')}${marker('arrow-hi', '#c2571a')}${marker('arrow-dim', '#b9bfcc')}`;

const BASE_STYLE =
  '.state>rect{fill:#f4f6fb;stroke:#3d5a99;stroke-width:1.5}.final>rect{fill:#fbf4f4;stroke:#99443d}.compound>rect{fill:none;stroke:#8892a6;stroke-dasharray:5 4}.edge{stroke:#555;fill:none;stroke-width:1.2}.label{fill:#333;font-size:11px}.count{font-weight:600;fill:#1d2b4f}.line{font-size:11px;fill:#333}.muted{fill:#6b7385}';

/**
 * Draws a laid-out machine as a self-contained SVG (no scripts, no external resources). Every
 * state box is a `<g data-state="<key>">`; every edge a `<path data-edge="<source>-><target>">`.
 */
export function renderMachineSvg(layout: MachineLayout, options: RenderOptions = {}): string {
  const { graph, boxes } = layout;
  const belowH = options.below?.height ?? 0;
  const width = Math.ceil(Math.max(layout.width, options.below?.width ?? 0));
  const height = Math.ceil(layout.height + belowH);
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${width} ${height}" width="${width}" height="${height}" font-family="system-ui, sans-serif" font-size="13"${options.label ? ` role="img" aria-label="${esc(options.label)}"` : ''}>`,
    `<defs>${MARKERS}</defs>`,
    `<style>${BASE_STYLE}${options.style ?? ''}</style>`,
    // Opaque, so that it reads on a dark page too.
    '<rect width="100%" height="100%" fill="#fff"/>',
  );
  if (options.title)
    out.push(`<text x="20" y="26" font-size="16" font-weight="600">${esc(options.title)}</text>`);
  if (options.subtitle)
    out.push(`<text x="20" y="44" class="line muted">${esc(options.subtitle)}</text>`);
  const key = (id: string) => graph.states.find((s) => s.id === id)?.key ?? id;
  // Edges first, boxes on top; labels last so no box hides them.
  const labels: string[] = [];
  for (const e of layout.edges) {
    const d = options.edge?.(e);
    const cls = d?.className ? ` ${d.className}` : '';
    const title = d?.title ? `<title>${esc(d.title)}</title>` : '';
    out.push(
      `<path class="edge${cls}" data-edge="${esc(key(e.source))}->${esc(key(e.target))}" marker-end="url(#arrow${d?.tone ? `-${d.tone}` : ''})" d="${e.path}">${title}</path>`,
    );
    const label = d?.label ?? e.events.join(', ');
    if (label) {
      // Several lines go down from the label's place (up, for a self-loop's label above a box).
      const parts = label.split('\n');
      const y0 = e.source === e.target ? e.label.y - 13 * (parts.length - 1) : e.label.y;
      const body = parts
        .map((p, i) => `<tspan x="${e.label.x}" dy="${i === 0 ? 0 : 13}">${esc(p)}</tspan>`)
        .join('');
      labels.push(
        `<text class="label${cls}" x="${e.label.x}" y="${y0}" text-anchor="${e.label.anchor}">${parts.length === 1 ? esc(label) : body}${title}</text>`,
      );
    }
  }
  for (const s of graph.states) {
    const b = boxes.get(s.id);
    if (!b) continue;
    const d = options.state?.(s);
    const base = s.type === 'compound' ? 'compound' : s.type === 'final' ? 'state final' : 'state';
    const cls = d?.className ? `${base} ${d.className}` : base;
    out.push(
      `<g class="${cls}" data-state="${esc(s.key)}">${d?.title ? `<title>${esc(d.title)}</title>` : ''}<rect x="${b.x}" y="${b.y}" width="${b.w}" height="${b.h}" rx="10"/>`,
    );
    if (s.type === 'compound') {
      out.push(`<text x="${b.x + 12}" y="${b.y + 20}" font-weight="600">${esc(s.key)}</text>`);
      (d?.lines ?? []).forEach((l, i) =>
        out.push(
          `<text x="${b.x + 12 + 8 * s.key.length + 14}" y="${b.y + 20 + i * 15}" class="line ${l.className ?? ''}">${esc(fit(l.text, b.w - 40 - 8 * s.key.length, 11))}</text>`,
        ),
      );
    } else {
      const cx = b.x + b.w / 2;
      out.push(`<text x="${cx}" y="${b.y + 22}" text-anchor="middle">${esc(s.key)}</text>`);
      (d?.lines ?? []).forEach((l, i) => {
        const y = b.y + 38 + i * 15;
        if (l.countFor !== undefined)
          out.push(
            `<text x="${cx}" y="${y + 4}" text-anchor="middle" class="count"><tspan data-count-for="${esc(l.countFor)}">${esc(l.text)}</tspan></text>`,
          );
        else
          out.push(
            `<text x="${cx}" y="${y}" text-anchor="middle" class="line ${l.className ?? ''}">${esc(fit(l.text, b.w - 10, 11))}</text>`,
          );
      });
    }
    out.push('</g>');
  }
  out.push(...labels);
  // Initial-state markers.
  for (const s of graph.states.filter((x) => x.initial)) {
    const child = graph.states.find((c) => c.parent === s.id && c.key === s.initial);
    const b = child && boxes.get(child.id);
    if (b)
      out.push(
        `<circle cx="${b.x - 14}" cy="${b.y + b.h / 2}" r="5" fill="#333"/><path class="edge" marker-end="url(#arrow)" d="M${b.x - 9},${b.y + b.h / 2} L${b.x},${b.y + b.h / 2}"/>`,
      );
  }
  if (options.below)
    out.push(`<g transform="translate(0 ${Math.ceil(layout.height)})">${options.below.svg}</g>`);
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
