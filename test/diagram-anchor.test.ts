import { createMachine } from 'xstate';
import { afterEach, describe, expect, it } from 'vitest';
import { machineGraph, type MachineConfigJson } from '../src/diagrams/diagram.js';
import { anchorPlan } from '../src/diagrams/anchor-diagram.js';
import { lookupStep, stepKeyFor, STEP_KEYS, type StepKey } from '../src/lifecycle/statuses.js';
import { resolveAnchor } from '../src/options/anchor.js';
import { resolveOptions } from '../src/options/engine.js';
import { workerStep, type CallbackEngine } from '../src/index.js';
import { makeEngine } from './helpers/engine.js';
import { SCORE } from './helpers/steps.js';

let engine: CallbackEngine | undefined;
afterEach(async () => {
  await engine?.close();
  engine = undefined;
});

async function submitOrder() {
  return { submitted: true };
}
function chargeCard() {
  return { charged: true };
}
function notifyOps() {}

/** An anchor with every kind of mapping: exact, group default, `*`, `false`, a worker step. */
function payment(): CallbackEngine {
  ({ engine } = makeEngine());
  engine.anchor('payment', {
    timeout: 'PT30M',
    heartbeat: 'PT5M',
    next: {
      create: submitOrder,
      active: (cb) => ({ seen: cb.status }),
      progress: workerStep(SCORE, 'score', { retry: { attempts: 5, backoff: 'PT2S' } }),
      complete: chargeCard,
      cancel: false,
      error: notifyOps,
    },
    retry: {
      active: { attempts: 3, backoff: 'PT1S', maxDelay: 'PT10S' },
      complete: { attempts: 4, backoff: 'PT5S', factor: 3 },
      error: false,
    },
  });
  return engine;
}

