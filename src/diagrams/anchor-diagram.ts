/**
 * One anchor's diagram: the lifecycle annotated with what this anchor does on
 * each status: the step that runs and the `next` entry it comes from (exact
 * status, group default `active`/`error`, `*`, or `false` for explicitly
 * nothing), its retry policy, and the anchor's deadline and heartbeat. As
 * Mermaid, SVG, or a machine config (JSON) whose state descriptions say the
 * same, for Stately Studio.
 *
 * @module
 */

import { InvalidArgumentError } from '../errors.js';
import type { ResolvedAnchor } from '../options/anchor.js';
import { checkRetryPolicy, type ResolvedRetry } from '../retry.js';
import type { StepEntry } from '../types.js';
import { durationText, retryText } from './describe.js';
import {
  machineGraph,
  STATUS_DESCRIPTIONS,
  toMachineConfig,
  toMermaid,
  type MachineConfigJson,
} from './diagram.js';
import { lifecycleMachine } from '../lifecycle/machine.js';
import {
  ACTIVE_STATUSES,
  stepKeyFor,
  TERMINAL_STATUSES,
  type CallbackStatus,
  type StepKey,
} from '../lifecycle/statuses.js';
import { esc, fit, layoutMachine, renderMachineSvg } from './svg-layout.js';

/** The formats of a diagram. */
export type DiagramFormat = 'mermaid' | 'svg' | 'json';

/** Options of {@link anchorDiagram} and `engine.diagram()`. */
export interface DiagramOptions {
  /** `mermaid` (Mermaid `stateDiagram-v2`), `svg`, or `json` (a machine config). @default 'mermaid' */
  readonly format?: DiagramFormat;
}

/** The step of one status, as a diagram names it. */
export type StepDescription =
  /** An in-process function; `name` is `undefined` for an inline (anonymous) function. */
  | { readonly kind: 'function'; readonly name: string | undefined }
  /** A function in a worker module, run on the worker pool. */
  | { readonly kind: 'worker'; readonly module: string; readonly exportName: string }
  /** No step: `explicit` when the entry that applies is `false`. */
  | { readonly kind: 'nothing'; readonly explicit: boolean };

/** What an anchor does on one status. */
export interface StatusPlan {
  readonly status: CallbackStatus | 'notFound';
  readonly step: StepDescription;
  /** The key of the anchor's `next` map that applies (spec order), or `undefined` if none does. */
  readonly stepKey: StepKey | undefined;
  /**
   * How a failing try of the step is retried: the policy and where it comes from (`step`: the
   * worker step's own `retry`; otherwise the key of the anchor's `retry` option), or `undefined`
   * when it is not retried (no step, no policy, or `false`).
   */
  readonly retry: (ResolvedRetry & { readonly from: 'step' | StepKey }) | undefined;
}

/** What an anchor does on every status, and its timers. */
export interface AnchorPlan {
  readonly anchor: string;
  /** One entry per status, in lifecycle order (active statuses, then terminal ones). */
  readonly statuses: readonly StatusPlan[];
  /** The step for reports whose callback is gone (removed after retention), if any applies. */
  readonly notFound: StatusPlan | undefined;
  /** Default deadline of its callbacks: an ISO 8601 duration or date-time, or `false`. */
  readonly timeout: string | false;
  /** Default heartbeat window (ISO 8601 duration), if any. */
  readonly heartbeat: string | undefined;
  /** Time limit of one step try (ISO 8601 duration), or `false`. */
  readonly stepTimeout: string | false;
  /** How long a callback is kept after it ends (ISO 8601 duration), or `true`: forever. */
  readonly retention: string | true;
}

const STATUSES: readonly CallbackStatus[] = [...ACTIVE_STATUSES, ...TERMINAL_STATUSES];

function describeStep(entry: StepEntry | undefined, key: StepKey | undefined): StepDescription {
  if (entry === undefined || entry === false) return { kind: 'nothing', explicit: entry === false };
  if (typeof entry === 'function') {
    // `{ progress: (cb) => ... }` names the arrow after its key: that is no name worth showing.
    const name = entry.name;
    return { kind: 'function', name: name && name !== key ? name : undefined };
  }
  return { kind: 'worker', module: entry.module, exportName: entry.exportName };
}

function planFor(anchor: ResolvedAnchor, status: CallbackStatus | 'notFound'): StatusPlan {
  const stepKey = stepKeyFor(anchor.next, status);
  const entry = stepKey === undefined ? undefined : anchor.next[stepKey];
  const step = describeStep(entry, stepKey);
  let retry: StatusPlan['retry'];
  if (step.kind !== 'nothing') {
    const own = typeof entry === 'object' && entry !== null ? entry.retry : undefined;
    if (own !== undefined) {
      if (own !== false)
        retry = { ...checkRetryPolicy('workerStep options.retry', own), from: 'step' };
    } else {
      const key = stepKeyFor(anchor.retry, status);
      const policy = key === undefined ? undefined : anchor.retry[key];
      if (key !== undefined && policy) retry = { ...policy, from: key };
    }
  }
  return { status, step, stepKey, retry };
}

