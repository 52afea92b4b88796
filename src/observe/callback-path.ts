/**
 * One callback's path, read from its history: the states it went through,
 * the reports (or timers, cancels, failed steps) that moved it, how often it
 * looped on `progress`, the reports that changed nothing, and its step tries.
 * Drawn on the lifecycle diagram as SVG or Mermaid, to paste into a ticket.
 * Pure functions of the history entries and the callback's details.
 *
 * @module
 */

import type { HistoryEntry, HistoryKind } from '../history.js';
import { spanText } from '../diagrams/describe.js';
import { machineGraph, toMermaid, type DiagramTransition } from '../diagrams/diagram.js';
import { STATUS_EVENT } from '../lifecycle/machine.js';
import { isTerminal, type CallbackStatus } from '../lifecycle/statuses.js';
import { layoutMachine, renderMachineSvg, type BoxLine } from '../diagrams/svg-layout.js';
import type { CallbackDetails } from '../types.js';

/** What the pictures of one callback read besides its history (all optional; `engine.details()` fits). */
export type PathDetails = Partial<
  Pick<CallbackDetails, 'id' | 'anchor' | 'status' | 'createdAt' | 'deadlineAt' | 'heartbeatMs'>
>;

/** One change of status. */
export interface PathMove {
  /** The history entry that made it. */
  readonly seq: number;
  readonly at: number;
  readonly kind: HistoryKind;
  readonly from: CallbackStatus;
  readonly to: CallbackStatus;
  /**
   * What moved it, in words: the reported status (`start`, `complete`, ...), `cancelled`,
   * `deadline` or `heartbeat`, `parent ended`, or `step failed`.
   */
  readonly cause: string;
}

/** A report that changed nothing (a late `accept` or `start`, say). */
export interface IgnoredReport {
  readonly seq: number;
  readonly at: number;
  readonly reported: string;
  /** The status it found (and left). */
  readonly status: CallbackStatus;
}

/** The tries of the step of one status. */
export interface StepTries {
  readonly status: CallbackStatus;
  readonly completed: number;
  readonly failed: number;
  /** Failed tries after which another was scheduled. */
  readonly retried: number;
  /** Times the step ran again after a restart or takeover, with nobody resending. */
  readonly resumed: number;
  /** The last failure's message, if any try failed. */
  readonly lastError: string | undefined;
}

/** One callback's way through the lifecycle. */
export interface CallbackPath {
  /** Statuses it was in, in the order first reached. */
  readonly visited: readonly CallbackStatus[];
  /** Every change of status, in order. */
  readonly moves: readonly PathMove[];
  /** Applied reports that kept the status (`progress` after `progress`), by status. */
  readonly loops: Readonly<Partial<Record<CallbackStatus, number>>>;
  readonly ignored: readonly IgnoredReport[];
  /** Step tries by the status they ran for, in the order first tried. */
  readonly steps: readonly StepTries[];
  /** Its status after the last entry (or the details' status when there are no entries). */
  readonly status: CallbackStatus;
  /** When it was created: its `created` entry's time, else the details' `createdAt`, else its first entry's. */
  readonly startedAt: number | undefined;
}

const CAUSE: Partial<Record<HistoryKind, string>> = {
  cancelled: 'cancelled',
  orphaned: 'parent ended',
  stepFailed: 'step failed',
};

/**
 * Folds a callback's history into its path.
 *
 * @param entries - its history entries, oldest first (as `engine.history()` pages them).
 * @param details - its details, for its creation time and status when the history is empty.
 * @returns the path.
 */
export function callbackPath(
  entries: readonly HistoryEntry[],
  details: PathDetails = {},
): CallbackPath {
  const visited: CallbackStatus[] = [];
  const moves: PathMove[] = [];
  const loops: Partial<Record<CallbackStatus, number>> = {};
  const ignored: IgnoredReport[] = [];
  const steps = new Map<CallbackStatus, { -readonly [K in keyof StepTries]: StepTries[K] }>();
  const tries = (status: CallbackStatus) => {
    let t = steps.get(status);
    if (!t) {
      t = { status, completed: 0, failed: 0, retried: 0, resumed: 0, lastError: undefined };
      steps.set(status, t);
    }
    return t;
  };
  let status: CallbackStatus | undefined;
  const visit = (s: CallbackStatus) => {
    if (!visited.includes(s)) visited.push(s);
  };
  for (const e of entries) {
    // A history starts with `created`; one read from its middle starts where its first entry is.
    const from: CallbackStatus = status ?? (e.kind === 'created' ? e.status : 'create');
    if (status === undefined) visit(from);
    if (e.kind === 'created') {
      // The start, not a move.
    } else if (e.kind === 'reported' && e.outcome === 'ignored') {
      ignored.push({ seq: e.seq, at: e.at, reported: e.reported ?? '?', status: from });
    } else if (e.status !== from) {
      const cause =
        e.kind === 'reported'
          ? (e.reported ?? e.status)
          : e.kind === 'timedOut'
            ? (e.reason ?? 'deadline')
            : (CAUSE[e.kind] ?? e.kind);
      moves.push({ seq: e.seq, at: e.at, kind: e.kind, from, to: e.status, cause });
      visit(e.status);
    } else if (e.kind === 'reported' && e.outcome === 'applied') {
      loops[from] = (loops[from] ?? 0) + 1;
    }
    status = e.status;
    if (e.step === undefined) continue;
    if (e.kind === 'stepCompleted') tries(e.step).completed++;
    else if (e.kind === 'stepFailed') {
      const t = tries(e.step);
      t.failed++;
      t.lastError = e.error;
      if (e.retryAt !== undefined) t.retried++;
    } else if (e.kind === 'stepResumed') tries(e.step).resumed++;
  }
  const final = status ?? details.status ?? 'create';
  if (visited.length === 0) visited.push(final);
  return {
    visited,
    moves,
    loops,
    ignored,
    steps: [...steps.values()],
    status: final,
    startedAt: entries.find((e) => e.kind === 'created')?.at ?? details.createdAt ?? entries[0]?.at,
  };
}

