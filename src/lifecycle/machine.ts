/**
 * The lifecycle of one callback (spec 3) as an XState v5 machine. Every
 * callback's actor is created from this one definition; the diagrams are
 * exported from it too.
 *
 * @module
 */

import { assign, setup, type SnapshotFrom, type StateValue } from 'xstate';
import type { CallbackData, DataVersion } from '../data.js';
import type { CallbackStatus } from './statuses.js';

/** The machine's context: the merged callback data, as an immutable version. */
export interface LifecycleContext {
  data: DataVersion;
}

/** Events the machine understands. Each carries the report data merged on the transition. */
export type LifecycleEvent =
  | {
      type:
        'ACCEPT' | 'START' | 'PROGRESS' | 'COMPLETE' | 'ERROR' | 'CANCEL' | 'TIMEOUT' | 'ORPHAN';
      data: CallbackData;
    }
  | { type: 'MERGE'; data: CallbackData };

/** Input of a new callback actor. */
export interface LifecycleInput {
  data: DataVersion;
}

/** The event type that moves a callback to each status. */
export const STATUS_EVENT = {
  accept: 'ACCEPT',
  start: 'START',
  progress: 'PROGRESS',
  complete: 'COMPLETE',
  error: 'ERROR',
  cancel: 'CANCEL',
  timeout: 'TIMEOUT',
  orphan: 'ORPHAN',
} as const satisfies Record<Exclude<CallbackStatus, 'create'>, LifecycleEvent['type']>;

const merge = { actions: 'merge' } as const;
const to = (target: string) => ({ target, actions: 'merge' }) as const;

/**
 * The callback lifecycle: a compound `active` state (create → accept → start →
 * progress, forward only) and five final states. `PROGRESS` in `progress` is a
 * self-report that merges data; a backward or repeated `ACCEPT`/`START` has no
 * transition and changes nothing.
 */
export const lifecycleMachine = setup({
  types: {
    context: {} as LifecycleContext,
    events: {} as LifecycleEvent,
    input: {} as LifecycleInput,
  },
  actions: {
    merge: assign({ data: ({ context, event }) => context.data.with(event.data) }),
  },
}).createMachine({
  id: 'callback',
  context: ({ input }) => ({ data: input.data }),
  initial: 'active',
  states: {
    active: {
      initial: 'create',
      states: {
        create: { on: { ACCEPT: to('accept'), START: to('start'), PROGRESS: to('progress') } },
        accept: { on: { START: to('start'), PROGRESS: to('progress') } },
        start: { on: { PROGRESS: to('progress') } },
        progress: { on: { PROGRESS: merge } },
      },
      on: {
        MERGE: merge,
        COMPLETE: to('#callback.complete'),
        ERROR: to('#callback.error'),
        CANCEL: to('#callback.cancel'),
        TIMEOUT: to('#callback.timeout'),
        ORPHAN: to('#callback.orphan'),
      },
    },
    complete: { type: 'final' },
    error: { type: 'final' },
    cancel: { type: 'final' },
    timeout: { type: 'final' },
    orphan: { type: 'final' },
  },
});

/** The machine's type, for typed actors. */
export type LifecycleMachine = typeof lifecycleMachine;
/** A snapshot of a callback actor. */
export type LifecycleSnapshot = SnapshotFrom<LifecycleMachine>;

/** The callback status a state value stands for. */
export function statusOf(value: StateValue): CallbackStatus {
  return (
    typeof value === 'string' ? value : (value as { active: string }).active
  ) as CallbackStatus;
}

/** The state value that stands for a status (inverse of {@link statusOf}). */
export function valueOf(status: CallbackStatus): StateValue {
  return status === 'create' || status === 'accept' || status === 'start' || status === 'progress'
    ? { active: status }
    : status;
}
