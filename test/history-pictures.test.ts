import { describe, expect, it } from 'vitest';
import type { HistoryEntry } from '../src/history.js';
import { callbackPath, pathLine, pathMermaid, pathSvg } from '../src/observe/callback-path.js';
import { timelineSvg } from '../src/observe/timeline-svg.js';
import { timelineText } from '../src/observe/timeline-text.js';
import { timelineOf } from '../src/observe/timeline.js';
import { OCR_DETAILS, OCR_HISTORY, PAYMENT_HISTORY, T0 } from './fixtures/history.js';

/** The text of every element matching `re` (tags stripped), in order. */
function texts(svg: string, re: RegExp): string[] {
  return [...svg.matchAll(re)].map((m) =>
    m[1]!.replace(/<title>[\s\S]*?<\/title>/g, '').replace(/<[^>]+>/g, ''),
  );
}

/** The group of one state box: its classes and its lines of text. */
function stateBox(svg: string, status: string): { cls: string; lines: string[] } {
  const m = new RegExp(`<g class="([^"]*)" data-state="${status}">([\\s\\S]*?)</g>`).exec(svg);
  expect(m, status).not.toBeNull();
  return { cls: m![1]!, lines: texts(m![2]!, /<text[^>]*>([\s\S]*?)<\/text>/g) };
}

function edge(svg: string, name: string): { cls: string; label: string | undefined } {
  const m = new RegExp(`<path class="edge ([^"]*)" data-edge="${name}"`).exec(svg);
  expect(m, name).not.toBeNull();
  return { cls: m![1]!, label: undefined };
}

const wellFormed = (svg: string) => {
  expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
  expect(svg).not.toMatch(/<script|href=|NaN|undefined/);
  expect(svg.match(/<g[ >]/g)?.length).toBe(svg.match(/<\/g>/g)?.length);
};

