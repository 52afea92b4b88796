/**
 * What the engine's own HTTP layer needs of an engine and users do not: holding a CloudEvent
 * that found no callback (early events), mapping an event type to a status, and (for tests) what
 * keeps the process alive. Kept off the public {@link CallbackEngine} interface; the engine
 * registers them here when it is created.
 *
 * @internal
 * @module
 */

import type { CallbackEngine } from './callback-engine.js';
import { InvalidArgumentError } from './errors.js';
import type { DispatchStatus } from './lifecycle/statuses.js';
import type { EarlyEventInput, EarlyHoldResult } from './types.js';

/** The engine's internal call-in points. */
export interface EngineInternals {
  /**
   * Offers a CloudEvent that found no callback to the anchors that opted in to early events
   * (`early`): the first registered such anchor whose `correlate` keys the event carries and
   * whose status resolves (`status`, else the anchor's `eventTypes`) holds it until the
   * callback with that correlation key is created (which applies it before `create()`
   * resolves) or its retention passes. With a durable store it resolves once the event is
   * stored. A redelivery (same `dedupKey`) is held once.
   * @returns `queued`, `found` (a callback with the key exists now: dispatch to it), or
   *   `unmatched` (answer `notFound`).
   * @throws `EarlyEventsFullError` (503, retryable) when the anchor's hold is full;
   *   `PayloadTooLargeError`, `InvalidDataError`, `InvalidMessageError` for a bad event;
   *   `StoreUnavailableError` if it could not be stored; `EngineClosedError`.
   */
  holdEarly(event: EarlyEventInput): Promise<EarlyHoldResult>;
  /** The status an anchor's `eventTypes` maps a CloudEvent type to, or `undefined`. */
  eventStatus(anchor: string, type: string): DispatchStatus | undefined;
  /**
   * How many things awaited on the engine keep the process alive now (pending calls and waits,
   * mailboxes waiting for a step or a retry, a `close()` under way); 0 when it may exit.
   */
  keepAliveCount(): number;
}

const registered = new WeakMap<object, EngineInternals>();

/** Registers an engine's internals (by the engine, once, when it is created). */
export function registerInternals(engine: CallbackEngine, internals: EngineInternals): void {
  registered.set(engine, internals);
}

/**
 * The internals of an engine made by `createCallbackEngine()`.
 * @throws {@link InvalidArgumentError} for anything else.
 */
export function internalsOf(engine: CallbackEngine): EngineInternals {
  const found = registered.get(engine);
  if (found === undefined)
    throw new InvalidArgumentError('needs an engine made by createCallbackEngine()');
  return found;
}
