/**
 * The channel hop across two processes: the origin engine (SQLite, HTTP) in a child process, the
 * relaying engine and its HTTP service in this one. Reports through the wrapped token reach the
 * origin in order and none is lost, the far party learns of a cancel at the origin, `exists`
 * answers through the wrapper, and while the origin is down (SIGKILLed) every report is refused
 * as retryable; after its restart the retried reports are applied and the counts match.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createCallbackEngine,
  decodeToken,
  OriginUnavailableError,
  type CallbackEngine,
} from '../src/index.js';
import { serve, type DispatchServer } from '../src/http/index.js';
import { jsonOf } from './helpers/http.js';
import { report } from './helpers/engine.js';

const FIXTURE = fileURLToPath(new URL('./fixtures/relay-origin.ts', import.meta.url));

interface Origin {
  readonly child: ChildProcess;
  readonly port: number;
  readonly exited: Promise<void>;
}

/** Starts the origin process; resolves once it printed `READY <port>`. */
function startOrigin(db: string, port = 0): Promise<Origin> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', FIXTURE, '--db', db, '--port', `${port}`],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return new Promise((resolve, reject) => {
    void exited.then(() => reject(new Error(`origin exited before READY\n${stderr}`)));
    createInterface({ input: child.stdout }).on('line', (line) => {
      const m = /^READY (\d+)$/.exec(line);
      if (m) resolve({ child, port: Number(m[1]), exited });
    });
  });
}

/** SIGKILLs the origin and checks its process is gone. */
async function killOrigin(origin: Origin): Promise<void> {
  origin.child.kill('SIGKILL');
  await origin.exited;
  expect(origin.child.signalCode).toBe('SIGKILL');
  expect(() => process.kill(origin.child.pid!, 0)).toThrow(
    expect.objectContaining({ code: 'ESRCH' }),
  );
}

const post = (url: string, body: unknown) =>
  fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });

