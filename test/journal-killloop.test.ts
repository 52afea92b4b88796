/**
 * The kill loop: an engine process on a SQLite file is SIGKILLed at random moments (at least
 * 20 times, often inside a step) while concurrent clients send keyed reports, each resent
 * until acknowledged. Every step run is recorded in a side file. At the end, for every
 * acknowledged report: exactly one effect in its callback's history (its `reported` entry and
 * one completed step), in order, and at least one step run.
 */

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  call,
  historyOf,
  killChild,
  reportTo,
  runsIn,
  startChild,
  type JournalChild,
} from './harness/journal-runner.js';

const dir = mkdtempSync(join(tmpdir(), 'cbe-killloop-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const KILLS = 20;
const CALLBACKS = 16;
const REPORTS = 40;
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const between = (lo: number, hi: number) => lo + Math.floor(Math.random() * (hi - lo));

describe('kill loop (SQLite, real processes)', () => {
  it(`${KILLS} SIGKILLs at random moments under concurrent keyed reports: every acknowledged report has exactly one effect and at least one step run`, async () => {
    const db = join(dir, 'loop.db');
    const runs = join(dir, 'loop.runs');
    let child: JournalChild = await startChild({ sqlite: db }, runs);
    let port = child.port;
    const cbs: { id: string; token: string }[] = [];
    for (let i = 0; i < CALLBACKS; i++) {
      const r = await call(child, 'POST', '/create', { data: { i } });
      expect(r.status).toBe(200);
      cbs.push(r.body as { id: string; token: string });
    }
    const acked = new Map<string, number[]>();
    let stopped = false;
    let attempts = 0;
    // Each client sends its callback's reports in order, each one resent (same key) until acked.
    const clients = cbs.map(async (cb) => {
      const done: number[] = [];
      acked.set(cb.id, done);
      for (let seq = 1; seq <= REPORTS; seq++) {
        for (;;) {
          attempts++;
          const r = await reportTo(
            port,
            cb.token,
            'progress',
            { seq, hangMs: between(0, 6) },
            `${cb.id}:${seq}`,
            5000,
          );
          if (r.status === 200) break;
          await sleep(between(30, 80));
        }
        done.push(seq);
      }
    });
    let kills = 0;
    const killer = (async () => {
      while (kills < KILLS) {
        await sleep(between(150, 700));
        await killChild(child);
        kills++;
        child = await startChild({ sqlite: db }, runs);
        port = child.port;
      }
    })();
    await Promise.all([killer, ...clients]);
    stopped = true;
    // Steps owed at the last kill ran after the restart; wait for every one to have ended.
    const deadline = performance.now() + 30_000;
    let histories = new Map<string, Awaited<ReturnType<typeof historyOf>>>();
    for (;;) {
      histories = new Map();
      for (const cb of cbs) histories.set(cb.id, await historyOf(child, cb.id));
      const owing = [...histories.values()].some((h) => {
        const last = h.at(-1);
        return last !== undefined && (last.kind === 'reported' || last.kind === 'stepResumed');
      });
      if (!owing || performance.now() > deadline) break;
      await sleep(100);
    }
    const allRuns = runsIn(runs).filter((r) => r.status === 'progress');
    let effects = 0;
    let reRun = 0;
    for (const cb of cbs) {
      const h = histories.get(cb.id)!;
      const reported = h.filter((e) => e.kind === 'reported');
      // Exactly one effect per acknowledged report, in the order they were sent.
      expect(reported.map((e) => e.data?.seq)).toEqual(acked.get(cb.id));
      expect(reported.every((e) => e.outcome === 'applied')).toBe(true);
      const completed = h.filter((e) => e.kind === 'stepCompleted' && e.step === 'progress');
      expect(completed).toHaveLength(REPORTS);
      effects += reported.length;
      for (let seq = 1; seq <= REPORTS; seq++) {
        const n = allRuns.filter((r) => r.id === cb.id && r.seq === seq).length;
        expect(n, `step runs of ${cb.id} #${seq}`).toBeGreaterThanOrEqual(1);
        if (n > 1) reRun++;
      }
    }
    const ackedCount = [...acked.values()].reduce((a, b) => a + b.length, 0);
    process.stdout.write(
      `kill loop: ${kills} SIGKILLs; ${ackedCount} reports acknowledged (${attempts} attempts); ${effects} effects (duplicates ${effects - ackedCount}); ${allRuns.length} progress step runs, ${reRun} reports whose step ran more than once (cut off by a kill, resumed); stopped ${stopped}\n`,
    );
    expect(kills).toBeGreaterThanOrEqual(20);
    expect(effects).toBe(ackedCount);
    expect(ackedCount).toBe(CALLBACKS * REPORTS);
    await killChild(child);
  }, 180_000);
});
