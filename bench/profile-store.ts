/**
 * Profiling driver for the durable path (not part of the suite):
 * `node --cpu-prof --import tsx bench/profile-store.ts [--store memory|normal|full] [--pending N]
 *  [--reports N] [--phase create|dispatch|both] [--driver auto|node:sqlite|better-sqlite3]`.
 * Creates N callbacks (1,000 concurrent at a time), then sends `progress` reports 64 in flight,
 * uniform over them (the dispatch workload of bench/store.bench.ts), and prints both rates with
 * the process's CPU time per operation.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createCallbackEngine } from '../src/index.js';
import { sqliteStore } from '../src/store/sqlite.js';
import type { SqliteDriverOption } from '../src/store/sqlite/driver.js';
import { createMany, dispatchUniform } from './lib.js';

const { values } = parseArgs({
  options: {
    store: { type: 'string', default: 'normal' },
    pending: { type: 'string', default: '20000' },
    reports: { type: 'string', default: '200000' },
    driver: { type: 'string', default: 'auto' },
  },
});
const N = Number(values.pending);
const TOTAL = Number(values.reports);
const dir = mkdtempSync(join(tmpdir(), 'cbe-profile-store-'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
const kind = values.store;
const engine = createCallbackEngine({
  node: 'p',
  secrets: ['profile-secret-0123456'],
  timeout: false,
  retention: true,
  ...(kind === 'memory'
    ? {}
    : {
        store: sqliteStore({
          path: join(dir, 'p.db'),
          synchronous: kind as 'normal' | 'full',
          driver: values.driver as SqliteDriverOption,
        }),
      }),
});
engine.anchor('job');
await engine.ready();
const rate = (what: string, n: number, t0: number, c0: NodeJS.CpuUsage) => {
  const s = (performance.now() - t0) / 1000;
  const c = process.cpuUsage(c0);
  console.log(
    `${kind}: ${what} ${n.toLocaleString('en-US')}: ${Math.round(n / s).toLocaleString('en-US')}/s, ${((c.user + c.system) / n).toFixed(1)} µs CPU each (${((c.system / (c.user + c.system)) * 100).toFixed(0)}% system)`,
  );
};
let t0 = performance.now();
let c0 = process.cpuUsage();
const tokens = await createMany(engine, N, 1000);
rate('create', N, t0, c0);
t0 = performance.now();
c0 = process.cpuUsage();
await dispatchUniform(engine, tokens, TOTAL, 64);
rate('dispatch', TOTAL, t0, c0);
await engine.close();
