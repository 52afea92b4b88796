import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { createDispatchHandler } from '../src/http/index.js';
import type { HistoryEntry } from '../src/history.js';
import type { CallbackEngine } from '../src/index.js';
import { createMonitor, withDashboard, type Monitor } from '../src/dashboard.js';
import { MAX_ENTRY_DATA_CHARS } from '../src/observe/dashboard-api.js';
import { OCR_HISTORY } from './fixtures/history.js';
import { makeEngine } from './helpers/engine.js';
import { shiftHistory, withHistory, type EngineWithHistory } from './helpers/history.js';

let engine: CallbackEngine | undefined;
let monitor: Monitor | undefined;
let server: Server | undefined;

afterEach(async () => {
  server?.closeAllConnections();
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  monitor?.close();
  await engine?.close();
  engine = monitor = server = undefined;
});

async function serve(e: CallbackEngine): Promise<string> {
  monitor = createMonitor(e, { tickMs: 0 });
  server = createServer(withDashboard(createDispatchHandler(e), monitor));
  await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/dashboard/api`;
}

function ocrEngine() {
  ({ engine } = makeEngine());
  engine.anchor('ocr', {
    timeout: 'PT30S',
    heartbeat: 'PT20S',
    next: { progress: function bookPages() {}, error: function alertOps() {} },
    retry: { progress: { attempts: 3, backoff: 'PT1S' } },
  });
  return engine;
}

describe('dashboard API: a callback history', () => {
  it("reads the engine's own history: the callback's journal, drawn", async () => {
    const e = ocrEngine();
    const base = await serve(e);
    const cb = await e.create('ocr', { data: { pages: 12 } });
    await e.dispatch({
      type: 'CALLBACK',
      callbackToken: cb.token,
      callbackStatus: 'progress',
      callbackData: { page: 1 },
    });
    const res = await fetch(`${base}/callbacks/${cb.id}/history`);
    expect(res.status).toBe(200);
    const body = (await res.json()) as { entries: HistoryEntry[]; path: { svg: string } };
    expect(body.entries.map((x) => [x.kind, x.status])).toEqual([
      ['created', 'create'],
      ['reported', 'progress'],
      ['stepCompleted', 'progress'],
    ]);
    expect(body.path.svg).toContain('<svg');
  });

  it('with engine.history(): every page read, the path and the timeline drawn, no token', async () => {
    const e = ocrEngine();
    const cb = await e.create('ocr', { data: { pages: 12 } });
    const d = (await e.details(cb.id))!;
    const entries = shiftHistory(OCR_HISTORY, d.createdAt);
    // Large data is cut like the details' data.
    const big: HistoryEntry = {
      seq: 16,
      at: entries.at(-1)!.at + 10,
      kind: 'reported',
      status: 'timeout',
      reported: 'progress',
      outcome: 'ignored',
      data: { blob: 'x'.repeat(5000) },
    };
    const he: EngineWithHistory = withHistory(e, (id) =>
      id === cb.id ? [...entries, big] : undefined,
    );
    const base = await serve(he);
    const res = await fetch(`${base}/callbacks/${encodeURIComponent(cb.id)}/history`);
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(text).not.toContain(cb.token);
    const body = JSON.parse(text) as {
      id: string;
      entries: (HistoryEntry & { dataPreview?: string; dataTruncated?: boolean })[];
      truncated: boolean;
      path: { svg: string; mermaid: string };
      timeline: { svg: string; text: string };
    };
    expect(body.id).toBe(cb.id);
    expect(body.truncated).toBe(false);
    expect(body.entries.map((x) => x.seq)).toEqual([...entries.map((x) => x.seq), 16]);
    expect(body.entries.at(-1)).toMatchObject({ dataTruncated: true });
    expect(body.entries.at(-1)!.dataPreview).toHaveLength(MAX_ENTRY_DATA_CHARS);
    expect(body.entries.at(-1)!.data).toBeUndefined();
    expect(body.path.svg).toContain('data-state="progress"');
    expect(body.path.svg).toContain(`callback ${cb.id} at anchor ocr`);
    expect(body.path.mermaid).toContain('PROGRESS ⇐ progress ×2');
    expect(body.timeline.svg).toContain('data-result="failed"');
    expect(body.timeline.svg).toContain('deadline +30 s');
    expect(body.timeline.text).toMatch(/report accept\s+start\s+ignored/);
    // By token too (the page's search box), and 404 for an unknown id.
    expect((await fetch(`${base}/callbacks/${encodeURIComponent(cb.token)}/history`)).status).toBe(
      200,
    );
    expect((await fetch(`${base}/callbacks/nope/history`)).status).toBe(404);
    expect((await fetch(`${base}/callbacks/${cb.id}/history`, { method: 'POST' })).status).toBe(
      405,
    );
  });

  it('reads page after page with the cursor, and stops at the bound', async () => {
    const e = ocrEngine();
    const cb = await e.create('ocr');
    const created = (await e.details(cb.id))!.createdAt;
    const many: HistoryEntry[] = [
      { seq: 1, at: created, kind: 'created', status: 'create' },
      ...Array.from({ length: 6000 }, (_, i): HistoryEntry => ({
        seq: i + 2,
        at: created + 1000 + i,
        kind: 'reported',
        status: 'progress',
        reported: 'progress',
        outcome: 'applied',
      })),
    ];
    const he = withHistory(e, () => many);
    const base = await serve(he);
    const body = (await (await fetch(`${base}/callbacks/${cb.id}/history`)).json()) as {
      entries: unknown[];
      truncated: boolean;
    };
    expect(he.pagesRead).toBe(5);
    expect(body.entries).toHaveLength(5000);
    expect(body.truncated).toBe(true);
  });
});

describe("dashboard API: an anchor's diagram", () => {
  it('as SVG by default, Mermaid or JSON on request; 404 for an unknown anchor', async () => {
    const e = ocrEngine();
    const base = await serve(e);
    const svg = (await (await fetch(`${base}/anchors/ocr/diagram`)).json()) as Record<
      string,
      string
    >;
    expect(svg.anchor).toBe('ocr');
    expect(svg.format).toBe('svg');
    expect(svg.diagram).toBe(e.diagram('ocr', { format: 'svg' }));
    expect(svg.diagram).toContain('bookPages()');
    const mmd = (await (await fetch(`${base}/anchors/ocr/diagram?format=mermaid`)).json()) as {
      diagram: string;
    };
    expect(mmd.diagram).toContain('step bookPages() (next.progress)');
    const json = (await (await fetch(`${base}/anchors/ocr/diagram?format=json`)).json()) as {
      diagram: string;
    };
    expect(JSON.parse(json.diagram)).toMatchObject({ id: 'callback' });
    const unknown = await fetch(`${base}/anchors/nope/diagram`);
    expect(unknown.status).toBe(404);
    expect(await unknown.json()).toEqual({
      code: 'CBE_ERR_NOT_FOUND',
      message: 'no anchor "nope" is registered',
    });
    const bad = await fetch(`${base}/anchors/ocr/diagram?format=png`);
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { message: string }).message).toBe(
      'format must be svg, mermaid or json (got "png")',
    );
    expect((await fetch(`${base}/anchors/ocr/diagram`, { method: 'DELETE' })).status).toBe(405);
  });
});
