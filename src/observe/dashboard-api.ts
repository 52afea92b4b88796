/**
 * The dashboard's JSON API, under `{base}/api` (behind the dashboard's auth):
 *
 * - `GET  /api/callbacks?anchor=&status=&tag=&cursor=&limit=&order=`: a page of callbacks, newest
 *   first unless `order=oldest`, with the total the filters match (engine `list()`);
 * - `GET  /api/find?q=`: finds a callback by its id, its token or a correlation key (the value
 *   alone, or `key=value` pairs), else a tag: `{ by, id }` or `{ by: 'tag', tag, total }`;
 * - `GET  /api/callbacks/{id}`: one callback's details and history;
 * - `GET  /api/callbacks/{id}/history`: its durable history (`engine.history()`, when the engine
 *   keeps one), with its path on the lifecycle (SVG and Mermaid) and its timeline (SVG and text);
 * - `POST /api/callbacks/{id}/cancel`: cancels an active callback;
 * - `POST /api/callbacks/{id}/retry`: runs its failed final step again (`engine.retryStep()`);
 * - `GET  /api/anchors/{name}/diagram?format=svg|mermaid|json`: what an anchor runs on each
 *   status (`engine.diagram()`).
 *
 * Callbacks are shown by id only: no answer of these routes carries a token (spec 16). The
 * actions are also guarded against cross-site requests (see {@link crossSiteRefusal}).
 *
 * @module
 */

import type { IncomingMessage, ServerResponse } from 'node:http';
import type { CallbackEngine } from '../engine.js';
import { AlreadySettledError, InvalidArgumentError, UnknownAnchorError } from '../errors.js';
import { errorReply, HttpError, send, type Reply } from '../http/respond.js';
import {
  ACTIVE_STATUSES,
  isTerminal,
  TERMINAL_STATUSES,
  type CallbackStatus,
} from '../lifecycle/statuses.js';
import { decodeToken } from '../token.js';
import type { HistoryEntry, HistoryOptions, HistoryPage } from '../history.js';
import type { ListOptions } from '../callback-engine.js';
import type { CallbackDetails } from '../types.js';
import { svgWidth } from '../diagrams/svg-layout.js';
import { pathMermaid, pathSvg } from './callback-path.js';
import type { Monitor } from './monitor.js';
import { timelineSvg } from './timeline-svg.js';
import { timelineText } from './timeline-text.js';

/** The header every dashboard action must carry (any value): a cross-site form cannot set it. */
export const ACTION_HEADER = 'x-requested-with';

/** Most characters of a callback's data shown in its details, as JSON; longer data is cut. */
export const MAX_DETAIL_DATA_CHARS = 16 * 1024;

/** Most children ids listed in a callback's details. */
const MAX_CHILDREN = 200;
/** Default and largest page of the list route. */
const DEFAULT_LIMIT = 50;
const MAX_LIMIT = 200;
const STATUSES: ReadonlySet<string> = new Set([...ACTIVE_STATUSES, ...TERMINAL_STATUSES]);

/** Most history entries the history route reads and draws; the rest is left out (`truncated`). */
export const MAX_HISTORY_ENTRIES = 5000;

/** Most characters of one history entry's data sent, as JSON; longer data is cut. */
export const MAX_ENTRY_DATA_CHARS = 2048;

/** Reads pages of a callback's history: `engine.history()`. */
export type HistoryReader = (tokenOrId: string, options?: HistoryOptions) => Promise<HistoryPage>;

/** The engine's `history()` method, if it has one (bound to it). */
export function historyReader(engine: CallbackEngine): HistoryReader {
  return (tokenOrId, options) => engine.history(tokenOrId, options);
}

/**
 * A callback's history for the dashboard: every entry (up to {@link MAX_HISTORY_ENTRIES}), its
 * path on the lifecycle as SVG and Mermaid, its timeline as SVG and text.
 */