describe("one callback's path, from its history", () => {
  it('folds the history: states visited, moves with their causes, loops, ignored reports, step tries', () => {
    const path = callbackPath(OCR_HISTORY, OCR_DETAILS);
    expect(path.visited).toEqual(['create', 'start', 'progress', 'timeout']);
    expect(path.moves.map((m) => `${m.from}>${m.to} ${m.cause} #${m.seq}`)).toEqual([
      'create>start start #3',
      'start>progress progress #6',
      'progress>timeout deadline #14',
    ]);
    expect(path.loops).toEqual({ progress: 2 });
    expect(path.ignored).toEqual([{ seq: 5, at: T0 + 1_900, reported: 'accept', status: 'start' }]);
    const progress = path.steps.find((s) => s.status === 'progress');
    expect(progress).toMatchObject({ failed: 2, retried: 2, completed: 3, resumed: 0 });
    expect(progress?.lastError).toBe('ledger unavailable (503)');
    expect(path.status).toBe('timeout');
    expect(pathLine(path)).toBe('create → start → progress (×3) → timeout (deadline)');
  });

  it('SVG: an ignored report, a step failed twice and retried, a deadline, on the lifecycle', () => {
    const svg = pathSvg(OCR_HISTORY, OCR_DETAILS);
    wellFormed(svg);
    expect(svg).toContain('callback Jq3xV9aPz0cLmN7bR2sTuw at anchor ocr');
    expect(svg).toContain('create → start → progress (×3) → timeout (deadline)');
    // States: visited ones highlighted, the final one filled, the rest faded.
    for (const s of ['create', 'start', 'progress'])
      expect(stateBox(svg, s).cls).toBe('state visited');
    expect(stateBox(svg, 'timeout').cls).toBe('state final visited current');
    for (const s of ['accept', 'complete', 'error', 'cancel', 'orphan'])
      expect(stateBox(svg, s).cls).toMatch(/unvisited/);
    // Annotations: the ignored accept where it arrived, the loop count, the failed tries.
    expect(stateBox(svg, 'start').lines).toEqual([
      'start',
      'entered +1.2 s',
      'ignored accept +1.9 s',
      'step: 1 ok',
    ]);
    expect(stateBox(svg, 'progress').lines.slice(0, 4)).toEqual([
      'progress',
      'entered +3 s',
      '3 progress reports',
      'step: 2 failed, 3 ok',
    ]);
    expect(stateBox(svg, 'progress').lines[4]).toMatch(/^✗ ledger unavailable/);
    expect(stateBox(svg, 'timeout').lines).toEqual(['timeout', 'entered +30 s', 'step: 1 ok']);
    // Edges: the reports that moved it, the loop, the deadline; the rest faded.
    expect(edge(svg, 'create->start').cls).toBe('taken');
    expect(edge(svg, 'start->progress').cls).toBe('taken');
    expect(edge(svg, 'progress->progress').cls).toBe('taken');
    expect(edge(svg, 'active->timeout').cls).toBe('taken');
    for (const e of ['create->accept', 'create->progress', 'active->complete', 'active->error'])
      expect(edge(svg, e).cls).toBe('untaken');
    const labels = texts(svg, /<text class="label taken"[^>]*>([\s\S]*?)<\/text>/g);
    expect(labels.sort()).toEqual([
      'deadline +30 s',
      'progress +3 s',
      'progress ×2',
      'start +1.2 s',
    ]);
  });

  it('Mermaid: the same path, with the edges it took labelled and its states styled', () => {
    const m = pathMermaid(OCR_HISTORY, OCR_DETAILS);
    expect(m).toContain(
      'title: "callback Jq3xV9aPz0cLmN7bR2sTuw at anchor ocr: create → start → progress (×3) → timeout (deadline)"',
    );
    expect(m).toContain('create --> start: START ⇐ start +1.2 s');
    expect(m).toContain('start --> progress: PROGRESS ⇐ progress +3 s');
    expect(m).toContain('progress --> progress: PROGRESS ⇐ progress ×2');
    expect(m).toContain('active --> timeout: TIMEOUT ⇐ deadline +30 s');
    expect(m).toContain('create --> accept: ACCEPT\n');
    expect(m).toMatch(/note right of start\n\s+entered \+1\.2 s\n\s+ignored accept \+1\.9 s/);
    expect(m).toMatch(
      /note right of progress\n[\s\S]*step: 2 failed, 3 ok\n\s+✗ ledger unavailable \(503\)/,
    );
    expect(m).toContain('class create,start,progress visited');
    expect(m).toContain('class timeout current');
  });

  it('a history with a resumed step and a step that failed for good', () => {
    const svg = pathSvg(PAYMENT_HISTORY, { id: 'p1', anchor: 'payment' });
    wellFormed(svg);
    expect(stateBox(svg, 'start').lines).toContain('step: 1 ok, 1 resumed');
    expect(stateBox(svg, 'complete').cls).toContain('current');
    expect(stateBox(svg, 'complete').lines).toContain('✗ mailer refused');
    expect(edge(svg, 'active->complete').cls).toBe('taken');
  });

  it('a step failure that ends an active callback, a cancel and an orphaning are moves too', () => {
    const base: HistoryEntry = {
      seq: 1,
      at: T0,
      kind: 'created',
      status: 'create',
      step: 'create',
      attempt: 1,
    };
    const failed = callbackPath([
      base,
      {
        seq: 2,
        at: T0 + 5,
        kind: 'stepFailed',
        status: 'error',
        step: 'create',
        attempt: 1,
        error: 'boom',
      },
    ]);
    expect(failed.moves.map((m) => `${m.to}:${m.cause}`)).toEqual(['error:step failed']);
    expect(
      callbackPath([base, { seq: 2, at: T0 + 9, kind: 'cancelled', status: 'cancel' }]).moves[0]
        ?.cause,
    ).toBe('cancelled');
    expect(
      callbackPath([
        base,
        { seq: 2, at: T0 + 9, kind: 'orphaned', status: 'orphan', reason: 'parent-inactive' },
      ]).moves[0]?.cause,
    ).toBe('parent ended');
    // No history at all: the picture still draws, from the details.
    wellFormed(pathSvg([], { status: 'create', createdAt: T0 }));
  });
});

