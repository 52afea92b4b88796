/**
 * The dashboard page: one static HTML page with inline CSS and JS (no build
 * step, nothing fetched from anywhere but the dashboard's own routes). It
 * embeds the lifecycle diagram rendered from the real machine and keeps it
 * current from a Server-Sent Events stream of {@link MonitorView}s; it lists
 * callbacks newest first with their total (filtered by anchor, status and tag, paged by
 * cursor; the anchor and status filters also filter the counts and the recent transitions),
 * finds one by its id, token, correlation key or tag, shows one
 * callback's details and history (and, when the engine keeps a durable
 * history, its path on the lifecycle and its timeline), shows what the
 * selected anchor runs on each status, and cancels a callback or retries its
 * failed step through the dashboard's JSON API.
 *
 * @module
 */

import { toSvg } from '../diagrams/diagram.js';
import type { MonitorView } from './monitor.js';

const esc = (s: string) =>
  s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/** A 16×16 SVG icon, inline: the browser asks no `/favicon.ico`. */
const FAVICON =
  "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 16 16'%3E%3Crect width='16' height='16' rx='4' fill='%233d5a99'/%3E%3Cpath d='M4 8.5l2.5 2.5L12 5' stroke='%23fff' stroke-width='2' fill='none'/%3E%3C/svg%3E";

const DEFAULT_TITLE = 'callback-engine';

const STYLE = `
  :root { --ink:#1d2b4f; --muted:#5d667a; --line:#dde2ec; --bg:#f5f6fa; --accent:#3d5a99; --bad:#a4443d; --ok:#236b36; }
  * { box-sizing: border-box; }
  body { margin:0; font:13px/1.4 system-ui, sans-serif; color:var(--ink); background:var(--bg); }
  header { display:flex; flex-wrap:wrap; align-items:center; gap:10px 16px; padding:8px 16px; background:#fff; border-bottom:1px solid var(--line); }
  header h1 { font-size:16px; margin:0; }
  header h1 small { font-weight:400; color:var(--muted); }
  #conn { font-size:12px; padding:2px 8px; border-radius:10px; background:#eee; color:var(--muted); }
  #conn.live { background:#e2f3e6; color:var(--ok); }
  #filters { display:flex; gap:8px; align-items:center; margin-left:auto; }
  label { color:var(--muted); font-size:12px; }
  select, input { font:inherit; padding:4px 6px; border:1px solid #c5ccda; border-radius:6px; background:#fff; color:var(--ink); }
  button { font:inherit; padding:4px 10px; border:1px solid var(--accent); border-radius:6px; background:var(--accent); color:#fff; cursor:pointer; }
  button.quiet { background:#fff; color:var(--accent); }
  button.danger { background:var(--bad); border-color:var(--bad); }
  button:disabled { opacity:.45; cursor:default; }
  button.link { border:0; background:none; color:var(--accent); padding:0; text-decoration:underline; font-family:ui-monospace, monospace; font-size:12px; }
  :focus-visible { outline:2px solid #e39b1b; outline-offset:2px; }
  main { display:grid; grid-template-columns: minmax(0, 1.3fr) minmax(0, 1fr); gap:12px; padding:12px 16px; }
  section { background:#fff; border:1px solid var(--line); border-radius:10px; padding:10px 12px; min-width:0; }
  section h2 { font-size:12px; text-transform:uppercase; letter-spacing:.04em; color:var(--muted); margin:0 0 6px; }
  #chart svg { width:100%; height:auto; max-height:250px; display:block; }
  .totals { display:grid; grid-template-columns: repeat(4, 1fr); gap:6px; }
  .totals div { background:var(--bg); border-radius:8px; padding:2px 8px; }
  .totals b { display:block; font-size:15px; }
  .totals span { font-size:11px; color:var(--muted); }
  .charts { display:grid; grid-template-columns:1fr; gap:2px; margin-top:6px; }
  .chart svg { width:100%; height:auto; display:block; }
  .chart text { font-size:11px; fill:var(--muted); }
  .legend { display:flex; gap:12px; font-size:12px; color:var(--muted); margin:2px 0 0 4px; }
  .legend i { display:inline-block; width:12px; height:3px; vertical-align:middle; margin-right:4px; }
  .legend b { color:var(--ink); }
  table { width:100%; border-collapse:collapse; font-size:12px; }
  td, th { text-align:left; padding:3px 4px; border-bottom:1px solid var(--line); white-space:nowrap; }
  th { color:var(--muted); font-weight:600; }
  td.id { max-width:190px; overflow:hidden; text-overflow:ellipsis; }
  tr.open td { background:#eef2fa; }
  .badge { display:inline-block; padding:0 6px; border-radius:8px; font-size:11px; background:#e9edf5; }
  .badge.complete { background:#e2f3e6; color:var(--ok); }
  .badge.error, .badge.timeout, .badge.orphan { background:#f8e4e2; color:var(--bad); }
  .badge.cancel { background:#f1eadb; color:#7a5a17; }
  .pager { display:flex; gap:8px; align-items:center; margin-top:6px; color:var(--muted); font-size:12px; }
  #find { display:flex; gap:6px; margin-bottom:8px; }
  #find input { flex:1; }
  #detail h3 { margin:2px 0 4px; font-size:13px; font-family:ui-monospace, monospace; word-break:break-all; }
  #detail dl { display:grid; grid-template-columns:max-content 1fr; gap:1px 10px; margin:6px 0; font-size:12px; }
  #detail dt { color:var(--muted); }
  #detail dd { margin:0; }
  .actions { display:flex; gap:8px; align-items:center; margin:6px 0; }
  #action-result { font-size:12px; }
  .failed { background:#fbeeed; border:1px solid #eecbc7; color:var(--bad); border-radius:6px; padding:4px 8px; margin:6px 0; font-size:12px; }
  pre { margin:2px 0; padding:4px 6px; background:var(--bg); border-radius:6px; font-size:11px; max-height:110px; overflow:auto; white-space:pre-wrap; word-break:break-all; }
  #history ol { padding-left:18px; margin:4px 0 0; font-size:12px; }
  #history li { margin-bottom:3px; }
  .muted { color:var(--muted); }
  .bad { color:var(--bad); }
  .wide { grid-column: 1 / -1; }
  .picture svg { width:100%; height:auto; display:block; }
  .picture + .picture { margin-top:10px; border-top:1px solid var(--line); padding-top:8px; }
  .picture h3 { font-size:12px; margin:0 0 4px; color:var(--muted); font-weight:600; }
  details.copy { margin-top:6px; font-size:12px; }
  details.copy pre { max-height:220px; white-space:pre; }
  [hidden] { display:none !important; }
`;