export async function historyBody(
  read: HistoryReader,
  d: CallbackDetails,
  now: number,
): Promise<Record<string, unknown>> {
  const entries: HistoryEntry[] = [];
  let cursor: string | undefined;
  do {
    const page = await read(d.id, { cursor, limit: 1000 });
    entries.push(...page.entries);
    cursor = page.cursor;
  } while (cursor !== undefined && entries.length < MAX_HISTORY_ENTRIES);
  const truncated = cursor !== undefined || entries.length > MAX_HISTORY_ENTRIES;
  const shown = entries.slice(0, MAX_HISTORY_ENTRIES);
  const path = pathSvg(shown, d);
  return {
    id: d.id,
    status: d.status,
    // Each entry's data as it was, cut like the details' data when large.
    entries: shown.map((e) => {
      if (e.data === undefined) return e;
      const json = JSON.stringify(e.data);
      if (json.length <= MAX_ENTRY_DATA_CHARS) return e;
      return {
        ...e,
        data: undefined,
        dataPreview: json.slice(0, MAX_ENTRY_DATA_CHARS),
        dataTruncated: true,
      };
    }),
    truncated,
    path: { svg: path, mermaid: pathMermaid(shown, d) },
    // As wide as the path, so that both are drawn at one scale.
    timeline: {
      svg: timelineSvg(shown, d, { now, width: svgWidth(path) }),
      text: timelineText(shown, d, { now }),
    },
  };
}

const DIAGRAM_FORMATS: ReadonlySet<string> = new Set(['svg', 'mermaid', 'json']);

const notFound = (): HttpError =>
  new HttpError('CBE_ERR_NOT_FOUND', 404, 'no callback has this id (or its record was removed)');

/**
 * Why a dashboard action (a POST) looks cross-site, or `undefined` when it may go on. A browser
 * sends Basic credentials it remembers with any request to the origin, also one a hostile page
 * makes it send; such a request cannot carry a custom header without a CORS preflight (which
 * the dashboard never grants), and browsers tell its origin in `Origin` and `Sec-Fetch-Site`.
 */
export function crossSiteRefusal(req: IncomingMessage): HttpError | undefined {
  const refuse = (why: string) =>
    new HttpError('CBE_ERR_FORBIDDEN', 403, `dashboard action refused: ${why}`);
  const marker = req.headers[ACTION_HEADER];
  if (typeof marker !== 'string' || marker.length === 0)
    return refuse(
      'it needs the header X-Requested-With (any value), which the dashboard page sends',
    );
  const site = req.headers['sec-fetch-site'];
  if (site !== undefined && site !== 'same-origin' && site !== 'none')
    return refuse(`the request comes from another site (Sec-Fetch-Site: ${String(site)})`);
  const origin = req.headers.origin;
  if (origin !== undefined) {
    let host: string | undefined;
    try {
      host = new URL(origin).host;
    } catch {
      host = undefined;
    }
    const forwarded = req.headers['x-forwarded-host'];
    const own =
      (typeof forwarded === 'string' ? forwarded.split(',')[0]!.trim() : undefined) ??
      req.headers.host;
    if (host === undefined || host !== own)
      return refuse(`the request comes from another origin (${JSON.stringify(origin)})`);
  }
  return undefined;
}

/** The list route's query, checked. */
function listQuery(search: URLSearchParams): ListOptions & { limit: number } {
  const anchor = search.get('anchor') ?? '';
  const status = search.get('status') ?? '';
  const tag = search.get('tag') ?? '';
  const cursor = search.get('cursor') ?? '';
  const order = search.get('order') || 'newest';
  if (order !== 'newest' && order !== 'oldest')
    throw new InvalidArgumentError(
      `order must be newest or oldest (got ${JSON.stringify(order.slice(0, 40))})`,
    );
  const limitText = search.get('limit') ?? '';
  const limit = limitText === '' ? DEFAULT_LIMIT : Number(limitText);
  if (!Number.isSafeInteger(limit) || limit < 1 || limit > MAX_LIMIT)
    throw new InvalidArgumentError(
      `limit must be an integer from 1 to ${MAX_LIMIT} (got ${JSON.stringify(limitText)})`,
    );
  const statuses = status === '' ? [] : status.split(',');
  for (const s of statuses)
    if (!STATUSES.has(s))
      throw new InvalidArgumentError(
        `status must be one or more of ${[...STATUSES].join(', ')}, separated by commas (got ${JSON.stringify(s)})`,
      );
  return {
    limit,
    order,
    total: true,
    ...(anchor !== '' ? { anchor } : {}),
    ...(statuses.length > 0 ? { status: statuses as CallbackStatus[] } : {}),
    ...(tag !== '' ? { tags: [tag] } : {}),
    ...(cursor !== '' ? { cursor } : {}),
  };
}

/** Longest search the find route takes (a wrapped token is the longest thing to look for). */
const MAX_QUERY_CHARS = 4096;

/**
 * Attributes that give `value` for every key: a correlation lookup by the value alone (what a
 * support person has: an order number), whatever the anchor named its correlation key.
 */
function everyKey(value: string): Readonly<Record<string, unknown>> {
  return new Proxy(Object.create(null) as Record<string, unknown>, {
    get: (_target, key) => (typeof key === 'string' ? value : undefined),
  });
}