describe("one callback's timeline, from its history", () => {
  it('reads reports, tries, waits and windows off the history', () => {
    const t = timelineOf(OCR_HISTORY, OCR_DETAILS);
    expect(t.start).toBe(T0);
    expect(t.end).toBe(T0 + 30_420);
    expect(t.spans.map((s) => `${s.status} ${s.from - T0}-${s.to - T0}`)).toEqual([
      'create 0-1200',
      'start 1200-3000',
      'progress 3000-30000',
      'timeout 30000-30420',
    ]);
    expect(
      t.tries.filter((x) => !x.ok).map((x) => [x.attempt, x.from - T0, x.to - T0, x.retryAt! - T0]),
    ).toEqual([
      [1, 3_000, 3_350, 4_350],
      [2, 4_350, 4_650, 6_650],
    ]);
    expect(t.deadlineAt).toBe(T0 + 30_000);
    // A window per report (the ignored one too: any report is a sign of life), the last one cut by the deadline.
    expect(t.heartbeats.map((h) => [h.from - T0, h.to - T0])).toEqual([
      [0, 1_200],
      [1_200, 1_900],
      [1_900, 3_000],
      [3_000, 9_000],
      [9_000, 14_000],
      [14_000, 30_000],
    ]);
  });

  it('SVG: each report with its outcome, each try with duration and error, the waits, the deadline', () => {
    const svg = timelineSvg(OCR_HISTORY, OCR_DETAILS);
    wellFormed(svg);
    const group = (kind: string) =>
      [
        ...svg.matchAll(
          new RegExp(`<g class="[^"]*" data-kind="${kind}"([^>]*)>([\\s\\S]*?)</g>`, 'g'),
        ),
      ].map((m) => ({
        attrs: m[1]!,
        text: texts(`<x>${m[2]}</x>`, /<text[^>]*>([\s\S]*?)<\/text>/g).join(' '),
      }));
    const reports = group('report');
    expect(reports.map((r) => r.text)).toEqual([
      'start +1.2 s',
      'accept (ignored) +1.9 s',
      'progress +3 s',
      'progress +9 s',
      'progress +14 s',
    ]);
    expect(reports[1]!.attrs).toContain('data-outcome="ignored"');
    expect(reports[0]!.attrs).toContain('data-outcome="applied"');
    expect(group('timeout').map((r) => r.text)).toEqual(['timed out (deadline) +30 s']);
    const tries = group('try');
    expect(
      tries.filter((x) => x.attrs.includes('data-result="failed"')).map((x) => x.text),
    ).toEqual([
      'progress try 1 · 350 ms ✗ ledger unavailable (503)',
      'progress try 2 · 300 ms ✗ ledger unavailable (503)',
    ]);
    expect(tries.filter((x) => x.attrs.includes('data-result="ok"'))).toHaveLength(6);
    expect(tries.map((x) => x.text)).toContain('timeout try 1 · 420 ms ✓');
    expect(group('wait').map((w) => w.text)).toEqual(['wait 1 s → try 2', 'wait 2 s → try 3']);
    expect(group('deadline').map((d) => d.text)).toEqual(['deadline +30 s']);
    expect(group('heartbeat')).toHaveLength(6);
    expect(svg).toContain('class="deadline"');
    expect(svg).toContain('heartbeat 20 s');
    // The axis is in time since creation.
    expect(
      texts(svg, /<text x="[\d.]+" y="[\d.]+" text-anchor="middle">(\+[^<]+)<\/text>/g),
    ).toEqual(['+0 ms', '+5 s', '+10 s', '+15 s', '+20 s', '+25 s', '+30 s']);
  });

  it('an active callback runs to now, with its open heartbeat window and a far deadline off the axis', () => {
    const entries = OCR_HISTORY.slice(0, 6);
    const svg = timelineSvg(
      entries,
      { ...OCR_DETAILS, status: 'progress', deadlineAt: T0 + 3_600_000 },
      { now: T0 + 8_000 },
    );
    wellFormed(svg);
    const t = timelineOf(
      entries,
      { ...OCR_DETAILS, status: 'progress', deadlineAt: T0 + 3_600_000 },
      { now: T0 + 8_000 },
    );
    expect(t.end).toBe(T0 + 23_000); // the open heartbeat window, from the last report
    expect(svg).toContain('deadline +1 h →');
    expect(svg).toContain('now progress');
    expect(svg).toContain('data-kind="now"');
  });

  it('text: one line per entry, with outcome, try, duration, error and the next try', () => {
    const text = timelineText(OCR_HISTORY, OCR_DETAILS);
    const lines = text.split('\n');
    expect(lines[0]).toBe('callback Jq3xV9aPz0cLmN7bR2sTuw at anchor ocr: timeout');
    expect(lines[1]).toBe('path: create → start → progress (×3) → timeout (deadline)');
    expect(lines[2]).toBe(
      'created 2025-03-04T09:30:00.000Z · deadline +30.000 s (2025-03-04T09:30:30.000Z) · heartbeat 20 s',
    );
    const row = (seq: number) =>
      lines.find((l) => new RegExp(`^\\s*\\+\\S+ \\S+\\s+${seq}  `).test(l));
    expect(row(5)).toMatch(/report accept\s+start\s+ignored$/);
    expect(row(7)).toMatch(
      /progress step failed\s+progress\s+try 1, 350 ms: ledger unavailable \(503\) · try 2 at \+4\.350 s \(waits 1 s\)$/,
    );
    expect(row(14)).toMatch(
      /^\s*\+30\.000 s\s+14 {2}timed out \(deadline\)\s+timeout\s+runs the timeout step$/,
    );
    expect(lines.filter((l) => /^\s*\+/.test(l))).toHaveLength(OCR_HISTORY.length);
    expect(timelineText(PAYMENT_HISTORY)).toMatch(
      /start step resumed\s+start\s+restart · runs the start step/,
    );
  });
});