/** The time of `at` after the callback's creation: `+1.5 s`. */
export function sinceStart(path: CallbackPath, at: number): string {
  return path.startedAt === undefined
    ? new Date(at).toISOString()
    : `+${spanText(at - path.startedAt)}`;
}

/** The path as one line: `create → start → progress (×3) → timeout (deadline)`. */
export function pathLine(path: CallbackPath): string {
  const parts = [path.visited[0] ?? path.status] as string[];
  let at = parts[0]!;
  const loop = (s: string) => {
    const n = path.loops[s as CallbackStatus];
    return n ? ` (×${n + 1})` : '';
  };
  parts[0] = `${at}${loop(at)}`;
  for (const m of path.moves) {
    at = m.to;
    const why = isTerminal(m.to) && m.cause !== m.to ? ` (${m.cause})` : '';
    parts.push(`${m.to}${why}${loop(m.to)}`);
  }
  return parts.join(' → ');
}

/** The machine edge a move travels: its source and target state keys. */
function edgeOf(m: { from: CallbackStatus; to: CallbackStatus }): {
  source: string;
  target: string;
} {
  return isTerminal(m.to) && !isTerminal(m.from)
    ? { source: 'active', target: m.to }
    : { source: m.from, target: m.to };
}

/** Annotation lines of one state: when entered, loops, ignored reports, step tries. */
function stateNotes(path: CallbackPath, status: CallbackStatus): string[] {
  const notes: string[] = [];
  const entered = path.moves.find((m) => m.to === status);
  if (entered) notes.push(`entered ${sinceStart(path, entered.at)}`);
  else if (status === path.visited[0] && path.startedAt !== undefined) notes.push('created');
  const loops = path.loops[status];
  if (loops) notes.push(`${loops + 1} ${status} reports`);
  for (const i of path.ignored.filter((x) => x.status === status))
    notes.push(`ignored ${i.reported} ${sinceStart(path, i.at)}`);
  const t = path.steps.find((s) => s.status === status);
  if (t) {
    const parts: string[] = [];
    if (t.failed) parts.push(`${t.failed} failed`);
    if (t.completed) parts.push(`${t.completed} ok`);
    if (t.resumed) parts.push(`${t.resumed} resumed`);
    notes.push(`step: ${parts.join(', ') || 'running'}`);
    if (t.lastError !== undefined) notes.push(`✗ ${t.lastError}`);
  }
  return notes;
}

/** The label of a taken edge: its causes and times. */
function moveLabel(path: CallbackPath, moves: readonly PathMove[]): string {
  return moves.map((m) => `${m.cause} ${sinceStart(path, m.at)}`).join(', ');
}

const PATH_STYLE =
  '.state.visited>rect{fill:#fde7d7;stroke:#c2571a;stroke-width:2}.state.current>rect{fill:#c2571a;stroke:#8a3a0e;stroke-width:2.5}.state.current text{fill:#fff}.state.unvisited>rect{fill:#fafafb;stroke:#c9cdd6}.state.unvisited text{fill:#9aa1b0}.edge.taken{stroke:#c2571a;stroke-width:2.6}.label.taken{fill:#8a3a0e;font-weight:600}.edge.untaken{stroke:#c9cdd6}.label.untaken{fill:#aab0bd}.line.bad{fill:#a4443d}.state.current .line.bad{fill:#ffe2d6}';

/** Options of {@link pathSvg} and {@link pathMermaid}. */
export interface PathPictureOptions {
  /** The title; by default `callback <id> at anchor <anchor>`. */
  readonly title?: string;
}

function titleOf(details: PathDetails, options: PathPictureOptions): string {
  if (options.title !== undefined) return options.title;
  const who = details.id === undefined ? 'callback' : `callback ${details.id}`;
  return details.anchor === undefined ? who : `${who} at anchor ${details.anchor}`;
}

