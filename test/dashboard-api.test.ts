import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { createDispatchHandler, type DispatchHandlerOptions } from '../src/http/index.js';
import type { CallbackEngine, CreatedCallback } from '../src/index.js';
import { createMonitor, withDashboard, type Monitor } from '../src/dashboard.js';
import { flush, makeEngine, report } from './helpers/engine.js';

let engine: CallbackEngine | undefined;
let monitor: Monitor | undefined;
let server: Server | undefined;

afterEach(async () => {
  server?.closeAllConnections();
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  monitor?.close();
  await engine?.close();
  engine = monitor = server = undefined;
});

const ACT = { 'x-requested-with': 'test' };

async function start(handlerOptions: DispatchHandlerOptions = {}) {
  const made = makeEngine();
  engine = made.engine;
  let notifyFails = true;
  engine.anchor('pay', {
    next: {
      progress: (cb) => {
        if (cb.report.pct === 13) throw new Error('ledger refused pct 13');
        return { seen: cb.report.pct };
      },
      complete: () => {
        if (notifyFails) throw new Error('notify unreachable');
        return { notified: true };
      },
    },
  });
  engine.anchor('ocr');
  monitor = createMonitor(engine, { tickMs: 0, maxPayloadChars: 64 });
  server = createServer(withDashboard(createDispatchHandler(engine, handlerOptions), monitor));
  await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { engine, base, heal: () => (notifyFails = false) };
}

async function json(res: Response): Promise<Record<string, unknown>> {
  return (await res.json()) as Record<string, unknown>;
}

describe('dashboard API: the list', () => {
  it('pages by cursor, newest first with the total, and filters by anchor, status and tag', async () => {
    const { engine, base } = await start();
    const pays: CreatedCallback[] = [];
    for (let i = 0; i < 7; i++) pays.push(await engine.create('pay', { tags: ['t'] }));
    for (let i = 0; i < 3; i++) await engine.create('ocr');
    await engine.dispatch(report(pays[1]!.token, 'start'));
    await engine.dispatch(report(pays[4]!.token, 'start'));
    await engine.cancel(pays[5]!.token);

    const seen: string[] = [];
    let cursor: string | null = '';
    let pages = 0;
    while (cursor !== null) {
      const res = await fetch(
        `${base}/dashboard/api/callbacks?anchor=pay&limit=3&cursor=${cursor}`,
      );
      expect(res.status).toBe(200);
      const page = await json(res);
      expect(page.total).toBe(7);
      const items = page.items as { id: string; anchor: string; tags: string[] }[];
      for (const c of items) {
        expect(c.anchor).toBe('pay');
        expect(c.tags).toEqual(['t']);
        seen.push(c.id);
      }
      cursor = page.cursor as string | null;
      pages++;
    }
    expect(pages).toBe(3);
    expect(seen).toEqual(pays.map((p) => p.id).reverse());
    const oldest = await json(
      await fetch(`${base}/dashboard/api/callbacks?anchor=pay&order=oldest&limit=2`),
    );
    expect((oldest.items as { id: string }[]).map((c) => c.id)).toEqual([pays[0]!.id, pays[1]!.id]);
    await engine.create('ocr', { tags: ['rush'] });
    const rush = await json(await fetch(`${base}/dashboard/api/callbacks?tag=rush`));
    expect(rush).toMatchObject({ total: 1, items: [{ anchor: 'ocr', tags: ['rush'] }] });

    const started = await json(
      await fetch(`${base}/dashboard/api/callbacks?anchor=pay&status=start`),
    );
    expect((started.items as { id: string }[]).map((c) => c.id)).toEqual([
      pays[4]!.id,
      pays[1]!.id,
    ]);
    expect(started.total).toBe(2);
    expect(started.cursor).toBeNull();
    const ended = await json(await fetch(`${base}/dashboard/api/callbacks?status=start,cancel`));
    expect((ended.items as { status: string }[]).map((c) => c.status)).toEqual([
      'cancel',
      'start',
      'start',
    ]);
    const ocr = await json(await fetch(`${base}/dashboard/api/callbacks?anchor=ocr`));
    expect(ocr.items).toHaveLength(4);
  });

  it('refuses a bad status, limit or cursor with 400 and the value', async () => {
    const { base } = await start();
    const bad = async (query: string) => {
      const res = await fetch(`${base}/dashboard/api/callbacks?${query}`);
      expect(res.status).toBe(400);
      return (await json(res)).message as string;
    };
    expect(await bad('status=done')).toContain('(got "done")');
    expect(await bad('limit=0')).toBe('limit must be an integer from 1 to 200 (got "0")');
    expect(await bad('limit=abc')).toContain('(got "abc")');
    expect(await bad('cursor=%21%21')).toContain('options.cursor is not a cursor');
    expect(await bad('order=up')).toBe('order must be newest or oldest (got "up")');
    expect((await fetch(`${base}/dashboard/api/callbacks`, { method: 'POST' })).status).toBe(405);
  });
});