/**
 * What an anchor does on each status: the step, the `next` key it comes from, its retries; and
 * the anchor's deadline, heartbeat, step time limit and retention.
 *
 * @param anchor - the anchor's resolved options.
 * @returns the plan, as plain JSON.
 */
export function anchorPlan(anchor: ResolvedAnchor): AnchorPlan {
  const notFound = planFor(anchor, 'notFound');
  return {
    anchor: anchor.name,
    statuses: STATUSES.map((s) => planFor(anchor, s)),
    notFound: notFound.step.kind === 'nothing' ? undefined : notFound,
    timeout: anchor.timeout instanceof Date ? anchor.timeout.toISOString() : anchor.timeout,
    heartbeat: anchor.heartbeat,
    stepTimeout: anchor.stepTimeout,
    retention: anchor.retention,
  };
}

/** The module's file name (`ocr.js` of `file:///srv/steps/ocr.js`). */
const fileName = (href: string) =>
  decodeURIComponent(
    href
      .replace(/[?#].*$/, '')
      .split('/')
      .pop()!,
  );

/** A step in a few words: `chargeCard()`, `worker ocr.js#submit`, `nothing (false)`. */
export function stepText(step: StepDescription, full = false): string {
  switch (step.kind) {
    case 'function':
      return step.name === undefined ? 'inline function' : `${step.name}()`;
    case 'worker':
      return `worker ${full ? step.module : fileName(step.module)}#${step.exportName}`;
    default:
      return step.explicit ? 'nothing (false)' : 'no step';
  }
}

const keyText = (key: StepKey | undefined) => (key === undefined ? 'no next entry' : `next.${key}`);

const retrySource = (r: NonNullable<StatusPlan['retry']>) =>
  r.from === 'step' ? 'the worker step’s own retry' : `retry.${r.from}`;

/** The deadline and heartbeat in words. */
export function timersText(plan: AnchorPlan): string {
  const deadline =
    plan.timeout === false
      ? 'no deadline'
      : /^P/.test(plan.timeout)
        ? `deadline ${durationText(plan.timeout)} after creation`
        : `deadline ${plan.timeout}`;
  const heartbeat =
    plan.heartbeat === undefined
      ? 'no heartbeat'
      : `heartbeat: times out ${durationText(plan.heartbeat)} after the last report`;
  return `${deadline} · ${heartbeat}`;
}

function settingsText(plan: AnchorPlan): string {
  const step =
    plan.stepTimeout === false
      ? 'no step time limit'
      : `step time limit ${durationText(plan.stepTimeout)}`;
  const kept =
    plan.retention === true ? 'kept forever' : `kept ${durationText(plan.retention)} after it ends`;
  return `${timersText(plan)} · ${step} · ${kept}`;
}

/** The lines of one status's annotation (`full`: a worker module's whole URL). */
function statusLines(p: StatusPlan, full = true): string[] {
  const lines = [`step ${stepText(p.step, full)} (${keyText(p.stepKey)})`];
  if (p.step.kind !== 'nothing')
    lines.push(p.retry ? `retry ${retryText(p.retry)} (${retrySource(p.retry)})` : 'no retry');
  return lines;
}

/** The TIMEOUT edge's label: when the deadline and the heartbeat fire (`sep` between parts). */
function timeoutLabel(plan: AnchorPlan, sep: string): string {
  const parts: string[] = [];
  if (plan.timeout !== false)
    parts.push(
      /^P/.test(plan.timeout) ? `after ${durationText(plan.timeout)}` : `at ${plan.timeout}`,
    );
  if (plan.heartbeat !== undefined) parts.push(`${durationText(plan.heartbeat)} without a report`);
  return ['TIMEOUT', ...parts.map((p, i) => (i === 0 ? p : `or ${p}`))].join(sep);
}

function mermaid(plan: AnchorPlan): string {
  const notes: Record<string, string[]> = {};
  for (const p of plan.statuses)
    if (p.step.kind !== 'nothing' || p.step.explicit) notes[p.status] = statusLines(p, false);
  return toMermaid(lifecycleMachine, {
    title: `anchor ${plan.anchor}: ${timersText(plan)}`,
    label: (t) => (t.event === 'TIMEOUT' ? timeoutLabel(plan, ' ') : t.event),
    notes,
    classDefs: {
      step: 'fill:#e3ecfb,stroke:#3d5a99,stroke-width:2px',
      nostep: 'fill:#f7f7f9,color:#777',
    },
    classes: {
      step: plan.statuses.filter((p) => p.step.kind !== 'nothing').map((p) => p.status),
      nostep: plan.statuses.filter((p) => p.step.kind === 'nothing').map((p) => p.status),
    },
  });
}

function json(plan: AnchorPlan): MachineConfigJson {
  const descriptions: Record<string, string> = { ...STATUS_DESCRIPTIONS };
  const meta: Record<string, Record<string, unknown>> = {};
  for (const p of plan.statuses) {
    descriptions[p.status] = [STATUS_DESCRIPTIONS[p.status], ...statusLines(p)].join('\n\n');
    meta[p.status] = {
      step: p.step,
      stepKey: p.stepKey ?? null,
      retry: p.retry ?? null,
    };
  }
  descriptions.timeout = `${descriptions.timeout}\n\n${timersText(plan)}`;
  return toMachineConfig(lifecycleMachine, {
    description: `What anchor ${plan.anchor} runs on each status: ${settingsText(plan)}.`,
    descriptions,
    meta: {
      ...meta,
      callback: {
        anchor: plan.anchor,
        timeout: plan.timeout,
        heartbeat: plan.heartbeat ?? null,
        stepTimeout: plan.stepTimeout,
        retention: plan.retention,
        notFound: plan.notFound ?? null,
      },
    },
  });
}

const SVG_STYLE =
  '.state.step>rect{fill:#e3ecfb;stroke-width:2}.state.nostep>rect{fill:#f7f7f9;stroke:#b9bfcc}.state.nostep.final>rect{stroke:#cfa9a5}.state .stepname{font-weight:600;fill:#1d2b4f}.plan text{font-size:11px}.plan .head{font-weight:600;fill:#5d667a}.plan line{stroke:#dde2ec}';

function svg(plan: AnchorPlan): string {
  const graph = machineGraph();
  const layout = layoutMachine(graph, { boxWidth: 156, boxHeight: 80, gap: 70, top: 84 });
  const byStatus = new Map(plan.statuses.map((p) => [p.status as string, p]));
  // The legend: one row per status with the full step, mapping and retry.
  const rows = [...plan.statuses, ...(plan.notFound ? [plan.notFound] : [])];
  const cols = [20, 110, 420, 560];
  const legend: string[] = [
    `<g class="plan"><text x="${cols[0]}" y="18" class="head">status</text><text x="${cols[1]}" y="18" class="head">step</text><text x="${cols[2]}" y="18" class="head">next entry</text><text x="${cols[3]}" y="18" class="head">retry</text>`,
  ];
  rows.forEach((p, i) => {
    const y = 38 + i * 18;
    legend.push(
      `<line x1="20" x2="${Math.max(layout.width - 20, 900)}" y1="${y - 13}" y2="${y - 13}"/>`,
      `<text x="${cols[0]}" y="${y}" data-legend="${esc(p.status)}">${esc(p.status)}</text>`,
      `<text x="${cols[1]}" y="${y}">${esc(fit(stepText(p.step, true), cols[2]! - cols[1]! - 10, 11))}<title>${esc(stepText(p.step, true))}</title></text>`,
      `<text x="${cols[2]}" y="${y}">${esc(keyText(p.stepKey))}</text>`,
      `<text x="${cols[3]}" y="${y}">${esc(p.step.kind === 'nothing' ? '–' : p.retry ? `${retryText(p.retry)} (${retrySource(p.retry)})` : 'no retry')}</text>`,
    );
  });
  legend.push('</g>');
  return renderMachineSvg(layout, {
    title: `anchor ${plan.anchor}`,
    subtitle: settingsText(plan),
    label: `What anchor ${plan.anchor} runs on each status`,
    style: SVG_STYLE,
    state: (s) => {
      const p = byStatus.get(s.key);
      if (!p) return undefined;
      const has = p.step.kind !== 'nothing';
      const lines = [
        { text: stepText(p.step), className: has ? 'stepname' : 'muted' },
        { text: keyText(p.stepKey), className: 'muted' },
      ];
      if (has)
        lines.push({
          text: p.retry ? `retry: ${p.retry.attempts} tries` : 'no retry',
          className: p.retry ? '' : 'muted',
        });
      return { className: has ? 'step' : 'nostep', lines, title: statusLines(p).join('\n') };
    },
    edge: (e) =>
      e.events.includes('TIMEOUT')
        ? { label: timeoutLabel(plan, '\n'), title: timersText(plan) }
        : undefined,
    below: { svg: legend.join('\n'), height: 40 + rows.length * 18 },
  });
}

/**
 * An anchor's diagram: the lifecycle annotated with the step that runs on each status, the
 * `next` entry it comes from, its retry policy, and the anchor's deadline and heartbeat.
 *
 * @param anchor - the anchor's resolved options (what `engine.anchor()` registered).
 * @param options - `format`: `mermaid` (default), `svg`, or `json` (a machine config that
 *   `createMachine()` builds and Stately Studio imports, the annotations as state
 *   descriptions and `meta`).
 * @returns the diagram as text.
 * @throws {@link InvalidArgumentError} for an unknown format.
 * @example
 * ```ts
 * writeFileSync('order.svg', engine.diagram('order', { format: 'svg' }));
 * ```
 */
export function anchorDiagram(anchor: ResolvedAnchor, options: DiagramOptions = {}): string {
  const format = options.format ?? 'mermaid';
  const plan = anchorPlan(anchor);
  if (format === 'mermaid') return mermaid(plan);
  if (format === 'svg') return svg(plan);
  if (format === 'json') return `${JSON.stringify(json(plan), null, 2)}\n`;
  throw new InvalidArgumentError(
    `diagram format must be "mermaid", "svg" or "json" (got ${JSON.stringify(String(format))})`,
  );
}
