import { existsSync, mkdirSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDispatchHandler } from '../src/http/index.js';
import { createCallbackEngine, type CallbackEngine, type CreatedCallback } from '../src/index.js';
import { withDashboard } from '../src/observe/dashboard.js';
import { createMonitor, type Monitor } from '../src/observe/monitor.js';
import { OCR_HISTORY } from './fixtures/history.js';
import { shiftHistory, withHistory } from './helpers/history.js';

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
/** Where the screenshots go (looked at by hand; not compared). */
const SHOTS = join(tmpdir(), 'callback-engine-screenshots');

let engine: CallbackEngine;
let monitor: Monitor;
let server: Server;
let base: string;
let browser: Browser;
let cb: CreatedCallback;

beforeAll(async () => {
  engine = createCallbackEngine({ node: 'dash', secrets: ['dashboard-secret-0123456789'] });
  engine.anchor('ocr', {
    timeout: 'PT30S',
    heartbeat: 'PT20S',
    next: { create: function submitJob() {}, progress: function bookPages() {} },
    retry: { progress: { attempts: 3, backoff: 'PT1S' } },
  });
  cb = await engine.create('ocr', { data: { pages: 12 } });
  const created = (await engine.details(cb.id))!.createdAt;
  // The journal's history of this callback, as engine.history() will page it.
  const history = shiftHistory(OCR_HISTORY, created);
  const withJournal = withHistory(engine, (id) => (id === cb.id ? history : undefined));
  monitor = createMonitor(withJournal, { tickMs: 100 });
  server = createServer(withDashboard(createDispatchHandler(engine), monitor));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  if (available) browser = await chromium.launch({ executablePath: CHROMIUM, args: FLAGS });
  mkdirSync(SHOTS, { recursive: true });
});

afterAll(async () => {
  await browser?.close();
  await new Promise<void>((r) => server.close(() => r()));
  server.closeAllConnections();
  monitor.close();
  await engine.close();
});

describe.skipIf(!available)('callback history and anchor diagram in headless Chromium', () => {
  it("draws the open callback's path and timeline from its history", async () => {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
    await page.goto(`${base}/dashboard#callback=${encodeURIComponent(cb.id)}`);
    await page.locator('#picture-timeline svg').waitFor();
    expect(await page.isVisible('#picture')).toBe(true);
    expect(await page.textContent('#picture-note')).toBe('15 history entries');

    // The path: visited states, the current one, the edges the reports took.
    const path = page.locator('#picture-path');
    expect(await path.locator('[data-state="timeout"]').getAttribute('class')).toContain('current');
    expect(await path.locator('[data-state="accept"]').getAttribute('class')).toContain(
      'unvisited',
    );
    expect(await path.locator('.label.taken').allTextContents()).toEqual(
      expect.arrayContaining(['start +1.2 s', 'progress ×2', 'deadline +30 s']),
    );
    expect(await path.locator('[data-state="start"]').textContent()).toContain(
      'ignored accept +1.9 s',
    );

    // The timeline: the ignored report, two failed tries with their waits, the deadline.
    const tl = page.locator('#picture-timeline');
    const ignored = tl.locator('[data-kind="report"][data-outcome="ignored"]');
    expect(await ignored.count()).toBe(1);
    expect(await ignored.locator('text').textContent()).toBe('accept (ignored) +1.9 s');
    const failed = tl.locator('[data-kind="try"][data-result="failed"]');
    expect(await failed.locator('text').allTextContents()).toEqual([
      'progress try 1 · 350 ms ✗ ledger unavailable (503)',
      'progress try 2 · 300 ms ✗ ledger unavailable (503)',
    ]);
    expect(await tl.locator('[data-kind="wait"] text').allTextContents()).toEqual([
      'wait 1 s → try 2',
      'wait 2 s → try 3',
    ]);
    expect(await tl.locator('[data-kind="deadline"] text').textContent()).toBe('deadline +30 s');
    // Drawn to the section's width, not as a thumbnail.
    const box = (await tl.locator('svg').boundingBox())!;
    expect(box.width).toBeGreaterThan(1000);
    expect(box.height).toBeGreaterThan(200);
    // The failed tries are red bars, drawn where the page's styles cannot reach them.
    type Styles = { getComputedStyle(e: unknown): { fill: string } };
    const fill = await failed
      .first()
      .locator('rect')
      .evaluate((r) => (globalThis as unknown as Styles).getComputedStyle(r).fill);
    expect(fill).toBe('rgb(192, 86, 77)');

    // Mermaid and text to copy into a ticket.
    await page.click('#picture summary >> nth=0');
    expect(await page.textContent('#picture-mermaid')).toContain('TIMEOUT ⇐ deadline +30 s');

    const shot = join(SHOTS, 'dashboard-timeline.png');
    await page.locator('#picture').screenshot({ path: shot });
    expect(statSync(shot).size).toBeGreaterThan(20_000);
    await page.screenshot({ path: join(SHOTS, 'dashboard-with-history.png'), fullPage: true });
    expect(errors).toEqual([]);
    await page.close();
  }, 30_000);

  it('shows what the selected anchor runs on each status', async () => {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`${base}/dashboard`);
    expect(await page.isHidden('#anchor-section')).toBe(true);
    await page.locator('#f-anchor option', { hasText: 'ocr' }).waitFor({ state: 'attached' });
    await page.selectOption('#f-anchor', 'ocr');
    await page.locator('#anchor-diagram svg').waitFor();
    expect(await page.textContent('#anchor-name')).toBe('ocr');
    const diagram = page.locator('#anchor-diagram');
    expect(await diagram.locator('[data-state="create"]').textContent()).toContain('submitJob()');
    expect(await diagram.locator('[data-state="progress"]').textContent()).toContain(
      'retry: 3 tries',
    );
    expect(await diagram.textContent()).toContain(
      'deadline 30 s after creation · heartbeat: times out 20 s after the last report',
    );
    await page.locator('#anchor-section').screenshot({ path: join(SHOTS, 'dashboard-anchor.png') });
    // Back to every anchor: the section goes away.
    await page.selectOption('#f-anchor', '');
    await page.locator('#anchor-section').waitFor({ state: 'hidden' });
    expect(errors).toEqual([]);
    await page.close();
  }, 30_000);
});