describe('dashboard API: find', () => {
  it('finds a callback by token, id or correlation key (the value alone or key=value), else a tag', async () => {
    const { engine, base } = await start();
    engine.anchor('order', { correlate: ['orderId'] });
    engine.anchor('pair', { correlate: ['region', 'orderId'] });
    const a = await engine.create('order', { data: { orderId: 'A-42' }, tags: ['eu'] });
    const n = await engine.create('order', { data: { orderId: 77 } });
    const p = await engine.create('pair', { data: { region: 'eu', orderId: 'B-7' } });
    await engine.create('pay', { tags: ['eu'] });
    const find = async (q: string) => {
      const res = await fetch(`${base}/dashboard/api/find?q=${encodeURIComponent(q)}`);
      return { status: res.status, body: await json(res) };
    };
    expect(await find(a.token)).toEqual({ status: 200, body: { by: 'token', id: a.id } });
    expect(await find(` ${a.id} `)).toEqual({ status: 200, body: { by: 'id', id: a.id } });
    expect(await find('A-42')).toEqual({ status: 200, body: { by: 'correlation', id: a.id } });
    // A number in the creation data is found by its text.
    expect(await find('77')).toEqual({ status: 200, body: { by: 'correlation', id: n.id } });
    expect(await find('region=eu&orderId=B-7')).toEqual({
      status: 200,
      body: { by: 'correlation', id: p.id },
    });
    expect(await find('eu')).toEqual({ status: 200, body: { by: 'tag', tag: 'eu', total: 2 } });
    // Another callback's token with this one's id does not name it: not its token.
    const other = await find(n.token.replace(/.$/, (c) => (c === 'A' ? 'B' : 'A')));
    expect(other.status).toBe(404);
    const none = await find('nothing');
    expect(none).toEqual({
      status: 404,
      body: {
        code: 'CBE_ERR_NOT_FOUND',
        message:
          'no callback has this id, token or correlation key, and no callback carries this tag',
      },
    });
    expect((await find('')).status).toBe(400);
    expect((await fetch(`${base}/dashboard/api/find?q=x`, { method: 'POST' })).status).toBe(405);
  });
});