/** `key=value` pairs (separated by `&`, `,` or spaces), keys lower-cased; `undefined` if not. */
function pairs(q: string): Record<string, string> | undefined {
  if (!q.includes('=')) return undefined;
  const out: Record<string, string> = Object.create(null) as Record<string, string>;
  for (const part of q.split(/[&,\s]+/)) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    if (eq <= 0) return undefined;
    out[part.slice(0, eq).toLowerCase()] = part.slice(eq + 1);
  }
  return out;
}

/**
 * What the find route answers for `q`: the callback it names by token, id or correlation key,
 * or the tag it is (with how many callbacks carry it).
 * @throws {@link HttpError} 404 when nothing matches.
 */
async function findReply(engine: CallbackEngine, raw: string): Promise<Reply> {
  const q = raw.trim();
  if (q.length === 0 || q.length > MAX_QUERY_CHARS)
    throw new InvalidArgumentError(
      `q must be a callback id, token, correlation key or tag of 1-${MAX_QUERY_CHARS} characters`,
    );
  const found = (by: string, id: string): Reply => ({ statusCode: 200, body: { by, id } });
  const fields = decodeToken(q);
  if (fields !== undefined) {
    // A token names its callback only if it is that callback's own token.
    const d = await engine.details(fields.id);
    if (d !== undefined && d.token === q) return found('token', d.id);
  }
  if ((await engine.details(q)) !== undefined) return found('id', q);
  const token = await engine.findToken({ attributes: pairs(q) ?? everyKey(q) });
  const id = token === undefined ? undefined : decodeToken(token)?.id;
  if (id !== undefined) return found('correlation', id);
  const tagged = await engine.list({ tags: [q], limit: 1, total: true });
  if (tagged.items.length > 0)
    return {
      statusCode: 200,
      body: { by: 'tag', tag: q, total: tagged.total ?? tagged.items.length },
    };
  throw new HttpError(
    'CBE_ERR_NOT_FOUND',
    404,
    'no callback has this id, token or correlation key, and no callback carries this tag',
  );
}

/** A callback's details as the dashboard shows them: no token; data cut when large. */
function detailBody(d: CallbackDetails, monitor: Monitor): Promise<Record<string, unknown>> {
  const json = JSON.stringify(d.data);
  const body: Record<string, unknown> = {
    id: d.id,
    anchor: d.anchor,
    status: d.status,
    tags: d.tags,
    ...(json.length > MAX_DETAIL_DATA_CHARS
      ? { dataPreview: json.slice(0, MAX_DETAIL_DATA_CHARS), dataTruncated: true }
      : { data: d.data }),
    createdAt: d.createdAt,
    lastActivityAt: d.lastActivityAt ?? null,
    deadlineAt: d.deadlineAt ?? null,
    heartbeatMs: d.heartbeatMs ?? null,
    removeAt: d.removeAt ?? null,
    parentId: d.parentId ?? null,
    children: d.children.slice(0, MAX_CHILDREN),
    childrenTotal: d.children.length,
    stepError: d.stepError ?? null,
    canCancel: !isTerminal(d.status),
    canRetry:
      d.pendingRetry !== undefined || (isTerminal(d.status) && d.stepError?.status === d.status),
  };
  return monitor.history(d.id).then((h) => ({ ...body, history: h ? h.events : null }));
}

/**
 * An anchor's diagram (`engine.diagram()`), `{ anchor, format, diagram }`.
 * @throws {@link HttpError} 404 for an unknown anchor, `InvalidArgumentError` for a bad format.
 */
function anchorDiagramReply(engine: CallbackEngine, encoded: string, url: URL): Reply {
  let name: string;
  try {
    name = decodeURIComponent(encoded);
  } catch {
    throw new HttpError('CBE_ERR_ROUTE_NOT_FOUND', 404, 'bad percent-encoding in the path');
  }
  const format = url.searchParams.get('format') ?? 'svg';
  if (!DIAGRAM_FORMATS.has(format))
    throw new InvalidArgumentError(
      `format must be svg, mermaid or json (got ${JSON.stringify(format)})`,
    );
  try {
    const diagram = engine.diagram(name, { format: format as 'svg' | 'mermaid' | 'json' });
    return { statusCode: 200, body: { anchor: name, format, diagram } };
  } catch (err) {
    if (err instanceof UnknownAnchorError)
      throw new HttpError(
        'CBE_ERR_NOT_FOUND',
        404,
        `no anchor ${JSON.stringify(name)} is registered`,
      );
    throw err;
  }
}

