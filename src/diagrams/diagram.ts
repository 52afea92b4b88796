/**
 * Diagrams of a state machine, read from the machine itself (never a
 * hand-drawn copy): Mermaid `stateDiagram-v2`, a self-contained SVG whose
 * state boxes carry live counts, and a machine config (JSON) that
 * `createMachine()` and Stately Studio read back.
 *
 * @module
 */

import type { AnyStateMachine } from 'xstate';
import { lifecycleMachine } from '../lifecycle/machine.js';
import {
  machineGraph,
  type DiagramTransition,
  type MachineGraph,
  type StateNodeLike,
} from './graph.js';
import { layoutMachine, renderMachineSvg } from './svg-layout.js';

export { machineGraph } from './graph.js';
export type { DiagramState, DiagramTransition, MachineGraph } from './graph.js';

const short = (graph: MachineGraph, id: string) => graph.states.find((s) => s.id === id)?.key ?? id;

/** Decorations of {@link toMermaid}: edge labels, notes, styles, a title. */
export interface MermaidOptions {
  /** A title (Mermaid front matter). */
  readonly title?: string | undefined;
  /** The label of a transition's edge; the event by default. */
  readonly label?: ((transition: DiagramTransition) => string) | undefined;
  /** Lines of a note beside a state, by state key. */
  readonly notes?: Readonly<Record<string, readonly string[]>> | undefined;
  /** `classDef` styles by class name, e.g. `{ visited: 'fill:#fde7d7' }`. */
  readonly classDefs?: Readonly<Record<string, string>> | undefined;
  /** The state keys of each class. */
  readonly classes?: Readonly<Record<string, readonly string[]>> | undefined;
}

/**
 * Text safe inside a Mermaid label or note: one line, without the characters that end a
 * statement or open a block (`;`, `{`, `}`) and with `#` written as Mermaid's entity.
 */
export function mermaidText(text: string): string {
  return text
    .replace(/[\r\n]+/g, ' ')
    .replace(/;/g, ',')
    .replace(/#/g, '#35;')
    .replace(/[{]/g, '(')
    .replace(/[}]/g, ')');
}

/**
 * The machine as a Mermaid `stateDiagram-v2`.
 *
 * @param machine - an XState v5 machine; defaults to the callback lifecycle.
 * @param options - edge labels, notes beside states, styles and a title.
 * @example
 * ```ts
 * console.log(toMermaid()); // paste into any Mermaid renderer
 * ```
 */
export function toMermaid(
  machine: AnyStateMachine = lifecycleMachine,
  options: MermaidOptions = {},
): string {
  const graph = machineGraph(machine);
  const root = machine.root as unknown as StateNodeLike;
  const lines = options.title
    ? ['---', `title: ${JSON.stringify(mermaidText(options.title))}`, '---', 'stateDiagram-v2']
    : ['stateDiagram-v2'];
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
      const label = options.label ? mermaidText(options.label(t)) : t.event;
      lines.push(`${indent}${source.key} --> ${short(graph, t.target)}: ${label}`);
    }
    for (const s of graph.states.filter((x) => x.parent === parent && x.type === 'final')) {
      lines.push(`${indent}${s.key} --> [*]`);
    }
    for (const s of graph.states.filter((x) => x.parent === parent)) {
      const note = options.notes?.[s.key];
      if (!note?.length) continue;
      lines.push(`${indent}note right of ${s.key}`);
      for (const l of note) lines.push(`${indent}  ${mermaidText(l)}`);
      lines.push(`${indent}end note`);
    }
  };
  emit(undefined, '  ', root.initial?.target?.[0]?.key);
  for (const [name, style] of Object.entries(options.classDefs ?? {}))
    lines.push(`  classDef ${name} ${style}`);
  for (const [name, keys] of Object.entries(options.classes ?? {}))
    if (keys.length > 0) lines.push(`  class ${keys.join(',')} ${name}`);
  return `${lines.join('\n')}\n`;
}

/** A transition in a machine config: a target and actions, as `createMachine()` takes it. */
export interface TransitionConfigJson {
  /** A sibling's key, or `#<state id>` for any other state; absent: the state is not left. */
  readonly target?: string;
  readonly actions?: readonly string[];
  readonly description?: string;
}

/** A state in a machine config. */
export interface StateConfigJson {
  readonly type?: 'final' | 'parallel' | 'history';
  readonly initial?: string;
  readonly description?: string;
  readonly meta?: Readonly<Record<string, unknown>>;
  readonly on?: Readonly<Record<string, TransitionConfigJson | readonly TransitionConfigJson[]>>;
  readonly states?: Readonly<Record<string, StateConfigJson>>;
}

/**
 * A machine config as JSON, the shape `createMachine()` takes and Stately Studio imports
 * (pasted as `createMachine(<this JSON>)`).
 */
export interface MachineConfigJson extends StateConfigJson {
  readonly id: string;
  readonly context?: Readonly<Record<string, unknown>>;
}

/** Options of {@link toMachineConfig}. */
export interface MachineConfigOptions {
  /** A description per state key (Stately Studio shows it on the state). */
  readonly descriptions?: Readonly<Record<string, string>>;
  /** `meta` per state key (kept by `createMachine()`; must be JSON). */
  readonly meta?: Readonly<Record<string, Readonly<Record<string, unknown>>>>;
  /** The machine's own description. */
  readonly description?: string;
  /** A JSON context to start from. @default `{ data: {} }` for the lifecycle, else none */
  readonly context?: Readonly<Record<string, unknown>>;
}

