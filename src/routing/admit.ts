/**
 * Admission at the call-in point: a CALLBACK message parsed and its data ingested (size, JSON
 * rules, hostile keys), a relayed token handed to its origin, a report's data checked against
 * its anchor's schema (refused before anything is applied), and the message passed to the
 * routing. Reports to one token whose schema checks asynchronously keep their arrival order.
 *
 * @module
 */

import { Answer } from '../answer.js';
import { DataVersion, ingestData, type CallbackData } from '../data.js';
import { EngineClosedError } from '../errors.js';
import { toError } from '../thrown.js';
import type { DispatchStatus } from '../lifecycle/statuses.js';
import { parseMessage, type ParsedMessage, type ReadAction } from '../message.js';
import type { ResolvedAnchor } from '../options/anchor.js';
import type { ResolvedEngineOptions } from '../options/engine.js';
import type { EventHub } from '../registry/event-hub.js';
import type { CallbackRegistry } from '../registry/registry.js';
import { Relay } from '../relay/relay.js';
import { checkSchema, reportSchema, type StandardSchemaV1 } from '../schema.js';
import type { CallbackAnswer, CallbackMessage, DispatchResult } from '../types.js';
import type { Routing } from './routing.js';

/** What admission works with. */
export interface AdmissionDeps {
  readonly options: ResolvedEngineOptions;
  readonly anchors: ReadonlyMap<string, ResolvedAnchor>;
  readonly registry: CallbackRegistry;
  readonly events: EventHub;
  readonly routing: Routing;
  readonly relay: Relay;
  /** Whether the engine closed (a report waiting for its schema check is refused then). */
  closed(): boolean;
}

/** The answer to a read action: `getCallback` as is; `exists` says `exists` with no data. */
function readAnswer(answer: CallbackAnswer, action: ReadAction): CallbackAnswer {
  if (action === 'getCallback' || answer.status === 'notFound') return answer;
  return new Answer('exists', answer.token, DataVersion.EMPTY);
}

/** Messages from outside, checked and handed to the routing. */
export class Admission {
  readonly #d: AdmissionDeps;
  /** Whether some anchor has report schemas (else reports skip the schema path). */
  checksReports = false;
  /** Per token: the turn of the last report that waits for an asynchronous schema check. */
  readonly #gates = new Map<string, Promise<void>>();

  constructor(deps: AdmissionDeps) {
    this.#d = deps;
  }

  /**
   * Delivers one CALLBACK message.
   * @param trace - the OpenTelemetry context of its dispatch span, carried to the step it runs.
   */
  deliver(message: CallbackMessage, trace?: unknown): Promise<DispatchResult> {
    const d = this.#d;
    let parsed: ParsedMessage;
    let data: CallbackData = {};
    try {
      parsed = parseMessage(message);
      if (parsed.kind === 'report')
        data = ingestData('callbackData', parsed.data, d.options.maxDataBytes);
    } catch (err) {
      d.events.rejected((err as Error).message);
      return Promise.reject(toError(err));
    }
    if (Relay.claims(parsed.token)) {
      return parsed.kind === 'read'
        ? d.relay.read(parsed.token, parsed.action)
        : d.relay.report(parsed.token, parsed.status, data, parsed.dedupKey);
    }
    if (parsed.kind === 'read') {
      const action = parsed.action;
      return d.routing.read(parsed.token).then((answer) => ({
        answer: readAnswer(answer, action),
        outcome: answer.status === 'notFound' ? 'notFound' : 'read',
      }));
    }
    const report = parsed;
    const options = { dedupKey: report.dedupKey, trace };
    if (!this.checksReports) return d.routing.report(report.token, report.status, data, options);
    const route = (checked: CallbackData) =>
      d.routing.report(report.token, report.status, checked, options);
    // Schemas at the edge: refused before anything is applied.
    const schema = this.#reportSchema(report.token, report.status);
    let checked: CallbackData | Promise<CallbackData> = data;
    try {
      if (schema) checked = checkSchema('callbackData', schema, data, d.options.maxDataBytes);
    } catch (err) {
      d.events.rejected((err as Error).message);
      return Promise.reject(toError(err));
    }
    const gate = this.#gates.get(report.token);
    if (gate !== undefined || checked instanceof Promise)
      return this.#inOrder(report.token, gate, checked, route);
    return route(checked);
  }

  /** The report schema of a verified token's anchor for `status`, if it has one. */
  #reportSchema(token: string, status: DispatchStatus): StandardSchemaV1 | undefined {
    const name = this.#d.registry.verifiedFields(token)?.anchor;
    if (name === undefined) return undefined;
    const anchor = this.#d.anchors.get(name);
    return anchor && reportSchema(anchor.schemas, status);
  }

  /**
   * A report whose schema validates asynchronously, or that follows one: it goes on once every
   * earlier report to the same token went on, so one callback's reports keep their order.
   */
  #inOrder<T>(
    token: string,
    gate: Promise<void> | undefined,
    checked: CallbackData | Promise<CallbackData>,
    route: (data: CallbackData) => Promise<T>,
  ): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const turn = (gate ?? Promise.resolve())
        .then(() => checked)
        .then(
          (data) => {
            if (this.#d.closed()) return reject(new EngineClosedError());
            route(data).then(resolve, reject);
          },
          (err: unknown) => {
            this.#d.events.rejected(toError(err).message);
            reject(toError(err));
          },
        );
      this.#gates.set(token, turn);
      void turn.then(() => {
        if (this.#gates.get(token) === turn) this.#gates.delete(token);
      });
    });
  }
}
