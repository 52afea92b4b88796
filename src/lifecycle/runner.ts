/**
 * What runs one callback's lifecycle machine while the callback is live: an XState actor when
 * someone inspects the engine (the actor's inspection events feed the live diagrams), otherwise
 * the machine's own transition function over a snapshot. Both apply the same machine, so a
 * report moves a callback the same way either way; the snapshot runner only skips what an
 * actor adds around it (an actor system, a mailbox, observers, inspection), which is most of
 * the cost of bringing a passivated callback back (`createActor` + `start`).
 *
 * @module
 */

import { createActor, type ActorScope } from 'xstate';
import type { CallbackStatus } from './statuses.js';
import { DataVersion } from '../data.js';
import {
  lifecycleMachine,
  valueOf,
  type LifecycleEvent,
  type LifecycleSnapshot,
} from './machine.js';

/** A live callback's machine: an XState actor, or a {@link SnapshotRunner}. */
export interface LifecycleRunner {
  /** The current snapshot; the same object until a report makes a transition. */
  getSnapshot(): LifecycleSnapshot;
  /** Applies an event; one without a transition leaves the snapshot as it was. */
  send(event: LifecycleEvent): void;
  /** Stops it (an actor stops; a snapshot runner has nothing to stop). */
  stop(): void;
}

type Scope = ActorScope<LifecycleSnapshot, LifecycleEvent>;

let scope: Scope | undefined;

/**
 * One actor scope for every snapshot runner. The machine's only actions are `assign`s, which
 * the transition applies itself; nothing reaches the scope's executor, children or system.
 */
function sharedScope(): Scope {
  if (scope) return scope;
  const self = createActor(lifecycleMachine, { input: { data: DataVersion.EMPTY } });
  scope = {
    self,
    id: '',
    sessionId: '',
    system: self.system,
    logger: () => {},
    defer: () => {},
    emit: () => {},
    stopChild: () => {},
    actionExecutor: () => {},
  };
  return scope;
}

/** The machine's resolved snapshot of each status, with placeholder data (see {@link SnapshotRunner}). */
const resolved = new Map<CallbackStatus, LifecycleSnapshot>();

/** The lifecycle machine applied to a snapshot with its transition function: no actor. */
export class SnapshotRunner implements LifecycleRunner {
  #snapshot: LifecycleSnapshot;

  constructor(status: CallbackStatus, data: DataVersion) {
    // A snapshot's state nodes, value and tags depend on its status alone: they are resolved
    // once per status, and each callback's snapshot is that one with its own context (what
    // XState's own snapshot copy does, without resolving the nodes again).
    let base = resolved.get(status);
    if (!base) {
      base = lifecycleMachine.resolveState({
        value: valueOf(status),
        context: { data: DataVersion.EMPTY },
      });
      resolved.set(status, base);
    }
    this.#snapshot = { ...base, context: { data } };
  }

  getSnapshot(): LifecycleSnapshot {
    return this.#snapshot;
  }

  send(event: LifecycleEvent): void {
    // As an actor: a machine in a final state takes no more events.
    if (this.#snapshot.status !== 'active') return;
    this.#snapshot = lifecycleMachine.transition(this.#snapshot, event, sharedScope());
  }

  stop(): void {}
}
