import { createServer, type Server, type ServerResponse } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { createDispatchHandler } from '../src/http/index.js';
import type { CallbackEngine } from '../src/index.js';
import {
  createMonitor,
  withDashboard,
  type DashboardOptions,
  type Monitor,
} from '../src/dashboard.js';
import { flush, makeEngine } from './helpers/engine.js';

let engine: CallbackEngine | undefined;
let monitor: Monitor | undefined;
let server: Server | undefined;
const sockets: Socket[] = [];

afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  server?.closeAllConnections();
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  monitor?.close();
  await engine?.close();
  engine = monitor = server = undefined;
});

/** Serves the dashboard; `streams` collects the server side of every /events response. */
async function start(options: DashboardOptions) {
  ({ engine } = makeEngine());
  // A long window makes every view some 20 KB, so a reader that stalls backs up quickly.
  monitor = createMonitor(engine, { tickMs: 0, windowSeconds: 3600 });
  const streams: ServerResponse[] = [];
  const handler = withDashboard(createDispatchHandler(engine), monitor, options);
  server = createServer((req, res) => {
    if (req.url === '/dashboard/events') streams.push(res);
    handler(req, res);
  });
  await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
  return { port: (server.address() as AddressInfo).port, streams, monitor };
}

/** A raw client that sends the request and never reads a byte of the answer. */
function stalledSubscriber(port: number): Promise<Socket> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1', () => {
      socket.pause();
      socket.write('GET /dashboard/events HTTP/1.1\r\nhost: x\r\n\r\n');
      resolve(socket);
    });
    sockets.push(socket);
  });
}

/** Publishes views until every stream is backed up (the kernel buffers are full). */
async function publishUntilBackedUp(monitor: Monitor, streams: ServerResponse[], n: number) {
  while (streams.length < n) await flush();
  for (let i = 0; i < 20_000 && !streams.every((s) => s.writableNeedDrain || s.destroyed); i++) {
    monitor.tick();
    if (i % 10 === 0) await flush();
  }
}

/** Resolves once the server side of a stream is closed. */
function closedOnServer(res: ServerResponse): Promise<void> {
  return res.closed ? Promise.resolve() : new Promise((r) => res.once('close', () => r()));
}

describe('dashboard SSE under slow subscribers', () => {
  it('coalesces views for subscribers that never read: the server buffers one frame, not every view', async () => {
    const { port, streams, monitor } = await start({ maxBufferedBytes: 256 * 1024 });
    await Promise.all([stalledSubscriber(port), stalledSubscriber(port), stalledSubscriber(port)]);
    await publishUntilBackedUp(monitor, streams, 3);
    expect(streams.every((s) => s.writableNeedDrain)).toBe(true);
    const frame = Buffer.byteLength(JSON.stringify(monitor.view()));
    for (let i = 0; i < 500; i++) monitor.tick(); // ~10 MB of views if each were buffered
    await flush();
    for (const s of streams) {
      expect(s.destroyed).toBe(false);
      expect(s.writableLength).toBeLessThan(16 * 1024 + 2 * frame);
    }
  });

  it('disconnects a subscriber that stays backed up past idleTimeoutMs, freeing its place', async () => {
    const { port, streams, monitor } = await start({ maxSubscribers: 1, idleTimeoutMs: 50 });
    await stalledSubscriber(port);
    await publishUntilBackedUp(monitor, streams, 1);
    // Keep publishing (coalesced, so never past the buffer bound) until the kernel buffers stop
    // growing and the stream stays backed up for 50 ms: the idle timer then cuts it.
    const closed = closedOnServer(streams[0]!);
    let done = false;
    void closed.then(() => (done = true));
    for (let i = 0; i < 1_000_000 && !done; i++) {
      monitor.tick();
      await flush();
    }
    await closed;
    expect(streams[0]!.destroyed).toBe(true);
    const r = await fetch(`http://127.0.0.1:${port}/dashboard/events`);
    expect(r.status).toBe(200);
    await r.body?.cancel();
  });

  it('refuses subscribers past maxSubscribers with 503 CBE_ERR_TOO_MANY_SUBSCRIBERS', async () => {
    const { port, streams } = await start({ maxSubscribers: 2 });
    await stalledSubscriber(port);
    await stalledSubscriber(port);
    while (streams.length < 2) await flush();
    const r = await fetch(`http://127.0.0.1:${port}/dashboard/events`);
    expect(r.status).toBe(503);
    expect(r.headers.get('retry-after')).toBeTruthy();
    expect(await r.json()).toMatchObject({ code: 'CBE_ERR_TOO_MANY_SUBSCRIBERS' });
  });

  it('drops a subscriber whose unsent bytes pass maxBufferedBytes', async () => {
    const { port, streams, monitor } = await start({ maxBufferedBytes: 4096 });
    await stalledSubscriber(port);
    await publishUntilBackedUp(monitor, streams, 1);
    await closedOnServer(streams[0]!);
    expect(streams[0]!.destroyed).toBe(true);
  });
});
