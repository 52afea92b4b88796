/**
 * engine.list({ order: 'newest', total: true }) on every store: newest first, paged by cursor,
 * with the count of every callback the filters match (the dashboard lists this way).
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { CallbackEngine, ListOptions } from '../src/index.js';
import { DurableFixture, report } from './helpers/durable.js';
import { makeEngine } from './helpers/engine.js';
import { PgFixture, pgAvailable } from './helpers/postgres.js';

const sqlite = new DurableFixture();
const pgfx = new PgFixture();

const stores: { name: string; skip: boolean; open: () => Promise<CallbackEngine> }[] = [
  { name: 'memory', skip: false, open: () => Promise.resolve(makeEngine().engine) },
  {
    name: 'sqlite',
    skip: false,
    open: async () => {
      const engine = sqlite.open(sqlite.db());
      await engine.ready();
      return engine;
    },
  },
  {
    name: 'postgres',
    skip: !pgAvailable,
    open: async () => {
      pgfx.fresh();
      const engine = pgfx.engine('list-1');
      await engine.ready();
      return engine;
    },
  },
];

describe.each(stores)('list() newest first with a total ($name store)', ({ skip, open }) => {
  let engine: CallbackEngine;
  beforeEach(async () => {
    if (!skip) engine = await open();
  });
  afterEach(async () => {
    await engine?.close();
    await sqlite.cleanup();
    await pgfx.cleanup();
  });

  /** Every page of `options`, following the cursor: the `i` of each item, and each page's total. */
  async function all(options: ListOptions): Promise<{ seen: number[]; totals: number[] }> {
    const seen: number[] = [];
    const totals: number[] = [];
    let cursor: string | undefined;
    do {
      const page = await engine.list({ ...options, ...(cursor !== undefined ? { cursor } : {}) });
      seen.push(...page.items.map((x) => x.data.i as number));
      if (page.total !== undefined) totals.push(page.total);
      cursor = page.cursor;
    } while (cursor !== undefined);
    return { seen, totals };
  }

  it.skipIf(skip)('pages newest first and counts every match, whatever the filters', async () => {
    engine.anchor('a');
    engine.anchor('b');
    const made = [];
    for (let i = 0; i < 13; i++)
      made.push(
        await engine.create(i % 2 ? 'a' : 'b', {
          tags: i % 3 === 0 ? ['vip', 'eu'] : ['eu'],
          data: { i },
        }),
      );
    await engine.dispatch(report(made[4]!.token, 'complete'));
    await engine.dispatch(report(made[9]!.token, 'complete'));
    const down = Array.from({ length: 13 }, (_, i) => 12 - i);

    const newest = await all({ order: 'newest', limit: 5, total: true });
    expect(newest.seen).toEqual(down);
    expect(newest.totals).toEqual([13, 13, 13]);
    // The default order stays creation order; no total unless asked.
    const oldest = await all({ limit: 5 });
    expect(oldest.seen).toEqual([...down].reverse());
    expect(oldest.totals).toEqual([]);

    const vip = await all({ order: 'newest', tags: ['vip'], limit: 2, total: true });
    expect(vip.seen).toEqual([12, 9, 6, 3, 0]);
    expect(vip.totals).toEqual([5, 5, 5]);
    const done = await all({ order: 'newest', status: 'complete', total: true });
    expect(done).toEqual({ seen: [9, 4], totals: [2] });
    const mixed = await all({
      order: 'newest',
      anchor: 'a',
      status: ['create'],
      tags: ['eu'],
      limit: 3,
      total: true,
    });
    expect(mixed.seen).toEqual([11, 7, 5, 3, 1]);
    expect(mixed.totals).toEqual([5, 5]);
    const none = await engine.list({ order: 'newest', anchor: 'nope', total: true });
    expect(none).toEqual({ items: [], total: 0 });
    await expect(engine.list({ order: 'sideways' as never })).rejects.toThrow(
      'options.order must be "oldest" or "newest" (got "sideways")',
    );
  });
});
