/**
 * `serve()` keeps its stated timeouts: a client that sends its headers (or its body) byte by byte,
 * slowly, is answered 408 and cut off at the headers (or request) timeout, give or take a
 * tolerance, not at Node's 30 s connection-check interval. Real sockets and real time: the
 * timeouts are Node's own timers; the test uses small ones so it stays short.
 */
import { connect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { serve, type DispatchServer } from '../src/http/index.js';
import { connectionsCheckingIntervalMs } from '../src/http/serve.js';
import type { CallbackEngine } from '../src/index.js';
import { makeEngine } from './helpers/engine.js';

let engine: CallbackEngine | undefined;
let service: DispatchServer | undefined;
const sockets: Socket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await service?.close();
  await engine?.close();
  engine = service = undefined;
});

/**
 * Opens a connection, writes `head` at once, then one byte of `drip` every `everyMs` ms until the
 * server closes the connection (or `giveUpMs` passes). Resolves with how long after the first byte
 * the server closed it, and what it answered.
 */
function slowClient(
  url: string,
  head: string,
  drip: string,
  everyMs: number,
  giveUpMs: number,
): Promise<{ closedAfterMs: number; answer: string }> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname);
    sockets.push(socket);
    let answer = '';
    let started = 0;
    let i = 0;
    let timer: NodeJS.Timeout | undefined;
    const giveUp = setTimeout(() => {
      clearInterval(timer);
      socket.destroy();
      reject(new Error(`the server did not close the connection within ${giveUpMs} ms`));
    }, giveUpMs);
    socket.setNoDelay(true);
    socket.on('connect', () => {
      started = performance.now();
      socket.write(head);
      timer = setInterval(() => {
        if (socket.writable) socket.write(drip[i++ % drip.length]!);
      }, everyMs);
    });
    socket.on('data', (chunk: Buffer) => (answer += chunk.toString('latin1')));
    socket.on('error', () => {});
    socket.on('close', () => {
      clearInterval(timer);
      clearTimeout(giveUp);
      resolve({ closedAfterMs: performance.now() - started, answer });
    });
  });
}

describe('serve() timeouts', () => {
  it('by default: headers 10 s, request 30 s, keep-alive 5 s, checked every second', async () => {
    ({ engine } = makeEngine());
    service = await serve(engine);
    const { server } = service;
    expect(server.headersTimeout).toBe(10_000);
    expect(server.requestTimeout).toBe(30_000);
    expect(server.keepAliveTimeout).toBe(5_000);
    // Node's default is 30 s, which let a 10 s headers timeout take up to 40 s.
    expect(
      (server as typeof server & { connectionsCheckingInterval: number })
        .connectionsCheckingInterval,
    ).toBe(1_000);
    expect(connectionsCheckingIntervalMs(10_000, 30_000)).toBe(1_000);
    expect(connectionsCheckingIntervalMs(2_000, 4_000)).toBe(200);
    expect(connectionsCheckingIntervalMs(100, 0)).toBe(50);
    expect(connectionsCheckingIntervalMs(0, 0)).toBe(1_000);
  });

  it('a slowloris client is cut off at the headers timeout (headers byte by byte) and at the request timeout (body byte by byte), within 25 %', async () => {
    ({ engine } = makeEngine());
    engine.anchor('job');
    const headersMs = 2_000;
    const requestMs = 3_000;
    service = await serve(engine, { headersTimeoutMs: headersMs, requestTimeoutMs: requestMs });
    const [headers, body] = await Promise.all([
      // Headers that never end: a new header byte every 100 ms.
      slowClient(
        service.url,
        'POST /callbacks HTTP/1.1\r\nHost: localhost\r\nX-Slow: ',
        'abcdefghij',
        100,
        headersMs * 2,
      ),
      // Complete headers, then a body that trickles in.
      slowClient(
        service.url,
        'POST /callbacks HTTP/1.1\r\nHost: localhost\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n',
        '          ',
        100,
        requestMs * 2,
      ),
    ]);
    expect(headers.answer).toMatch(/^HTTP\/1\.1 408 /);
    expect(headers.closedAfterMs).toBeGreaterThanOrEqual(headersMs - 250);
    expect(headers.closedAfterMs).toBeLessThanOrEqual(headersMs * 1.25);
    expect(body.closedAfterMs).toBeGreaterThanOrEqual(requestMs - 250);
    expect(body.closedAfterMs).toBeLessThanOrEqual(requestMs * 1.25);
    expect(body.answer).toMatch(/^HTTP\/1\.1 408 /);
  }, 15_000);
});