/** The page's script; `base` and `view` are defined before it. */
const SCRIPT = `
  const $ = (id) => document.getElementById(id);
  const text = (s) => String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
  const ACTIVE = ['create', 'accept', 'start', 'progress'];
  const when = (ms) => {
    if (ms == null) return '–';
    const d = new Date(ms);
    return d.toDateString() === new Date().toDateString() ? d.toLocaleTimeString() : d.toLocaleString();
  };
  const span = (ms) => ms < 1000 ? ms + ' ms' : ms < 120000 ? Math.round(ms / 1000) + ' s' : ms < 7200000 ? Math.round(ms / 60000) + ' min' : Math.round(ms / 3600000) + ' h';
  const badge = (s) => '<span class="badge ' + text(s) + '">' + text(s) + '</span>';
  const idButton = (id) => '<button type="button" class="link" data-open="' + text(id) + '" title="' + text(id) + '">' + text(id) + '</button>';

  // ---- charts: y axis with unit, x axis in seconds before now, legend ----
  function niceMax(v) {
    if (v <= 0) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p;
    return 10 * p;
  }
  const fmtNum = (n) => n >= 100 || Number.isInteger(n) ? String(Math.round(n)) : n.toFixed(n < 1 ? 2 : 1);
  function chart(id, series, unit) {
    const W = 480, L = 40, R = 18, T = 14, B = 62;
    // The newest second is still being counted: plot complete seconds only.
    series = series.map((s) => ({ ...s, values: s.values.slice(0, -1) }));
    const n = Math.max(1, ...series.map((s) => s.values.length));
    const max = niceMax(Math.max(0, ...series.flatMap((s) => s.values)));
    const x = (i) => L + (i * (W - L - R)) / Math.max(1, n - 1);
    const y = (v) => B - (v / max) * (B - T);
    let svg = '<text x="' + L + '" y="9">' + text(unit) + '</text>';
    for (const f of [0, 0.5, 1]) {
      const v = max * f, yy = y(v).toFixed(1);
      svg += '<line x1="' + L + '" x2="' + (W - R) + '" y1="' + yy + '" y2="' + yy + '" stroke="' + (f ? '#eceff5' : '#aab2c2') + '"/>';
      svg += '<text x="' + (L - 4) + '" y="' + (+yy + 4) + '" text-anchor="end">' + fmtNum(v) + '</text>';
    }
    for (const back of [60, 45, 30, 15, 0]) {
      if (back > n - 1) continue;
      const xx = x(n - 1 - back).toFixed(1);
      svg += '<line x1="' + xx + '" x2="' + xx + '" y1="' + B + '" y2="' + (B + 4) + '" stroke="#aab2c2"/>';
      svg += '<text x="' + xx + '" y="' + (B + 15) + '" text-anchor="middle">' + (back ? '−' + back + ' s' : 'now') + '</text>';
    }
    for (const s of series) {
      const pts = s.values.map((v, i) => x(i + n - s.values.length).toFixed(1) + ',' + y(v).toFixed(1)).join(' ');
      svg += '<polyline fill="none" stroke-width="1.8" stroke="' + s.color + '" points="' + pts + '"/>';
    }
    $(id).innerHTML = svg;
    const last = (s) => s.values.at(-1) ?? 0;
    $(id).setAttribute('aria-label', series.map((s) => s.name + ' ' + fmtNum(last(s)) + ' ' + unit).join(', ') + ', over the last ' + n + ' s');
    $(id + '-legend').innerHTML = series.map((s) => '<span><i style="background:' + s.color + '"></i>' + text(s.name) + ' <b>' + fmtNum(last(s)) + '</b></span>').join('');
  }

  // ---- live view ----
  let view = initial;
  const filter = { anchor: '', status: '', tag: '' };
  // The status filter's statuses ('' for any).
  const statusSet = () => filter.status ? filter.status.split(',') : null;
  function countsFor(v) {
    const counts = !filter.anchor ? v.counts : (v.stats && v.stats.byAnchor && v.stats.byAnchor[filter.anchor]) || {};
    const only = statusSet();
    if (!only) return counts;
    return Object.fromEntries(Object.entries(counts).filter(([s]) => only.includes(s)));
  }
  const scopeText = () => [filter.anchor ? 'anchor ' + filter.anchor : 'all anchors', filter.status ? 'status ' + $('f-status').selectedOptions[0].textContent : ''].filter(Boolean).join(' · ');
  function renderAnchors(v) {
    const sel = $('f-anchor');
    const names = Object.keys((v.stats && v.stats.byAnchor) || {}).sort();
    if (filter.anchor && !names.includes(filter.anchor)) names.push(filter.anchor);
    const have = [...sel.options].slice(1).map((o) => o.value);
    if (have.join('\\n') === names.join('\\n')) return;
    sel.innerHTML = '<option value="">any anchor</option>' + names.map((a) => '<option>' + text(a) + '</option>').join('');
    sel.value = filter.anchor;
  }
  function render(v) {
    view = v;
    renderAnchors(v);
    const counts = countsFor(v);
    for (const el of document.querySelectorAll('[data-count-for]')) {
      const n = String(counts[el.getAttribute('data-count-for')] ?? 0);
      if (el.textContent !== n) el.textContent = n;
    }
    $('counts-scope').textContent = scopeText();
    $('recent-scope').textContent = scopeText();
    const s = v.stats || {};
    const totals = [['active', s.active], ['retained', s.retained], ['live actors', s.liveActors], ['created', s.created],
      ['dispatched', s.dispatched], ['forged tokens', s.forgedTokens], ['step failures', s.stepFailures], ['timed out', s.timedOut]];
    $('totals').innerHTML = totals.map(([k, n]) => '<div><b>' + text(n ?? 0) + '</b><span>' + k + '</span></div>').join('');
    chart('tp', [{ name: 'dispatches', color: '#3d5a99', values: v.throughput }], 'dispatches / s');
    chart('lat', [{ name: 'p50', color: '#3d5a99', values: v.latencyP50 }, { name: 'p99', color: '#c0564d', values: v.latencyP99 }], 'latency, ms');
    const only = statusSet();
    const recent = v.recent.filter((r) => (!filter.anchor || r.anchor === filter.anchor) && (!only || only.includes(r.to)));
    $('recent').innerHTML = recent.length === 0 ? '<tr><td colspan="4" class="muted">No recent transitions match.</td></tr>' : recent.slice(0, 12).map((r) =>
      '<tr><td>' + when(r.at) + '</td><td>' + text(r.anchor) + '</td><td class="id">' + idButton(r.id) + '</td><td>' + text(r.from) + ' → ' + badge(r.to) + '</td></tr>').join('');
    $('updated').textContent = 'updated ' + when(v.at);
    // The open callback moved: show it again (and the list), at most twice a second.
    if (current && latestFor(current) > shownAt) { shownAt = latestFor(current); refreshSoon(); }
  }

  // ---- the list ----
  let cursors = [''];
  // Filters change faster than pages arrive: only the latest request's page is shown.
  let listSeq = 0;
  async function getJson(url, init) {
    const res = await fetch(url, init);
    const body = await res.json().catch(() => ({}));
    if (!res.ok) throw new Error(body.message || ('HTTP ' + res.status));
    return body;
  }
  async function loadList() {
    const q = new URLSearchParams({ limit: '12', order: 'newest' });
    if (filter.anchor) q.set('anchor', filter.anchor);
    if (filter.status) q.set('status', filter.status);
    if (filter.tag) q.set('tag', filter.tag);
    const cursor = cursors.at(-1);
    if (cursor) q.set('cursor', cursor);
    const seq = ++listSeq;
    try {
      const page = await getJson(base + '/api/callbacks?' + q);
      if (seq !== listSeq) return;
      $('list').innerHTML = page.items.length ? page.items.map((c) =>
        '<tr' + (c.id === current ? ' class="open"' : '') + '><td class="id">' + idButton(c.id) + '</td><td>' + text(c.anchor) + '</td><td>' + badge(c.status) +
        '</td><td>' + when(c.createdAt) + '</td><td>' + text(c.tags.join(', ')) + '</td></tr>').join('')
        : '<tr><td colspan="5" class="muted">No callbacks match.</td></tr>';
      const first = (cursors.length - 1) * 12;
      $('page-no').textContent = page.items.length === 0 ? '0 of ' + (page.total ?? 0)
        : (first + 1) + '–' + (first + page.items.length) + ' of ' + (page.total ?? '?') + ', newest first';
      $('prev').disabled = cursors.length === 1;
      $('next').disabled = !page.cursor;
      $('next').dataset.cursor = page.cursor || '';
    } catch (e) {
      if (seq !== listSeq) return;
      $('list').innerHTML = '<tr><td colspan="5" class="failed">' + text(e.message) + '</td></tr>';
    }
  }
  $('filters').addEventListener('change', () => {
    filter.anchor = $('f-anchor').value;
    filter.status = $('f-status').value;
    cursors = [''];
    render(view);
    loadList();
    loadAnchor();
  });
  function setTag(tag) {
    filter.tag = tag;
    $('f-tag').value = tag;
    $('clear-tag').hidden = !tag;
    cursors = [''];
    loadList();
  }
  $('tag-filter').addEventListener('submit', (e) => { e.preventDefault(); setTag($('f-tag').value.trim()); });
  $('clear-tag').addEventListener('click', () => setTag(''));
  $('next').addEventListener('click', () => { cursors.push($('next').dataset.cursor); loadList(); });
  $('prev').addEventListener('click', () => { cursors.pop(); loadList(); });
  $('refresh').addEventListener('click', () => loadList());

  // ---- one callback ----
  let current = '', shownAt = 0, timer = 0;
  const latestFor = (id) => Math.max(0, ...view.recent.filter((r) => r.id === id).map((r) => r.at));
  function refreshSoon() {
    if (!timer) timer = setTimeout(() => { timer = 0; if (current) showDetail(current, false); loadList(); }, 500);
  }
  function describe(ev) {
    const data = ev.data ? '<pre>' + text(ev.data) + (ev.dataTruncated ? ' … (cut)' : '') + '</pre>' : '';
    switch (ev.type) {
      case 'created': return 'created' + data;
      case 'dispatched': return 'report <b>' + text(ev.reported) + '</b> → ' + text(ev.outcome) + data;
      case 'transitioned': return text(ev.from) + ' → ' + badge(ev.status);
      case 'stepFailed': return '<span class="bad">the <b>' + text(ev.reported || '') + '</b> step failed: ' + text(ev.message || '(no message)') + '</span>';
      case 'timedOut': return 'timed out (' + text(ev.reason || 'deadline') + ')';
      default: return text(ev.type) + (ev.reason ? ' (' + text(ev.reason) + ')' : '');
    }
  }
  async function showDetail(id, focus) {
    let d;
    try {
      d = await getJson(base + '/api/callbacks/' + encodeURIComponent(id));
    } catch (e) {
      $('detail').innerHTML = '<p class="failed">' + text(e.message) + '</p>';
      return false;
    }
    current = d.id; shownAt = latestFor(d.id);
    history.replaceState(null, '', '#callback=' + encodeURIComponent(d.id));
    for (const tr of document.querySelectorAll('#list tr')) tr.classList.toggle('open', !!tr.querySelector('[data-open="' + CSS.escape(d.id) + '"]'));
    const kids = d.children.map(idButton).join(', ') + (d.childrenTotal > d.children.length ? ' and ' + (d.childrenTotal - d.children.length) + ' more' : '');
    $('detail').innerHTML =
      '<h3 tabindex="-1" id="detail-id">' + text(d.id) + '</h3>' +
      '<div>' + badge(d.status) + ' at anchor <b>' + text(d.anchor) + '</b>' + (d.tags.length ? ' · tags ' + text(d.tags.join(', ')) : '') + '</div>' +
      '<div class="actions"><button type="button" id="do-cancel" class="danger"' + (d.canCancel ? '' : ' disabled') + '>Cancel callback</button>' +
      '<button type="button" id="do-retry" class="quiet"' + (d.canRetry ? '' : ' disabled') + '>Retry failed step</button>' +
      '<span id="action-result" role="status" aria-live="polite"></span></div>' +
      (d.stepError ? '<div class="failed">The <b>' + text(d.stepError.status) + '</b> step failed: ' + text(d.stepError.message) + '</div>' : '') +
      '<dl><dt>created</dt><dd>' + when(d.createdAt) + '</dd><dt>last report</dt><dd>' + when(d.lastActivityAt) + '</dd>' +
      '<dt>deadline</dt><dd>' + when(d.deadlineAt) + '</dd>' + (d.heartbeatMs != null ? '<dt>heartbeat</dt><dd>every ' + span(d.heartbeatMs) + '</dd>' : '') +
      (d.removeAt != null ? '<dt>kept until</dt><dd>' + when(d.removeAt) + '</dd>' : '') +
      '<dt>parent</dt><dd>' + (d.parentId ? idButton(d.parentId) : '–') + '</dd><dt>children</dt><dd>' + (kids || '–') + '</dd></dl>' +
      '<div class="muted">data</div><pre id="detail-data">' + text(d.dataTruncated ? d.dataPreview + ' … (cut)' : JSON.stringify(d.data, null, 1)) + '</pre>' +
      '<div id="history"><div class="muted">history</div>' + (d.history ? '<ol>' + d.history.map((ev) => '<li>' + when(ev.at) + ' ' + describe(ev) + '</li>').join('') + '</ol>' : '<p class="muted">Not tracked by this monitor (it keeps the recently active ones).</p>') + '</div>';
    $('do-cancel').addEventListener('click', () => act('cancel', d.id));
    $('do-retry').addEventListener('click', () => act('retry', d.id));
    if (focus) $('detail-id').focus();
    if (pictureFor !== d.id) $('picture').hidden = true;
    loadPicture(d.id);
    return true;
  }
  // The path on the lifecycle and the timeline, from the engine's durable history (if it keeps one).
  let pictureFor = '';
  async function loadPicture(id) {
    let h;
    try {
      h = await getJson(base + '/api/callbacks/' + encodeURIComponent(id) + '/history');
    } catch (e) {
      if (current === id) { $('picture').hidden = true; pictureFor = ''; }
      return;
    }
    if (current !== id) return;
    pictureFor = id;
    $('picture-path').innerHTML = h.path.svg;
    $('picture-timeline').innerHTML = h.timeline.svg;
    $('picture-mermaid').textContent = h.path.mermaid;
    $('picture-text').textContent = h.timeline.text;
    $('picture-note').textContent = h.entries.length + ' history entries' + (h.truncated ? ', the oldest ones (the rest is left out)' : '');
    $('picture').hidden = false;
  }

  // What the selected anchor runs on each status.
  async function loadAnchor() {
    const name = filter.anchor;
    if (!name) { $('anchor-section').hidden = true; return; }
    let html;
    try {
      const r = await getJson(base + '/api/anchors/' + encodeURIComponent(name) + '/diagram?format=svg');
      html = r.diagram;
    } catch (e) {
      html = '<p class="failed">' + text(e.message) + '</p>';
    }
    if (filter.anchor !== name) return;
    $('anchor-name').textContent = name;
    $('anchor-diagram').innerHTML = html;
    $('anchor-section').hidden = false;
  }

  async function act(action, id) {
    if (action === 'cancel' && !confirm('Cancel callback ' + id + '? Its outside party learns it should stop.')) return;
    $('action-result').textContent = action === 'cancel' ? 'cancelling…' : 'retrying…';
    try {
      const r = await getJson(base + '/api/callbacks/' + encodeURIComponent(id) + '/' + action, { method: 'POST', headers: { 'x-requested-with': 'callback-engine-dashboard' } });
      await showDetail(id, false);
      $('action-result').textContent = action === 'cancel' ? 'cancelled: now ' + r.status : r.stepError ? 'the step failed again' : 'the step went through';
    } catch (e) {
      $('action-result').textContent = e.message;
    }
    loadList();
  }
  document.addEventListener('click', (e) => {
    const b = e.target.closest && e.target.closest('[data-open]');
    if (b) showDetail(b.getAttribute('data-open'), true);
  });
  // Finds a callback by id, token or correlation key (an order number), else lists a tag's.
  $('find').addEventListener('submit', async (e) => {
    e.preventDefault();
    const q = $('q').value.trim();
    if (!q) return;
    let r;
    try {
      r = await getJson(base + '/api/find?q=' + encodeURIComponent(q));
    } catch (err) {
      $('find-result').textContent = err.message;
      return;
    }
    // A token typed here goes to the server once and never into the address bar.
    $('q').value = '';
    if (r.by === 'tag') {
      setTag(r.tag);
      $('find-result').textContent = r.total + ' callback' + (r.total === 1 ? '' : 's') + ' tagged ' + r.tag + ', in the list';
      return;
    }
    $('find-result').textContent = 'found by ' + (r.by === 'correlation' ? 'correlation key' : r.by);
    await showDetail(r.id, true);
  });
  const fromHash = () => {
    const m = /^#callback=(.+)$/.exec(location.hash);
    if (m) showDetail(decodeURIComponent(m[1]), true);
  };
  window.addEventListener('hashchange', fromHash);

  render(view);
  loadList();
  fromHash();
  const es = new EventSource(base + '/events');
  es.addEventListener('view', (e) => render(JSON.parse(e.data)));
  es.onopen = () => { $('conn').textContent = 'live'; $('conn').className = 'live'; };
  es.onerror = () => { $('conn').textContent = 'reconnecting…'; $('conn').className = ''; };
`;