/** What each status means (for the lifecycle's state descriptions). */
export const STATUS_DESCRIPTIONS: Readonly<Record<string, string>> = Object.freeze({
  active: 'The callback waits for its outside party; reports move it forward only.',
  create: 'Created; the outside work is not acknowledged yet.',
  accept: 'The outside party accepted the request and has not started.',
  start: 'The outside work started.',
  progress:
    'The outside work reports progress; every report merges its data and runs the step again.',
  complete: 'The outside work finished.',
  error: 'The outside work failed, or a step failed for good.',
  cancel: 'The caller cancelled.',
  timeout: 'The deadline or the heartbeat window passed while active.',
  orphan: 'The parent callback ended while this one was active.',
});

interface TransitionLike {
  target?: readonly { id: string }[] | undefined;
  actions?: readonly unknown[];
  description?: string | undefined;
}

const actionName = (a: unknown): string | undefined =>
  typeof a === 'string'
    ? a
    : typeof a === 'object' && a !== null && typeof (a as { type?: unknown }).type === 'string'
      ? (a as { type: string }).type
      : typeof a === 'function'
        ? ((a as { type?: string }).type ?? (a.name || undefined))
        : undefined;

/**
 * The machine as a config that `createMachine()` accepts and Stately Studio imports: states,
 * initial states, final states and every transition with its target and named actions, read
 * from the machine itself. Inline functions (the context factory, inline actions) cannot be
 * JSON: actions keep their names (provide them with `machine.provide()`), and the context is
 * a JSON starting value.
 *
 * @param machine - an XState v5 machine; defaults to the callback lifecycle.
 * @param options - descriptions and `meta` by state key, a starting context.
 * @returns the config, as plain JSON.
 * @example
 * ```ts
 * const copy = createMachine(toMachineConfig()); // the same states and transitions
 * ```
 */
export function toMachineConfig(
  machine: AnyStateMachine = lifecycleMachine,
  options: MachineConfigOptions = {},
): MachineConfigJson {
  const root = machine.root as unknown as StateNodeLike;
  const byId = new Map<string, StateNodeLike>();
  const index = (n: StateNodeLike) => {
    byId.set(n.id, n);
    for (const c of Object.values(n.states)) index(c);
  };
  index(root);
  const targetOf = (from: StateNodeLike, id: string): string => {
    const to = byId.get(id);
    // A sibling by its key (the form people write); anything else by its id.
    return to && from.parent && to.parent === from.parent ? to.key : `#${id}`;
  };
  const node = (n: StateNodeLike): StateConfigJson => {
    const out: {
      -readonly [K in keyof StateConfigJson]: StateConfigJson[K];
    } = {};
    if (n.type === 'final' || n.type === 'parallel' || n.type === 'history') out.type = n.type;
    const initial = n.type === 'compound' ? n.initial?.target?.[0]?.key : undefined;
    if (initial !== undefined) out.initial = initial;
    const description = options.descriptions?.[n.key];
    if (description !== undefined) out.description = description;
    const meta = options.meta?.[n.key];
    if (meta !== undefined) out.meta = JSON.parse(JSON.stringify(meta)) as Record<string, unknown>;
    const on: Record<string, TransitionConfigJson | TransitionConfigJson[]> = {};
    for (const [event, defs] of n.transitions) {
      const list = (defs as readonly TransitionLike[]).map((d) => {
        const t: { -readonly [K in keyof TransitionConfigJson]: TransitionConfigJson[K] } = {};
        const target = d.target?.[0];
        if (target) t.target = targetOf(n, target.id);
        const actions = (d.actions ?? []).map(actionName).filter((a) => a !== undefined);
        if (actions.length > 0) t.actions = actions;
        if (d.description) t.description = d.description;
        return t;
      });
      on[event] = list.length === 1 ? list[0]! : list;
    }
    if (Object.keys(on).length > 0) out.on = on;
    const kids = Object.values(n.states);
    if (kids.length > 0) out.states = Object.fromEntries(kids.map((c) => [c.key, node(c)]));
    return out;
  };
  const rest = node(root);
  const context = options.context ?? (machine === lifecycleMachine ? { data: {} } : undefined);
  return {
    id: root.id,
    ...(options.description !== undefined ? { description: options.description } : {}),
    ...(context !== undefined ? { context } : {}),
    ...rest,
  };
}

/**
 * The machine config for Stately tools: {@link toMachineConfig} with a description on every
 * state of the lifecycle. `createMachine()` accepts it; Stately Studio imports it pasted as
 * `createMachine(<this JSON>)`.
 */
export function toStatelyJson(machine: AnyStateMachine = lifecycleMachine): MachineConfigJson {
  return toMachineConfig(
    machine,
    machine === lifecycleMachine
      ? {
          descriptions: STATUS_DESCRIPTIONS,
          description:
            'The lifecycle of one callback: reports from its outside party move it forward through the active statuses to one final status.',
        }
      : {},
  );
}

/** Options of {@link toSvg}. */
export interface SvgOptions {
  /** A count to show in each state box, by state key (e.g. callbacks per status). */
  counts?: Readonly<Record<string, number>>;
  /** Title drawn above the diagram. */
  title?: string;
}

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
  const layout = layoutMachine(machineGraph(machine), { top: options.title ? 64 : 44 });
  return renderMachineSvg(layout, {
    title: options.title,
    state: (s) =>
      s.type === 'compound'
        ? undefined
        : { lines: [{ text: String(options.counts?.[s.key] ?? 0), countFor: s.key }] },
  });
}
