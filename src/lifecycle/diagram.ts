/**
 * Diagrams of a state machine, read from the machine itself (never a
 * hand-drawn copy): Mermaid `stateDiagram-v2`, a self-contained SVG whose
 * state boxes carry live counts, and the machine's JSON for Stately tools.
 *
 * @module
 */

import type { AnyStateMachine } from 'xstate';
import { lifecycleMachine } from './machine.js';

/** A state of the machine. */
export interface DiagramState {
  /** Full id, e.g. `callback.active.progress`. */
  readonly id: string;
  /** Key within its parent, e.g. `progress`. */
  readonly key: string;
  /** Parent id; `undefined` for top-level states. */
  readonly parent: string | undefined;
  readonly type: 'atomic' | 'compound' | 'parallel' | 'final' | 'history';
  /** For compound states: the key of the initial child. */
  readonly initial: string | undefined;
}

/** A transition of the machine. */
export interface DiagramTransition {
  readonly source: string;
  readonly event: string;
  /** Target state id; equals `source` for a targetless (internal) transition. */
  readonly target: string;
  /** Targetless: actions run, the state is not left. */
  readonly internal: boolean;
}

/** States and transitions of a machine, in definition order. */
export interface MachineGraph {
  readonly id: string;
  readonly states: readonly DiagramState[];
  readonly transitions: readonly DiagramTransition[];
}

interface StateNodeLike {
  id: string;
  key: string;
  type: DiagramState['type'];
  states: Record<string, StateNodeLike>;
  initial?: { target?: readonly { key: string }[] } | undefined;
  transitions: Map<string, readonly { target?: readonly { id: string }[] | undefined }[]>;
}

/**
 * Reads every state and transition of a machine.
 *
 * @param machine - an XState v5 machine; defaults to the callback lifecycle.
 */
export function machineGraph(machine: AnyStateMachine = lifecycleMachine): MachineGraph {
  const states: DiagramState[] = [];
  const transitions: DiagramTransition[] = [];
  const root = machine.root as unknown as StateNodeLike;
  const walk = (node: StateNodeLike, parent: string | undefined) => {
    for (const child of Object.values(node.states)) {
      states.push({
        id: child.id,
        key: child.key,
        parent,
        type: child.type,
        initial: child.type === 'compound' ? child.initial?.target?.[0]?.key : undefined,
      });
      for (const [event, defs] of child.transitions) {
        for (const def of defs) {
          const targets = def.target ?? [];
          if (targets.length === 0)
            transitions.push({ source: child.id, event, target: child.id, internal: true });
          for (const t of targets)
            transitions.push({ source: child.id, event, target: t.id, internal: false });
        }
      }
      walk(child, child.id);
    }
  };
  walk(root, undefined);
  return { id: root.id, states, transitions };
}

const short = (graph: MachineGraph, id: string) => graph.states.find((s) => s.id === id)?.key ?? id;

/**
 * The machine as a Mermaid `stateDiagram-v2`.
 *
 * @example
 * ```ts
 * console.log(toMermaid()); // paste into any Mermaid renderer
 * ```
 */
export function toMermaid(machine: AnyStateMachine = lifecycleMachine): string {
  const graph = machineGraph(machine);
  const root = machine.root as unknown as StateNodeLike;
  const lines = ['stateDiagram-v2'];
  const emit = (parent: string | undefined, indent: string, initial: string | undefined) => {
    if (initial) lines.push(`${indent}[*] --> ${initial}`);
    for (const s of graph.states.filter((x) => x.parent === parent)) {
      if (s.type === 'compound') {
        lines.push(`${indent}state ${s.key} {`);
        emit(s.id, `${indent}  `, s.initial);
        lines.push(`${indent}}`);
      }
    }
    for (const t of graph.transitions) {
      const source = graph.states.find((s) => s.id === t.source);
      if (!source || source.parent !== parent) continue;
      lines.push(`${indent}${source.key} --> ${short(graph, t.target)}: ${t.event}`);
    }
    for (const s of graph.states.filter((x) => x.parent === parent && x.type === 'final')) {
      lines.push(`${indent}${s.key} --> [*]`);
    }
  };
  emit(undefined, '  ', root.initial?.target?.[0]?.key);
  return `${lines.join('\n')}\n`;
}

/** The machine's JSON definition, for Stately tools. */
export function toStatelyJson(machine: AnyStateMachine = lifecycleMachine): unknown {
  return machine.toJSON();
}

/** Options of {@link toSvg}. */
export interface SvgOptions {
  /** A count to show in each state box, by state key (e.g. callbacks per status). */
  counts?: Readonly<Record<string, number>>;
  /** Title drawn above the diagram. */
  title?: string;
}

interface Box {
  x: number;
  y: number;
  w: number;
  h: number;
}

const esc = (s: string) =>
  s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/**
 * The machine as a self-contained SVG (no scripts, no external resources).
 * Compound states are boxes around their children, laid out left to right;
 * top-level atomic and final states form the row below. Every state box has
 * `data-state="<key>"` and a `<tspan data-count-for="<key>">` the live
 * dashboard updates.
 */