describe('relay: two engines in two processes over HTTP', () => {
  let dir: string;
  let db: string;
  let origin: Origin | undefined;
  let engine: CallbackEngine;
  let service: DispatchServer;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'cbe-relay-'));
    db = join(dir, 'origin.db');
    origin = await startOrigin(db);
    engine = createCallbackEngine({
      node: 'relay-1',
      secrets: ['relay-local-secret-0123456789'],
      relay: { timeout: 'PT5S' },
    });
    service = await serve(engine);
  }, 20_000);

  afterAll(async () => {
    await service?.close();
    await engine?.close();
    if (origin && origin.child.exitCode === null && origin.child.signalCode === null) {
      origin.child.kill('SIGKILL');
      await origin.exited;
    }
    rmSync(dir, { recursive: true, force: true });
  });

  const originUrl = () => `http://127.0.0.1:${origin!.port}`;
  const create = async (): Promise<string> =>
    (await jsonOf(await post(`${originUrl()}/admin/create`, {}))).token as string;
  const logOf = async (wrapped: string): Promise<unknown[]> =>
    ((await engine.get(wrapped)).data.log as unknown[] | undefined) ?? [];

  it('forwards reports in order, learns of a cancel at the origin, answers exists, and loses nothing while the origin is down', async () => {
    // Four callbacks at the origin, each relayed (by callback URL or by base URL).
    const tokens = await Promise.all([create(), create(), create(), create()]);
    const wrapped = tokens.map((t, i) =>
      engine.relay(t, {
        to: i % 2 === 0 ? `${originUrl()}/callbacks/${encodeURIComponent(t)}` : originUrl(),
      }),
    );
    for (const [i, w] of wrapped.entries()) {
      expect(decodeToken(w)).toMatchObject({
        node: 'relay-1',
        anchor: 'job',
        id: decodeToken(tokens[i])!.id,
        useTransport: true,
        transport: [{ url: originUrl(), token: tokens[i] }],
      });
    }

    // 1. In process: 60 reports per callback, all fired at once, interleaved across callbacks.
    const PER = 60;
    const fired: Promise<unknown>[] = [];
    for (let k = 0; k < PER; k++)
      for (const w of wrapped) fired.push(engine.dispatch(report(w, 'progress', { k })));
    const answers = (await Promise.all(fired)) as { status: string; token: string }[];
    expect(answers.every((a) => a.status === 'progress')).toBe(true);
    expect(answers.every((a, i) => a.token === wrapped[i % wrapped.length])).toBe(true);
    for (const w of wrapped)
      expect(await logOf(w)).toEqual(Array.from({ length: PER }, (_, k) => k));

    // 2. Over HTTP to the relaying service: 4 concurrent producers per callback, 10 reports each.
    const target = wrapped[0]!;
    const producers = Array.from({ length: 4 }, async (_, p) => {
      for (let i = 0; i < 10; i++) {
        const res = await post(`${service.url}/callbacks/${encodeURIComponent(target)}/progress`, {
          k: `p${p}-${i}`,
        });
        expect(res.status).toBe(200);
        expect(res.headers.get('callback-outcome')).toBe('applied');
        expect((await jsonOf(res)).token).toBe(target);
      }
    });
    await Promise.all(producers);
    const log = await logOf(target);
    expect(log).toHaveLength(PER + 40);
    for (let p = 0; p < 4; p++)
      expect(log.filter((k) => typeof k === 'string' && k.startsWith(`p${p}-`))).toEqual(
        Array.from({ length: 10 }, (_, i) => `p${p}-${i}`),
      );

    // 3. exists through the wrapper: in process, as a CALLBACK action over HTTP, and GET.
    expect(await engine.exists(target)).toBe('exists');
    const ex = await post(`${service.url}/callbacks`, {
      type: 'CALLBACK',
      callbackToken: target,
      callbackAction: 'exists',
    });
    expect(ex.status).toBe(200);
    expect(await jsonOf(ex)).toEqual({ status: 'exists', token: target, data: {} });
    const got = await fetch(`${service.url}/callbacks/${encodeURIComponent(target)}`);
    expect(got.status).toBe(200);
    expect(await jsonOf(got)).toMatchObject({ status: 'progress', token: target });

    // 4. The origin cancels callback 1: the far party's next report answers `cancel` (409).
    await post(`${originUrl()}/admin/cancel`, { token: tokens[1] });
    const afterCancel = await post(
      `${service.url}/callbacks/${encodeURIComponent(wrapped[1]!)}/progress`,
      { k: 'late' },
    );
    expect(afterCancel.status).toBe(409);
    expect(afterCancel.headers.get('callback-outcome')).toBe('conflict');
    expect(await jsonOf(afterCancel)).toMatchObject({
      status: 'cancel',
      token: wrapped[1],
      code: 'CBE_ERR_ALREADY_SETTLED',
    });
    expect((await engine.dispatch(report(wrapped[1]!, 'complete'))).status).toBe('cancel');

    // 5. The origin dies: every report through the wrapper is refused as retryable.
    const port = origin!.port;
    await killOrigin(origin!);
    const refused: { w: string; k: string }[] = [];
    const down = await Promise.allSettled(
      wrapped
        .filter((_, i) => i !== 1)
        .flatMap((w) =>
          Array.from({ length: 10 }, (_, i) => {
            refused.push({ w, k: `down-${i}` });
            return engine.dispatch(report(w, 'progress', { k: `down-${i}` }));
          }),
        ),
    );
    expect(down.every((r) => r.status === 'rejected')).toBe(true);
    for (const r of down) {
      const err = (r as PromiseRejectedResult).reason as OriginUnavailableError;
      expect(err).toBeInstanceOf(OriginUnavailableError);
      expect(err.code).toBe('CBE_ERR_ORIGIN_UNAVAILABLE');
      expect(err.retryable).toBe(true);
    }
    const overHttp = await post(`${service.url}/callbacks/${encodeURIComponent(target)}/progress`, {
      k: 'down-http',
    });
    expect(overHttp.status).toBe(503);
    expect(overHttp.headers.get('retry-after')).toMatch(/^\d+$/);
    expect((await jsonOf(overHttp)).code).toBe('CBE_ERR_ORIGIN_UNAVAILABLE');
    refused.push({ w: target, k: 'down-http' });
    await expect(engine.exists(target)).rejects.toBeInstanceOf(OriginUnavailableError);

    // 6. The origin restarts on the same port and file; the refused reports are retried, in order.
    origin = await startOrigin(db, port);
    for (const { w, k } of refused) {
      const answer = await engine.dispatch(report(w, 'progress', { k }));
      expect(answer.status).toBe('progress');
    }
    for (const [i, w] of wrapped.entries()) {
      if (i === 1) continue;
      const full = await logOf(w);
      const expected = [
        ...Array.from({ length: PER }, (_, k) => k),
        ...(w === target ? Array.from({ length: 40 }, () => 'http') : []),
        ...Array.from({ length: 10 }, (_, k) => `down-${k}`),
        ...(w === target ? ['down-http'] : []),
      ];
      expect(full).toHaveLength(expected.length);
      expect(full.filter((k) => typeof k === 'string' && k.startsWith('down-'))).toEqual(
        expected.filter((k) => typeof k === 'string' && k.startsWith('down-')),
      );
    }
    // The cancelled one got nothing after its cancel.
    expect(await logOf(wrapped[1]!)).toHaveLength(PER);
    expect((await engine.get(wrapped[1]!)).status).toBe('cancel');
    let atOrigin = 0;
    for (const w of wrapped) atOrigin += (await logOf(w)).length;
    console.log(
      `relay: ${PER * wrapped.length} in-process + 40 HTTP reports acknowledged through the hop; origin SIGKILLed: ${refused.length} refused with CBE_ERR_ORIGIN_UNAVAILABLE (503), all applied after its restart; ${atOrigin} reports at the origin, lost 0`,
    );
  }, 30_000);
});
