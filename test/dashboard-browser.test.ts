import { existsSync, mkdirSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDispatchHandler } from '../src/http/index.js';
import { createCallbackEngine, type CallbackEngine } from '../src/index.js';
import { withDashboard } from '../src/observe/dashboard.js';
import { createMonitor, type Monitor } from '../src/observe/monitor.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
// CI installs Chromium (.ci/run), so there a missing browser is a failure, not a skip.
const available = existsSync(CHROMIUM) || process.env.CI === 'true';

let engine: CallbackEngine;
let monitor: Monitor;
let server: Server;
let base: string;
let browser: Browser;

beforeAll(async () => {
  engine = createCallbackEngine({ node: 'dash', secrets: ['dashboard-secret-0123456789'] });
  engine.anchor('order', { next: { progress: (cb) => ({ last: cb.report.pct }) } });
  engine.anchor('ship');
  engine.anchor('pay', { correlate: ['orderId'] });
  monitor = createMonitor(engine, { tickMs: 100 });
  server = createServer(withDashboard(createDispatchHandler(engine), monitor));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  if (available) browser = await chromium.launch({ executablePath: CHROMIUM, args: FLAGS });
});

afterAll(async () => {
  await browser?.close();
  await new Promise<void>((r) => server.close(() => r()));
  server.closeAllConnections();
  monitor.close();
  await engine.close();
});

