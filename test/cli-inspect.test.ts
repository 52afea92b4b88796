import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { main } from '../src/cli.js';
import { createCallbackEngine, createSimulatedClock } from '../src/index.js';
import { sqliteStore } from '../src/store/sqlite.js';
import { SECRET } from './helpers/engine.js';

/** Runs the CLI; returns its exit code and what it printed. */
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

const dir = mkdtempSync(join(tmpdir(), 'cbe-cli-'));
const file = join(dir, 'store.db');
const ids: string[] = [];
let parentToken = '';

beforeAll(async () => {
  const engine = createCallbackEngine({
    node: 'cli',
    secrets: [SECRET],
    clock: createSimulatedClock(),
    store: sqliteStore({ path: file }),
  });
  engine.anchor('order', {
    next: {
      complete: () => {
        throw new Error('mail server down');
      },
    },
  });
  engine.anchor('ship');
  const parent = await engine.create('order', { data: { orderId: 1 }, tags: ['eu'] });
  parentToken = parent.token;
  ids.push(parent.id);
  for (let i = 2; i <= 5; i++)
    ids.push((await engine.create('order', { data: { orderId: i }, parentToken })).id);
  const ship = await engine.create('ship', { data: { box: 'a' } });
  ids.push(ship.id);
  await engine.dispatch({
    type: 'CALLBACK',
    callbackToken: ship.token,
    callbackStatus: 'complete',
    callbackData: { weight: 3 },
  });
  const failing = await engine.create('order', { data: { orderId: 9 } });
  ids.push(failing.id);
  const quiet = vi.spyOn(process, 'emitWarning').mockImplementation(() => {});
  await engine.dispatch({
    type: 'CALLBACK',
    callbackToken: failing.token,
    callbackStatus: 'complete',
  });
  quiet.mockRestore();
  await engine.close();
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('callback-engine ls|get|stats <db>', () => {
  it('ls prints a table of every callback by short id, oldest first, and never a token', async () => {
    const { code, out } = await cli('ls', file);
    expect(code).toBe(0);
    const lines = out.trim().split('\n');
    expect(lines[0]).toMatch(/^id\s+anchor\s+status\s+created\s+deadline\s+tags\s+data$/);
    // Each row names its callback by the shortest start of its id (8 characters or more) that is
    // the start of its own id and of no other: one character past what it shares with another.
    const shown = lines.slice(1, -1).map((l) => l.split(/\s+/)[0]!);
    shown.forEach((s, i) => {
      const id = ids[i]!;
      const shared = Math.max(...ids.filter((x) => x !== id).map((x) => common(x, id)));
      expect(s).toBe(id.slice(0, Math.max(8, shared + 1)));
      expect(ids.filter((x) => x.startsWith(s))).toEqual([id]);
    });
    expect(lines.at(-1)).toBe('(7 callbacks)');
    expect(out).toContain('{"box":"a","weight":3}');
    expect(out).not.toContain(parentToken);
  });

  it('ls pages with --limit and --cursor, and filters by --status and --anchor', async () => {
    const first = await cli('ls', file, '--limit', '3', '--json');
    const page1 = JSON.parse(first.out) as { items: { id: string }[]; cursor: string };
    expect(page1.items.map((c) => c.id)).toEqual(ids.slice(0, 3));
    const second = JSON.parse(
      (await cli('ls', file, '--limit', '3', '--json', '--cursor', page1.cursor)).out,
    ) as {
      items: { id: string }[];
      cursor?: string;
    };
    expect(second.items.map((c) => c.id)).toEqual(ids.slice(3, 6));
    const text = await cli('ls', file, '--limit', '3');
    expect(text.out).toContain(`next page: --cursor ${page1.cursor}`);
    const done = JSON.parse((await cli('ls', file, '--json', '--status', 'complete')).out) as {
      items: { id: string; anchor: string }[];
    };
    expect(done.items.map((c) => c.id)).toEqual([ids[5], ids[6]]);
    const ships = JSON.parse((await cli('ls', file, '--json', '--anchor', 'ship')).out) as {
      items: { id: string }[];
    };
    expect(ships.items.map((c) => c.id)).toEqual([ids[5]]);
  });

  it('get shows status, data, step error, parent and children; --json too', async () => {
    const parent = await cli('get', file, ids[0]!);
    expect(parent.code).toBe(0);
    expect(parent.out).toMatch(/^status\s+create$/m);
    expect(parent.out).toMatch(new RegExp(`^children\\s+${ids.slice(1, 5).join(', ')}$`, 'm'));
    expect(parent.out).toMatch(/^tags\s+eu$/m);
    expect(parent.out).not.toContain(parentToken);
    const failing = JSON.parse((await cli('get', file, ids[6]!, '--json')).out) as Record<
      string,
      unknown
    >;
    expect(failing).toMatchObject({
      status: 'complete',
      data: { orderId: 9 },
      stepError: { status: 'complete', message: 'mail server down' },
      children: [],
    });
    const child = JSON.parse((await cli('get', file, ids[1]!, '--json')).out) as Record<
      string,
      unknown
    >;
    expect(child.parentId).toBe(ids[0]);
    // Ids are base64url: one may start with "-" and is still the id, not an option.
    const dashed = await cli('get', file, '-AAAAAAAAAAAAAAAAAAAAA');
    expect(dashed.err).toBe(`no callback with id "-AAAAAAAAAAAAAAAAAAAAA" in ${file}\n`);
    const missing = await cli('get', file, 'nope');
    expect(missing.code).toBe(1);
    expect(missing.err).toBe(`no callback with id "nope" in ${file}\n`);
  });

  it('stats counts by anchor and status', async () => {
    const { code, out } = await cli('stats', file);
    expect(code).toBe(0);
    expect(out).toMatch(/^order\s+1\s+5\s+6$/m);
    expect(out).toMatch(/^ship\s+1\s+0\s+1$/m);
    expect(out).toMatch(/^\(all\)\s+2\s+5\s+7$/m);
    const json = JSON.parse((await cli('stats', file, '--json')).out) as Record<string, unknown>;
    expect(json).toMatchObject({
      callbacks: 7,
      schemaVersion: 2,
      byStatus: { create: 5, complete: 2 },
      byAnchor: { order: { create: 5, complete: 1 }, ship: { complete: 1 } },
    });
  });

  it('refuses a missing file and a file that is not a store; reads a file a running engine holds', async () => {
    expect(await cli('stats', join(dir, 'nope.db'))).toMatchObject({
      code: 1,
      err: `no such file: ${join(dir, 'nope.db')}\n`,
    });
    const junk = join(dir, 'junk.db');
    writeFileSync(junk, 'not a database at all, just some text that is long enough to matter');
    expect((await cli('ls', junk)).err).toMatch(/is not a SQLite database|cannot read/);
    const held = join(dir, 'held.db');
    const engine = createCallbackEngine({
      node: 'cli',
      secrets: [SECRET],
      store: sqliteStore({ path: held }),
    });
    engine.anchor('job');
    await engine.ready();
    try {
      // A reader beside the engine's writer (WAL): it sees what the engine committed.
      const cb = await engine.create('job', { data: { n: 1 } });
      const r = await cli('ls', held);
      expect(r.code).toBe(0);
      expect(r.out).toContain(cb.id.slice(0, 8));
      await engine.dispatch({ type: 'CALLBACK', callbackToken: cb.token, callbackStatus: 'start' });
      const got = await cli('get', held, cb.id);
      expect(got.code).toBe(0);
      expect(got.out).toMatch(/^status\s+start$/m);
      // Its history, as the running engine committed it.
      const history = JSON.parse((await cli('get', held, cb.id, '--json')).out) as {
        history: { kind: string; status: string }[];
      };
      expect(history.history.map((e) => [e.kind, e.status])).toEqual([
        ['created', 'create'],
        ['reported', 'start'],
      ]);
      // A second engine on the same file is still refused.
      const second = createCallbackEngine({
        node: 'cli-2',
        secrets: [SECRET],
        store: sqliteStore({ path: held }),
      });
      await expect(second.ready()).rejects.toMatchObject({ code: 'CBE_ERR_STORE_LOCKED' });
      await second.close();
    } finally {
      await engine.close();
    }
    expect((await cli('ls', held)).code).toBe(0);
    expect(await cli('get', file)).toMatchObject({ code: 2 });
    expect((await cli('ls', file, '--limit', '0')).err).toMatch(/^--limit must be an integer/);
    expect(await cli('ls', file, '--status', 'bogus')).toMatchObject({
      code: 2,
      err: '--status must be one of create, accept, start, progress, complete, error, cancel, timeout, orphan (got "bogus")\n',
    });
    const one = await cli('ls', file, '--anchor', 'ship');
    expect(one.out.trim().split('\n').at(-1)).toBe('(1 callback)');
    // A terminal callback shows no deadline.
    expect(one.out).toMatch(/complete\s+\S+Z\s+-\s/);
  });
});

describe('short ids', () => {
  it('shows as many characters as tell a callback from its neighbours; get takes them, and refuses an ambiguous one', async () => {
    const path = join(dir, 'short.db');
    const engine = createCallbackEngine({
      node: 'cli',
      secrets: [SECRET],
      store: sqliteStore({ path }),
    });
    engine.anchor('job');
    const a = await engine.create('job', { data: { n: 1 } });
    const b = await engine.create('job', { data: { n: 2 } });
    await engine.close();
    // A third row whose id shares its first 11 characters with a's (b's almost never does).
    const twin = `${a.id.slice(0, 11)}${a.id[11] === 'x' ? 'y' : 'x'}${'0'.repeat(10)}`;
    const db = new Database(path);
    const copy = db.prepare(
      `INSERT INTO callbacks (id, seq, anchor, status, due_at, idem_key, corr_key, parent_id, head, owed, meta)
       SELECT ?, seq + ?, anchor, status, NULL, NULL, NULL, NULL, 0, NULL, meta FROM callbacks WHERE id = ?`,
    );
    copy.run(twin, 100, b.id);
    // And one with an id of the earlier format (22 random characters, no time prefix).
    const legacy = `zQ${'k'.repeat(20)}`;
    copy.run(legacy, 200, b.id);
    db.close();

    const listed = JSON.parse((await cli('ls', path, '--json')).out) as {
      items: { id: string; shortId: string }[];
    };
    const short = Object.fromEntries(listed.items.map((c) => [c.id, c.shortId]));
    expect(short[a.id]).toBe(a.id.slice(0, 12));
    expect(short[twin]).toBe(twin.slice(0, 12));
    expect(short[b.id]).toBe(b.id.slice(0, Math.max(8, common(a.id, b.id) + 1)));
    const table = (await cli('ls', path)).out;
    expect(table).toMatch(new RegExp(`^${a.id.slice(0, 12)}\\s+job`, 'm'));

    // get by short id, by any unique start of 4 or more characters, and by the whole id.
    expect((await cli('get', path, short[a.id]!, '--json')).out).toContain(`"id": "${a.id}"`);
    expect((await cli('get', path, b.id.slice(0, common(a.id, b.id) + 1), '--json')).out).toContain(
      `"id": "${b.id}"`,
    );
    expect((await cli('get', path, legacy.slice(0, 4), '--json')).out).toContain(
      `"id": "${legacy}"`,
    );
    expect((await cli('get', path, a.id)).code).toBe(0);
    const ambiguous = await cli('get', path, a.id.slice(0, 11));
    expect(ambiguous.code).toBe(1);
    expect(ambiguous.err).toBe(
      `"${a.id.slice(0, 11)}" starts 2 callback ids in ${path} (${[a.id, twin].sort().join(', ')}): give more of it\n`,
    );
    expect((await cli('get', path, 'zzzz')).err).toBe(`no callback with id "zzzz" in ${path}\n`);
  });
});

describe('callback-engine --version and --help', () => {
  it('--version prints the package version; --help lists every command', async () => {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
      version: string;
    };
    expect(await cli('--version')).toEqual({ code: 0, out: `${pkg.version}\n`, err: '' });
    const help = await cli('--help');
    expect(help.code).toBe(0);
    for (const cmd of [
      'diagram',
      'ls <db>',
      'get <db> <id or short id>',
      'stats <db>',
      '--version',
    ])
      expect(help.out).toContain(`callback-engine ${cmd}`);
    expect(help.out).not.toContain('callback-engine demo');
  });

  it('has no demo command: `demo` (with or without the demo options) points at npm start', async () => {
    for (const argv of [['demo'], ['demo', '--crash'], ['demo', '--replicas', '3']]) {
      const r = await cli(...argv);
      expect(r.code, argv.join(' ')).toBe(2);
      expect(r.out).toBe('');
      expect(r.err).toContain('no demo command');
      expect(r.err).toContain('`npm start`');
    }
  });
});

/** How many characters two ids share at their start. */
function common(a: string, b: string): number {
  let i = 0;
  while (i < a.length && a[i] === b[i]) i++;
  return i;
}
