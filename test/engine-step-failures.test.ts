import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import {
  InvalidArgumentError,
  workerStep,
  type CallbackEngine,
  type EngineEvent,
} from '../src/index.js';
import { createMonitor } from '../src/dashboard.js';
import { makeEngine, report } from './helpers/engine.js';
import { SCORE } from './helpers/steps.js';

let engine: CallbackEngine | undefined;
afterEach(async () => {
  await engine?.close();
  engine = undefined;
});

async function collectWarnings(run: () => Promise<void>): Promise<(Error & { code?: string })[]> {
  const warnings: (Error & { code?: string })[] = [];
  const on = (w: Error) => warnings.push(w);
  process.on('warning', on);
  try {
    await run();
    await new Promise((r) => setImmediate(r));
  } finally {
    process.off('warning', on);
  }
  return warnings.filter((w) => w.code === 'CBE_W_STEP_FAILED_AFTER_TERMINAL');
}

describe('a step that fails after complete/error is visible (issue 11, finding 10)', () => {
  it('is recorded as stepError in get() and its JSON, counted, evented, warned once per anchor; data is untouched', async () => {
    ({ engine } = makeEngine());
    const e = engine;
    const events: EngineEvent[] = [];
    e.subscribe((ev) => events.push(ev));
    const monitor = createMonitor(e, { tickMs: 0 });
    const boom = () => {
      throw new Error('receipt service down');
    };
    e.anchor('pay', { next: { complete: boom } });
    e.anchor('ship', { next: { error: boom } });
    let token = '';
    const warnings = await collectWarnings(async () => {
      const a = await e.create('pay', { data: { order: 1 } });
      const b = await e.create('pay');
      const c = await e.create('ship');
      token = a.token;
      expect((await e.dispatch(report(a.token, 'complete', { ok: true }))).status).toBe('complete');
      await e.dispatch(report(b.token, 'complete'));
      await e.dispatch(report(c.token, 'error', { message: 'lost' }));
    });
    const answer = await e.get(token);
    expect(answer.status).toBe('complete');
    expect(answer.data).toEqual({ order: 1, ok: true });
    expect(answer.stepError).toEqual({ status: 'complete', message: 'receipt service down' });
    expect(JSON.parse(JSON.stringify(answer))).toEqual({
      status: 'complete',
      token,
      data: { order: 1, ok: true },
      stepError: { status: 'complete', message: 'receipt service down' },
    });
    expect(e.stats().stepFailures).toBe(3);
    expect(events.filter((ev) => ev.type === 'stepFailed')).toHaveLength(3);
    expect(events.find((ev) => ev.type === 'stepFailed')).toMatchObject({
      status: 'complete',
      reported: 'complete',
      message: 'receipt service down',
    });
    const history = await monitor.history(token);
    expect(history?.events.find((ev) => ev.type === 'stepFailed')?.message).toBe(
      'receipt service down',
    );
    monitor.close();
    // One warning per anchor, naming the anchor and the message.
    expect(warnings.map((w) => w.message)).toEqual([
      expect.stringContaining(
        'anchor "pay" failed after the callback became "complete": receipt service down',
      ),
      expect.stringContaining('anchor "ship" failed after the callback became "error"'),
    ]);
  });

  it('an answer without a step failure serializes as exactly { status, token, data }', async () => {
    ({ engine } = makeEngine());
    engine.anchor('job');
    const cb = await engine.create('job');
    const answer = await engine.dispatch(report(cb.token, 'complete'));
    expect(Object.keys(JSON.parse(JSON.stringify(answer)) as object)).toEqual([
      'status',
      'token',
      'data',
    ]);
    expect(answer.stepError).toBeUndefined();
  });

  it('anchor() refuses a worker step whose module does not exist', () => {
    ({ engine } = makeEngine());
    const missing = new URL('./fixtures/steps/does-not-exist.ts', import.meta.url);
    let err: unknown;
    try {
      engine.anchor('broken', { next: { complete: workerStep(missing, 'score') } });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(InvalidArgumentError);
    expect((err as Error).message).toBe(
      `anchor "broken" options.next.complete: worker step module ${missing.href} does not exist`,
    );
  });

  it('a worker module removed after anchor(), or without the export, fails its terminal step visibly', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cbe-step-module-'));
    try {
      const file = join(dir, 'gone.mjs');
      writeFileSync(file, 'export function done() { return { done: true }; }\n');
      ({ engine } = makeEngine());
      engine.anchor('gone', { next: { complete: workerStep(pathToFileURL(file), 'done') } });
      engine.anchor('noexport', { next: { complete: workerStep(SCORE, 'notAFunction') } });
      rmSync(file);
      const a = await engine.create('gone');
      const b = await engine.create('noexport');
      expect((await engine.dispatch(report(a.token, 'complete'))).status).toBe('complete');
      expect((await engine.dispatch(report(b.token, 'complete'))).status).toBe('complete');
      const ga = await engine.get(a.token);
      expect(ga.stepError?.status).toBe('complete');
      expect(ga.stepError?.message).toMatch(/gone\.mjs/);
      expect((await engine.get(b.token)).stepError).toEqual({
        status: 'complete',
        message: `worker step module ${SCORE.href} has no function export "notAFunction"`,
      });
      expect(engine.stats().stepFailures).toBe(2);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
