/**
 * The live dashboard: one static HTML page with inline CSS and JS (no build
 * step, nothing fetched from the internet). It embeds the lifecycle diagram
 * rendered from the real machine and keeps it current from a Server-Sent
 * Events stream of {@link MonitorView}s.
 *
 * @module
 */

import { toSvg } from '../lifecycle/diagram.js';
import type { MonitorView } from './monitor.js';

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/**
 * Renders the dashboard page.
 *
 * @param options.basePath - where the dashboard routes are mounted (`/dashboard`).
 * @param options.title - shown in the header.
 * @param options.initial - the first view, so the page shows numbers before the stream connects.
 */
export function dashboardPage(options: {
  basePath: string;
  title: string;
  initial: MonitorView;
}): string {
  const { basePath, title, initial } = options;
  // JSON inside <script>: escape `<` so no string can close the element.
  const initialJson = JSON.stringify(initial).replace(/</g, '\\u003c');
  const base = JSON.stringify(basePath).replace(/</g, '\\u003c');
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)} · callback-engine</title>
<style>
  :root { --ink:#1d2b4f; --muted:#6b7489; --line:#dde2ec; --bg:#f7f8fb; --accent:#3d5a99; --bad:#a4443d; }
  * { box-sizing: border-box; }
  body { margin:0; font:14px/1.4 system-ui, sans-serif; color:var(--ink); background:var(--bg); }
  header { display:flex; align-items:center; gap:16px; padding:12px 20px; background:#fff; border-bottom:1px solid var(--line); }
  header h1 { font-size:17px; margin:0; }
  #conn { font-size:12px; padding:2px 8px; border-radius:10px; background:#eee; color:var(--muted); }
  #conn.live { background:#e2f3e6; color:#236b36; }
  main { display:grid; grid-template-columns: minmax(0, 2fr) minmax(280px, 1fr); gap:16px; padding:16px 20px; }
  section { background:#fff; border:1px solid var(--line); border-radius:10px; padding:12px 14px; }
  section h2 { font-size:13px; text-transform:uppercase; letter-spacing:.04em; color:var(--muted); margin:0 0 8px; }
  #chart svg { width:100%; height:auto; }
  .totals { display:grid; grid-template-columns: repeat(4, 1fr); gap:8px; }
  .totals div { background:var(--bg); border-radius:8px; padding:6px 8px; }
  .totals b { display:block; font-size:18px; }
  .totals span { font-size:11px; color:var(--muted); }
  .spark { width:100%; height:56px; display:block; }
  .spark-label { display:flex; justify-content:space-between; font-size:12px; color:var(--muted); margin-top:8px; }
  table { width:100%; border-collapse:collapse; font-size:12px; }
  td, th { text-align:left; padding:3px 4px; border-bottom:1px solid var(--line); white-space:nowrap; }
  td.id { font-family:ui-monospace, monospace; overflow:hidden; text-overflow:ellipsis; max-width:120px; }
  form { display:flex; gap:6px; }
  input { flex:1; font:inherit; padding:6px 8px; border:1px solid var(--line); border-radius:6px; }
  button { font:inherit; padding:6px 12px; border:0; border-radius:6px; background:var(--accent); color:#fff; cursor:pointer; }
  #history { margin-top:8px; font-size:12px; }
  #history ol { padding-left:18px; margin:6px 0 0; }
  .wide { grid-column: 1 / -1; }
</style>
</head>
<body>
<header>
  <h1>${esc(title)}</h1>
  <span id="conn">connecting…</span>
  <span id="updated" style="color:var(--muted);font-size:12px"></span>
</header>
<main>
  <section>
    <h2>Callbacks per state</h2>
    <div id="chart">${toSvg(undefined, { counts: initial.counts })}</div>
  </section>
  <section>
    <h2>Totals</h2>
    <div class="totals" id="totals"></div>
    <div class="spark-label"><span>dispatches / s</span><b id="tp-now">0</b></div>
    <svg class="spark" id="tp" viewBox="0 0 300 56" preserveAspectRatio="none"></svg>
    <div class="spark-label"><span>latency p50 / p99 (ms)</span><b id="lat-now">–</b></div>
    <svg class="spark" id="lat" viewBox="0 0 300 56" preserveAspectRatio="none"></svg>
  </section>
  <section>
    <h2>Recent transitions</h2>
    <table><thead><tr><th>time</th><th>anchor</th><th>callback</th><th>from → to</th></tr></thead><tbody id="recent"></tbody></table>
  </section>
  <section>
    <h2>Find a callback</h2>
    <form id="search"><input id="q" placeholder="token or callbackId" autocomplete="off"><button>Show</button></form>
    <div id="history"></div>
  </section>
</main>
<script>
(() => {
  const base = ${base};
  let view = ${initialJson};
  const $ = (id) => document.getElementById(id);
  const text = (s) => String(s).replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]);
  function spark(svg, series, colors) {
    const max = Math.max(1, ...series.flat());
    svg.innerHTML = series.map((s, i) => {
      const pts = s.map((v, x) => (x * 300 / Math.max(1, s.length - 1)).toFixed(1) + ',' + (54 - v / max * 50).toFixed(1)).join(' ');
      return '<polyline fill="none" stroke-width="1.6" stroke="' + colors[i] + '" points="' + pts + '"/>';
    }).join('');
  }
  function render(v) {
    view = v;
    for (const el of document.querySelectorAll('[data-count-for]')) {
      const n = v.counts[el.getAttribute('data-count-for')] ?? 0;
      if (el.textContent !== String(n)) el.textContent = String(n);
    }
    const s = v.stats || {};
    const totals = [['active', s.active], ['retained', s.retained], ['live actors', s.liveActors], ['created', s.created],
      ['dispatched', s.dispatched], ['forged tokens', s.forgedTokens], ['step failures', s.stepFailures], ['timed out', s.timedOut]];
    $('totals').innerHTML = totals.map(([k, n]) => '<div><b>' + text(n ?? 0) + '</b><span>' + k + '</span></div>').join('');
    spark($('tp'), [v.throughput], ['#3d5a99']);
    spark($('lat'), [v.latencyP50, v.latencyP99], ['#3d5a99', '#a4443d']);
    $('tp-now').textContent = String(v.throughput.at(-2) ?? 0);
    const p50 = v.latencyP50.at(-2) ?? 0, p99 = v.latencyP99.at(-2) ?? 0;
    $('lat-now').textContent = p50 || p99 ? p50.toFixed(2) + ' / ' + p99.toFixed(2) : '–';
    $('recent').innerHTML = v.recent.slice(0, 14).map((r) =>
      '<tr><td>' + new Date(r.at).toLocaleTimeString() + '</td><td>' + text(r.anchor) + '</td><td class="id" title="' + text(r.id) + '">' + text(r.id) + '</td><td>' + text(r.from) + ' → <b>' + text(r.to) + '</b></td></tr>').join('');
    $('updated').textContent = 'updated ' + new Date(v.at).toLocaleTimeString();
  }
  render(view);
  function connect() {
    const es = new EventSource(base + '/events');
    es.addEventListener('view', (e) => render(JSON.parse(e.data)));
    es.onopen = () => { $('conn').textContent = 'live'; $('conn').className = 'live'; };
    es.onerror = () => { $('conn').textContent = 'reconnecting…'; $('conn').className = ''; };
  }
  connect();
  $('search').addEventListener('submit', async (e) => {
    e.preventDefault();
    const q = $('q').value.trim();
    if (!q) return;
    const res = await fetch(base + '/callbacks/' + encodeURIComponent(q));
    if (!res.ok) { $('history').innerHTML = '<p>No history for that token or id (unknown, or not recently active).</p>'; return; }
    const h = await res.json();
    $('history').innerHTML = '<p><b>' + text(h.id) + '</b>: status <b>' + text(h.status) + '</b></p><ol>' +
      h.events.map((ev) => '<li>' + new Date(ev.at).toLocaleTimeString() + ' ' + text(ev.type) +
        (ev.from ? ' ' + text(ev.from) + ' → ' + text(ev.status) : ev.reported ? ' ' + text(ev.reported) + ' (' + text(ev.outcome) + ')' : '') +
        (ev.message ? ': ' + text(ev.message) : '') + '</li>').join('') + '</ol>';
  });
})();
</script>
</body>
</html>
`;
}
