/**
 * The commit statement of the PostgreSQL store (`buildCommit`), without a database: a pure
 * function of one batch and the leases held. Its shape (one statement: the fence first, then
 * one data-modifying CTE per kind of write), the order of its parameters, the fence covering
 * every shard any write touches, the empty batch, deduplication keys, journal appends, and
 * hostile values, which travel as parameters and never reach the SQL text.
 */
import { describe, expect, it, vi } from 'vitest';
import { LeaseLostError } from '../src/errors.js';
import {
  buildCommit,
  type CommitStatement,
  type FenceContext,
} from '../src/store/postgres/commit.js';
import { shardOf } from '../src/store/shards.js';
import type { CallbackRowWrite, StoreBatch } from '../src/store/store.js';

// The builder needs no driver: loading node-postgres would fail this file.
vi.mock('pg', () => {
  throw new Error('the commit builder loaded pg');
});

const N = 8;
const NODE = 'replica-a';

/** A callbackId in shard `shard` (of {@link N}). */
const idIn = (shard: number, tag: string): string => {
  for (let i = 0; ; i++) if (shardOf(`${tag}-${i}`, N) === shard) return `${tag}-${i}`;
};

/** Leases on `shards`, epoch 10 + shard. */
const holding = (...shards: number[]): FenceContext => ({
  node: NODE,
  shards: N,
  held: new Map(shards.map((s) => [s, 10 + s])),
});
const ALL = holding(0, 1, 2, 3, 4, 5, 6, 7);

const row = (id: string, over: Partial<CallbackRowWrite> = {}): CallbackRowWrite => ({
  change: 'insert',
  id,
  seq: 1,
  anchor: 'job',
  status: 'create',
  dueAt: null,
  idempotencyKey: null,
  correlationKey: null,
  parentId: null,
  head: 1,
  owed: false,
  meta: '{}',
  ...over,
});

const batch = (over: Partial<StoreBatch> = {}): StoreBatch => ({
  rows: [],
  entries: [],
  snapshots: [],
  dedup: [],
  deletes: [],
  ...over,
});