describe('dashboard API: one callback', () => {
  it('shows data, report payloads, a step error message, timings, parent and children', async () => {
    const { engine, base } = await start();
    const parent = await engine.create('pay', { data: { order: 5 } });
    const child = await engine.create('ocr', { parentToken: parent.token });
    await engine.dispatch(report(parent.token, 'progress', { pct: 40, note: 'x'.repeat(200) }));
    await engine.dispatch(report(parent.token, 'progress', { pct: 13 }));
    await flush();
    const d = await json(await fetch(`${base}/dashboard/api/callbacks/${parent.id}`));
    expect(d).toMatchObject({
      id: parent.id,
      anchor: 'pay',
      status: 'error',
      parentId: null,
      children: [child.id],
      childrenTotal: 1,
      stepError: { status: 'progress', message: 'ledger refused pct 13' },
      canCancel: false,
      canRetry: false,
    });
    expect(d.data).toMatchObject({ order: 5, pct: 13, seen: 40, message: 'ledger refused pct 13' });
    expect(typeof d.createdAt).toBe('number');
    expect(typeof d.deadlineAt).toBe('number');
    const history = d.history as Record<string, unknown>[];
    expect(history.find((e) => e.type === 'created')?.data).toBe('{"order":5}');
    const reports = history.filter((e) => e.type === 'dispatched');
    expect(reports[0]).toMatchObject({ reported: 'progress', outcome: 'applied' });
    // Cut to the monitor's maxPayloadChars (64), and marked.
    expect(reports[0]!.data).toBe(JSON.stringify({ pct: 40, note: 'x'.repeat(200) }).slice(0, 64));
    expect(reports[0]!.dataTruncated).toBe(true);
    expect(reports[1]).toMatchObject({ data: '{"pct":13}' });
    expect(history.find((e) => e.type === 'stepFailed')).toMatchObject({
      reported: 'progress',
      message: 'ledger refused pct 13',
    });
    const c = await json(await fetch(`${base}/dashboard/api/callbacks/${child.id}`));
    expect(c).toMatchObject({ status: 'orphan', parentId: parent.id, children: [] });
    // A token finds its callback too; an unknown id is a 404.
    expect((await json(await fetch(`${base}/dashboard/api/callbacks/${parent.token}`))).id).toBe(
      parent.id,
    );
    const missing = await fetch(`${base}/dashboard/api/callbacks/nope`);
    expect(missing.status).toBe(404);
    expect((await json(missing)).code).toBe('CBE_ERR_NOT_FOUND');
  });

  it('never answers a full token on any dashboard route', async () => {
    const { engine, base, heal } = await start();
    const a = await engine.create('pay', { data: { order: 1 } });
    const b = await engine.create('ocr', { parentToken: a.token });
    await engine.dispatch(report(a.token, 'progress', { pct: 3 }));
    await engine.dispatch(report(a.token, 'complete'));
    await flush();
    heal();
    const c = await engine.create('pay');
    monitor!.tick();
    const bodies: string[] = [];
    const get = async (path: string, init?: RequestInit) => {
      const res = await fetch(`${base}/dashboard${path}`, init);
      bodies.push(await res.text());
      return res;
    };
    await get('');
    await get('/diagram.svg');
    await get('/diagram.mmd');
    await get('/api/callbacks');
    for (const cb of [a, b, c]) {
      await get(`/api/callbacks/${cb.id}`);
      await get(`/api/callbacks/${encodeURIComponent(cb.token)}`);
      await get(`/callbacks/${encodeURIComponent(cb.token)}`);
    }
    expect(
      (await get(`/api/callbacks/${a.id}/retry`, { method: 'POST', headers: ACT })).status,
    ).toBe(200);
    expect(
      (await get(`/api/callbacks/${c.id}/cancel`, { method: 'POST', headers: ACT })).status,
    ).toBe(200);
    const sse = await fetch(`${base}/dashboard/events`);
    const reader = sse.body!.getReader();
    const chunk = (await reader.read()).value as Uint8Array;
    bodies.push(new TextDecoder().decode(chunk));
    await reader.cancel();
    expect(bodies.length).toBe(16);
    for (const body of bodies) {
      for (const cb of [a, b, c]) expect(body).not.toContain(cb.token);
      expect(body).not.toMatch(/"token"\s*:/);
    }
  });
});

