import { context, propagation, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
  type ReadableSpan,
} from '@opentelemetry/sdk-trace-base';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { makeEngine, report } from './helpers/engine.js';
import { serve } from '../src/http/index.js';
import { jsonOf, serviceFixture } from './helpers/http.js';

const exporter = new InMemorySpanExporter();

beforeAll(() => {
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  trace.setGlobalTracerProvider(
    new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }),
  );
});
afterAll(() => {
  trace.disable();
  propagation.disable();
  context.disable();
});
beforeEach(() => exporter.reset());

const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';
const PARENT_ID = '00f067aa0ba902b7';
const TRACEPARENT = `00-${TRACE_ID}-${PARENT_ID}-01`;

const spans = (name: string): ReadableSpan[] =>
  exporter.getFinishedSpans().filter((s) => s.name === name);
const parentOf = (s: ReadableSpan) => s.parentSpanContext?.spanId;

describe('OpenTelemetry traces (in-memory exporter)', () => {
  const fx = serviceFixture();

  it('a report over HTTP joins the caller trace (traceparent); its step span is a child, linked to the create', async () => {
    const { engine, url } = await fx.start((e) => {
      e.anchor('pay', { next: { progress: async () => ({ seen: true }) } });
    });
    const cb = await engine.create('pay', { data: { orderId: 7 } });
    const [create] = spans('callback.create');
    expect(create!.attributes).toMatchObject({ 'callback.anchor': 'pay', 'callback.id': cb.id });
    const r = await fetch(`${url}/callbacks/${cb.token}/progress`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', traceparent: TRACEPARENT },
      body: JSON.stringify({ pct: 50 }),
    });
    expect(r.status).toBe(200);
    const [dispatch] = spans('callback.dispatch');
    expect(dispatch!.spanContext().traceId).toBe(TRACE_ID);
    expect(parentOf(dispatch!)).toBe(PARENT_ID);
    expect(dispatch!.attributes).toMatchObject({
      'callback.anchor': 'pay',
      'callback.reported_status': 'progress',
      'callback.status': 'progress',
      'callback.outcome': 'applied',
      'callback.id': cb.id,
    });
    const steps = spans('callback.step');
    const progress = steps.find((s) => s.attributes['callback.step_status'] === 'progress')!;
    expect(progress.spanContext().traceId).toBe(TRACE_ID);
    expect(parentOf(progress)).toBe(dispatch!.spanContext().spanId);
    expect(progress.links.map((l) => l.context.spanId)).toEqual([create!.spanContext().spanId]);
    expect(progress.attributes).toMatchObject({
      'callback.id': cb.id,
      'callback.anchor': 'pay',
      'callback.attempt': 1,
    });
    // One exported trace, for the note.
    console.log(
      'exported spans:',
      JSON.stringify(
        exporter.getFinishedSpans().map((s) => ({
          name: s.name,
          traceId: s.spanContext().traceId,
          spanId: s.spanContext().spanId,
          parentSpanId: parentOf(s),
          links: s.links.map((l) => l.context.spanId),
          attributes: s.attributes,
        })),
      ),
    );
  });

  it('a CloudEvent carrying traceparent (distributed-tracing extension) joins the event trace', async () => {
    const { engine, url } = await fx.start((e) => e.anchor('ship'));
    const cb = await engine.create('ship');
    const r = await fetch(`${url}/events`, {
      method: 'POST',
      headers: { 'content-type': 'application/cloudevents+json' },
      body: JSON.stringify({
        specversion: '1.0',
        id: 'e-1',
        source: '/carrier',
        type: 'com.example.shipped',
        callbacktoken: cb.token,
        callbackstatus: 'progress',
        traceparent: TRACEPARENT,
        data: { at: 'hub' },
      }),
    });
    expect(r.status).toBe(200);
    expect((await jsonOf(r)).status).toBe('progress');
    const [dispatch] = spans('callback.dispatch');
    expect(dispatch!.spanContext().traceId).toBe(TRACE_ID);
    expect(parentOf(dispatch!)).toBe(PARENT_ID);
    expect(dispatch!.attributes).toMatchObject({ 'callback.id': cb.id, 'callback.anchor': 'ship' });
  });

  it('a dispatch span names its callback only when the token verified', async () => {
    const { engine } = await fx.start((e) => e.anchor('job'));
    const cb = await engine.create('job', { data: { orderId: 1 } });
    await engine.dispatch(report(cb.token, 'accept'));
    const forged = `${cb.token.slice(0, -2)}AA`;
    expect((await engine.dispatch(report(forged, 'accept'))).status).toBe('notFound');
    // Refused before anything was applied (a creation field): the span ends in error.
    await expect(engine.dispatch(report(cb.token, 'start', { orderId: 2 }))).rejects.toMatchObject({
      code: 'CBE_ERR_INVALID_DATA',
    });
    const [applied, notFound, refused] = spans('callback.dispatch');
    expect(applied!.attributes).toMatchObject({
      'callback.id': cb.id,
      'callback.outcome': 'applied',
    });
    expect(notFound!.attributes).toMatchObject({
      'callback.anchor': '(unknown)',
      'callback.outcome': 'notFound',
    });
    expect(notFound!.attributes['callback.id']).toBeUndefined();
    expect(refused!.status.code).toBe(2);
    expect(refused!.attributes['callback.outcome']).toBe('error');
  });

  it('a report relayed to its origin carries the trace: the origin’s dispatch span is a child of the relay’s', async () => {
    const origin = makeEngine({ node: 'origin' }).engine;
    origin.anchor('job');
    const originService = await serve(origin);
    const relay = makeEngine({ node: 'relay' }).engine;
    try {
      const cb = await origin.create('job');
      const wrapped = relay.relay(cb.token, { to: originService.url });
      exporter.reset();
      const answer = await relay.dispatch(report(wrapped, 'progress', { pct: 1 }));
      expect(answer).toMatchObject({ status: 'progress', token: wrapped });
      const dispatches = spans('callback.dispatch');
      expect(dispatches).toHaveLength(2);
      const [atOrigin] = dispatches.filter(
        (s) => s.attributes['callback.anchor'] === 'job' && parentOf(s) !== undefined,
      );
      const atRelay = dispatches.find((s) => s !== atOrigin)!;
      expect(atOrigin!.spanContext().traceId).toBe(atRelay.spanContext().traceId);
      expect(parentOf(atOrigin!)).toBe(atRelay.spanContext().spanId);
    } finally {
      await originService.close();
      await origin.close();
      await relay.close();
    }
  });

  it('a failing step ends its span in error; in-process dispatches trace too', async () => {
    const { engine } = await fx.start((e) =>
      e.anchor('job', {
        next: {
          start: () => {
            throw new Error('boom');
          },
        },
      }),
    );
    const cb = await engine.create('job');
    const answer = await engine.dispatch(report(cb.token, 'start'));
    expect(answer.status).toBe('error');
    const step = spans('callback.step').find(
      (s) => s.attributes['callback.step_status'] === 'start',
    )!;
    expect(step.status).toMatchObject({ code: 2, message: 'boom' });
    expect(step.events.map((e) => e.name)).toContain('exception');
    const [dispatch] = spans('callback.dispatch');
    expect(parentOf(step)).toBe(dispatch!.spanContext().spanId);
    expect(dispatch!.attributes['callback.status']).toBe('error');
  });
});