/** Reads a callback's details by id (or by a token, whose id is taken), or throws the 404. */
async function detailsOf(engine: CallbackEngine, key: string): Promise<CallbackDetails> {
  const id = decodeToken(key)?.id ?? key;
  const d = await engine.details(id);
  if (!d) throw notFound();
  return d;
}

function methodNotAllowed(method: string | undefined, allow: string): HttpError {
  return new HttpError('CBE_ERR_METHOD_NOT_ALLOWED', 405, `${method} is not allowed here`, {
    allow,
  });
}

/** Whether the request has a body the route will not read (then the connection closes). */
const hasBody = (req: IncomingMessage): boolean =>
  req.headers['transfer-encoding'] !== undefined ||
  (req.headers['content-length'] !== undefined && req.headers['content-length'] !== '0');

/**
 * Answers a dashboard API request (`rest` is the path after the base, starting with `/api/`).
 * Never throws: failures are answered as JSON `{ code, message }`.
 */
export function apiRoute(
  monitor: Monitor,
  req: IncomingMessage,
  res: ServerResponse,
  rest: string,
): void {
  const engine = monitor.engine;
  const reply = (p: Promise<Reply>): void => {
    p.catch((err: unknown) => errorReply(err, 1)).then(
      (r) => send(res, r, hasBody(req)),
      () => {},
    );
  };
  const url = new URL(req.url ?? '/', 'http://dashboard');
  const method = req.method ?? 'GET';
  const isGet = method === 'GET' || method === 'HEAD';
  if (rest === '/api/callbacks') {
    if (!isGet) return reply(Promise.reject(methodNotAllowed(method, 'GET, HEAD')));
    return reply(
      (async () => {
        const page = await engine.list(listQuery(url.searchParams));
        return {
          statusCode: 200,
          body: {
            items: page.items.map((c) => ({
              id: c.id,
              anchor: c.anchor,
              status: c.status,
              tags: c.tags,
              createdAt: c.createdAt,
            })),
            cursor: page.cursor ?? null,
            total: page.total ?? null,
          },
        };
      })(),
    );
  }
  if (rest === '/api/find') {
    if (!isGet) return reply(Promise.reject(methodNotAllowed(method, 'GET, HEAD')));
    return reply(findReply(engine, url.searchParams.get('q') ?? ''));
  }
  const a = /^\/api\/anchors\/([^/]+)\/diagram$/.exec(rest);
  if (a) {
    if (!isGet) return reply(Promise.reject(methodNotAllowed(method, 'GET, HEAD')));
    return reply(new Promise<Reply>((resolve) => resolve(anchorDiagramReply(engine, a[1]!, url))));
  }
  const m = /^\/api\/callbacks\/([^/]+)(?:\/(cancel|retry|history))?$/.exec(rest);
  if (!m)
    return reply(
      Promise.reject(new HttpError('CBE_ERR_ROUTE_NOT_FOUND', 404, `no route ${url.pathname}`)),
    );
  let key: string;
  try {
    key = decodeURIComponent(m[1]!);
  } catch {
    return reply(
      Promise.reject(
        new HttpError('CBE_ERR_ROUTE_NOT_FOUND', 404, 'bad percent-encoding in the path'),
      ),
    );
  }
  const action = m[2];
  if (action === undefined) {
    if (!isGet) return reply(Promise.reject(methodNotAllowed(method, 'GET, HEAD')));
    return reply(
      detailsOf(engine, key)
        .then((d) => detailBody(d, monitor))
        .then((body) => ({ statusCode: 200, body })),
    );
  }
  if (action === 'history') {
    if (!isGet) return reply(Promise.reject(methodNotAllowed(method, 'GET, HEAD')));
    const read = historyReader(engine);
    return reply(
      detailsOf(engine, key)
        .then((d) => historyBody(read, d, engine.clock.now()))
        .then((body) => ({ statusCode: 200, body })),
    );
  }
  if (method !== 'POST') return reply(Promise.reject(methodNotAllowed(method, 'POST')));
  const refused = crossSiteRefusal(req);
  if (refused) return reply(Promise.reject(refused));
  reply(
    (async () => {
      const d = await detailsOf(engine, key);
      if (action === 'cancel') {
        if (isTerminal(d.status)) throw new AlreadySettledError(d.status);
        const answer = await engine.cancel(d.token);
        return { statusCode: 200, body: { id: d.id, status: answer.status } };
      }
      const answer = await engine.retryStep(d.id);
      return {
        statusCode: 200,
        body: { id: d.id, status: answer.status, stepError: answer.stepError ?? null },
      };
    })(),
  );
}
