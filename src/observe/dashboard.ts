/**
 * The dashboard's HTTP routes, mounted in front of the Dispatch Callback
 * Service:
 *
 * - `GET {base}`: the page;
 * - `GET {base}/events`: Server-Sent Events, one `view` event per published {@link MonitorView};
 * - `GET {base}/callbacks/{token or id}`: one callback's history (404 if not tracked);
 * - `GET {base}/diagram.svg`, `{base}/diagram.mmd`: the lifecycle diagram with current counts;
 * - `GET {base}/api/callbacks`, `GET {base}/api/callbacks/{id}`, `POST {base}/api/callbacks/{id}/cancel`
 *   and `/retry`: the list, a callback's details and the actions (see `dashboard-api.ts`).
 *
 * Every route sits behind the same auth as the dispatch routes, whatever the order the parts are
 * created, wrapped or mounted in (see `http/gate.ts`), and none ever answers with a callback's
 * token: callbacks are shown by id.
 *
 * @module
 */

import type { IncomingMessage, ServerResponse } from 'node:http';
import { systemClock } from '../clock.js';
import { describe } from '../duration.js';
import { InvalidArgumentError } from '../errors.js';
import { authCheck, bearerOk, checkSignature, type AuthCheck } from '../http/auth.js';
import { adminAuth, carriedAuth, carryAuth, type AdminAuth } from '../http/gate.js';
import { resolveAuth, type DispatchAuthOptions } from '../http/options.js';
import { errorReply, HttpError, send as sendJson } from '../http/respond.js';
import { checkKnownKeys } from '../keys.js';
import { toMermaid, toSvg } from '../diagrams/diagram.js';
import { apiRoute } from './dashboard-api.js';
import { dashboardPage } from './dashboard-page.js';
import type { Monitor, MonitorView } from './monitor.js';

/** Options of {@link createDashboard} and {@link withDashboard}. */
export interface DashboardOptions {
  /** Where the routes live. @default '/dashboard' */
  basePath?: string;
  /** Shown in the page header. @default 'callback-engine' */
  title?: string;
  /** Ms between SSE keep-alive comments. @default 15000 */
  keepAliveMs?: number;
  /**
   * Credentials every dashboard route requires: the same shape as the
   * handler's `auth`. A bearer token may also come as the password of HTTP
   * Basic auth, so a browser can open the page (it prompts). `false` serves the
   * dashboard without auth, deliberately.
   * @default the auth of the engine's dispatch handlers (`createDispatchHandler`,
   *   `serve`), whenever and wherever they are created; none when they have none. Refused
   *   at creation when they disagree.
   */
  auth?: DispatchAuthOptions | false;
  /** Most concurrent `/events` subscribers; one more is answered 503. @default 100 */
  maxSubscribers?: number;
  /**
   * Most bytes queued for one subscriber that does not keep up. While its
   * connection is backed up, newer views replace the unsent one (latest view
   * wins); past this bound it is disconnected.
   * @default 65536
   */
  maxBufferedBytes?: number;
  /** A subscriber whose connection stays backed up (does not read) this long is disconnected. @default 30000 */
  idleTimeoutMs?: number;
}

const DASHBOARD_OPTION_KEYS: readonly string[] = Object.freeze([
  'basePath',
  'title',
  'keepAliveMs',
  'auth',
  'maxSubscribers',
  'maxBufferedBytes',
  'idleTimeoutMs',
]);

/** Frozen defaults of the dashboard options. */
export const DASHBOARD_DEFAULTS = Object.freeze({
  basePath: '/dashboard',
  title: 'callback-engine',
  keepAliveMs: 15_000,
  maxSubscribers: 100,
  maxBufferedBytes: 64 * 1024,
  idleTimeoutMs: 30_000,
});

/** A request handler that serves the dashboard routes and declines everything else. */
export type DashboardHandler = (req: IncomingMessage, res: ServerResponse) => boolean;

const EMPTY = Buffer.alloc(0);
/** The page's Content-Security-Policy: its own inline script and style, requests to itself only. */
const PAGE_CSP =
  "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
const REALM = 'callback-engine dashboard';

function send(res: ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, {
    'content-type': type,
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
  });
  res.end(body);
}

function int(name: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) {
    throw new InvalidArgumentError(
      `dashboard options.${name} must be a positive integer (got ${describe(value)})`,
    );
  }
  return value;
}