export function toSvg(
  machine: AnyStateMachine = lifecycleMachine,
  options: SvgOptions = {},
): string {
  const graph = machineGraph(machine);
  const W = 112;
  const H = 54;
  const GAP = 78;
  const PAD = 26;
  // Room under a compound's children for arcs that skip over a sibling.
  const ARCS = 64;
  const boxes = new Map<string, Box>();
  const top = graph.states.filter((s) => s.parent === undefined);
  const compounds = top.filter((s) => s.type === 'compound');
  const leaves = top.filter((s) => s.type !== 'compound');
  // Room above the first row for self-loops on compound states.
  let y = options.title ? 64 : 44;
  let width = 0;
  // Row 1: compound states with their children.
  let x = 20;
  for (const c of compounds) {
    const kids = graph.states.filter((s) => s.parent === c.id);
    const w = Math.max(W, kids.length * W + (kids.length - 1) * GAP + 2 * PAD);
    const box = { x, y, w, h: H + 2 * PAD + 18 + ARCS };
    boxes.set(c.id, box);
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

  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${Math.ceil(width)} ${Math.ceil(height)}" width="${Math.ceil(width)}" height="${Math.ceil(height)}" font-family="system-ui, sans-serif" font-size="13">`,
    '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>',
    '<style>.state rect{fill:#f4f6fb;stroke:#3d5a99;stroke-width:1.5}.final rect{fill:#fbf4f4;stroke:#99443d}.compound>rect{fill:none;stroke:#8892a6;stroke-dasharray:5 4}.edge{stroke:#555;fill:none;stroke-width:1.2}.label{fill:#333;font-size:11px}.count{font-weight:600;fill:#1d2b4f}</style>',
  );
  if (options.title)
    out.push(`<text x="20" y="28" font-size="16" font-weight="600">${esc(options.title)}</text>`);
  const center = (b: Box) => ({ cx: b.x + b.w / 2, cy: b.y + b.h / 2 });
  // Edges first, boxes on top.
  const pairs = new Map<string, string[]>();
  for (const t of graph.transitions) {
    const k = `${t.source}|${t.target}`;
    pairs.set(k, [...(pairs.get(k) ?? []), t.event]);
  }
  for (const [k, events] of pairs) {
    const [source, target] = k.split('|') as [string, string];
    const a = boxes.get(source);
    const b = boxes.get(target);
    if (!a || !b) continue;
    const label = esc(events.join(', '));
    if (source === target) {
      const { cx } = center(a);
      out.push(
        `<path class="edge" marker-end="url(#arrow)" d="M${cx - 16},${a.y} C${cx - 30},${a.y - 34} ${cx + 30},${a.y - 34} ${cx + 16},${a.y}"/>`,
        `<text class="label" x="${cx}" y="${a.y - 30}" text-anchor="middle">${label}</text>`,
      );
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
      out.push(
        `<path class="edge" marker-end="url(#arrow)" d="M${x1},${by} C${x1},${by + depth * 1.6} ${x2},${by + depth * 1.6} ${x2},${by}"/>`,
        `<text class="label" x="${(x1 + x2) / 2}" y="${by + depth * 1.2 + 12}" text-anchor="middle">${label}</text>`,
      );
      continue;
    }
    const down = b.y > a.y + a.h;
    const x1 = ca.cx < cb.cx ? a.x + a.w : a.x;
    const y1 = down ? a.y + a.h : ca.cy;
    const x2 = down ? cb.cx : ca.cx < cb.cx ? b.x : b.x + b.w;
    const y2 = down ? b.y : cb.cy;
    const sx = down ? Math.min(Math.max(cb.cx, a.x + 10), a.x + a.w - 10) : x1;
    out.push(
      `<path class="edge" marker-end="url(#arrow)" d="M${sx},${y1} L${x2},${y2}"/>`,
      `<text class="label" x="${(sx + x2) / 2 + (down ? 4 : 0)}" y="${(y1 + y2) / 2 - 5}" text-anchor="${down ? 'start' : 'middle'}">${label}</text>`,
    );
  }
  for (const s of graph.states) {
    const b = boxes.get(s.id);
    if (!b) continue;
    const cls = s.type === 'compound' ? 'compound' : s.type === 'final' ? 'state final' : 'state';
    out.push(
      `<g class="${cls}" data-state="${esc(s.key)}"><rect x="${b.x}" y="${b.y}" width="${b.w}" height="${b.h}" rx="10"/>`,
    );
    if (s.type === 'compound') {
      out.push(`<text x="${b.x + 12}" y="${b.y + 20}" font-weight="600">${esc(s.key)}</text>`);
    } else {
      const count = options.counts?.[s.key] ?? 0;
      out.push(
        `<text x="${b.x + b.w / 2}" y="${b.y + 22}" text-anchor="middle">${esc(s.key)}</text>`,
        `<text x="${b.x + b.w / 2}" y="${b.y + 42}" text-anchor="middle" class="count"><tspan data-count-for="${esc(s.key)}">${count}</tspan></text>`,
      );
    }
    out.push('</g>');
  }
  // Initial-state markers.
  for (const s of graph.states.filter((x) => x.initial)) {
    const child = graph.states.find((c) => c.parent === s.id && c.key === s.initial);
    const b = child && boxes.get(child.id);
    if (b)
      out.push(
        `<circle cx="${b.x - 14}" cy="${b.y + b.h / 2}" r="5" fill="#333"/><path class="edge" marker-end="url(#arrow)" d="M${b.x - 9},${b.y + b.h / 2} L${b.x},${b.y + b.h / 2}"/>`,
      );
  }
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
