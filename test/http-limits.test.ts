import { request, type IncomingMessage } from 'node:http';
import { connect } from 'node:net';
import { describe, expect, it } from 'vitest';
import { jsonOf, serviceFixture } from './helpers/http.js';

const fx = serviceFixture();

const LIMIT = 4096;

async function start(): Promise<URL> {
  const { url } = await fx.start((e) => e.anchor('job'), { maxBodyBytes: LIMIT });
  return new URL(url);
}

interface Outcome {
  status: number;
  body: string;
  /** Bytes the client had handed to its socket when the answer arrived. */
  written: number;
  connection: string | undefined;
}

/** Streams a chunked body (no content-length) of up to `total` bytes, stopping once the answer arrives. */
function streamBody(url: URL, total: number): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    let written = 0;
    let answered = false;
    const req = request({
      host: url.hostname,
      port: url.port,
      path: '/callbacks',
      method: 'POST',
      headers: { 'content-type': 'application/json' },
    });
    const chunk = Buffer.alloc(16 * 1024, 0x20);
    const pump = () => {
      while (!answered && written < total) {
        written += chunk.length;
        if (!req.write(chunk)) return void req.once('drain', pump);
      }
      if (!answered) req.end();
    };
    req.on('response', (res: IncomingMessage) => {
      answered = true;
      const at = written;
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => {
        resolve({
          status: res.statusCode ?? 0,
          body,
          written: at,
          connection: res.headers.connection,
        });
        req.destroy();
      });
    });
    req.on('error', (err) => {
      if (!answered) reject(err);
    });
    req.write('{"type":"CALLBACK","pad":"');
    pump();
  });
}

describe('body limit', () => {
  it('refuses a chunked body over the limit while streaming, without reading it all, and closes the connection', async () => {
    const url = await start();
    let serverRead = 0;
    fx.service.server.on('request', (req: IncomingMessage, res) => {
      res.on('finish', () => (serverRead = req.socket.bytesRead));
    });
    const total = 256 * 1024 * 1024;
    const outcome = await streamBody(url, total);
    expect(outcome.status).toBe(413);
    expect(JSON.parse(outcome.body)).toMatchObject({ code: 'CBE_ERR_PAYLOAD_TOO_LARGE' });
    expect(outcome.connection).toBe('close');
    // The server stopped after about the limit (plus what was in flight), far short of the body.
    expect(serverRead).toBeGreaterThan(LIMIT);
    expect(serverRead).toBeLessThan(1024 * 1024);
    expect(outcome.written).toBeLessThan(total);
  });

  it('refuses a declared content-length over the limit before reading, and accepts one at the limit', async () => {
    const url = await start();
    const cb = await fx.engine.create('job');
    let r = await fetch(`${url.origin}/callbacks`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: 'x'.repeat(LIMIT + 1),
    });
    expect(r.status).toBe(413);
    expect((await jsonOf(r)).message).toMatch(/4097/);
    const message = JSON.stringify({
      type: 'CALLBACK',
      callbackToken: cb.token,
      callbackStatus: 'progress',
      callbackData: { pad: '' },
    });
    const padded = message.replace('"pad":""', `"pad":"${'y'.repeat(LIMIT - message.length)}"`);
    expect(Buffer.byteLength(padded)).toBe(LIMIT);
    r = await fetch(`${url.origin}/callbacks`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: padded,
    });
    expect(r.status).toBe(200);
  });

  it('answers Expect: 100-continue over the limit with 413 and no 100', async () => {
    const url = await start();
    const outcome = await new Promise<{ status: number; continued: boolean }>((resolve, reject) => {
      let continued = false;
      const req = request({
        host: url.hostname,
        port: url.port,
        path: '/callbacks',
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'content-length': String(LIMIT * 10),
          expect: '100-continue',
        },
      });
      req.on('continue', () => (continued = true));
      req.on('response', (res) => {
        res.resume();
        resolve({ status: res.statusCode ?? 0, continued });
        req.destroy();
      });
      req.on('error', reject);
      req.flushHeaders();
    });
    expect(outcome).toEqual({ status: 413, continued: false });
  });
});

describe('malformed HTTP', () => {
  function raw(url: URL, text: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const socket = connect(Number(url.port), url.hostname, () => socket.write(text));
      let out = '';
      socket.setEncoding('latin1');
      socket.on('data', (c: string) => (out += c));
      socket.on('end', () => resolve(out));
      socket.on('error', reject);
    });
  }

  it('answers requests node:http cannot parse with a JSON 400, and oversized headers with 431', async () => {
    const url = await start();
    let answer = await raw(url, 'GARBAGE \x01\x02 HTTP/9.9\r\n\r\n');
    expect(answer).toMatch(/^HTTP\/1\.1 400 /);
    expect(JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4))).toMatchObject({
      code: 'CBE_ERR_INVALID_MESSAGE',
    });
    answer = await raw(
      url,
      `GET /openapi.json HTTP/1.1\r\nhost: x\r\nx-big: ${'a'.repeat(20_000)}\r\n\r\n`,
    );
    expect(answer).toMatch(/^HTTP\/1\.1 431 /);
    answer = await raw(
      url,
      'POST /callbacks HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n',
    );
    expect(answer).toMatch(/^HTTP\/1\.1 400 /);
    const r = await fetch(`${url.origin}/openapi.json`);
    expect(r.status).toBe(200);
  });
});

describe('close()', () => {
  it('lets an in-flight request finish, then closes its keep-alive connection without waiting out the grace', async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    let stepStarted!: () => void;
    const started = new Promise<void>((resolve) => (stepStarted = resolve));
    const { engine } = await fx.start(
      (e) =>
        e.anchor('job', {
          next: {
            progress: async () => {
              stepStarted();
              await gate;
              return { done: true };
            },
          },
        }),
      // A grace far beyond the test timeout: close() must not depend on it.
      { closeTimeoutMs: 120_000 },
    );
    const service = fx.service;
    const cb = await engine.create('job');
    const answer = fetch(`${service.url}/callbacks/${cb.token}/progress`, { method: 'POST' });
    await started;
    const closed = service.close();
    release();
    const r = await answer;
    expect(r.status).toBe(200);
    expect(await jsonOf(r)).toMatchObject({ status: 'progress', data: { done: true } });
    await closed;
    expect(service.server.listening).toBe(false);
    await expect(fetch(`${service.url}/openapi.json`)).rejects.toThrow();
  }, 10_000);
});
