/**
 * The engine's outward signals: engine-event listeners (spec 13), XState
 * inspectors attached to callback actors, and warnings for errors that must
 * not be thrown into the engine.
 *
 * @module
 */

import type { InspectionEvent, Observer } from 'xstate';
import type { Clock } from '../clock.js';
import { toError } from '../thrown.js';
import { inspectionWithContext } from '../lifecycle/inspection.js';
import { errorWarner, warner, type EngineLogger, type WarnFn } from '../log.js';
import { Telemetry } from '../telemetry.js';
import type { EngineEvent, EngineEventType } from '../types.js';
import type { CallbackRecord } from './record.js';

/** An XState inspector: a function or an observer of XState inspection events. */
export type XStateInspector =
  ((event: InspectionEvent) => void) | Partial<Observer<InspectionEvent>>;

/** Fields of an engine event beyond those taken from the record. */
export type EventExtra = Omit<Partial<EngineEvent>, 'type' | 'at' | 'id' | 'anchor' | 'status'>;

/** Errors from timers and listeners: never thrown into the engine; surfaced as a process warning. */
export function warn(err: unknown): void {
  process.emitWarning(toError(err).message, {
    type: 'CallbackEngineWarning',
    code: 'CBE_W_LISTENER',
  });
}

/** Fans engine events out to listeners and XState inspection events out to inspectors. */
export class EventHub {
  readonly #clock: Clock;
  /** Writes a warning to the engine's logger (or `process.emitWarning`). */
  readonly log: WarnFn;
  /** An error from a timer, listener or background task, as a `CBE_W_LISTENER` warning. */
  readonly warn: (err: unknown) => void;
  /** Measurements (metrics exporters) and OpenTelemetry spans. */
  readonly telemetry: Telemetry;
  readonly #listeners = new Set<(event: EngineEvent) => void>();
  readonly #inspectors = new Set<XStateInspector>();
  /**
   * Passed to createActor only while inspectors are attached (no cost otherwise). Inspectors see
   * the callback's context as users read it (status, data as JSON, the report), not the
   * machine's internal data version.
   */
  readonly #inspectAll = (raw: InspectionEvent): void => {
    const event = inspectionWithContext(raw);
    for (const inspector of this.#inspectors) {
      try {
        if (typeof inspector === 'function') inspector(event);
        else inspector.next?.(event);
      } catch (err) {
        this.warn(err);
      }
    }
  };

  constructor(clock: Clock, logger?: EngineLogger) {
    this.#clock = clock;
    this.log = warner(logger);
    this.warn = errorWarner(this.log, 'CBE_W_LISTENER');
    this.telemetry = new Telemetry(this.warn);
  }

  /** Adds a listener; returns the function that removes it. */
  subscribe(listener: (event: EngineEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Adds an inspector; returns the function that removes it. */
  addInspector(inspector: XStateInspector): () => void {
    this.#inspectors.add(inspector);
    return () => void this.#inspectors.delete(inspector);
  }

  /** Whether an inspector listens (a live callback then runs as an XState actor). */
  get inspected(): boolean {
    return this.#inspectors.size > 0;
  }

  /** The `createActor` options that route an actor's inspection events to the inspectors. */
  actorOptions(id: string): { inspect: (event: InspectionEvent) => void; id: string } {
    return { inspect: this.#inspectAll, id };
  }

  /** Emits an event about a callback (skipped entirely when nobody listens). */
  emit(type: EngineEventType, record: CallbackRecord, extra: EventExtra | undefined): void {
    if (this.#listeners.size === 0) return;
    this.emitRaw({
      type,
      at: this.#clock.now(),
      id: record.id,
      anchor: record.anchor,
      status: record.status,
      ...extra,
    });
  }

  /** Emits a fully-formed event; a listener that throws becomes a warning. */
  emitRaw(event: EngineEvent): void {
    for (const listener of this.#listeners) {
      try {
        listener(event);
      } catch (err) {
        this.warn(err);
      }
    }
  }

  /** Emits an `early` event: an early CloudEvent held, claimed, expired or refused. */
  early(anchor: string, reason: 'held' | 'claimed' | 'expired' | 'refused', status: string): void {
    if (this.#listeners.size > 0)
      this.emitRaw({ type: 'early', at: this.#clock.now(), anchor, reason, reported: status });
  }

  /** Emits a `rejected` event (malformed message or token, forged signature). */
  rejected(reason: string): void {
    if (this.#listeners.size > 0) this.emitRaw({ type: 'rejected', at: this.#clock.now(), reason });
  }
}