/** The CTEs of a statement, by name, in order: each with its body. */
function ctes(text: string): { name: string; body: string }[] {
  expect(text.startsWith('WITH ')).toBe(true);
  const out: { name: string; body: string }[] = [];
  const head = /(\w+) AS \(/y;
  let i = 'WITH '.length;
  for (;;) {
    head.lastIndex = i;
    const m = head.exec(text);
    if (!m) break;
    let depth = 1;
    let j = head.lastIndex;
    for (; depth > 0; j++) {
      if (text[j] === '(') depth++;
      else if (text[j] === ')') depth--;
    }
    out.push({ name: m[1]!, body: text.slice(head.lastIndex, j - 1) });
    i = j;
    if (!text.startsWith(',\n', i)) break;
    i += 2;
  }
  return out;
}

/** The values bound to the placeholders of one CTE, in the order they appear in it. */
function bound(st: CommitStatement, name: string): unknown[] {
  const cte = ctes(st.text).find((c) => c.name === name);
  expect(cte, `CTE ${name}`).toBeDefined();
  return [...cte!.body.matchAll(/\$(\d+)/g)].map((m) => st.params[Number(m[1]) - 1]);
}

/** What follows the CTEs: the one row the statement returns. */
const tail = (text: string): string => text.slice(text.lastIndexOf('SELECT (SELECT count(*)'));

/** Every placeholder names a parameter, and every parameter is used. */
function expectParamsConsistent(st: CommitStatement): void {
  const used = new Set([...st.text.matchAll(/\$(\d+)/g)].map((m) => Number(m[1])));
  expect([...used].sort((a, b) => a - b)).toEqual(st.params.map((_, i) => i + 1));
  // No value is written into the text as a literal.
  expect(st.text).not.toContain("'");
}

describe('buildCommit: one group commit as one statement', () => {
  it('an empty batch is the fence alone: no shard, no write, nothing inserted', () => {
    const st = buildCommit(batch(), ALL);
    expect(ctes(st.text).map((c) => c.name)).toEqual(['f']);
    expect(st.params).toEqual([NODE, [], []]);
    expect(st.inserted).toEqual([]);
    expect(tail(st.text)).toContain('FROM f WHERE ok IS NULL');
    expect(tail(st.text)).toContain('NULL::text[] AS inserted');
    expectParamsConsistent(st);
  });

  it('writes no row for a head-only update (reads take the head from the journal), yet fences its shard', () => {
    const [a, b] = [4, 6].map((shard, i) => idIn(shard, `h${i}`));
    const st = buildCommit(
      batch({
        rows: [row(a!, { change: 'update', headOnly: true }), row(b!, { change: 'update' })],
        entries: [
          { id: a!, seq: 3, at: 100, entry: '{}' },
          { id: b!, seq: 5, at: 100, entry: '{}' },
        ],
      }),
      ALL,
    );
    expect(ctes(st.text).map((c) => c.name)).toEqual(['f', 'upd', 'jn']);
    expect(st.params.slice(0, 3)).toEqual([NODE, [4, 6], [14, 16]]);
    // The UPDATE names the full row only; the journal takes both entries.
    expect(st.params).toContainEqual([b]);
    expect(st.params).not.toContainEqual([a]);
    expect(st.params).toContainEqual([a, b]);
    const alone = buildCommit(
      batch({
        rows: [row(a!, { change: 'update', headOnly: true })],
        entries: [{ id: a!, seq: 3, at: 100, entry: '{}' }],
      }),
      ALL,
    );
    expect(ctes(alone.text).map((c) => c.name)).toEqual(['f', 'jn']);
    expectParamsConsistent(st);
    expectParamsConsistent(alone);
  });

  it('puts the fence first, over every shard a write touches, at the epoch held, in shard order', () => {
    const [r, e, s, d, x] = [5, 1, 3, 7, 0].map((shard, i) => idIn(shard, `k${i}`));
    const st = buildCommit(
      batch({
        rows: [row(r!, { change: 'update' })],
        entries: [{ id: e!, seq: 2, at: 100, entry: '{}' }],
        snapshots: [{ id: s!, seq: 2, body: '{}' }],
        dedup: [{ id: d!, key: 'k', at: 100 }],
        deletes: [x!],
      }),
      ALL,
    );
    const names = ctes(st.text).map((c) => c.name);
    expect(names[0]).toBe('f');
    expect(ctes(st.text)[0]!.body).toMatch(
      /^SELECT fence\(\$1, \$2::int\[\], \$3::bigint\[\]\) AS ok$/,
    );
    expect(st.params.slice(0, 3)).toEqual([NODE, [0, 1, 3, 5, 7], [10, 11, 13, 15, 17]]);
    // The statement's one row reads the fence, so it runs; a fence that raises undoes it all.
    expect(tail(st.text)).toMatch(/\(SELECT count\(\*\) FROM f WHERE ok IS NULL\)::int AS fenced/);
    expect(names).toEqual(['f', 'upd', 'jn', 'sn', 'dd', 'del', 'dels', 'delj', 'deld', 'ed']);
    expectParamsConsistent(st);
  });

  it('lists each shard once in the fence, however many writes touch it', () => {
    const a = idIn(2, 'a');
    const b = idIn(2, 'b');
    const st = buildCommit(
      batch({
        rows: [row(a), row(b)],
        entries: [
          { id: a, seq: 1, at: 1, entry: '{}' },
          { id: b, seq: 1, at: 1, entry: '{}' },
        ],
        dedup: [{ id: a, key: 'k', at: 1 }],
      }),
      holding(2),
    );
    expect(st.params.slice(0, 3)).toEqual([NODE, [2], [12]]);
  });

  const kinds: [string, (id: string) => StoreBatch][] = [
    ['a row insert', (id) => batch({ rows: [row(id)] })],
    ['a row update', (id) => batch({ rows: [row(id, { change: 'update' })] })],
    ['a journal append', (id) => batch({ entries: [{ id, seq: 1, at: 1, entry: '{}' }] })],
    ['a snapshot', (id) => batch({ snapshots: [{ id, seq: 1, body: '{}' }] })],
    ['a deduplication key', (id) => batch({ dedup: [{ id, key: 'k', at: 1 }] })],
    ['a delete', (id) => batch({ deletes: [id] })],
  ];

  it.each(kinds)('refuses %s in a shard this replica does not hold (no statement)', (_, make) => {
    const id = idIn(6, 'x');
    expect(() => buildCommit(make(id), holding(0, 1, 2, 3, 4, 5, 7))).toThrow(LeaseLostError);
    expect(() => buildCommit(make(id), holding(0, 1, 2, 3, 4, 5, 7))).toThrow(/shard 6/);
    // Held: fenced at its epoch.
    const st = buildCommit(make(id), holding(6));
    expect(st.params.slice(0, 3)).toEqual([NODE, [6], [16]]);
  });

  it('refuses a whole batch when one write of it is in a shard not held', () => {
    const held = idIn(1, 'h');
    const lost = idIn(4, 'l');
    expect(() =>
      buildCommit(
        batch({ rows: [row(held)], entries: [{ id: lost, seq: 1, at: 1, entry: '{}' }] }),
        holding(1),
      ),
    ).toThrow(LeaseLostError);
  });

  it('inserts rows in one order on every replica (idempotency key, correlation key, id; nulls last), every column in step', () => {
    const rows = [
      row('id-c', { idempotencyKey: null, correlationKey: 'job\u0000x', anchor: 'c', owed: true }),
      row('id-b', { idempotencyKey: 'job\u0000b', anchor: 'b', dueAt: 500, parentId: 'p' }),
      row('id-e', { anchor: 'e' }),
      row('id-a', { idempotencyKey: 'job\u0000a', anchor: 'a', head: 3 }),
      row('id-d', { anchor: 'd', status: 'progress' }),
    ];
    const b = batch({ rows });
    const st = buildCommit(b, ALL);
    const order = ['id-a', 'id-b', 'id-c', 'id-d', 'id-e'];
    expect(st.inserted).toEqual(order);
    const [ids, shards, anchors, statuses, due, idem, corr, parents, heads, owed, meta] = bound(
      st,
      'ins',
    );
    expect(ids).toEqual(order);
    expect(shards).toEqual(order.map((id) => shardOf(id, N)));
    expect(anchors).toEqual(['a', 'b', 'c', 'd', 'e']);
    expect(statuses).toEqual(['create', 'create', 'create', 'progress', 'create']);
    expect(due).toEqual([null, 500, null, null, null]);
    // Keys are stored encoded: PostgreSQL text holds no NUL.
    expect(idem).toEqual(['job\\0a', 'job\\0b', null, null, null]);
    expect(corr).toEqual([null, null, 'job\\0x', null, null]);
    expect(parents).toEqual([null, 'p', null, null, null]);
    expect(heads).toEqual([3, 1, 1, 1, 1]);
    // Only an owed step is marked (the index holds those rows alone).
    expect(owed).toEqual([null, null, true, null, null]);
    expect(meta).toEqual(['{}', '{}', '{}', '{}', '{}']);
    expect(ctes(st.text).find((c) => c.name === 'ins')!.body).toContain(
      'ON CONFLICT DO NOTHING RETURNING id',
    );
    expect(tail(st.text)).toContain('(SELECT array_agg(id) FROM ins) AS inserted');
    // The batch itself is left as it was.
    expect(b.rows.map((r) => r.id)).toEqual(['id-c', 'id-b', 'id-e', 'id-a', 'id-d']);
    expectParamsConsistent(st);
  });

  it('updates rows by id: status, due time, head and owed, in batch order', () => {
    const st = buildCommit(
      batch({
        rows: [
          row('u2', { change: 'update', status: 'complete', dueAt: null, head: 9 }),
          row('u1', { change: 'update', status: 'progress', dueAt: 42, head: 4, owed: true }),
        ],
      }),
      ALL,
    );
    expect(ctes(st.text).map((c) => c.name)).toEqual(['f', 'upd']);
    expect(bound(st, 'upd')).toEqual([
      ['u2', 'u1'],
      ['complete', 'progress'],
      [null, 42],
      [9, 4],
      [null, true],
    ]);
    expect(st.inserted).toEqual([]);
    expectParamsConsistent(st);
  });

  it('appends journal entries in batch order, kept only with a row the database accepted', () => {
    const entries = [
      { id: 'n1', seq: 1, at: 10, entry: '{"type":"created"}' },
      { id: 'old', seq: 7, at: 11, entry: '{"type":"report"}' },
      { id: 'n1', seq: 2, at: 12, entry: '{"type":"owed"}' },
    ];
    const st = buildCommit(batch({ rows: [row('n1')], entries }), ALL);
    const [ids, seqs, ats, texts, keptIds] = bound(st, 'jn');
    expect(ids).toEqual(['n1', 'old', 'n1']);
    expect(seqs).toEqual([1, 7, 2]);
    expect(ats).toEqual([10, 11, 12]);
    expect(texts).toEqual(entries.map((e) => e.entry));
    // An entry of a row the database refused (a unique key held elsewhere) is left out with it.
    expect(keptIds).toEqual(['n1']);
    expect(ctes(st.text).find((c) => c.name === 'jn')!.body).toMatch(
      /WHERE \(NOT \(e\.callback_id = ANY\(\$\d+::text\[\]\)\) OR e\.callback_id IN \(SELECT id FROM ins\)\)/,
    );
    // Without an insert every entry is kept.
    const plain = buildCommit(batch({ entries }), ALL);
    expect(ctes(plain.text).find((c) => c.name === 'jn')!.body).toContain('WHERE true');
    expect(bound(plain, 'jn')).toHaveLength(4);
    expectParamsConsistent(st);
    expectParamsConsistent(plain);
  });

  it('writes deduplication keys with their effect, and takes the early events they consume', () => {
    const st = buildCommit(
      batch({
        rows: [row('c1', { change: 'update' })],
        dedup: [
          { id: 'c1', key: 'evt-1', at: 100 },
          { id: 'c2', key: 'evt-2', at: 101 },
        ],
        earlyDone: ['evt-2', 'evt-refused'],
      }),
      ALL,
    );
    expect(bound(st, 'dd')).toEqual([
      ['c1', 'c2'],
      ['evt-1', 'evt-2'],
      [100, 101],
    ]);
    const dd = ctes(st.text).find((c) => c.name === 'dd')!.body;
    expect(dd).toContain('ON CONFLICT DO NOTHING');
    expect(dd).toContain('WHERE true');
    // Each early event once: those refused by their callback, and any applied with its key.
    const [early] = bound(st, 'ed');
    expect([...(early as string[])].sort()).toEqual(['evt-1', 'evt-2', 'evt-refused']);
    expectParamsConsistent(st);
  });

  it('writes snapshots as upserts, kept only with an accepted row', () => {
    const st = buildCommit(
      batch({ rows: [row('s1')], snapshots: [{ id: 's1', seq: 3, body: '{"v":1}' }] }),
      ALL,
    );
    expect(bound(st, 'sn')).toEqual([['s1'], [3], ['{"v":1}'], ['s1']]);
    expect(ctes(st.text).find((c) => c.name === 'sn')!.body).toContain(
      'ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, body = excluded.body',
    );
  });

  it('deletes a callback with its snapshot, journal and keys through one parameter; applied inbox entries leave', () => {
    const st = buildCommit(batch({ deletes: ['gone-1', 'gone-2'], inboxDone: [4, 9] }), ALL);
    const names = ctes(st.text).map((c) => c.name);
    expect(names).toEqual(['f', 'del', 'dels', 'delj', 'deld', 'ib']);
    for (const n of ['del', 'dels', 'delj', 'deld'])
      expect(bound(st, n)).toEqual([['gone-1', 'gone-2']]);
    const refs = new Set(
      ['del', 'dels', 'delj', 'deld'].map(
        (n) =>
          ctes(st.text)
            .find((c) => c.name === n)!
            .body.match(/\$\d+/)![0],
      ),
    );
    expect(refs.size).toBe(1);
    expect(bound(st, 'ib')).toEqual([[4, 9]]);
    expectParamsConsistent(st);
  });

  it('passes hostile values as parameters only: nothing of them reaches the SQL text', () => {
    const evil = [
      '__proto__',
      'constructor',
      "x'); DROP TABLE callbacks; --",
      'tail$1$$',
      'nul\u0000byte\\0',
    ];
    const rows = evil.map((id, i) =>
      row(id, {
        anchor: i === 0 ? 'toString' : `a'${i}`,
        idempotencyKey: `__proto__\u0000${i}`,
        correlationKey: i === 1 ? "' OR 1=1 --" : null,
        parentId: i === 2 ? '__proto__' : null,
        meta: '{"__proto__":{"polluted":true}}',
      }),
    );
    const b = batch({
      rows,
      entries: evil.map((id) => ({
        id,
        seq: 1,
        at: 0,
        entry: '{"__proto__":{"polluted":true},"s":"$2"}',
      })),
      snapshots: [{ id: '__proto__', seq: 1, body: "'; DELETE FROM shards; --" }],
      dedup: [{ id: '__proto__', key: '__proto__', at: 0 }],
      deletes: ['prototype'],
      earlyDone: ["'; TRUNCATE early_events; --"],
    });
    const st = buildCommit(b, ALL);
    for (const s of [
      '__proto__',
      'constructor',
      'toString',
      'prototype',
      'DROP',
      'DELETE FROM shards',
      'TRUNCATE',
      'polluted',
      'OR 1=1',
      'byte',
    ])
      expect(st.text).not.toContain(s);
    expectParamsConsistent(st);
    // The values travel unchanged (keys encoded for PostgreSQL text only).
    const [ids, , anchors, , , idem, corr, parents, , , meta] = bound(st, 'ins');
    expect([...(ids as string[])].sort()).toEqual([...evil].sort());
    expect(anchors as string[]).toContain('toString');
    expect(idem as string[]).toContain('__proto__\\00');
    expect(corr as string[]).toContain("' OR 1=1 --");
    expect(parents as string[]).toContain('__proto__');
    expect(new Set(meta as string[])).toEqual(new Set(['{"__proto__":{"polluted":true}}']));
    expect(bound(st, 'dd').slice(0, 2)).toEqual([['__proto__'], ['__proto__']]);
    // Nothing was polluted on the way.
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(Object.getPrototypeOf(st.params)).toBe(Array.prototype);
  });

  it('is a pure function: the same batch and leases give the same statement, and neither is changed', () => {
    const held = new Map([
      [0, 3],
      [1, 4],
      [2, 5],
      [3, 6],
      [4, 7],
      [5, 8],
      [6, 9],
      [7, 10],
    ]);
    const fence: FenceContext = { node: NODE, shards: N, held };
    const b = batch({
      rows: [
        row('p2', { idempotencyKey: 'k2' }),
        row('p1', { idempotencyKey: 'k1' }),
        row('q', { change: 'update' }),
      ],
      entries: [{ id: 'p1', seq: 1, at: 1, entry: '{}' }],
      dedup: [{ id: 'q', key: 'd', at: 1 }],
    });
    const before = JSON.stringify(b);
    const one = buildCommit(b, fence);
    const two = buildCommit(b, fence);
    expect(two).toEqual(one);
    expect(JSON.stringify(b)).toBe(before);
    expect([...held]).toEqual([
      [0, 3],
      [1, 4],
      [2, 5],
      [3, 6],
      [4, 7],
      [5, 8],
      [6, 9],
      [7, 10],
    ]);
  });
});
