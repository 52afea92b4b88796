/**
 * The machine's persisted snapshot, as the store keeps it: what XState's
 * `getPersistedSnapshot()` returns, with the callback's data as plain JSON,
 * and the way back to a live actor (`createActor(machine, { snapshot })`).
 * The status is always read from the snapshot's state value: the machine
 * stays the one rulebook.
 *
 * @module
 */

import { createHash } from 'node:crypto';
import type { Snapshot } from 'xstate';
import { DataVersion, deepFreeze, type CallbackData } from '../data.js';
import { lifecycleMachine, statusOf, valueOf, type LifecycleSnapshot } from './machine.js';
import { ACTIVE_STATUSES, isTerminal, TERMINAL_STATUSES, type CallbackStatus } from './statuses.js';

const KNOWN: ReadonlySet<string> = new Set([...ACTIVE_STATUSES, ...TERMINAL_STATUSES]);

/** A persisted snapshot as stored: XState's persisted shape, data as plain JSON. */
export interface PersistedLifecycle {
  readonly status: 'active' | 'done';
  readonly value: LifecycleSnapshot['value'];
  readonly context: { readonly data: CallbackData };
  readonly historyValue: object;
  readonly children: object;
}

/**
 * The version of the lifecycle machine: a hash of its definition (states and
 * transitions). A store written by a machine with another definition is
 * refused instead of being read with the wrong rulebook.
 */
export const MACHINE_VERSION: string = createHash('sha256')
  .update(JSON.stringify(lifecycleMachine.definition))
  .digest('hex')
  .slice(0, 16);

/**
 * The persisted snapshot of a callback. With a live actor it is the actor's own
 * `getPersistedSnapshot()`; a passivated callback (no actor) is in the same
 * shape, from its status. `data` is the record's data: a terminal step's output
 * is merged after the actor reached its final state.
 */
export function persistSnapshot(
  status: CallbackStatus,
  data: DataVersion,
  snapshot?: LifecycleSnapshot,
): PersistedLifecycle {
  if (snapshot) {
    // Field for field what `getPersistedSnapshot()` returns for this machine (it has no child
    // actors and no history states; a test holds the two equal), without its deep copy of the
    // context, which costs more than the rest of a durable report's encoding.
    return {
      status: snapshot.status === 'done' ? 'done' : 'active',
      value: snapshot.value,
      historyValue: snapshot.historyValue,
      children: {},
      context: { data: data.value },
    };
  }
  return snapshotOf(status, data.value) as PersistedLifecycle;
}

/** A stored snapshot read back: its status (from the state value) and data. */
export interface RestoredLifecycle {
  readonly status: CallbackStatus;
  readonly data: DataVersion;
}

/**
 * Reads a stored snapshot. The status comes from the machine's state value,
 * checked against the machine's own states.
 *
 * @throws `Error` if the snapshot names a state the machine does not have.
 */
export function restoreSnapshot(persisted: PersistedLifecycle): RestoredLifecycle {
  const status = statusOf(persisted.value);
  if (!KNOWN.has(status))
    throw new Error(`stored snapshot names an unknown state ${JSON.stringify(persisted.value)}`);
  const data = persisted.context.data;
  deepFreeze(data);
  return { status, data: DataVersion.of(data) };
}

/**
 * The persisted snapshot a passivated callback's actor is restored from, with
 * `createActor(lifecycleMachine, { snapshot })`: its context holds the data as a
 * {@link DataVersion}, as the running machine does.
 */
export function actorSnapshot(status: CallbackStatus, data: DataVersion): Snapshot<unknown> {
  return snapshotOf(status, data) as Snapshot<unknown>;
}

/** The persisted shape of a snapshot in `status` (this machine has no history states or children). */
function snapshotOf(status: CallbackStatus, data: unknown): unknown {
  return {
    status: isTerminal(status) ? 'done' : 'active',
    value: valueOf(status),
    historyValue: {},
    children: {},
    context: { data },
  };
}
