/**
 * XState inspection events with the callback's real context. A callback
 * actor's context holds its data as a `DataVersion` (an immutable version
 * chain that serializes as `{}`), so inspectors such as Stately's would show
 * `{"data":{}}`. Before an inspection event reaches the inspectors, its
 * snapshot (and its actor's `getSnapshot()`) gets the context as users read
 * it: the status, the data as plain JSON, and the report that moved it.
 *
 * @module
 */

import type { AnyActorRef, InspectionEvent, Snapshot } from 'xstate';
import type { CallbackData, DataVersion } from '../data.js';
import { lifecycleMachine, statusOf, STATUS_EVENT } from './machine.js';
import type { CallbackStatus } from './statuses.js';

/** The report (or timer, cancel, orphaning) that moved a callback: the status it asked for, and its data. */
export interface InspectedReport {
  readonly status: CallbackStatus;
  readonly data: CallbackData;
}

/** A callback actor's context as inspectors see it. */
export interface InspectedContext {
  /** The callback's status. */
  readonly status: CallbackStatus;
  /** Its merged data, as plain JSON. */
  readonly data: CallbackData;
  /** The last report that moved it (or asked to), `null` until one did since the actor started. */
  readonly report: InspectedReport | null;
}

const STATUS_OF_EVENT: ReadonlyMap<string, CallbackStatus> = new Map(
  Object.entries(STATUS_EVENT).map(([status, type]) => [type, status as CallbackStatus]),
);

/** Per actor: its last report, and the stand-in handed to inspectors. */
const reports = new WeakMap<AnyActorRef, InspectedReport>();
const standIns = new WeakMap<AnyActorRef, AnyActorRef>();

interface LifecycleSnapshotLike {
  readonly value: Parameters<typeof statusOf>[0];
  readonly context: { readonly data: DataVersion };
}

/** The snapshot with the context as users read it (methods and `toJSON()` keep working). */
function withContext(actor: AnyActorRef, snapshot: Snapshot<unknown>): Snapshot<unknown> {
  const s = snapshot as Snapshot<unknown> & Partial<LifecycleSnapshotLike>;
  if (s.value === undefined || s.context?.data === undefined) return snapshot;
  const context: InspectedContext = {
    status: statusOf(s.value),
    data: s.context.data.value,
    report: reports.get(actor) ?? null,
  };
  return { ...snapshot, context } as unknown as Snapshot<unknown>;
}

/**
 * A stand-in for the actor whose `getSnapshot()` carries the context as users read it; every
 * other property and method is the actor's own. One per actor, so inspectors that compare
 * actor refs see the same one in every event.
 */
function standIn(actor: AnyActorRef): AnyActorRef {
  let ref = standIns.get(actor);
  if (ref === undefined) {
    ref = new Proxy(actor, {
      get(target, key) {
        if (key === 'getSnapshot')
          return () => withContext(target, target.getSnapshot() as Snapshot<unknown>);
        const value = Reflect.get(target, key, target) as unknown;
        return typeof value === 'function'
          ? (value as (...args: unknown[]) => unknown).bind(target)
          : value;
      },
    });
    standIns.set(actor, ref);
  }
  return ref;
}

/**
 * An inspection event as inspectors should see it: for a callback actor, its snapshot's context
 * is `{ status, data, report }` ({@link InspectedContext}) and its `actorRef.getSnapshot()` says
 * the same. Events of other actors pass unchanged.
 *
 * @param event - the event XState emitted.
 * @returns the event to hand to inspectors.
 */
export function inspectionWithContext(event: InspectionEvent): InspectionEvent {
  const actor = event.actorRef as AnyActorRef;
  if ((actor as { logic?: unknown }).logic !== lifecycleMachine) return event;
  if (event.type === '@xstate.event' || event.type === '@xstate.snapshot') {
    const status = STATUS_OF_EVENT.get(event.event.type);
    if (status !== undefined)
      reports.set(actor, {
        status,
        data: (event.event as { data?: CallbackData }).data ?? {},
      });
  }
  const actorRef = standIn(actor);
  if ('snapshot' in event)
    return { ...event, actorRef, snapshot: withContext(actor, event.snapshot) };
  return { ...event, actorRef };
}