/** Whether `Authorization: Basic` carries a configured bearer token as its password. */
function basicOk(digests: readonly Buffer[], header: string | undefined): boolean {
  const m = header === undefined ? null : /^Basic[ ]+([A-Za-z0-9+/=]{1,2048})[ ]*$/i.exec(header);
  if (!m) return false;
  const decoded = Buffer.from(m[1]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  return bearerOk(digests, { authorization: `Bearer ${decoded.slice(colon + 1)}` });
}

/**
 * The 401 for an admin request (dashboard, metrics) without the service's credentials, or
 * `undefined` when it passes: a bearer token (also as the password of Basic auth, for browsers),
 * and a valid signature when the service signs requests.
 */
export function adminRefusal(
  auth: AuthCheck,
  req: IncomingMessage,
  what = 'the dashboard',
  realm = REALM,
): HttpError | undefined {
  if (
    auth.bearer !== undefined &&
    !bearerOk(auth.bearer, req.headers) &&
    !basicOk(auth.bearer, req.headers.authorization)
  ) {
    return new HttpError(
      'CBE_ERR_UNAUTHORIZED',
      401,
      `${what} needs the service credentials: Authorization: Bearer <token>, or from a browser Basic auth with the token as password`,
      {
        'www-authenticate':
          auth.hmac === undefined
            ? `Basic realm="${realm}", charset="UTF-8"`
            : `Bearer realm="${realm}"`,
      },
    );
  }
  return auth.hmac === undefined ? undefined : checkSignature(auth.hmac, auth.clock, req, EMPTY);
}

interface Settings {
  readonly base: string;
  readonly title: string;
  readonly keepAliveMs: number;
  readonly maxSubscribers: number;
  readonly maxBufferedBytes: number;
  readonly idleTimeoutMs: number;
}

function resolveDashboardOptions(options: unknown): Settings {
  if (options !== undefined && (typeof options !== 'object' || options === null)) {
    throw new InvalidArgumentError('dashboard options must be an object');
  }
  const o = (options ?? {}) as DashboardOptions;
  checkKnownKeys('dashboard options', o, DASHBOARD_OPTION_KEYS);
  const basePath = o.basePath ?? DASHBOARD_DEFAULTS.basePath;
  if (typeof basePath !== 'string' || !basePath.startsWith('/')) {
    throw new InvalidArgumentError(
      `dashboard options.basePath must be a path such as "/dashboard" (got ${JSON.stringify(basePath)})`,
    );
  }
  if (o.title !== undefined && typeof o.title !== 'string') {
    throw new InvalidArgumentError('dashboard options.title must be a string');
  }
  return {
    base: basePath.replace(/\/+$/, ''),
    title: o.title ?? DASHBOARD_DEFAULTS.title,
    keepAliveMs: int('keepAliveMs', o.keepAliveMs, DASHBOARD_DEFAULTS.keepAliveMs),
    maxSubscribers: int('maxSubscribers', o.maxSubscribers, DASHBOARD_DEFAULTS.maxSubscribers),
    maxBufferedBytes: int(
      'maxBufferedBytes',
      o.maxBufferedBytes,
      DASHBOARD_DEFAULTS.maxBufferedBytes,
    ),
    idleTimeoutMs: int('idleTimeoutMs', o.idleTimeoutMs, DASHBOARD_DEFAULTS.idleTimeoutMs),
  };
}

/**
 * An admin part's own `auth` option: `undefined` (take the dispatch routes'), `false` (none),
 * or its own check.
 *
 * @throws `InvalidArgumentError` for invalid auth options.
 */
export function ownAuth(
  auth: DispatchAuthOptions | false | undefined,
): AuthCheck | false | undefined {
  if (auth === undefined || auth === false) return auth;
  const { bearer, hmac } = resolveAuth(auth);
  return authCheck(bearer, hmac, systemClock);
}

/**
 * One SSE subscriber: writes a frame only while its connection keeps up; while
 * it is backed up the latest view waits (older ones are dropped), and a
 * subscriber backed up past the buffer bound or the idle timeout is cut off.
 */
class Subscriber {
  #pending: MonitorView | undefined;
  #stall: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(
    private readonly res: ServerResponse,
    private readonly settings: Settings,
    private readonly onClose: () => void,
  ) {
    res.on('drain', () => this.#drained());
  }

  push(view: MonitorView): void {
    if (this.#closed) return;
    if (this.res.writableNeedDrain) {
      this.#pending = view;
      return;
    }
    this.#write(`event: view\ndata: ${JSON.stringify(view)}\n\n`);
  }

  ping(): void {
    if (!this.#closed && !this.res.writableNeedDrain) this.#write(': keep-alive\n\n');
  }

  #write(frame: string): void {
    const ok = this.res.write(frame);
    if (this.res.writableLength > this.settings.maxBufferedBytes) {
      this.close();
      return;
    }
    if (!ok && this.#stall === undefined) {
      this.#stall = setTimeout(() => this.close(), this.settings.idleTimeoutMs);
      this.#stall.unref();
    }
  }

  #drained(): void {
    clearTimeout(this.#stall);
    this.#stall = undefined;
    const view = this.#pending;
    this.#pending = undefined;
    if (view !== undefined) this.push(view);
  }

  /** Whether it was cut off or its client left. */
  get closed(): boolean {
    return this.#closed;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#stall);
    this.#pending = undefined;
    this.onClose();
    this.res.destroy();
  }
}

/** Where a framework that strips its mount path from `req.url` mounted the handler (Express `req.baseUrl`). */
function mountedAt(req: IncomingMessage): string {
  const mount = (req as IncomingMessage & { baseUrl?: unknown }).baseUrl;
  return typeof mount === 'string' ? mount.replace(/\/+$/, '') : '';
}

function routes(monitor: Monitor, s: Settings, gate: AdminAuth): DashboardHandler {
  const { base } = s;
  let subscribers = 0;
  return (req, res) => {
    const path = (req.url ?? '/').split('?')[0]!;
    if (path !== base && !path.startsWith(`${base}/`)) return false;
    // The gate first, for every route and method under the base.
    const auth = gate();
    const refused = auth === undefined ? undefined : adminRefusal(auth, req);
    if (refused !== undefined) {
      sendJson(res, errorReply(refused, 1));
      return true;
    }
    const rest = path.slice(base.length);
    if (rest.startsWith('/api/')) {
      apiRoute(monitor, req, res, rest);
      return true;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('allow', 'GET, HEAD');
      send(
        res,
        405,
        'application/json',
        JSON.stringify({
          code: 'CBE_ERR_METHOD_NOT_ALLOWED',
          message: `${req.method} is not allowed here`,
        }),
      );
      return true;
    }
    if (rest === '' || rest === '/') {
      // Nothing but this page may script it, and nobody may frame it (its buttons act).
      res.setHeader('content-security-policy', PAGE_CSP);
      res.setHeader('x-frame-options', 'DENY');
      res.setHeader('referrer-policy', 'no-referrer');
      send(
        res,
        200,
        'text/html; charset=utf-8',
        // The page asks for its API and event stream by absolute path: under Express the mount
        // path (req.baseUrl) was stripped from req.url, but the browser has to send it.
        dashboardPage({ basePath: mountedAt(req) + base, title: s.title, initial: monitor.tick() }),
      );
    } else if (rest === '/events') {
      if (subscribers >= s.maxSubscribers) {
        sendJson(
          res,
          errorReply(
            new HttpError(
              'CBE_ERR_TOO_MANY_SUBSCRIBERS',
              503,
              `the dashboard already streams to ${s.maxSubscribers} subscribers (option maxSubscribers)`,
              { 'retry-after': '5' },
            ),
            5,
          ),
        );
        return true;
      }
      subscribers++;
      res.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-store',
        connection: 'keep-alive',
      });
      const ping = setInterval(() => subscriber.ping(), s.keepAliveMs);
      ping.unref();
      let unsubscribe = (): void => {};
      const subscriber = new Subscriber(res, s, () => {
        subscribers--;
        clearInterval(ping);
        unsubscribe();
      });
      subscriber.push(monitor.view());
      unsubscribe = monitor.subscribe((view) => subscriber.push(view));
      if (subscriber.closed) unsubscribe();
      const stop = () => subscriber.close();
      req.on('close', stop);
      res.on('close', stop);
      res.on('error', stop);
    } else if (rest.startsWith('/callbacks/')) {
      let key: string;
      try {
        key = decodeURIComponent(rest.slice('/callbacks/'.length));
      } catch {
        send(
          res,
          400,
          'application/json',
          JSON.stringify({
            code: 'CBE_ERR_INVALID_MESSAGE',
            message: 'bad percent-encoding in the path',
          }),
        );
        return true;
      }
      monitor.history(key).then(
        (h) =>
          h
            ? // By id only: a dashboard never hands out a callback's token.
              send(
                res,
                200,
                'application/json',
                JSON.stringify({ id: h.id, status: h.status, events: h.events }),
              )
            : send(
                res,
                404,
                'application/json',
                JSON.stringify({
                  code: 'CBE_ERR_NOT_FOUND',
                  message: 'no history for that token or id',
                }),
              ),
        () =>
          send(
            res,
            500,
            'application/json',
            JSON.stringify({ code: 'CBE_ERR_INTERNAL', message: 'history lookup failed' }),
          ),
      );
    } else if (rest === '/diagram.svg') {
      send(res, 200, 'image/svg+xml', toSvg(undefined, { counts: monitor.view().counts }));
    } else if (rest === '/diagram.mmd') {
      send(res, 200, 'text/plain; charset=utf-8', toMermaid());
    } else {
      send(
        res,
        404,
        'application/json',
        JSON.stringify({ code: 'CBE_ERR_ROUTE_NOT_FOUND', message: `no route ${path}` }),
      );
    }
    return true;
  };
}