describe("an anchor's diagram", () => {
  it('the plan follows the lookup order: exact status, group default, *, false', () => {
    const o = resolveOptions({ secrets: ['0123456789abcdef0123'] });
    const anchor = resolveAnchor(
      'a',
      { next: { start: submitOrder, active: chargeCard, '*': notifyOps, orphan: false } },
      o,
    );
    const plan = anchorPlan(anchor);
    const by = Object.fromEntries(plan.statuses.map((p) => [p.status, p]));
    expect(by.start!.step).toEqual({ kind: 'function', name: 'submitOrder' });
    expect(by.start!.stepKey).toBe('start');
    expect(by.create!.step).toEqual({ kind: 'function', name: 'chargeCard' });
    expect(by.create!.stepKey).toBe('active');
    expect(by.complete!.stepKey).toBe('*');
    expect(by.timeout!.stepKey).toBe('*');
    expect(by.orphan!.step).toEqual({ kind: 'nothing', explicit: true });
    expect(by.orphan!.retry).toBeUndefined();
    expect(plan.notFound?.stepKey).toBe('*');
    // The same order as the one the mailbox uses, for every key and every status.
    const keys = [...STEP_KEYS] as StepKey[];
    for (const only of keys)
      for (const status of [...plan.statuses.map((p) => p.status), 'notFound' as const]) {
        const next = { [only]: 1, '*': 2 } as Partial<Record<StepKey, number>>;
        const key = stepKeyFor(next, status);
        expect(key === undefined ? undefined : next[key]).toBe(lookupStep(next, status));
      }
  });

  it('SVG names each configured step, mapping and retry, and the deadline and heartbeat', () => {
    const svg = payment().diagram('payment', { format: 'svg' });
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    expect(svg).not.toMatch(/<script|href=/);
    const box = (status: string) => {
      const m = new RegExp(`<g class="([^"]*)" data-state="${status}">([\\s\\S]*?)</g>`).exec(svg);
      expect(m, status).not.toBeNull();
      return { cls: m![1]!, text: m![2]!.replace(/<[^>]+>/g, '|') };
    };
    expect(box('create').text).toContain('submitOrder()');
    expect(box('create').text).toContain('next.create');
    expect(box('create').text).toContain('retry: 3 tries');
    // An inline arrow under `active`: its inferred name ("active") is not shown as a name.
    for (const s of ['accept', 'start']) {
      expect(box(s).text).toContain('inline function');
      expect(box(s).text).toContain('next.active');
    }
    expect(box('progress').text).toContain('worker score.ts#score');
    expect(box('progress').text).toContain('retry: 5 tries');
    expect(box('complete').text).toContain('chargeCard()');
    expect(box('complete').text).toContain('retry: 4 tries');
    for (const s of ['error', 'timeout', 'orphan']) {
      expect(box(s).text).toContain('notifyOps()');
      expect(box(s).text).toContain('next.error');
      expect(box(s).text).toContain('no retry');
    }
    expect(box('cancel').text).toContain('nothing (false)');
    expect(box('cancel').cls).toContain('nostep');
    expect(box('complete').cls).toContain('step');
    // The legend spells the waits out, with the worker module's whole URL and where each came from.
    expect(svg).toContain('3 tries, waits 1 s · 2 s (retry.active)');
    expect(svg).toContain('5 tries, waits 2 s · 4 s · 8 s · 16 s (the worker step’s own retry)');
    expect(svg).toContain('4 tries, waits 5 s · 15 s · 45 s (retry.complete)');
    expect(svg).toContain(`worker ${SCORE.href}#score`);
    expect(svg).toContain('data-legend="notFound"');
    expect(svg).toContain(
      'deadline 30 min after creation · heartbeat: times out 5 min after the last report',
    );
    expect(svg).toMatch(/TIMEOUT<\/tspan><tspan[^>]*>after 30 min<\/tspan><tspan[^>]*>or 5 min/);
    expect(svg.match(/<g /g)?.length).toBe(svg.match(/<\/g>/g)?.length);
  });

  it('Mermaid notes each step, its mapping and retry beside its state', () => {
    const m = payment().diagram('payment');
    expect(m).toMatch(/^---\ntitle: "anchor payment: deadline 30 min after creation/);
    expect(m).toContain('stateDiagram-v2');
    const note = (s: string) =>
      new RegExp(`note right of ${s}\\n([\\s\\S]*?)end note`).exec(m)?.[1];
    expect(note('create')).toContain('step submitOrder() (next.create)');
    expect(note('create')).toContain('retry 3 tries, waits 1 s · 2 s (retry.active)');
    expect(note('start')).toContain('step inline function (next.active)');
    // `#` is Mermaid's entity character: written as its code.
    expect(note('progress')).toContain('step worker score.ts#35;score (next.progress)');
    expect(note('complete')).toContain('retry 4 tries, waits 5 s · 15 s · 45 s (retry.complete)');
    expect(note('timeout')).toContain('step notifyOps() (next.error)');
    expect(note('cancel')).toContain('step nothing (false) (next.cancel)');
    expect(m).toContain('active --> timeout: TIMEOUT after 30 min or 5 min without a report');
    expect(m).toContain('class cancel nostep');
  });

  it('JSON is a machine config with the annotations as descriptions and meta', () => {
    const text = payment().diagram('payment', { format: 'json' });
    const json = JSON.parse(text) as MachineConfigJson;
    expect(machineGraph(createMachine(json as Parameters<typeof createMachine>[0]))).toEqual(
      machineGraph(),
    );
    const progress = json.states!.active!.states!.progress!;
    expect(progress.description).toContain(`step worker ${SCORE.href}#score (next.progress)`);
    expect(progress.meta).toMatchObject({
      step: { kind: 'worker', exportName: 'score' },
      stepKey: 'progress',
      retry: { attempts: 5, backoffMs: 2000, from: 'step' },
    });
    expect(json.states!.timeout!.description).toContain('heartbeat: times out 5 min');
    expect(json.meta).toMatchObject({ anchor: 'payment', timeout: 'PT30M', heartbeat: 'PT5M' });
  });

  it('refuses an unknown anchor and an unknown format', () => {
    const e = payment();
    expect(() => e.diagram('nope')).toThrow(
      expect.objectContaining({
        code: 'CBE_ERR_UNKNOWN_ANCHOR',
        message: 'anchor "nope" is not registered',
      }),
    );
    expect(() => e.diagram('payment', { format: 'png' as never })).toThrow(
      expect.objectContaining({
        code: 'CBE_ERR_INVALID_ARGUMENT',
        message: 'diagram format must be "mermaid", "svg" or "json" (got "png")',
      }),
    );
  });

  it('an anchor with no steps, no deadline and no heartbeat says so', () => {
    ({ engine } = makeEngine());
    engine.anchor('plain', { timeout: false });
    const svg = engine.diagram('plain', { format: 'svg' });
    expect(svg).toContain('no deadline · no heartbeat');
    expect(svg.match(/no step/g)?.length).toBeGreaterThanOrEqual(9);
    expect(engine.diagram('plain')).not.toContain('note right of');
  });
});