describe('dashboard API: actions', () => {
  it('cancels an active callback, and refuses a terminal one with 409', async () => {
    const { engine, base } = await start();
    const cb = await engine.create('pay');
    const url = `${base}/dashboard/api/callbacks/${cb.id}/cancel`;
    const res = await fetch(url, { method: 'POST', headers: ACT });
    expect(res.status).toBe(200);
    expect(await json(res)).toEqual({ id: cb.id, status: 'cancel' });
    expect((await engine.get(cb.token)).status).toBe('cancel');
    const again = await fetch(url, { method: 'POST', headers: ACT });
    expect(again.status).toBe(409);
    expect(await json(again)).toMatchObject({ code: 'CBE_ERR_ALREADY_SETTLED' });
    expect((await fetch(url)).status).toBe(405);
    expect(
      (await fetch(`${base}/dashboard/api/callbacks/nope/cancel`, { method: 'POST', headers: ACT }))
        .status,
    ).toBe(404);
  });

  it('retries a failed complete step, and answers 409 when there is nothing to retry', async () => {
    const { engine, base, heal } = await start();
    const cb = await engine.create('pay', { data: { order: 2 } });
    await engine.dispatch(report(cb.token, 'complete', { receipt: 'R' }));
    await flush();
    const url = `${base}/dashboard/api/callbacks/${cb.id}/retry`;
    const detail = await json(await fetch(`${base}/dashboard/api/callbacks/${cb.id}`));
    expect(detail).toMatchObject({ canRetry: true, stepError: { status: 'complete' } });
    const failedAgain = await json(await fetch(url, { method: 'POST', headers: ACT }));
    expect(failedAgain).toEqual({
      id: cb.id,
      status: 'complete',
      stepError: { status: 'complete', message: 'notify unreachable' },
    });
    heal();
    expect(await json(await fetch(url, { method: 'POST', headers: ACT }))).toEqual({
      id: cb.id,
      status: 'complete',
      stepError: null,
    });
    expect((await engine.get(cb.token)).data).toMatchObject({ notified: true });
    const none = await fetch(url, { method: 'POST', headers: ACT });
    expect(none.status).toBe(409);
    expect(await json(none)).toEqual({
      code: 'CBE_ERR_NOTHING_TO_RETRY',
      message: `callback ${cb.id} has no failed step to retry: its steps did not fail`,
    });
  });

  it('refuses cross-site actions: no X-Requested-With, another Origin, Sec-Fetch-Site cross-site', async () => {
    const { engine, base } = await start();
    const cb = await engine.create('pay');
    const url = `${base}/dashboard/api/callbacks/${cb.id}/cancel`;
    const host = new URL(base).host;
    const refused = async (headers: Record<string, string>, why: string) => {
      const res = await fetch(url, { method: 'POST', headers });
      expect(res.status).toBe(403);
      const body = await json(res);
      expect(body.code).toBe('CBE_ERR_FORBIDDEN');
      expect(body.message).toContain(why);
    };
    await refused({}, 'X-Requested-With');
    await refused({ ...ACT, origin: 'https://evil.example' }, '"https://evil.example"');
    await refused({ ...ACT, origin: 'null' }, '"null"');
    await refused({ ...ACT, 'sec-fetch-site': 'cross-site' }, 'Sec-Fetch-Site: cross-site');
    expect((await engine.get(cb.token)).status).toBe('create');
    const ok = await fetch(url, {
      method: 'POST',
      headers: { ...ACT, origin: `http://${host}`, 'sec-fetch-site': 'same-origin' },
    });
    expect(ok.status).toBe(200);
    expect((await engine.get(cb.token)).status).toBe('cancel');
  });

  it('needs the dispatch handler auth: bearer, or Basic from a browser', async () => {
    const { engine, base } = await start({ auth: { bearer: 'dash-secret-token-123' } });
    const cb = await engine.create('pay');
    const url = `${base}/dashboard/api/callbacks/${cb.id}/cancel`;
    const none = await fetch(url, { method: 'POST', headers: ACT });
    expect(none.status).toBe(401);
    const wrong = await fetch(url, {
      method: 'POST',
      headers: { ...ACT, authorization: 'Bearer nope' },
    });
    expect(wrong.status).toBe(401);
    expect((await fetch(`${base}/dashboard/api/callbacks`)).status).toBe(401);
    expect((await engine.get(cb.token)).status).toBe('create');
    const basic = `Basic ${Buffer.from(':dash-secret-token-123').toString('base64')}`;
    const ok = await fetch(url, { method: 'POST', headers: { ...ACT, authorization: basic } });
    expect(ok.status).toBe(200);
    expect((await engine.get(cb.token)).status).toBe('cancel');
  });
});
