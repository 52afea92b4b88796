/**
 * Measurements and traces of the engine's hot path, for metrics exporters
 * (`callback-engine/metrics`) and OpenTelemetry. Both cost nothing measurable
 * when unused: measurements are taken only while someone listens, and spans go
 * through `@opentelemetry/api`, a no-op until the application registers an SDK.
 *
 * @module
 */

import {
  context,
  propagation,
  ProxyTracerProvider,
  ROOT_CONTEXT,
  SpanStatusCode,
  trace,
  type Attributes,
  type Context,
  type Link,
  type Span,
  type SpanContext,
} from '@opentelemetry/api';
import { toError } from './thrown.js';

/** One measurement of the engine's work, for metrics exporters. */
export type Measurement =
  | {
      /** A dispatch (report or read) answered, from its arrival to its answer. */
      readonly kind: 'dispatch';
      /** The callback's anchor, or `'(unknown)'` (unknown or forged token, unregistered anchor). */
      readonly anchor: string;
      /** The reported status, or the read action. */
      readonly reported: string;
      /** How it was handled (`applied`, `ignored`, ...), or `'error'` if it was refused. */
      readonly outcome: string;
      readonly seconds: number;
    }
  | {
      /** One try of a step. */
      readonly kind: 'step';
      readonly anchor: string;
      readonly status: string;
      readonly ok: boolean;
      readonly attempt: number;
      readonly seconds: number;
    }
  | {
      /** One group commit of a durable store. */
      readonly kind: 'commit';
      /** Rows written or removed. */
      readonly rows: number;
      readonly ok: boolean;
      readonly seconds: number;
    };

const TRACER_NAME = 'callback-engine';
/** A proxy: it finds the SDK's tracer once one is registered. */
const tracer = trace.getTracer(TRACER_NAME);

/** Whether an OpenTelemetry SDK is registered (else every span would be a no-op). */
export function isTracing(): boolean {
  const provider = trace.getTracerProvider();
  return (
    !(provider instanceof ProxyTracerProvider) ||
    provider.getDelegateTracer(TRACER_NAME) !== undefined
  );
}

/** The span context of a callback's `create` span, linked from its steps' spans. */
export type CreateLink = SpanContext;

/** The engine's measurements and spans. */
export class Telemetry {
  readonly #listeners = new Set<(m: Measurement) => void>();
  readonly #warn: (err: unknown) => void;
  /** Whether anybody listens to measurements (else none is taken). */
  measuring = false;

  constructor(warn: (err: unknown) => void) {
    this.#warn = warn;
  }

  /** Adds a measurement listener; returns the function that removes it. */
  onMeasure(listener: (m: Measurement) => void): () => void {
    this.#listeners.add(listener);
    this.measuring = true;
    return () => {
      this.#listeners.delete(listener);
      this.measuring = this.#listeners.size > 0;
    };
  }

  /** Hands a measurement to every listener (a listener that throws becomes a warning). */
  measure(m: Measurement): void {
    for (const listener of this.#listeners) {
      try {
        listener(m);
      } catch (err) {
        this.#warn(err);
      }
    }
  }

  /**
   * Starts a span, child of `parent` (default: the active context). Returns `undefined` when no
   * OpenTelemetry SDK records it, so callers skip attribute work.
   */
  start(name: string, attributes: Attributes, parent?: Context, links?: Link[]): Span | undefined {
    const span = tracer.startSpan(
      name,
      { attributes, ...(links ? { links } : {}) },
      parent ?? context.active(),
    );
    if (!span.isRecording()) return undefined;
    return span;
  }

  /** The active context with `span` in it (for children), or `undefined` when not tracing. */
  static contextOf(span: Span | undefined): Context | undefined {
    return span && trace.setSpan(context.active(), span);
  }

  /** Ends a span, marking it failed with `err` when given. */
  static end(span: Span | undefined, err?: unknown, attributes?: Attributes): void {
    if (!span) return;
    if (attributes) span.setAttributes(attributes);
    if (err !== undefined) {
      const e = toError(err);
      span.recordException(e);
      span.setStatus({ code: SpanStatusCode.ERROR, message: e.message });
    }
    span.end();
  }
}

/**
 * The context of a W3C `traceparent` (and `tracestate`), as HTTP headers or CloudEvents'
 * distributed-tracing extension carry them, through the registered propagator; the active
 * context when there is none (or no propagator is registered).
 */
export function extractTraceContext(carrier: {
  readonly traceparent?: unknown;
  readonly tracestate?: unknown;
}): Context {
  const { traceparent, tracestate } = carrier;
  if (typeof traceparent !== 'string') return context.active();
  const headers: Record<string, string> = { traceparent };
  if (typeof tracestate === 'string') headers.tracestate = tracestate;
  return propagation.extract(ROOT_CONTEXT, headers);
}

/**
 * The W3C trace headers of the active context (`traceparent`, `tracestate`), for a request that
 * carries a report on (the relay hop); `undefined` when nothing is traced.
 */
export function traceHeaders(): Record<string, string> | undefined {
  if (!isTracing()) return undefined;
  const carrier: Record<string, string> = {};
  propagation.inject(context.active(), carrier);
  return carrier.traceparent === undefined ? undefined : carrier;
}

/** Runs `fn` with `ctx` as the active OpenTelemetry context. */
export function withTraceContext<T>(ctx: Context, fn: () => T): T {
  return context.with(ctx, fn);
}

export type { Context as TraceContext, Span };
