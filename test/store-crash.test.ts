import { copyFileSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CrashLoad, killHard, spawnCrashServer, type CrashChild } from './harness/crash.js';
import { openDb } from './helpers/sqlite.js';

const CLIENTS = 24;

/** Where a kill lands, one per cycle. */
type Moment = 'random' | 'mid-batch' | 'mid-step';
const MOMENTS: Moment[] = [
  'random',
  'mid-batch',
  'mid-step',
  'mid-batch',
  'random',
  'mid-step',
  'mid-batch',
  'random',
  'mid-step',
  'mid-batch',
];
/** Cycles after whose kill the restart is itself killed during recovery (before READY). */
const KILL_RECOVERY = new Set([1, 4, 7]);

const dir = mkdtempSync(join(tmpdir(), 'cbe-crash-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const between = (lo: number, hi: number) => lo + Math.floor(Math.random() * (hi - lo));

/** `PRAGMA integrity_check` of a database file (the child that wrote it is dead). */
function integrity(file: string): string {
  const db = openDb(file);
  try {
    return db.pragma('integrity_check') as string;
  } finally {
    db.close();
  }
}

/** Integrity of a copy of the file as the kill left it (the original goes to the next engine untouched). */
function integrityOfCopy(file: string, n: number): string {
  const copy = join(dir, `copy-${n}.db`);
  copyFileSync(file, copy);
  if (existsSync(`${file}-wal`)) copyFileSync(`${file}-wal`, `${copy}-wal`);
  return integrity(copy);
}

describe('SQLite store: SIGKILL under concurrent HTTP load', () => {
  it('keeps every acknowledged create and report across kill cycles; the file stays intact', async () => {
    const path = join(dir, 'callbacks.db');
    const load = new CrashLoad();
    let kills = 0;
    let recoveryKills = 0;
    let verified = 0;

    /** Spawns the child on the file and waits for READY. */
    const start = async () => {
      const child = spawnCrashServer(path);
      return { child, ready: await child.ready };
    };

    let { child, ready } = await start();
    for (let cycle = 0; cycle < MOMENTS.length; cycle++) {
      const moment = MOMENTS[cycle]!;
      let stop!: () => void;
      const stopped = new Promise<void>((resolve) => (stop = resolve));
      const running = load.run(ready.port, CLIENTS, stopped);
      const target: CrashChild = child;
      if (moment === 'random') {
        await sleep(between(150, 1200));
      } else if (moment === 'mid-batch') {
        // Right as a group commit's answers come back, with the next batches under way.
        const until = load.ackedReports + between(100, 600);
        while (load.ackedReports < until) await new Promise((r) => setImmediate(r));
      } else {
        // A report whose step is still awaiting when the kill lands (never acknowledged).
        await sleep(between(100, 400));
        const token = [...load.acked.keys()][0];
        if (token !== undefined)
          void fetch(`http://127.0.0.1:${ready.port}/callbacks/${token}/progress`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ slowMs: 500, midStep: cycle }),
          }).catch(() => {});
        await sleep(between(20, 80));
      }
      await killHard(target);
      kills++;
      stop();
      await running;
      expect(integrityOfCopy(path, cycle)).toBe('ok');

      if (KILL_RECOVERY.has(cycle)) {
        // Kill the restarted engine while it opens the store; retry if READY won the race.
        for (let attempt = 0; attempt < 5; attempt++) {
          const restarting = spawnCrashServer(path);
          await restarting.opening;
          if (attempt > 0) await sleep(attempt);
          await killHard(restarting);
          kills++;
          if (!restarting.isReady()) {
            recoveryKills++;
            break;
          }
        }
      }

      ({ child, ready } = await start());
      // Everything acknowledged so far, after every restart.
      const check = await load.verify(ready.port);
      verified += check.callbacks;
      expect(check.lostCreates).toBe(0);
      expect(check.lostReports).toBe(0);
      expect(ready.active).toBeGreaterThanOrEqual(check.callbacks);
    }

    await killHard(child);
    kills++;
    const intact = integrity(path);
    console.log(
      `kill cycles: ${MOMENTS.length} (${kills} SIGKILLs, ${recoveryKills} during recovery), acknowledged: ${load.acked.size} creates + ${load.ackedReports} reports, lost: 0, reads checked: ${verified}, integrity_check: ${intact}`,
    );
    expect(intact).toBe('ok');
    expect(load.acked.size).toBeGreaterThan(0);
    expect(load.ackedReports).toBeGreaterThan(0);
    expect(recoveryKills).toBeGreaterThan(0);
  }, 180_000);
});
