/**
 * The command line on a SQLite file that a running engine holds, in another process: it reads
 * beside the engine's one writer (WAL), sees what the engine committed, and the engine goes on
 * writing while it reads.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../src/cli.js';
import { createCallbackEngine } from '../src/index.js';
import { sqliteStore } from '../src/store/sqlite.js';
import { SECRET } from './helpers/engine.js';
import {
  alive,
  call,
  gone,
  killChild,
  reportTo,
  startChild,
  type JournalChild,
} from './harness/journal-runner.js';

async function cli(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await main(
    argv,
    (t) => (out += t),
    (t) => (err += t),
  );
  return { code, out, err };
}

const dir = mkdtempSync(join(tmpdir(), 'cbe-cli-running-'));
const file = join(dir, 'callbacks.db');
let child: JournalChild;

beforeAll(async () => {
  child = await startChild({ sqlite: file }, join(dir, 'runs.jsonl'), { node: 'held' });
}, 60_000);

afterAll(async () => {
  if (child && alive(child.pid)) await killChild(child);
  rmSync(dir, { recursive: true, force: true });
});

describe('callback-engine ls|get|stats on a file a running engine (another process) holds', () => {
  it('reads what the engine committed, while it keeps writing', async () => {
    const made: { id: string; token: string }[] = [];
    for (let i = 0; i < 3; i++) {
      const r = await call(child, 'POST', '/create', { data: { order: i } });
      expect(r.status).toBe(200);
      made.push(r.body as { id: string; token: string });
    }
    expect((await reportTo(child, made[1]!.token, 'progress', { pct: 50 })).status).toBe(200);

    // ls: every callback, each by a short id that is the start of its own id only.
    const ls = await cli('ls', file);
    expect(ls).toMatchObject({ code: 0, err: '' });
    const rows = ls.out.trim().split('\n').slice(1, -1);
    expect(rows).toHaveLength(3);
    rows.forEach((row, i) => {
      const [shortId, anchor, status] = row.split(/\s+/);
      expect(made.filter((m) => m.id.startsWith(shortId!)).map((m) => m.id)).toEqual([made[i]!.id]);
      expect(anchor).toBe('job');
      expect(status).toBe(i === 1 ? 'progress' : 'create');
    });
    expect(ls.out).not.toContain(made[0]!.token);

    // get by short id: the report's data, committed by the other process.
    const shortId = rows[1]!.split(/\s+/)[0]!;
    const got = JSON.parse((await cli('get', file, shortId, '--json')).out) as {
      id: string;
      status: string;
      data: Record<string, unknown>;
      tokenHint: string;
      history: { kind: string; status: string }[];
    };
    expect(got).toMatchObject({ id: made[1]!.id, status: 'progress' });
    expect(got.data).toMatchObject({ order: 1, pct: 50 });
    expect(got.history.map((e) => [e.kind, e.status])).toContainEqual(['reported', 'progress']);
    // The token hints tell callbacks apart (the end of each token, never the token itself).
    const hints = await Promise.all(
      made.map(
        async (m) =>
          (JSON.parse((await cli('get', file, m.id, '--json')).out) as { tokenHint: string })
            .tokenHint,
      ),
    );
    expect(new Set(hints).size).toBe(3);

    // The engine goes on writing while the CLI reads; the CLI then sees that too.
    expect((await reportTo(child, made[1]!.token, 'complete', { receipt: 'r-1' })).status).toBe(
      200,
    );
    const stats = JSON.parse((await cli('stats', file, '--json')).out) as {
      callbacks: number;
      byStatus: Record<string, number>;
    };
    expect(stats).toMatchObject({ callbacks: 3, byStatus: { create: 2, complete: 1 } });
    expect((await cli('get', file, made[1]!.id)).out).toMatch(/^status\s+complete$/m);

    // The file is held all along: a second engine on it is refused; the first is still alive.
    const second = createCallbackEngine({
      node: 'held-2',
      secrets: [SECRET],
      store: sqliteStore({ path: file }),
    });
    await expect(second.ready()).rejects.toMatchObject({ code: 'CBE_ERR_STORE_LOCKED' });
    await second.close();
    expect(alive(child.pid)).toBe(true);
    const after = await call(child, 'GET', `/get/${encodeURIComponent(made[0]!.token)}`);
    expect(after).toMatchObject({ status: 200, body: { status: 'create' } });

    process.kill(child.pid, 'SIGTERM');
    await gone(child);
  }, 60_000);
});
