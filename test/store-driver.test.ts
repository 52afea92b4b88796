/**
 * Which SQLite library the store runs on: `node:sqlite` where this Node has it (22.13+, 23.4+,
 * 24), better-sqlite3 otherwise (Node 20). CI runs this file on both, so each library carries a
 * callback through a restart on the Node it is meant for.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { createSimulatedClock } from '../src/index.js';
import { sqliteStore } from '../src/store/sqlite.js';
import type { SqliteStore } from '../src/store/sqlite/store.js';
import { DurableFixture, report } from './helpers/durable.js';
import { rejection } from './helpers/engine.js';
import { TEST_SQLITE_DRIVER } from './helpers/sqlite.js';

const fx = new DurableFixture();
afterEach(() => fx.cleanup());

const [major = 0, minor = 0] = process.versions.node.split('.').map(Number);
/** Node versions whose `node:sqlite` loads without a flag. */
const builtIn = major >= 24 || (major === 23 && minor >= 4) || (major === 22 && minor >= 13);
const expected = builtIn ? 'node:sqlite' : 'better-sqlite3';

describe(`the SQLite store on Node ${process.version}`, () => {
  it(`runs on ${expected} by default, and a callback outlives a restart on it`, async () => {
    const path = fx.db();
    const clock = createSimulatedClock();
    const store = sqliteStore({ path });
    const first = fx.open(path, { clock }, {}, store);
    first.anchor('payment', { next: { progress: (cb) => ({ pct: cb.report.pct }) } });
    await first.ready();
    expect((store as SqliteStore).driver).toBe(expected);
    // The tests' own reads of store files use the same library.
    expect(TEST_SQLITE_DRIVER).toBe(expected);
    const cb = await first.create('payment', { data: { orderId: 7 } });
    await first.dispatch(report(cb.token, 'progress', { pct: 50 }));
    await first.close();

    const second = fx.open(path, { clock });
    second.anchor('payment');
    await second.ready();
    expect(await second.get(cb.token)).toMatchObject({
      status: 'progress',
      data: { orderId: 7, pct: 50 },
    });
  });

  it(`driver 'node:sqlite' ${builtIn ? 'opens the file' : 'is refused, naming better-sqlite3'}`, async () => {
    const path = fx.db();
    const engine = fx.open(path, {}, { driver: 'node:sqlite' });
    engine.anchor('payment');
    if (builtIn) {
      await engine.ready();
      expect((await engine.create('payment')).status).toBe('create');
    } else {
      const err = await rejection(engine.ready());
      expect(err.code).toBe('CBE_ERR_STORE_UNAVAILABLE');
      expect(err.message).toMatch(/no node:sqlite .*better-sqlite3/);
    }
  });
});
