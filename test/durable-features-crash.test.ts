/**
 * Issue 13's durable promises, proven with a real process that dies: an engine on a SQLite file
 * in a child process acknowledges reports whose step failed and waits for its retry, and early
 * CloudEvents held before their callback exists; it is SIGKILLed (pid checked gone) before any
 * retry runs and before any order is created, and restarted on the same file. Every acknowledged
 * retry then runs, and every acknowledged early event is applied, in order, by the create.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const FIXTURE = fileURLToPath(new URL('./fixtures/durable-features.ts', import.meta.url));

interface Child {
  readonly child: ChildProcess;
  readonly url: string;
  readonly exited: Promise<void>;
}

function start(db: string): Promise<Child> {
  const child = spawn(process.execPath, ['--import', 'tsx', FIXTURE, '--db', db], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return new Promise((resolve, reject) => {
    void exited.then(() => reject(new Error(`engine exited before READY\n${stderr}`)));
    createInterface({ input: child.stdout }).on('line', (line) => {
      const m = /^READY (\d+)$/.exec(line);
      if (m) resolve({ child, url: `http://127.0.0.1:${m[1]}`, exited });
    });
  });
}

async function kill(c: Child): Promise<void> {
  c.child.kill('SIGKILL');
  await c.exited;
  expect(c.child.signalCode).toBe('SIGKILL');
  expect(() => process.kill(c.child.pid!, 0)).toThrow(expect.objectContaining({ code: 'ESRCH' }));
}

const post = (url: string, body: unknown, headers: Record<string, string> = {}) =>
  fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });

const dir = mkdtempSync(join(tmpdir(), 'cbe-durable-features-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('durable retries and early events survive a SIGKILL (real processes)', () => {
  it('runs every acknowledged retry and applies every acknowledged early event after a restart', async () => {
    const db = join(dir, 'df.db');
    const first = await start(db);

    // 1. Pending retries: each report's step fails once; the answer comes once the retry is stored.
    const jobs: string[] = [];
    for (let i = 0; i < 20; i++) {
      const r = await post(`${first.url}/admin/create`, { anchor: 'job', data: { i } });
      jobs.push(((await r.json()) as { token: string }).token);
    }
    const acked = await Promise.all(
      jobs.map(async (token) => {
        const r = await post(`${first.url}/callbacks/${token}/progress`, { n: 1 });
        return r.status === 200 ? token : undefined;
      }),
    );
    const retried = acked.filter((t): t is string => t !== undefined);
    expect(retried).toHaveLength(20);

    // 2. Early events: 12 orders × 3 events each, sent concurrently per order but in order within one.
    const ORDERS = 12;
    const held: Record<number, number[]> = {};
    await Promise.all(
      Array.from({ length: ORDERS }, async (_, o) => {
        for (let n = 0; n < 3; n++) {
          const r = await fetch(`${first.url}/events`, {
            method: 'POST',
            headers: { 'content-type': 'application/cloudevents+json' },
            body: JSON.stringify({
              specversion: '1.0',
              id: `o${o}-e${n}`,
              source: '/carrier',
              type: 'shipped',
              orderid: `${o}`,
              data: { n },
            }),
          });
          if (r.status === 202 && r.headers.get('callback-outcome') === 'queued')
            (held[o] ??= []).push(n);
        }
      }),
    );
    expect(Object.values(held).flat()).toHaveLength(ORDERS * 3);

    // 3. SIGKILL while the retries wait (backoff 3 s) and before any order exists.
    const before = await Promise.all(
      retried.map(
        async (t) =>
          (await (await fetch(`${first.url}/callbacks/${t}`)).json()) as {
            data: { done?: number };
          },
      ),
    );
    const ranBefore = before.filter((a) => a.data.done !== undefined).length;
    await kill(first);

    // 4. Restart on the same file: retries run at their instants, held events wait for creates.
    const second = await start(db);
    try {
      const orders = await Promise.all(
        Array.from({ length: ORDERS }, async (_, o) => {
          const r = await post(`${second.url}/admin/create`, {
            anchor: 'order',
            data: { orderId: o },
          });
          return (await r.json()) as { status: string; data: { log?: number[] } };
        }),
      );
      orders.forEach((created, o) => {
        expect(created.status).toBe('progress');
        expect(created.data.log).toEqual(held[o]);
      });
      const deadline = Date.now() + 15_000;
      let done: string[] = [];
      while (Date.now() < deadline) {
        const answers = await Promise.all(
          retried.map(
            async (t) =>
              (await (await fetch(`${second.url}/callbacks/${t}`)).json()) as {
                data: { done?: number };
              },
          ),
        );
        done = retried.filter((_, k) => answers[k]!.data.done === 2);
        if (done.length === retried.length) break;
        await new Promise((r) => setTimeout(r, 200));
      }
      console.log(
        `durable features after SIGKILL: ${retried.length} pending retries acknowledged (${ranBefore} had run before the kill), ${done.length} ran (attempt 2) after the restart; ${ORDERS * 3} early events held, ${orders.reduce((a, c) => a + (c.data.log?.length ?? 0), 0)} applied in order by the creates; lost 0`,
      );
      expect(done).toHaveLength(retried.length);
    } finally {
      await kill(second);
    }
  }, 40_000);
});
