/**
 * A live callback runs its lifecycle machine either as an XState actor (when inspected) or as
 * the machine's transition function over a snapshot (`SnapshotRunner`). The machine is the one
 * rulebook: from every status, every event, and every sequence of two, both give the same
 * state, data and "was there a transition" answer.
 */

import { createActor } from 'xstate';
import { describe, expect, it } from 'vitest';
import { DataVersion } from '../src/data.js';
import { lifecycleMachine, statusOf, type LifecycleEvent } from '../src/lifecycle/machine.js';
import { actorSnapshot } from '../src/lifecycle/persist.js';
import { SnapshotRunner, type LifecycleRunner } from '../src/lifecycle/runner.js';
import {
  ACTIVE_STATUSES,
  TERMINAL_STATUSES,
  type CallbackStatus,
} from '../src/lifecycle/statuses.js';
import { makeEngine, report } from './helpers/engine.js';

const EVENTS: LifecycleEvent['type'][] = [
  'ACCEPT',
  'START',
  'PROGRESS',
  'COMPLETE',
  'ERROR',
  'CANCEL',
  'TIMEOUT',
  'ORPHAN',
  'MERGE',
];

function actorAt(status: CallbackStatus, data: DataVersion): LifecycleRunner {
  const actor = createActor(lifecycleMachine, {
    snapshot: actorSnapshot(status, data),
    input: { data },
  });
  actor.start();
  return actor;
}

/** Sends one event to a runner: the status after, the data after, and whether it moved. */
function step(runner: LifecycleRunner, type: LifecycleEvent['type'], n: number) {
  const before = runner.getSnapshot();
  const event = { type, data: { [`k${n}`]: n, shared: n } } as LifecycleEvent;
  const can = before.can(event);
  runner.send(event);
  const after = runner.getSnapshot();
  return {
    can,
    moved: after !== before,
    status: statusOf(after.value),
    done: after.status,
    data: after.context.data.value,
  };
}

describe('the snapshot runner and an XState actor apply the same machine', () => {
  const start = DataVersion.of({ orderId: 7, shared: 0 });

  it.each([...ACTIVE_STATUSES, ...TERMINAL_STATUSES].map((s) => [s]))(
    'from %s: every event, and every pair',
    (status) => {
      for (const first of EVENTS)
        for (const second of EVENTS) {
          const actor = actorAt(status, start);
          const runner = new SnapshotRunner(status, start);
          expect(runner.getSnapshot().value).toEqual(actor.getSnapshot().value);
          expect(runner.getSnapshot().status).toBe(actor.getSnapshot().status);
          const a = [step(actor, first, 1), step(actor, second, 2)];
          const r = [step(runner, first, 1), step(runner, second, 2)];
          expect(r, `${status}: ${first} then ${second}`).toEqual(a);
          actor.stop();
        }
    },
  );

  it('a report with no transition leaves the very same snapshot (what the engine calls ignored)', () => {
    const runner = new SnapshotRunner('start', start);
    const before = runner.getSnapshot();
    runner.send({ type: 'ACCEPT', data: { late: true } });
    expect(runner.getSnapshot()).toBe(before);
    runner.send({ type: 'PROGRESS', data: { pct: 5 } });
    expect(runner.getSnapshot()).not.toBe(before);
    expect(runner.getSnapshot().context.data.value).toEqual({ orderId: 7, shared: 0, pct: 5 });
  });

  it('an engine gives the same outcomes without an inspector and with one, whose callbacks then report inspection events', async () => {
    const { engine } = makeEngine();
    engine.anchor('job');
    await engine.ready();
    const plain = await engine.create('job', { data: { n: 0 } });
    // No inspector: the callback moves on the machine's transition function.
    expect((await engine.dispatch(report(plain.token, 'start'))).status).toBe('start');
    expect((await engine.dispatch(report(plain.token, 'accept'))).status).toBe('start');
    const seen: string[] = [];
    const stop = engine.inspect((event) => {
      if (event.type === '@xstate.snapshot')
        seen.push((event.actorRef as unknown as { id: string }).id);
    });
    const inspected = await engine.create('job', { data: { n: 0 } });
    expect((await engine.dispatch(report(inspected.token, 'start'))).status).toBe('start');
    expect((await engine.dispatch(report(inspected.token, 'accept'))).status).toBe('start');
    for (const cb of [plain, inspected]) {
      expect((await engine.dispatch(report(cb.token, 'progress', { pct: 50 }))).data).toEqual({
        n: 0,
        pct: 50,
      });
      expect((await engine.dispatch(report(cb.token, 'complete'))).status).toBe('complete');
    }
    // Attaching an inspector brings idle callbacks back as actors: both report to it.
    expect(seen).toContain(inspected.id);
    expect(seen).toContain(plain.id);
    stop();
    await engine.close();
  });
});