/**
 * Renders the dashboard page.
 *
 * @param options.basePath - where the dashboard routes are mounted (`/dashboard`).
 * @param options.title - the service's name, shown in the header and the window title.
 * @param options.initial - the first view, so the page shows numbers before the stream connects.
 * @returns the whole HTML document.
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
  const windowTitle =
    title === DEFAULT_TITLE
      ? `${DEFAULT_TITLE} dashboard`
      : `${title} · ${DEFAULT_TITLE} dashboard`;
  const statusOptions = [
    ['', 'any status'],
    ['create,accept,start,progress', 'active'],
    ['complete,error,cancel,timeout,orphan', 'terminal'],
    ...[
      'create',
      'accept',
      'start',
      'progress',
      'complete',
      'error',
      'cancel',
      'timeout',
      'orphan',
    ].map((s) => [s, s]),
  ]
    .map(([v, label]) => `<option value="${v}">${label}</option>`)
    .join('');
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(windowTitle)}</title>
<link rel="icon" href="${FAVICON}">
<style>${STYLE}</style>
</head>
<body>
<header>
  <h1>${esc(title)} <small>dashboard</small></h1>
  <span id="conn">connecting…</span>
  <span id="updated" class="muted"></span>
  <div id="filters" role="group" aria-label="Filters">
    <label for="f-anchor">Anchor</label><select id="f-anchor"><option value="">any anchor</option></select>
    <label for="f-status">Status</label><select id="f-status">${statusOptions}</select>
  </div>
</header>
<main>
  <section aria-labelledby="h-states">
    <h2 id="h-states">Callbacks per state · <span id="counts-scope">all anchors</span></h2>
    <div id="chart">${toSvg(undefined, { counts: initial.counts })}</div>
  </section>
  <section aria-labelledby="h-activity">
    <h2 id="h-activity">Activity</h2>
    <div class="totals" id="totals"></div>
    <div class="charts">
      <div class="chart"><svg id="tp" viewBox="0 0 480 80" role="img" aria-label="dispatches per second"></svg><div class="legend" id="tp-legend"></div></div>
      <div class="chart"><svg id="lat" viewBox="0 0 480 80" role="img" aria-label="dispatch latency"></svg><div class="legend" id="lat-legend"></div></div>
    </div>
  </section>
  <section class="wide" id="anchor-section" aria-labelledby="h-anchor" hidden>
    <h2 id="h-anchor">What anchor <span id="anchor-name"></span> runs on each status</h2>
    <div class="picture" id="anchor-diagram"></div>
  </section>
  <section aria-labelledby="h-list">
    <h2 id="h-list">Callbacks · newest first</h2>
    <form id="tag-filter" class="pager"><label for="f-tag">Tag</label><input id="f-tag" autocomplete="off" placeholder="any tag"><button type="submit" class="quiet">Filter</button><button type="button" class="quiet" id="clear-tag" hidden>Clear tag</button></form>
    <table><thead><tr><th scope="col">callback id</th><th scope="col">anchor</th><th scope="col">status</th><th scope="col">created</th><th scope="col">tags</th></tr></thead><tbody id="list"></tbody></table>
    <div class="pager"><button type="button" class="quiet" id="prev" disabled>‹ Previous</button><button type="button" class="quiet" id="next" disabled>Next ›</button><span id="page-no"></span><button type="button" class="quiet" id="refresh">Refresh</button></div>
  </section>
  <section aria-labelledby="h-detail">
    <h2 id="h-detail">Callback</h2>
    <form id="find"><label for="q" class="muted" style="align-self:center">Find</label><input id="q" placeholder="id, token, order number (correlation key) or tag" autocomplete="off"><button>Find</button></form>
    <div id="find-result" class="muted" role="status" aria-live="polite"></div>
    <div id="detail"><p class="muted">Pick a callback in the list, or find one by its id, token, correlation key or tag.</p></div>
  </section>
  <section class="wide" id="picture" aria-labelledby="h-picture" hidden>
    <h2 id="h-picture">Path and timeline · <span id="picture-note"></span></h2>
    <div class="picture"><h3>Path on the lifecycle</h3><div id="picture-path"></div></div>
    <div class="picture"><h3>Timeline</h3><div id="picture-timeline"></div></div>
    <details class="copy"><summary>Path as Mermaid (for a ticket)</summary><pre id="picture-mermaid"></pre></details>
    <details class="copy"><summary>Timeline as text</summary><pre id="picture-text"></pre></details>
  </section>
  <section class="wide" aria-labelledby="h-recent">
    <h2 id="h-recent">Recent transitions · <span id="recent-scope">all anchors</span></h2>
    <table><thead><tr><th scope="col">time</th><th scope="col">anchor</th><th scope="col">callback id</th><th scope="col">from → to</th></tr></thead><tbody id="recent"></tbody></table>
  </section>
</main>
<script>
(() => {
  const base = ${base};
  const initial = ${initialJson};
${SCRIPT}
})();
</script>
</body>
</html>
`;
}
