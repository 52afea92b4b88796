import { createActor } from 'xstate';
import { describe, expect, it } from 'vitest';
import { DataVersion } from '../src/data.js';
import { lifecycleMachine, statusOf, type LifecycleEvent } from '../src/lifecycle/machine.js';
import {
  actorSnapshot,
  MACHINE_VERSION,
  persistSnapshot,
  restoreSnapshot,
  type PersistedLifecycle,
} from '../src/lifecycle/persist.js';
import type { CallbackStatus } from '../src/lifecycle/statuses.js';

const paths: [string, LifecycleEvent['type'][]][] = [
  ['create', []],
  ['accept', ['ACCEPT']],
  ['start', ['ACCEPT', 'START']],
  ['progress', ['START', 'PROGRESS', 'PROGRESS']],
  ['complete', ['PROGRESS', 'COMPLETE']],
  ['error', ['ERROR']],
  ['cancel', ['ACCEPT', 'CANCEL']],
  ['timeout', ['TIMEOUT']],
  ['orphan', ['START', 'ORPHAN']],
];

describe('the persisted snapshot (issue 10 item 5)', () => {
  it.each(paths)(
    'for %s it is what getPersistedSnapshot() returns, and restores to the same state',
    (status, events) => {
      const actor = createActor(lifecycleMachine, {
        input: { data: DataVersion.of({ a: 1 }) },
      }).start();
      events.forEach((type, i) => actor.send({ type, data: { [`k${i}`]: i } }));
      const snap = actor.getSnapshot();
      expect(statusOf(snap.value)).toBe(status);
      const data = snap.context.data;
      const official = actor.getPersistedSnapshot() as unknown as Record<string, unknown>;
      const ours = persistSnapshot(status as CallbackStatus, data, snap);
      expect(JSON.parse(JSON.stringify(ours))).toEqual(
        JSON.parse(JSON.stringify({ ...official, context: { data: data.value } })),
      );
      // Without a live actor (a passivated callback), the same shape from the status alone.
      expect(JSON.parse(JSON.stringify(persistSnapshot(status as CallbackStatus, data)))).toEqual(
        JSON.parse(JSON.stringify(ours)),
      );
      // Stored as JSON, read back, and started as an actor in the same state with the same data.
      const restored = restoreSnapshot(JSON.parse(JSON.stringify(ours)) as PersistedLifecycle);
      expect(restored.status).toBe(status);
      expect(restored.data.value).toEqual(data.value);
      const again = createActor(lifecycleMachine, {
        snapshot: actorSnapshot(restored.status, restored.data),
        input: { data: restored.data },
      }).start();
      expect(again.getSnapshot().value).toEqual(snap.value);
      expect(again.getSnapshot().status).toBe(snap.status);
      actor.stop();
      again.stop();
    },
  );

  it('refuses a snapshot naming a state the machine does not have', () => {
    const bad = { ...persistSnapshot('create', DataVersion.EMPTY), value: 'paused' };
    expect(() => restoreSnapshot(bad as never)).toThrow(/unknown state "paused"/);
  });

  it('versions the machine by its definition', () => {
    expect(MACHINE_VERSION).toMatch(/^[0-9a-f]{16}$/);
  });
});
