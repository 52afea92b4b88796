import { createServer } from 'node:net';
import { createWebSocketInspector } from '@statelyai/inspect';
import { createInspectorServer } from '@statelyai/inspect/server';
import type { InspectionEvent } from 'xstate';
import WebSocket from 'ws';
import { afterEach, describe, expect, it } from 'vitest';
import type { CallbackEngine } from '../src/index.js';
import { makeEngine, report } from './helpers/engine.js';

let engine: CallbackEngine | undefined;
const stops: (() => void)[] = [];
afterEach(async () => {
  for (const stop of stops.splice(0)) stop();
  await engine?.close();
  engine = undefined;
});

interface Context {
  status: string;
  data: Record<string, unknown>;
  report: { status: string; data: Record<string, unknown> } | null;
}

describe('inspection events carry the callback context', () => {
  it('snapshots and actor refs give status, data as JSON and the report that moved it', async () => {
    ({ engine } = makeEngine());
    engine.anchor('job', { next: { start: () => ({ started: true }) } });
    const seen: InspectionEvent[] = [];
    engine.inspect((e) => seen.push(e));
    const cb = await engine.create('job', { data: { orderId: 7 } });
    await engine.dispatch(report(cb.token, 'start', { eta: 30 }));
    await engine.dispatch(report(cb.token, 'progress', { pct: 50 }));

    const snaps = seen.filter((e) => e.type === '@xstate.snapshot');
    expect(snaps.length).toBeGreaterThan(0);
    for (const s of snaps) {
      const ctx = (s.snapshot as unknown as { context: Context }).context;
      expect(ctx.data).toMatchObject({ orderId: 7 });
      // What an inspector sends: JSON, with the data in it.
      expect(JSON.parse(JSON.stringify(s.snapshot))).toMatchObject({
        context: { data: { orderId: 7 } },
      });
    }
    const last = (snaps.at(-1)!.snapshot as unknown as { context: Context }).context;
    expect(last).toEqual({
      status: 'progress',
      data: { orderId: 7, eta: 30, started: true, pct: 50 },
      report: { status: 'progress', data: { pct: 50 } },
    });
    const started = snaps.find(
      (s) => (s.snapshot as unknown as { context: Context }).context.status === 'start',
    )!;
    expect((started.snapshot as unknown as { context: Context }).context.report).toEqual({
      status: 'start',
      data: { eta: 30 },
    });
    // The actor's own snapshot says the same (Stately's inspector reads it for @xstate.actor).
    const actor = seen.find((e) => e.type === '@xstate.actor')!;
    const ctx = (actor.actorRef.getSnapshot() as { context: Context }).context;
    expect(ctx.status).toBe('progress');
    expect(ctx.data).toMatchObject({ orderId: 7, pct: 50 });
    // One stand-in per actor: every event of a callback names the same actor ref.
    const idOf = (e: InspectionEvent) => (e.actorRef as { id?: string }).id;
    const refs = new Set(seen.filter((e) => idOf(e) === cb.id).map((e) => e.actorRef));
    expect(refs.size).toBe(1);
    expect(idOf(actor)).toBe(cb.id);
  });

  it("reach Stately's WebSocket inspector with their context (createWebSocketInspector)", async () => {
    ({ engine } = makeEngine());
    engine.anchor('job');
    const port = await freePort();
    // The local bridge to Stately's inspector UI, as in the README recipe (without opening a browser).
    const server = createInspectorServer({ port, autoOpen: false });
    stops.push(() => server.stop());
    // Read what the inspector UI would get: the bridge relays the app's events to every other client.
    const ui = new WebSocket(`ws://127.0.0.1:${port}`);
    stops.push(() => ui.close());
    await new Promise((resolve, reject) => {
      ui.once('open', resolve);
      ui.once('error', reject);
    });
    const received: { type: string; snapshot?: { context?: Context }; event?: { type: string } }[] =
      [];
    const completed = new Promise<void>((resolve) =>
      ui.on('message', (raw: Buffer) => {
        const msg = JSON.parse(raw.toString()) as (typeof received)[number];
        received.push(msg);
        if (msg.type === '@xstate.snapshot' && msg.snapshot?.context?.status === 'complete')
          resolve();
      }),
    );
    const inspector = createWebSocketInspector({ url: `ws://127.0.0.1:${port}` });
    stops.push(() => inspector.stop());
    engine.inspect(inspector.inspect);

    const cb = await engine.create('job', { data: { orderId: 7 } });
    await engine.dispatch(report(cb.token, 'start'));
    await engine.dispatch(report(cb.token, 'complete', { receipt: 'R-7' }));
    await completed;

    const snaps = received.filter((m) => m.type === '@xstate.snapshot');
    expect(snaps.length).toBeGreaterThanOrEqual(2);
    for (const s of snaps) {
      expect(s.snapshot?.context?.data).toMatchObject({ orderId: 7 });
      expect(s.snapshot?.context?.status).toMatch(/^(create|start|complete)$/);
    }
    expect(snaps.at(-1)!.snapshot!.context).toEqual({
      status: 'complete',
      data: { orderId: 7, receipt: 'R-7' },
      report: { status: 'complete', data: { receipt: 'R-7' } },
    });
    const actor = received.find((m) => m.type === '@xstate.actor');
    expect(actor?.snapshot?.context?.data).toMatchObject({ orderId: 7 });
    expect(received.some((m) => m.type === '@xstate.event' && m.event?.type === 'COMPLETE')).toBe(
      true,
    );
  });
});

/** A TCP port nobody listens on right now. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}
