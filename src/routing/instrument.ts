/**
 * Measuring and tracing the engine's call-in points: a dispatch measured (`onMeasure`: latency
 * by anchor, reported status and outcome) and traced (a `callback.dispatch` span), a create
 * traced (a `callback.create` span). Labels are only the engine's own words: an outsider's
 * string never becomes a label (it would grow the series).
 *
 * @module
 */

import { isDispatchStatus } from '../lifecycle/statuses.js';
import {
  isTracing,
  Telemetry,
  withTraceContext,
  type Span,
  type TraceContext,
} from '../telemetry.js';
import { decodeToken } from '../token.js';
import type { CallbackMessage, CreatedCallback, DispatchResult } from '../types.js';

const READ_ACTIONS: ReadonlySet<string> = new Set(['getCallback', 'exists']);

/** Whether a dispatch is measured or traced now (else it takes the plain path). */
export function observing(telemetry: Telemetry): boolean {
  return telemetry.measuring || isTracing();
}

/**
 * A dispatch measured and traced.
 * @param isAnchor - whether a name is a registered anchor (an unknown one is labelled `(unknown)`).
 * @param deliver - delivers the message, with the context of its span (when traced).
 */
export function observeDispatch(
  telemetry: Telemetry,
  isAnchor: (name: string) => boolean,
  message: CallbackMessage,
  deliver: (trace: TraceContext | undefined) => Promise<DispatchResult>,
): Promise<DispatchResult> {
  const started = performance.now();
  const m = message as unknown as Partial<Record<string, unknown>> | null;
  const said = m?.callbackStatus ?? m?.callbackAction;
  const reported =
    typeof said === 'string' && (isDispatchStatus(said) || READ_ACTIONS.has(said))
      ? said
      : '(invalid)';
  // Measured but not traced (no SDK): no span at all, not even a no-op one.
  const span = isTracing()
    ? telemetry.start('callback.dispatch', { 'callback.reported_status': reported })
    : undefined;
  let result: Promise<DispatchResult>;
  if (span) {
    const ctx = Telemetry.contextOf(span)!;
    result = withTraceContext(ctx, () => deliver(ctx));
  } else result = deliver(undefined);
  const done = (r: DispatchResult | undefined, err?: unknown): void => {
    // Only a verified callback names its anchor: a forged or unknown token is '(unknown)'.
    let anchor = '(unknown)';
    let id: string | undefined;
    if (r !== undefined && r.outcome !== 'notFound') {
      const fields = decodeToken(r.answer.token);
      if (fields !== undefined && isAnchor(fields.anchor)) {
        anchor = fields.anchor;
        id = fields.id;
      }
    }
    const outcome = r ? r.outcome : 'error';
    if (telemetry.measuring) {
      telemetry.measure({
        kind: 'dispatch',
        anchor,
        reported,
        outcome,
        seconds: (performance.now() - started) / 1000,
      });
    }
    Telemetry.end(span, err, {
      'callback.anchor': anchor,
      'callback.outcome': outcome,
      ...(id !== undefined ? { 'callback.id': id } : {}),
      ...(r ? { 'callback.status': r.answer.status } : {}),
    });
  };
  return result.then(
    (r) => {
      done(r);
      return r;
    },
    (err: unknown) => {
      done(undefined, err);
      throw err;
    },
  );
}

/** A create traced: a `callback.create` span carrying the new callback's id and status. */
export function traceCreate(
  telemetry: Telemetry,
  anchorName: string,
  create: (span: Span | undefined) => Promise<CreatedCallback>,
): Promise<CreatedCallback> {
  const span = telemetry.start('callback.create', {
    'callback.anchor': String(anchorName).slice(0, 100),
  });
  return create(span).then(
    (created) => {
      Telemetry.end(span, undefined, {
        'callback.id': created.id,
        'callback.status': created.status,
      });
      return created;
    },
    (err: unknown) => {
      Telemetry.end(span, err);
      throw err;
    },
  );
}
