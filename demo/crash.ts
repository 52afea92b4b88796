/**
 * The crash demo (`npm start -- --crash`): the engine runs in a child process on a SQLite file;
 * concurrent HTTP clients create callbacks and send progress reports, each remembered only once
 * it was acknowledged (HTTP 200); the child is SIGKILLed mid-run and restarted on the same file,
 * and every acknowledged create and report must be there. It runs the crash tests' harness
 * (test/harness/crash.ts) and prints what it measured.
 *
 * @module
 */

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CrashLoad, killHard, spawnCrashServer, type CrashChild } from '../test/harness/crash.js';
import { onInterrupt } from './interrupt.js';

/** Options of {@link runCrashDemo}. */
export interface CrashDemoOptions {
  /** Concurrent HTTP clients. @default 32 */
  clients?: number;
  /** Load time before the kill, ms. @default 3000 */
  loadMs?: number;
  /** Where the output goes. @default stdout */
  log?: (line: string) => void;
}

const fmt = (n: number) => n.toLocaleString('en-US');

/**
 * Runs the crash demo.
 *
 * @returns the number of acknowledged creates and reports missing after the restart (must be 0).
 */
export async function runCrashDemo(options: CrashDemoOptions = {}): Promise<number> {
  const clients = options.clients ?? 32;
  const loadMs = options.loadMs ?? 3000;
  const log = options.log ?? ((line: string) => process.stdout.write(`${line}\n`));
  const dir = mkdtempSync(join(tmpdir(), 'callback-engine-crash-'));
  const path = join(dir, 'callbacks.db');
  const load = new CrashLoad();
  let first: CrashChild | undefined;
  let second: CrashChild | undefined;
  const uninterrupt = onInterrupt(() => {
    for (const c of [first, second]) c?.child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });
  try {
    log(`callback-engine crash demo: engine in a child process on SQLite ${path}`);
    first = spawnCrashServer(path);
    const r1 = await first.ready;
    log(
      `engine pid ${first.pid} ready in ${fmt(Math.round(r1.spawnMs))} ms; ${clients} HTTP clients creating callbacks and sending progress reports`,
    );
    const killAt = new Promise<void>((resolve) => setTimeout(resolve, loadMs));
    const running = load.run(r1.port, clients, new Promise<void>(() => {}));
    await killAt;
    await killHard(first);
    await running;
    log(
      `SIGKILL pid ${first.pid} after ${(loadMs / 1000).toFixed(1)} s under load: ${fmt(load.acked.size)} creates and ${fmt(load.ackedReports)} progress reports acknowledged, ${fmt(load.unanswered)} requests cut off unanswered`,
    );

    second = spawnCrashServer(path);
    const r2 = await second.ready;
    log(
      `restarted on the same file: pid ${second.pid} ready ${fmt(Math.round(r2.spawnMs))} ms after spawn (engine.ready() ${r2.readyMs.toFixed(1)} ms, ${fmt(r2.active)} active callbacks recovered)`,
    );
    const check = await load.verify(r2.port);
    const lost = check.lostCreates + check.lostReports;
    log(
      `checked ${fmt(check.callbacks)} acknowledged creates and ${fmt(check.reports)} acknowledged reports: ${fmt(check.lostCreates)} creates and ${fmt(check.lostReports)} reports missing`,
    );
    log(`lost updates: ${lost}`);
    return lost;
  } finally {
    uninterrupt();
    if (second && second.child.exitCode === null && second.child.signalCode === null) {
      second.child.kill('SIGTERM');
      await second.exited;
    }
    rmSync(dir, { recursive: true, force: true });
  }
}