/**
 * The lifecycle diagram with one callback's path drawn on it: the states it visited (its
 * status now filled), the reports, timers and failures that moved it labelled on the edges
 * with their times, loops on `progress` counted, and each state's ignored reports and step
 * tries. Every state box is `<g data-state="<status>">` with class `visited`, `current` or
 * `unvisited`; every edge `<path data-edge="<source>-><target>">` with class `taken` or
 * `untaken`.
 *
 * @param entries - the callback's history, oldest first.
 * @param details - its details (`engine.details()`): id, anchor, creation time, status.
 * @returns a self-contained SVG document.
 */
export function pathSvg(
  entries: readonly HistoryEntry[],
  details: PathDetails = {},
  options: PathPictureOptions = {},
): string {
  const path = callbackPath(entries, details);
  const notes = new Map(path.visited.map((s) => [s, stateNotes(path, s)]));
  const most = Math.max(1, ...[...notes.values()].map((n) => n.length));
  const layout = layoutMachine(machineGraph(), {
    boxWidth: 176,
    boxHeight: 34 + 15 * most,
    gap: 92,
    top: 86,
  });
  const taken = new Map<string, PathMove[]>();
  for (const m of path.moves) {
    const { source, target } = edgeOf(m);
    const k = `${source}|${target}`;
    taken.set(k, [...(taken.get(k) ?? []), m]);
  }
  const keyOf = new Map(layout.graph.states.map((s) => [s.id, s.key]));
  return renderMachineSvg(layout, {
    title: titleOf(details, options),
    subtitle: `${pathLine(path)}${
      path.startedAt === undefined
        ? ''
        : ` · created ${new Date(path.startedAt)
            .toISOString()
            .replace('T', ' ')
            .replace(/\.\d+Z$/, ' UTC')}`
    }`,
    label: `The path of ${titleOf(details, options)}: ${pathLine(path)}`,
    style: PATH_STYLE,
    state: (s) => {
      if (s.type === 'compound') return undefined;
      const status = s.key as CallbackStatus;
      const lines0 = notes.get(status) ?? [];
      const cls =
        status === path.status
          ? 'visited current'
          : path.visited.includes(status)
            ? 'visited'
            : 'unvisited';
      const lines: BoxLine[] = lines0.map((text) => ({
        text,
        className: /failed|✗/.test(text) ? 'bad' : undefined,
      }));
      return { className: cls, lines, ...(lines0.length ? { title: lines0.join('\n') } : {}) };
    },
    edge: (e) => {
      const source = keyOf.get(e.source)!;
      const target = keyOf.get(e.target)!;
      const moves = taken.get(`${source}|${target}`);
      if (moves) return { className: 'taken', tone: 'hi', label: moveLabel(path, moves) };
      const loops = source === target ? path.loops[source as CallbackStatus] : undefined;
      if (loops) return { className: 'taken', tone: 'hi', label: `${source} ×${loops}` };
      return { className: 'untaken', tone: 'dim' };
    },
  });
}

/**
 * The lifecycle diagram with one callback's path, as Mermaid `stateDiagram-v2`: the edges it
 * took labelled with what moved it and when, loops counted, each visited state's ignored
 * reports and step tries as a note, and the visited and current states styled.
 *
 * @param entries - the callback's history, oldest first.
 * @param details - its details (`engine.details()`).
 * @returns the Mermaid text.
 */
export function pathMermaid(
  entries: readonly HistoryEntry[],
  details: PathDetails = {},
  options: PathPictureOptions = {},
): string {
  const path = callbackPath(entries, details);
  const graph = machineGraph();
  const keyOf = new Map(graph.states.map((s) => [s.id, s.key]));
  const label = (t: DiagramTransition) => {
    const source = keyOf.get(t.source)!;
    const target = keyOf.get(t.target)!;
    const moves = path.moves.filter((m) => {
      const e = edgeOf(m);
      return (
        e.source === source &&
        e.target === target &&
        STATUS_EVENT[m.to as keyof typeof STATUS_EVENT] === t.event
      );
    });
    if (moves.length) return `${t.event} ⇐ ${moveLabel(path, moves)}`;
    const loops =
      source === target && !t.event.startsWith('MERGE')
        ? path.loops[source as CallbackStatus]
        : undefined;
    return loops ? `${t.event} ⇐ ${source} ×${loops}` : t.event;
  };
  const notes: Record<string, string[]> = {};
  for (const s of path.visited) notes[s] = stateNotes(path, s);
  return toMermaid(undefined, {
    title: `${titleOf(details, options)}: ${pathLine(path)}`,
    label,
    notes,
    classDefs: {
      visited: 'fill:#fde7d7,stroke:#c2571a,stroke-width:2px',
      current: 'fill:#c2571a,stroke:#8a3a0e,stroke-width:3px,color:#fff',
    },
    classes: {
      visited: path.visited.filter((s) => s !== path.status),
      current: [path.status],
    },
  });
}