const post = (path: string, body: unknown) =>
  fetch(`${base}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });

describe.skipIf(!available)('dashboard in headless Chromium', () => {
  it('shows live counts per state, recent transitions and a callback history', async () => {
    const page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`${base}/dashboard`);
    await page.waitForSelector('#conn.live');
    const count = (s: string) => page.textContent(`[data-count-for="${s}"]`);
    expect(await count('create')).toBe('0');

    // Drive callbacks over HTTP, as outside services would.
    const cbs = await Promise.all(
      Array.from({ length: 5 }, (_, i) => engine.create('order', { data: { i } })),
    );
    await post(`/callbacks/${encodeURIComponent(cbs[0]!.token)}/progress`, { pct: 40 });
    await post(`/callbacks/${encodeURIComponent(cbs[1]!.token)}/progress`, { pct: 10 });
    await post('/callbacks', {
      type: 'CALLBACK',
      callbackToken: cbs[1]!.token,
      callbackStatus: 'complete',
      callbackData: {},
    });
    await post(`/callbacks/${encodeURIComponent(cbs[2]!.token)}/error`, {
      message: 'card declined',
    });

    // The page updates from the SSE stream: wait for the DOM, not for time. Locators, not
    // waitForFunction: the page's Content-Security-Policy forbids evaluating strings in it.
    await page.locator('[data-count-for="create"]').filter({ hasText: /^2$/ }).waitFor();
    expect(await count('progress')).toBe('1');
    expect(await count('complete')).toBe('1');
    expect(await count('error')).toBe('1');
    await page.locator('#recent tr').nth(3).waitFor();
    expect(await page.textContent('#recent')).toContain('progress → complete');
    expect(await page.textContent('#totals')).toMatch(/5\s*created/);

    await page.fill('#q', cbs[0]!.token);
    await page.click('#find button');
    await page.waitForSelector('#history ol li');
    expect(await page.textContent('#detail-id')).toBe(cbs[0]!.id);
    const history = await page.textContent('#history');
    expect(history).toContain('create → progress');
    expect(history).toContain('{"pct":40}');
    // The token typed in goes nowhere else: the address bar names the callback by id.
    expect(page.url()).toBe(`${base}/dashboard#callback=${encodeURIComponent(cbs[0]!.id)}`);

    mkdirSync('test-results', { recursive: true });
    await page.screenshot({ path: 'test-results/dashboard.png', fullPage: true });
    expect(errors).toEqual([]);
    await page.close();
  });

  it('filters by anchor and status, opens a callback, cancels it and shows the result', async () => {
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    const errors: string[] = [];
    const asked: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    page.on('request', (r) => asked.push(new URL(r.url()).pathname));
    page.on('dialog', (d) => void d.accept());
    const ships = await Promise.all(
      Array.from({ length: 3 }, (_, i) => engine.create('ship', { data: { parcel: i } })),
    );
    await engine.dispatch({
      type: 'CALLBACK',
      callbackToken: ships[1]!.token,
      callbackStatus: 'progress',
      callbackData: { km: 12 },
    });
    await page.goto(`${base}/dashboard`);
    await page.waitForSelector('#conn.live');
    expect(await page.title()).toBe('callback-engine dashboard');

    // The anchor list comes from the live view; then only `ship` callbacks in `progress` show.
    await page.locator('#f-anchor option', { hasText: 'ship' }).waitFor({ state: 'attached' });
    await page.selectOption('#f-anchor', 'ship');
    await page.selectOption('#f-status', 'progress');
    await page.locator('#page-no', { hasText: '1–1 of 1, newest first' }).waitFor();
    expect(await page.locator('#list tr').count()).toBe(1);
    expect(await page.textContent('#list')).toContain(ships[1]!.id);
    expect(await page.textContent('#counts-scope')).toBe('anchor ship · status progress');

    // Open it from the list with the keyboard, and cancel it.
    await page.locator(`#list [data-open="${ships[1]!.id}"]`).focus();
    await page.keyboard.press('Enter');
    await page.locator('#detail-id', { hasText: ships[1]!.id }).waitFor();
    expect(await page.textContent('#detail-data')).toContain('"km": 12');
    expect(await page.isEnabled('#do-cancel')).toBe(true);
    await page.click('#do-cancel');
    await page.locator('#action-result', { hasText: 'cancelled: now cancel' }).waitFor();
    expect(await page.isDisabled('#do-cancel')).toBe(true);
    expect(await page.textContent('#detail')).toContain('progress → cancel');
    // The list (still filtered on progress) no longer holds it; the engine agrees.
    await page.locator('#page-no', { hasText: '0 of 0' }).waitFor();
    expect((await engine.get(ships[1]!.token)).status).toBe('cancel');
    expect((await engine.get(ships[0]!.token)).status).toBe('create');

    mkdirSync('test-results', { recursive: true });
    await page.screenshot({ path: 'test-results/dashboard-cancel.png' });
    expect(asked).not.toContain('/favicon.ico');
    expect(errors).toEqual([]);
    await page.close();
  }, 30_000);

  it('finds by id, token, correlation key or tag; lists newest first with a total; the status filter filters the transitions and counts too', async () => {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    const pays = [];
    for (let i = 0; i < 4; i++)
      pays.push(
        await engine.create('pay', {
          data: { orderId: `A-${i}` },
          ...(i % 2 === 1 ? { tags: ['vip'] } : {}),
        }),
      );
    const total = (await engine.list({ total: true })).total!;
    await page.goto(`${base}/dashboard`);
    await page.waitForSelector('#conn.live');

    // Newest first, with the total of every callback.
    await page
      .locator('#page-no', { hasText: `1–${Math.min(12, total)} of ${total}, newest first` })
      .waitFor({ timeout: 5000 });
    const ids = async () => {
      const out: (string | null)[] = [];
      for (const el of await page.locator('#list tr [data-open]').all())
        out.push(await el.getAttribute('data-open'));
      return out;
    };
    expect((await ids()).slice(0, 4)).toEqual([...pays].reverse().map((c) => c.id));

    const find = async (q: string, result: string | RegExp) => {
      await page.fill('#q', q);
      await page.click('#find button');
      await page.locator('#find-result', { hasText: result }).waitFor({ timeout: 5000 });
    };
    // By the order number alone (the anchor's correlation key), by key=value, by id, by token.
    await find('A-2', 'found by correlation key');
    await page.locator('#detail-id', { hasText: pays[2]!.id }).waitFor({ timeout: 5000 });
    await find('orderid=A-0', 'found by correlation key');
    await page.locator('#detail-id', { hasText: pays[0]!.id }).waitFor({ timeout: 5000 });
    await find(pays[3]!.id, 'found by id');
    await page.locator('#detail-id', { hasText: pays[3]!.id }).waitFor({ timeout: 5000 });
    await find(pays[1]!.token, 'found by token');
    await page.locator('#detail-id', { hasText: pays[1]!.id }).waitFor({ timeout: 5000 });
    expect(page.url()).not.toContain(pays[1]!.token);
    // By tag: the list shows the tagged callbacks, newest first, with their total.
    await find('vip', '2 callbacks tagged vip, in the list');
    await page
      .locator('#page-no', { hasText: '1–2 of 2, newest first' })
      .waitFor({ timeout: 5000 });
    expect(await ids()).toEqual([pays[3]!.id, pays[1]!.id]);
    expect(await page.inputValue('#f-tag')).toBe('vip');
    await page.click('#clear-tag');
    await page
      .locator('#page-no', { hasText: `of ${total}, newest first` })
      .waitFor({ timeout: 5000 });
    await find('no-such-thing', /no callback has this id, token or correlation key/);

    // The status filter filters the recent transitions and the counts, not only the list.
    await post(`/callbacks/${encodeURIComponent(pays[0]!.token)}/progress`, { pct: 1 });
    await page.locator('#recent tr', { hasText: pays[0]!.id }).waitFor({ timeout: 5000 });
    expect(await page.textContent('#recent')).toMatch(/→ (complete|cancel|error)/);
    expect(Number(await page.textContent('[data-count-for="create"]'))).toBeGreaterThan(0);
    await page.selectOption('#f-status', 'progress');
    await page
      .locator('#recent-scope', { hasText: 'all anchors · status progress' })
      .waitFor({ timeout: 5000 });
    const rows = await page.locator('#recent tr').allTextContents();
    expect(rows.length).toBeGreaterThan(0);
    for (const row of rows) expect(row).toMatch(/→ progress$/);
    expect(await page.textContent('[data-count-for="create"]')).toBe('0');
    expect(await page.textContent('[data-count-for="progress"]')).toBe(
      String(engine.stats().byStatus.progress),
    );
    const inProgress = (await engine.list({ status: 'progress', total: true })).total!;
    await page
      .locator('#page-no', { hasText: `1–${inProgress} of ${inProgress}, newest first` })
      .waitFor({ timeout: 5000 });
    expect((await ids())[0]).toBe(pays[0]!.id);

    mkdirSync('test-results', { recursive: true });
    await page.screenshot({ path: 'test-results/dashboard-find.png', fullPage: true });
    expect(errors).toEqual([]);
    await page.close();
  }, 30_000);

  it('serves the live diagram and refuses other methods', async () => {
    const svg = await (await fetch(`${base}/dashboard/diagram.svg`)).text();
    expect(svg).toContain('data-count-for="complete">1<');
    expect((await fetch(`${base}/dashboard`, { method: 'POST' })).status).toBe(405);
    expect((await fetch(`${base}/dashboard/callbacks/nope`)).status).toBe(404);
    expect((await fetch(`${base}/dashboard/callbacks/%E0%A4%A`)).status).toBe(400);
  });
});