/**
 * Creates the dashboard routes for a monitor, to mount beside the dispatch routes.
 *
 * @param monitor - the live view to serve.
 * @param options - base path, title, `auth` (by default the engine's dispatch handlers' auth),
 *   subscriber limits.
 * @returns a handler that answers dashboard requests and returns `true`, or returns `false`
 *   (and leaves the response alone) for any other path.
 * @throws `InvalidArgumentError` for an unknown or invalid option, or when the engine's
 *   dispatch handlers have different auth and `options.auth` does not say which applies.
 * @example
 * ```ts
 * const dashboard = createDashboard(createMonitor(engine));
 * app.use((req, res, next) => dashboard(req, res) || next());
 * ```
 */
export function createDashboard(
  monitor: Monitor,
  options: DashboardOptions = {},
): DashboardHandler {
  const settings = resolveDashboardOptions(options);
  const gate = adminAuth('the dashboard', ownAuth(options.auth), monitor.engine, undefined);
  return routes(monitor, settings, gate);
}

/**
 * Puts the dashboard in front of a request handler (the Dispatch Callback
 * Service) and records how long each other request took in the monitor.
 * Every dashboard route requires the auth of the engine's dispatch handlers
 * (whatever order they are created or wrapped in), unless `options.auth` says otherwise.
 *
 * @param handler - the dispatch handler (from `createDispatchHandler`), a handler that wraps it
 *   (`withMetrics`), or any request handler; `next` is passed on (Express, Connect).
 * @param monitor - the live view to serve.
 * @param options - base path, title, `auth`, subscriber limits.
 * @returns a request handler; it carries the dispatch routes' auth for outer wrappers.
 * @throws `InvalidArgumentError` for an unknown or invalid option, or when the auth to require
 *   is ambiguous (see {@link DashboardOptions.auth}).
 * @example
 * ```ts
 * const handler = createDispatchHandler(engine, { auth: { bearer: process.env.TOKEN! } });
 * createServer(withDashboard(handler, createMonitor(engine))).listen(8080);
 * ```
 */
export function withDashboard(
  handler: (req: IncomingMessage, res: ServerResponse, next?: (err?: unknown) => void) => void,
  monitor: Monitor,
  options: DashboardOptions = {},
): (req: IncomingMessage, res: ServerResponse, next?: (err?: unknown) => void) => void {
  const settings = resolveDashboardOptions(options);
  const wrapped = carriedAuth(handler);
  const gate = adminAuth('the dashboard', ownAuth(options.auth), monitor.engine, wrapped);
  const dashboard = routes(monitor, settings, gate);
  return carryAuth((req: IncomingMessage, res: ServerResponse, next?: (err?: unknown) => void) => {
    if (dashboard(req, res)) return;
    const started = performance.now();
    res.on('finish', () => monitor.recordLatency(performance.now() - started));
    handler(req, res, next);
  }, wrapped);
}
