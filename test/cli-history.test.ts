import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../src/cli.js';
import { inspectSqlite, type StoreInspector } from '../src/cli/inspect.js';
import { createCallbackEngine, createSimulatedClock } from '../src/index.js';
import { sqliteStore } from '../src/store/sqlite.js';
import type { HistoryEntry } from '../src/history.js';
import { OCR_HISTORY } from './fixtures/history.js';
import { SECRET } from './helpers/engine.js';

const dir = mkdtempSync(join(tmpdir(), 'cbe-cli-history-'));
const file = join(dir, 'store.db');
let id = '';

beforeAll(async () => {
  const engine = createCallbackEngine({
    node: 'cli',
    secrets: [SECRET],
    clock: createSimulatedClock(),
    store: sqliteStore({ path: file }),
  });
  engine.anchor('ocr');
  id = (await engine.create('ocr', { data: { pages: 12 }, heartbeat: 'PT20S' })).id;
  await engine.close();
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The real store file, with the OCR fixture as the history of its one callback. */
const withHistory = async (path: string): Promise<StoreInspector> => {
  const store = await inspectSqlite(path);
  return { ...store, history: (of) => (of === id ? OCR_HISTORY : undefined) };
};

async function cli(
  argv: string[],
  inspect?: (path: string) => StoreInspector | Promise<StoreInspector>,
) {
  let out = '';
  let err = '';
  const code = await main(
    argv,
    (t) => (out += t),
    (t) => (err += t),
    inspect ? { inspect } : {},
  );
  return { code, out, err };
}

describe('callback-engine get <db> <id> --format', () => {
  it("the store's own history: the table, then the timeline as text; JSON holds it", async () => {
    const table = await cli(['get', file, id]);
    expect(table.code).toBe(0);
    expect(table.out).toMatch(/^status\s+create$/m);
    expect((await cli(['get', file, id, '--format', 'table'])).out).toBe(table.out);
    const json = JSON.parse((await cli(['get', file, id, '--format', 'json'])).out) as {
      history?: HistoryEntry[];
    };
    expect(json).toMatchObject({ id, status: 'create', heartbeatMs: 20_000 });
    expect(json.history?.map((e) => e.kind)).toEqual(['created']);
    const text = await cli(['get', file, id, '--format', 'text']);
    expect(text.code).toBe(0);
    expect(text.out).toContain('created');
    for (const format of ['svg', 'mermaid']) {
      const r = await cli(['get', file, id, '--format', format]);
      expect(r.code).toBe(0);
      expect(r.out).toMatch(format === 'svg' ? /^<svg/ : /stateDiagram|flowchart/);
    }
  });

  it('with a history: the timeline as text, the path over the timeline as SVG, the path as Mermaid', async () => {
    const text = await cli(['get', file, id, '--format', 'text'], withHistory);
    expect(text.code).toBe(0);
    expect(text.out).toMatch(/^status\s+create$/m);
    expect(text.out).toContain(`callback ${id} at anchor ocr: timeout`);
    expect(text.out).toContain('path: create → start → progress (×3) → timeout (deadline)');
    expect(text.out).toMatch(/report accept\s+start\s+ignored/);

    const svg = (await cli(['get', file, id, '--format', 'svg'], withHistory)).out;
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    // One document: the path (state boxes) above the timeline (step tries).
    expect(svg.match(/<svg /g)).toHaveLength(3);
    expect(svg).toMatch(/<svg x="0" y="0" xmlns[^>]*>/);
    expect(svg).toMatch(
      /<svg x="0" y="\d+" xmlns="http:\/\/www.w3.org\/2000\/svg" class="timeline"/,
    );
    expect(svg).toContain('data-state="progress"');
    expect(svg).toContain('data-result="failed"');
    expect(svg).toContain('heartbeat 20 s');

    const mermaid = (await cli(['get', file, id, '--format', 'mermaid'], withHistory)).out;
    expect(mermaid).toContain('stateDiagram-v2');
    expect(mermaid).toContain('active --> timeout: TIMEOUT ⇐ deadline +30 s');

    const json = JSON.parse((await cli(['get', file, id, '--json'], withHistory)).out) as {
      history: unknown[];
    };
    expect(json.history).toEqual(OCR_HISTORY);
  });

  it('refuses an unknown format, and --format on ls and stats', async () => {
    const bad = await cli(['get', file, id, '--format', 'png']);
    expect(bad.code).toBe(2);
    expect(bad.err).toBe('--format must be one of table, json, text, svg, mermaid (got "png")\n');
    const ls = await cli(['ls', file, '--format', 'svg']);
    expect(ls.code).toBe(2);
    expect(ls.err).toBe('--format is for diagram and get; ls takes --json\n');
    // The diagram command keeps its default.
    expect((await cli(['diagram'])).out.startsWith('stateDiagram-v2\n')).toBe(true);
  });
});
